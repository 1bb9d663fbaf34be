//! The IPVS generic netlink messages (`include/uapi/linux/ip_vs.h`): a
//! command with attributes, encoded and decoded on netlink-packet-generic's
//! traits. Attributes are kept as a tree of raw values here; the typed
//! objects in `objects.rs` know which ones nest. Integers are in host order
//! except ports, which the kernel keeps in network order.

use netlink_packet_core::{
    DecodeError, Emitable, Nla, NlaBuffer, NlasIterator, ParseableParametrized,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

/// The family's name the kernel registers (`IPVS_GENL_NAME`).
pub const FAMILY: &str = "IPVS";
/// `IPVS_GENL_VERSION`.
pub const VERSION: u8 = 1;

/// `IPVS_CMD_*`.
pub mod cmd {
    pub const NEW_SERVICE: u8 = 1;
    pub const SET_SERVICE: u8 = 2;
    pub const DEL_SERVICE: u8 = 3;
    pub const GET_SERVICE: u8 = 4;
    pub const NEW_DEST: u8 = 5;
    pub const SET_DEST: u8 = 6;
    pub const DEL_DEST: u8 = 7;
    pub const GET_DEST: u8 = 8;
    pub const SET_CONFIG: u8 = 12;
    pub const GET_CONFIG: u8 = 13;
    pub const SET_INFO: u8 = 14;
    pub const GET_INFO: u8 = 15;
    pub const FLUSH: u8 = 17;
}

/// `IPVS_CMD_ATTR_*`: the top level of every message.
pub mod attr {
    pub const SERVICE: u16 = 1;
    pub const DEST: u16 = 2;
    pub const TIMEOUT_TCP: u16 = 4;
    pub const TIMEOUT_TCP_FIN: u16 = 5;
    pub const TIMEOUT_UDP: u16 = 6;
}

/// `IPVS_SVC_ATTR_*`: inside [`attr::SERVICE`].
pub mod svc {
    pub const AF: u16 = 1;
    pub const PROTOCOL: u16 = 2;
    pub const ADDR: u16 = 3;
    pub const PORT: u16 = 4;
    pub const FWMARK: u16 = 5;
    pub const SCHED_NAME: u16 = 6;
    pub const FLAGS: u16 = 7;
    pub const TIMEOUT: u16 = 8;
    pub const NETMASK: u16 = 9;
    pub const STATS: u16 = 10;
    pub const PE_NAME: u16 = 11;
    pub const STATS64: u16 = 12;
}

/// `IPVS_DEST_ATTR_*`: inside [`attr::DEST`].
pub mod dest {
    pub const ADDR: u16 = 1;
    pub const PORT: u16 = 2;
    pub const FWD_METHOD: u16 = 3;
    pub const WEIGHT: u16 = 4;
    pub const U_THRESH: u16 = 5;
    pub const L_THRESH: u16 = 6;
    pub const ACTIVE_CONNS: u16 = 7;
    pub const INACT_CONNS: u16 = 8;
    pub const PERSIST_CONNS: u16 = 9;
    pub const STATS: u16 = 10;
    pub const ADDR_FAMILY: u16 = 11;
    pub const STATS64: u16 = 12;
}

/// `IPVS_STATS_ATTR_*` inside `STATS64` (all u64).
pub mod stats {
    pub const CONNS: u16 = 1;
    pub const INPKTS: u16 = 2;
    pub const OUTPKTS: u16 = 3;
    pub const INBYTES: u16 = 4;
    pub const OUTBYTES: u16 = 5;
}

/// `IPVS_INFO_ATTR_*`.
pub mod info {
    pub const VERSION: u16 = 1;
    pub const CONN_TAB_SIZE: u16 = 2;
}

/// The mask of an attribute's type: the top two bits are flags
/// (`NLA_F_NESTED`, `NLA_F_NET_BYTEORDER`).
const NLA_TYPE_MASK: u16 = 0x3fff;

/// One attribute: raw bytes, or attributes nested in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attr {
    Bytes(u16, Vec<u8>),
    Nested(u16, Vec<Attr>),
}

