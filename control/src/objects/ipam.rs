//! Allocation for new overlay networks (`network create`): the VNI, the
//! subnet and the gateway, decided from the networks that exist. Pure: the
//! manager reads the networks ([`networks_and_guard`]), calls
//! [`plan_network`], and commits [`create_command`], which applies only if
//! the set of networks did not change meanwhile (see [`super::guards`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::guards::GuardVersions;
use super::network::{Network, NetworkError, NetworkSpec, OVERLAY_DRIVER, VNI_MAX, VNI_MIN};
use crate::store::{Command, Objects, StoreError};

/// Where default subnets come from (Docker's default swarm pool).
pub const DEFAULT_POOL: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 8);
/// The size of a default subnet.
pub const DEFAULT_SUBNET_PREFIX: u8 = 24;

/// The networks of one store view and the guards' versions in that same
/// view (see [`super::guards`]).
pub fn networks_and_guard(objects: &Objects) -> Result<(Vec<Network>, GuardVersions), StoreError> {
    Ok((objects.all::<Network>()?, GuardVersions::read(objects)))
}

/// The one write that commits a planned network: the network guard,
/// expecting the version read with the networks the plan saw, and the
/// network, expecting its id to be new; all or nothing. A
/// [`crate::store::Response::Conflict`] means another change to the set of
/// networks committed first: read and plan again.
pub fn create_command(network: &Network, guards: GuardVersions) -> Result<Command, StoreError> {
    Ok(Command::Batch(vec![
        guards.networks_changed(&network.id)?,
        Command::put(network, Some(0))?,
    ]))
}

/// What `network create` asks for, as the user typed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkRequest {
    pub name: String,
    /// `None` means overlay.
    pub driver: Option<String>,
    /// CIDR; `None` takes the first free /24 of [`DEFAULT_POOL`].
    pub subnet: Option<String>,
    /// `None` takes the subnet's first host address.
    pub gateway: Option<String>,
    pub mtu: Option<u32>,
    pub labels: BTreeMap<String, String>,
    /// Makes the swarm's ingress network (`network create --ingress`, or
    /// the leader's default one); there is at most one.
    pub ingress: bool,
    /// `--attachable`: every overlay takes any service in shoal, so it only
    /// matters to refuse it on an ingress network, as Swarm does.
    pub attachable: bool,
}

/// Why a network cannot be created; each message says what to change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetworkCreateError {
    #[error("invalid network name `{0}`: use 1-64 letters, digits, `_`, `.` or `-`, starting with a letter or digit")]
    BadName(String),
    #[error("driver `{0}` is not supported; shoal networks are overlay networks")]
    UnsupportedDriver(String),
    #[error("network with name {0} already exists")]
    NameTaken(String),
    #[error("invalid subnet `{0}`: use IPv4 CIDR notation such as 10.1.2.0/24")]
    BadSubnet(String),
    #[error("invalid subnet `{given}`: host bits are set; did you mean {suggested}?")]
    HostBitsSet { given: String, suggested: Ipv4Net },
    #[error("subnet {subnet} overlaps subnet {other_subnet} of network `{other}`; choose another --subnet")]
    Overlap {
        subnet: Ipv4Net,
        other_subnet: Ipv4Net,
        other: String,
    },
    #[error("the default address pool {pool} has no free /{prefix} left; give a free subnet with --subnet")]
    PoolExhausted { pool: Ipv4Net, prefix: u8 },
    #[error("invalid gateway `{0}`: use an IPv4 address such as 10.1.2.1")]
    BadGateway(String),
    #[error("--gateway needs --subnet: give the subnet the gateway belongs to")]
    GatewayWithoutSubnet,
    #[error("every VNI from {VNI_MIN} to {VNI_MAX} is in use; remove a network first")]
    VniExhausted,
    #[error("subnet {subnet} overlaps the underlay: node `{node}` is at {addr}/32, inside {subnet}, and its traffic would go into the overlay; choose another --subnet")]
    UnderlayOverlap {
        subnet: Ipv4Net,
        node: String,
        addr: std::net::Ipv4Addr,
    },
    #[error("ingress network cannot be attachable")]
    IngressAttachable,
    #[error("ingress network ({0}) is already present")]
    IngressPresent(String),
    #[error(transparent)]
    Invalid(#[from] NetworkError),
}

