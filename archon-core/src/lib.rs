//! # archon-core
//!
//! The heart of Archon, a distributed, fault-tolerant job scheduler: the domain
//! model ([`model`]), the deterministic state machine ([`state`]), the four plug
//! points — [`store::Store`], [`scheduler::Scheduler`], [`executor::Executor`],
//! [`transport::Transport`] — with an in-memory implementation of each, and the
//! [`manager::Manager`] and [`worker::WorkerRuntime`] runtimes that compose them,
//! recording into a node's Prometheus [`metrics::Metrics`].
//!
//! This crate never depends on another Archon crate or on tonic, openraft, diesel,
//! bollard or axum: implementations of the plug points live in sibling crates.
//!
//! Its public API is listed in `public-api.txt` beside this crate's manifest and
//! checked by `scripts/public-api`: until 1.0 a minor release may change it, a patch
//! release only adds (the README's "Stability and versions").
//!
//! ```no_run
//! # async fn demo() -> Result<(), archon_core::Error> {
//! use std::sync::Arc;
//! use archon_core::api::Api;
//! use archon_core::manager::Manager;
//! use archon_core::model::{JobSpec, Task};
//! use archon_core::store::MemStore;
//!
//! let manager = Manager::builder(Arc::new(MemStore::new())).build();
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! tokio::spawn({ let m = manager.clone(); let s = shutdown.clone(); async move { m.run(s).await } });
//! let submitted = manager.submit(vec![JobSpec::new("hello", Task::Shell { command: "echo hi".into() })]).await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod auth;
pub mod clock;
pub mod cron;
mod error;
pub mod executor;
pub mod history;
pub mod manager;
pub mod metrics;
pub mod model;
pub mod scheduler;
pub mod state;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod transport;
pub mod worker;

pub use error::{Error, Result};
