//! The mesh's eBPF programs, run by the kernel on crafted frames
//! (`BPF_PROG_TEST_RUN`): what each one decides for each kind of packet,
//! checked on the frames they give back. Fast and exact where the
//! end-to-end tests (tests/tests/mesh*.rs) are broad. Needs root and the
//! eBPF object (`cargo xtask build-ebpf`).

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use shoal_agent::balancer::{
    Balancer, BalancerSpec, LoadBalancer, MeshBackend, Protocol, PublishedService,
};
use shoal_agent::ebpf::{ensure_bpffs, AttachMode, EbpfBalancer, MeshProgram, BPFFS_ROOT};
use shoal_control::objects::MacAddr;
use shoal_ebpf_common::mesh::{Config, CONFIG_HOST};
use shoal_tests::require_root;

type TestResult = Result<(), Box<dyn Error>>;

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const CLIENT: [u8; 4] = [198, 19, 0, 9];
const NODE: [u8; 4] = [198, 18, 0, 2];
const BACKEND: [u8; 4] = [10, 255, 0, 5];
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;

/// Removes the pins when dropped.
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = EbpfBalancer::remove(&self.0);
    }
}

/// The balancer with port 8080/tcp and 9053/udp published on NODE, both to
/// BACKEND, and an overlay MTU of 1450.
fn mesh(name: &str) -> Result<(Balancer<EbpfBalancer>, Pins), Box<dyn Error>> {
    require_root();
    ensure_bpffs(Path::new(BPFFS_ROOT))?;
    let pins =
        Pins(Path::new(BPFFS_ROOT).join(format!("shoal-test-mesh-{name}-{}", std::process::id())));
    let mut lb = EbpfBalancer::load(&pins.0, AttachMode::Tc)?;
    lb.set_config(
        CONFIG_HOST,
        Config {
            link_ifindex: 1,
            link_mac: [2, 0x5e, 0, 0, 0, 1],
            mtu: 1450,
            ..Config::default()
        },
    )?;
    let mut mesh = Balancer::new(lb)?;
    let backend = MeshBackend {
        ip: Ipv4Addr::from(BACKEND),
        port: 80,
        mac: MacAddr::from_ipv4(Ipv4Addr::from(BACKEND)),
    };
    let service = |protocol, port| PublishedService {
        protocol,
        port,
        backends: vec![backend.clone()],
        lingering: Vec::new(),
    };
    mesh.apply(&BalancerSpec {
        locals: BTreeSet::from([Ipv4Addr::from(NODE)]),
        services: vec![service(Protocol::Tcp, 8080), service(Protocol::Udp, 9053)],
        vips: BTreeMap::new(),
    })?;
    Ok((mesh, pins))
}

/// Ethernet + IPv4 (with `options`, a multiple of 4 bytes) + `l4`.
fn frame(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    options: &[u8],
    frag: u16,
    id: u16,
    l4: &[u8],
) -> Vec<u8> {
    let ip_len = 20 + options.len();
    let mut f = vec![0u8; 14 + ip_len];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 3]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x40 | (ip_len / 4) as u8;
    f[16..18].copy_from_slice(&((ip_len + l4.len()) as u16).to_be_bytes());
    f[18..20].copy_from_slice(&id.to_be_bytes());
    f[20..22].copy_from_slice(&frag.to_be_bytes());
    f[22] = 64;
    f[23] = proto;
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    f[34..34 + options.len()].copy_from_slice(options);
    let csum = checksum(&f[14..14 + ip_len]);
    f[24..26].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(l4);
    f
}

fn tcp(sport: u16, dport: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = 0x50;
    t[13] = flags;
    t
}

fn udp(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut u = vec![0u8; 8 + payload];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    u
}

/// The Internet checksum of `bytes`.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn counters(
    mesh: &mut Balancer<EbpfBalancer>,
) -> Result<BTreeMap<&'static str, u64>, Box<dyn Error>> {
    Ok(mesh.kernel().counters()?.into_iter().collect())
}

fn run(
    mesh: &mut Balancer<EbpfBalancer>,
    program: MeshProgram,
    f: &[u8],
) -> Result<(u32, Vec<u8>), Box<dyn Error>> {
    let out = mesh.kernel().test_run(program, f)?;
    Ok((out.verdict, out.frame))
}

