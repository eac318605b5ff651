#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End to end: Archon in memory with [`LabelAffinity`] plugged in, three workers
//! in this process and real shell jobs. The jobs block until the test creates a
//! file, so every placement is made while all of them hold their cores: nothing
//! depends on timing.

use std::sync::Arc;
use std::time::Duration;

use archon::{Archon, JobHandle, JobSpec, Resources, Task};
use archon_core::api::Api;
use archon_core::model::RunState;
use example_custom_scheduler::{ExtraWorker, LabelAffinity};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_fill_the_labelled_worker_then_go_to_the_worker_with_the_most_free_cpu() {
    let archon = Archon::embedded()
        .in_memory()
        .scheduler(Arc::new(LabelAffinity::new("tier", "fast")))
        .worker_name("plain-1")
        .capacity(millis(2_000))
        .start()
        .await
        .unwrap();
    let fast = ExtraWorker::start(&archon, "fast-1", millis(1_000), &[("tier", "fast")]);
    let plain = ExtraWorker::start(&archon, "plain-2", millis(2_500), &[]);
    eventually("the three workers are connected", async || connected(&archon).await == 3).await;

    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release");
    // Waits for the file; gives up (failing) after about 30 s, so no job outlives a failed test.
    let wait_for_release =
        format!("for _ in $(seq 1500); do [ -e '{}' ] && exit 0; sleep 0.02; done; exit 1", release.display());
    let mut jobs = Vec::new();
    for i in 1..=6 {
        let mut spec = JobSpec::new(format!("job-{i}"), Task::Shell { command: wait_for_release.clone() });
        spec.resources.cpu_millis = 1_000;
        jobs.push(archon.submit(spec).await.unwrap());
    }

    // One core on fast-1; then the most free CPU: plain-2 (2.5 cores free), plain-1
    // (2), plain-2 (1.5), plain-1 (1). The sixth fits nowhere (0.5 core free at most).
    let expected = ["fast-1", "plain-2", "plain-1", "plain-2", "plain-1"];
    eventually("five jobs are running", async || {
        let mut running = 0;
        for job in &jobs[..5] {
            running += usize::from(run_state(&archon, job).await == RunState::Running);
        }
        running == 5
    })
    .await;
    let mut placed = Vec::new();
    for job in &jobs[..5] {
        placed.push(worker_of(&archon, job).await.unwrap_or_default());
    }
    assert_eq!(placed, expected);
    assert_eq!(run_state(&archon, &jobs[5]).await, RunState::Pending, "the sixth job must wait for room");
    assert_eq!(worker_of(&archon, &jobs[5]).await, None);

    std::fs::write(&release, b"").unwrap();
    for job in &jobs {
        let detail = tokio::time::timeout(Duration::from_secs(30), job.wait()).await.unwrap().unwrap();
        assert_eq!(detail.run.state, RunState::Succeeded, "{} ended {}", detail.job_name, detail.run.state);
    }
    for (job, worker) in jobs.iter().zip(expected) {
        assert_eq!(worker_of(&archon, job).await.as_deref(), Some(worker), "each of the five ran where it was placed");
    }

    for worker in [fast, plain] {
        tokio::time::timeout(Duration::from_secs(30), worker.stop()).await.unwrap().unwrap();
    }
    archon.shutdown().await.unwrap();
}

/// `millis` of CPU and 1 GiB of memory.
fn millis(millis: u64) -> Resources {
    Resources { cpu_millis: millis, memory_bytes: 1 << 30, ..Resources::default() }
}

async fn connected(archon: &Archon) -> usize {
    archon.manager().list_workers().await.unwrap().iter().filter(|w| w.connected).count()
}

async fn run_state(archon: &Archon, job: &JobHandle) -> RunState {
    archon.manager().get_run(job.run().unwrap()).await.unwrap().run.state
}

/// The name of the worker the job's (last) attempt went to, if any.
async fn worker_of(archon: &Archon, job: &JobHandle) -> Option<String> {
    let detail = archon.manager().get_run(job.run().unwrap()).await.unwrap();
    let id = detail.attempts.last()?.worker;
    let workers = archon.manager().list_workers().await.unwrap();
    workers.into_iter().find(|w| w.worker.id == id).map(|w| w.worker.name)
}

/// Waits until `check` holds; panics naming `what` after 30 s.
async fn eventually(what: &str, check: impl AsyncFnMut() -> bool) {
    archon_core::testkit::eventually_within(what, Duration::from_secs(30), check).await;
}