impl Attr {
    pub fn kind(&self) -> u16 {
        match self {
            Attr::Bytes(kind, _) | Attr::Nested(kind, _) => *kind,
        }
    }

    pub fn u16(kind: u16, value: u16) -> Attr {
        Attr::Bytes(kind, value.to_ne_bytes().to_vec())
    }

    /// A port: network order, as the kernel keeps it.
    pub fn port(kind: u16, port: u16) -> Attr {
        Attr::Bytes(kind, port.to_be_bytes().to_vec())
    }

    pub fn u32(kind: u16, value: u32) -> Attr {
        Attr::Bytes(kind, value.to_ne_bytes().to_vec())
    }

    /// A NUL-terminated string.
    pub fn string(kind: u16, value: &str) -> Attr {
        let mut bytes = value.as_bytes().to_vec();
        bytes.push(0);
        Attr::Bytes(kind, bytes)
    }

    /// The raw value (the bytes of a nested attribute's children).
    pub fn value(&self) -> Vec<u8> {
        match self {
            Attr::Bytes(_, bytes) => bytes.clone(),
            Attr::Nested(_, children) => {
                let mut buf = vec![0; children.as_slice().buffer_len()];
                children.as_slice().emit(&mut buf);
                buf
            }
        }
    }

    /// This attribute's value read as attributes (a nested attribute as
    /// the kernel sends it: raw bytes).
    pub fn children(&self) -> Result<Vec<Attr>, DecodeError> {
        match self {
            Attr::Nested(_, children) => Ok(children.clone()),
            Attr::Bytes(_, bytes) => parse_attrs(bytes),
        }
    }
}

impl Nla for Attr {
    fn value_len(&self) -> usize {
        match self {
            Attr::Bytes(_, bytes) => bytes.len(),
            Attr::Nested(_, children) => children.as_slice().buffer_len(),
        }
    }

    fn kind(&self) -> u16 {
        // No NLA_F_NESTED: the IPVS family parses nests the legacy way, and
        // libipvs (ipvsadm) sends none either.
        Attr::kind(self)
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Attr::Bytes(_, bytes) => buffer.copy_from_slice(bytes),
            Attr::Nested(_, children) => children.as_slice().emit(buffer),
        }
    }
}

/// Reads a run of attributes, each as raw bytes (flags dropped from types).
pub fn parse_attrs(buf: &[u8]) -> Result<Vec<Attr>, DecodeError> {
    let mut attrs = Vec::new();
    for nla in NlasIterator::new(buf) {
        let nla: NlaBuffer<&[u8]> = nla?;
        attrs.push(Attr::Bytes(
            nla.kind() & NLA_TYPE_MASK,
            nla.value().to_vec(),
        ));
    }
    Ok(attrs)
}

/// The first attribute of `kind` in `attrs`.
pub fn find(attrs: &[Attr], kind: u16) -> Option<&Attr> {
    attrs.iter().find(|a| a.kind() == kind)
}

/// One IPVS message: `cmd` and its top-level attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsMessage {
    pub cmd: u8,
    pub attrs: Vec<Attr>,
}

impl IpvsMessage {
    pub fn new(cmd: u8, attrs: Vec<Attr>) -> IpvsMessage {
        IpvsMessage { cmd, attrs }
    }

    /// The message's bytes after the generic netlink header.
    pub fn payload_bytes(&self) -> Vec<u8> {
        let mut buf = vec![0; self.attrs.as_slice().buffer_len()];
        self.attrs.as_slice().emit(&mut buf);
        buf
    }
}

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        FAMILY
    }

    fn command(&self) -> u8 {
        self.cmd
    }

    fn version(&self) -> u8 {
        VERSION
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        Ok(IpvsMessage {
            cmd: header.cmd,
            attrs: parse_attrs(buf)?,
        })
    }
}

/// Reads a native-endian integer attribute value of exactly `N` bytes.
pub fn exact<const N: usize>(value: &[u8], what: &str) -> Result<[u8; N], DecodeError> {
    value.try_into().map_err(|_| {
        DecodeError::from(format!(
            "IPVS attribute {what}: {} bytes, wanted {N}",
            value.len()
        ))
    })
}
