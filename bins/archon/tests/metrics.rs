//! Prometheus metrics over real HTTP, from the shipped binaries: a worker given
//! `--metrics-listen` serves its own `/metrics` (executor starts, failures and
//! spawn times), the manager serves the cluster's beside its APIs, and both pass
//! `promtool check metrics` (when promtool is installed: Debian's `prometheus`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{Proc, daemon_bin, submit, wait_for, wait_runs_ended};

/// One manager (a Raft group of one) and one worker serving its metrics.
struct Cluster {
    _dir: tempfile::TempDir,
    _manager: Proc,
    _worker: Proc,
    /// The manager's address (`127.0.0.1:PORT`).
    server: String,
    /// The worker's metrics address (`127.0.0.1:PORT`).
    worker_metrics: String,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("manager");
        let args = ["--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()];
        let mut manager = Proc::spawn(&daemon_bin("archon-manager"), &args, &dir.path().join("manager.log"));
        let listening = manager.wait_line("archon-manager listening on http://", Duration::from_secs(30));
        let server = listening.split_whitespace().next().unwrap().to_owned();
        let manager_url = format!("http://{server}");
        let args = [
            "--manager",
            &manager_url,
            "--name",
            "w1",
            "--cpu",
            "2",
            "--memory",
            "2GiB",
            "--no-docker",
            "--metrics-listen",
            "127.0.0.1:0",
        ];
        let mut worker = Proc::spawn(&daemon_bin("archon-worker"), &args, &dir.path().join("worker.log"));
        let url = worker.wait_line("archon-worker metrics on http://", Duration::from_secs(30));
        let worker_metrics = url.trim().trim_end_matches("/metrics").to_owned();
        wait_for(Duration::from_secs(30), "the worker connected", || {
            let w = common::try_json(&server, &["workers"])?;
            let connected = w["items"].as_array().unwrap().iter().any(|w| w["connected"] == true);
            if connected { Ok(()) } else { Err(format!("{w}")) }
        });
        Cluster { _dir: dir, _manager: manager, _worker: worker, server, worker_metrics }
    }
}

/// `GET /metrics` at `address` by hand over HTTP/1.0: the content type and the body.
fn scrape(address: &str) -> Result<(String, String), String> {
    let mut stream = std::net::TcpStream::connect(address).map_err(|e| format!("connect {address}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: archon\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| format!("no end of headers: {response}"))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        return Err(format!("status {status:?}"));
    }
    let content_type = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.trim()))
        .unwrap_or_default()
        .to_owned();
    Ok((content_type, body.to_owned()))
}

/// The value of the series `series` (name and labels, exactly as written), 0 if absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

/// Fails loudly if `promtool check metrics` rejects `text`; says so when promtool is missing.
fn promtool_accepts(text: &str) {
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("note: promtool is not installed (Debian: apt-get install prometheus); format not linted");
            return;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check metrics failed:\n{said}\non:\n{text}");
}

#[test]
fn a_worker_serves_its_executor_metrics_and_they_pass_promtool() {
    let c = Cluster::start();
    let (content_type, before) = scrape(&c.worker_metrics).unwrap();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "content type {content_type:?}");
    let starts = |text: &str| value(text, r#"archon_executor_starts_total{kind="shell"}"#);
    let started_before = starts(&before);

    let (_, ok) = submit(&c.server, &["--command", "echo metrics"]).unwrap();
    let (_, failing) = submit(&c.server, &["--command", "exit 3"]).unwrap();
    wait_runs_ended(&c.server, &[ok, failing], Duration::from_secs(60));

    let after = wait_for(Duration::from_secs(30), "both attempts counted", || {
        let (_, text) = scrape(&c.worker_metrics)?;
        if starts(&text) >= started_before + 2.0 { Ok(text) } else { Err(format!("starts: {}", starts(&text))) }
    });
    assert_eq!(value(&after, r#"archon_executor_failures_total{kind="shell",reason="exit_code"}"#), 1.0, "{after}");
    assert!(value(&after, r#"archon_executor_spawn_duration_seconds_count{kind="shell"}"#) >= 2.0, "{after}");
    // A worker's registry is its own: no manager families in it.
    assert!(!after.contains("archon_dispatches_total"), "{after}");
    promtool_accepts(&after);
}

#[test]
fn a_manager_serves_the_clusters_metrics_beside_its_apis_and_they_pass_promtool() {
    let c = Cluster::start();
    let (_, run) = submit(&c.server, &["--command", "true"]).unwrap();
    wait_runs_ended(&c.server, &[run], Duration::from_secs(60));
    let text = wait_for(Duration::from_secs(30), "the run counted", || {
        let (_, text) = scrape(&c.server)?;
        let done = value(&text, r#"archon_run_completions_total{state="succeeded"}"#);
        if done >= 1.0 { Ok(text) } else { Err(format!("completions: {done}")) }
    });
    assert_eq!(value(&text, r#"archon_dispatches_total{kind="shell"}"#), 1.0, "{text}");
    assert_eq!(value(&text, r#"archon_run_duration_seconds_count{kind="shell"}"#), 1.0, "{text}");
    assert_eq!(value(&text, r#"archon_workers{state="ready"}"#), 1.0, "{text}");
    assert_eq!(value(&text, r#"archon_worker_cpu_capacity_cores{worker="w1"}"#), 2.0, "{text}");
    assert_eq!(value(&text, "archon_raft_is_leader"), 1.0, "{text}");
    assert!(value(&text, "archon_raft_term") >= 1.0, "{text}");
    assert!(value(&text, "archon_store_commit_duration_seconds_count") >= 1.0, "{text}");
    assert!(
        value(&text, r#"archon_grpc_requests_total{method="archon.v1.ArchonApi/Submit",code="OK"}"#) >= 1.0,
        "{text}"
    );
    promtool_accepts(&text);
}
