//! After the faults: let the cluster finish, then keep everything the check
//! reads in the out dir, so `archon-chaos check --out DIR` can judge a run
//! again after its containers are gone.
//!
//! In order: unanswered keyed submits are sent again until answered; the cron
//! jobs are cancelled; every run must become terminal (polled, with a
//! generous deadline); the cluster's jobs, runs and workflows are saved; the
//! three managers must agree (each asked alone) on their state at one applied
//! index; they are stopped and `archon-manager verify-data` rebuilds each one's
//! state from its files through that index; every container's log is saved.
//!
//! Files (under `final/`): `runs.json` (each run's detail, with its attempts),
//! `jobs.json`, `workflows.json` (each workflow's detail), `crons.json` (each
//! cron job's detail), `workers.json`, `problems.json` (what the cluster did
//! not answer), `replicas.json`
//! (each manager's own view at the common index), `verify-<m>.json` (exit code
//! and report); and `logs/<node>.log`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::docker::docker;
use crate::history::History;
use crate::load::Load;

/// How long every run has, after the faults are healed, to become terminal.
const DRAIN_WITHIN: Duration = Duration::from_secs(300);

/// Run states that are final.
pub(crate) const TERMINAL: [&str; 5] = ["succeeded", "failed", "cancelled", "timed_out", "upstream_failed"];

/// Lets the cluster finish and saves what the check reads (see the module
/// docs). What the cluster fails to answer once healed is kept in
/// `final/problems.json` for the check to report; only a local failure (the
/// out dir, the Docker engine) or an interruption is an error.
pub(crate) async fn collect(
    cluster: &Cluster,
    history: &History,
    load: &mut Load<'_>,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let dir = cluster.out.join("final");
    std::fs::create_dir_all(&dir)?;
    let mut problems = Vec::new();
    history.phase("settling: unanswered submits sent again");
    let unanswered = load.settle(Duration::from_secs(180), stop).await;
    if unanswered > 0 {
        history.note(format!("{unanswered} keyed submits still unanswered after the faults were healed"));
    }
    history.phase("cancelling the cron jobs");
    // Their schedules' counts (fired, skipped, missed) go with the schedule.
    let crons = noted(&mut problems, "reading the cron jobs", details(cluster, load.crons.clone()).await);
    save(&dir, "crons.json", &Value::Array(crons.unwrap_or_default()))?;
    noted(&mut problems, "cancelling the cron jobs", load.cancel_crons(Duration::from_secs(120), stop).await);

    history.phase("draining: waiting for every run to end");
    let drained = cluster
        .until(DRAIN_WITHIN, stop, "every run terminal", || async {
            let runs = cluster.list_all("runs").await?;
            let open: Vec<String> = runs
                .iter()
                .filter(|r| !r["state"].as_str().is_some_and(|s| TERMINAL.contains(&s)))
                .map(|r| format!("{} {}", r["id"].as_str().unwrap_or("?"), r["state"].as_str().unwrap_or("?")))
                .collect();
            if open.is_empty() {
                Ok(())
            } else {
                bail!("{} runs open, e.g. {:?}", open.len(), &open[..open.len().min(5)])
            }
        })
        .await;
    if let Err(e) = &drained {
        // The check names the runs left open.
        history.note(format!("not every run ended: {e:#}"));
    }
    if stop.is_cancelled() {
        bail!("interrupted");
    }

    history.phase("saving the cluster's jobs, runs and workflows");
    let ids = |items: Vec<Value>| -> Vec<String> {
        items.iter().filter_map(|v| v["id"].as_str().map(str::to_owned)).collect()
    };
    for (file, listing, detailed) in
        [("runs.json", "runs", true), ("jobs.json", "jobs", false), ("workflows.json", "workflows", true)]
    {
        let items = match cluster.list_all(listing).await {
            Ok(items) if detailed => details(cluster, ids(items)).await,
            other => other,
        };
        let items = noted(&mut problems, &format!("reading the {listing}"), items);
        save(&dir, file, &Value::Array(items.unwrap_or_default()))?;
    }
    let workers = noted(&mut problems, "reading the workers", cluster.json(&["workers"]).await);
    save(&dir, "workers.json", &workers.unwrap_or_default()["items"])?;

    history.phase("comparing the managers' states");
    let replicas = cluster
        .until(Duration::from_secs(60), stop, "three managers in the same state", || async {
            let mut states = serde_json::Map::new();
            for (i, m) in cluster.managers.iter().enumerate() {
                states.insert(m.name.clone(), replica_state(cluster, m, i as u64 + 1).await?);
            }
            let first = states.values().next().cloned().unwrap_or_default();
            if states.values().all(|s| *s == first) {
                Ok(json!({ "index": first["last_applied"], "states": states }))
            } else {
                bail!("{}", Value::Object(states))
            }
        })
        .await;
    let replicas = match replicas {
        Ok(r) => r,
        Err(e) => json!({ "error": format!("{e:#}") }),
    };
    save(&dir, "replicas.json", &replicas)?;
    save(&dir, "problems.json", &json!(problems))?;

    history.phase("stopping the cluster and verifying the managers' files");
    let managers: Vec<&str> = cluster.managers.iter().map(|m| m.container.as_str()).collect();
    docker(&[&["stop", "-t", "10"][..], &managers].concat()).await?;
    let through = replicas["index"].as_u64();
    for m in &cluster.managers {
        save(&dir, &format!("verify-{}.json", m.name), &verify_data(cluster, m, through).await?)?;
    }
    let workers: Vec<&str> = cluster.workers.iter().map(|w| w.container.as_str()).collect();
    docker(&[&["stop", "-t", "10"][..], &workers].concat()).await?;
    save_logs(cluster).await
}

