use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::*;
use crate::model::{ExitStatus, RunState, TaskKind, WorkerState};

/// A registry with every family Archon has, each with a sample or more.
fn everything() -> Metrics {
    let metrics = Metrics::new();
    let m = metrics.manager();
    m.dispatched(TaskKind::Shell);
    m.completed(RunState::Succeeded);
    m.completed(RunState::TimedOut);
    m.started(TaskKind::Shell, Duration::from_millis(40));
    m.ran(TaskKind::Docker, Duration::from_secs(90));
    let usage = crate::model::ResourceUsage {
        cpu_user_us: 400_000,
        cpu_system_us: 100_000,
        peak_memory_bytes: 100 << 20,
        wall_us: 600_000,
    };
    m.used(TaskKind::Shell, &usage);
    m.used(TaskKind::Shell, &usage);
    m.fired(Duration::from_millis(300));
    m.missed(3);
    m.refused_report("not_assigned");
    let w = metrics.worker();
    w.started(TaskKind::Process);
    w.ended(TaskKind::Process, &ExitStatus::Exited { code: 2 });
    w.ended(TaskKind::Process, &ExitStatus::Failed { reason: "no such program".into() });
    w.spawned(TaskKind::Process, Duration::from_micros(800));
    metrics.store().committed(12, Duration::from_millis(3));
    metrics.raft().observe(RaftProgress { term: 2, applied: 40, leader: Some(1), is_leader: true });
    metrics.raft().committed(42);
    metrics.observe_http("GET", "/v1/runs/{id}", 200, Duration::from_millis(2));
    metrics.observe_http("POST", "/v1/jobs", 422, Duration::from_millis(5));
    metrics.observe_grpc("archon.v1.ArchonApi/Submit", "OK", Duration::from_millis(7));
    metrics.sample_cluster(|| {
        let worker = |name: &str, state| WorkerSample {
            name: name.into(),
            state,
            cpu_capacity_millis: 4000,
            cpu_allocated_millis: 1500,
            memory_capacity_bytes: 8 << 30,
            memory_allocated_bytes: 1 << 30,
            queued: 2,
            heartbeat_age: Some(Duration::from_millis(1200)),
        };
        Some(ClusterSample {
            leading: true,
            runs: BTreeMap::from([(RunState::Pending, 5), (RunState::Running, 2), (RunState::Succeeded, 9)]),
            workers: vec![worker("w1", WorkerState::Ready), worker("w \"2\"", WorkerState::Lost)],
        })
    });
    metrics
}

/// The value of the series `series` (name and labels, exactly as written).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Runs `promtool check metrics` on `text` when promtool is installed: `None`
/// when it is not, else its verdict and what it said.
fn promtool_check(text: &str) -> Option<(bool, String)> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some((out.status.success(), said))
}

