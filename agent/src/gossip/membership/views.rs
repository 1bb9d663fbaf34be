//! The driver's view of every member, kept from the member states foca
//! applies, and the transitions reported as `MemberUp`/`MemberSuspect`/
//! `MemberDown`. A member is keyed by node id; news about an older life
//! (lower bump) of a node is ignored.

use foca::{Member, State};

use super::{Effect, MemberId, MemberState, MemberView, Membership};

impl Membership {
    /// Compares foca's whole member list with our views (after a merge,
    /// which foca applies without re-encoding).
    pub(super) fn refresh_views(&mut self, effects: &mut Vec<Effect>) {
        let members: Vec<Member<MemberId>> = self.foca.iter_membership_state().cloned().collect();
        for member in &members {
            self.observe(member, effects);
        }
    }

    /// Records a member state foca holds and emits the transition, if any.
    pub(super) fn observe(&mut self, member: &Member<MemberId>, effects: &mut Vec<Effect>) {
        let id = member.id();
        if id.node() == self.identity().node() || id.addr() == self.identity().addr() {
            return; // one of our own lives
        }
        let state = match member.state() {
            State::Alive => MemberState::Alive,
            State::Suspect => MemberState::Suspect,
            State::Down => MemberState::Dead,
        };
        let view = MemberView {
            node: id.node().clone(),
            addr: id.addr(),
            state,
            incarnation: member.incarnation(),
            bump: id.bump(),
        };
        let known = self.views.get(id.node());
        if known.is_some_and(|k| k.bump > view.bump) {
            return; // news about an older life
        }
        let before = known.map(|k| k.state);
        let was_active = before.is_some_and(MemberState::is_active);
        let same_life = known.is_some_and(|k| k.bump == view.bump);
        self.views.insert(id.node().clone(), view);
        let member = id.clone();
        match state {
            MemberState::Dead => {
                if was_active {
                    effects.push(Effect::MemberDown { member });
                }
            }
            MemberState::Alive => {
                if !(same_life && before == Some(MemberState::Alive)) {
                    effects.push(Effect::MemberUp { member });
                }
            }
            MemberState::Suspect => {
                if !(same_life && was_active) {
                    effects.push(Effect::MemberUp {
                        member: member.clone(),
                    });
                }
                if !(same_life && before == Some(MemberState::Suspect)) {
                    effects.push(Effect::MemberSuspect { member });
                }
            }
        }
    }
}
