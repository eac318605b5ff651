#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The executor conformance suite against [`HttpExecutor`], calling a web
//! service on loopback whose endpoints do what the suite asks (print, complain,
//! fail with a status, take long, send a lot); then the executor on a real
//! embedded Archon: only workers that registered it get `http` jobs.

use std::sync::Arc;
use std::time::Duration;

use archon::core::api::Api;
use archon::core::model::{RunState, Task};
use archon::{Archon, JobSpec};
use archon_core::testkit::executor_suite::{self, SuiteTasks};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::get;
use example_custom_executor::{HttpExecutor, http_task};
use serde_json::json;

/// A service whose endpoints behave as the suite's tasks must.
async fn service() -> String {
    #[derive(serde::Deserialize)]
    struct Text {
        text: String,
    }
    let app = axum::Router::new()
        .route("/print", get(|Query(q): Query<Text>| async move { q.text }))
        .route("/complain", get(|Query(q): Query<Text>| async move { (StatusCode::INTERNAL_SERVER_ERROR, q.text) }))
        .route("/status/{code}", get(|Path(code): Path<u16>| async move { StatusCode::from_u16(code).unwrap() }))
        .route(
            "/sleep/{secs}",
            get(|Path(secs): Path<u64>| async move {
                tokio::time::sleep(Duration::from_secs(secs)).await;
                "slept"
            }),
        )
        .route("/bytes/{n}", get(|Path(n): Path<usize>| async move { "x".repeat(n) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

struct HttpTasks {
    service: String,
}

impl HttpTasks {
    fn get(&self, path: &str) -> Task {
        http_task(&json!({ "url": format!("{}{path}", self.service) }))
    }
}

fn query(text: &str) -> String {
    text.replace(' ', "%20")
}

impl SuiteTasks for HttpTasks {
    fn print(&self, text: &str) -> Task {
        self.get(&format!("/print?text={}", query(text)))
    }

    fn print_stderr(&self, text: &str) -> Task {
        self.get(&format!("/complain?text={}", query(text)))
    }

    fn exit_with(&self, code: i32) -> Task {
        self.get(&format!("/status/{}", code * 100))
    }

    fn sleep(&self, secs: u64) -> Task {
        self.get(&format!("/sleep/{secs}"))
    }

    fn print_bytes(&self, n: usize) -> Task {
        self.get(&format!("/bytes/{n}"))
    }

    fn exit_codes(&self) -> Vec<i32> {
        vec![4, 5]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_executor_passes_the_executor_conformance_suite() {
    let tasks = HttpTasks { service: service().await };
    executor_suite::run_all(Arc::new(HttpExecutor::new()), &tasks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_an_embedded_archon_http_jobs_run_and_a_bad_request_fails_naming_the_input() {
    let service = service().await;
    let archon = Archon::embedded().in_memory().executor(Arc::new(HttpExecutor::new())).start().await.unwrap();
    let ok = JobSpec::new("ok", http_task(&json!({ "url": format!("{service}/print?text=fine") })));
    let done = archon.submit(ok).await.unwrap().wait().await.unwrap();
    assert_eq!((done.run.state, done.stdout()), (RunState::Succeeded, "fine".to_owned()));

    let bad = JobSpec::new("bad", http_task(&json!({ "uri": "typo" })));
    let done = archon.submit(bad).await.unwrap().wait().await.unwrap();
    assert_eq!(done.run.state, RunState::Failed);
    let reason = done.exit().unwrap().to_string();
    assert!(reason.contains("input: not an HTTP request"), "{reason}");
    archon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_the_executor_refuses_http_jobs_at_submit_naming_the_capability() {
    let service = service().await;
    let archon = Archon::embedded().in_memory().start().await.unwrap();
    let spec = JobSpec::new("refused", http_task(&json!({ "url": format!("{service}/print?text=x") })));
    let refused = archon.submit(spec).await.unwrap_err().to_string();
    assert!(refused.contains("cannot run custom:http tasks"), "{refused}");
    assert!(archon.manager().list_runs(Default::default()).await.unwrap().items.is_empty(), "nothing was stored");
    archon.shutdown().await.unwrap();
}
