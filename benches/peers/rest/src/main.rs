//! The REST row of `scripts/bench-peers`: no-op jobs through `archon dev`'s REST
//! API (HTTP/1.1 and JSON on its gRPC port), secured as shipped — TLS 1.3, and the
//! client certificate and admin token from the settings file `archon dev` writes
//! — with one human line and one `ROW` line per run (the form of
//! benches/src/row.rs):
//!
//!     archon-rest-peer ARCHON one JOBS          8 clients, POST /api/v1/jobs, one job each
//!     archon-rest-peer ARCHON batch JOBS        2 clients, POST /api/v1/jobs/batch of 5,000
//!     archon-rest-peer ARCHON latency SAMPLES   one job at a time, each waited for
//!
//! ARCHON is the `archon` binary; each run starts a fresh `archon dev`. Ended
//! runs are counted with `GET /api/v1/cluster`, as loadgen counts them over gRPC;
//! submitting stops after 120 s, latency sampling after 60 s.

mod dev;
mod http;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

use crate::dev::Dev;
use crate::http::Conn;

/// A no-op function job as a spec file writes it.
const DRAFT: &str = r#"{"name":"noop","function":"noop","cpu":"1m","memory":"0"}"#;
/// The run states that are ends.
const ENDED: [&str; 5] = ["succeeded", "failed", "cancelled", "timed_out", "upstream_failed"];
const SYSTEM: &str = "archon-dev-rest";

/// How to open connections to the running `archon dev`.
#[derive(Clone)]
struct Client {
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    token: Arc<str>,
}

