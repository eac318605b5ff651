//! What the dashboard reads, through the router a manager serves: the page and
//! its assets with their security headers, the status stream that keeps it
//! live, and the last hour's timeline with its worker series.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use archon_core::api::Api;
use archon_core::manager::{Manager, ManagerConfig};
use archon_core::model::{Resources, WorkerId};
use archon_core::state::Command;
use archon_core::store::{MemStore, StoreExt};
use archon_core::testkit::eventually;
use archon_http::{HttpConfig, TimelineSource};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A running manager sampling every 100 ms, and its REST router with the timeline.
fn serve(shutdown: &CancellationToken) -> (Manager, axum::Router) {
    // Workers registered by hand have no session: keep the reaper away.
    let config = ManagerConfig {
        timeline_every: Duration::from_millis(100),
        worker_timeout: Duration::from_secs(3600),
        ..ManagerConfig::default()
    };
    let manager = Manager::builder(Arc::new(MemStore::new())).config(config).build();
    tokio::spawn({
        let (m, s) = (manager.clone(), shutdown.clone());
        async move { m.run(s).await }
    });
    let sampled = manager.clone();
    let timeline: TimelineSource = Arc::new(move |wanted| sampled.timeline(wanted));
    let api: Arc<dyn Api> = Arc::new(manager.clone());
    let config = HttpConfig { timeline: Some(timeline), ..HttpConfig::default() };
    (manager, archon_http::router(api, &config, shutdown.clone()))
}

async fn get(router: &axum::Router, path: &str) -> axum::response::Response {
    let req = Request::builder().uri(path).body(Body::empty()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), router.clone().oneshot(req)).await.unwrap().unwrap()
}

async fn json(router: &axum::Router, path: &str) -> (StatusCode, Value) {
    let answer = get(router, path).await;
    let status = answer.status();
    let bytes = axum::body::to_bytes(answer.into_body(), 64 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn register(manager: &Manager, name: &str, cpu_millis: u64) -> WorkerId {
    let outcomes = manager
        .propose(vec![Command::RegisterWorker {
            at: archon_core::model::Timestamp(1),
            name: name.into(),
            address: String::new(),
            labels: Default::default(),
            capacity: Resources { cpu_millis, memory_bytes: 1 << 30, ..Resources::default() },
            capabilities: ["shell".to_owned()].into(),
            running: Default::default(),
            queue: 0,
        }])
        .await
        .unwrap();
    assert!(outcomes[0].rejection().is_none(), "{outcomes:?}");
    manager.store().query(|s| s.workers().values().find(|w| w.name == name).unwrap().id)
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_a_policy_that_refuses_inline_script() {
    let shutdown = CancellationToken::new();
    let (_, router) = serve(&shutdown);
    let page = get(&router, "/").await;
    assert_eq!(page.status(), StatusCode::OK);
    let policy = page.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(!policy.contains("unsafe"), "{policy}");
    assert_eq!(page.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let html = String::from_utf8(axum::body::to_bytes(page.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
    assert!(html.contains(r#"<script type="module" src="/ui/app.js"></script>"#));
    assert!(!html.contains("<script>"), "no inline script");
    assert!(!html.contains(" style="), "no inline style");
    for (asset, kind) in [("app.js", "text/javascript"), ("app.css", "text/css"), ("favicon.svg", "image/svg+xml")] {
        let answer = get(&router, &format!("/ui/{asset}")).await;
        assert_eq!(answer.status(), StatusCode::OK, "{asset}");
        assert!(answer.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with(kind), "{asset}");
        assert!(answer.headers().contains_key(header::CONTENT_SECURITY_POLICY), "{asset}");
    }
    let (status, problem) = json(&router, "/ui/nope.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["type"], "urn:archon:problem:no-route");
    let post = Request::builder().method("POST").uri("/").body(Body::empty()).unwrap();
    let answer = router.clone().oneshot(post).await.unwrap();
    assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED);
    shutdown.cancel();
}

#[tokio::test]
async fn the_status_stream_sends_the_status_at_once_and_again_when_it_changes() {
    let shutdown = CancellationToken::new();
    let (manager, router) = serve(&shutdown);
    let answer = get(&router, "/api/v1/events").await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = answer.into_body().into_data_stream();
    let mut text = String::new();
    let mut next_event = async || -> Value {
        loop {
            if let Some(end) = text.find("\n\n") {
                let frame: String = text.drain(..end + 2).collect();
                if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                    assert!(frame.starts_with("event: status\n"), "{frame}");
                    return serde_json::from_str(data).unwrap();
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), body.next()).await.unwrap().unwrap().unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    };
    let first = next_event().await;
    assert_eq!(first["workers"].as_object().unwrap().len(), 0, "{first}");
    register(&manager, "w-one", 1000).await;
    let second = next_event().await;
    assert_eq!(second["workers"]["ready"], 1, "{second}");
    shutdown.cancel();
}

#[tokio::test]
async fn the_timeline_samples_the_cluster_and_gives_the_asked_workers_series() {
    let shutdown = CancellationToken::new();
    let (manager, router) = serve(&shutdown);
    let a = register(&manager, "alpha", 2000).await;
    let b = register(&manager, "beta", 4000).await;
    let mut timeline = Value::Null;
    eventually("two samples with both workers", async || {
        let (status, t) = json(&router, "/api/v1/timeline?workers=all").await;
        assert_eq!(status, StatusCode::OK, "{t}");
        let with_both = t["samples"].as_array().unwrap().iter().filter(|s| s["cpu_capacity_millis"] == 6000).count();
        timeline = t;
        with_both >= 2
    })
    .await;
    assert_eq!(timeline["every_seconds"], 0.1);
    let samples = timeline["samples"].as_array().unwrap();
    for s in samples {
        for key in ["at", "ended", "failed", "queued", "running", "cpu_allocated_millis", "memory_capacity_bytes"] {
            assert!(s.get(key).is_some(), "{key} missing from {s}");
        }
    }
    let series = timeline["workers"].as_object().unwrap();
    assert_eq!(series.len(), 2, "{timeline}");
    let alpha = &series[&a.to_string()];
    assert_eq!(alpha["cpu_permille"].as_array().unwrap().len(), samples.len());
    assert_eq!(alpha["cpu_permille"].as_array().unwrap().last().unwrap(), 0);

    // Only the asked workers, and none by default.
    let (_, only) = json(&router, &format!("/api/v1/timeline?workers={b}")).await;
    assert_eq!(only["workers"].as_object().unwrap().keys().collect::<Vec<_>>(), vec![&b.to_string()]);
    let (_, none) = json(&router, "/api/v1/timeline").await;
    assert!(none["workers"].as_object().unwrap().is_empty());
    for bad in ["", "w-x", "w-1,,w-2", "w-1%20", "everyone"] {
        let (status, problem) = json(&router, &format!("/api/v1/timeline?workers={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {problem}");
        assert_eq!(problem["field"], "workers", "{bad:?}: {problem}");
    }
    shutdown.cancel();
}
