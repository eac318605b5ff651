//! Worker leases against real processes, with TLS on: a manager and four
//! workers, each worker behind a TCP proxy the test can cut, run a stream of
//! shell jobs while each worker suffers a seeded sequence of faults — its
//! connection cut, or the worker process frozen with SIGSTOP while its jobs are
//! not — some shorter than the lease, some between the lease and the worker
//! timeout, some far longer. Every job records, from the host's boot clock
//! (to the microsecond), when its attempt started and when it was last seen
//! executing, and each lease keeper logs when it killed what; afterwards no
//! two attempts of one run may have executed at the same time, and every run
//! succeeded.
//!
//! `ARCHON_TEST_SEED=N` replays a fault schedule; `ARCHON_LEASE_FAULTS=N` sets
//! how many faults each worker suffers (50 by default: 200 in all).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod secure;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Proc, Rng, daemon_bin};
use nix::sys::signal::Signal;
use serde_json::Value;

/// Heartbeats every 150 ms, a worker lost after 1.5 s of silence: its lease is
/// 1.5 s less 2 % drift less 300 ms to kill (1.17 s).
const HEARTBEAT: &str = "150ms";
const WORKER_TIMEOUT: &str = "1500ms";

/// How often a job marks that it is executing.
const TICK: Duration = Duration::from_millis(50);

/// Slack for a mark's writing after its clock reading.
const RESOLUTION: Duration = Duration::from_millis(1);

/// A TCP proxy in front of the manager whose connections can be cut: while cut
/// it drops every connection it holds and every new one.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c, k) = (cut.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut held = k.lock().unwrap();
                    held.push(client.try_clone().unwrap());
                    held.push(server.try_clone().unwrap());
                }
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Proxy { port, cut, conns }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// One attempt's marks: its first and last boot-clock instants and whether it
/// reached its end.
#[derive(Debug, Default, Clone, Copy)]
struct Marks {
    first: Option<Duration>,
    last: Duration,
    ended: bool,
    /// When a lease keeper SIGKILLed it (the job cannot mark that).
    killed: Option<Duration>,
}

impl Marks {
    /// The interval in which it may have executed: from a resolution before its
    /// first mark to its end mark, or when a keeper killed it, or else a tick
    /// (plus resolution) after its last mark.
    fn span(&self) -> (Duration, Duration) {
        let first = self.first.unwrap_or(self.last);
        let end = match (self.ended, self.killed) {
            (true, _) => self.last + RESOLUTION,
            (false, Some(killed)) => killed.max(self.last) + RESOLUTION,
            (false, None) => self.last + TICK + RESOLUTION * 2,
        };
        (first.saturating_sub(RESOLUTION), end)
    }
}

/// When the lease keepers killed each attempt they killed, from the workers'
/// logs (`… by 4425.561s (boot clock) killed the process groups of att-1 att-2`).
fn keeper_kills(logs: &[String]) -> BTreeMap<String, Duration> {
    let mut kills = BTreeMap::new();
    for line in logs.iter().flat_map(|l| l.lines()).filter(|l| l.contains("archon lease keeper:")) {
        let Some((_, rest)) = line.split_once(" by ") else { continue };
        let Some((at, rest)) = rest.split_once("s (boot clock) killed the process groups of ") else { continue };
        let at = Duration::from_secs_f64(at.parse().unwrap());
        for attempt in rest.split_whitespace() {
            kills.entry(attempt.to_owned()).or_insert(at);
        }
    }
    kills
}

/// Reads `run attempt kind seconds` lines into marks per run and attempt.
fn read_marks(path: &Path) -> BTreeMap<String, BTreeMap<String, Marks>> {
    let mut runs: BTreeMap<String, BTreeMap<String, Marks>> = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [run, attempt, kind, at] = f[..] else { panic!("a torn mark line: {line:?}") };
        let at = Duration::from_secs_f64(at.parse().unwrap());
        let m = runs.entry(run.to_owned()).or_default().entry(attempt.to_owned()).or_default();
        if kind == "start" || m.first.is_none() {
            m.first = Some(m.first.map_or(at, |f| f.min(at)));
        }
        m.last = m.last.max(at);
        m.ended |= kind == "end";
    }
    runs
}

/// What the test threads share: how to reach the manager, and each worker's
/// process id and proxy.
struct Ctl {
    certs: std::path::PathBuf,
    server: String,
    workers: Vec<(nix::unistd::Pid, Proxy)>,
}

struct Cluster {
    dir: tempfile::TempDir,
    ctl: Arc<Ctl>,
    manager: Proc,
    workers: Vec<Proc>,
}

