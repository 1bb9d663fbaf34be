//! The five ways the client reaches the backend, and turning each on and off in the
//! node: nothing (direct, to the backend's own address), shoal's eBPF mesh
//! (`shoal mesh apply|reset`) attached with TCX links and with clsact + cls_bpf (the
//! attachment kernels before 6.6 get), an nftables DNAT map keyed by port
//! (kube-proxy's nftables mode), and an iptables DNAT chain (kube-proxy's iptables
//! mode). The published ports are 8080 -> 80 (HTTP) and 5201 -> 5201 (iperf3).

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::backend::{HTTP_PORT, IPERF_PORT};
use super::mesh;
use super::topology::{Ns, Topology, BACKEND_ADDR, NODE_ADDR, SHORT};

/// The node's published HTTP port.
pub const PUBLISHED_HTTP_PORT: u16 = 8080;
/// nftables table and iptables chain of the DNAT paths.
const NFT_TABLE: &str = "shoal_bench";
const IPT_CHAIN: &str = "SHOAL-BENCH-SVC";

/// One way in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    Direct,
    /// The eBPF mesh with TCX links.
    Ebpf,
    /// The eBPF mesh with clsact + cls_bpf.
    EbpfTc,
    Nftables,
    Iptables,
}

impl Ingress {
    pub const ALL: [Ingress; 5] = [
        Ingress::Direct,
        Ingress::Ebpf,
        Ingress::EbpfTc,
        Ingress::Nftables,
        Ingress::Iptables,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Ingress::Direct => "direct",
            Ingress::Ebpf => "ebpf",
            Ingress::EbpfTc => "ebpf-tc",
            Ingress::Nftables => "nftables",
            Ingress::Iptables => "iptables",
        }
    }

    /// Whether this is one of shoal's own paths.
    pub fn is_shoal(self) -> bool {
        matches!(self, Ingress::Ebpf | Ingress::EbpfTc)
    }

    /// Where the client sends: (address, HTTP port, iperf3 port).
    pub fn target(self) -> (Ipv4Addr, u16, u16) {
        match self {
            Ingress::Direct => (BACKEND_ADDR, HTTP_PORT, IPERF_PORT),
            _ => (NODE_ADDR, PUBLISHED_HTTP_PORT, IPERF_PORT),
        }
    }

    /// Puts this path in the node. An error leaves the node to [`Ingress::disable`].
    pub fn enable(self, topo: &Topology, shoal: &Path) -> Result<()> {
        match self {
            Ingress::Direct => Ok(()),
            // The kernel's choice (TCX here, 6.6+), as the agent makes it.
            Ingress::Ebpf => mesh::apply(topo, shoal, &published(), None),
            Ingress::EbpfTc => mesh::apply(topo, shoal, &published(), Some("tc")),
            Ingress::Nftables => {
                let file = topo.run_dir().join("dnat.nft");
                std::fs::write(&file, nft_ruleset())
                    .with_context(|| format!("cannot write {}", file.display()))?;
                let file = file.display().to_string();
                topo.run(Ns::Node, SHORT, "nft", &["-f", &file]).map(|_| ())
            }
            Ingress::Iptables => {
                let file = topo.run_dir().join("dnat.iptables");
                std::fs::write(&file, iptables_rules())
                    .with_context(|| format!("cannot write {}", file.display()))?;
                let file = file.display().to_string();
                topo.run(Ns::Node, SHORT, "iptables-restore", &[&file])
                    .map(|_| ())
            }
        }
    }

    /// Takes this path out of the node, whether or not `enable` got through.
    pub fn disable(self, topo: &Topology, shoal: &Path) -> Result<()> {
        match self {
            Ingress::Direct => Ok(()),
            Ingress::Ebpf | Ingress::EbpfTc => mesh::reset(topo, shoal),
            // iptables-nft keeps its empty `ip nat` table (and so conntrack) alive:
            // flushing the whole ruleset removes both kinds.
            Ingress::Nftables | Ingress::Iptables => flush_netfilter(topo),
        }
    }
}

