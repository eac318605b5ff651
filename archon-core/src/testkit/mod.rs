//! Conformance suites that every implementation of a plug point runs, and small
//! helpers for tests. Enabled by the `testkit` feature.

pub mod executor_suite;
pub mod store_suite;
pub mod transport_suite;