#[test]
fn a_tcp_flow_is_established_only_by_the_ack_of_the_backends_syn_ack() -> TestResult {
    let (mut mesh, _pins) = mesh("handshake")?;
    let to_node = |flags, seq, ack| {
        frame(
            CLIENT,
            NODE,
            6,
            &[],
            0,
            1,
            &tcp(40000, 8080, flags, seq, ack),
        )
    };

    let (verdict, out) = run(&mut mesh, MeshProgram::Ingress, &to_node(SYN, 100, 0))?;
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(&out[30..34], &BACKEND, "destination rewritten");
    assert_eq!(&out[36..38], &80u16.to_be_bytes());
    assert_eq!(&out[26..30], &CLIENT, "the client's address kept");
    // A retransmitted SYN goes on; a blind ACK does not.
    assert_eq!(
        run(&mut mesh, MeshProgram::Ingress, &to_node(SYN, 100, 0))?.0,
        TC_ACT_REDIRECT
    );
    assert_eq!(
        run(&mut mesh, MeshProgram::Ingress, &to_node(ACK, 101, 12345))?.0,
        TC_ACT_SHOT
    );

    // The backend's SYN-ACK goes back as from the node's published port.
    let syn_ack = frame(
        BACKEND,
        CLIENT,
        6,
        &[],
        0,
        2,
        &tcp(80, 40000, SYN | ACK, 777_000, 101),
    );
    let (verdict, out) = run(&mut mesh, MeshProgram::Reply, &syn_ack)?;
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(
        (&out[26..30], &out[34..36]),
        (&NODE[..], &8080u16.to_be_bytes()[..])
    );
    // A wrong ACK is still dropped; the right one establishes the flow.
    assert_eq!(
        run(&mut mesh, MeshProgram::Ingress, &to_node(ACK, 101, 777_000))?.0,
        TC_ACT_SHOT
    );
    assert_eq!(
        run(&mut mesh, MeshProgram::Ingress, &to_node(ACK, 101, 777_001))?.0,
        TC_ACT_REDIRECT
    );
    assert_eq!(
        run(
            &mut mesh,
            MeshProgram::Ingress,
            &to_node(ACK | 0x08, 101, 777_001)
        )?
        .0,
        TC_ACT_REDIRECT
    );
    let c = counters(&mut mesh)?;
    assert_eq!(
        (
            c["flows_opened"],
            c["flows_established"],
            c["segments_unverified"]
        ),
        (1, 1, 2)
    );

    // FIN both ways: out of the established table, its last ACK still served.
    run(
        &mut mesh,
        MeshProgram::Ingress,
        &to_node(FIN | ACK, 101, 777_001),
    )?;
    run(
        &mut mesh,
        MeshProgram::Reply,
        &frame(
            BACKEND,
            CLIENT,
            6,
            &[],
            0,
            3,
            &tcp(80, 40000, FIN | ACK, 777_001, 102),
        ),
    )?;
    assert_eq!(counters(&mut mesh)?["flows_closed"], 1);
    assert_eq!(
        run(&mut mesh, MeshProgram::Ingress, &to_node(ACK, 102, 777_002))?.0,
        TC_ACT_REDIRECT
    );
    Ok(())
}

#[test]
fn packets_with_ip_options_are_translated_at_their_real_offsets() -> TestResult {
    let (mut mesh, _pins) = mesh("options")?;
    // Four NOPs and three more options bytes: a 28-byte IP header.
    let options = [1, 1, 1, 1, 1, 1, 1, 0];
    let syn = frame(
        CLIENT,
        NODE,
        6,
        &options,
        0,
        1,
        &tcp(40001, 8080, SYN, 5, 0),
    );
    let (verdict, out) = run(&mut mesh, MeshProgram::Ingress, &syn)?;
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(&out[30..34], &BACKEND);
    let l4 = 14 + 28;
    assert_eq!(
        &out[l4 + 2..l4 + 4],
        &80u16.to_be_bytes(),
        "the port after the options"
    );
    assert_eq!(&out[34..42], &options, "options untouched");
    assert_eq!(checksum(&out[14..l4]), 0, "IP header checksum still right");
    Ok(())
}

