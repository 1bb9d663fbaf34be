//! What foca lacks of Lifeguard's false-positive defences, added around it:
//! the prober tells a suspect directly and keeps reminding it until it
//! refutes (buddy system); a suspect answers whoever told it and repeats
//! its refutation for a few gossip rounds; a death is gossiped at once; and
//! foca's "you are dead" courtesy message only goes to the really dead.

use shoal_control::error_chain::ErrorChain;
use std::time::Duration;

use foca::{Member, State};

use super::runtime::Collector;
use super::{
    notice, Effect, MemberId, MemberState, Membership, MembershipError, MembershipTimer, TimerKind,
};

impl Membership {
    /// After our probe round: every member that just became suspect here
    /// was suspected by our probe. Tell it now, and remind it every gossip
    /// interval while the suspicion stands.
    pub(super) fn tell_suspects(&mut self, now: Duration, effects: &mut Vec<Effect>) {
        let suspects: Vec<MemberId> = effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::MemberSuspect { member } => Some(member.clone()),
                _ => None,
            })
            .collect();
        let suspicion = self.config.suspicion_timeout(self.tuned_for);
        let interval = self.config.gossip_interval.max(Duration::from_millis(1));
        let rounds = u8::try_from(suspicion.as_nanos() / interval.as_nanos()).unwrap_or(u8::MAX);
        for suspect in suspects {
            let Some(incarnation) = self.views.get(suspect.node()).map(|v| v.incarnation) else {
                continue;
            };
            self.remind(&suspect, incarnation, rounds, now, effects);
        }
    }

    /// Tells `suspect` it is suspected at `incarnation`, if it still is.
    pub(super) fn remind(
        &mut self,
        suspect: &MemberId,
        incarnation: u16,
        rounds_left: u8,
        now: Duration,
        effects: &mut Vec<Effect>,
    ) {
        let still = self.views.get(suspect.node()).is_some_and(|view| {
            view.bump == suspect.bump()
                && view.incarnation == incarnation
                && view.state == MemberState::Suspect
        });
        if !still || rounds_left == 0 {
            return;
        }
        let suspicion = Member::new(suspect.clone(), incarnation, State::Suspect);
        self.notice(suspect, &[suspicion], effects);
        if rounds_left > 1 {
            effects.push(Effect::ScheduleTimer {
                at: now.saturating_add(self.config.gossip_interval),
                timer: MembershipTimer(TimerKind::Remind {
                    suspect: suspect.clone(),
                    incarnation,
                    rounds_left: rounds_left - 1,
                }),
            });
        }
    }

    /// A packet from `sender` said we are suspect: answer it directly. Our
    /// header carries the incarnation foca raised (or already had), which
    /// refutes the suspicion at the sender.
    pub(super) fn answer_suspicion(
        &mut self,
        sender: Option<MemberId>,
        heard: &[Member<MemberId>],
        effects: &mut Vec<Effect>,
    ) {
        let Some(sender) = sender else { return };
        if heard.iter().any(|m| m.id() == self.identity()) && self.foca.num_members() > 0 {
            self.notice(&sender, &[], effects);
        }
    }

    /// One refutation round: a gossip message (carrying our raised
    /// incarnation) to `gossip_fanout` random members.
    pub(super) fn refute(&mut self, rounds_left: u8, rt: &mut Collector) {
        if let Err(error) = self.foca.gossip(&mut *rt) {
            rt.effects.push(Effect::Error(MembershipError::Internal {
                step: "refute",
                reason: error.chain().to_string(),
            }));
        }
        if rounds_left > 1 {
            rt.effects.push(Effect::ScheduleTimer {
                at: rt.now().saturating_add(self.config.gossip_interval),
                timer: MembershipTimer(TimerKind::Refute {
                    rounds_left: rounds_left - 1,
                }),
            });
        }
    }

    /// After a suspicion timer: if `suspect` is now dead, gossip it at once
    /// rather than at the next gossip round. If not (it refuted), drop the
    /// "you are dead" courtesy message foca 2.0 sends anyway, which would
    /// make the suspect renew its identity for nothing.
    pub(super) fn after_suspicion(
        &mut self,
        suspect: &MemberId,
        now: Duration,
        effects: &mut Vec<Effect>,
    ) {
        let dead = self
            .views
            .get(suspect.node())
            .is_some_and(|view| view.bump == suspect.bump() && view.state == MemberState::Dead);
        if dead {
            let mut rt = Collector::new(now);
            if let Err(error) = self.foca.gossip(&mut rt) {
                rt.effects.push(Effect::Error(MembershipError::Internal {
                    step: "gossip death",
                    reason: error.chain().to_string(),
                }));
            }
            effects.extend(self.finish(rt));
        } else {
            effects.retain(|e| !matches!(e, Effect::Send { to, .. } if *to == suspect.addr()));
        }
    }

    fn notice(&mut self, to: &MemberId, updates: &[Member<MemberId>], effects: &mut Vec<Effect>) {
        let max = self.config.max_packet_size.get();
        if let Some(bytes) = notice::gossip_to(self.identity(), self.incarnation, to, updates, max)
        {
            self.stats.packets_sent += 1;
            effects.push(Effect::Send {
                to: to.addr(),
                bytes,
            });
        }
    }
}
