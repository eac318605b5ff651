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
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
