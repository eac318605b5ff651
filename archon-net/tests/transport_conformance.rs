//! Both worker transports pass the one conformance suite of
//! `archon_core::testkit::transport_suite`: the in-process one, and gRPC over a
//! real loopback socket served by `archon_net::serve_manager`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use archon_core::testkit::transport_suite::{TransportFixture, TransportHarness, run_all, spawn_manager};
use archon_core::transport::InProcTransport;
use archon_net::GrpcTransport;
use async_trait::async_trait;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Sessions over tokio channels to a manager in the same process.
struct InProc;

#[async_trait]
impl TransportHarness for InProc {
    async fn start(&self) -> TransportFixture {
        let stop = CancellationToken::new();
        let manager = spawn_manager(&stop);
        TransportFixture { transport: Arc::new(InProcTransport::new(manager.clone())), manager, stop }
    }
}

/// Sessions over gRPC to a manager served on a loopback port.
struct Grpc;

#[async_trait]
impl TransportHarness for Grpc {
    async fn start(&self) -> TransportFixture {
        let stop = CancellationToken::new();
        let manager = spawn_manager(&stop);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(archon_net::serve_manager(listener, manager.clone(), stop.clone()));
        TransportFixture { transport: Arc::new(GrpcTransport::new(vec![address.to_string()])), manager, stop }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inproc_transport_conforms() {
    run_all(&InProc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_transport_conforms() {
    run_all(&Grpc).await;
}
