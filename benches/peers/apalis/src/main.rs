//! The apalis peer of `scripts/bench-peers`: no-op jobs end to end on apalis
//! 1.0, in memory or on PostgreSQL, with one human line and one `ROW` line each
//! (the form of benches/src/row.rs).
//!
//!     apalis-peer memory one JOBS              8 pushers, one job per push
//!     apalis-peer memory batch JOBS            2 pushers, 10,000 jobs per push
//!     apalis-peer memory latency SAMPLES       one job at a time, each waited for
//!     apalis-peer postgres URL one JOBS        8 clients, one job per push
//!     apalis-peer postgres URL batch JOBS      pushes of 1,000
//!     apalis-peer postgres URL latency SAMPLES one job at a time, each waited for
//!     apalis-peer postgres-notify URL …        the same, the worker woken by LISTEN/NOTIFY
//!
//! apalis-postgres is tuned as a user would for a flood of small jobs: fetching
//! 100 at a time rather than 10, and polling every second rather than at the 30 s
//! heartbeat (a bulk push wakes no polling worker: with the defaults its jobs wait
//! up to 30 s); `postgres-notify` mounts its `Pubsub` (`with_pubsub`), which wakes
//! the worker on every insert — faster for bulk pushes and at rest, slower for a
//! stream of single pushes here — so both are measured.
//!
//! The worker runs while the jobs are pushed. Each job carries the instant it
//! was pushed; its handler notes how long after that it started, and a load run
//! ends when every job has been handled. Pushing stops after 120 s; latency
//! sampling after 60 s.
//!
//! In memory, every pusher has a sink of its own on the worker's channel:
//! apalis' `MemorySink` takes its lock with `try_lock().unwrap()` when it sends,
//! so two sends through one sink at once (or one racing the worker's readiness
//! check on the storage's own sink) panic.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apalis::prelude::*;
use apalis_core::backend::memory::{MemorySink, MemoryStorage, MemoryStorageError};
use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_postgres::{Config, PgPool, PostgresStorage};
use futures::{SinkExt, StreamExt};

/// How long pushers keep pushing, and how long a latency run samples.
const PUSH_FOR: Duration = Duration::from_secs(120);
const SAMPLE_FOR: Duration = Duration::from_secs(60);

/// What the handlers saw.
#[derive(Default)]
struct Seen {
    done: AtomicUsize,
    latencies_us: Mutex<Vec<u64>>,
    each: tokio::sync::Notify,
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

async fn noop(pushed_us: u64, seen: Data<Arc<Seen>>) -> Result<(), BoxDynError> {
    let waited = now_us().saturating_sub(pushed_us);
    seen.latencies_us.lock().map_err(|_| "poisoned")?.push(waited);
    seen.done.fetch_add(1, Ordering::AcqRel);
    seen.each.notify_one();
    Ok(())
}

/// p50 and p99 of what the handlers saw, in ms.
fn percentiles(seen: &Seen) -> (f64, f64) {
    let mut l = seen.latencies_us.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort_unstable();
    let at = |p: f64| {
        let last = l.len().saturating_sub(1);
        l.get((((last as f64) * p).round() as usize).min(last)).copied().unwrap_or(0) as f64 / 1000.0
    };
    (at(0.5), at(0.99))
}

/// What a load run was: its ROW's system and submit, a description, its shape.
struct Load<'a> {
    system: &'a str,
    submit: &'a str,
    what: &'a str,
    clients: usize,
    batch: usize,
}

fn report(load: &Load<'_>, jobs: usize, took: Duration, seen: &Seen) {
    let Load { system, submit, what, clients, batch } = load;
    let (p50, p99) = percentiles(seen);
    let rate = jobs as f64 / took.as_secs_f64();
    println!(
        "{what}: {jobs} jobs in {:.2} s = {rate:.0} jobs/s; submit->start (under this load) p50 {p50:.1} ms, p99 {p99:.1} ms",
        took.as_secs_f64(),
    );
    println!(
        "ROW system={system} submit={submit} jobs={jobs} clients={clients} batch={batch} secs={:.2} rate={rate:.0} \
         load_p50_ms={p50:.3} load_p99_ms={p99:.3}",
        took.as_secs_f64()
    );
}

fn report_latency(system: &str, what: &str, seen: &Seen) {
    let n = seen.latencies_us.lock().map(|l| l.len()).unwrap_or(0);
    let (p50, p99) = percentiles(seen);
    println!("{what}: {n} jobs one at a time, submit->start p50 {p50:.2} ms, p99 {p99:.2} ms (the handler's clock)");
    println!("ROW system={system} submit=latency samples={n} p50_ms={p50:.3} p99_ms={p99:.3} clock=job-clock");
}