impl Client {
    async fn open(&self) -> anyhow::Result<Conn> {
        Conn::open(self.addr, self.config.clone(), &self.token).await
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [archon, mode, count] = args.as_slice() else {
        bail!("usage: archon-rest-peer ARCHON one|batch JOBS | archon-rest-peer ARCHON latency SAMPLES");
    };
    let count: usize = count.parse().with_context(|| format!("{count:?} is not a count"))?;
    let mut dev = Dev::start(archon.as_ref()).await?;
    let s = &dev.settings;
    let client =
        Client { addr: dev.addr, config: http::tls_config(&s.ca, &s.cert, &s.key)?, token: s.token.as_str().into() };
    let outcome = match mode.as_str() {
        "one" => load(&client, 8, count, 1).await,
        "batch" => load(&client, 2, count, 5_000).await,
        "latency" => latency(&client, count).await,
        other => Err(anyhow::anyhow!("{other:?}: one, batch or latency")),
    };
    dev.stop().await;
    outcome
}

/// Ended runs, by `GET /api/v1/cluster`.
async fn ended(conn: &mut Conn) -> anyhow::Result<u64> {
    let answer = conn.request("GET", "/api/v1/cluster", b"").await?;
    if answer.status != 200 {
        bail!("GET /api/v1/cluster: {} {}", answer.status, String::from_utf8_lossy(&answer.body));
    }
    let status = answer.json()?;
    Ok(ENDED.iter().filter_map(|k| status["runs"][*k].as_u64()).sum())
}

/// The body submitting `n` jobs: one draft, or a batch of `n`.
fn body(n: usize, batch: bool) -> Vec<u8> {
    if batch { format!(r#"{{"jobs":[{}]}}"#, vec![DRAFT; n].join(",")).into_bytes() } else { DRAFT.as_bytes().to_vec() }
}

/// Warms up, then submits about `jobs` from `clients` connections, `per_request`
/// a request, and waits until every run has ended.
async fn load(client: &Client, clients: usize, jobs: usize, per_request: usize) -> anyhow::Result<()> {
    let warmup = (jobs / 10).clamp(1_000, 10_000);
    submit_and_drain(client, clients, warmup, per_request).await?;
    let (done, took) = submit_and_drain(client, clients, jobs, per_request).await?;
    let rate = done as f64 / took.as_secs_f64();
    let submit = if per_request == 1 { "one" } else { "batch" };
    println!(
        "archon dev REST (TLS 1.3 + token): {done} no-op jobs, {per_request} per request, {clients} clients: \
         {:.2}s = {rate:.0} jobs/s",
        took.as_secs_f64()
    );
    println!(
        "ROW system={SYSTEM} submit={submit} jobs={done} clients={clients} batch={per_request} secs={:.2} rate={rate:.0}",
        took.as_secs_f64()
    );
    Ok(())
}

async fn submit_and_drain(
    client: &Client,
    clients: usize,
    jobs: usize,
    per_request: usize,
) -> anyhow::Result<(usize, Duration)> {
    let deadline = Duration::from_secs(120);
    let mut status = client.open().await?;
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(client.open().await?);
    }
    let started = Instant::now();
    let before = ended(&mut status).await?;
    let submitted = Arc::new(AtomicUsize::new(0));
    let batch = per_request > 1;
    let full = Arc::new(body(per_request, batch));
    let per = jobs / clients;
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (full, submitted) = (full.clone(), submitted.clone());
        let path = if batch { "/api/v1/jobs/batch" } else { "/api/v1/jobs" };
        tasks.push(tokio::spawn(async move {
            let mut left = per;
            while left > 0 && started.elapsed() < deadline {
                let n = left.min(per_request);
                let partial;
                let payload: &[u8] = if n == per_request {
                    &full
                } else {
                    partial = body(n, batch);
                    &partial
                };
                let answer = conn.request("POST", path, payload).await?;
                let ok = if batch { answer.status == 200 } else { answer.status == 201 };
                if !ok {
                    bail!("POST {path}: {} {}", answer.status, String::from_utf8_lossy(&answer.body));
                }
                if batch
                    && let Some(refused) =
                        answer.json()?["results"].as_array().and_then(|r| r.iter().find(|x| x.get("error").is_some()))
                {
                    bail!("a job was refused: {refused}");
                }
                submitted.fetch_add(n, Ordering::Relaxed);
                left -= n;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let submitted = submitted.load(Ordering::Relaxed);
    let target = before + submitted as u64;
    loop {
        let now = ended(&mut status).await?;
        if now >= target {
            break;
        }
        if started.elapsed() > deadline + Duration::from_secs(60) {
            bail!("{} of {submitted} runs had not ended 180 s after the first submit", target - now);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok((submitted, started.elapsed()))
}

/// Submit → start at rest: one job at a time, waited for (`GET …/wait`), then
/// 5 ms of rest. The start is the manager's record of it (its clock, whole
/// milliseconds, the same host as this client): +0.5 ms, minus the submit instant.
async fn latency(client: &Client, samples: usize) -> anyhow::Result<()> {
    let mut conn = client.open().await?;
    let (mut to_start, mut to_end) = (Vec::new(), Vec::new());
    let began = Instant::now();
    for i in 0..samples + 20 {
        if began.elapsed() > Duration::from_secs(60) {
            break;
        }
        let (sent_wall, sent) = (wall_ms(), Instant::now());
        let answer = conn.request("POST", "/api/v1/jobs", DRAFT.as_bytes()).await?;
        if answer.status != 201 {
            bail!("POST /api/v1/jobs: {} {}", answer.status, String::from_utf8_lossy(&answer.body));
        }
        let run = answer.json()?["run"].as_str().context("no run in the answer")?.to_owned();
        let waited = conn.request("GET", &format!("/api/v1/runs/{run}/wait?timeout=30s"), b"").await?;
        let ended_after = sent.elapsed().as_secs_f64() * 1e3;
        let detail = waited.json()?;
        let started = detail["attempts"][0]["started_at"].as_str().and_then(rfc3339_ms);
        let started = started.with_context(|| format!("{run} has no start: {detail}"))?;
        if i >= 20 {
            to_start.push((started as f64 + 0.5 - sent_wall).max(0.0));
            to_end.push(ended_after);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let n = to_start.len();
    if n == 0 {
        bail!("no latency sample within 60 s");
    }
    let (p50, p99) = (quantile(&mut to_start, 0.5), quantile(&mut to_start, 0.99));
    let (e50, e99) = (quantile(&mut to_end, 0.5), quantile(&mut to_end, 0.99));
    println!(
        "latency: {n} no-op jobs one at a time on an idle archon dev over REST (TLS 1.3 + token): submit→start (the \
         manager's start record, ms clock) p50 {p50:.2} ms p99 {p99:.2} ms; submit→end known to the client p50 \
         {e50:.2} ms p99 {e99:.2} ms"
    );
    println!(
        "ROW system={SYSTEM} submit=latency samples={n} p50_ms={p50:.3} p99_ms={p99:.3} end_p50_ms={e50:.3} \
         end_p99_ms={e99:.3} clock=manager-record-ms"
    );
    Ok(())
}

fn quantile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let last = samples.len().saturating_sub(1);
    samples.get((((last as f64) * p).round() as usize).min(last)).copied().unwrap_or(0.0)
}

fn wall_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Milliseconds since the epoch of `2026-12-04T23:29:54.123Z` (UTC, as Archon writes instants).
fn rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> { text.get(from..from + len)?.parse().ok() };
    if b.len() < 20 || b[10] != b'T' || !text.ends_with('Z') {
        return None;
    }
    let (y, m, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hh, mm, ss) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let millis = match text.get(19..text.len() - 1) {
        Some("") => 0,
        Some(f) => {
            let digits = f.strip_prefix('.')?;
            format!("{digits:0<3}").get(..3)?.parse().ok()?
        }
        None => return None,
    };
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3_600 + mm * 60 + ss) * 1_000) + millis)
}

#[cfg(test)]
mod tests {
    use super::rfc3339_ms;

    #[test]
    fn rfc3339_instants_read_as_epoch_milliseconds() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_ms("1970-01-01T00:00:01.250Z"), Some(1_250));
        assert_eq!(rfc3339_ms("2000-03-01T00:00:00.000Z"), Some(951_868_800_000));
        assert_eq!(rfc3339_ms("2026-12-04T23:29:54.123Z"), Some(1_796_426_994_123));
        assert_eq!(rfc3339_ms("not a time"), None);
    }
}
