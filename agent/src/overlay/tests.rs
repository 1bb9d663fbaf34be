//! Reconciliation logic against the in-memory kernel.

use std::net::Ipv4Addr;

use shoal_control::objects::{Endpoint, MacAddr, NetworkSpec};

use super::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn network(id: &str, vni: u32, octet: u8) -> NetworkSpec {
    NetworkSpec {
        id: id.into(),
        vni,
        subnet: format!("10.{octet}.0.0/24").parse().unwrap(),
        gateway: ip(&format!("10.{octet}.0.1")),
        mtu: None,
        ingress: false,
    }
}

fn endpoint(net: &str, addr: &str, vtep: &str) -> Endpoint {
    Endpoint {
        network: net.into(),
        ip: ip(addr),
        mac: MacAddr::from_ipv4(ip(addr)),
        vtep: ip(vtep),
    }
}

fn sandbox(id: &str, attachments: &[(&str, &str)]) -> SandboxSpec {
    SandboxSpec {
        id: id.into(),
        attachments: attachments
            .iter()
            .map(|(net, addr)| Attachment {
                network: (*net).into(),
                ip: ip(addr),
                mac: None,
            })
            .collect(),
    }
}

/// Host 198.18.0.1 with two networks, one local sandbox each, and remote
/// endpoints on two other hosts.
fn spec() -> OverlaySpec {
    OverlaySpec {
        vtep: ip("198.18.0.1"),
        underlay_mtu: 1500,
        networks: vec![network("red", 4096, 10), network("blue", 4097, 20)],
        endpoints: vec![
            endpoint("red", "10.10.0.2", "198.18.0.1"),
            endpoint("red", "10.10.0.3", "198.18.0.2"),
            endpoint("red", "10.10.0.4", "198.18.0.3"),
            endpoint("blue", "10.20.0.3", "198.18.0.2"),
        ],
        sandboxes: vec![
            sandbox("r1", &[("red", "10.10.0.2")]),
            sandbox("b1", &[("blue", "10.20.0.2")]),
        ],
        gateways: Vec::new(),
    }
}

fn count(changes: &[Change], pred: impl Fn(&Change) -> bool) -> usize {
    changes.iter().filter(|c| pred(c)).count()
}

#[test]
fn first_apply_builds_everything_and_second_changes_nothing() {
    let mut kernel = FakeKernel::default();
    let first = reconcile(&mut kernel, &spec()).unwrap();
    assert_eq!(
        count(&first, |c| matches!(c, Change::CreateNetwork { .. })),
        2
    );
    assert_eq!(
        count(&first, |c| matches!(c, Change::CreateVxlan { .. })),
        2
    );
    // Remote endpoints only: the local one (same VTEP) gets no FDB entry.
    assert_eq!(count(&first, |c| matches!(c, Change::SetFdb { .. })), 3);
    assert_eq!(count(&first, |c| matches!(c, Change::SetNeigh { .. })), 3);
    assert_eq!(
        count(&first, |c| matches!(c, Change::AttachIface { .. })),
        2
    );
    assert_eq!(kernel.state, HostState::desired(&spec()));

    kernel.applied.clear();
    let second = reconcile(&mut kernel, &spec()).unwrap();
    assert!(second.is_empty(), "re-apply planned {second:?}");
    assert!(kernel.applied.is_empty());
}

#[test]
fn mtu_is_underlay_minus_fifty_everywhere() {
    let state = HostState::desired(&spec());
    let red = &state.networks["red"];
    assert_eq!(red.bridge.as_ref().unwrap().mtu, 1450);
    assert_eq!(red.vxlan.as_ref().unwrap().mtu, 1450);
    assert_eq!(state.sandboxes["r1"].ifaces["eth0"].mtu, 1450);
    let jumbo = OverlaySpec {
        underlay_mtu: 9000,
        ..spec()
    };
    assert_eq!(
        HostState::desired(&jumbo).sandboxes["r1"].ifaces["eth0"].mtu,
        8950
    );
}

