//! The apalis peer of `scripts/bench-peers`: no-op jobs end to end on apalis
//! 1.0, in memory or on PostgreSQL, and one result line each.
//!
//!     apalis-peer memory JOBS                  one pusher, one job per push
//!     apalis-peer postgres URL one JOBS        8 clients, one job per push
//!     apalis-peer postgres URL batch JOBS      pushes of 1,000 jobs
//!
//! Each job carries the instant it was pushed; its handler notes how long
//! after that it started, and the run ends when every job has been handled.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apalis::prelude::*;
use apalis_core::backend::memory::MemoryStorage;
use apalis_postgres::{Config, PgPool, PostgresStorage};
use futures::SinkExt;

/// What the handlers saw.
#[derive(Default)]
struct Seen {
    done: AtomicUsize,
    latencies_us: Mutex<Vec<u64>>,
    all: tokio::sync::Notify,
    expected: AtomicUsize,
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

async fn noop(pushed_us: u64, seen: Data<Arc<Seen>>) -> Result<(), BoxDynError> {
    let waited = now_us().saturating_sub(pushed_us);
    seen.latencies_us.lock().map_err(|_| "poisoned")?.push(waited);
    if seen.done.fetch_add(1, Ordering::AcqRel) + 1 == seen.expected.load(Ordering::Acquire) {
        seen.all.notify_one();
    }
    Ok(())
}

fn report(what: &str, jobs: usize, took: Duration, seen: &Seen) {
    let mut l = seen.latencies_us.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort_unstable();
    let at = |p: f64| l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1))).copied().unwrap_or(0);
    println!(
        "{what}: {jobs} jobs in {:.2} s = {:.0} jobs/s; submit->start p50 {:.1} ms, p99 {:.1} ms",
        took.as_secs_f64(),
        jobs as f64 / took.as_secs_f64(),
        at(0.5) as f64 / 1000.0,
        at(0.99) as f64 / 1000.0
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seen = Arc::new(Seen::default());
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["memory", jobs] => {
            let jobs: usize = jobs.parse()?;
            seen.expected.store(jobs, Ordering::Release);
            let mut storage = MemoryStorage::<u64>::new();
            let started = Instant::now();
            for _ in 0..jobs {
                storage.send(TaskBuilder::new(now_us()).build()).await?;
            }
            let worker = WorkerBuilder::new("peer").backend(storage).data(seen.clone()).build(noop);
            let running = tokio::spawn(async move { worker.run().await });
            seen.all.notified().await;
            report("apalis in memory, one push per job", jobs, started.elapsed(), &seen);
            running.abort();
        }
        ["postgres", url, mode, jobs] => {
            let jobs: usize = jobs.parse()?;
            seen.expected.store(jobs, Ordering::Release);
            let pool = PgPool::connect(url).await?;
            PostgresStorage::setup(&pool).await?;
            // A queue of its own (jobs a killed run left are not counted).
            // Tuned as a user would for a flood of small jobs: fetching 100 at
            // a time rather than 10, and polling every second rather than at
            // the 30 s heartbeat (a bulk push wakes no worker: with the
            // defaults its jobs wait up to 30 s).
            let config = Config::default()
                .queue(format!("peer-{}", now_us()))
                .batch_size(100)
                .heartbeat_interval(Duration::from_secs(1));
            let storage = PostgresStorage::<u64>::new(&pool).with_config(config);
            let worker = WorkerBuilder::new("peer").backend(storage.clone()).data(seen.clone()).build(noop);
            let running = tokio::spawn(async move { worker.run().await });
            let started = Instant::now();
            let mut clients = Vec::new();
            let (count, per_push) = if *mode == "batch" { (1, 1000) } else { (8, 1) };
            for c in 0..count {
                let mut storage = storage.clone();
                let share = jobs / count + usize::from(c < jobs % count);
                clients.push(tokio::spawn(async move {
                    let mut left = share;
                    while left > 0 {
                        let n = left.min(per_push);
                        if n == 1 {
                            storage.push(now_us()).await?;
                        } else {
                            storage.push_bulk((0..n).map(|_| now_us()).collect()).await?;
                        }
                        left -= n;
                    }
                    anyhow::Ok(())
                }));
            }
            for client in clients {
                client.await??;
            }
            seen.all.notified().await;
            let what = if *mode == "batch" {
                "apalis-postgres, pushes of 1,000"
            } else {
                "apalis-postgres, one push per job, 8 clients"
            };
            report(what, jobs, started.elapsed(), &seen);
            running.abort();
        }
        _ => anyhow::bail!("usage: apalis-peer memory JOBS | apalis-peer postgres URL one|batch JOBS"),
    }
    Ok(())
}
