//! Raw exchanges with the kernel's IPVS, for test fixtures: one request
//! sent on a plain generic netlink socket and every answer's bytes kept as
//! the kernel wrote them (`shoal ipvs capture`). The unit tests decode the
//! bytes captured in a VM (`ipvs/fixtures/`) with the same code the client
//! uses.

use netlink_packet_core::{
    NetlinkBuffer, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_generic::GenlMessage;
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};
use shoal_control::error_chain::ErrorChain;

use super::wire::IpvsMessage;
use super::IpvsError;

/// The netlink header's type for DONE and ERROR messages.
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// At most this many answer datagrams per request.
const MAX_DATAGRAMS: usize = 1024;

/// The bytes of the request `message` to family `family_id` (sequence 1).
pub fn request_bytes(family_id: u16, message: IpvsMessage, dump: bool) -> Vec<u8> {
    let mut genl = GenlMessage::from_payload(message);
    genl.set_resolved_family_id(family_id);
    let mut request = NetlinkMessage::from(genl);
    request.header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
    request.header.sequence_number = 1;
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);
    buf
}

/// Sends `request` and returns every answer datagram's bytes, concatenated,
/// up to the DONE of a dump or the ERROR/ACK of a request.
pub fn exchange(request: &[u8]) -> Result<Vec<u8>, IpvsError> {
    let mut socket = Socket::new(NETLINK_GENERIC).map_err(IpvsError::Socket)?;
    socket.bind_auto().map_err(IpvsError::Socket)?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(IpvsError::Socket)?;
    socket.send(request, 0).map_err(IpvsError::Socket)?;
    let mut captured = Vec::new();
    for _ in 0..MAX_DATAGRAMS {
        let (datagram, _) = socket.recv_from_full().map_err(IpvsError::Socket)?;
        let finished = ends_exchange(&datagram);
        captured.extend_from_slice(&datagram);
        if finished {
            return Ok(captured);
        }
    }
    Err(IpvsError::Decode {
        op: "capture",
        reason: format!("no end after {MAX_DATAGRAMS} datagrams"),
    })
}

/// Whether a datagram holds a DONE or an ERROR (ACK) message.
fn ends_exchange(datagram: &[u8]) -> bool {
    let mut offset = 0;
    while offset < datagram.len() {
        let Ok(buf) = NetlinkBuffer::new_checked(&datagram[offset..]) else {
            return true;
        };
        if matches!(buf.message_type(), NLMSG_DONE | NLMSG_ERROR) {
            return true;
        }
        let length = buf.length() as usize;
        if length == 0 {
            return true;
        }
        offset += (length + 3) & !3;
    }
    false
}

/// Splits captured bytes into the messages they hold, decoded as the
/// client decodes them.
pub fn parse_answers(
    bytes: &[u8],
) -> Result<Vec<NetlinkPayload<GenlMessage<IpvsMessage>>>, IpvsError> {
    let mut messages = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let buf = NetlinkBuffer::new_checked(&bytes[offset..]).map_err(|e| IpvsError::Decode {
            op: "capture",
            reason: e.chain().to_string(),
        })?;
        let length = buf.length() as usize;
        let message = NetlinkMessage::<GenlMessage<IpvsMessage>>::deserialize(
            &bytes[offset..offset + length],
        )
        .map_err(|e| IpvsError::Decode {
            op: "capture",
            reason: e.chain().to_string(),
        })?;
        messages.push(message.payload);
        offset += (length + 3) & !3;
    }
    Ok(messages)
}
