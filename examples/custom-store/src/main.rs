//! Run with: `cargo run -p example-custom-store`
//!
//! Your own store plugged into Archon: [`FileStore`] (in `lib.rs`) keeps the
//! cluster state in one append-only file in `$TMPDIR/archon-example-custom-store`.
//! Archon starts on it through the builder, runs a shell job, and every state
//! change the job caused is a record in that file. Run it again: the file is
//! replayed first, so it keeps growing and the run numbers go on.

use std::sync::Arc;

use archon::{Archon, JobSpec, Task};
use example_custom_store::FileStore;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join("archon-example-custom-store");
    std::fs::create_dir_all(&dir)?;
    let store = Arc::new(FileStore::open(dir.join("commands.jsonl"))?);
    println!("{}: {} records replayed", store.path().display(), store.records());

    let archon = Archon::embedded().store(store.clone()).start().await?;
    let hello = JobSpec::new("hello", Task::Shell { command: "echo hello from a custom store".into() });
    let done = archon.submit(hello).await?.wait().await?;
    println!("{} ({}): {} -> {}", done.job_name, done.run.id, done.run.state, done.stdout().trim());
    archon.shutdown().await?;

    println!("{}: {} records now", store.path().display(), store.records());
    Ok(())
}
