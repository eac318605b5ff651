//! Structured logs: with `--log-format json` a daemon writes one JSON object a
//! line, and every event about a run carries its ids — `run`, `attempt`, `job`,
//! `worker` — on the event itself or on a span around it. Bad logging flags exit 2
//! naming the flag.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{CLI, Dev, Proc, daemon_bin, wait_for};
use serde_json::Value;

/// An id from the CLI's JSON (`"run-12"`), as the logs print it too.
fn id(v: &Value, prefix: &str) -> String {
    v.as_str().filter(|s| s.starts_with(prefix)).unwrap_or_else(|| panic!("{v} is not a {prefix} id")).to_owned()
}

/// Every complete line of a JSON log, parsed; an error names the first line that
/// is not a JSON object.
fn json_lines(log: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(log).map_err(|e| e.to_string())?;
    // The daemon may be writing the last line as we read.
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(v) if v.is_object() => Ok(v),
            _ => Err(format!("not a JSON object: {line}")),
        })
        .collect()
}

/// A field of an event: on the event, else on the innermost span around it that has it.
fn field<'a>(event: &'a Value, name: &str) -> Option<&'a Value> {
    event.get(name).or_else(|| event["spans"].as_array()?.iter().rev().find_map(|span| span.get(name)))
}

fn field_str<'a>(event: &'a Value, name: &str) -> Option<&'a str> {
    field(event, name).and_then(Value::as_str)
}

/// The first event with `message` about `run`, or what the log holds instead.
fn event_about<'a>(events: &'a [Value], message: &str, run: &str) -> Result<&'a Value, String> {
    events
        .iter()
        .find(|e| e["message"] == message && field_str(e, "run") == Some(run))
        .ok_or_else(|| format!("no {message:?} event about {run} among {} events", events.len()))
}

#[test]
fn json_events_about_a_run_carry_its_ids_from_submit_to_finish() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("dev.log");
    let dev = Dev::start_with(&["--log-format", "json", "--log-filter", "warn,archon=info,archon_core=debug"], &log);
    let run = dev.submit(&["--command", "echo hello"]);
    let failing = dev.submit(&["--command", "exit 3"]);
    let detail = dev.json(&["get", &run]);
    let job = id(&detail["run"]["job"], "job");

    let events = wait_for(Duration::from_secs(30), "the runs' events in the log", || {
        let events = json_lines(&log)?;
        for message in ["job submitted", "assignment sent to the worker", "attempt started", "run succeeded"] {
            event_about(&events, message, &run)?;
        }
        event_about(&events, "run finished", &failing)?;
        Ok(events)
    });
    let detail = dev.json(&["get", &run]);
    let attempt = id(&detail["attempts"][0]["id"], "att");
    let worker = id(&detail["attempts"][0]["worker"], "w");

    let submitted = event_about(&events, "job submitted", &run).unwrap();
    assert_eq!(field_str(submitted, "job"), Some(job.as_str()), "{submitted}");
    // A line per job is debug; what an operator acts on is info (below).
    assert_eq!(submitted["level"], "DEBUG", "{submitted}");

    let placed = event_about(&events, "run placed", &run).unwrap();
    assert_eq!(field_str(placed, "worker"), Some(worker.as_str()), "{placed}");

    let sent = event_about(&events, "assignment sent to the worker", &run).unwrap();
    for (name, want) in [("attempt", &attempt), ("job", &job), ("worker", &worker)] {
        assert_eq!(field_str(sent, name), Some(want.as_str()), "{name} of {sent}");
    }

    // On the worker, the ids come from the attempt's span and the session's.
    for message in ["assignment received", "attempt started", "attempt exited"] {
        let on_worker = event_about(&events, message, &run).unwrap();
        for (name, want) in [("attempt", &attempt), ("job", &job), ("worker", &worker)] {
            assert_eq!(field_str(on_worker, name), Some(want.as_str()), "{name} of {on_worker}");
        }
    }
    let exited = event_about(&events, "attempt exited", &run).unwrap();
    assert_eq!(field(exited, "exit_code"), Some(&Value::from(0)), "{exited}");
    assert_eq!(exited["level"], "DEBUG", "{exited}");

    let finished = event_about(&events, "run succeeded", &run).unwrap();
    assert_eq!(field_str(finished, "attempt"), Some(attempt.as_str()), "{finished}");
    assert_eq!(field_str(finished, "job"), Some(job.as_str()), "{finished}");
    assert_eq!(field_str(finished, "state"), Some("succeeded"), "{finished}");
    assert_eq!(field(finished, "exit_code"), Some(&Value::from(0)), "{finished}");
    assert_eq!(finished["level"], "DEBUG", "{finished}");
    assert!(event_about(&events, "run finished", &run).is_err(), "a run that succeeded is not logged at info");

    // A run that failed is logged at info, on the manager and on the worker.
    let failed = event_about(&events, "run finished", &failing).unwrap();
    assert_eq!(field_str(failed, "state"), Some("failed"), "{failed}");
    assert_eq!(field(failed, "exit_code"), Some(&Value::from(3)), "{failed}");
    assert_eq!(failed["level"], "INFO", "{failed}");
    let exited = event_about(&events, "attempt exited", &failing).unwrap();
    assert_eq!(field(exited, "exit_code"), Some(&Value::from(3)), "{exited}");
    assert_eq!(exited["level"], "INFO", "{exited}");

    // Whatever else is said about the attempt says which run it belongs to.
    for event in events.iter().filter(|e| field_str(e, "attempt") == Some(attempt.as_str())) {
        assert_eq!(field_str(event, "run"), Some(run.as_str()), "{event}");
    }
}

#[test]
fn bad_logging_settings_exit_2_naming_the_flag_or_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let config = dir.path().join("manager.toml");
    std::fs::write(&config, "log_format = \"yaml\"\n").unwrap();
    let config = config.to_str().unwrap();
    let dev = Path::new(CLI);
    let manager = daemon_bin("archon-manager");
    let dev_args = ["dev", "--insecure", "--listen", "127.0.0.1:0", "--data-dir", data];
    let manager_args = ["--listen", "127.0.0.1:0", "--data-dir", data];
    // The program, its arguments, what its stderr must say.
    let cases = [
        (dev, [&dev_args[..], &["--log-format", "yaml"]].concat(), vec!["--log-format", "text or json"]),
        (dev, [&dev_args[..], &["--log-filter", "archon_core=loud"]].concat(), vec!["--log-filter", "is not a filter"]),
        (&*manager, [&manager_args[..], &["--log-format", "yaml"]].concat(), vec!["--log-format", "text or json"]),
        (
            &*manager,
            [&manager_args[..], &["--config", config]].concat(),
            vec!["log_format: \"yaml\" is not a log format (text or json)"],
        ),
    ];
    for (i, (bin, all, expected)) in cases.into_iter().enumerate() {
        let mut proc = Proc::spawn(bin, &all, &dir.path().join(format!("{i}.log")));
        let status = proc.wait_exit(Duration::from_secs(20));
        let stderr = proc.stderr();
        assert_eq!(status.code(), Some(2), "{bin:?} {all:?} should exit 2; stderr: {stderr}");
        for want in expected {
            assert!(stderr.contains(want), "{bin:?} {all:?}: expected {want:?} in: {stderr}");
        }
    }
}
