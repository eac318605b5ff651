//! Issue 15's benchmark: what mutual TLS 1.3 and the token check cost a
//! submit. In one run it starts `archon dev` twice per round — `--insecure`
//! (plaintext, no token) and secured (its default: TLS 1.3 with client
//! certificates, every call's token checked against the replicated tokens) —
//! and measures on each, over real sockets:
//!
//! - connect: a fresh connection (TCP, and the TLS handshake when secured) up
//!   to the answer of its first call, p50 and p99;
//! - submit latency: single-job submits one after another on one connection,
//!   p50 and p99;
//! - submit throughput: single-job submits from `clients` connections at once.
//!
//! `cargo build --release --bin archon && cargo run --release -p archon-benches --bin security`

use std::sync::Arc;
use std::time::{Duration, Instant};

use archon_benches::dev::{Dev, DevOptions};
use archon_benches::noop_job;
use archon_core::api::Api;
use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Submits per measurement.
    #[arg(long, default_value_t = 3000)]
    calls: usize,
    /// Connections submitting at once for the throughput figure.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Fresh connections for the connect figure.
    #[arg(long, default_value_t = 100)]
    connects: usize,
    /// Rounds (each starts both clusters again).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

async fn start(secure: bool) -> anyhow::Result<Dev> {
    let bin = std::env::current_exe()?.with_file_name("archon");
    Dev::start(&bin, &DevOptions { insecure: !secure, store: None }).await
}

async fn connect(dev: &Dev) -> anyhow::Result<Arc<dyn Api>> {
    dev.client().await
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

struct Figures {
    connect: (Duration, Duration),
    latency: (Duration, Duration),
    throughput: f64,
}

async fn measure(dev: &Dev, args: &Args) -> anyhow::Result<Figures> {
    // Warm up: the first calls pay for lazily built state on both sides.
    let api = connect(dev).await?;
    for _ in 0..200 {
        api.submit(vec![noop_job()]).await?;
    }

    let mut connects = Vec::with_capacity(args.connects);
    for _ in 0..args.connects {
        let started = Instant::now();
        let fresh = connect(dev).await?;
        fresh.status().await?;
        connects.push(started.elapsed());
    }
    connects.sort();

    let mut latencies = Vec::with_capacity(args.calls);
    for _ in 0..args.calls {
        let started = Instant::now();
        api.submit(vec![noop_job()]).await?;
        latencies.push(started.elapsed());
    }
    latencies.sort();

    let per_client = args.calls / args.clients.max(1);
    let mut clients = Vec::new();
    for _ in 0..args.clients {
        clients.push(connect(dev).await?);
    }
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|api| {
            tokio::spawn(async move {
                for _ in 0..per_client {
                    api.submit(vec![noop_job()]).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let throughput = (per_client * args.clients) as f64 / started.elapsed().as_secs_f64();
    Ok(Figures {
        connect: (percentile(&connects, 0.5), percentile(&connects, 0.99)),
        latency: (percentile(&latencies, 0.5), percentile(&latencies, 0.99)),
        throughput,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "| round | mode | connect p50 | connect p99 | submit p50 | submit p99 | submits/s ({} clients) |",
        args.clients
    );
    println!("|---|---|---|---|---|---|---|");
    let mut totals = [(0.0, 0.0, 0.0); 2];
    for round in 1..=args.rounds {
        for (i, secure) in [false, true].into_iter().enumerate() {
            let dev = start(secure).await?;
            let f = measure(&dev, &args).await?;
            let mode = if secure { "TLS 1.3 + token" } else { "plaintext, no token" };
            println!(
                "| {round} | {mode} | {} | {} | {} | {} | {:.0} |",
                ms(f.connect.0),
                ms(f.connect.1),
                ms(f.latency.0),
                ms(f.latency.1),
                f.throughput
            );
            totals[i].0 += f.latency.0.as_secs_f64();
            totals[i].1 += f.throughput;
            totals[i].2 += f.connect.0.as_secs_f64();
        }
    }
    let n = args.rounds as f64;
    let [plain, secure] = totals;
    println!(
        "mean over rounds: submit p50 {:.3} → {:.3} ms ({:+.1}%), throughput {:.0} → {:.0}/s ({:+.1}%), connect p50 {:.2} → {:.2} ms",
        plain.0 / n * 1e3,
        secure.0 / n * 1e3,
        (secure.0 / plain.0 - 1.0) * 100.0,
        plain.1 / n,
        secure.1 / n,
        (secure.1 / plain.1 - 1.0) * 100.0,
        plain.2 / n * 1e3,
        secure.2 / n * 1e3,
    );
    Ok(())
}