/// `result`'s value; its error is noted in `problems` as what failed.
fn noted<T>(problems: &mut Vec<String>, what: &str, result: anyhow::Result<T>) -> Option<T> {
    result.map_err(|e| problems.push(format!("{what} failed after the faults were healed: {e:#}"))).ok()
}

/// `archon get ID` of each of `ids`, a few at a time.
async fn details(cluster: &Cluster, ids: Vec<String>) -> anyhow::Result<Vec<Value>> {
    use futures::StreamExt;
    futures::stream::iter(ids)
        .map(|id| async move { cluster.json(&["get", &id]).await })
        .buffered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Manager `m` (node `id`)'s own state: jobs, runs, workers and queued as it
/// counts them, and its last applied index.
async fn replica_state(cluster: &Cluster, m: &crate::cluster::Node, id: u64) -> anyhow::Result<Value> {
    let s = cluster.status_of(m).await?;
    let me = s["managers"]
        .as_array()
        .and_then(|ms| ms.iter().find(|v| v["id"].as_u64() == Some(id)).cloned())
        .with_context(|| format!("{} does not list itself: {}", m.name, s["managers"]))?;
    Ok(json!({
        "jobs": s["jobs"],
        "runs": s["runs"],
        "workers": s["workers"],
        "queued": s["queued"],
        "last_applied": me["last_applied"],
    }))
}

/// `archon-manager verify-data` of stopped manager `m`'s data dir (on the
/// host), through `through`: its exit code and report.
async fn verify_data(cluster: &Cluster, m: &crate::cluster::Node, through: Option<u64>) -> anyhow::Result<Value> {
    let data = cluster.data_dir(m);
    let mut command = tokio::process::Command::new(cluster.bin("archon-manager"));
    command.arg("verify-data").arg("--data-dir").arg(&data);
    if let Some(index) = through {
        command.args(["--through", &index.to_string()]);
    }
    let out = command.output().await.context("cannot run archon-manager verify-data")?;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    Ok(json!({
        "exit": out.status.code(),
        "report": report,
        "stderr": String::from_utf8_lossy(&out.stderr),
    }))
}

/// Every container's log (all its lives) to `logs/<node>.log` (a container
/// never made is skipped).
pub(crate) async fn save_logs(cluster: &Cluster) -> anyhow::Result<()> {
    let dir = cluster.out.join("logs");
    std::fs::create_dir_all(&dir)?;
    for node in cluster.nodes() {
        let out = tokio::process::Command::new("docker")
            .args(["logs", "--timestamps", &node.container])
            .output()
            .await
            .context("cannot run docker logs")?;
        if !out.status.success() {
            continue;
        }
        let mut text = out.stdout;
        text.extend_from_slice(&out.stderr);
        std::fs::write(dir.join(format!("{}.log", node.name)), text)?;
    }
    Ok(())
}

/// Writes `value` as pretty JSON to `dir/name`.
fn save(dir: &Path, name: &str, value: &Value) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value)?).with_context(|| format!("cannot write {}", path.display()))
}
