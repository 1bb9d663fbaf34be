//! Every error prints each cause once: a `Display` names its own step and
//! its cause comes from `source()` (see `shoal_control::error_chain`). These
//! walk representative errors of each subsystem, as the CLI (`{:#}`) and the
//! agent's logs (`.chain()`) print them.

use std::error::Error;
use std::io;

use shoal_control::error_chain::{repeated_cause, ErrorChain};

use crate::balancer::BalancerError;
use crate::dns::DnsError;
use crate::ebpf::EbpfError;
use crate::executor::ExecutorError;
use crate::gossip::codec::CodecError;
use crate::gossip::transport::StreamError;
use crate::image::unpack::UnpackError;
use crate::image::ImageError;
use crate::ipvs::IpvsError;
use crate::netns::NetnsError;
use crate::overlay::OverlayError;

fn not_found() -> io::Error {
    io::ErrorKind::NotFound.into()
}

fn samples() -> Vec<Box<dyn Error + Send + Sync>> {
    vec![
        Box::new(ExecutorError::Spawn {
            task: "t1".into(),
            command: "sleep".into(),
            source: not_found(),
        }),
        Box::new(ExecutorError::Cgroup {
            task: "t1".into(),
            path: "/sys/fs/cgroup/shoal/t1".into(),
            source: not_found(),
        }),
        Box::new(ExecutorError::Io {
            task: "t1".into(),
            path: "/var/lib/shoal/tasks/t1".into(),
            source: not_found(),
        }),
        Box::new(ExecutorError::Setup {
            path: "/var/lib/shoal/tasks".into(),
            source: not_found(),
        }),
        Box::new(ExecutorError::Image {
            task: "t1".into(),
            image: "busybox".into(),
            source: Box::new(ImageError::Io {
                path: "/var/lib/shoal/images".into(),
                source: not_found(),
            }),
        }),
        Box::new(UnpackError::Read(not_found())),
        Box::new(UnpackError::Entry {
            path: "etc/passwd".into(),
            source: not_found(),
        }),
        Box::new(UnpackError::Dest {
            dir: "/var/lib/shoal/layers/x".into(),
            source: not_found(),
        }),
        Box::new(DnsError::Bind {
            proto: "udp",
            addr: "127.0.0.11:53".parse().unwrap(),
            netns: None,
            source: not_found(),
        }),
        Box::new(DnsError::Netns(NetnsError::Enter {
            path: "/run/shoal/netns/sb-t1".into(),
            cause: not_found(),
        })),
        Box::new(StreamError::Io(not_found())),
        Box::new(CodecError::Encode(postcard::Error::SerializeBufferFull)),
        Box::new(IpvsError::Socket(not_found())),
        Box::new(EbpfError::ReadObject {
            path: "/usr/lib/shoal/shoal-ebpf".into(),
            source: not_found(),
        }),
        Box::new(EbpfError::PinDir {
            path: "/sys/fs/bpf/shoal".into(),
            source: not_found(),
        }),
        Box::new(EbpfError::MountBpffs {
            path: "/sys/fs/bpf".into(),
            source: nix::Error::ENOENT,
        }),
        Box::new(EbpfError::Probe {
            source: not_found(),
        }),
        Box::new(BalancerError::Ebpf(EbpfError::Probe {
            source: not_found(),
        })),
        Box::new(OverlayError::Netns(NetnsError::Remove {
            path: "/run/shoal/netns/ov-x".into(),
            cause: not_found(),
        })),
        Box::new(NetnsError::Dir {
            path: "/run/shoal/netns".into(),
            cause: not_found(),
        }),
        Box::new(NetnsError::Create {
            path: "/run/shoal/netns/x".into(),
            cause: nix::Error::ENOENT,
        }),
    ]
}

#[test]
fn no_error_repeats_its_cause() {
    for e in samples() {
        assert_eq!(repeated_cause(&*e), None, "{}", e.chain());
        assert!(e.source().is_some(), "{e} has no source: its cause is lost");
    }
}

#[test]
fn the_printed_chain_names_the_root_cause_once() {
    for e in samples() {
        let chained = e.chain().to_string();
        let mut root: &dyn std::error::Error = &*e;
        while let Some(next) = root.source() {
            root = next;
        }
        let root = root.to_string();
        let anyhow = format!("{:#}", anyhow::anyhow!(e));
        assert_eq!(chained, anyhow);
        assert_eq!(chained.matches(root.as_str()).count(), 1, "{chained}");
    }
}
