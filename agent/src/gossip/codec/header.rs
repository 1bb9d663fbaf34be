//! The fixed 41-byte envelope header: parsed without panics from any bytes,
//! authenticated as the AEAD's associated data, and the source of the nonce.

use ring::aead::Nonce;

use super::{Channel, KeyId, Rejected, SenderId, HEADER_LEN, MAGIC, OVERHEAD, WIRE_VERSION};

/// The fixed-size header of an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) channel: Channel,
    pub(super) key_id: KeyId,
    pub(super) sender: SenderId,
    pub(super) epoch: u64,
    pub(super) counter: u64,
    pub(super) sent_at: u64,
}

impl Header {
    pub(super) fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..3].copy_from_slice(&MAGIC);
        out[3] = WIRE_VERSION;
        out[4] = self.channel as u8;
        out[5..9].copy_from_slice(&self.key_id.to_be_bytes());
        out[9..17].copy_from_slice(&self.sender.to_be_bytes());
        out[17..25].copy_from_slice(&self.epoch.to_be_bytes());
        out[25..33].copy_from_slice(&self.counter.to_be_bytes());
        out[33..41].copy_from_slice(&self.sent_at.to_be_bytes());
        out
    }

    /// Parses the header of a message expected on `channel`.
    pub(super) fn parse(bytes: &[u8], channel: Channel) -> Result<Header, Rejected> {
        let magic_len = bytes.len().min(MAGIC.len());
        if bytes.get(..magic_len) != MAGIC.get(..magic_len) {
            return Err(Rejected::Malformed("not a shoal gossip message"));
        }
        let need = OVERHEAD;
        if bytes.len() < need {
            return Err(Rejected::Truncated {
                len: bytes.len(),
                need,
            });
        }
        let byte = |i: usize| bytes.get(i).copied().unwrap_or_default();
        let u32_at = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(bytes.get(i..i + 4).unwrap_or(&[0; 4]));
            u32::from_be_bytes(b)
        };
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(bytes.get(i..i + 8).unwrap_or(&[0; 8]));
            u64::from_be_bytes(b)
        };
        if byte(3) != WIRE_VERSION {
            return Err(Rejected::Malformed("unsupported wire version"));
        }
        if byte(4) != channel as u8 {
            return Err(Rejected::Malformed("message sent on another channel"));
        }
        Ok(Header {
            channel,
            key_id: u32_at(5),
            sender: u64_at(9),
            epoch: u64_at(17),
            counter: u64_at(25),
            sent_at: u64_at(33),
        })
    }

    pub(super) fn nonce(&self) -> Nonce {
        let mut nonce = [0u8; 12];
        nonce[0] = self.channel as u8;
        nonce[4..].copy_from_slice(&self.counter.to_be_bytes());
        Nonce::assume_unique_for_key(nonce)
    }
}
