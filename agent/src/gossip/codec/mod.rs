//! The wire format of every gossip message, UDP datagram or TCP frame: a
//! postcard [`Message`] sealed with ChaCha20-Poly1305 under the cluster's
//! gossip key, behind a header the AEAD authenticates.
//!
//! ```text
//! 0   magic "SHG"      3   version (3)      4   channel (0 UDP, 1 TCP)
//! 5   key id u32       9   sender u64 (SHA-256 of the node id, first 8 bytes)
//! 17  epoch u64 (sender's start, unix ms)   25  counter u64 (per channel)
//! 33  sent at u64 (unix ms)                 41  ciphertext, then a 16-byte tag
//! ```
//! The key is derived per (cluster key, sender, epoch) and the nonce is
//! (channel, counter), so nonces never repeat under one key. The receiver
//! refuses, and counts by class, anything that is oversized, truncated,
//! malformed, sealed with a key it lacks, unauthentic, replayed (counter seen
//! or too old in a sliding window, or an older epoch) or stamped too far from
//! its clock. Decoding never panics. TCP frames are a u32 big-endian length
//! then an envelope; a stream starts with a [`Message::Hello`] frame.

mod header;
mod keyring;
mod message;
mod replay;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use bytes::{Buf, BytesMut};
use ring::aead::Aad;
use ring::digest;
use serde::{Deserialize, Serialize};

use header::Header;
use replay::ReplayWindow;

pub use keyring::{KeyId, Keyring, SecretKey, KEY_LEN};
pub use message::Message;
pub use replay::WINDOW as REPLAY_WINDOW;

pub const MAGIC: [u8; 3] = *b"SHG";
pub const WIRE_VERSION: u8 = 4;
pub const HEADER_LEN: usize = 41;
pub const TAG_LEN: usize = 16;
/// Bytes an envelope adds to its payload.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Largest datagram sent or accepted (memberlist's UDP size).
pub const MAX_DATAGRAM: usize = 1400;
/// Largest payload (encoded [`Message`]) that fits a datagram.
pub const MAX_DATAGRAM_PAYLOAD: usize = MAX_DATAGRAM - OVERHEAD;
/// Largest TCP frame body accepted; sync pages are far smaller.
pub const MAX_FRAME: usize = 4 << 20;
pub const FRAME_PREFIX_LEN: usize = 4;
/// How far a message's timestamp may be from the receiver's clock.
pub const MAX_CLOCK_SKEW_MS: u64 = 120_000;

/// Senders (per channel) whose replay state is kept.
pub const MAX_SENDERS: usize = 16_384;

/// Hash of a node id, naming the sender in every header.
pub type SenderId = u64;

/// Names the sender of a node: the first 8 bytes of SHA-256 of its id.
pub fn sender_id(node_id: &str) -> SenderId {
    let hash = digest::digest(&digest::SHA256, node_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(hash.as_ref().get(..8).unwrap_or(&[0; 8]));
    u64::from_be_bytes(first)
}

/// The transport a message travels on; each has its own counter and limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Datagram = 0,
    Stream = 1,
}

/// Receiver limits; the defaults are the constants above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_datagram: usize,
    pub max_frame: usize,
    pub max_clock_skew_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_datagram: MAX_DATAGRAM,
            max_frame: MAX_FRAME,
            max_clock_skew_ms: MAX_CLOCK_SKEW_MS,
        }
    }
}

/// A message that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub sender: SenderId,
    pub key_id: KeyId,
    /// The sender's clock when it sealed the message (unix ms).
    pub sent_at: u64,
    pub message: Message,
}

/// Why a message could not be sealed, or a key operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("a {channel:?} message of {len} bytes exceeds the limit of {max}; send it in pages")]
    TooLarge {
        channel: Channel,
        len: usize,
        max: usize,
    },
    #[error("gossip key {0} is not in the key ring; insert it first")]
    UnknownKey(KeyId),
    #[error("gossip key {0} is the primary; make another key primary before removing it")]
    RemovePrimary(KeyId),
    #[error("a gossip key must be {KEY_LEN} bytes, got {0}")]
    BadKeyLength(usize),
    #[error("could not encode the message")]
    Encode(#[from] postcard::Error),
    #[error("crypto failure: {0}")]
    Crypto(&'static str),
}

/// Why a received message was dropped. Each counts in [`DecodeStats`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("message of {len} bytes is cut short; at least {need} expected")]
    Truncated { len: usize, need: usize },
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    #[error("sealed with gossip key {0}, which this node does not hold; check key distribution")]
    UnknownKey(KeyId),
    #[error("authentication failed: wrong key or tampered message")]
    Unauthenticated,
    #[error("replayed or too old: counter {counter} of sender {sender:016x}")]
    Replayed { sender: SenderId, counter: u64 },
    #[error("sent at {sent_at} ms but our clock reads {now} ms; check NTP on both nodes")]
    Skewed { sent_at: u64, now: u64 },
    #[error("sender {0:016x} was removed from the swarm")]
    Refused(SenderId),
}

