//! Worker sessions over gRPC: one `archon.v1.WorkerSessions.OpenSession`
//! bidirectional stream per connected worker. [`WorkerService`] is the manager's
//! end (it hands each stream to [`archon_core::manager::Manager::attach`]);
//! [`GrpcTransport`] is the worker's end (an [`archon_core::transport::Transport`]).
//!
//! The one thing to know: a session is exactly one stream. Whatever ends it — the
//! worker hanging up, a malformed message, the manager shutting down, a dead
//! connection noticed by HTTP/2 keepalive — ends both directions, and the worker
//! runtime reconnects with backoff, announcing the attempts it still runs.

mod service;
mod transport;

pub use service::{HELLO_TIMEOUT, WorkerService, worker_service};
pub use transport::GrpcTransport;
