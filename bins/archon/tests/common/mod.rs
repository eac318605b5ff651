//! Helpers shared by the process-level tests (`cluster.rs`, `ha.rs`, `durability.rs`):
//! daemons as child processes whose stdout is read line by line and whose stderr
//! goes to a file (shown when a test fails), fixed loopback ports that survive a
//! restart, the `archon` CLI with `--output json`, and a background stream of
//! submits that records every acknowledged job.
#![allow(dead_code)] // each test crate uses its own subset

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `archon` CLI (and `archon dev`).
pub(crate) const CLI: &str = env!("CARGO_BIN_EXE_archon");

/// A daemon binary of this workspace, built if this test run has not built it.
pub(crate) fn daemon_bin(name: &str) -> PathBuf {
    let dir = PathBuf::from(CLI).parent().unwrap().to_path_buf();
    let path = dir.join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", name, "--bin", name]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        assert!(cmd.status().unwrap().success(), "cannot build {name}");
    }
    path
}

/// A small xorshift generator: random delays whose seed is printed, so a failing
/// schedule can be told apart from a lucky one.
pub(crate) struct Rng(u64);

impl Rng {
    /// Seeded from the clock and the process (or `ARCHON_TEST_SEED`).
    pub(crate) fn new() -> Rng {
        use std::hash::{BuildHasher, Hasher};
        let seed = std::env::var("ARCHON_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            h.finish() | 1
        });
        eprintln!("random seed {seed} (set ARCHON_TEST_SEED to replay)");
        Rng(seed)
    }

    /// Seeded with `seed` (not printed: derived from a generator that was).
    pub(crate) fn seeded(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// The next number.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A duration in `[lo, hi)` milliseconds.
    pub(crate) fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo).max(1))
    }
}