/// Counts of every received message, by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeStats {
    pub accepted: u64,
    pub malformed: u64,
    pub truncated: u64,
    pub unauthenticated: u64,
    pub replayed: u64,
    /// Authentic, but stamped too far from our clock.
    pub skewed: u64,
    pub unknown_key: u64,
    pub too_large: u64,
    /// From a node removed from the swarm.
    #[serde(default)]
    pub refused: u64,
}

impl DecodeStats {
    pub fn rejected(&self) -> u64 {
        self.malformed
            + self.truncated
            + self.unauthenticated
            + self.replayed
            + self.skewed
            + self.unknown_key
            + self.too_large
            + self.refused
    }

    fn count(&mut self, outcome: &Result<Received, Rejected>) {
        let counter = match outcome {
            Ok(_) => &mut self.accepted,
            Err(Rejected::TooLarge { .. }) => &mut self.too_large,
            Err(Rejected::Truncated { .. }) => &mut self.truncated,
            Err(Rejected::Malformed(_)) => &mut self.malformed,
            Err(Rejected::UnknownKey(_)) => &mut self.unknown_key,
            Err(Rejected::Unauthenticated) => &mut self.unauthenticated,
            Err(Rejected::Replayed { .. }) => &mut self.replayed,
            Err(Rejected::Skewed { .. }) => &mut self.skewed,
            Err(Rejected::Refused(_)) => &mut self.refused,
        };
        *counter += 1;
    }
}

