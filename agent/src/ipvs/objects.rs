//! IPVS objects as shoal uses them: virtual services (by address, port and
//! protocol, or by firewall mark), their schedulers with flags, real
//! servers (destinations) with a forwarding method, and the connection
//! timeouts. Each turns into the attributes of a request and back from the
//! kernel's answers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::DecodeError;
use serde::{Deserialize, Serialize};

use super::wire::{self, exact, find, Attr};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;
const IPPROTO_SCTP: u16 = 132;

/// `IP_VS_SVC_F_*`.
const F_PERSISTENT: u32 = 0x1;
const F_HASHED: u32 = 0x2;
const F_ONEPACKET: u32 = 0x4;
const F_SCHED1: u32 = 0x8;
const F_SCHED2: u32 = 0x10;
/// The bits a request sets; HASHED is the kernel's own.
const F_SETTABLE: u32 = F_PERSISTENT | F_ONEPACKET | F_SCHED1 | F_SCHED2 | 0x20;

/// `IP_VS_CONN_F_FWD_MASK` and its methods.
const FWD_MASK: u32 = 0x7;

/// The transport protocol of a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn number(self) -> u16 {
        match self {
            Protocol::Tcp => IPPROTO_TCP,
            Protocol::Udp => IPPROTO_UDP,
            Protocol::Sctp => IPPROTO_SCTP,
        }
    }

    fn from_number(n: u16) -> Result<Protocol, DecodeError> {
        match n {
            IPPROTO_TCP => Ok(Protocol::Tcp),
            IPPROTO_UDP => Ok(Protocol::Udp),
            IPPROTO_SCTP => Ok(Protocol::Sctp),
            other => Err(format!("IPVS service with unknown protocol {other}").into()),
        }
    }

    /// As `ipvsadm -Ln` prints it.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

/// What identifies a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKey {
    /// Packets to this address and port of this protocol.
    Addr {
        protocol: Protocol,
        addr: IpAddr,
        port: u16,
    },
    /// Packets carrying this firewall mark (set by nftables/iptables), of
    /// this address family.
    Fwmark { mark: u32, ipv6: bool },
}

impl ServiceKey {
    fn family(&self) -> u16 {
        match self {
            ServiceKey::Addr { addr, .. } => family_of(addr),
            ServiceKey::Fwmark { ipv6, .. } => {
                if *ipv6 {
                    AF_INET6
                } else {
                    AF_INET
                }
            }
        }
    }

    /// The attributes naming the service (what DEL and GET_DEST need).
    pub fn attrs(&self) -> Vec<Attr> {
        let mut attrs = vec![Attr::u16(wire::svc::AF, self.family())];
        match self {
            ServiceKey::Addr {
                protocol,
                addr,
                port,
            } => {
                attrs.push(Attr::u16(wire::svc::PROTOCOL, protocol.number()));
                attrs.push(Attr::Bytes(wire::svc::ADDR, addr_bytes(addr)));
                attrs.push(Attr::port(wire::svc::PORT, *port));
            }
            ServiceKey::Fwmark { mark, .. } => {
                attrs.push(Attr::u32(wire::svc::FWMARK, *mark));
            }
        }
        attrs
    }

    fn parse(attrs: &[Attr]) -> Result<ServiceKey, DecodeError> {
        let af = u16_attr(attrs, wire::svc::AF, "service address family")?;
        let ipv6 = match af {
            AF_INET => false,
            AF_INET6 => true,
            other => return Err(format!("IPVS service with address family {other}").into()),
        };
        if let Some(mark) = opt_u32(attrs, wire::svc::FWMARK)? {
            if mark != 0 {
                return Ok(ServiceKey::Fwmark { mark, ipv6 });
            }
        }
        let protocol = Protocol::from_number(u16_attr(attrs, wire::svc::PROTOCOL, "protocol")?)?;
        let addr = parse_addr(value(attrs, wire::svc::ADDR, "service address")?, ipv6)?;
        let port = port_attr(attrs, wire::svc::PORT, "service port")?;
        Ok(ServiceKey::Addr {
            protocol,
            addr,
            port,
        })
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceKey::Addr {
                protocol,
                addr: IpAddr::V6(addr),
                port,
            } => write!(f, "{} [{addr}]:{port}", protocol.label()),
            ServiceKey::Addr {
                protocol,
                addr,
                port,
            } => write!(f, "{} {addr}:{port}", protocol.label()),
            ServiceKey::Fwmark { mark, ipv6 } => {
                write!(f, "FWM {mark}{}", if *ipv6 { " IPv6" } else { "" })
            }
        }
    }
}

