//! # archon-sim
//!
//! A deterministic simulation of a whole Archon cluster under
//! [turmoil](https://docs.rs/turmoil): managers running the real Raft store
//! (archon-raft, on in-memory disks) and the real manager and gRPC servers,
//! workers running the real worker runtime with a simulated executor, and a
//! client submitting through the real gRPC client — all on simulated hosts,
//! in virtual time, with faults injected from a seed.
//!
//! The one thing to know: a run is a function of its seed. Everything that
//! could differ between two runs — election timeouts, reconnect jitter, clocks,
//! disk work on other threads — is either drawn from the seed or kept out (see
//! the module docs of [`clock`], [`disk`] and [`seed`]); the
//! `the_same_seed_gives_the_same_trace` test holds it to that.
//!
//! - [`cluster::run`] builds and runs one simulation ([`cluster::SimConfig`]),
//!   injecting the [`faults::Faults`] it asks for, and returns its
//!   [`trace::Trace`], the trace's hash and every broken invariant ([`checks`],
//!   the safety ones checked once a virtual second while it runs).
//! - Tests take their seed from `ARCHON_SIM_SEED` ([`seed::SEED_VAR`]) and
//!   print a one-line replay command ([`seed::replay_command`]).

pub mod checks;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod disk;
pub mod faults;
pub mod manager;
pub mod net;
pub mod seed;
pub mod trace;
pub mod worker;

pub use cluster::{SimConfig, SimError, SimReport, run};
pub use faults::Faults;