/// Latency at rest: `count` jobs (after 20 not counted) pushed by `push` one
/// at a time, each waited for until its handler ran, 5 ms apart.
async fn paced(seen: &Seen, count: usize, mut push: impl AsyncFnMut() -> anyhow::Result<()>) -> anyhow::Result<()> {
    let began = Instant::now();
    for i in 0..count + 20 {
        if began.elapsed() > SAMPLE_FOR {
            break;
        }
        if i == 20 {
            seen.latencies_us.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clear();
        }
        push().await?;
        tokio::time::timeout(Duration::from_secs(10), seen.each.notified()).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Waits for the pushers, then until the handlers have seen all they pushed;
/// returns how many that was.
async fn all_drained(
    seen: &Seen,
    clients: Vec<tokio::task::JoinHandle<anyhow::Result<usize>>>,
) -> anyhow::Result<usize> {
    let mut pushed = 0;
    for client in clients {
        pushed += client.await??;
    }
    drained(seen, pushed).await?;
    Ok(pushed)
}

/// Waits until the handlers have seen `target` jobs (at most 60 s more).
async fn drained(seen: &Seen, target: usize) -> anyhow::Result<()> {
    let give_up = Instant::now() + Duration::from_secs(60);
    while seen.done.load(Ordering::Acquire) < target {
        if Instant::now() > give_up {
            anyhow::bail!(
                "{} of {target} jobs were not handled 60 s after the last push",
                target - seen.done.load(Ordering::Acquire)
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// A sink of its own on the memory worker's channel.
fn memory_sink(tx: &futures::channel::mpsc::UnboundedSender<Task<u64>>) -> MemorySink<u64> {
    let sink: Box<dyn futures::Sink<Task<u64>, Error = MemoryStorageError> + Send + Sync + Unpin> =
        Box::new(tx.clone().sink_map_err(MemoryStorageError::from));
    MemorySink::new(Arc::new(futures::lock::Mutex::new(sink)))
}

async fn memory(mode: &str, count: usize) -> anyhow::Result<()> {
    let seen = Arc::new(Seen::default());
    let (tx, rx) = futures::channel::mpsc::unbounded::<Task<u64>>();
    let storage = MemoryStorage::new_with(memory_sink(&tx), rx.boxed());
    let worker = WorkerBuilder::new("peer").backend(storage).data(seen.clone()).build(noop);
    let running = tokio::spawn(async move { worker.run().await });
    if mode == "latency" {
        let mut sink = memory_sink(&tx);
        paced(&seen, count, async || Ok(sink.send(TaskBuilder::new(now_us()).build()).await?)).await?;
        report_latency("apalis-memory", "apalis in memory", &seen);
        running.abort();
        return Ok(());
    }
    let (pushers, per_push) = if mode == "batch" { (2, 10_000) } else { (8, 1) };
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..pushers {
        let mut sink = memory_sink(&tx);
        let share = count / pushers;
        clients.push(tokio::spawn(async move {
            let mut left = share;
            while left > 0 && started.elapsed() < PUSH_FOR {
                let n = left.min(per_push);
                if n == 1 {
                    sink.send(TaskBuilder::new(now_us()).build()).await?;
                } else {
                    let at = now_us();
                    let tasks: Vec<_> = (0..n).map(|_| Ok(TaskBuilder::new(at).build())).collect();
                    sink.send_all(&mut futures::stream::iter(tasks)).await?;
                }
                left -= n;
            }
            anyhow::Ok(share - left)
        }));
    }
    let pushed = all_drained(&seen, clients).await?;
    let took = started.elapsed();
    let what = if mode == "batch" {
        "apalis in memory, pushes of 10,000, 2 pushers"
    } else {
        "apalis in memory, one job per push, 8 pushers"
    };
    let load = Load { system: "apalis-memory", submit: mode, what, clients: pushers, batch: per_push };
    report(&load, pushed, took, &seen);
    running.abort();
    Ok(())
}

async fn postgres(url: &str, notify: bool, mode: &str, count: usize) -> anyhow::Result<()> {
    let seen = Arc::new(Seen::default());
    let pool = PgPool::connect(url).await?;
    PostgresStorage::setup(&pool).await?;
    // A queue of its own (jobs a killed run left are not counted), tuned (see above).
    let config = Config::default()
        .queue(format!("peer-{}", now_us()))
        .batch_size(100)
        .heartbeat_interval(Duration::from_secs(1));
    let storage = PostgresStorage::<u64>::new(&pool).with_config(config);
    let running = if notify {
        let worker = WorkerBuilder::new("peer").backend(storage.clone().with_pubsub()).data(seen.clone()).build(noop);
        tokio::spawn(async move {
            let _ = worker.run().await;
        })
    } else {
        let worker = WorkerBuilder::new("peer").backend(storage.clone()).data(seen.clone()).build(noop);
        tokio::spawn(async move {
            let _ = worker.run().await;
        })
    };
    let system = if notify { "apalis-postgres-notify" } else { "apalis-postgres" };
    if mode == "latency" {
        let mut storage = storage.clone();
        paced(&seen, count, async || Ok(storage.push(now_us()).await?)).await?;
        report_latency(system, system, &seen);
        running.abort();
        return Ok(());
    }
    let started = Instant::now();
    let mut clients = Vec::new();
    let (pushers, per_push) = if mode == "batch" { (1, 1000) } else { (8, 1) };
    for c in 0..pushers {
        let mut storage = storage.clone();
        let share = count / pushers + usize::from(c < count % pushers);
        clients.push(tokio::spawn(async move {
            let mut left = share;
            while left > 0 && started.elapsed() < PUSH_FOR {
                let n = left.min(per_push);
                if n == 1 {
                    storage.push(now_us()).await?;
                } else {
                    storage.push_bulk((0..n).map(|_| now_us()).collect()).await?;
                }
                left -= n;
            }
            anyhow::Ok(share - left)
        }));
    }
    let pushed = all_drained(&seen, clients).await?;
    let took = started.elapsed();
    let what = if mode == "batch" { "pushes of 1,000" } else { "one push per job, 8 clients" };
    let what = format!("{system}, {what}");
    let load = Load { system, submit: mode, what: &what, clients: pushers, batch: per_push };
    report(&load, pushed, took, &seen);
    running.abort();
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: apalis-peer memory one|batch|latency N | apalis-peer postgres[-notify] URL one|batch|latency N";
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["memory", mode @ ("one" | "batch" | "latency"), count] => memory(mode, count.parse()?).await,
        [kind @ ("postgres" | "postgres-notify"), url, mode @ ("one" | "batch" | "latency"), count] => {
            postgres(url, *kind == "postgres-notify", mode, count.parse()?).await
        }
        _ => anyhow::bail!("{usage}"),
    }
}