/// How a service picks a real server for a new connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "name")]
pub enum Scheduler {
    /// `rr`.
    RoundRobin,
    /// `sh`: a hash of the source address (and port with `port`); with
    /// `fallback`, a server of weight 0 hands its share to the next one.
    SourceHash {
        #[serde(default)]
        fallback: bool,
        #[serde(default)]
        port: bool,
    },
    /// `mh`: Maglev hashing over the source address (and port with `port`),
    /// so every node with the same servers picks the same one; `fallback`
    /// as for `sh`.
    Maglev {
        #[serde(default)]
        fallback: bool,
        #[serde(default)]
        port: bool,
    },
    /// Any other kernel scheduler, by name.
    Other { scheduler: String },
}

impl Scheduler {
    /// The kernel's name and the `IP_VS_SVC_F_SCHED*` bits.
    fn to_kernel(&self) -> (&str, u32) {
        let bits = |fallback: bool, port: bool| {
            (if fallback { F_SCHED1 } else { 0 }) | (if port { F_SCHED2 } else { 0 })
        };
        match self {
            Scheduler::RoundRobin => ("rr", 0),
            Scheduler::SourceHash { fallback, port } => ("sh", bits(*fallback, *port)),
            Scheduler::Maglev { fallback, port } => ("mh", bits(*fallback, *port)),
            Scheduler::Other { scheduler } => (scheduler, 0),
        }
    }

    fn from_kernel(name: &str, flags: u32) -> Scheduler {
        let fallback = flags & F_SCHED1 != 0;
        let port = flags & F_SCHED2 != 0;
        match name {
            "rr" => Scheduler::RoundRobin,
            "sh" => Scheduler::SourceHash { fallback, port },
            "mh" => Scheduler::Maglev { fallback, port },
            other => Scheduler::Other {
                scheduler: other.to_string(),
            },
        }
    }

    /// As `ipvsadm -Ln` prints it: `mh (mh-fallback,mh-port)`.
    pub fn label(&self) -> String {
        let (name, bits) = self.to_kernel();
        let mut flags = Vec::new();
        if bits & F_SCHED1 != 0 {
            flags.push(format!("{name}-fallback"));
        }
        if bits & F_SCHED2 != 0 {
            flags.push(format!("{name}-port"));
        }
        if flags.is_empty() {
            name.to_string()
        } else {
            format!("{name} ({})", flags.join(","))
        }
    }
}

/// A virtual service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub key: ServiceKey,
    pub scheduler: Scheduler,
    /// Persistence: a client returns to the same server for this many
    /// seconds (`ipvsadm -p`).
    #[serde(default)]
    pub persistent: Option<u32>,
    /// Schedule each UDP datagram on its own (`ipvsadm -o`).
    #[serde(default)]
    pub one_packet: bool,
    /// The netmask persistence groups clients by (0xffffffff = one address).
    #[serde(default = "all_ones")]
    pub netmask: u32,
}

fn all_ones() -> u32 {
    u32::MAX
}

impl Service {
    fn flags(&self) -> u32 {
        let (_, sched) = self.scheduler.to_kernel();
        sched
            | if self.persistent.is_some() {
                F_PERSISTENT
            } else {
                0
            }
            | if self.one_packet { F_ONEPACKET } else { 0 }
    }

