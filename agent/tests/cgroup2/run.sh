#!/bin/sh
# Runs the container runtime's root tests on a PURE cgroup v2 host: a QEMU
# guest booting Debian 12's own kernel (6.1, linux-image-cloud-amd64) from an
# initramfs holding busybox, runc, tini, the `shoal` binary and the
# `container` test binary, with cgroup2 alone mounted on /sys/fs/cgroup.
# This machine is hybrid (v1 controllers), so limits on cgroup v2 can only be
# checked in a guest. Images come prebuilt from the host (umoci and skopeo
# are not in the guest): run the tests once on the host with
# SHOAL_TEST_IMAGES set to keep their tarballs.
#
#   cargo test -p shoal-agent --test container --no-run
#   SHOAL_TEST_IMAGES=/tmp/shoal-v2/images cargo test -p shoal-agent --test container
#   agent/tests/cgroup2/run.sh /tmp/shoal-v2 [TEST FILTER...]
#
# The test that needs a registry is skipped there.
# Needs qemu-system-x86 (software emulation works; slow), busybox-static,
# runc, tini, cpio, and apt access for the kernel package. Prints the test
# output and exits with the tests' status.
set -eu
work=${1:?usage: run.sh WORKDIR [FILTER...]}
shift
repo=$(cd "$(dirname "$0")/../../.." && pwd)
images="$work/images"
[ -d "$images" ] || { echo "no $images: run the tests on the host with SHOAL_TEST_IMAGES=$images first" >&2; exit 2; }
test_bin=$(ls -t "$repo"/target/debug/deps/container-* | grep -v '\.d$' | head -1)
shoal="$repo/target/debug/shoal"

# Debian 12's kernel and its overlay module, unpacked (not installed).
if [ ! -d "$work/kernel" ]; then
    (cd "$work" && apt-get download linux-image-6.1.0-57-cloud-amd64 >/dev/null 2>&1 \
        || apt-get download "$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image/ {print $2; exit}')")
    dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
fi
vmlinuz=$(ls "$work"/kernel/boot/vmlinuz-*)
overlay=$(find "$work/kernel/lib/modules" -name 'overlay.ko*' | head -1)

cpio=$(command -v cpio || echo "busybox cpio")
root="$work/initramfs"
rm -rf "$root"
mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin" "$root/lib" "$root/lib64" \
    "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/run" "$root/etc" "$root/images" "$root/mnt"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf /bin/busybox "$root/bin/$applet"
done
copy_with_libs() { # SOURCE DEST
    mkdir -p "$(dirname "$root$2")"
    strip -o "$root$2" "$1" 2>/dev/null || cp "$1" "$root$2"
    for lib in $(ldd "$1" | awk '/=>/ {print $3} /ld-linux/ {print $1}'); do
        mkdir -p "$(dirname "$root$lib")"
        cp -L "$lib" "$root$lib"
    done
}
copy_with_libs "$(command -v runc)" /usr/sbin/runc
copy_with_libs "$shoal" "$shoal"
copy_with_libs "$test_bin" /container-tests
cp /usr/bin/tini-static "$root/usr/bin/tini-static"
cp "$overlay" "$root/overlay.ko"
cp "$images"/*.tar "$root/images/"
echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
echo "localhost" > "$root/etc/hostname"
: > "$root/etc/resolv.conf"
# runc's pivot_root cannot leave the initramfs: /init moves everything to
# a tmpfs and switch_roots into it, then /stage2 runs the tests.
cat > "$root/init" <<'INIT'
#!/bin/sh
mount -t tmpfs -o size=2500m tmpfs /mnt
for d in bin sbin usr lib lib64 etc images work stage2 overlay.ko container-tests; do
    [ -e "/$d" ] && cp -a "/$d" /mnt/
done
mkdir -p /mnt/proc /mnt/sys /mnt/dev /mnt/tmp /mnt/run
exec switch_root /mnt /stage2
INIT
cat > "$root/stage2" <<STAGE2
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
insmod /overlay.ko
echo "guest: kernel \$(uname -r), cgroup mounts: \$(grep cgroup /proc/mounts | tr '\\n' ' '), controllers: \$(cat /sys/fs/cgroup/cgroup.controllers)"
cd /tmp
SHOAL_TEST_IMAGES=/images RUST_BACKTRACE=1 /container-tests --test-threads=1 --skip pulls_and_runs $* 2>&1
echo "guest: tests exited \$?"
poweroff -f
STAGE2
chmod +x "$root/stage2"
chmod +x "$root/init"
(cd "$root" && find . | $cpio -o -H newc) > "$work/initramfs.cpio"
out="$work/guest.log"
qemu-system-x86_64 -accel tcg -m 3072 -smp 2 -nographic -no-reboot \
    -kernel "$vmlinuz" -initrd "$work/initramfs.cpio" \
    -append "console=ttyS0 rdinit=/init quiet panic=-1" | tee "$out"
grep -q "guest: tests exited 0" "$out"