/// `n` distinct loopback ports that are free now, to be reused across restarts.
/// They are taken below the kernel's ephemeral range, so neither a `:0` bind nor
/// the local end of an outgoing connection can occupy one while its daemon is down.
pub(crate) fn free_ports(n: usize) -> Vec<u16> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()))
        .unwrap_or(32768);
    let mut rng = Rng(u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut ports = Vec::new();
    if low > 12_000 {
        for _ in 0..10_000 {
            let port = 10_000 + (rng.next() % u64::from(low - 10_000)) as u16;
            if !ports.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                ports.push(port);
                if ports.len() == n {
                    return ports;
                }
            }
        }
    }
    // No room below the ephemeral range: let the kernel pick, and release.
    while ports.len() < n {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// A daemon as a child process: its stdout lines arrive on a channel, its stderr
/// is written to `log`.
pub(crate) struct Proc {
    pub(crate) child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub(crate) log: PathBuf,
}

impl Proc {
    /// Starts `bin` with `args`, logging at warn level to `log`.
    pub(crate) fn spawn(bin: &Path, args: &[&str], log: &Path) -> Proc {
        let stderr = std::fs::File::create(log).unwrap();
        #[allow(clippy::zombie_processes)] // Proc::drop kills and waits for it.
        let mut child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "warn")
            // A worker's own state dir (its process ledger), beside its log.
            .env("ARCHON_STATE_DIR", log.with_extension("state"))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Proc { child, lines, log: log.to_owned() }
    }

    /// The rest of the first stdout line starting with `prefix`; panics (showing
    /// the daemon's stderr) if none comes within `within` or the daemon exits.
    pub(crate) fn wait_line(&mut self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_owned();
                    }
                }
                Err(_) => {
                    let exit = self.child.try_wait().unwrap();
                    panic!("no line {prefix:?} within {within:?} (exit: {exit:?}); stderr:\n{}", self.stderr_tail(40));
                }
            }
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal`.
    pub(crate) fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// SIGKILL, and waits until it is gone.
    pub(crate) fn kill9(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        self.wait_exit(Duration::from_secs(10));
    }

    /// Whether it still runs.
    pub(crate) fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for it to exit.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "process {} did not exit within {within:?}", self.pid());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything it wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of its stderr.
    pub(crate) fn stderr_tail(&self, n: usize) -> String {
        let text = self.stderr();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines of a daemon's stderr that say its storage is damaged or that it died of
/// an error (its `main` prints `error: …`).
pub(crate) fn storage_trouble(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| {
            let lower = l.to_lowercase();
            l.starts_with("error:")
                || lower.contains("corrupt")
                || lower.contains("storage:")
                || lower.contains("redb")
                || lower.contains("panicked")
        })
        .map(str::to_owned)
        .collect()
}

/// Runs the CLI against `server` (one address or a comma-separated list).
pub(crate) fn cli(server: &str, args: &[&str]) -> Output {
    Command::new(CLI).args(args).env("ARCHON_SERVER", server).env("RUST_LOG", "error").output().unwrap()
}

/// Text of a CLI stream.
pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `archon … --output json` against `server`, or why it failed.
pub(crate) fn try_json(server: &str, args: &[&str]) -> Result<Value, String> {
    // In front: anything after a `--` belongs to the job's command.
    let mut all = vec!["--output", "json"];
    all.extend(args);
    let out = cli(server, &all);
    if !out.status.success() {
        return Err(format!("{args:?} via {server}: exit {:?}: {}", out.status.code(), text(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{args:?} printed invalid JSON ({e}): {}", text(&out.stdout)))
}

/// `archon … --output json` against `server`; panics if it fails.
pub(crate) fn json(server: &str, args: &[&str]) -> Value {
    try_json(server, args).unwrap_or_else(|e| panic!("{e}"))
}

/// The number of an id as the CLI's JSON prints it (`"run-12"` → 12), if `v` is one.
pub(crate) fn try_id_num(v: &Value) -> Option<u64> {
    v.as_str()?.rsplit_once('-')?.1.parse().ok()
}

/// The number of an id as the CLI's JSON prints it (`"run-12"` → 12).
pub(crate) fn id_num(v: &Value) -> u64 {
    try_id_num(v).unwrap_or_else(|| panic!("{v} is not an id like \"run-12\""))
}

/// An instant as the CLI's JSON prints it (RFC 3339), in milliseconds since the epoch.
pub(crate) fn millis(v: &Value) -> i64 {
    let at = v.as_str().and_then(|s| humantime::parse_rfc3339(s).ok());
    let at = at.unwrap_or_else(|| panic!("{v} is not an RFC 3339 instant"));
    at.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Submits one job; its (job, run) ids once acknowledged.
pub(crate) fn submit(server: &str, args: &[&str]) -> Result<(u64, u64), String> {
    let mut all = vec!["submit"];
    all.extend(args);
    let v = try_json(server, &all)?;
    match (try_id_num(&v[0]["job"]), try_id_num(&v[0]["run"])) {
        (Some(job), Some(run)) => Ok((job, run)),
        _ => Err(format!("unexpected submit answer: {v}")),
    }
}

/// Polls `check` every 100 ms until it gives a value; panics with the last
/// complaint after `within`.
pub(crate) fn wait_for<T>(within: Duration, what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(v) => return v,
            Err(why) => assert!(Instant::now() < deadline, "{what} not within {within:?}: {why}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The attempts that finished with exit code 0.
pub(crate) fn successful_attempts(detail: &Value) -> usize {
    detail["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "finished" && a["exit"]["kind"] == "exited" && a["exit"]["code"] == 0)
        .count()
}

/// Every item of `archon jobs` or `archon runs` (`what`), following the pages.
pub(crate) fn list_all(server: &str, what: &str) -> Result<Vec<Value>, String> {
    let mut items = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut args = vec![what, "--limit", "1000"];
        if let Some(b) = &before {
            args.extend(["--before", b.as_str()]);
        }
        let page = try_json(server, &args)?;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => before = Some(next.to_owned()),
            None => return Ok(items),
        }
    }
}

/// Every run by id: its summary.
pub(crate) fn runs_by_id(server: &str) -> Result<std::collections::BTreeMap<u64, Value>, String> {
    Ok(list_all(server, "runs")?.into_iter().map(|r| (id_num(&r["id"]), r)).collect())
}

/// Waits until each of `runs` has ended (succeeded, failed, cancelled, timed out).
pub(crate) fn wait_runs_ended(server: &str, runs: &[u64], within: Duration) -> std::collections::BTreeMap<u64, Value> {
    wait_for(within, "every run ended", || {
        let all = runs_by_id(server)?;
        let pending: Vec<String> = runs
            .iter()
            .filter_map(|r| match all.get(r) {
                None => Some(format!("run-{r} missing")),
                Some(s) if matches!(s["state"].as_str(), Some("succeeded" | "failed" | "cancelled" | "timed_out")) => {
                    None
                }
                Some(s) => Some(format!("run-{r} {}", s["state"])),
            })
            .collect();
        if pending.is_empty() { Ok(all) } else { Err(pending.join(", ")) }
    })
}

/// One acknowledged submit.
#[derive(Debug, Clone)]
pub(crate) struct Acked {
    pub(crate) job: u64,
    pub(crate) run: u64,
    /// When the CLI was started.
    pub(crate) sent: Instant,
    /// When it printed the acknowledgement.
    pub(crate) acked: Instant,
}

/// Submits failed (not acknowledged): when and why.
pub(crate) type Failures = Arc<Mutex<Vec<(Instant, String)>>>;

/// Background threads each submitting `--command CMD` in a loop through the CLI
/// until stopped, recording every acknowledged job and every failure.
pub(crate) struct SubmitStream {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    pub(crate) acked: Arc<Mutex<Vec<Acked>>>,
    pub(crate) failures: Failures,
}

impl SubmitStream {
    /// Starts `threads` submitters against `server` (one address or a list).
    pub(crate) fn start(server: &str, command: &str, threads: usize) -> SubmitStream {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failures: Failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..threads)
            .map(|_| {
                let (stop, acked, failures) = (stop.clone(), acked.clone(), failures.clone());
                let (server, command) = (server.to_owned(), command.to_owned());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let sent = Instant::now();
                        match submit(&server, &["--command", &command]) {
                            Ok((job, run)) => {
                                acked.lock().unwrap().push(Acked { job, run, sent, acked: Instant::now() })
                            }
                            Err(e) => {
                                failures.lock().unwrap().push((sent, e));
                                std::thread::sleep(Duration::from_millis(50));
                            }
                        }
                    }
                })
            })
            .collect();
        SubmitStream { stop, threads, acked, failures }
    }

    /// How many submits were acknowledged so far.
    pub(crate) fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// A copy of the acknowledged submits so far.
    pub(crate) fn snapshot(&self) -> Vec<Acked> {
        self.acked.lock().unwrap().clone()
    }

    /// Waits until `n` submits in all were acknowledged.
    pub(crate) fn wait_count(&self, n: usize, within: Duration) {
        wait_for(within, &format!("{n} acknowledged submits"), || {
            let have = self.count();
            if have >= n { Ok(()) } else { Err(format!("{have} so far; failures: {:?}", self.last_failures(3))) }
        });
    }

    /// The last `n` failures' messages.
    pub(crate) fn last_failures(&self, n: usize) -> Vec<String> {
        let f = self.failures.lock().unwrap();
        f[f.len().saturating_sub(n)..].iter().map(|(_, e)| e.clone()).collect()
    }

    /// Stops the submitters (each finishes its call in flight) and returns every
    /// acknowledged submit and every failure.
    pub(crate) fn stop(self) -> (Vec<Acked>, Vec<(Instant, String)>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        (acked, failures)
    }
}

/// `archon dev` as a child process on a port it picked, on a fresh data dir,
/// with the CLI pointed at it. Killed when dropped.
pub(crate) struct Dev {
    pub(crate) child: Child,
    pub(crate) server: String,
    _data: tempfile::TempDir,
}

impl Dev {
    pub(crate) fn start() -> Dev {
        Dev::spawn(&[], Stdio::null())
    }

    /// Like [`Dev::start`] with `extra` flags (say `--log-format json`), its
    /// stderr — its log — written to `log`.
    pub(crate) fn start_with(extra: &[&str], log: &Path) -> Dev {
        Dev::spawn(extra, std::fs::File::create(log).unwrap().into())
    }

    fn spawn(extra: &[&str], stderr: Stdio) -> Dev {
        let data = tempfile::tempdir().unwrap();
        #[allow(clippy::zombie_processes)] // Dev::drop kills and waits for it.
        let mut child = Command::new(CLI)
            .args(["dev", "--insecure", "--listen", "127.0.0.1:0", "--cpu", "4", "--memory", "4GiB", "--data-dir"])
            .arg(data.path())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn archon dev");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let line =
                rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("archon dev did not start");
            if let Some(addr) = line.strip_prefix("gRPC API listening on ") {
                return Dev { child, server: addr.trim().to_owned(), _data: data };
            }
        }
    }

    pub(crate) fn cli(&self, args: &[&str]) -> Output {
        Command::new(CLI).args(args).env("ARCHON_SERVER", &self.server).output().expect("run archon")
    }

    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let out = self.cli(&all);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?} printed invalid JSON ({e}): {}", text(&out.stdout)))
    }

    /// Submits without waiting and returns the run id (`run-N`).
    pub(crate) fn submit(&self, args: &[&str]) -> String {
        let mut all = vec!["submit", "--output", "json"];
        all.extend(args);
        let out = self.cli(&all);
        assert!(out.status.success(), "submit {args:?}: {}", text(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["run"].as_str().unwrap().to_owned()
    }

    pub(crate) fn run_state(&self, run: &str) -> String {
        self.json(&["get", run])["run"]["state"].as_str().unwrap().to_owned()
    }

    pub(crate) fn wait_for_state(&self, run: &str, state: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let now = self.run_state(run);
            if now == state {
                return;
            }
            assert!(Instant::now() < deadline, "{run} is {now}, expected {state}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first line a run prints, read live with `archon logs -f`.
    pub(crate) fn first_line_of(&self, run: &str) -> String {
        let mut follow = Command::new(CLI)
            .args(["logs", "-f", run])
            .env("ARCHON_SERVER", &self.server)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let line = BufReader::new(follow.stdout.take().unwrap()).lines().next().unwrap().unwrap();
        let _ = follow.kill();
        let _ = follow.wait();
        line
    }

    /// Runs each command and checks it exits 2 with `expected` in its stderr.
    pub(crate) fn assert_refused(&self, cases: &[(Vec<&str>, &str)]) {
        for (args, expected) in cases {
            let out = self.cli(args);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} should exit 2; stderr: {err}");
            assert!(err.contains(expected), "{args:?}: expected {expected:?} in: {err}");
        }
    }

    pub(crate) fn job_count(&self) -> usize {
        self.json(&["jobs"])["items"].as_array().unwrap().len()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
}
