//! What every fuzz test of untrusted input shares: a seeded proptest runner that
//! prints its seed and a one-line replay command, and a memory budget checked
//! with a counting allocator.
//!
//! Used by `archon-core/tests/fuzz_parsers.rs`, `archon-http/tests/fuzz_spec.rs`,
//! `archon-net/tests/fuzz_decode.rs` and `bins/archon/src/commands/fuzz_flags.rs`
//! (each includes this file with `#[path]`). Environment:
//! - `ARCHON_TEST_SEED=N` replays seed N (default: a seed drawn from the clock);
//! - `PROPTEST_CASES=N` runs N cases per property instead of the test's modest
//!   default (`scripts/fuzz` sets it to 100,000).
//!
//! The counting allocator is `allocation_counter`'s: the workspace forbids
//! `unsafe_code`, which a `GlobalAlloc` of our own would need. It counts the
//! current thread only, so tests running side by side do not disturb a budget.

use std::fmt::Debug;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

/// One property: its name, seed and case count, and how to replay it.
pub(crate) struct Fuzz {
    name: &'static str,
    seed: u64,
    cases: u32,
    target: &'static str,
}

impl Fuzz {
    /// The property `name` of the test target `target` (the cargo arguments that
    /// select its binary, e.g. `-p archon-net --test fuzz_decode`), running
    /// `default_cases` cases unless `PROPTEST_CASES` says otherwise.
    pub(crate) fn new(target: &'static str, name: &'static str, default_cases: u32) -> Fuzz {
        let seed = env_number("ARCHON_TEST_SEED").unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64)
                % 1_000_000_000
        });
        let cases = env_number("PROPTEST_CASES").map_or(default_cases, |n| u32::try_from(n).unwrap_or(u32::MAX));
        let fuzz = Fuzz { name, seed, cases, target };
        eprintln!("{name}: {cases} cases, seed {seed} (replay: {})", fuzz.replay());
        fuzz
    }

    /// The command that runs exactly this property's cases again.
    fn replay(&self) -> String {
        let Fuzz { name, seed, cases, target } = self;
        format!("ARCHON_TEST_SEED={seed} PROPTEST_CASES={cases} cargo nextest run {target} {name}")
    }

    /// Runs `check` on `cases` values of `strategy`; on a failure, panics with the
    /// shrunk input, the seed and the replay command.
    pub(crate) fn run<S>(&self, strategy: &S, check: impl Fn(S::Value) -> Result<(), TestCaseError>)
    where
        S: Strategy,
        S::Value: Debug,
    {
        let mut runner = TestRunner::new(Config {
            cases: self.cases,
            rng_seed: RngSeed::Fixed(self.seed),
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(e) = runner.run(strategy, check) {
            panic!("{} failed with seed {}: {e}\nreplay: {}", self.name, self.seed, self.replay());
        }
    }
}

/// How much memory handling one untrusted input of `n` bytes may hold at its
/// peak: `per_byte × n + base`. A parser that sizes an allocation from a number
/// in its input (`Vec::with_capacity(count)`) overshoots any such line by orders
/// of magnitude; one whose memory follows what it read stays under it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// Bytes per input byte.
    pub(crate) per_byte: u64,
    /// Bytes whatever the input (tables, error messages).
    pub(crate) base: u64,
}

impl Budget {
    /// The most an input of `n` bytes may hold.
    pub(crate) fn limit(self, n: usize) -> u64 {
        self.per_byte.saturating_mul(n as u64).saturating_add(self.base)
    }

    /// Runs `f` on an input of `n` bytes (`what` names it in a failure) and fails
    /// the case when the peak of what `f` allocated on this thread, its result
    /// included, is over [`Budget::limit`]. A panic in `f` goes on as a panic.
    pub(crate) fn check<T>(self, what: &str, n: usize, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
        let (peak, out) = peak_bytes(f);
        let out = out.unwrap_or_else(|panic| resume_unwind(panic));
        let limit = self.limit(n);
        if peak > limit {
            return Err(TestCaseError::fail(format!(
                "{what}: an input of {n} bytes allocated {peak} bytes at its peak, over the budget of {limit} \
                 ({} per byte + {})",
                self.per_byte, self.base
            )));
        }
        Ok(out)
    }
}

/// The peak of the bytes `f` held on this thread, and what it returned (or its
/// panic: caught here so the counter's nesting stays balanced while proptest
/// shrinks a panicking input).
pub(crate) fn peak_bytes<T>(f: impl FnOnce() -> T) -> (u64, std::thread::Result<T>) {
    let mut out = None;
    let info = allocation_counter::measure(|| out = Some(catch_unwind(AssertUnwindSafe(f))));
    let out = out.unwrap_or_else(|| Err(Box::new("the measured closure did not run")));
    (info.bytes_max, out)
}

/// A whole number from the environment; a value that is not one fails loudly
/// rather than silently running something else.
fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().replace('_', "").parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={value:?} is not a whole number (try {name}=1000)"),
    }
}
