//! Cron jobs through the shipped binary: `archon dev` as a child process and
//! every step an `archon` CLI call — submit with `--cron`, the schedule in
//! `archon get` and `archon jobs`, pause / resume / trigger / backfill, preview
//! without a server, and bad schedules refused with exit 2 and nothing stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Dev, text, wait_for};
use serde_json::Value;

fn submit_cron(dev: &Dev, args: &[&str]) -> String {
    let mut all = vec!["submit", "--output", "json"];
    all.extend(args);
    let out = dev.cli(&all);
    assert!(out.status.success(), "submit {args:?}: {}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v[0]["run"].is_null(), "a cron job has no run until it fires: {v}");
    v[0]["job"].as_str().unwrap().to_owned()
}

fn schedule_of(dev: &Dev, job: &str) -> Value {
    dev.json(&["get", job])["schedule"].clone()
}

fn count(schedule: &Value, what: &str) -> u64 {
    schedule["state"][what].as_u64().unwrap_or(0)
}

#[test]
fn a_cron_job_fires_skips_while_running_and_is_paused_triggered_and_backfilled() {
    let dev = Dev::start();
    // Every second, each run taking longer: the default policy skips.
    let job = submit_cron(&dev, &["--name", "tick", "--cron", "* * * * * *", "-c", "sleep 2"]);
    wait_for(Duration::from_secs(30), "fires and skips", || {
        let s = schedule_of(&dev, &job);
        (count(&s, "fired") >= 2 && count(&s, "skipped") >= 2).then_some(()).ok_or(format!("{s}"))
    });
    let detail = dev.json(&["get", &job]);
    assert_eq!(detail["job"]["schedule"]["overlap"], "skip");
    assert!(!detail["schedule"]["next"].as_array().unwrap().is_empty(), "{detail}");
    let table = text(&dev.cli(&["get", &job]).stdout);
    for line in ["schedule:   \"* * * * * *\" in UTC", "overlap:    skip", "skipped:", "next fires:"] {
        assert!(table.contains(line), "{line:?} missing from:\n{table}");
    }
    let jobs = dev.json(&["jobs"]);
    assert!(jobs["items"][0]["next_fire"].is_i64() || jobs["items"][0]["next_fire"].is_string(), "{jobs}");

    // Paused: the ticker's fires stop; the note shows.
    let out = dev.cli(&["schedule", "pause", &job, "--note", "maintenance"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = schedule_of(&dev, &job);
    assert_eq!(s["state"]["pause_note"], "maintenance", "{s}");
    assert!(s["next"].as_array().unwrap().is_empty());
    assert!(text(&dev.cli(&["jobs"]).stdout).contains("paused"));
    let fired = count(&s, "fired");
    // Once its last run has ended, a trigger starts one.
    wait_for(Duration::from_secs(30), "the last run ended", || {
        let s = schedule_of(&dev, &job);
        s["state"]["active"].as_array().is_none_or(Vec::is_empty).then_some(()).ok_or(format!("{s}"))
    });
    assert_eq!(count(&schedule_of(&dev, &job), "fired"), fired, "a paused schedule fired");
    let trigger = dev.json(&["schedule", "trigger", &job]);
    let fire = &trigger["fires"][0];
    assert!(trigger["job"] == job.as_str() && fire["result"] == "started" && fire["run"].is_string(), "{trigger}");

    // A backfill of a past range: every second of it, all at once.
    let backfill = dev.json(&["schedule", "backfill", &job, "--from", "20s", "--to", "15s", "--overlap", "allow-all"]);
    let fires = backfill["fires"].as_array().unwrap();
    assert!((5..=6).contains(&fires.len()), "{backfill}");
    assert!(fires.iter().all(|f| f["result"] == "started" && f["run"].is_string()), "{backfill}");

    // Every fire is a run of the job, listed by `archon runs --job`.
    let runs = dev.json(&["runs", "--job", &job, "--limit", "1000"]);
    let fired = count(&schedule_of(&dev, &job), "fired");
    assert_eq!(runs["items"].as_array().unwrap().len() as u64, fired, "{runs}");

    let out = dev.cli(&["schedule", "resume", &job]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(schedule_of(&dev, &job)["state"]["paused_at"].is_null());

    // Cancelling the job ends its schedule.
    assert!(dev.cli(&["cancel", &job]).status.success());
    let out = dev.cli(&["schedule", "trigger", &job]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn preview_needs_no_server_and_shows_local_times() {
    let out = std::process::Command::new(common::CLI)
        .args(["schedule", "preview", "30 2 * * *", "--tz", "Europe/Berlin", "-n", "3", "--output", "json"])
        .env("ARCHON_SERVER", "127.0.0.1:1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["next"].as_array().unwrap().len(), 3);
    for local in v["local"].as_array().unwrap() {
        let local = local.as_str().unwrap();
        assert!(local.contains("02:30:00") || local.contains("03:00:00"), "{local}");
        assert!(local.ends_with("CET") || local.ends_with("CEST"), "{local}");
    }
}

#[test]
fn bad_schedules_are_refused_naming_the_field_and_nothing_is_stored() {
    let dev = Dev::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("bad.toml");
    std::fs::write(&spec, "command = \"true\"\n[schedule]\ncron = \"61 * * * *\"\n").unwrap();
    let table = dir.path().join("unknown.toml");
    std::fs::write(&table, "command = \"true\"\n[schedule]\ncron = \"@daily\"\nzone = \"UTC\"\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["submit", "--cron", "every day", "-c", "true"], "--cron:"),
        (
            vec!["submit", "--cron", "* * * * *", "--tz", "Mars/Olympus", "-c", "true"],
            "--tz: \"Mars/Olympus\" is not an IANA",
        ),
        (vec!["submit", "--cron", "0 0 30 2 *", "-c", "true"], "never fires"),
        (vec!["submit", "--cron", "*/5 * * * *", "--jitter", "10m", "-c", "true"], "--jitter:"),
        (
            vec!["submit", "--cron", "* * * * *", "--overlap", "sometimes", "-c", "true"],
            "--overlap: \"sometimes\" is not",
        ),
        (vec!["submit", "--cron", "* * * * *", "--catch-up", "400d", "-c", "true"], "--catch-up: must be at most 366d"),
        (vec!["submit", "--tz", "UTC", "-c", "true"], "--cron"),
        (vec!["run", "-f", spec.to_str().unwrap()], "schedule.cron:"),
        (vec!["run", "-f", table.to_str().unwrap()], "zone"),
        (vec!["schedule", "preview", "* * *"], "EXPR:"),
        (vec!["schedule", "pause", "job-99"], "job-99"),
        (vec!["schedule", "backfill", "job-1", "--from", "yesterday"], "--from:"),
    ];
    dev.assert_refused(&cases);
    assert_eq!(dev.job_count(), 0, "a refused submit stored a job");
    // A job without a schedule has none to pause.
    let out = dev.cli(&["submit", "-c", "true"]);
    assert!(out.status.success());
    let out = dev.cli(&["schedule", "pause", "job-1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("job-1 has no cron schedule"), "{}", text(&out.stderr));
}
