//! The payload of every envelope: what gossip says, postcard-encoded.

use serde::{Deserialize, Serialize};

use super::{CodecError, Rejected, MAX_DATAGRAM_PAYLOAD};
use crate::gossip::table::{pack_deltas, Delta, Digest, SyncPage};

/// Everything gossip says. Variant order is part of the wire format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A foca packet, opaque here.
    Membership(Vec<u8>),
    /// Table changes, broadcast as they happen.
    Deltas(Vec<Delta>),
    /// A replica's summary, advertised so a peer can tell whether to sync.
    Digest(Digest),
    /// Starts (or answers) a sync: "here is what I hold; send what I lack".
    /// The peer answers with `SyncPage`s of the same session.
    SyncRequest { session: u64, digest: Digest },
    /// One page of a sync; `last` ends the session.
    SyncPage {
        session: u64,
        index: u32,
        last: bool,
        page: SyncPage,
    },
    /// A full member list (membership's push-pull), over a stream.
    MemberList(Vec<u8>),
    /// The first frame of every stream: small, so that it is read and
    /// authenticated before anything else of the stream is.
    Hello,
    /// Node certificates (DER) vouching for the records of the sync pages
    /// that follow: each is checked against the cluster's root.
    Certificates(Vec<Vec<u8>>),
}

impl Message {
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        Ok(postcard::to_allocvec(self)?)
    }

    /// Decodes a payload: exactly one message, no trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Message, Rejected> {
        match postcard::take_from_bytes::<Message>(bytes) {
            Ok((message, [])) => Ok(message),
            Ok(_) => Err(Rejected::Malformed("trailing bytes after the message")),
            Err(_) => Err(Rejected::Malformed("payload does not decode")),
        }
    }

    /// Table changes as `Deltas` messages that each fit one datagram.
    pub fn deltas_for_datagrams(deltas: impl IntoIterator<Item = Delta>) -> Vec<Message> {
        // One byte of the variant tag; `pack_deltas` counts the length.
        pack_deltas(deltas, MAX_DATAGRAM_PAYLOAD - 1)
            .into_iter()
            .map(Message::Deltas)
            .collect()
    }
}
