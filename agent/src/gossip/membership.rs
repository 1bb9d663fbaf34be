//! SWIM membership with suspicion (foca), driven without I/O: the caller
//! feeds packets, timers and ticks with an explicit clock and carries out the
//! returned `Effect`s (send a datagram, sync over a stream, arm a timer,
//! member up/suspect/down, application broadcast). The agent does this over
//! UDP/TCP 7946; `gossip::sim` does it in virtual time.

mod config;
mod identity;
mod lifeguard;
mod notice;
mod runtime;
mod sync;
#[cfg(test)]
mod tests;
mod views;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use foca::{Foca, OwnedNotification};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use config::MembershipConfig;
pub use identity::{MemberId, NodeId};

use runtime::{AppBroadcasts, Collector, FocaRng, ObservingCodec, SharedTap};

/// A timer to hand back to [`Membership::handle_timer`] at its time.
/// Opaque on purpose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipTimer(TimerKind);

#[derive(Clone, Debug, PartialEq, Eq)]
enum TimerKind {
    /// Asked for by foca.
    Swim(foca::Timer<MemberId>),
    /// One more round of telling members we are alive, after a suspicion.
    Refute { rounds_left: u8 },
    /// Tell a member we suspect, again, that it is suspected.
    Remind {
        suspect: MemberId,
        incarnation: u16,
        rounds_left: u8,
    },
}

/// What the caller must do, or learn, after a call. Times are on the
/// caller's clock (the `now` it passes in).
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Send this datagram to `to` (sealed by the gossip codec first).
    Send { to: SocketAddr, bytes: Bytes },
    /// Open a stream to `to`, send `bytes`, and pass the answer to
    /// [`Membership::handle_sync`].
    SyncRequest { to: SocketAddr, bytes: Bytes },
    /// Answer, on the stream the request came from, with `bytes`.
    SyncReply { to: SocketAddr, bytes: Bytes },
    /// Call [`Membership::handle_timer`] with `timer` at `at`.
    ScheduleTimer {
        at: Duration,
        timer: MembershipTimer,
    },
    /// The member is alive: first seen, suspicion refuted, or back with a
    /// new identity (a higher bump: a restart; its old state is gone).
    MemberUp { member: MemberId },
    /// The member missed a probe; it is still counted as alive.
    MemberSuspect { member: MemberId },
    /// The member is dead: withdraw what it owned.
    MemberDown { member: MemberId },
    /// An application payload broadcast by another member, delivered once.
    Broadcast { payload: Bytes },
    /// The cluster declared us dead while we run; we took `identity`
    /// (bump + 1) and are rejoining.
    Renewed { identity: MemberId },
    /// Input was dropped or a step failed; membership carries on.
    Error(MembershipError),
}

/// Errors membership reports (as [`Effect::Error`] or from `broadcast`).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum MembershipError {
    #[error("gossip packet from {from} dropped: {reason}")]
    Packet { from: SocketAddr, reason: String },
    #[error("member list from {from} dropped: {reason}")]
    Sync { from: SocketAddr, reason: String },
    #[error(
        "broadcast of {len} bytes refused: {reason}; send large state by anti-entropy instead"
    )]
    Broadcast { len: usize, reason: String },
    #[error("membership step `{step}` failed: {reason}; membership carries on")]
    Internal { step: &'static str, reason: String },
}

/// How this node sees a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    Alive,
    Suspect,
    Dead,
}

impl MemberState {
    /// Alive or suspect: still counted as a member.
    pub fn is_active(self) -> bool {
        self != Self::Dead
    }

    /// As `shoal members` and the metrics print it (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Dead => "dead",
        }
    }
}

/// One line of `shoal members`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub node: NodeId,
    pub addr: SocketAddr,
    pub state: MemberState,
    /// SWIM incarnation: raised by the member to refute a suspicion.
    pub incarnation: u16,
    /// Identity generation: raised on restart or after a false death.
    pub bump: u64,
}

/// Counters for metrics and `shoal members`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipStats {
    pub packets_received: u64,
    pub packets_dropped: u64,
    pub packets_sent: u64,
    pub syncs_received: u64,
    pub syncs_dropped: u64,
    pub renewals: u64,
}

type Swim = Foca<MemberId, ObservingCodec, FocaRng, AppBroadcasts>;

/// The membership driver of one node.
pub struct Membership {
    foca: Swim,
    config: MembershipConfig,
    tap: SharedTap,
    views: HashMap<NodeId, MemberView>,
    seeds: Vec<SocketAddr>,
    rng: ChaCha8Rng,
    next_sync: Option<Duration>,
    next_rejoin: Duration,
    /// Our incarnation as last seen on an outgoing header.
    incarnation: u16,
    tuned_for: usize,
    stats: MembershipStats,
}