impl Cluster {
    fn start(workers: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        secure::certs(&certs, &["init"]);
        secure::certs(&certs, &["issue", "manager", "manager", "--san", "localhost", "--san", "127.0.0.1"]);
        let path = |file: String| certs.join(file).to_str().unwrap().to_owned();
        let tls = |name: &str| {
            vec![
                "--tls-ca".to_owned(),
                path("ca.pem".into()),
                "--tls-cert".into(),
                path(format!("{name}.pem")),
                "--tls-key".into(),
                path(format!("{name}.key")),
            ]
        };
        let data = dir.path().join("manager");
        let mut args: Vec<String> =
            ["--listen", "127.0.0.1:0", "--heartbeat-interval", HEARTBEAT, "--worker-timeout", WORKER_TIMEOUT]
                .map(String::from)
                .to_vec();
        args.extend(["--data-dir".to_owned(), data.to_str().unwrap().to_owned()]);
        args.extend(tls("manager"));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut manager = Proc::spawn(&daemon_bin("archon-manager"), &argv, &dir.path().join("manager.log"));
        let listening = manager.wait_line("archon-manager listening on ", Duration::from_secs(60));
        let addr: std::net::SocketAddr =
            listening.split_whitespace().next().unwrap().trim_start_matches("https://").parse().unwrap();
        let server = format!("https://localhost:{}", addr.port());
        let mut procs = Vec::new();
        let mut ctl = Ctl { certs: certs.clone(), server, workers: Vec::new() };
        for i in 1..=workers {
            let name = format!("w{i}");
            secure::certs(&certs, &["issue", "worker", &name]);
            let proxy = Proxy::start(addr);
            let via = format!("https://localhost:{}", proxy.port);
            let mut args: Vec<String> = [
                "--manager",
                &via,
                "--name",
                &name,
                "--cpu",
                "2",
                "--memory",
                "2GiB",
                "--no-docker",
                "--reconnect-base",
                "50ms",
                "--reconnect-cap",
                "300ms",
            ]
            .map(String::from)
            .to_vec();
            args.extend(tls(&name));
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let log = dir.path().join(format!("{name}.log"));
            let worker = Proc::spawn(&daemon_bin("archon-worker"), &argv, &log);
            ctl.workers.push((nix::unistd::Pid::from_raw(worker.pid()), proxy));
            procs.push(worker);
        }
        let c = Cluster { dir, ctl: Arc::new(ctl), manager, workers: procs };
        common::wait_for(Duration::from_secs(60), "every worker connected", || {
            let ws = c.ctl.json(&["workers"])?;
            let ready = ws["items"].as_array().map_or(0, |a| a.iter().filter(|w| w["connected"] == true).count());
            if ready == workers { Ok(()) } else { Err(format!("{ready} of {workers}: {ws}")) }
        });
        c
    }

    fn stderr_tails(&self) -> String {
        let mut text = format!("manager:\n{}\n", self.manager.stderr_tail(30));
        for (i, w) in self.workers.iter().enumerate() {
            text += &format!("w{}:\n{}\n", i + 1, w.stderr_tail(30));
        }
        text
    }
}

