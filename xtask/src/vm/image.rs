//! The lab's Vagrant box, built locally since there is no Vagrant Cloud here:
//! mmdebstrap of Debian 12 with the cloud kernel (6.1, IPVS as modules),
//! a `vagrant` user with Vagrant's well-known insecure key and passwordless
//! sudo, an empty machine-id and no ssh host keys (each clone makes its own
//! at first boot), and the packages shoal and the scenario run. The disk is
//! one ext4 filesystem without a partition table, booted by extlinux, so
//! the box boots on any libvirt host with no kernel override.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::run;

/// The box's name in Vagrant (the Vagrantfile's `config.vm.box`).
pub const BOX_NAME: &str = "shoal/debian12";
/// Bumped whenever the recipe below changes, so a cached box is rebuilt.
const RECIPE: &str = "debian12-cloud-3";
/// The disk's size as the guest sees it (sparse on the host).
const DISK_GIB: u64 = 4;
const MIRROR: &str = "http://deb.debian.org/debian";
const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";

/// What the guest needs: boot and login (systemd, the cloud kernel, ssh,
/// sudo), what `shoal agent` calls or reads at run time, and the
/// scenario's tools.
const PACKAGES: &[&str] = &[
    "systemd-sysv",
    "udev",
    "dbus",
    "linux-image-cloud-amd64",
    "initramfs-tools",
    "openssh-server",
    "sudo",
    "iproute2",
    "kmod",
    "procps",
    "ipvsadm",
    // `--mesh ipvs` writes its SNAT rules with nft.
    "nftables",
    "python3",
    "curl",
    "dnsutils",
    "iputils-ping",
    "netcat-openbsd",
    "ca-certificates",
];

/// Vagrant's insecure public key, from the installed vagrant.
const VAGRANT_PUBLIC_KEY: &str =
    "/usr/share/rubygems-integration/all/gems/vagrant-2.3.4/keys/vagrant.pub";
/// SYSLINUX's MBR is not needed: the filesystem's own boot sector is the
/// disk's first sector.
const EXTLINUX_DIR: &str = "boot/extlinux";

/// Builds the box if the cache has none of this recipe, and adds it to
/// Vagrant if Vagrant has not got this one. Prints the build time.
pub fn ensure_box() -> Result<()> {
    let cache = super::cache_dir();
    std::fs::create_dir_all(&cache)
        .with_context(|| format!("cannot create the VM cache {}", cache.display()))?;
    let box_file = cache.join(format!("shoal-{RECIPE}.box"));
    if !box_file.is_file() {
        let started = Instant::now();
        build_box(&cache, &box_file)?;
        println!(
            "vm: box built in {:.0} s: {}",
            started.elapsed().as_secs_f64(),
            box_file.display()
        );
    } else {
        println!("vm: box cached: {}", box_file.display());
    }
    let stamp = cache.join("box-added");
    let added = std::fs::read_to_string(&stamp).unwrap_or_default();
    if added.trim() != RECIPE || !vagrant_has_box()? {
        add_box(&box_file)?;
        std::fs::write(&stamp, RECIPE)
            .with_context(|| format!("cannot write {}", stamp.display()))?;
    }
    Ok(())
}

fn vagrant_has_box() -> Result<bool> {
    let list = run::output(Command::new("vagrant").args(["box", "list", "--machine-readable"]))
        .context("`vagrant box list` failed; is vagrant installed (`cargo xtask install-deps`)?")?;
    Ok(list
        .lines()
        .any(|l| l.contains(",box-name,") && l.ends_with(&format!(",{BOX_NAME}"))))
}

/// `vagrant box add` of the file, replacing an older box of the same name,
/// and removing the image vagrant-libvirt uploaded from that older box (it
/// would otherwise keep using it).
fn add_box(box_file: &Path) -> Result<()> {
    run::run(
        Command::new("vagrant")
            .args(["box", "add", "--force", "--name", BOX_NAME])
            .arg(box_file),
    )?;
    super::libvirt::remove_box_volumes(BOX_NAME)
}

/// mmdebstrap into a directory, a filesystem image of it, extlinux in its
/// boot sector, qcow2, and the box tarball. The build directory is removed
/// whatever happens.
fn build_box(cache: &Path, box_file: &Path) -> Result<()> {
    let work = cache.join("build");
    let result = build_in(&work, box_file);
    if let Err(e) = std::fs::remove_dir_all(&work) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!("vm: cannot remove {}: {e}", work.display());
        }
    }
    result
}

