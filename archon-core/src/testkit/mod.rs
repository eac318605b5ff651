//! Conformance suites that every implementation of a plug point runs, and small
//! helpers for tests. Enabled by the `testkit` feature.

pub use crate::state::generate as commands;

pub mod executor_suite;
pub mod fixtures;
pub mod history_suite;
pub mod store_suite;
pub mod transport_suite;

use std::time::Duration;

/// Polls `check` every 10 ms until it holds; panics naming `what` after 10 s.
/// Tests wait on state with it rather than sleeping a fixed time, so a slow, busy
/// machine makes them slower, not flaky.
pub async fn eventually(what: &str, check: impl AsyncFnMut() -> bool) {
    eventually_within(what, Duration::from_secs(10), check).await;
}

/// [`eventually`] with a deadline of the caller's: for waits on something slow
/// by nature (a process started and killed, a cluster electing), where 10 s on a
/// loaded machine is too little.
pub async fn eventually_within(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out after {limit:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
