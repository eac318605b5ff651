//! Run with: `cargo run -p example-custom-scheduler`
//!
//! A placement policy of your own plugged into Archon: [`LabelAffinity`] (in
//! `lib.rs`) sends jobs to the workers labelled `tier=fast` while they have room,
//! then spreads the rest by free CPU. Archon starts in memory with it and a plain
//! worker (`plain-1`, 2 cores); two more workers join in this process, `fast-1`
//! (2 cores, `tier=fast`) and `plain-2` (3 cores). Six jobs of one core each run at
//! once: two on `fast-1`, then alternately on the plain worker with more CPU free.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use archon::{Archon, JobSpec, Resources, Task};
use archon_core::api::Api;
use example_custom_scheduler::{ExtraWorker, LabelAffinity};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let archon = Archon::embedded()
        .in_memory()
        .scheduler(Arc::new(LabelAffinity::new("tier", "fast")))
        .worker_name("plain-1")
        .capacity(cores(2))
        .start()
        .await?;
    let fast = ExtraWorker::start(&archon, "fast-1", cores(2), &[("tier", "fast")]);
    let plain = ExtraWorker::start(&archon, "plain-2", cores(3), &[]);
    wait_for_workers(&archon, 3).await?;

    // Submit them all first: each holds its core for two seconds, so they overlap.
    let mut jobs = Vec::new();
    for i in 1..=6 {
        let mut spec = JobSpec::new(format!("job-{i}"), Task::Shell { command: "sleep 2".into() });
        spec.resources.cpu_millis = 1_000;
        jobs.push(archon.submit(spec).await?);
    }
    let names: HashMap<_, _> =
        archon.manager().list_workers().await?.into_iter().map(|w| (w.worker.id, w.worker.name)).collect();
    for job in jobs {
        let detail = job.wait().await?;
        let worker = detail.attempts.last().and_then(|a| names.get(&a.worker)).map_or("no worker", String::as_str);
        println!("{} ({}): {} -> ran on {worker}", detail.job_name, detail.run.id, detail.run.state);
    }

    fast.stop().await?;
    plain.stop().await?;
    archon.shutdown().await?;
    Ok(())
}

/// `n` cores and `n` GiB of memory.
fn cores(n: u64) -> Resources {
    Resources { cpu_millis: n * 1_000, memory_bytes: n << 30, ..Resources::default() }
}

/// Waits until `n` workers are in session with the manager (up to 30 s).
async fn wait_for_workers(archon: &Archon, n: usize) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let connected = archon.manager().list_workers().await?.iter().filter(|w| w.connected).count();
        if connected >= n {
            return Ok(());
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "only {connected} of {n} workers joined within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