#[test]
fn fragments_follow_their_first_and_oversize_packets_are_handled() -> TestResult {
    let (mut mesh, _pins) = mesh("fragments")?;
    const MF: u16 = 0x2000;
    const DF: u16 = 0x4000;
    // A datagram in two fragments: the first carries the ports.
    let first = frame(CLIENT, NODE, 17, &[], MF, 77, &udp(5000, 9053, 992)[..1000]);
    let (verdict, out) = run(&mut mesh, MeshProgram::Ingress, &first)?;
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(
        (&out[30..34], &out[36..38]),
        (&BACKEND[..], &80u16.to_be_bytes()[..])
    );
    let later = frame(CLIENT, NODE, 17, &[], 1000 / 8, 77, &[0u8; 400]);
    let (verdict, out) = run(&mut mesh, MeshProgram::Ingress, &later)?;
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(&out[30..34], &BACKEND, "a later fragment follows the first");
    assert_eq!(checksum(&out[14..34]), 0);
    // A later fragment of a datagram never seen goes to the host's stack.
    let stray = frame(CLIENT, NODE, 17, &[], 1000 / 8, 78, &[0u8; 400]);
    assert_eq!(run(&mut mesh, MeshProgram::Ingress, &stray)?.0, TC_ACT_OK);

    // Too big for the overlay without DF: to the gateway, which fragments.
    let big = frame(CLIENT, NODE, 17, &[], 0, 79, &udp(5001, 9053, 1472));
    let (verdict, out) = run(&mut mesh, MeshProgram::Ingress, &big)?;
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(
        &out[0..6],
        &[2, 0x5e, 0, 0, 0, 1],
        "sent to the gateway MAC"
    );
    // With DF: "fragmentation needed" back to the client, next-hop MTU 1450.
    let big_df = frame(CLIENT, NODE, 17, &[], DF, 80, &udp(5002, 9053, 1472));
    let (verdict, out) = run(&mut mesh, MeshProgram::Ingress, &big_df)?;
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(&out[0..6], &[2, 0, 0, 0, 0, 3], "back to the client's MAC");
    assert_eq!(
        (out[23], &out[26..30], &out[30..34]),
        (1, &NODE[..], &CLIENT[..])
    );
    assert_eq!(checksum(&out[14..34]), 0, "IP checksum");
    assert_eq!(
        (out[34], out[35]),
        (3, 4),
        "destination unreachable, fragmentation needed"
    );
    assert_eq!(&out[40..42], &1450u16.to_be_bytes());
    assert_eq!(checksum(&out[34..]), 0, "ICMP checksum");
    assert_eq!(
        &out[42 + 12..42 + 20],
        &big_df[26..34],
        "the offending header quoted"
    );
    assert_eq!(out.len(), 14 + 20 + 8 + 20 + 20);
    let c = counters(&mut mesh)?;
    assert_eq!((c["fragments"], c["fragmented"], c["too_big"]), (1, 1, 1));
    Ok(())
}

#[test]
fn icmp_errors_about_a_flow_are_translated_both_ways() -> TestResult {
    let (mut mesh, _pins) = mesh("icmp")?;
    let request = frame(CLIENT, NODE, 17, &[], 0, 1, &udp(5555, 9053, 4));
    run(&mut mesh, MeshProgram::Ingress, &request)?;
    // The task's "port unreachable", quoting the request as it received it.
    let received = frame(CLIENT, BACKEND, 17, &[], 0, 1, &udp(5555, 80, 4));
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&received[14..14 + 28]);
    let csum = checksum(&icmp);
    icmp[2..4].copy_from_slice(&csum.to_be_bytes());
    let error = frame(BACKEND, CLIENT, 1, &[], 0, 9, &icmp);
    let (verdict, out) = run(&mut mesh, MeshProgram::Reply, &error)?;
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(&out[26..30], &NODE, "from the node");
    let quoted = 34 + 8;
    assert_eq!(
        &out[quoted + 16..quoted + 20],
        &NODE,
        "about the node's published port"
    );
    assert_eq!(&out[quoted + 22..quoted + 24], &9053u16.to_be_bytes());
    assert_eq!(checksum(&out[14..34]), 0, "IP checksum");
    assert_eq!(checksum(&out[quoted..quoted + 20]), 0, "quoted IP checksum");
    assert_eq!(checksum(&out[34..]), 0, "ICMP checksum");
    assert_eq!(counters(&mut mesh)?["icmp_translated"], 1);
    Ok(())
}