    /// Every attribute NEW_SERVICE and SET_SERVICE need (the kernel refuses
    /// a partial one).
    pub fn attrs(&self) -> Vec<Attr> {
        let mut attrs = self.key.attrs();
        let (name, _) = self.scheduler.to_kernel();
        attrs.push(Attr::string(wire::svc::SCHED_NAME, name));
        let mut flags = self.flags().to_ne_bytes().to_vec();
        flags.extend_from_slice(&F_SETTABLE.to_ne_bytes());
        attrs.push(Attr::Bytes(wire::svc::FLAGS, flags));
        attrs.push(Attr::u32(wire::svc::TIMEOUT, self.persistent.unwrap_or(0)));
        attrs.push(Attr::u32(wire::svc::NETMASK, self.netmask));
        attrs
    }

    /// A service from the attributes nested in `IPVS_CMD_ATTR_SERVICE`.
    pub fn parse(attrs: &[Attr]) -> Result<Service, DecodeError> {
        let key = ServiceKey::parse(attrs)?;
        let name = string_attr(attrs, wire::svc::SCHED_NAME, "scheduler")?;
        let flags_value = value(attrs, wire::svc::FLAGS, "service flags")?;
        let flags = u32::from_ne_bytes(exact::<4>(
            flags_value.get(..4).unwrap_or(flags_value),
            "service flags",
        )?) & !F_HASHED;
        let timeout = opt_u32(attrs, wire::svc::TIMEOUT)?.unwrap_or(0);
        let netmask = opt_u32(attrs, wire::svc::NETMASK)?.unwrap_or(u32::MAX);
        Ok(Service {
            key,
            scheduler: Scheduler::from_kernel(&name, flags),
            persistent: (flags & F_PERSISTENT != 0).then_some(timeout),
            one_packet: flags & F_ONEPACKET != 0,
            netmask,
        })
    }
}

/// How packets reach a real server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forward {
    /// NAT: the destination address is rewritten (`-m`).
    #[default]
    Masq,
    /// The server is this host.
    Local,
    /// IP-in-IP to the server (`-i`).
    Tunnel,
    /// Direct routing: the frame goes to the server's MAC unchanged (`-g`).
    Route,
}

impl Forward {
    fn bits(self) -> u32 {
        match self {
            Forward::Masq => 0,
            Forward::Local => 1,
            Forward::Tunnel => 2,
            Forward::Route => 3,
        }
    }

    fn from_bits(bits: u32) -> Result<Forward, DecodeError> {
        match bits & FWD_MASK {
            0 => Ok(Forward::Masq),
            1 => Ok(Forward::Local),
            2 => Ok(Forward::Tunnel),
            3 => Ok(Forward::Route),
            other => Err(format!("IPVS destination with forwarding method {other}").into()),
        }
    }

    /// As `ipvsadm -Ln` prints it.
    pub fn label(self) -> &'static str {
        match self {
            Forward::Masq => "Masq",
            Forward::Local => "Local",
            Forward::Tunnel => "Tunnel",
            Forward::Route => "Route",
        }
    }
}

/// A real server of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub addr: IpAddr,
    pub port: u16,
    #[serde(default)]
    pub forward: Forward,
    #[serde(default = "one")]
    pub weight: u32,
    /// Connection limits (0 = none).
    #[serde(default)]
    pub upper_threshold: u32,
    #[serde(default)]
    pub lower_threshold: u32,
    /// What the kernel counts; never sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<Connections>,
}

fn one() -> u32 {
    1
}

/// A real server's connection counts, as the kernel reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connections {
    pub active: u32,
    pub inactive: u32,
    pub persistent: u32,
    /// Connections ever scheduled to it (from the 64-bit stats).
    pub total: u64,
}

impl Destination {
    /// A server of weight 1 forwarded by `forward`.
    pub fn new(addr: IpAddr, port: u16, forward: Forward) -> Destination {
        Destination {
            addr,
            port,
            forward,
            weight: 1,
            upper_threshold: 0,
            lower_threshold: 0,
            connections: None,
        }
    }

