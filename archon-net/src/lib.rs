//! # archon-net
//!
//! Archon's network transports over gRPC (tonic + prost): the client API, defined
//! by `proto/archon/v1/api.proto`, and worker sessions, defined by
//! `proto/archon/v1/worker.proto`.
//!
//! - [`serve_manager`] runs a [`archon_core::manager::Manager`] on a TCP listener:
//!   the `archon.v1.ArchonApi` service for clients and the
//!   `archon.v1.WorkerSessions` service for workers, on one port.
//! - [`serve`] runs only the API for any [`archon_core::api::Api`];
//!   [`api_service`] and [`worker_service`] give the bare services for composing.
//! - [`GrpcClient`] implements [`archon_core::api::Api`] against a remote
//!   manager, so callers hold an `Arc<dyn Api>` either way.
//! - [`GrpcTransport`] implements [`archon_core::transport::Transport`], so a
//!   [`archon_core::worker::WorkerRuntime`] reaches a remote manager the same way
//!   it reaches one in process; it passes the same conformance suite
//!   (`archon_core::testkit::transport_suite`) as the in-process transport.
//! - Errors keep their [`archon_core::Error`] variant across the wire (see
//!   [`status`]); model ↔ protobuf conversions are `From`/`TryFrom` impls on the
//!   [`proto`] types and never panic on malformed input.
//!
//! ```no_run
//! # async fn demo(manager: archon_core::manager::Manager) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use archon_core::api::Api;
//! use archon_core::transport::Transport;
//!
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:50051").await?;
//! tokio::spawn(archon_net::serve_manager(listener, manager, shutdown.clone()));
//!
//! let api: Arc<dyn Api> = Arc::new(archon_net::GrpcClient::connect("127.0.0.1:50051").await?);
//! let status = api.status().await?;
//! let transport: Arc<dyn Transport> = Arc::new(archon_net::GrpcTransport::new(vec!["127.0.0.1:50051".into()]));
//! # Ok(()) }
//! ```

mod client;
mod convert;
mod error;
mod guard;
mod metrics;
mod server;
mod sessions;
pub mod status;
pub mod tls;

/// Generated protobuf messages and gRPC stubs of `archon.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    tonic::include_proto!("archon.v1");

    /// The compiled `archon.v1` protos (a `google.protobuf.FileDescriptorSet`):
    /// every service and method, for tools and tests that enumerate them.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/archon_descriptor.bin"));
}

pub use client::GrpcClient;
pub use error::Error;
pub use guard::{
    API_SERVICE, GuardLayer, GuardService, RAFT_SERVICE, WORKER_SERVICE, admit, api_scope, bearer, guard_routes,
};
pub use metrics::{GrpcMetricsLayer, GrpcMetricsService, measure_routes};
pub use proto::archon_api_server::ArchonApiServer;
pub use proto::worker_sessions_server::WorkerSessionsServer;
pub use server::{
    ApiService, MAX_MESSAGE_BYTES, SHUTDOWN_GRACE, api_service, manager_routes, serve, serve_manager, serve_routes,
    serve_routes_incoming, serve_routes_tls,
};
pub use sessions::{GrpcTransport, HELLO_TIMEOUT, WorkerService, worker_service};
