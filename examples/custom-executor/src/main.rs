//! Run with: `cargo run -p example-custom-executor`
//!
//! A task kind of your own: HTTP requests, run by [`HttpExecutor`] registered on
//! the embedded worker. A small web service is started on loopback to call; one
//! job checks its health (200: succeeds with the body as output), another asks
//! for a page it does not have (404: fails with exit code 4 and the body on
//! stderr). Copy `src/lib.rs` to write an executor of your own.

use std::sync::Arc;

use archon::{Archon, JobSpec};
use axum::routing::get;
use example_custom_executor::{HttpExecutor, http_task};
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The service the jobs call.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let service = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/health", get(|| async { "ok: all systems nominal" }))
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "no such page") });
    tokio::spawn(async move { axum::serve(listener, app).await });

    let archon = Archon::embedded().in_memory().executor(Arc::new(HttpExecutor::new())).start().await?;
    for (name, path) in [("health check", "/health"), ("missing page", "/nowhere")] {
        let spec = JobSpec::new(name, http_task(&json!({ "url": format!("{service}{path}") })));
        let done = archon.submit(spec).await?.wait().await?;
        let result = done.attempts.last().and_then(|a| a.result.as_ref());
        let (status, stderr) = result.map(|r| (r.status.to_string(), r.stderr.text())).unwrap_or_default();
        println!(
            "{name} ({}): {} -> {} (stdout {:?}, stderr {:?})",
            done.run.id,
            done.run.state,
            status,
            done.stdout(),
            stderr
        );
    }
    archon.shutdown().await?;
    Ok(())
}