#[test]
fn removing_a_hosts_endpoints_removes_only_their_entries() {
    let mut kernel = FakeKernel::default();
    reconcile(&mut kernel, &spec()).unwrap();
    let mut without_h2 = spec();
    without_h2.endpoints.retain(|e| e.vtep != ip("198.18.0.2"));
    kernel.applied.clear();
    let changes = reconcile(&mut kernel, &without_h2).unwrap();
    let mut expected = vec![
        Change::DelFdb {
            network: "blue".into(),
            mac: MacAddr::from_ipv4(ip("10.20.0.3")),
        },
        Change::DelNeigh {
            network: "blue".into(),
            ip: ip("10.20.0.3"),
        },
        Change::DelFdb {
            network: "red".into(),
            mac: MacAddr::from_ipv4(ip("10.10.0.3")),
        },
        Change::DelNeigh {
            network: "red".into(),
            ip: ip("10.10.0.3"),
        },
    ];
    expected.sort_by_key(|c| format!("{c:?}"));
    let mut got = changes.clone();
    got.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(got, expected);
    assert_eq!(kernel.state.networks["red"].fdb.len(), 1);
}

#[test]
fn adopts_partial_state_and_fills_only_the_gaps() {
    let full = HostState::desired(&spec());
    let mut partial = full.clone();
    partial.networks.remove("blue");
    partial.sandboxes.remove("b1");
    let red = partial.networks.get_mut("red").unwrap();
    red.fdb.pop_first();
    let mut kernel = FakeKernel::with_state(partial);
    let changes = reconcile(&mut kernel, &spec()).unwrap();
    assert!(!changes
        .iter()
        .any(|c| matches!(c, Change::CreateVxlan { network, .. } if network == "red")));
    assert!(!changes
        .iter()
        .any(|c| matches!(c, Change::AttachIface { sandbox, .. } if sandbox == "r1")));
    assert_eq!(
        count(
            &changes,
            |c| matches!(c, Change::SetFdb { network, .. } if network == "red")
        ),
        1
    );
    assert!(changes.contains(&Change::CreateNetwork {
        network: "blue".into()
    }));
    assert_eq!(kernel.state, full);
}

#[test]
fn a_vtep_move_replaces_the_entry() {
    let mut kernel = FakeKernel::default();
    reconcile(&mut kernel, &spec()).unwrap();
    let mut moved = spec();
    moved.endpoints[1].vtep = ip("198.18.0.9");
    let changes = reconcile(&mut kernel, &moved).unwrap();
    assert_eq!(
        changes,
        vec![Change::SetFdb {
            network: "red".into(),
            mac: MacAddr::from_ipv4(ip("10.10.0.3")),
            vtep: ip("198.18.0.9")
        }]
    );
}

#[test]
fn a_wrong_vxlan_device_is_replaced_with_its_entries() {
    let mut observed = HostState::desired(&spec());
    let red = observed.networks.get_mut("red").unwrap();
    red.vxlan.as_mut().unwrap().learning = true;
    let mut kernel = FakeKernel::with_state(observed);
    let changes = reconcile(&mut kernel, &spec()).unwrap();
    assert!(matches!(changes[0], Change::DeleteVxlan { .. }));
    assert!(matches!(changes[1], Change::CreateVxlan { .. }));
    assert_eq!(count(&changes, |c| matches!(c, Change::SetFdb { .. })), 2);
    assert_eq!(kernel.state, HostState::desired(&spec()));
}