/// The network `request` becomes next to `existing`, with id `id`, or why
/// it cannot be created. Refuses a taken name, a driver other than overlay
/// and a subnet overlapping another network's; takes the lowest free VNI.
pub fn plan_network(
    existing: &[Network],
    request: &NetworkRequest,
    id: String,
    created_at: u64,
) -> Result<Network, NetworkCreateError> {
    check_name(&request.name)?;
    if let Some(driver) = request.driver.as_deref().filter(|d| *d != OVERLAY_DRIVER) {
        return Err(NetworkCreateError::UnsupportedDriver(driver.to_string()));
    }
    if request.ingress && request.attachable {
        return Err(NetworkCreateError::IngressAttachable);
    }
    if existing.iter().any(|n| n.name == request.name) {
        return Err(NetworkCreateError::NameTaken(request.name.clone()));
    }
    if let Some(ingress) = existing.iter().find(|n| request.ingress && n.spec.ingress) {
        return Err(NetworkCreateError::IngressPresent(ingress.id.clone()));
    }
    let subnet = match request.subnet.as_deref() {
        Some(text) => {
            let subnet = parse_subnet(text)?;
            check_no_overlap(existing, subnet)?;
            subnet
        }
        None if request.gateway.is_some() => return Err(NetworkCreateError::GatewayWithoutSubnet),
        None => free_subnet(existing, DEFAULT_POOL, DEFAULT_SUBNET_PREFIX)?,
    };
    let gateway = match request.gateway.as_deref() {
        Some(text) => text
            .trim()
            .parse()
            .map_err(|_| NetworkCreateError::BadGateway(text.to_string()))?,
        None => first_host(subnet),
    };
    let spec = NetworkSpec {
        id: id.clone(),
        vni: lowest_free_vni(existing.iter().map(|n| n.spec.vni))?,
        subnet,
        gateway,
        mtu: request.mtu,
        ingress: request.ingress,
    };
    spec.validate().map_err(|e| e.naming(&request.name))?;
    Ok(Network {
        id,
        name: request.name.clone(),
        driver: OVERLAY_DRIVER.to_string(),
        spec,
        labels: request.labels.clone(),
        created_at,
    })
}

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, here at most 64.
fn check_name(name: &str) -> Result<(), NetworkCreateError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(NetworkCreateError::BadName(name.to_string()))
    }
}

/// Parses a user's CIDR, refusing host bits rather than silently clearing
/// them (`10.1.2.3/24` is refused with `10.1.2.0/24` suggested).
pub fn parse_subnet(text: &str) -> Result<Ipv4Net, NetworkCreateError> {
    let net: Ipv4Net = text
        .trim()
        .parse()
        .map_err(|_| NetworkCreateError::BadSubnet(text.to_string()))?;
    if net.addr() != net.network() {
        return Err(NetworkCreateError::HostBitsSet {
            given: text.to_string(),
            suggested: net.trunc(),
        });
    }
    Ok(net)
}

/// Whether two subnets share an address.
pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn check_no_overlap(existing: &[Network], subnet: Ipv4Net) -> Result<(), NetworkCreateError> {
    match existing.iter().find(|n| overlaps(n.spec.subnet, subnet)) {
        Some(other) => Err(NetworkCreateError::Overlap {
            subnet,
            other_subnet: other.spec.subnet,
            other: other.name.clone(),
        }),
        None => Ok(()),
    }
}

/// Refuses `subnet` when it holds a node's underlay address (`nodes`:
/// hostname and advertise address): the node could no longer reach the
/// others through it.
pub fn check_underlay<'a>(
    subnet: Ipv4Net,
    nodes: impl IntoIterator<Item = (&'a str, std::net::Ipv4Addr)>,
) -> Result<(), NetworkCreateError> {
    match nodes.into_iter().find(|(_, addr)| subnet.contains(addr)) {
        Some((node, addr)) => Err(NetworkCreateError::UnderlayOverlap {
            subnet,
            node: node.to_string(),
            addr,
        }),
        None => Ok(()),
    }
}