fn build_in(work: &Path, box_file: &Path) -> Result<()> {
    if work.exists() {
        unmount_quietly(&work.join("mnt"));
        std::fs::remove_dir_all(work)
            .with_context(|| format!("cannot remove an old {}", work.display()))?;
    }
    let rootfs = work.join("rootfs");
    std::fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;

    let started = Instant::now();
    run::run(&mut mmdebstrap(&rootfs))?;
    println!(
        "vm: Debian 12 root filesystem in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    customize(&rootfs)?;

    let raw = work.join("box.raw");
    run::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "shoal-root"])
            // SYSLINUX reads ext4 without the 64-bit block numbers.
            .args(["-O", "^64bit"])
            .arg("-d")
            .arg(&rootfs)
            .arg(&raw)
            .arg(format!("{DISK_GIB}G")),
    )?;
    std::fs::remove_dir_all(&rootfs)
        .with_context(|| format!("cannot remove {}", rootfs.display()))?;
    install_extlinux(work, &raw)?;

    let image = work.join("box.img");
    run::run(
        Command::new("qemu-img")
            .args(["convert", "-O", "qcow2"])
            .arg(&raw)
            .arg(&image),
    )?;
    std::fs::remove_file(&raw).with_context(|| format!("cannot remove {}", raw.display()))?;
    std::fs::write(
        work.join("metadata.json"),
        format!(r#"{{"provider":"libvirt","format":"qcow2","virtual_size":{DISK_GIB}}}"#),
    )
    .context("cannot write the box's metadata.json")?;
    std::fs::write(
        work.join("Vagrantfile"),
        "# shoal's local Debian 12 box; the lab's settings are in shoal's vagrant/Vagrantfile.\n\
         Vagrant.configure(\"2\") do |config|\nend\n",
    )
    .context("cannot write the box's Vagrantfile")?;
    let partial = box_file.with_extension("box.partial");
    run::run(
        Command::new("tar")
            .arg("-C")
            .arg(work)
            .arg("-cSf")
            .arg(&partial)
            .args(["metadata.json", "Vagrantfile", "box.img"]),
    )?;
    std::fs::rename(&partial, box_file)
        .with_context(|| format!("cannot move the box to {}", box_file.display()))
}

fn mmdebstrap(rootfs: &Path) -> Command {
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--variant=apt", "--mode=root", "--format=directory"])
        .arg(format!("--include={}", PACKAGES.join(",")))
        // Smaller and faster: no documentation, no recommends.
        .args(["--aptopt=APT::Install-Recommends \"false\""])
        .args(["--dpkgopt=path-exclude=/usr/share/doc/*"])
        .args(["--dpkgopt=path-exclude=/usr/share/man/*"])
        .args(["--dpkgopt=path-exclude=/usr/share/locale/*"])
        .arg("bookworm")
        .arg(rootfs)
        .arg(format!("deb {MIRROR} bookworm main"))
        .arg(format!("deb {MIRROR} bookworm-updates main"))
        .arg(format!("deb {SECURITY_MIRROR} bookworm-security main"));
    cmd
}