/// Seals and opens one node's gossip messages.
pub struct Codec {
    keyring: Keyring,
    sender: SenderId,
    epoch: u64,
    /// Last counter used, per channel.
    counters: [u64; 2],
    limits: Limits,
    windows: HashMap<(SenderId, Channel), ReplayWindow>,
    stats: DecodeStats,
    /// Senders removed from the swarm, refused before their key is looked
    /// at (the managers' list, bounded by them).
    refused: HashSet<SenderId>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("sender", &format_args!("{:016x}", self.sender))
            .field("epoch", &self.epoch)
            .field("primary_key", &self.keyring.primary())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Codec {
    /// A codec for node `self_node` in its run started at `epoch` (unix ms;
    /// must grow across restarts, or peers refuse the new run as a replay).
    pub fn new(self_node: &str, keyring: Keyring, epoch: u64) -> Self {
        Codec {
            keyring,
            sender: sender_id(self_node),
            epoch,
            counters: [0; 2],
            limits: Limits::default(),
            windows: HashMap::new(),
            stats: DecodeStats::default(),
            refused: HashSet::new(),
        }
    }

    /// Refuses messages from the nodes `node_ids` from now on (and no
    /// longer from any node left out).
    pub fn refuse_senders<'a>(&mut self, node_ids: impl IntoIterator<Item = &'a str>) {
        self.refused = node_ids.into_iter().map(sender_id).collect();
        self.refused.remove(&self.sender);
        self.windows
            .retain(|(sender, _), _| !self.refused.contains(sender));
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn sender(&self) -> SenderId {
        self.sender
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// For rotation: insert, set the primary, remove.
    pub fn keyring_mut(&mut self) -> &mut Keyring {
        &mut self.keyring
    }

    pub fn stats(&self) -> DecodeStats {
        self.stats
    }

    fn max_len(&self, channel: Channel) -> usize {
        match channel {
            Channel::Datagram => self.limits.max_datagram,
            Channel::Stream => self.limits.max_frame,
        }
    }

    /// Seals a message for `channel`, stamped `now_ms`.
    pub fn seal(
        &mut self,
        channel: Channel,
        message: &Message,
        now_ms: u64,
    ) -> Result<Vec<u8>, CodecError> {
        self.seal_payload(channel, &message.encode()?, now_ms)
    }

    /// Seals a message as a TCP frame: length prefix, then the envelope.
    pub fn seal_frame(&mut self, message: &Message, now_ms: u64) -> Result<Vec<u8>, CodecError> {
        let envelope = self.seal(Channel::Stream, message, now_ms)?;
        let len = u32::try_from(envelope.len()).map_err(|_| CodecError::TooLarge {
            channel: Channel::Stream,
            len: envelope.len(),
            max: self.limits.max_frame,
        })?;
        let mut frame = Vec::with_capacity(FRAME_PREFIX_LEN + envelope.len());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&envelope);
        Ok(frame)
    }

    fn seal_payload(
        &mut self,
        channel: Channel,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<Vec<u8>, CodecError> {
        let len = OVERHEAD + payload.len();
        let max = self.max_len(channel);
        if len > max {
            return Err(CodecError::TooLarge { channel, len, max });
        }
        let key_id = self.keyring.primary();
        let key = self
            .keyring
            .message_key(key_id, self.sender, self.epoch)
            .ok_or(CodecError::UnknownKey(key_id))??;
        let counter = &mut self.counters[channel as usize];
        *counter += 1;
        let header = Header {
            channel,
            key_id,
            sender: self.sender,
            epoch: self.epoch,
            counter: *counter,
            sent_at: now_ms,
        };
        let head = header.to_bytes();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&head);
        out.extend_from_slice(payload);
        let tag = key
            .seal_in_place_separate_tag(header.nonce(), Aad::from(&head), &mut out[HEADER_LEN..])
            .map_err(|_| CodecError::Crypto("sealing failed"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens a message received on `channel` at `now_ms`, counting the outcome.
    pub fn open(
        &mut self,
        channel: Channel,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Received, Rejected> {
        let outcome = self.open_uncounted(channel, bytes, now_ms);
        self.stats.count(&outcome);
        outcome
    }

    fn open_uncounted(
        &mut self,
        channel: Channel,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Received, Rejected> {
        let max = self.max_len(channel);
        if bytes.len() > max {
            return Err(Rejected::TooLarge {
                len: bytes.len(),
                max,
            });
        }
        let header = Header::parse(bytes, channel)?;
        if self.refused.contains(&header.sender) {
            return Err(Rejected::Refused(header.sender));
        }
        let key = match self
            .keyring
            .message_key(header.key_id, header.sender, header.epoch)
        {
            None => return Err(Rejected::UnknownKey(header.key_id)),
            Some(Err(_)) => return Err(Rejected::Unauthenticated),
            Some(Ok(key)) => key,
        };
        let (head, sealed) = bytes.split_at(HEADER_LEN.min(bytes.len()));
        let mut buffer = sealed.to_vec();
        let plain = key
            .open_in_place(header.nonce(), Aad::from(head), &mut buffer)
            .map_err(|_| Rejected::Unauthenticated)?;
        if header.sent_at.abs_diff(now_ms) > self.limits.max_clock_skew_ms {
            return Err(Rejected::Skewed {
                sent_at: header.sent_at,
                now: now_ms,
            });
        }
        let fresh = match self.windows.get_mut(&(header.sender, channel)) {
            Some(window) => window.accept(header.epoch, header.counter, now_ms),
            None => {
                self.make_room_for_a_sender();
                let window = ReplayWindow::new(header.epoch, header.counter, now_ms);
                self.windows.insert((header.sender, channel), window);
                true
            }
        };
        if !fresh {
            return Err(Rejected::Replayed {
                sender: header.sender,
                counter: header.counter,
            });
        }
        Ok(Received {
            sender: header.sender,
            key_id: header.key_id,
            sent_at: header.sent_at,
            message: Message::decode(plain)?,
        })
    }

    /// Takes one complete frame off the front of `buf` and opens it; `None`
    /// until the frame is complete. After an error the stream cannot be
    /// trusted (or re-synchronised): close the connection.
    pub fn open_frame(
        &mut self,
        buf: &mut BytesMut,
        now_ms: u64,
    ) -> Result<Option<Received>, Rejected> {
        let Some(prefix) = buf.get(..FRAME_PREFIX_LEN) else {
            return Ok(None);
        };
        let mut len = [0u8; FRAME_PREFIX_LEN];
        len.copy_from_slice(prefix);
        let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
        if len > self.limits.max_frame {
            let outcome = Err(Rejected::TooLarge {
                len,
                max: self.limits.max_frame,
            });
            self.stats.count(&outcome);
            return outcome.map(Some);
        }
        // Nothing is reserved for the announced length: the buffer grows
        // with the bytes that arrive.
        if buf.len() < FRAME_PREFIX_LEN + len {
            return Ok(None);
        }
        buf.advance(FRAME_PREFIX_LEN);
        let body = buf.split_to(len);
        self.open(Channel::Stream, &body, now_ms).map(Some)
    }

    /// Bounds the replay state: past [`MAX_SENDERS`], the sender heard least
    /// recently is forgotten (it can then replay at most one skew window).
    fn make_room_for_a_sender(&mut self) {
        if self.windows.len() < MAX_SENDERS {
            return;
        }
        let oldest = self
            .windows
            .iter()
            .min_by_key(|(_, w)| w.last_heard)
            .map(|(k, _)| *k);
        if let Some(key) = oldest {
            self.windows.remove(&key);
        }
    }

    /// Forgets the replay state of senders not heard for three clock-skew
    /// windows: any message of theirs that could still pass the timestamp
    /// check is newer than everything they sent before.
    pub fn forget_idle_senders(&mut self, now_ms: u64) {
        let idle = self.limits.max_clock_skew_ms.saturating_mul(3);
        self.windows
            .retain(|_, w| w.last_heard.saturating_add(idle) > now_ms);
    }
}
