//! `Impairment`: the decision the relay takes for each frame toward the host, lost or
//! sent at a given time, from a seeded generator so a run can be replayed. No I/O.

use std::time::{Duration, Instant};

/// Loss probability and fixed delay of one direction of a link.
#[derive(Debug, Clone)]
pub struct Impairment {
    loss_pct: f64,
    delay: Duration,
    rng: SplitMix64,
}

impl Impairment {
    /// Loses `loss_pct` percent of frames (0 to 100) and delays the others by `delay`.
    pub fn new(loss_pct: f64, delay: Duration, seed: u64) -> Self {
        Self {
            loss_pct,
            delay,
            rng: SplitMix64(seed),
        }
    }

    /// When a frame received at `now` is to be sent on, or `None` if it is lost.
    /// The delay is the same for every frame, so frames leave in the order they came.
    pub fn schedule(&mut self, now: Instant) -> Option<Instant> {
        if self.loss_pct > 0.0 && self.rng.next_percent() < self.loss_pct {
            return None;
        }
        Some(now + self.delay)
    }

    /// Whether frames are held at all; without delay they are sent as they come.
    pub fn delays(&self) -> bool {
        !self.delay.is_zero()
    }
}

/// SplitMix64 (Steele, Lea and Flood): small, fast, and good enough to decide losses.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 100).
    fn next_percent(&mut self) -> f64 {
        // The top 53 bits fill an f64 mantissa exactly.
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit * 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost_out_of(loss_pct: f64, frames: u32, seed: u64) -> u32 {
        let mut impairment = Impairment::new(loss_pct, Duration::ZERO, seed);
        let now = Instant::now();
        let lost = (0..frames)
            .filter(|_| impairment.schedule(now).is_none())
            .count();
        u32::try_from(lost).expect("fewer frames than u32::MAX")
    }

    #[test]
    fn no_loss_loses_nothing_and_full_loss_everything() {
        assert_eq!(lost_out_of(0.0, 10_000, 1), 0);
        assert_eq!(lost_out_of(100.0, 10_000, 1), 10_000);
    }

    #[test]
    fn loss_rate_matches_the_setting() {
        for (loss_pct, seed) in [(10.0, 7), (30.0, 8), (50.0, 9)] {
            let lost = f64::from(lost_out_of(loss_pct, 100_000, seed)) / 1000.0;
            assert!(
                (lost - loss_pct).abs() < 1.0,
                "{lost}% lost with {loss_pct}% set"
            );
        }
    }

    #[test]
    fn the_same_seed_loses_the_same_frames() {
        let decisions = |seed| {
            let mut impairment = Impairment::new(50.0, Duration::ZERO, seed);
            let now = Instant::now();
            (0..64)
                .map(|_| impairment.schedule(now).is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(decisions(42), decisions(42));
        assert_ne!(decisions(42), decisions(43));
    }

    #[test]
    fn every_frame_is_held_for_the_delay() {
        let delay = Duration::from_millis(50);
        let mut impairment = Impairment::new(0.0, delay, 1);
        let now = Instant::now();
        assert_eq!(impairment.schedule(now), Some(now + delay));
        assert!(impairment.delays());
        assert!(!Impairment::new(0.0, Duration::ZERO, 1).delays());
    }
}
