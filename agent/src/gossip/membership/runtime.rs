//! The glue foca is driven through: a `Runtime` that turns sends and timer
//! requests into `Effect`s at an explicit time, a codec that tells the driver
//! which member states changed and who told us we are suspect, a broadcast
//! handler for application payloads, and a seeded RNG. None of it does I/O.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use foca::{
    BroadcastHandler, Codec, Header, Incarnation, Invalidates, Member, Notification,
    OwnedNotification, PostcardCodec, Runtime, Timer,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Effect, MemberId, MembershipTimer, TimerKind};

/// What foca's codec and broadcast handler saw during one call, read by the
/// driver right after it (foca owns both, so they report through this).
#[derive(Default)]
pub(crate) struct Tap {
    /// Every member state foca applied (it encodes each one to gossip it)
    /// or put in a member list reply, in order.
    pub(crate) members: Vec<Member<MemberId>>,
    /// Application broadcasts received from peers, first sighting only.
    pub(crate) delivered: Vec<Bytes>,
    /// The incarnation our last outgoing header carried.
    pub(crate) own_incarnation: Incarnation,
    /// The sender of the last packet decoded.
    pub(crate) sender: Option<MemberId>,
    /// Suspicions found in the packets decoded (about anyone).
    pub(crate) suspicions_heard: Vec<Member<MemberId>>,
}

pub(crate) type SharedTap = Arc<Mutex<Tap>>;

/// Locks the tap; a poisoned lock still holds plain data, so it is used as is.
pub(crate) fn lock(tap: &SharedTap) -> MutexGuard<'_, Tap> {
    tap.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Postcard encoding that records every member it encodes. Foca encodes a
/// member exactly when it applies a new state to it (to gossip it) and when
/// it lists members for a joiner, so the driver learns of every transition,
/// suspicion included, without scanning the whole member list per packet.
pub(crate) struct ObservingCodec {
    tap: SharedTap,
}

impl ObservingCodec {
    pub(crate) fn new(tap: SharedTap) -> Self {
        Self { tap }
    }
}

impl Codec<MemberId> for ObservingCodec {
    type Error = postcard::Error;

    fn encode_header(
        &mut self,
        header: &Header<MemberId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        lock(&self.tap).own_incarnation = header.src_incarnation;
        PostcardCodec.encode_header(header, buf)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<MemberId>, Self::Error> {
        let header: Header<MemberId> = PostcardCodec.decode_header(buf)?;
        lock(&self.tap).sender = Some(header.src.clone());
        Ok(header)
    }

    fn encode_member(
        &mut self,
        member: &Member<MemberId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        lock(&self.tap).members.push(member.clone());
        PostcardCodec.encode_member(member, buf)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<MemberId>, Self::Error> {
        let member: Member<MemberId> = PostcardCodec.decode_member(buf)?;
        if member.state() == foca::State::Suspect {
            lock(&self.tap).suspicions_heard.push(member.clone());
        }
        Ok(member)
    }
}

/// Identifies an application broadcast by a hash of its bytes.
pub(crate) struct PayloadKey(u64);

impl Invalidates for PayloadKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

/// How many payload hashes are remembered to drop duplicates.
const SEEN_CAPACITY: usize = 16 * 1024;

/// Application payloads ride foca's piggyback space. A payload is new the
/// first time its bytes are seen: it is delivered once and re-gossiped
/// `max_transmissions` times; copies seen later are dropped. Payloads must
/// therefore be idempotent (versioned deltas are); anti-entropy repairs what
/// gossip missed.
pub(crate) struct AppBroadcasts {
    tap: SharedTap,
    seen: HashSet<u64>,
    order: VecDeque<u64>,
}

impl AppBroadcasts {
    pub(crate) fn new(tap: SharedTap) -> Self {
        Self {
            tap,
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }
}

impl BroadcastHandler<MemberId> for AppBroadcasts {
    type Key = PayloadKey;
    type Error = Infallible;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&MemberId>,
    ) -> Result<Option<PayloadKey>, Infallible> {
        let mut hasher = DefaultHasher::new();
        data.hash(&mut hasher);
        let key = hasher.finish();
        if !self.seen.insert(key) {
            return Ok(None);
        }
        self.order.push_back(key);
        if self.order.len() > SEEN_CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        if sender.is_some() {
            lock(&self.tap).delivered.push(Bytes::copy_from_slice(data));
        }
        Ok(Some(PayloadKey(key)))
    }
}

/// A seeded ChaCha8 stream behind the `rand_core` 0.10 traits foca uses.
pub(crate) struct FocaRng(ChaCha8Rng);

impl FocaRng {
    pub(crate) fn seeded(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }
}

impl rand_core::TryRng for FocaRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.0.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.0.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}

/// Collects what foca asks for during one call, stamped with that call's time.
pub(crate) struct Collector {
    now: Duration,
    pub(crate) effects: Vec<Effect>,
    pub(crate) notifications: Vec<OwnedNotification<MemberId>>,
}

impl Collector {
    pub(crate) fn new(now: Duration) -> Self {
        Self {
            now,
            effects: Vec::new(),
            notifications: Vec::new(),
        }
    }

    /// The time of the call being collected.
    pub(crate) fn now(&self) -> Duration {
        self.now
    }
}

impl Runtime<MemberId> for Collector {
    fn notify(&mut self, notification: Notification<'_, MemberId>) {
        self.notifications.push(notification.to_owned());
    }

    fn send_to(&mut self, to: MemberId, data: &[u8]) {
        self.effects.push(Effect::Send {
            to: to.addr(),
            bytes: Bytes::copy_from_slice(data),
        });
    }

    fn submit_after(&mut self, event: Timer<MemberId>, after: Duration) {
        self.effects.push(Effect::ScheduleTimer {
            at: self.now.saturating_add(after),
            timer: MembershipTimer(TimerKind::Swim(event)),
        });
    }
}