/// The first `/prefix` of `pool` (in address order) that overlaps no
/// existing network's subnet.
pub fn free_subnet(
    existing: &[Network],
    pool: Ipv4Net,
    prefix: u8,
) -> Result<Ipv4Net, NetworkCreateError> {
    let exhausted = || NetworkCreateError::PoolExhausted { pool, prefix };
    if prefix < pool.prefix_len() || prefix > 32 {
        return Err(exhausted());
    }
    let size = 1u64 << (32 - prefix);
    let end = u64::from(u32::from(pool.broadcast())) + 1;
    let mut start = u64::from(u32::from(pool.network()));
    while start + size <= end {
        let candidate =
            Ipv4Net::new(Ipv4Addr::from(start as u32), prefix).map_err(|_| exhausted())?;
        match existing
            .iter()
            .map(|n| n.spec.subnet)
            .find(|s| overlaps(*s, candidate))
        {
            None => return Ok(candidate),
            // Skip past the subnet in the way, to the next aligned block.
            Some(taken) => {
                let after = u64::from(u32::from(taken.broadcast())) + 1;
                start = after.div_ceil(size) * size;
            }
        }
    }
    Err(exhausted())
}

/// The lowest VNI from [`VNI_MIN`] that no network uses.
pub fn lowest_free_vni(used: impl IntoIterator<Item = u32>) -> Result<u32, NetworkCreateError> {
    let used: BTreeSet<u32> = used.into_iter().collect();
    lowest_free(&used, VNI_MIN, VNI_MAX).ok_or(NetworkCreateError::VniExhausted)
}

/// The lowest number of `min..=max` not in `used`.
fn lowest_free(used: &BTreeSet<u32>, min: u32, max: u32) -> Option<u32> {
    let mut candidate = min;
    for n in used.range(min..) {
        if *n != candidate {
            break;
        }
        candidate = candidate.checked_add(1)?;
    }
    (candidate <= max).then_some(candidate)
}