impl Ctl {
    fn cli(&self, args: &[&str]) -> std::process::Output {
        let certs = &self.certs;
        std::process::Command::new(common::CLI)
            .args(["--server", &self.server, "--ca"])
            .arg(certs.join("ca.pem"))
            .arg("--cert")
            .arg(certs.join("manager.pem"))
            .arg("--key")
            .arg(certs.join("manager.key"))
            .args(args)
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> Result<Value, String> {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let out = self.cli(&all);
        if !out.status.success() {
            return Err(common::text(&out.stderr));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    }

    /// Every run by id, following the pages.
    fn runs(&self) -> Result<BTreeMap<u64, Value>, String> {
        let mut runs = BTreeMap::new();
        let mut before: Option<String> = None;
        loop {
            let mut args = vec!["runs", "--limit", "1000"];
            if let Some(b) = &before {
                args.extend(["--before", b.as_str()]);
            }
            let page = self.json(&args)?;
            for r in page["items"].as_array().into_iter().flatten() {
                runs.insert(common::id_num(&r["id"]), r.clone());
            }
            match page["next"].as_str() {
                Some(next) => before = Some(next.to_owned()),
                None => return Ok(runs),
            }
        }
    }
}

/// A job that marks its start, a tick every [`TICK`] for `ticks` ticks, and its
/// end — also when terminated (a cancel or a fence by the worker sends SIGTERM
/// first); only a SIGKILL (the lease keeper's) leaves the end unmarked. Marks
/// are read from the boot clock to the microsecond (Python's `CLOCK_BOOTTIME`;
/// `/proc/uptime` has only 10 ms).
fn job(marks: &Path, ticks: u64) -> String {
    let script = r#"import os, signal, sys, time
f = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
ids = os.environ["ARCHON_RUN_ID"] + " " + os.environ["ARCHON_ATTEMPT_ID"]
def mark(kind):
    os.write(f, ("%s %s %.6f\n" % (ids, kind, time.clock_gettime(time.CLOCK_BOOTTIME))).encode())
def term(*_):
    mark("end")
    os._exit(143)
signal.signal(signal.SIGTERM, term)
mark("start")
for _ in range(int(sys.argv[2])):
    time.sleep(float(sys.argv[3]))
    mark("tick")
mark("end")"#;
    format!("exec python3 -c '{script}' {} {ticks} {}", marks.display(), TICK.as_secs_f64())
}

#[derive(Debug, Default)]
struct Faults {
    cuts: AtomicUsize,
    freezes: AtomicUsize,
}

#[test]
fn no_run_executes_twice_at_once_across_seeded_cuts_and_freezes_of_busy_workers() {
    let per_worker: usize = std::env::var("ARCHON_LEASE_FAULTS").ok().and_then(|n| n.parse().ok()).unwrap_or(50);
    let mut rng = Rng::new();
    let seed = rng.next();
    let cluster = Cluster::start(4);
    let c = cluster.ctl.clone();
    let marks = cluster.dir.path().join("marks");

    // Submits a job of 0.5–4 s every 300 ms (about what 8 slots run) while the
    // faults go on.
    let stop = Arc::new(AtomicBool::new(false));
    let submitter = {
        let (c, stop, marks) = (c.clone(), stop.clone(), marks.clone());
        let mut rng = Rng::seeded(seed ^ 0x5bd1_e995);
        std::thread::spawn(move || {
            let mut runs = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let ticks = 10 + rng.next() % 70;
                let command = job(&marks, ticks);
                match c.json(&["submit", "--cpu", "1", "--memory", "64MiB", "--command", &command]) {
                    Ok(v) => runs.push(common::id_num(&v[0]["run"])),
                    Err(e) => panic!("submit failed: {e}"),
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            runs
        })
    };

    // Each worker its own seeded schedule of faults, all at once.
    let faults = Arc::new(Faults::default());
    let started = Instant::now();
    let injectors: Vec<_> = (0..c.workers.len())
        .map(|i| {
            let (c, faults) = (c.clone(), faults.clone());
            let mut rng = Rng::seeded(seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            std::thread::spawn(move || {
                let (worker, proxy) = &c.workers[i];
                let signal = |s| nix::sys::signal::kill(*worker, s).unwrap();
                for _ in 0..per_worker {
                    // Fault lengths across the lease (1.17 s) and the timeout (1.5 s).
                    let length = rng.millis(300, 3000);
                    if rng.next().is_multiple_of(2) {
                        proxy.cut();
                        std::thread::sleep(length);
                        proxy.heal();
                        faults.cuts.fetch_add(1, Ordering::SeqCst);
                    } else {
                        signal(Signal::SIGSTOP);
                        std::thread::sleep(length);
                        signal(Signal::SIGCONT);
                        faults.freezes.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::sleep(rng.millis(300, 1000));
                }
            })
        })
        .collect();
    for i in injectors {
        i.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let runs = submitter.join().unwrap();
    eprintln!(
        "{} cuts and {} freezes in {:?}; {} runs submitted (replay: ARCHON_TEST_SEED=… as printed above)",
        faults.cuts.load(Ordering::SeqCst),
        faults.freezes.load(Ordering::SeqCst),
        started.elapsed(),
        runs.len()
    );

    // Every run ends, and succeeds: a fenced or lost attempt is requeued.
    let ended = common::wait_for(Duration::from_secs(300), "every run ended", || {
        let all = c.runs()?;
        let open: Vec<u64> = runs.iter().copied().filter(|r| all.get(r).is_none_or(|v| !is_terminal(v))).collect();
        if open.is_empty() {
            Ok(all)
        } else {
            Err(format!("{} still open, e.g. {:?}", open.len(), &open[..open.len().min(5)]))
        }
    });
    for r in &runs {
        assert_eq!(ended[r]["state"], "succeeded", "run {r}: {}\n{}", ended[r], cluster.stderr_tails());
    }

    // No two attempts of a run executed at once.
    let logs: Vec<String> = cluster.workers.iter().map(Proc::stderr).collect();
    let kills = keeper_kills(&logs);
    let mut all = read_marks(&marks);
    for attempts in all.values_mut() {
        for (attempt, m) in attempts.iter_mut() {
            m.killed = kills.get(attempt).copied();
        }
    }
    eprintln!("the lease keepers killed {} attempts", kills.len());
    let mut moved = 0;
    for (run, attempts) in &all {
        let mut spans: Vec<(Duration, Duration, &str)> =
            attempts.iter().map(|(a, m)| (m.span().0, m.span().1, a.as_str())).collect();
        spans.sort();
        if spans.len() > 1 {
            moved += 1;
        }
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "{run}: {} executed until {:?} but {} started at {:?}\n{attempts:#?}",
                pair[0].2,
                pair[0].1,
                pair[1].2,
                pair[1].0
            );
        }
    }
    eprintln!("{} runs executed; {moved} ran more than one attempt; none overlapped", all.len());
    assert!(moved > 0, "no run was ever interrupted and run again: the faults tested nothing");
}

fn is_terminal(v: &Value) -> bool {
    matches!(v["state"].as_str(), Some("succeeded" | "failed" | "cancelled" | "timed_out"))
}
