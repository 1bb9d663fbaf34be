//! The event loop of the simulation: a queue of timed events (datagrams,
//! stream messages, timers, ticks) popped in time order, ties in the order
//! they were queued, and the carrying out of what members and their
//! applications ask for.

use std::cmp::Ordering;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::{node_addr, node_index, AppNode, AppOutput, Simulation};
use crate::gossip::membership::{Effect, MemberId, MemberState, MembershipTimer};

pub(super) enum Event {
    Datagram {
        to: usize,
        from: SocketAddr,
        bytes: Bytes,
    },
    Sync {
        to: usize,
        from: SocketAddr,
        bytes: Bytes,
    },
    AppStream {
        to: usize,
        from: SocketAddr,
        bytes: Bytes,
    },
    Timer {
        node: usize,
        life: u32,
        timer: MembershipTimer,
    },
    Tick {
        node: usize,
        life: u32,
    },
    Warm {
        node: usize,
        life: u32,
        from: SocketAddr,
        bytes: Bytes,
    },
}

pub(super) struct Queued {
    pub(super) at: Duration,
    seq: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    // Reversed: the heap pops the earliest event, ties in scheduling order.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl<A: AppNode> Simulation<A> {
    pub(super) fn push(&mut self, at: Duration, event: Event) {
        self.seq += 1;
        let at = at.max(self.now);
        self.queue.push(Queued {
            at,
            seq: self.seq,
            event,
        });
    }

    pub(super) fn step(&mut self) {
        let Some(Queued { at, event, .. }) = self.queue.pop() else {
            return;
        };
        self.now = at;
        self.stats.events += 1;
        let now = self.now;
        match event {
            Event::Datagram { to, from, bytes } => {
                if let Some(m) = self.slot_membership(to) {
                    let effects = m.handle_packet(from, &bytes, now);
                    self.apply(to, effects);
                }
            }
            Event::Sync { to, from, bytes } => {
                if let Some(m) = self.slot_membership(to) {
                    let effects = m.handle_sync(from, &bytes, now);
                    self.apply(to, effects);
                }
            }
            Event::AppStream { to, from, bytes } => {
                if let Some(slot) = self.slots.get_mut(to).filter(|s| s.membership.is_some()) {
                    let outputs = slot.app.on_stream(from, &bytes, now);
                    self.outputs(to, outputs);
                }
            }
            Event::Timer { node, life, timer } => {
                if self.slots.get(node).is_some_and(|s| s.life == life) {
                    if let Some(m) = self.slot_membership(node) {
                        let effects = m.handle_timer(timer, now);
                        self.apply(node, effects);
                    }
                }
            }
            Event::Tick { node, life } => {
                let Some(slot) = self.slots.get_mut(node) else {
                    return;
                };
                if slot.life != life {
                    return;
                }
                let Some(m) = slot.membership.as_mut() else {
                    return;
                };
                let effects = m.tick(now);
                let outputs = slot.app.on_tick(now);
                self.apply(node, effects);
                self.outputs(node, outputs);
                let next = now + self.config.tick_interval;
                self.push(next, Event::Tick { node, life });
            }
            Event::Warm {
                node,
                life,
                from,
                bytes,
            } => {
                if self.slots.get(node).is_some_and(|s| s.life == life) {
                    if let Some(m) = self.slot_membership(node) {
                        let effects = m.handle_sync(from, &bytes, now);
                        self.apply(node, effects);
                    }
                }
            }
        }
    }

    /// Carries out what `node`'s membership asked for.
    pub(super) fn apply(&mut self, node: usize, effects: Vec<Effect>) {
        let now = self.now;
        for effect in effects {
            match effect {
                Effect::Send { to, bytes } => {
                    self.stats.datagrams_sent += 1;
                    let Some(dst) = node_index(to) else { continue };
                    match self.network.datagram(node, dst, &mut self.rng) {
                        Some(delay) => {
                            let from = node_addr(node);
                            self.push(
                                now + delay,
                                Event::Datagram {
                                    to: dst,
                                    from,
                                    bytes,
                                },
                            );
                        }
                        None => self.stats.datagrams_lost += 1,
                    }
                }
                Effect::SyncRequest { to, bytes } | Effect::SyncReply { to, bytes } => {
                    self.send_stream(node, to, |to, from| Event::Sync { to, from, bytes });
                }
                Effect::ScheduleTimer { at, timer } => {
                    let life = self.slots[node].life;
                    self.push(at, Event::Timer { node, life, timer });
                }
                Effect::MemberUp { member } => {
                    self.record(node, &member, MemberState::Alive);
                    let outputs = self.slots[node].app.on_member_up(&member, now);
                    self.outputs(node, outputs);
                }
                Effect::MemberSuspect { member } => {
                    self.record(node, &member, MemberState::Suspect);
                }
                Effect::MemberDown { member } => {
                    self.record(node, &member, MemberState::Dead);
                    let outputs = self.slots[node].app.on_member_down(&member, now);
                    self.outputs(node, outputs);
                }
                Effect::Broadcast { payload } => {
                    let outputs = self.slots[node].app.on_broadcast(&payload, now);
                    self.outputs(node, outputs);
                }
                Effect::Renewed { identity } => {
                    self.seen.set_truth(node, Some(identity.bump()));
                }
                Effect::Error(error) => self.error(error.to_string()),
            }
        }
    }

    /// Carries out what `node`'s application asked for.
    pub(super) fn outputs(&mut self, node: usize, outputs: Vec<AppOutput>) {
        let now = self.now;
        for output in outputs {
            match output {
                AppOutput::Broadcast(payload) => {
                    let Some(m) = self.slot_membership(node) else {
                        return;
                    };
                    match m.broadcast(&payload, now) {
                        Ok(effects) => self.apply(node, effects),
                        Err(error) => self.error(error.to_string()),
                    }
                }
                AppOutput::Stream { to, bytes } => {
                    self.send_stream(node, to, |to, from| Event::AppStream { to, from, bytes });
                }
            }
        }
    }

    /// Queues a stream (TCP-like) message from `node` to `to` after the
    /// link's delay; counts it, and drops it if the link is down.
    fn send_stream(
        &mut self,
        node: usize,
        to: SocketAddr,
        event: impl FnOnce(usize, SocketAddr) -> Event,
    ) {
        self.stats.stream_messages += 1;
        let Some(dst) = node_index(to) else { return };
        if let Some(delay) = self.network.stream(node, dst, &mut self.rng) {
            self.push(self.now + delay, event(dst, node_addr(node)));
        }
    }

    pub(super) fn record(&mut self, observer: usize, member: &MemberId, state: MemberState) {
        if let Some(target) = node_index(member.addr()) {
            if self.config.trace {
                let at = self.now.as_secs_f64();
                eprintln!("{at:>10.3} n{observer} sees {member} {state:?}");
            }
            self.seen
                .record(self.now, observer, target, member.bump(), state);
        }
    }

    pub(super) fn error(&mut self, message: String) {
        self.stats.errors += 1;
        if self.stats.first_errors.len() < 20 {
            self.stats.first_errors.push(message);
        }
    }
}
