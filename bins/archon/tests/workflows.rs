//! Workflows through the shipped binary: `archon run -f` of a workflow file on
//! `archon dev`, its tree in `archon get wf-N`, its failure branch, cancelling
//! it, and a cycle refused with exit 2 and nothing stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Dev, id_num, millis, text, try_id_num, wait_for};
use serde_json::Value;

fn run_file(dev: &Dev, path: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", "-f", path.to_str().unwrap()];
    args.extend(extra);
    dev.cli(&args)
}

#[test]
fn the_release_workflow_runs_its_failure_branch_and_shows_as_a_tree() {
    let dev = Dev::start();
    let dir = tempfile::tempdir().unwrap();
    // The shipped example with a job that holds the workflow open until cancelled.
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/specs/release.toml")).unwrap();
    let failing = example.replace("test -z \\\"$FAIL_TESTS\\\"", "false");
    let held = format!("{failing}\n[[jobs]]\nname = \"hold\"\ncommand = \"sleep 600\"\n");
    let path = dir.path().join("release.toml");
    std::fs::write(&path, &held).unwrap();
    let out = run_file(&dev, &path, &["--output", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let submitted: Value = serde_json::from_slice(&out.stdout).unwrap();
    let wf = submitted["workflow"].as_str().unwrap().to_owned();
    let jobs: Vec<u64> = submitted["jobs"].as_array().unwrap().iter().map(id_num).collect();
    assert_eq!(jobs.len(), 6);
    let state = |node: usize| -> String {
        let d = dev.json(&["get", &format!("job-{}", jobs[node])]);
        d["runs"][0]["state"].as_str().unwrap().to_owned()
    };
    wait_for(Duration::from_secs(60), "report ran", || {
        let s = state(4);
        if s == "succeeded" { Ok(()) } else { Err(s) }
    });
    assert_eq!(state(1), "failed");
    assert_eq!(state(2), "upstream_failed");
    assert_eq!(state(3), "succeeded", "the failure branch ran");
    let tree = text(&dev.cli(&["get", &wf]).stdout);
    for line in
        ["release", "build", "└─ test", "deploy", "upstream_failed", "rollback", "(after test on failure)", "hold"]
    {
        assert!(tree.contains(line), "{line:?} missing from:\n{tree}");
    }
    // Cancelling it ends what is unfinished (the held job).
    let out = dev.cli(&["cancel", &wf]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for(Duration::from_secs(30), "hold cancelled", || {
        let s = state(5);
        if s == "cancelled" { Ok(()) } else { Err(s) }
    });
    // Finished, it is read from the history: its tree, and in the listing.
    wait_for(Duration::from_secs(30), "the workflow ended", || {
        let d = dev.json(&["get", &wf]);
        if d["state"] == "cancelled" { Ok(()) } else { Err(d["state"].to_string()) }
    });
    let d = dev.json(&["get", &wf]);
    assert!(d["finished_at"].is_string(), "{d}");
    assert_eq!(d["nodes"][3]["run"]["state"], "succeeded", "each node's run is still shown");
    let tree = text(&dev.cli(&["get", &wf]).stdout);
    assert!(tree.contains("cancelled") && tree.contains("└─ test"), "{tree}");
    let listed = dev.json(&["workflows"]);
    assert_eq!(listed["items"][0]["id"], submitted["workflow"], "{listed}");
    assert_eq!((listed["items"][0]["name"].as_str(), listed["items"][0]["nodes"].as_u64()), (Some("release"), Some(6)));
    assert_eq!(dev.json(&["workflows", "--state", "cancelled"])["items"].as_array().unwrap().len(), 1);
    assert_eq!(dev.json(&["workflows", "--state", "succeeded"])["items"].as_array().unwrap().len(), 0);
    let table = text(&dev.cli(&["workflows"]).stdout);
    assert!(table.contains("WORKFLOW") && table.contains(&wf) && table.contains("cancelled"), "{table}");
    dev.assert_refused(&[(
        vec!["workflows", "--state", "sometimes"],
        "--state: \"sometimes\" is not a workflow state",
    )]);
}

#[test]
fn a_cycle_is_refused_naming_it_and_nothing_is_stored() {
    let dev = Dev::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cycle.toml");
    std::fs::write(
        &path,
        "[workflow]\nname = \"loop\"\n[[jobs]]\nname = \"a\"\ncommand = \"true\"\ndepends_on = [\"c\"]\n\
         [[jobs]]\nname = \"b\"\ncommand = \"true\"\ndepends_on = [\"a\"]\n\
         [[jobs]]\nname = \"c\"\ncommand = \"true\"\ndepends_on = [\"b\"]\n",
    )
    .unwrap();
    let out = run_file(&dev, &path, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("depends_on: the jobs form a cycle: "), "{err}");
    assert_eq!(dev.job_count(), 0);
    let out = dev.cli(&["get", "wf-1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// The stdout of `job`'s first run, once the run has ended.
fn stdout_of(dev: &Dev, job: u64) -> String {
    let run = wait_for(Duration::from_secs(60), "the run ended", || {
        let d = dev.json(&["get", &format!("job-{job}")]);
        let run = &d["runs"][0];
        match run["state"].as_str() {
            Some("succeeded") => Ok(id_num(&run["id"])),
            other => Err(format!("{other:?}")),
        }
    });
    text(&dev.cli(&["logs", &format!("run-{run}")]).stdout)
}

#[test]
fn each_step_reads_its_parents_results_shell_and_function_alike() {
    let dev = Dev::start();
    let dir = tempfile::tempdir().unwrap();
    // Step 2 reads step 1's JSON output from ARCHON_PARENTS_JSON and prints its
    // own; step 3 (after both) prints everything it was given. The function
    // twin does the same with `echo`, which returns its input.
    let path = dir.path().join("pipeline.toml");
    std::fs::write(
        &path,
        r#"
[workflow]
name = "pipeline"

[[jobs]]
name = "build"
command = "echo '{\"version\": \"1.2\"}'"

[[jobs]]
name = "package"
depends_on = ["build"]
command = "python3 -c 'import json, os; p = json.loads(os.environ[\"ARCHON_PARENTS_JSON\"]); print(json.dumps({\"tag\": \"app-\" + p[\"build\"][\"output\"][\"version\"]}))'"

[[jobs]]
name = "publish"
depends_on = ["build", "package"]
command = "printf '%s' \"$ARCHON_PARENTS_JSON\""

[[jobs]]
name = "report"
depends_on = ["publish", { job = "package", when = "completion" }, "noise"]
function = "echo"
input = { channel = "releases" }

[[jobs]]
name = "noise"
command = "head -c 100000 /dev/zero | tr '\\0' x"
"#,
    )
    .unwrap();
    let out = run_file(&dev, &path, &["--output", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let jobs: Vec<u64> =
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["jobs"].as_array().unwrap().iter().map(id_num).collect();
    let package: Value = serde_json::from_str(stdout_of(&dev, jobs[1]).trim()).unwrap();
    assert_eq!(package, serde_json::json!({ "tag": "app-1.2" }), "step 2 consumed step 1's output");
    let seen: Value = serde_json::from_str(&stdout_of(&dev, jobs[2])).unwrap();
    assert_eq!(seen["build"]["output"], serde_json::json!({ "version": "1.2" }), "{seen}");
    assert_eq!(seen["package"]["output"], package, "{seen}");
    for (name, job) in [("build", jobs[0]), ("package", jobs[1])] {
        assert_eq!(seen[name]["job"], job, "{seen}");
        assert_eq!((seen[name]["state"].as_str(), seen[name]["exit_code"].as_i64()), (Some("succeeded"), Some(0)));
        assert_eq!(seen[name]["truncated"], false);
    }
    // A function gets {"input": its own input, "parents": ...}.
    let report: Value = serde_json::from_str(stdout_of(&dev, jobs[3]).trim()).unwrap();
    assert_eq!(report["input"], serde_json::json!({ "channel": "releases" }), "{report}");
    assert_eq!(report["parents"]["package"]["output"], package, "{report}");
    assert_eq!(report["parents"]["publish"]["output"]["build"]["output"]["version"], "1.2", "{report}");
    // Past the document's cap (96 KiB) a parent is listed without its output.
    let noise = &report["parents"]["noise"];
    assert_eq!((noise["output"].is_null(), noise["truncated"].as_bool()), (true, Some(true)), "{noise}");
    assert_eq!(noise["state"], "succeeded");
}

#[test]
fn a_cron_workflow_starts_an_instance_per_fire_and_is_paused_and_cancelled_as_a_cron_job() {
    let dev = Dev::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etl.toml");
    std::fs::write(
        &path,
        "[workflow]\nname = \"etl\"\n[workflow.schedule]\ncron = \"* * * * * *\"\noverlap = \"skip\"\n\
         [[jobs]]\nname = \"extract\"\ncommand = \"echo '{\\\"rows\\\": 3}'\"\n\
         [[jobs]]\nname = \"load\"\ndepends_on = [\"extract\"]\ncommand = \"printf '%s' \\\"$ARCHON_PARENTS_JSON\\\"\"\n",
    )
    .unwrap();
    dev.assert_refused(&[(
        vec!["run", "-f", path.to_str().unwrap(), "--wait"],
        "--wait: a cron workflow has no single run to wait for",
    )]);
    let out = run_file(&dev, &path, &["--output", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let submitted: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cron = submitted["schedule"].as_str().unwrap().to_owned();
    assert!(submitted["workflow"].is_null(), "{submitted}");
    // Each fire (every second) starts an instance; wait for two that succeeded.
    let done = wait_for(Duration::from_secs(60), "two instances succeeded", || {
        let listed = dev.json(&["workflows", "--state", "succeeded"]);
        let items = listed["items"].as_array().unwrap().clone();
        if items.len() >= 2 { Ok(items) } else { Err(listed.to_string()) }
    });
    assert!(done.iter().all(|w| w["name"] == "etl" && w["nodes"] == 2), "{done:?}");
    let d = dev.json(&["get", done[0]["id"].as_str().unwrap()]);
    assert_eq!(d["fired_by"], submitted["schedule"], "{d}");
    let fired = millis(&d["nodes"][0]["run"]["scheduled_for"]);
    assert_eq!(
        millis(&d["nodes"][1]["run"]["scheduled_for"]),
        fired,
        "every job of an instance has its fire's instant"
    );
    let load = id_num(&d["nodes"][1]["run"]["id"]);
    let seen: Value = serde_json::from_str(&text(&dev.cli(&["logs", &format!("run-{load}")]).stdout)).unwrap();
    assert_eq!(seen["extract"]["output"]["rows"], 3, "{seen}");
    // The cron job is operated as any: listed with its next fire, paused, cancelled.
    let jobs = dev.json(&["jobs", "--name", "etl"]);
    assert_eq!(jobs["items"][0]["kind"], "workflow", "{jobs}");
    let out = dev.cli(&["schedule", "pause", &cron, "--note", "maintenance"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let paused = dev.json(&["workflows"])["items"].as_array().unwrap().len();
    let out = dev.cli(&["cancel", &cron]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for(Duration::from_secs(30), "no instance running", || {
        let running = dev.json(&["workflows", "--state", "running"]);
        if running["items"].as_array().unwrap().is_empty() { Ok(()) } else { Err(running.to_string()) }
    });
    assert_eq!(dev.json(&["workflows"])["items"].as_array().unwrap().len(), paused, "no fire after the pause");
}

#[test]
fn the_nightly_etl_example_is_triggered_by_hand_and_its_load_reads_the_extract() {
    let dev = Dev::start();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/specs/nightly-etl.toml");
    let out = run_file(&dev, std::path::Path::new(example), &["--output", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cron = serde_json::from_slice::<Value>(&out.stdout).unwrap()["schedule"].as_str().unwrap().to_owned();
    let jobs = dev.json(&["jobs"]);
    assert!(jobs["items"][0]["next_fire"].is_string(), "{jobs}");
    let out = dev.cli(&["schedule", "trigger", &cron]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let wf = wait_for(Duration::from_secs(60), "the instance succeeded", || {
        let listed = dev.json(&["workflows", "--state", "succeeded"]);
        try_id_num(&listed["items"][0]["id"]).ok_or_else(|| listed.to_string())
    });
    let d = dev.json(&["get", &format!("wf-{wf}")]);
    let load = id_num(&d["nodes"][1]["run"]["id"]);
    let logs = text(&dev.cli(&["logs", &format!("run-{load}")]).stdout);
    assert_eq!(logs.trim(), "loading 1200 rows");
}
