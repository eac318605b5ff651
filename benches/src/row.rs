//! The machine-readable result lines of `scripts/bench-peers`: each measuring
//! program prints, besides its human line, one `ROW system=… submit=… key=value …`
//! line that `benches/peers/table.py` collects from the run's log. What to know:
//! values never hold spaces (they are replaced by `_`), and the Python, apalis and
//! REST peers print the same form.

use std::fmt::Display;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One result line under construction.
#[derive(Debug, Clone)]
#[must_use = "a row is only seen once printed"]
pub struct Row {
    line: String,
}

impl Row {
    /// A row for `system` (e.g. `archon-dev-grpc`) measured with `submit`
    /// (`one`, `batch` or `latency`).
    pub fn new(system: &str, submit: &str) -> Row {
        Row { line: String::from("ROW") }.with("system", system).with("submit", submit)
    }

    /// Adds `key=value`.
    pub fn with(mut self, key: &str, value: impl Display) -> Row {
        let value = value.to_string().split_whitespace().collect::<Vec<_>>().join("_");
        self.line.push_str(&format!(" {key}={value}"));
        self
    }

    /// Adds a figure with `decimals` decimals.
    pub fn num(self, key: &str, value: f64, decimals: usize) -> Row {
        self.with(key, format!("{value:.decimals$}"))
    }

    /// Prints it on stdout.
    pub fn print(self) {
        println!("{}", self.line);
    }
}

/// The `p` quantile (0 to 1) of `samples`, sorted in place; 0 when empty.
pub fn quantile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let last = samples.len().saturating_sub(1);
    let i = ((last as f64) * p).round() as usize;
    samples.get(i.min(last)).copied().unwrap_or(0.0)
}

/// Milliseconds of `d`.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The wall clock in milliseconds since the Unix epoch, with microseconds: what
/// a client notes at submit, to compare with the instant a job started.
pub fn wall_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}