#[test]
fn a_broken_sandbox_link_is_rebuilt_with_its_route() {
    let mut observed = HostState::desired(&spec());
    observed
        .sandboxes
        .get_mut("r1")
        .unwrap()
        .ifaces
        .get_mut("eth0")
        .unwrap()
        .mtu = 1500;
    let mut kernel = FakeKernel::with_state(observed);
    let changes = reconcile(&mut kernel, &spec()).unwrap();
    let kinds: Vec<&str> = changes
        .iter()
        .map(|c| match c {
            Change::DetachIface { .. } => "detach",
            Change::DeletePort { .. } => "delete-port",
            Change::AttachIface { .. } => "attach",
            Change::SetDefaultRoute { .. } => "route",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["detach", "delete-port", "attach", "route"]);
    assert_eq!(kernel.state, HostState::desired(&spec()));
}

#[test]
fn removing_networks_and_sandboxes_cleans_up() {
    let mut kernel = FakeKernel::default();
    reconcile(&mut kernel, &spec()).unwrap();
    let mut smaller = spec();
    smaller.networks.retain(|n| n.id == "red");
    smaller.endpoints.retain(|e| e.network == "red");
    smaller.sandboxes.retain(|s| s.id == "r1");
    let changes = reconcile(&mut kernel, &smaller).unwrap();
    assert!(changes.contains(&Change::DeleteSandbox {
        sandbox: "b1".into()
    }));
    assert!(changes.contains(&Change::DeleteNetwork {
        network: "blue".into()
    }));
    assert_eq!(kernel.state, HostState::desired(&smaller));
    let empty = OverlaySpec {
        networks: vec![],
        endpoints: vec![],
        sandboxes: vec![],
        ..spec()
    };
    reconcile(&mut kernel, &empty).unwrap();
    assert_eq!(kernel.state, HostState::default());
}

#[test]
fn invalid_specs_change_nothing() {
    let cases: Vec<(OverlaySpec, &str)> = vec![
        (
            OverlaySpec {
                sandboxes: vec![sandbox("x", &[("green", "10.30.0.2")])],
                ..spec()
            },
            "unknown network `green`",
        ),
        (
            OverlaySpec {
                sandboxes: vec![sandbox("x", &[("red", "10.99.0.2")])],
                ..spec()
            },
            "not inside subnet",
        ),
        (
            OverlaySpec {
                sandboxes: vec![
                    sandbox("x", &[("red", "10.10.0.7")]),
                    sandbox("y", &[("red", "10.10.0.7")]),
                ],
                ..spec()
            },
            "used twice",
        ),
        (
            OverlaySpec {
                sandboxes: vec![sandbox("x", &[("red", "10.10.0.1")])],
                ..spec()
            },
            "gateway",
        ),
        (
            OverlaySpec {
                sandboxes: vec![sandbox("a/b", &[])],
                ..spec()
            },
            "sandbox id",
        ),
        (
            OverlaySpec {
                networks: vec![network("red", 4096, 10), network("blue", 4096, 20)],
                ..spec()
            },
            "already used",
        ),
    ];
    for (bad, needle) in cases {
        let mut kernel = FakeKernel::default();
        let err = reconcile(&mut kernel, &bad).unwrap_err().to_string();
        assert!(err.contains(needle), "`{err}` lacks `{needle}`");
        assert!(kernel.applied.is_empty());
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    /// Any subset of endpoints and sandboxes, applied after any other:
    /// the kernel ends exactly at the spec, and a second apply is empty.
    fn subset_spec(endpoints: u8, sandboxes: u8) -> OverlaySpec {
        let mut s = spec();
        s.endpoints = (0..8u8)
            .filter(|i| endpoints & (1 << i) != 0)
            .map(|i| {
                endpoint(
                    if i % 2 == 0 { "red" } else { "blue" },
                    &format!("10.{}.0.{}", if i % 2 == 0 { 10 } else { 20 }, 100 + i),
                    &format!("198.18.0.{}", 2 + i % 3),
                )
            })
            .collect();
        s.sandboxes = (0..4u8)
            .filter(|i| sandboxes & (1 << i) != 0)
            .map(|i| {
                let red = format!("10.10.0.{}", 10 + i);
                let blue = format!("10.20.0.{}", 10 + i);
                let both = [("red", red.as_str()), ("blue", blue.as_str())];
                sandbox(&format!("s{i}"), &both[..1 + i as usize % 2])
            })
            .collect();
        s
    }

    proptest! {
        #[test]
        fn converges_from_any_previous_spec(a in (any::<u8>(), 0u8..16), b in (any::<u8>(), 0u8..16)) {
            let mut kernel = FakeKernel::default();
            reconcile(&mut kernel, &subset_spec(a.0, a.1)).unwrap();
            let target = subset_spec(b.0, b.1);
            reconcile(&mut kernel, &target).unwrap();
            prop_assert_eq!(&kernel.state, &HostState::desired(&target));
            prop_assert!(reconcile(&mut kernel, &target).unwrap().is_empty());
        }
    }
}

#[test]
fn gateways_get_forwarding_entries_but_no_neighbours() {
    let mut s = spec();
    let mac = MacAddr([0x02, 0x5e, 198, 18, 0, 9]);
    s.gateways = vec![
        crate::overlay::Gateway {
            network: "red".into(),
            mac,
            vtep: ip("198.18.0.9"),
        },
        // This host's own gateway needs no entry.
        crate::overlay::Gateway {
            network: "red".into(),
            mac: MacAddr([0x02, 0x5e, 198, 18, 0, 1]),
            vtep: ip("198.18.0.1"),
        },
    ];
    let state = HostState::desired(&s);
    let red = &state.networks["red"];
    assert_eq!(red.fdb.get(&mac), Some(&ip("198.18.0.9")));
    assert_eq!(red.fdb.len(), 3);
    assert_eq!(red.neigh.len(), 2);
}

#[test]
fn a_restarted_agent_keeps_only_the_entries_it_inherited() {
    let mut kernel = FakeKernel::default();
    // What an earlier agent left: h2's and h3's endpoints.
    reconcile(&mut kernel, &spec()).unwrap();
    let inherited = kernel.state.clone();
    // A new endpoint learned after the start, on h4.
    let mut learned = spec();
    learned
        .endpoints
        .push(endpoint("red", "10.10.0.9", "198.18.0.4"));
    reconcile_keeping(&mut kernel, &learned, Some(&inherited)).unwrap();
    // Gossip has not relearned h2 yet, and h4's endpoint is withdrawn: only
    // the inherited entries stay.
    let mut partial = spec();
    partial.endpoints.retain(|e| e.vtep != ip("198.18.0.2"));
    let changes = reconcile_keeping(&mut kernel, &partial, Some(&inherited)).unwrap();
    assert_eq!(
        changes,
        vec![
            Change::DelFdb {
                network: "red".into(),
                mac: MacAddr::from_ipv4(ip("10.10.0.9")),
            },
            Change::DelNeigh {
                network: "red".into(),
                ip: ip("10.10.0.9"),
            },
        ]
    );
    assert!(kernel.state.networks["red"]
        .fdb
        .contains_key(&MacAddr::from_ipv4(ip("10.10.0.3"))));
}

#[test]
fn a_network_the_kernel_refuses_does_not_stop_the_others() {
    // `blue` comes first in the plan; its VXLAN device is refused.
    let mut kernel = FakeKernel {
        refuse_vxlan: ["blue".to_string()].into(),
        ..FakeKernel::default()
    };
    let outcome = reconcile_each(&mut kernel, &spec(), None, &Default::default()).unwrap();
    let blue = Object::Network("blue".into());
    let b1 = Object::Sandbox("b1".into());
    assert!(matches!(
        outcome.failed[&blue],
        OverlayError::Netlink { .. }
    ));
    // The sandbox on it fails naming the network and its cause.
    let b1_error = outcome.failed[&b1].to_string();
    assert!(b1_error.contains("network `blue`"), "{b1_error}");
    assert!(b1_error.contains("File exists"), "{b1_error}");
    assert_eq!(outcome.failed.len(), 2);
    // Everything of `red` is built, after the failure.
    let desired = HostState::desired(&spec());
    assert_eq!(kernel.state.networks["red"], desired.networks["red"]);
    assert_eq!(kernel.state.sandboxes["r1"], desired.sandboxes["r1"]);
    assert!(outcome.done.contains(&Object::Network("red".into())));
    assert!(!outcome.done.contains(&blue));
    // No change of `blue` was tried after the one that failed.
    let blue_after_failure = kernel
        .applied
        .iter()
        .skip_while(|c| !matches!(c, Change::CreateVxlan { network, .. } if network == "blue"))
        .skip(1)
        .filter(|c| c.object() == blue)
        .count();
    assert_eq!(blue_after_failure, 0, "{:?}", kernel.applied);

    // Once the kernel takes it, the next pass builds what was missing.
    kernel.refuse_vxlan.clear();
    let outcome = reconcile_each(&mut kernel, &spec(), None, &Default::default()).unwrap();
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    assert_eq!(kernel.state, desired);
}

#[test]
fn held_objects_are_left_alone_and_their_sandboxes_wait() {
    let mut kernel = FakeKernel::default();
    let held = [(Object::Network("blue".into()), "File exists".to_string())].into();
    let outcome = reconcile_each(&mut kernel, &spec(), None, &held).unwrap();
    assert!(kernel
        .applied
        .iter()
        .all(|c| c.object() != Object::Network("blue".into())));
    assert!(outcome.held.contains(&Object::Network("blue".into())));
    assert!(matches!(
        outcome.failed[&Object::Sandbox("b1".into())],
        OverlayError::Needs { .. }
    ));
    assert!(kernel.state.sandboxes["r1"].ifaces.contains_key("eth0"));
}
