//! Resource usage end to end: a job run through `archon dev` that touches ~100 MiB
//! and burns ~0.5 s of CPU shows what it used in `archon get run-N`, as JSON and
//! in the table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Dev, text};

/// Allocates and touches 100 MiB, then burns 0.5 s of its own CPU time.
const BURN: &str = "\
import time
b = bytearray(100 * 1024 * 1024)
for i in range(0, len(b), 4096):
    b[i] = 1
start = time.process_time()
while time.process_time() - start < 0.5:
    pass
print(len(b))
";

/// The system's python (a version manager's shim would add its own CPU time).
fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" }
}

#[test]
fn get_shows_the_cpu_time_and_peak_memory_a_run_used() {
    let dev = Dev::start();
    let out = dev.cli(&["submit", "--wait", "--", python(), "-c", BURN]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "104857600");

    // The JSON is the API's attempt view: seconds as decimals, bytes as integers.
    let detail = dev.json(&["get", "run-1"]);
    let usage = &detail["attempts"][0]["usage"];
    let seconds = |name: &str| usage[name].as_f64().unwrap_or_else(|| panic!("no usage.{name} in {detail}"));
    let cpu = seconds("cpu_seconds");
    assert!((0.3..=3.0).contains(&cpu), "cpu {cpu:.3}s is outside [0.3s, 3s]: {usage}");
    let split = seconds("cpu_user_seconds") + seconds("cpu_system_seconds");
    assert!((split - cpu).abs() < 1e-6, "user + system is the CPU time: {usage}");
    let peak = usage["peak_memory_bytes"].as_u64().unwrap_or_else(|| panic!("no usage.peak_memory_bytes in {detail}"));
    let peak_mb = peak as f64 / 1e6;
    assert!((90.0..=400.0).contains(&peak_mb), "peak {peak_mb:.1} MB is outside [90, 400] MB: {usage}");
    let wall = seconds("wall_seconds");
    assert!(wall + 0.02 >= cpu && wall < 30.0, "wall {wall:.3}s against cpu {cpu:.3}s: {usage}");

    let shown = text(&dev.cli(&["get", "run-1"]).stdout);
    let line = shown.lines().find(|l| l.contains("peak memory")).unwrap_or_else(|| panic!("no usage line: {shown}"));
    assert!(line.contains("att-") && line.contains("cpu ") && line.contains("MiB") && line.contains("wall "), "{line}");
}