    /// The attributes that name it (DEL_DEST).
    pub fn key_attrs(&self) -> Vec<Attr> {
        vec![
            Attr::u16(wire::dest::ADDR_FAMILY, family_of(&self.addr)),
            Attr::Bytes(wire::dest::ADDR, addr_bytes(&self.addr)),
            Attr::port(wire::dest::PORT, self.port),
        ]
    }

    /// Every attribute NEW_DEST and SET_DEST need.
    pub fn attrs(&self) -> Vec<Attr> {
        let mut attrs = self.key_attrs();
        attrs.push(Attr::u32(wire::dest::FWD_METHOD, self.forward.bits()));
        attrs.push(Attr::u32(wire::dest::WEIGHT, self.weight));
        attrs.push(Attr::u32(wire::dest::U_THRESH, self.upper_threshold));
        attrs.push(Attr::u32(wire::dest::L_THRESH, self.lower_threshold));
        attrs
    }

    /// A destination from the attributes nested in `IPVS_CMD_ATTR_DEST`;
    /// `service_ipv6` is its service's family (older kernels send no
    /// family of their own).
    pub fn parse(attrs: &[Attr], service_ipv6: bool) -> Result<Destination, DecodeError> {
        let ipv6 = match opt_u16(attrs, wire::dest::ADDR_FAMILY)? {
            Some(AF_INET6) => true,
            Some(AF_INET) => false,
            Some(other) => {
                return Err(format!("IPVS destination with address family {other}").into())
            }
            None => service_ipv6,
        };
        let addr = parse_addr(value(attrs, wire::dest::ADDR, "destination address")?, ipv6)?;
        let port = port_attr(attrs, wire::dest::PORT, "destination port")?;
        let total = match find(attrs, wire::dest::STATS64) {
            Some(nested) => opt_u64(&nested.children()?, wire::stats::CONNS)?.unwrap_or(0),
            None => 0,
        };
        Ok(Destination {
            addr,
            port,
            forward: Forward::from_bits(u32_attr(attrs, wire::dest::FWD_METHOD, "forwarding")?)?,
            weight: u32_attr(attrs, wire::dest::WEIGHT, "weight")?,
            upper_threshold: opt_u32(attrs, wire::dest::U_THRESH)?.unwrap_or(0),
            lower_threshold: opt_u32(attrs, wire::dest::L_THRESH)?.unwrap_or(0),
            connections: Some(Connections {
                active: opt_u32(attrs, wire::dest::ACTIVE_CONNS)?.unwrap_or(0),
                inactive: opt_u32(attrs, wire::dest::INACT_CONNS)?.unwrap_or(0),
                persistent: opt_u32(attrs, wire::dest::PERSIST_CONNS)?.unwrap_or(0),
                total,
            }),
        })
    }

    /// Whether `other` is the same server with the same settings (counts
    /// aside).
    pub fn same_settings(&self, other: &Destination) -> bool {
        self.addr == other.addr
            && self.port == other.port
            && self.forward == other.forward
            && self.weight == other.weight
            && self.upper_threshold == other.upper_threshold
            && self.lower_threshold == other.lower_threshold
    }
}

/// IPVS's connection timeouts, in seconds (`ipvsadm --set`). In a request,
/// 0 leaves a value as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    /// An established TCP connection with no packet (the kernel's default
    /// is 900 s: Swarm's idle cut-off).
    pub tcp: u32,
    /// A TCP connection after the FIN.
    pub tcp_fin: u32,
    pub udp: u32,
}

impl Timeouts {
    pub fn attrs(&self) -> Vec<Attr> {
        vec![
            Attr::u32(wire::attr::TIMEOUT_TCP, self.tcp),
            Attr::u32(wire::attr::TIMEOUT_TCP_FIN, self.tcp_fin),
            Attr::u32(wire::attr::TIMEOUT_UDP, self.udp),
        ]
    }

    pub fn parse(attrs: &[Attr]) -> Result<Timeouts, DecodeError> {
        Ok(Timeouts {
            tcp: u32_attr(attrs, wire::attr::TIMEOUT_TCP, "TCP timeout")?,
            tcp_fin: u32_attr(attrs, wire::attr::TIMEOUT_TCP_FIN, "TCP FIN timeout")?,
            udp: u32_attr(attrs, wire::attr::TIMEOUT_UDP, "UDP timeout")?,
        })
    }
}

