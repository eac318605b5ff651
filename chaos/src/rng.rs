//! A small seeded random number generator (SplitMix64): the load and the
//! faults each draw from their own stream of one seed, so a seed replays the
//! same choices — which jobs, which faults, on whom, for how long. (Timing
//! still depends on the machine: a replay repeats the schedule, not the race.)

use std::time::Duration;

/// A SplitMix64 stream.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    /// The stream of `seed`, made distinct for `purpose` (e.g. "load", "faults").
    pub(crate) fn stream(seed: u64, purpose: &str) -> Rng {
        let tag =
            purpose.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        Rng { state: seed ^ tag }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi` (`lo` when the range is empty).
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo { lo } else { lo + self.next_u64() % (hi - lo) }
    }

    /// A duration of `lo..hi` milliseconds.
    pub(crate) fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }

    /// True `percent` times in a hundred.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 100) < percent
    }

    /// An index chosen by `weights` (none when they are all zero).
    pub(crate) fn weighted(&mut self, weights: &[u64]) -> Option<usize> {
        let total: u64 = weights.iter().sum();
        if total == 0 {
            return None;
        }
        let mut roll = self.range(0, total);
        for (i, w) in weights.iter().enumerate() {
            if roll < *w {
                return Some(i);
            }
            roll -= w;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn a_seed_replays_its_stream_and_purposes_differ() {
        let a: Vec<u64> = (0..5).scan(Rng::stream(7, "load"), |r, _| Some(r.next_u64())).collect();
        let b: Vec<u64> = (0..5).scan(Rng::stream(7, "load"), |r, _| Some(r.next_u64())).collect();
        let c: Vec<u64> = (0..5).scan(Rng::stream(7, "faults"), |r, _| Some(r.next_u64())).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn ranges_and_weights_stay_in_bounds() {
        let mut r = Rng::stream(1, "t");
        for _ in 0..1000 {
            assert!((3..9).contains(&r.range(3, 9)));
            assert_eq!(r.weighted(&[0, 5, 0]), Some(1));
        }
        assert_eq!(r.weighted(&[0, 0]), None);
        assert_eq!(r.range(4, 4), 4);
    }
}
