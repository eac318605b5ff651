//! # archon
//!
//! Archon, a distributed, fault-tolerant job scheduler, embedded in your
//! program: one call starts a manager on a durable store (or in memory, or on
//! PostgreSQL) and a local worker running your Rust functions and shell,
//! script and process jobs. The same [`Builder`] composes `archon dev` and
//! `archon-manager`, so what you embed is what the daemons run.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Text { text: String }
//! #[derive(Serialize, Deserialize)]
//! struct Count { words: usize }
//!
//! async fn count(input: Text) -> Result<Count, String> {
//!     Ok(Count { words: input.text.split_whitespace().count() })
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), archon::Error> {
//! let archon = archon::Archon::embedded().in_memory().function("count", count).start().await?;
//! let counted: Count = archon.call("count", &Text { text: "one two three".into() }).await?;
//! assert_eq!(counted.words, 3);
//! archon.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! Where to go next: [`Archon::embedded`] and [`Builder`] for every setting
//! (`.data_dir(..)` for a durable store); [`Archon`] for submitting jobs,
//! workflows and cron jobs, and [`Handle`] to share it with request handlers
//! and tasks; the plug points — [`core::store::Store`],
//! [`core::scheduler::Scheduler`], [`core::executor::Executor`],
//! [`core::transport::Transport`] — in [`core`] (archon-core); the executors in
//! [`exec`] (archon-exec).

mod builder;
mod error;
pub mod executors;
mod handle;
pub mod host;
pub mod postgres;
pub mod replicated;
mod running;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use archon_core as core;
pub use archon_core::model::{JobSpec, Resources, Schedule, Task, WorkflowSpec};
pub use archon_exec as exec;
pub use builder::Builder;
pub use error::Error;
pub use handle::Handle;
pub use running::{Archon, JobHandle, function_job};