#[test]
fn every_family_passes_promtool() {
    let text = everything().encode();
    for family in [
        "archon_dispatches_total",
        "archon_run_completions_total",
        "archon_run_start_latency_seconds",
        "archon_run_duration_seconds",
        "archon_cron_fire_lateness_seconds",
        "archon_cron_missed_fires_total",
        "archon_worker_reports_refused_total",
        "archon_attempt_cpu_seconds_total",
        "archon_attempt_peak_memory_bytes",
        "archon_executor_starts_total",
        "archon_executor_failures_total",
        "archon_executor_spawn_duration_seconds",
        "archon_store_batch_commands",
        "archon_store_commit_duration_seconds",
        "archon_raft_term",
        "archon_raft_commit_index",
        "archon_raft_applied_index",
        "archon_raft_apply_lag_entries",
        "archon_raft_is_leader",
        "archon_raft_leader_changes_total",
        "archon_raft_snapshots_built_total",
        "archon_raft_snapshots_installed_total",
        "archon_raft_snapshot_bytes",
        "archon_raft_snapshot_build_seconds",
        "archon_raft_entries_sent_total",
        "archon_raft_entries_found_held_total",
        "archon_http_requests_total",
        "archon_http_request_duration_seconds",
        "archon_grpc_requests_total",
        "archon_grpc_request_duration_seconds",
        "archon_manager_leading",
        "archon_runs",
        "archon_queue_depth",
        "archon_workers",
        "archon_worker_cpu_capacity_cores",
        "archon_worker_cpu_allocated_cores",
        "archon_worker_memory_capacity_bytes",
        "archon_worker_memory_allocated_bytes",
        "archon_worker_queued_attempts",
        "archon_worker_heartbeat_age_seconds",
    ] {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family} missing from:\n{text}");
    }
    // Two shell attempts of 0.5 s CPU and 100 MiB each.
    assert_eq!(value(&text, r#"archon_attempt_cpu_seconds_total{kind="shell"}"#), Some(1.0));
    assert_eq!(value(&text, r#"archon_attempt_peak_memory_bytes_count{kind="shell"}"#), Some(2.0));
    assert_eq!(value(&text, r#"archon_worker_reports_refused_total{reason="not_assigned"}"#), Some(1.0));
    match promtool_check(&text) {
        Some((ok, said)) => assert!(ok, "promtool check metrics failed:\n{said}\non:\n{text}"),
        None => eprintln!("note: promtool is not installed (Debian: apt-get install prometheus); format not linted"),
    }
}

#[test]
fn a_fresh_registry_and_unused_families_also_pass_promtool() {
    let metrics = Metrics::new();
    assert_eq!(metrics.encode(), "");
    metrics.manager();
    metrics.worker();
    metrics.store();
    metrics.raft();
    metrics.sample_cluster(|| Some(ClusterSample::default()));
    let text = metrics.encode();
    assert!(text.contains("# TYPE archon_cron_missed_fires_total counter"), "{text}");
    if let Some((ok, said)) = promtool_check(&text) {
        assert!(ok, "promtool check metrics failed:\n{said}\non:\n{text}");
    }
}

#[test]
fn scrape_time_gauges_come_from_the_sample_and_only_live_workers_get_series() {
    let text = everything().encode();
    assert_eq!(value(&text, r#"archon_runs{state="pending"}"#), Some(5.0));
    assert_eq!(value(&text, r#"archon_runs{state="failed"}"#), Some(0.0));
    assert_eq!(value(&text, r#"archon_queue_depth{queue="pending"}"#), Some(5.0));
    assert_eq!(value(&text, r#"archon_queue_depth{queue="waiting"}"#), Some(0.0));
    assert_eq!(value(&text, r#"archon_workers{state="ready"}"#), Some(1.0));
    assert_eq!(value(&text, r#"archon_workers{state="lost"}"#), Some(1.0));
    assert_eq!(value(&text, r#"archon_worker_cpu_allocated_cores{worker="w1"}"#), Some(1.5));
    assert_eq!(value(&text, r#"archon_worker_memory_capacity_bytes{worker="w1"}"#), Some((8u64 << 30) as f64));
    assert_eq!(value(&text, r#"archon_worker_heartbeat_age_seconds{worker="w1"}"#), Some(1.2));
    assert_eq!(value(&text, r#"archon_worker_queued_attempts{worker="w1"}"#), Some(2.0));
    assert!(!text.contains(r#"worker="w \"2\"""#), "a lost worker has no per-worker series:\n{text}");
    assert_eq!(value(&text, "archon_manager_leading"), Some(1.0));
}

#[test]
fn a_sampler_whose_source_is_gone_reports_nothing() {
    let metrics = Metrics::new();
    metrics.sample_cluster(|| None);
    assert_eq!(metrics.encode(), "");
}

#[test]
fn raft_leader_changes_count_new_terms_and_new_leaders_once_each() {
    let metrics = Metrics::new();
    let raft = metrics.raft();
    let at = |term, leader| RaftProgress { term, applied: 10, leader, is_leader: false };
    for p in [at(1, None), at(1, Some(1)), at(1, Some(1)), at(2, Some(1)), at(3, None), at(3, Some(2))] {
        raft.observe(p);
    }
    raft.committed(15);
    let text = metrics.encode();
    assert_eq!(value(&text, "archon_raft_leader_changes_total"), Some(3.0));
    assert_eq!(value(&text, "archon_raft_term"), Some(3.0));
    assert_eq!(value(&text, "archon_raft_apply_lag_entries"), Some(5.0));
}

#[test]
fn requests_are_counted_by_method_route_and_code() {
    let metrics = Metrics::new();
    for _ in 0..3 {
        metrics.observe_http("GET", "/v1/runs/{id}", 404, Duration::from_millis(1));
    }
    metrics.observe_grpc("archon.v1.ArchonApi/GetRun", "NotFound", Duration::from_millis(1));
    let text = metrics.encode();
    assert_eq!(value(&text, r#"archon_http_requests_total{method="GET",route="/v1/runs/{id}",code="404"}"#), Some(3.0));
    assert_eq!(
        value(
            &text,
            r#"archon_grpc_request_duration_seconds_count{method="archon.v1.ArchonApi/GetRun",code="NotFound"}"#
        ),
        Some(1.0)
    );
}

#[test]
fn clones_share_one_registry() {
    let metrics = Metrics::new();
    metrics.clone().worker().started(TaskKind::Shell);
    assert_eq!(value(&metrics.encode(), r#"archon_executor_starts_total{kind="shell"}"#), Some(1.0));
}