/// The kernel's IPVS version and connection table size (`GET_INFO`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// `1.2.1` is 0x010201.
    pub version: u32,
    pub connection_table_size: u32,
}

impl Info {
    pub fn parse(attrs: &[Attr]) -> Result<Info, DecodeError> {
        Ok(Info {
            version: u32_attr(attrs, wire::info::VERSION, "IPVS version")?,
            connection_table_size: u32_attr(attrs, wire::info::CONN_TAB_SIZE, "table size")?,
        })
    }

    /// `1.2.1`.
    pub fn version_label(&self) -> String {
        format!(
            "{}.{}.{}",
            self.version >> 16,
            (self.version >> 8) & 0xff,
            self.version & 0xff
        )
    }
}

fn family_of(addr: &IpAddr) -> u16 {
    match addr {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

/// `union nf_inet_addr`: 16 bytes, an IPv4 address in the first 4.
fn addr_bytes(addr: &IpAddr) -> Vec<u8> {
    let mut bytes = vec![0; 16];
    match addr {
        IpAddr::V4(v4) => bytes[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => bytes.copy_from_slice(&v6.octets()),
    }
    bytes
}

fn parse_addr(bytes: &[u8], ipv6: bool) -> Result<IpAddr, DecodeError> {
    if ipv6 {
        let octets: [u8; 16] = exact(bytes.get(..16).unwrap_or(bytes), "IPv6 address")?;
        Ok(IpAddr::V6(Ipv6Addr::from(octets)))
    } else {
        let octets: [u8; 4] = exact(bytes.get(..4).unwrap_or(bytes), "IPv4 address")?;
        Ok(IpAddr::V4(Ipv4Addr::from(octets)))
    }
}

fn value<'a>(attrs: &'a [Attr], kind: u16, what: &str) -> Result<&'a [u8], DecodeError> {
    match find(attrs, kind) {
        Some(Attr::Bytes(_, bytes)) => Ok(bytes),
        Some(Attr::Nested(..)) => Err(format!("IPVS attribute {what} is nested").into()),
        None => Err(format!("IPVS answer without {what}").into()),
    }
}

fn opt_u16(attrs: &[Attr], kind: u16) -> Result<Option<u16>, DecodeError> {
    match find(attrs, kind) {
        Some(a) => Ok(Some(u16::from_ne_bytes(exact(&a.value(), "u16")?))),
        None => Ok(None),
    }
}

fn u16_attr(attrs: &[Attr], kind: u16, what: &str) -> Result<u16, DecodeError> {
    Ok(u16::from_ne_bytes(exact(value(attrs, kind, what)?, what)?))
}

fn port_attr(attrs: &[Attr], kind: u16, what: &str) -> Result<u16, DecodeError> {
    Ok(u16::from_be_bytes(exact(value(attrs, kind, what)?, what)?))
}

fn opt_u32(attrs: &[Attr], kind: u16) -> Result<Option<u32>, DecodeError> {
    match find(attrs, kind) {
        Some(a) => Ok(Some(u32::from_ne_bytes(exact(&a.value(), "u32")?))),
        None => Ok(None),
    }
}

fn u32_attr(attrs: &[Attr], kind: u16, what: &str) -> Result<u32, DecodeError> {
    Ok(u32::from_ne_bytes(exact(value(attrs, kind, what)?, what)?))
}

fn opt_u64(attrs: &[Attr], kind: u16) -> Result<Option<u64>, DecodeError> {
    match find(attrs, kind) {
        Some(a) => Ok(Some(u64::from_ne_bytes(exact(&a.value(), "u64")?))),
        None => Ok(None),
    }
}

fn string_attr(attrs: &[Attr], kind: u16, what: &str) -> Result<String, DecodeError> {
    let bytes = value(attrs, kind, what)?;
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8(bytes[..end].to_vec()).map_err(DecodeError::from)
}
