//! Run with: `cargo run -p example-embedded`
//!
//! Archon embedded in your own program: one call starts a manager on a durable
//! store (in `$TMPDIR/archon-example-embedded`) and a worker in this process with
//! a typed Rust function registered; a function job and a shell job are submitted
//! and their results awaited. Copy this file to start your own.

use archon::{Archon, JobSpec, Task};
use serde::{Deserialize, Serialize};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data_dir = std::env::temp_dir().join("archon-example-embedded");
    let archon = Archon::embedded().data_dir(data_dir).function("word_count", word_count).start().await?;
    let counted: Count = archon.call("word_count", &Text { text: "the quick brown fox jumps".into() }).await?;
    println!("word_count: succeeded -> {} words", counted.words);
    let hello = JobSpec::new("say hello", Task::Shell { command: "echo hello from a shell job".into() });
    let done = archon.submit(hello).await?.wait().await?;
    println!("{} ({}): {} -> {}", done.job_name, done.run.id, done.run.state, done.stdout().trim());
    archon.shutdown().await?; // the worker kills what still runs, then the store closes
    Ok(())
}

/// The function's input and output: any serde types.
#[derive(Serialize, Deserialize)]
struct Text {
    text: String,
}

#[derive(Serialize, Deserialize)]
struct Count {
    words: usize,
}

/// A typed function: an `Err` fails the run with its message.
async fn word_count(input: Text) -> Result<Count, String> {
    Ok(Count { words: input.text.split_whitespace().count() })
}