impl Membership {
    /// A node that knows no one yet; `seed` makes every choice reproducible.
    pub fn new(id: MemberId, config: MembershipConfig, seed: u64) -> Self {
        let tap = SharedTap::default();
        let foca = Foca::with_custom_broadcast(
            id,
            config.foca(1),
            FocaRng::seeded(seed),
            ObservingCodec::new(tap.clone()),
            AppBroadcasts::new(tap.clone()),
        );
        Self {
            foca,
            config,
            tap,
            views: HashMap::new(),
            seeds: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x05ee_d0f5_b0a1),
            next_sync: None,
            next_rejoin: Duration::ZERO,
            incarnation: 0,
            tuned_for: 1,
            stats: MembershipStats::default(),
        }
    }

    /// Our current identity (it changes when we renew).
    pub fn identity(&self) -> &MemberId {
        self.foca.identity()
    }

    /// Joins through `peers` (gossip addresses from the managers): announces
    /// to each and asks one for its full member list. They are remembered
    /// as seeds to re-announce to while no member is reachable.
    pub fn join(&mut self, peers: &[SocketAddr], now: Duration) -> Vec<Effect> {
        let own = self.identity().addr();
        self.seeds = peers.iter().copied().filter(|p| *p != own).collect();
        self.next_rejoin = now.saturating_add(self.config.rejoin_interval);
        self.announce_to_seeds(now)
    }

    /// Handles one datagram (already opened by the gossip codec).
    pub fn handle_packet(&mut self, from: SocketAddr, bytes: &[u8], now: Duration) -> Vec<Effect> {
        self.stats.packets_received += 1;
        let mut rt = Collector::new(now);
        if let Err(error) = self.foca.handle_data(bytes, &mut rt) {
            self.stats.packets_dropped += 1;
            rt.effects.push(Effect::Error(MembershipError::Packet {
                from,
                reason: error.to_string(),
            }));
        }
        let (sender, suspicions) = {
            let mut tap = runtime::lock(&self.tap);
            (tap.sender.take(), std::mem::take(&mut tap.suspicions_heard))
        };
        let mut effects = self.finish(rt);
        self.answer_suspicion(sender, &suspicions, &mut effects);
        effects
    }

    /// Handles a timer previously asked for with [`Effect::ScheduleTimer`].
    pub fn handle_timer(&mut self, timer: MembershipTimer, now: Duration) -> Vec<Effect> {
        let mut rt = Collector::new(now);
        let timer = match timer.0 {
            TimerKind::Swim(timer) => timer,
            TimerKind::Refute { rounds_left } => {
                self.refute(rounds_left, &mut rt);
                return self.finish(rt);
            }
            TimerKind::Remind {
                suspect,
                incarnation,
                rounds_left,
            } => {
                let mut effects = Vec::new();
                self.remind(&suspect, incarnation, rounds_left, now, &mut effects);
                return effects;
            }
        };
        let probe = matches!(timer, foca::Timer::ProbeRandomMember(_));
        let suspect = match &timer {
            foca::Timer::ChangeSuspectToDown { member_id, .. } => Some(member_id.clone()),
            _ => None,
        };
        if let Err(error) = self.foca.handle_timer(timer, &mut rt) {
            rt.effects.push(Effect::Error(MembershipError::Internal {
                step: "timer",
                reason: error.to_string(),
            }));
        }
        let mut effects = self.finish(rt);
        if probe {
            self.tell_suspects(now, &mut effects);
        }
        if let Some(suspect) = suspect {
            self.after_suspicion(&suspect, now, &mut effects);
        }
        effects
    }

    /// Housekeeping, to call about once a second: fits suspicion and
    /// dissemination to the cluster size, syncs member lists with a random
    /// member every `sync_interval`, and re-announces to the seeds while no
    /// member is reachable.
    pub fn tick(&mut self, now: Duration) -> Vec<Effect> {
        let mut effects = Vec::new();
        let size = self.foca.num_members() + 1;
        if size != self.tuned_for {
            if let Err(error) = self.foca.set_config(self.config.foca(size)) {
                effects.push(Effect::Error(MembershipError::Internal {
                    step: "retune",
                    reason: error.to_string(),
                }));
            }
            self.tuned_for = size;
        }
        if self.foca.num_members() == 0 {
            if !self.seeds.is_empty() && now >= self.next_rejoin {
                self.next_rejoin = now.saturating_add(self.config.rejoin_interval);
                effects.extend(self.announce_to_seeds(now));
            }
            return effects;
        }
        let interval = self.config.sync_interval;
        let due = *self.next_sync.get_or_insert_with(|| {
            // Spread the first sync over one interval so that members
            // started together do not sync together.
            let spread = interval.as_millis().max(1) as u64;
            now.saturating_add(Duration::from_millis(self.rng.next_u64() % spread))
        });
        if now >= due {
            self.next_sync = Some(now.saturating_add(interval));
            let count = self.foca.num_members();
            let pick = (self.rng.next_u64() % count.max(1) as u64) as usize;
            if let Some(peer) = self.foca.iter_members().nth(pick) {
                effects.push(Effect::SyncRequest {
                    to: peer.id().addr(),
                    bytes: self.member_list(true),
                });
            }
        }
        effects
    }

    /// Gossips an application payload (table deltas) to every member,
    /// piggybacked on membership traffic. Payloads are deduplicated by
    /// content and at most [`Membership::max_broadcast_len`] bytes.
    pub fn broadcast(
        &mut self,
        payload: &[u8],
        now: Duration,
    ) -> Result<Vec<Effect>, MembershipError> {
        let max = self.max_broadcast_len();
        if payload.len() > max {
            return Err(MembershipError::Broadcast {
                len: payload.len(),
                reason: format!("more than {max} bytes"),
            });
        }
        let added =
            self.foca
                .add_broadcast(payload)
                .map_err(|error| MembershipError::Broadcast {
                    len: payload.len(),
                    reason: error.to_string(),
                })?;
        let mut rt = Collector::new(now);
        if added {
            if let Err(error) = self.foca.broadcast(&mut rt) {
                rt.effects.push(Effect::Error(MembershipError::Internal {
                    step: "broadcast",
                    reason: error.to_string(),
                }));
            }
        }
        Ok(self.finish(rt))
    }

    /// The largest payload [`Membership::broadcast`] takes: half a datagram,
    /// so that it fits beside the header and membership updates.
    pub fn max_broadcast_len(&self) -> usize {
        self.config.max_packet_size.get() / 2
    }

    /// Leaves the cluster: tells a few members we are gone.
    pub fn leave(&mut self, now: Duration) -> Vec<Effect> {
        let mut rt = Collector::new(now);
        if let Err(error) = self.foca.leave_cluster(&mut rt) {
            rt.effects.push(Effect::Error(MembershipError::Internal {
                step: "leave",
                reason: error.to_string(),
            }));
        }
        self.finish(rt)
    }

    /// The local view, this node first, then by node id.
    pub fn members(&self) -> Vec<MemberView> {
        let mut others: Vec<MemberView> = self.views.values().cloned().collect();
        others.sort_by(|a, b| a.node.cmp(&b.node));
        let mut all = Vec::with_capacity(others.len() + 1);
        all.push(self.own_view());
        all.extend(others);
        all
    }

    /// How this node sees `node`, if it ever heard of it.
    pub fn member(&self, node: &NodeId) -> Option<&MemberView> {
        self.views.get(node)
    }

    /// Members counted as alive (alive or suspect), this node excluded.
    pub fn active_members(&self) -> usize {
        self.foca.num_members()
    }

    /// Counters since start.
    pub fn stats(&self) -> MembershipStats {
        self.stats
    }

    /// The configuration in force.
    pub fn config(&self) -> &MembershipConfig {
        &self.config
    }

    fn own_view(&self) -> MemberView {
        let id = self.identity();
        MemberView {
            node: id.node().clone(),
            addr: id.addr(),
            state: MemberState::Alive,
            incarnation: self.incarnation,
            bump: id.bump(),
        }
    }

    /// Turns what foca reported during a call into effects.
    fn finish(&mut self, rt: Collector) -> Vec<Effect> {
        let now = rt.now();
        let Collector {
            mut effects,
            notifications,
            ..
        } = rt;
        self.stats.packets_sent += effects
            .iter()
            .filter(|e| matches!(e, Effect::Send { .. }))
            .count() as u64;
        let (members, delivered, incarnation) = {
            let mut tap = runtime::lock(&self.tap);
            (
                std::mem::take(&mut tap.members),
                std::mem::take(&mut tap.delivered),
                tap.own_incarnation,
            )
        };
        if incarnation > self.incarnation && self.config.refute_rounds > 0 {
            // We were suspected and foca raised our incarnation (it told a
            // few random members already). Keep telling others for a few
            // gossip rounds so that whoever suspects us hears it in time.
            effects.push(Effect::ScheduleTimer {
                at: now.saturating_add(self.config.gossip_interval),
                timer: MembershipTimer(TimerKind::Refute {
                    rounds_left: self.config.refute_rounds,
                }),
            });
        }
        self.incarnation = incarnation;
        for member in members {
            self.observe(&member, &mut effects);
        }
        effects.extend(
            delivered
                .into_iter()
                .map(|payload| Effect::Broadcast { payload }),
        );
        for notification in notifications {
            if let OwnedNotification::Rejoin(identity) = notification {
                self.stats.renewals += 1;
                effects.push(Effect::Renewed { identity });
            }
        }
        effects
    }
}
