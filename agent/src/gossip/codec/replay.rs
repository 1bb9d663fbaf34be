//! Replay protection: per sender and channel, the sender's epoch and a
//! sliding window over its message counters. A counter seen before, one too
//! far behind the highest seen, or one from an earlier epoch is refused.

/// How far behind the highest counter a message may arrive (reordering room).
pub const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// What a receiver remembers of one sender on one channel.
#[derive(Clone, Debug)]
pub(super) struct ReplayWindow {
    epoch: u64,
    highest: u64,
    seen: [u64; WORDS],
    /// Receiver's clock when the sender was last heard, for eviction.
    pub(super) last_heard: u64,
}

impl ReplayWindow {
    pub(super) fn new(epoch: u64, counter: u64, now_ms: u64) -> Self {
        let mut window = ReplayWindow {
            epoch,
            highest: counter,
            seen: [0; WORDS],
            last_heard: now_ms,
        };
        window.mark(counter);
        window
    }

    /// Records an authenticated message's (epoch, counter); false if it is a
    /// replay or too old to tell.
    pub(super) fn accept(&mut self, epoch: u64, counter: u64, now_ms: u64) -> bool {
        if epoch < self.epoch {
            return false;
        }
        if epoch > self.epoch {
            *self = ReplayWindow::new(epoch, counter, now_ms);
            return true;
        }
        if counter > self.highest {
            if counter - self.highest >= WINDOW {
                self.seen = [0; WORDS];
            } else {
                for c in self.highest + 1..counter {
                    self.clear(c);
                }
            }
            self.highest = counter;
        } else if self.highest - counter >= WINDOW || self.is_marked(counter) {
            return false;
        }
        self.mark(counter);
        self.last_heard = self.last_heard.max(now_ms);
        true
    }

    fn slot(counter: u64) -> (usize, u64) {
        let index = counter % WINDOW;
        ((index / 64) as usize, 1u64 << (index % 64))
    }

    fn mark(&mut self, counter: u64) {
        let (word, bit) = Self::slot(counter);
        if let Some(w) = self.seen.get_mut(word) {
            *w |= bit;
        }
    }

    fn clear(&mut self, counter: u64) {
        let (word, bit) = Self::slot(counter);
        if let Some(w) = self.seen.get_mut(word) {
            *w &= !bit;
        }
    }

    fn is_marked(&self, counter: u64) -> bool {
        let (word, bit) = Self::slot(counter);
        self.seen.get(word).is_some_and(|w| w & bit != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_duplicates_old_counters_and_old_epochs() {
        let mut w = ReplayWindow::new(7, 100, 0);
        assert!(!w.accept(7, 100, 0), "duplicate");
        assert!(w.accept(7, 99, 0), "late but inside the window");
        assert!(!w.accept(7, 99, 0));
        assert!(w.accept(7, 100 + WINDOW, 0));
        assert!(!w.accept(7, 100, 0), "fell out of the window");
        assert!(w.accept(7, 101, 0), "just inside");
        assert!(w.accept(8, 1, 0), "the sender restarted");
        assert!(!w.accept(7, 5_000, 0), "its previous run is over");
    }

    proptest! {
        /// Against a set of everything seen: a counter is accepted exactly
        /// when it is new and within the window of the highest so far.
        #[test]
        fn matches_a_model(counters in prop::collection::vec(0u64..3_000, 1..400)) {
            let mut w = ReplayWindow::new(1, counters[0], 0);
            let mut seen = std::collections::BTreeSet::from([counters[0]]);
            let mut highest = counters[0];
            for &c in &counters[1..] {
                let expected = !seen.contains(&c) && c + WINDOW > highest;
                prop_assert_eq!(w.accept(1, c, 0), expected, "counter {}", c);
                if expected {
                    seen.insert(c);
                    highest = highest.max(c);
                }
            }
        }
    }
}
