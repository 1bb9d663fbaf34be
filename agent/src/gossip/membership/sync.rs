//! The full member list two members exchange over the stream transport
//! (memberlist's push-pull): on join, so a joiner learns the whole cluster
//! at once instead of one member per gossip message, and periodically, to
//! repair whatever gossip missed; and the announces to the seeds.

use shoal_control::error_chain::ErrorChain;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use foca::{Member, State};
use rand_chacha::rand_core::RngCore;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::runtime::Collector;
use super::{Effect, MemberId, Membership, MembershipError};

/// Format version, first byte of every sync message.
const SYNC_VERSION: u8 = 1;

/// A member list, and whether the sender wants ours back.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SyncMessage {
    pub(crate) respond: bool,
    pub(crate) members: Vec<Member<MemberId>>,
}

/// Why a sync message was refused.
#[derive(Debug, Error)]
pub(crate) enum SyncDecodeError {
    #[error("empty member list message")]
    Empty,
    #[error("member list format {0} is not supported (expected {SYNC_VERSION}); upgrade the older agent")]
    Version(u8),
    #[error("malformed member list")]
    Malformed(#[from] postcard::Error),
}

impl SyncMessage {
    pub(crate) fn encode(&self) -> Bytes {
        let mut out = vec![SYNC_VERSION];
        // Encoding into a growing Vec only fails for types serde cannot
        // represent, which these are not; an empty list is still valid.
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        Bytes::from(out)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, SyncDecodeError> {
        let (&version, body) = bytes.split_first().ok_or(SyncDecodeError::Empty)?;
        if version != SYNC_VERSION {
            return Err(SyncDecodeError::Version(version));
        }
        Ok(postcard::from_bytes(body)?)
    }
}

impl Membership {
    /// Handles a member list received over a stream, as a request (answered
    /// with [`Effect::SyncReply`]) or as the answer to our request.
    pub fn handle_sync(&mut self, from: SocketAddr, bytes: &[u8], now: Duration) -> Vec<Effect> {
        self.stats.syncs_received += 1;
        let message = match SyncMessage::decode(bytes) {
            Ok(message) => message,
            Err(error) => {
                self.stats.syncs_dropped += 1;
                return vec![Effect::Error(MembershipError::Sync {
                    from,
                    reason: error.chain().to_string(),
                })];
            }
        };
        let mut rt = Collector::new(now);
        // A request comes from a joiner or a periodic sync: what is new in it
        // is news for everyone, so it is gossiped. An answer is merged
        // quietly: a joiner must not re-gossip the whole cluster.
        let gossip = message.respond;
        if let Err(error) = self
            .foca
            .apply_many(message.members.into_iter(), gossip, &mut rt)
        {
            rt.effects.push(Effect::Error(MembershipError::Sync {
                from,
                reason: error.chain().to_string(),
            }));
        }
        if message.respond {
            rt.effects.push(Effect::SyncReply {
                to: from,
                bytes: self.member_list(false),
            });
        }
        let mut effects = self.finish(rt);
        self.refresh_views(&mut effects);
        effects
    }

    pub(super) fn announce_to_seeds(&mut self, now: Duration) -> Vec<Effect> {
        let mut rt = Collector::new(now);
        for seed in self.seeds.clone() {
            if let Err(error) = self.foca.announce(MemberId::seed(seed), &mut rt) {
                rt.effects.push(Effect::Error(MembershipError::Internal {
                    step: "announce",
                    reason: error.chain().to_string(),
                }));
            }
        }
        if !self.seeds.is_empty() {
            let pick = (self.rng.next_u64() % self.seeds.len() as u64) as usize;
            rt.effects.push(Effect::SyncRequest {
                to: self.seeds[pick],
                bytes: self.member_list(true),
            });
        }
        self.finish(rt)
    }

    /// Our full member list (ourselves included) as a sync message.
    pub(super) fn member_list(&self, respond: bool) -> Bytes {
        let own = self.own_view();
        let mut members = Vec::with_capacity(self.foca.iter_membership_state().len() + 1);
        members.push(Member::new(
            self.identity().clone(),
            own.incarnation,
            State::Alive,
        ));
        members.extend(self.foca.iter_membership_state().cloned());
        SyncMessage { respond, members }.encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::State;
    use std::net::SocketAddr;

    #[test]
    fn member_list_round_trips() {
        let addr = SocketAddr::from(([10, 0, 0, 2], 7946));
        let message = SyncMessage {
            respond: true,
            members: vec![Member::new(MemberId::new("n2", addr, 7), 3, State::Suspect)],
        };
        let decoded = SyncMessage::decode(&message.encode());
        let decoded = decoded.map(|m| (m.respond, m.members));
        assert_eq!(decoded.ok(), Some((true, message.members)));
    }

    #[test]
    fn truncated_or_foreign_messages_are_refused() {
        let message = SyncMessage {
            respond: false,
            members: vec![Member::alive(MemberId::new(
                "n1",
                SocketAddr::from(([10, 0, 0, 1], 7946)),
                1,
            ))],
        };
        let bytes = message.encode();
        for len in 0..bytes.len() {
            assert!(SyncMessage::decode(&bytes[..len]).is_err(), "prefix {len}");
        }
        let mut foreign = bytes.to_vec();
        foreign[0] = 9;
        assert!(matches!(
            SyncMessage::decode(&foreign),
            Err(SyncDecodeError::Version(9))
        ));
    }
}
