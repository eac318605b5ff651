//! The store conformance suite against the in-memory store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use archon_core::store::{MemStore, Store};
use archon_core::testkit::store_suite::{StoreHarness, run_all};
use async_trait::async_trait;

struct Mem;

#[async_trait]
impl StoreHarness for Mem {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(MemStore::new())
    }
}

#[tokio::test]
async fn the_mem_store_conforms() {
    run_all(&Mem).await;
}

#[tokio::test]
async fn the_mem_store_history_conforms() {
    archon_core::testkit::history_suite::run_all(&Mem).await;
}