/// The subnet's first host address (`10.0.1.1` for `10.0.1.0/24`).
fn first_host(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()).saturating_add(1))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_subnet_holding_a_nodes_address_is_refused_naming_both() {
        let nodes = [
            ("h1", "198.18.0.1".parse().unwrap()),
            ("h2", "198.18.0.2".parse().unwrap()),
        ];
        let subnet: Ipv4Net = "198.18.0.0/24".parse().unwrap();
        let error = check_underlay(subnet, nodes).unwrap_err();
        assert!(
            matches!(error, NetworkCreateError::UnderlayOverlap { ref node, .. } if node == "h1")
        );
        let text = error.to_string();
        assert!(
            text.contains("198.18.0.0/24") && text.contains("198.18.0.1/32"),
            "{text}"
        );
        let elsewhere: Ipv4Net = "10.9.0.0/24".parse().unwrap();
        assert!(check_underlay(elsewhere, nodes).is_ok());
    }

    fn request(name: &str) -> NetworkRequest {
        NetworkRequest {
            name: name.into(),
            ..Default::default()
        }
    }

    fn with_subnet(name: &str, subnet: &str) -> NetworkRequest {
        NetworkRequest {
            subnet: Some(subnet.into()),
            ..request(name)
        }
    }

    /// Plans `req` next to `nets` and keeps it, as a manager would commit it.
    fn create(
        nets: &mut Vec<Network>,
        req: &NetworkRequest,
    ) -> Result<Network, NetworkCreateError> {
        let id = format!("id{}", nets.len() + 1000);
        let net = plan_network(nets, req, id, 0)?;
        nets.push(net.clone());
        Ok(net)
    }

    #[test]
    fn the_first_networks_take_the_first_vnis_and_24s_of_the_pool() {
        let mut nets = Vec::new();
        let a = create(&mut nets, &request("a")).unwrap();
        assert_eq!(
            (
                a.spec.vni,
                a.spec.subnet.to_string(),
                a.spec.gateway.to_string()
            ),
            (4096, "10.0.0.0/24".into(), "10.0.0.1".into())
        );
        assert_eq!(a.spec.id, a.id);
        assert_eq!(a.driver, "overlay");
        let b = create(&mut nets, &request("b")).unwrap();
        assert_eq!(
            (b.spec.vni, b.spec.subnet.to_string()),
            (4097, "10.0.1.0/24".into())
        );
    }

    #[test]
    fn one_ingress_network_at_most_and_never_attachable() {
        let ingress = |name: &str| NetworkRequest {
            ingress: true,
            ..request(name)
        };
        let mut nets = Vec::new();
        let first = create(&mut nets, &ingress("mesh")).unwrap();
        assert!(first.spec.ingress);
        let second = create(&mut nets, &ingress("mesh2")).unwrap_err();
        assert_eq!(
            second.to_string(),
            format!("ingress network ({}) is already present", first.id)
        );
        // Other networks are still created next to it.
        assert!(!create(&mut nets, &request("app")).unwrap().spec.ingress);
        nets.clear();
        let attachable = NetworkRequest {
            attachable: true,
            ..ingress("mesh")
        };
        assert_eq!(
            create(&mut nets, &attachable).unwrap_err(),
            NetworkCreateError::IngressAttachable
        );
        assert_eq!(
            NetworkCreateError::IngressAttachable.to_string(),
            "ingress network cannot be attachable"
        );
        let plain = NetworkRequest {
            attachable: true,
            ..request("app")
        };
        assert!(create(&mut nets, &plain).is_ok());
    }

    #[test]
    fn the_lowest_free_vni_is_taken_skipping_used_ones() {
        assert_eq!(lowest_free_vni([]), Ok(4096));
        assert_eq!(lowest_free_vni([4096, 4097, 4099]), Ok(4098));
        assert_eq!(lowest_free_vni([4097, 4098]), Ok(4096));
        assert_eq!(lowest_free_vni([1, 2, 4095, 4096]), Ok(4097));
        let all: BTreeSet<u32> = (10..=20).collect();
        assert_eq!(lowest_free(&all, 10, 20), None);
        assert_eq!(lowest_free(&all, 10, 21), Some(21));
        assert_eq!(
            lowest_free(&BTreeSet::from([u32::MAX]), u32::MAX, u32::MAX),
            None
        );
    }

    #[test]
    fn removed_networks_free_their_vni_and_subnet() {
        let mut nets = Vec::new();
        for name in ["a", "b", "c"] {
            create(&mut nets, &request(name)).unwrap();
        }
        nets.retain(|n| n.name != "b");
        let d = create(&mut nets, &request("d")).unwrap();
        assert_eq!(
            (d.spec.vni, d.spec.subnet.to_string()),
            (4097, "10.0.1.0/24".into())
        );
    }

    #[test]
    fn default_subnets_skip_past_explicit_ones() {
        let mut nets = Vec::new();
        create(&mut nets, &with_subnet("big", "10.0.0.0/16")).unwrap();
        create(&mut nets, &with_subnet("odd", "10.1.0.0/23")).unwrap();
        let next = create(&mut nets, &request("next")).unwrap();
        assert_eq!(next.spec.subnet.to_string(), "10.1.2.0/24");
        // An explicit subnet outside the pool does not get in the way.
        create(&mut nets, &with_subnet("other", "192.168.7.0/24")).unwrap();
        assert_eq!(
            create(&mut nets, &request("n2"))
                .unwrap()
                .spec
                .subnet
                .to_string(),
            "10.1.3.0/24"
        );
    }

    #[test]
    fn an_exhausted_pool_is_an_error_that_says_what_to_do() {
        let mut nets = Vec::new();
        let pool: Ipv4Net = "10.9.0.0/23".parse().unwrap();
        create(&mut nets, &with_subnet("a", "10.9.0.0/24")).unwrap();
        assert_eq!(
            free_subnet(&nets, pool, 24).unwrap().to_string(),
            "10.9.1.0/24"
        );
        create(&mut nets, &with_subnet("b", "10.9.1.0/25")).unwrap();
        assert_eq!(
            free_subnet(&nets, pool, 24),
            Err(NetworkCreateError::PoolExhausted { pool, prefix: 24 })
        );
        let mut full = Vec::new();
        create(&mut full, &with_subnet("all", "10.0.0.0/8")).unwrap();
        let err = create(&mut full, &request("more")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the default address pool 10.0.0.0/8 has no free /24 left; give a free subnet with --subnet"
        );
    }

    #[test]
    fn overlapping_subnets_are_refused_naming_the_other_network() {
        let mut nets = Vec::new();
        create(&mut nets, &with_subnet("web", "10.1.2.0/24")).unwrap();
        for wider_or_narrower in ["10.1.0.0/16", "10.1.2.128/25", "10.1.2.0/24"] {
            let err = create(&mut nets, &with_subnet("x", wider_or_narrower)).unwrap_err();
            assert!(matches!(err, NetworkCreateError::Overlap { .. }), "{err}");
        }
        let err = create(&mut nets, &with_subnet("x", "10.1.0.0/16")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "subnet 10.1.0.0/16 overlaps subnet 10.1.2.0/24 of network `web`; choose another --subnet"
        );
        assert!(create(&mut nets, &with_subnet("x", "10.1.3.0/24")).is_ok());
    }

    #[test]
    fn subnets_must_be_ipv4_cidrs_without_host_bits() {
        let err = parse_subnet("10.1.2.3/24").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid subnet `10.1.2.3/24`: host bits are set; did you mean 10.1.2.0/24?"
        );
        for bad in [
            "10.1.2.0",
            "banana",
            "10.1.2.0/33",
            "fd00::/64",
            "300.1.2.0/24",
        ] {
            assert_eq!(
                parse_subnet(bad),
                Err(NetworkCreateError::BadSubnet(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            parse_subnet("banana").unwrap_err().to_string(),
            "invalid subnet `banana`: use IPv4 CIDR notation such as 10.1.2.0/24"
        );
        let tiny = create(&mut Vec::new(), &with_subnet("t", "10.1.2.0/31")).unwrap_err();
        assert!(matches!(
            tiny,
            NetworkCreateError::Invalid(NetworkError::SubnetTooSmall { .. })
        ));
    }

    #[test]
    fn gateways_default_to_the_first_host_and_must_be_in_the_subnet() {
        let mut nets = Vec::new();
        let req = NetworkRequest {
            gateway: Some("10.5.0.254".into()),
            ..with_subnet("g", "10.5.0.0/24")
        };
        assert_eq!(
            create(&mut nets, &req).unwrap().spec.gateway.to_string(),
            "10.5.0.254"
        );
        let outside = NetworkRequest {
            gateway: Some("10.6.1.1".into()),
            ..with_subnet("h", "10.6.0.0/24")
        };
        assert!(matches!(
            create(&mut nets, &outside),
            Err(NetworkCreateError::Invalid(
                NetworkError::GatewayOutsideSubnet { .. }
            ))
        ));
        let garbage = NetworkRequest {
            gateway: Some("gw".into()),
            ..with_subnet("h", "10.6.0.0/24")
        };
        assert_eq!(
            create(&mut nets, &garbage),
            Err(NetworkCreateError::BadGateway("gw".into()))
        );
        let alone = NetworkRequest {
            gateway: Some("10.7.0.1".into()),
            ..request("h")
        };
        assert_eq!(
            create(&mut nets, &alone),
            Err(NetworkCreateError::GatewayWithoutSubnet)
        );
    }

    #[test]
    fn names_drivers_and_mtus_are_checked() {
        let mut nets = Vec::new();
        create(&mut nets, &request("web")).unwrap();
        assert_eq!(
            create(&mut nets, &request("web")).unwrap_err().to_string(),
            "network with name web already exists"
        );
        let bridge = NetworkRequest {
            driver: Some("bridge".into()),
            ..request("b")
        };
        assert_eq!(
            create(&mut nets, &bridge).unwrap_err().to_string(),
            "driver `bridge` is not supported; shoal networks are overlay networks"
        );
        let overlay = NetworkRequest {
            driver: Some("overlay".into()),
            ..request("o")
        };
        assert!(create(&mut nets, &overlay).is_ok());
        for bad in ["", "-x", "a b", "a/b", &"n".repeat(65)] {
            assert!(
                matches!(
                    create(&mut nets, &request(bad)),
                    Err(NetworkCreateError::BadName(_))
                ),
                "{bad}"
            );
        }
        let small = NetworkRequest {
            mtu: Some(500),
            ..request("m")
        };
        assert!(matches!(
            create(&mut nets, &small),
            Err(NetworkCreateError::Invalid(
                NetworkError::MtuTooSmall { .. }
            ))
        ));
        let fine = NetworkRequest {
            mtu: Some(1400),
            ..request("m")
        };
        assert_eq!(create(&mut nets, &fine).unwrap().spec.mtu, Some(1400));
    }

    /// Through a real (one-manager) Raft store: two creates planned from one
    /// read pick the same VNI and /24, and only the first commits.
    #[tokio::test]
    async fn of_two_creates_planned_from_one_read_only_the_first_commits() {
        use std::sync::Arc;

        use crate::raft::{PlaintextConnector, RaftNode};
        use crate::store::{Plain, Response};

        let dir = tempfile::tempdir().unwrap();
        let raft = RaftNode::open(
            dir.path(),
            1,
            "127.0.0.1:1",
            Arc::new(PlaintextConnector),
            Arc::new(Plain),
        )
        .await
        .unwrap();
        raft.initialize().await.unwrap();
        let (nets, guard) = networks_and_guard(&raft.read()).unwrap();
        assert_eq!((nets.len(), guard), (0, GuardVersions::default()));
        let a = plan_network(&nets, &request("a"), "ida".into(), 0).unwrap();
        let b = plan_network(&nets, &request("b"), "idb".into(), 0).unwrap();
        assert_eq!(a.spec.vni, b.spec.vni, "both saw the same free VNI");
        let first = raft
            .write(create_command(&a, guard).unwrap())
            .await
            .unwrap();
        assert!(first.is_ok(), "{first:?}");
        let second = raft
            .write(create_command(&b, guard).unwrap())
            .await
            .unwrap();
        assert!(matches!(second, Response::Conflict { .. }), "{second:?}");
        // Read and plan again: the second create gets the next VNI and /24.
        let (nets, guard) = networks_and_guard(&raft.read()).unwrap();
        assert_eq!(nets.len(), 1);
        let b = plan_network(&nets, &request("b"), "idb".into(), 0).unwrap();
        let third = raft
            .write(create_command(&b, guard).unwrap())
            .await
            .unwrap();
        assert!(third.is_ok(), "{third:?}");
        let (nets, _) = networks_and_guard(&raft.read()).unwrap();
        assert_eq!(
            nets.iter()
                .map(|n| (n.name.as_str(), n.spec.vni, n.spec.subnet.to_string()))
                .collect::<Vec<_>>(),
            vec![
                ("a", 4096, "10.0.0.0/24".into()),
                ("b", 4097, "10.0.1.0/24".into())
            ]
        );
        raft.shutdown().await.unwrap();
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// `None`: the default pool; `Some((second, third, prefix))`: an
        /// explicit `10.second.third.0/prefix` (host bits cleared).
        Create(Option<(u8, u8, u8)>),
        /// Removes the network at this index (modulo the count).
        Remove(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Create(None)),
            2 => (0u8..3, any::<u8>(), 16u8..=28).prop_map(|s| Op::Create(Some(s))),
            2 => any::<usize>().prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// Creates and removes in any order never give two networks an
        /// overlapping subnet or the same VNI; every VNI is the lowest free
        /// one and every default subnet the first free /24 at its creation.
        #[test]
        fn allocations_never_collide(ops in proptest::collection::vec(op(), 1..60)) {
            let mut nets: Vec<Network> = Vec::new();
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Remove(at) if !nets.is_empty() => {
                        let at = at % nets.len();
                        nets.remove(at);
                    }
                    Op::Remove(_) => {}
                    Op::Create(explicit) => {
                        let subnet = explicit.map(|(b, c, prefix)| {
                            Ipv4Net::new(Ipv4Addr::new(10, b, c, 0), prefix)
                                .unwrap()
                                .trunc()
                                .to_string()
                        });
                        let req = NetworkRequest {
                            subnet: subnet.clone(),
                            ..request(&format!("n{i}"))
                        };
                        let before = nets.clone();
                        match plan_network(&nets, &req, format!("id{i}"), 0) {
                            Ok(net) => {
                                let vnis = before.iter().map(|n| n.spec.vni);
                                prop_assert_eq!(Ok(net.spec.vni), lowest_free_vni(vnis));
                                if subnet.is_none() {
                                    prop_assert_eq!(net.spec.subnet.prefix_len(), 24);
                                    // Every lower /24 of the pool was taken.
                                    let mut lower = u32::from(DEFAULT_POOL.network());
                                    while lower < u32::from(net.spec.subnet.network()) {
                                        let block = Ipv4Net::new(Ipv4Addr::from(lower), 24).unwrap();
                                        prop_assert!(before.iter().any(|n| overlaps(n.spec.subnet, block)));
                                        lower += 256;
                                    }
                                }
                                nets.push(net);
                            }
                            Err(NetworkCreateError::Overlap { subnet: s, other_subnet, .. }) => {
                                prop_assert!(subnet.is_some());
                                prop_assert!(overlaps(s, other_subnet));
                            }
                            Err(e) => prop_assert!(false, "unexpected refusal: {}", e),
                        }
                    }
                }
                for (j, a) in nets.iter().enumerate() {
                    prop_assert!(a.spec.validate().is_ok());
                    for b in &nets[..j] {
                        prop_assert_ne!(a.spec.vni, b.spec.vni);
                        prop_assert!(
                            !overlaps(a.spec.subnet, b.spec.subnet),
                            "{} overlaps {}", a.spec.subnet, b.spec.subnet
                        );
                    }
                }
            }
        }
    }
}