/// What makes a root filesystem a Vagrant box: the user, its key, sudo,
/// ssh, networking, boot, and no identity shared between clones.
fn customize(rootfs: &Path) -> Result<()> {
    let chroot =
        |args: &[&str]| -> Result<()> { run::run(Command::new("chroot").arg(rootfs).args(args)) };
    chroot(&[
        "useradd",
        "--create-home",
        "--shell",
        "/bin/bash",
        "vagrant",
    ])?;
    // No password at all ('*'), so only the key logs in.
    chroot(&["usermod", "--password", "*", "vagrant"])?;
    let key = std::fs::read_to_string(VAGRANT_PUBLIC_KEY).with_context(|| {
        format!(
            "cannot read Vagrant's insecure public key {VAGRANT_PUBLIC_KEY}; is vagrant installed?"
        )
    })?;
    write(rootfs, "home/vagrant/.ssh/authorized_keys", &key)?;
    chroot(&["chown", "-R", "vagrant:vagrant", "/home/vagrant/.ssh"])?;
    chroot(&["chmod", "0700", "/home/vagrant/.ssh"])?;
    chroot(&["chmod", "0600", "/home/vagrant/.ssh/authorized_keys"])?;
    write(
        rootfs,
        "etc/sudoers.d/vagrant",
        "vagrant ALL=(ALL) NOPASSWD: ALL\nDefaults:vagrant !requiretty\n",
    )?;
    chroot(&["chmod", "0440", "/etc/sudoers.d/vagrant"])?;
    write(
        rootfs,
        "etc/ssh/sshd_config.d/vagrant.conf",
        "PasswordAuthentication no\nUseDNS no\n",
    )?;

    // Each clone gets its own machine-id (systemd makes one at first boot;
    // VXLAN devices derive their MAC from it) and its own ssh host keys.
    write(rootfs, "etc/machine-id", "")?;
    let _ = std::fs::remove_file(rootfs.join("var/lib/dbus/machine-id"));
    for entry in std::fs::read_dir(rootfs.join("etc/ssh")).context("cannot list etc/ssh")? {
        let path = entry.context("cannot list etc/ssh")?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("ssh_host_") {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    write(
        rootfs,
        "etc/systemd/system/ssh-host-keys.service",
        "[Unit]\nDescription=ssh host keys of this machine\nBefore=ssh.service\n\
         ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key\n\n\
         [Service]\nType=oneshot\nExecStart=/usr/bin/ssh-keygen -A\n\n\
         [Install]\nWantedBy=multi-user.target\n",
    )?;
    chroot(&["systemctl", "enable", "ssh-host-keys.service"])?;

    write(rootfs, "etc/hostname", "shoal-box\n")?;
    write(
        rootfs,
        "etc/hosts",
        "127.0.0.1 localhost\n127.0.1.1 shoal-box\n",
    )?;
    write(
        rootfs,
        "etc/fstab",
        "LABEL=shoal-root / ext4 errors=remount-ro 0 1\n",
    )?;
    // eth0 (the management network) by DHCP; Vagrant adds eth1's file.
    write(
        rootfs,
        "etc/systemd/network/10-eth0.network",
        "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n",
    )?;
    chroot(&["systemctl", "enable", "systemd-networkd.service"])?;
    // Under software emulation every timer costs: nothing runs that the lab
    // does not need, and nothing waits for a network it does not configure.
    for unit in [
        "systemd-networkd-wait-online.service",
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "e2scrub_all.timer",
        "fstrim.timer",
        "man-db.timer",
    ] {
        chroot(&["systemctl", "mask", unit])?;
    }
    write(rootfs, "etc/shoal-box-release", &format!("{RECIPE}\n"))?;
    write_extlinux_config(rootfs)?;
    run::run(
        Command::new("sh")
            .arg("-c")
            .arg("rm -rf \"$1\"/var/cache/apt/archives/*.deb \"$1\"/var/lib/apt/lists/*")
            .arg("sh")
            .arg(rootfs),
    )
}

/// extlinux.conf naming the kernel and initramfs the root filesystem has.
fn write_extlinux_config(rootfs: &Path) -> Result<()> {
    let boot = rootfs.join("boot");
    let mut kernel = None;
    let mut initrd = None;
    for entry in std::fs::read_dir(&boot).context("cannot list the image's /boot")? {
        let name = entry
            .context("cannot list the image's /boot")?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.starts_with("vmlinuz-") {
            kernel = Some(name);
        } else if name.starts_with("initrd.img-") {
            initrd = Some(name);
        }
    }
    let (Some(kernel), Some(initrd)) = (kernel, initrd) else {
        bail!(
            "the image's /boot has no vmlinuz-* and initrd.img-*: did linux-image-cloud-amd64 \
             install?"
        );
    };
    write(
        rootfs,
        &format!("{EXTLINUX_DIR}/extlinux.conf"),
        &format!(
            "DEFAULT debian\nTIMEOUT 0\nPROMPT 0\nLABEL debian\n  LINUX /boot/{kernel}\n  \
             INITRD /boot/{initrd}\n  APPEND root=LABEL=shoal-root rw console=ttyS0 \
             net.ifnames=0 quiet\n"
        ),
    )
}

/// extlinux into the filesystem's boot sector (loop-mounted), which is the
/// disk's first sector.
fn install_extlinux(work: &Path, raw: &Path) -> Result<()> {
    let mnt = work.join("mnt");
    std::fs::create_dir_all(&mnt).with_context(|| format!("cannot create {}", mnt.display()))?;
    run::run(
        Command::new("mount")
            .args(["-o", "loop"])
            .arg(raw)
            .arg(&mnt),
    )?;
    let installed = run::run(
        Command::new("extlinux")
            .arg("--install")
            .arg(mnt.join(EXTLINUX_DIR)),
    );
    let unmounted = run::run(Command::new("umount").arg(&mnt));
    installed?;
    unmounted
}

fn unmount_quietly(mnt: &Path) {
    let _ = Command::new("umount").arg(mnt).status();
}

fn write(rootfs: &Path, relative: &str, content: &str) -> Result<()> {
    let path = rootfs.join(relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(&path, content).with_context(|| format!("cannot write {}", path.display()))
}
