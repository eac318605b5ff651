#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The embedding builder end to end, with real stores and processes: typed
//! functions and shell jobs on the durable store (found again after a restart),
//! in memory and on PostgreSQL; a function's error and a misfit input failing
//! their runs with the message; bad settings named; handles shared with tasks
//! not keeping Archon running; stopping and dropping killing what runs; cron
//! schedules declared in code kept across restarts.

use std::path::Path;
use std::time::Duration;

use archon::core::api::{Api, JobQuery};
use archon::core::model::{RunState, Schedule};
use archon::{Archon, Error, JobSpec, Task, function_job};
use archon_store::testkit::TempPostgres;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Size {
    width: u32,
    height: u32,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Area {
    pixels: u64,
}

async fn area(size: Size) -> Result<Area, String> {
    if size.width == 0 || size.height == 0 {
        return Err(format!("an image of {}x{} has no pixels", size.width, size.height));
    }
    Ok(Area { pixels: u64::from(size.width) * u64::from(size.height) })
}

fn shell(name: &str, command: &str) -> JobSpec {
    JobSpec::new(name, Task::Shell { command: command.into() })
}

/// Waits until `check` holds, for up to 30 s (processes start and die at the
/// machine's pace).
async fn eventually(what: &str, check: impl AsyncFnMut() -> bool) {
    archon_core::testkit::eventually_within(what, Duration::from_secs(30), check).await;
}

/// Whether the process `pid` is gone (or a zombie no one reaped yet).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Submits a shell job that notes its pid in `file` and sleeps, and returns the
/// pid once it is written.
async fn start_sleeper(archon: &Archon, file: &Path) -> u32 {
    let command = format!("echo $$ > {}.tmp && mv {0}.tmp {0} && exec sleep 600", file.display());
    archon.submit(shell("sleeper", &command)).await.unwrap();
    eventually("the sleeper to start", async || file.exists()).await;
    std::fs::read_to_string(file).unwrap().trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_durable_store_typed_functions_and_shell_jobs_run_and_a_restart_finds_them() {
    let dir = tempfile::tempdir().unwrap();
    let archon = Archon::embedded().data_dir(dir.path()).function("area", area).start().await.unwrap();
    let pixels: Area = archon.call("area", &Size { width: 640, height: 480 }).await.unwrap();
    assert_eq!(pixels, Area { pixels: 307_200 });
    let hello = archon.submit(shell("hello", "echo hello from a shell job")).await.unwrap();
    let done = hello.wait().await.unwrap();
    assert_eq!((done.run.state, done.stdout().trim()), (RunState::Succeeded, "hello from a shell job"));
    archon.shutdown().await.unwrap();

    let again = Archon::embedded().data_dir(dir.path()).start().await.unwrap();
    let detail = again.manager().get_run(hello.run().unwrap()).await.unwrap();
    assert_eq!(detail.run.state, RunState::Succeeded, "the restarted manager finds the run");
    assert_eq!(detail.stdout().trim(), "hello from a shell job");
    again.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_functions_error_and_an_input_of_another_shape_fail_their_runs_with_the_message() {
    let archon = Archon::embedded().in_memory().function::<Size, Area, _>("area", area).start().await.unwrap();
    let refused = archon.call::<_, Area>("area", &Size { width: 0, height: 3 }).await.unwrap_err();
    match &refused {
        Error::RunFailed { state, message, .. } => {
            assert_eq!((*state, message.as_str()), (RunState::Failed, "an image of 0x3 has no pixels"));
        }
        other => panic!("expected a failed run, got {other:?}"),
    }
    let misfit = archon.call::<_, Area>("area", &serde_json::json!({ "width": "wide" })).await.unwrap_err();
    let text = misfit.to_string();
    assert!(text.contains("the input is not what area takes") && text.contains("Size"), "{text}");

    // A successful run whose output is not the type asked for.
    let job = archon.submit(function_job("area", &Size { width: 2, height: 2 }).unwrap()).await.unwrap();
    let wrong = job.wait_typed::<Vec<String>>().await.unwrap_err();
    assert!(matches!(wrong, Error::Output { .. }), "{wrong:?}");
    assert_eq!(job.wait_typed::<Area>().await.unwrap(), Area { pixels: 4 });
    archon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_the_same_program_runs_and_its_runs_are_in_the_database() {
    let pg = TempPostgres::start();
    let url = pg.create_database();
    let archon = Archon::embedded().postgres(&url).function("area", area).start().await.unwrap();
    let pixels: Area = archon.call("area", &Size { width: 3, height: 5 }).await.unwrap();
    assert_eq!(pixels.pixels, 15);
    archon.shutdown().await.unwrap();
    let database = url.rsplit('/').next().unwrap();
    let out = pg.psql(database, "SELECT count(*) FROM archon_runs WHERE state = 'succeeded'");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{out:?}");
}

#[tokio::test]
async fn a_builder_without_a_store_or_with_a_schedule_that_is_not_one_says_what_to_give() {
    let unset = Archon::embedded().start().await.unwrap_err();
    assert!(matches!(unset, Error::Config { field: "store", .. }), "{unset:?}");
    assert!(unset.to_string().contains(".data_dir(DIR)"), "{unset}");
    let not_cron = Archon::embedded().in_memory().schedule(shell("once", "true")).start().await.unwrap_err();
    assert!(matches!(not_cron, Error::Config { field: "schedule", .. }), "{not_cron:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_share_archon_with_tasks_without_keeping_it_running() {
    let dir = tempfile::tempdir().unwrap();
    let archon = Archon::embedded().data_dir(dir.path()).function("area", area).start().await.unwrap();
    let handle = archon.handle();
    let from_a_task = tokio::spawn({
        let handle = handle.clone();
        async move { handle.call::<_, Area>("area", &Size { width: 3, height: 4 }).await }
    });
    assert_eq!(from_a_task.await.unwrap().unwrap(), Area { pixels: 12 });
    let echoed = handle.submit(shell("echo", "echo through a handle")).await.unwrap().wait().await.unwrap();
    assert_eq!((echoed.run.state, echoed.stdout().trim()), (RunState::Succeeded, "through a handle"));
    let listed = handle.manager().unwrap().list_jobs(JobQuery::default()).await.unwrap();
    assert_eq!(listed.items.len(), 2, "{listed:?}");

    // Handles are still about: shutdown neither waits for them nor leaves the
    // data dir held, and their calls now say Archon stopped.
    archon.shutdown().await.unwrap();
    let stopped = handle.submit(shell("late", "true")).await.unwrap_err();
    assert!(matches!(stopped, Error::Core(archon_core::Error::ShuttingDown)), "{stopped:?}");
    assert!(matches!(handle.manager(), Err(Error::Core(archon_core::Error::ShuttingDown))));
    let again = Archon::embedded().data_dir(dir.path()).start().await.unwrap();
    let found = again.manager().get_run(echoed.run.id).await.unwrap();
    assert_eq!(found.run.state, RunState::Succeeded);
    again.shutdown().await.unwrap();
    drop(handle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_kills_what_the_local_worker_runs() {
    let dir = tempfile::tempdir().unwrap();
    let archon = Archon::embedded().in_memory().start().await.unwrap();
    let pid = start_sleeper(&archon, &dir.path().join("pid")).await;
    assert!(!gone(pid));
    archon.shutdown().await.unwrap();
    assert!(gone(pid), "shutdown returned with the job's process still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_kills_what_the_local_worker_runs() {
    let dir = tempfile::tempdir().unwrap();
    let archon = Archon::embedded().in_memory().start().await.unwrap();
    let pid = start_sleeper(&archon, &dir.path().join("pid")).await;
    drop(archon);
    eventually("the dropped Archon's job to be killed", async || gone(pid)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_job_declared_in_code_is_kept_across_restarts_and_replaced_when_its_spec_changes() {
    let dir = tempfile::tempdir().unwrap();
    let nightly = |cron: &str| {
        let mut spec = shell("nightly report", "echo report");
        spec.schedule = Some(Box::new(Schedule::new(cron)));
        spec
    };
    let cron_jobs = |archon: &Archon| {
        let manager = archon.manager().clone();
        async move {
            let query = JobQuery { name: Some("nightly report".into()), ..JobQuery::default() };
            let mut live = Vec::new();
            for job in manager.list_jobs(query).await.unwrap().items {
                let detail = manager.get_job(job.id).await.unwrap();
                if !detail.job.cancelled {
                    live.push((job.id, detail.job.spec.schedule.clone().unwrap().cron));
                }
            }
            live
        }
    };

    let archon = Archon::embedded().data_dir(dir.path()).schedule(nightly("0 2 * * *")).start().await.unwrap();
    let first = cron_jobs(&archon).await;
    assert_eq!(first.len(), 1, "{first:?}");
    archon.shutdown().await.unwrap();

    let archon = Archon::embedded().data_dir(dir.path()).schedule(nightly("0 2 * * *")).start().await.unwrap();
    assert_eq!(cron_jobs(&archon).await, first, "the same declaration keeps the same job");
    archon.shutdown().await.unwrap();

    let archon = Archon::embedded().data_dir(dir.path()).schedule(nightly("30 3 * * *")).start().await.unwrap();
    let changed = cron_jobs(&archon).await;
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_ne!(changed[0].0, first[0].0, "a changed declaration replaces the job");
    assert_eq!(changed[0].1, "30 3 * * *");
    archon.shutdown().await.unwrap();
}
