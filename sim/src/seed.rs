//! Seeds: where a simulation's seed comes from, the small generator the
//! harness draws its choices from (fault times, job lengths, election
//! timeouts), and the one-line command that replays a seed.
//!
//! The one thing to know: every choice the harness makes comes from
//! [`SeedRng`], and turmoil's own (message latency, loss) from its builder's
//! `rng_seed`, both from the one seed printed with every result.

use std::ops::Range;

/// The environment variable that sets a test's seed.
pub const SEED_VAR: &str = "ARCHON_SIM_SEED";

/// The environment variable that sets how many seeds a soak runs (from the
/// test's seed on).
pub const SEEDS_VAR: &str = "ARCHON_SIM_SEEDS";

/// The seed from [`SEED_VAR`], else `default`.
pub fn seed_or(default: u64) -> u64 {
    std::env::var(SEED_VAR).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(default)
}

/// The seeds a soak runs: [`SEEDS_VAR`] of them (1 when unset) from
/// [`seed_or`]`(default)` on.
pub fn seeds_or(default: u64) -> std::ops::Range<u64> {
    let first = seed_or(default);
    let count = std::env::var(SEEDS_VAR).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1);
    first..first.saturating_add(count)
}

/// The command that runs test `test` with `seed` again (the simulation is
/// deterministic only when built with tokio's scheduler seeded, which
/// `scripts/soak` does).
pub fn replay_command(seed: u64, test: &str) -> String {
    format!("scripts/soak --seed {seed} {test}")
}

/// SplitMix64: small, fast, and the same sequence on every platform and
/// version (unlike a library RNG whose algorithm may change).
#[derive(Debug, Clone)]
pub struct SeedRng(u64);

impl SeedRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> SeedRng {
        SeedRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `range` (its start when empty).
    pub fn in_range(&mut self, range: Range<u64>) -> u64 {
        let width = range.end.saturating_sub(range.start);
        if width == 0 { range.start } else { range.start + self.next_u64() % width }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_gives_one_sequence() {
        let (mut a, mut b) = (SeedRng::new(7), SeedRng::new(7));
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        assert_eq!(xs, (0..5).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(xs, (0..5).map(|_| SeedRng::new(8).next_u64()).collect::<Vec<_>>());
        assert!((0..100).all(|_| (5..9).contains(&a.in_range(5..9))));
    }
}
