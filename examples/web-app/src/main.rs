//! Run with: `cargo run -p example-web-app`
//!
//! A web application with Archon embedded: one call starts a manager on a
//! durable store (in `$TMPDIR/archon-example-web-app`) and a worker in this
//! process, and the router of `lib.rs` serves on <http://127.0.0.1:3000> (or
//! `PORT`). Ask for a report, then follow the `Location` it answers with to
//! watch the job's output arrive line by line:
//!
//! ```text
//! curl -i -X POST localhost:3000/reports -H 'content-type: application/json' -d '{"lines": 20}'
//! curl -N localhost:3000/reports/run-1/output
//! ```
//!
//! Ctrl-C stops taking requests, lets the reports being streamed finish, then
//! shuts Archon down. Copy this crate to start your own.

use std::net::Ipv4Addr;

use anyhow::Context as _;
use archon::Archon;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port = match std::env::var("PORT") {
        Ok(port) => port.parse().with_context(|| format!("PORT: {port:?} is not a port number (try 3000)"))?,
        Err(_) => 3000,
    };
    let data_dir = std::env::temp_dir().join("archon-example-web-app");
    let archon = Archon::embedded().data_dir(&data_dir).start().await?;
    println!("Archon is running, its state in {}", data_dir.display());

    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .with_context(|| format!("PORT: cannot listen on 127.0.0.1:{port} (try another, e.g. PORT=3001)"))?;
    let port = listener.local_addr()?.port();
    println!("serving on http://127.0.0.1:{port}; try:");
    println!(r#"  curl -i -X POST localhost:{port}/reports -H 'content-type: application/json' -d '{{"lines": 20}}'"#);
    println!("  curl -N localhost:{port}/reports/run-N/output   (the Location it answered with)");

    axum::serve(listener, example_web_app::router(archon.handle()))
        .with_graceful_shutdown(async {
            // If the handler cannot be installed, serve until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            println!("Ctrl-C: no new requests; the reports being streamed finish first");
        })
        .await?;

    archon.shutdown().await?; // kills what still runs, then the store closes
    println!("stopped");
    Ok(())
}