/// Fails unless the node holds no netfilter rule and no XDP or TC program, and
/// nothing answers on its published port: no other path is in the way.
pub fn ensure_node_clean(topo: &Topology) -> Result<()> {
    let ruleset = topo.run(Ns::Node, SHORT, "nft", &["list", "ruleset"])?;
    if !String::from_utf8_lossy(&ruleset.stdout).trim().is_empty() {
        bail!(
            "the node still holds netfilter rules:\n{}",
            String::from_utf8_lossy(&ruleset.stdout)
        );
    }
    let progs = topo.run(Ns::Node, SHORT, "bpftool", &["-j", "net", "show"])?;
    let progs: serde_json::Value =
        serde_json::from_slice(&progs.stdout).context("`bpftool -j net show` printed no JSON")?;
    let attached: Vec<String> = progs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_object)
        .flat_map(|kinds| kinds.iter())
        .filter(|(_, list)| list.as_array().is_some_and(|l| !l.is_empty()))
        .map(|(kind, list)| format!("{kind}: {list}"))
        .collect();
    if !attached.is_empty() {
        bail!(
            "the node still has eBPF programs attached: {}",
            attached.join("; ")
        );
    }
    if super::backend::http_ok(topo, NODE_ADDR, PUBLISHED_HTTP_PORT) {
        bail!("{NODE_ADDR}:{PUBLISHED_HTTP_PORT} answers with no ingress path enabled");
    }
    Ok(())
}

fn flush_netfilter(topo: &Topology) -> Result<()> {
    topo.run(Ns::Node, SHORT, "nft", &["flush", "ruleset"])
        .map(|_| ())
}

/// The published ports as (port, backend port) pairs.
pub fn published() -> [(u16, u16); 2] {
    [(PUBLISHED_HTTP_PORT, HTTP_PORT), (IPERF_PORT, IPERF_PORT)]
}

/// A DNAT map keyed by destination port, looked up once for traffic to the node.
fn nft_ruleset() -> String {
    let elements: Vec<String> = published()
        .iter()
        .map(|(port, target)| format!("{port} : {BACKEND_ADDR} . {target}"))
        .collect();
    format!(
        "table ip {NFT_TABLE} {{
    map port_dnat {{
        type inet_service : ipv4_addr . inet_service
        elements = {{ {} }}
    }}
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr {NODE_ADDR} dnat ip to tcp dport map @port_dnat
    }}
}}
",
        elements.join(", ")
    )
}

/// kube-proxy's shape: PREROUTING jumps to a chain of one DNAT rule per port.
fn iptables_rules() -> String {
    let mut rules = format!(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:{IPT_CHAIN} - [0:0]\n\
         -A PREROUTING -d {NODE_ADDR}/32 -j {IPT_CHAIN}\n"
    );
    for (port, target) in published() {
        rules.push_str(&format!(
            "-A {IPT_CHAIN} -p tcp -m tcp --dport {port} -j DNAT --to-destination {BACKEND_ADDR}:{target}\n"
        ));
    }
    rules.push_str("COMMIT\n");
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_goes_to_the_backend_and_the_others_to_the_published_port() {
        assert_eq!(Ingress::Direct.target(), (BACKEND_ADDR, 80, 5201));
        for ingress in [
            Ingress::Ebpf,
            Ingress::EbpfTc,
            Ingress::Nftables,
            Ingress::Iptables,
        ] {
            assert_eq!(ingress.target(), (NODE_ADDR, 8080, 5201));
        }
    }

    #[test]
    fn dnat_rules_cover_both_ports() {
        let nft = nft_ruleset();
        assert!(
            nft.contains("8080 : 198.19.1.2 . 80, 5201 : 198.19.1.2 . 5201"),
            "{nft}"
        );
        let ipt = iptables_rules();
        assert!(
            ipt.contains("--dport 8080 -j DNAT --to-destination 198.19.1.2:80\n"),
            "{ipt}"
        );
        assert!(
            ipt.contains("--dport 5201 -j DNAT --to-destination 198.19.1.2:5201\n"),
            "{ipt}"
        );
        assert!(ipt.ends_with("COMMIT\n"));
    }
}
