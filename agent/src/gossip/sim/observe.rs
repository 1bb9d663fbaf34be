//! What every simulated node believes about every other, against the truth:
//! a view matrix fed by the member effects, incremental counts of correct
//! (observer, target) pairs for convergence, and false deaths (a running
//! identity declared dead).

use std::time::Duration;

use crate::gossip::membership::MemberState;

/// One observer's belief about one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The target identity's bump.
    pub bump: u64,
    pub state: MemberState,
    /// When the observer adopted this belief.
    pub since: Duration,
}

/// A live identity declared dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FalseDeath {
    pub at: Duration,
    pub observer: usize,
    pub target: usize,
}

pub(crate) struct Observations {
    /// The live identity (bump) of each node, `None` while it is down.
    truth: Vec<Option<u64>>,
    view: Vec<Vec<Option<Seen>>>,
    correct: Vec<Vec<bool>>,
    row_correct: Vec<usize>,
    col_correct: Vec<usize>,
    total_correct: usize,
    pub(crate) false_deaths: Vec<FalseDeath>,
    pub(crate) suspicions: u64,
}

impl Observations {
    pub(crate) fn new(nodes: usize) -> Self {
        Self {
            truth: vec![None; nodes],
            view: vec![vec![None; nodes]; nodes],
            correct: vec![vec![false; nodes]; nodes],
            row_correct: vec![0; nodes],
            col_correct: vec![0; nodes],
            total_correct: 0,
            false_deaths: Vec::new(),
            suspicions: 0,
        }
    }

    /// Nodes running now.
    pub(crate) fn running(&self) -> usize {
        self.truth.iter().filter(|t| t.is_some()).count()
    }

    pub(crate) fn is_running(&self, node: usize) -> bool {
        self.truth.get(node).is_some_and(Option::is_some)
    }

    pub(crate) fn seen(&self, observer: usize, target: usize) -> Option<Seen> {
        self.view.get(observer)?.get(target).copied().flatten()
    }

    /// `node` now runs as identity `bump` (`None`: it stopped). Forgets what
    /// a stopped node believed.
    pub(crate) fn set_truth(&mut self, node: usize, bump: Option<u64>) {
        if node >= self.truth.len() {
            return;
        }
        self.truth[node] = bump;
        if bump.is_none() {
            self.view[node].iter_mut().for_each(|seen| *seen = None);
        }
        for other in 0..self.truth.len() {
            self.recheck(node, other);
            self.recheck(other, node);
        }
    }

    /// Records a member effect seen by `observer` about `target`.
    pub(crate) fn record(
        &mut self,
        at: Duration,
        observer: usize,
        target: usize,
        bump: u64,
        state: MemberState,
    ) {
        if observer >= self.truth.len() || target >= self.truth.len() {
            return;
        }
        if state == MemberState::Suspect {
            self.suspicions += 1;
        }
        if state == MemberState::Dead && self.truth[target] == Some(bump) {
            self.false_deaths.push(FalseDeath {
                at,
                observer,
                target,
            });
        }
        self.view[observer][target] = Some(Seen {
            bump,
            state,
            since: at,
        });
        self.recheck(observer, target);
    }

    /// Every running node sees every other running node's live identity
    /// as a member.
    pub(crate) fn converged(&self) -> bool {
        let n = self.running();
        self.total_correct == n * n.saturating_sub(1)
    }

    /// `node` sees every running node, and every running node sees it.
    pub(crate) fn node_converged(&self, node: usize) -> bool {
        let others = self.running().saturating_sub(1);
        self.is_running(node)
            && self.row_correct[node] == others
            && self.col_correct[node] == others
    }

    /// When the last running node saw `target`'s identity `bump` dead, if all
    /// of them have.
    pub(crate) fn dead_everywhere(&self, target: usize, bump: u64) -> Option<Duration> {
        let mut last = Duration::ZERO;
        for observer in (0..self.truth.len()).filter(|&o| o != target && self.is_running(o)) {
            let seen = self.seen(observer, target)?;
            let dead = if seen.bump == bump {
                seen.state == MemberState::Dead
            } else {
                seen.bump > bump
            };
            if !dead {
                return None;
            }
            last = last.max(seen.since);
        }
        Some(last)
    }

    fn recheck(&mut self, observer: usize, target: usize) {
        let now = observer != target
            && self.truth[observer].is_some()
            && self.truth[target].is_some_and(|bump| {
                self.view[observer][target]
                    .is_some_and(|seen| seen.bump == bump && seen.state.is_active())
            });
        let before = std::mem::replace(&mut self.correct[observer][target], now);
        match (before, now) {
            (false, true) => {
                self.row_correct[observer] += 1;
                self.col_correct[target] += 1;
                self.total_correct += 1;
            }
            (true, false) => {
                self.row_correct[observer] -= 1;
                self.col_correct[target] -= 1;
                self.total_correct -= 1;
            }
            _ => {}
        }
    }
}
