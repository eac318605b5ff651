//! The seeded randomness of a scenario: a tiny xorshift64* generator, and which
//! seeds a test run covers (`ARCHON_TEST_SEED`, `ARCHON_PARTITION_SEEDS`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many seeds a run covers when `ARCHON_PARTITION_SEEDS` does not say.
pub(crate) const DEFAULT_SEEDS: u64 = 3;

/// xorshift64*: small, fast, and the same sequence for the same seed everywhere.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator whose sequence is fixed by `seed` (any value, zero included).
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(splitmix(seed) | 1)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A number in `lo..=hi`.
    pub(crate) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// True `percent` times in a hundred.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A duration of `lo..=hi` milliseconds.
    pub(crate) fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.between(lo, hi))
    }

    /// One of `items` (not empty).
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// An independent generator for another task, drawn from this one.
    pub(crate) fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }
}

/// SplitMix64's finalizer: spreads nearby seeds (1, 2, 3) far apart.
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seeds to run: `ARCHON_TEST_SEED` alone when it is set (to replay one), else
/// `ARCHON_PARTITION_SEEDS` (default [`DEFAULT_SEEDS`]) seeds drawn from the clock.
pub(crate) fn seeds() -> Vec<u64> {
    if let Some(seed) = env_number("ARCHON_TEST_SEED") {
        return vec![seed];
    }
    let count = env_number("ARCHON_PARTITION_SEEDS").unwrap_or(DEFAULT_SEEDS).max(1);
    let clock = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut rng = Rng::new(clock);
    // Short seeds are easier to copy from a log and type back in.
    (0..count).map(|_| rng.below(1_000_000_000)).collect()
}

/// A number from the environment; a value that is not one fails loudly rather than
/// silently running something else.
fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={value:?} is not a whole number (try {name}=42)"),
    }
}
