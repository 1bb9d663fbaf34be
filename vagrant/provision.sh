#!/bin/sh
# Provisioning of one lab VM (run as root by Vagrant): installs the host-built
# `shoal` (uploaded to /tmp/shoal) and the lab's scripts (/tmp/shoal-lab), the
# packages shoal and the scenario run (already in the locally built box; a
# stock Debian 12 box gets them from apt), the IPVS modules, and the systemd
# unit `shoal` whose mesh /etc/default/shoal chooses. Idempotent.
set -eu

install -m 0755 /tmp/shoal /usr/local/bin/shoal
rm -rf /opt/shoal-lab
install -d -m 0755 /opt/shoal-lab
cp -r /tmp/shoal-lab/. /opt/shoal-lab/

# iproute2: `ip`/`bridge`/`tc` for looking; ipvsadm: to show what --mesh
# ipvs programs; nftables: the SNAT rules of --mesh ipvs; python3: the lab's services; curl and dnsutils: clients.
missing=""
for pkg in iproute2 kmod ipvsadm nftables python3 curl dnsutils procps; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086 # one word per package
    apt-get install -y -q --no-install-recommends $missing
fi

# The IPVS core and the schedulers shoal uses, now and at every boot.
cat > /etc/modules-load.d/shoal.conf <<'MODULES'
ip_vs
ip_vs_mh
ip_vs_sh
ip_vs_rr
MODULES
for module in ip_vs ip_vs_mh ip_vs_sh ip_vs_rr; do
    modprobe "$module"
done

if [ ! -f /etc/default/shoal ]; then
    cat > /etc/default/shoal <<'DEFAULTS'
# The load balancer of this node: ebpf or ipvs (`shoal agent --mesh`).
SHOAL_MESH=ebpf
DEFAULTS
fi

# KillMode=process: stopping or killing the agent leaves its tasks running
# (they live in cgroups of their own), as an agent restart must.
cat > /etc/systemd/system/shoal.service <<'UNIT'
[Unit]
Description=shoal agent
After=network-online.target
Wants=network-online.target

[Service]
EnvironmentFile=-/etc/default/shoal
ExecStart=/usr/local/bin/shoal agent --mesh ${SHOAL_MESH}
KillMode=process
Restart=no
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
echo "provisioned: $(/usr/local/bin/shoal --version) on $(uname -r)"
