//! Outcomes, from the cluster's saved state against the history: every
//! acknowledged submit is there and ended once, as it should (succeeded: every
//! job of the load succeeds when it runs to its end); nothing is left
//! unfinished; no cron fire ran twice.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{Evidence, Findings};
use crate::collect::TERMINAL;
use crate::history::{Ack, Event, WorkKind};

/// One submit's tries.
#[derive(Debug, Default)]
struct Tries {
    kind: Option<WorkKind>,
    key: Option<String>,
    acks: Vec<Ack>,
    errors: Vec<String>,
}

/// Runs the outcome checks.
pub(super) fn check(e: &Evidence, f: &mut Findings) {
    let mut submits: BTreeMap<u64, Tries> = BTreeMap::new();
    for event in &e.events {
        if let Event::Submit { seq, kind, key, ack, error, .. } = event {
            let t = submits.entry(*seq).or_default();
            t.kind = Some(*kind);
            t.key.clone_from(key);
            t.acks.extend(ack.clone());
            t.errors.extend(error.clone());
        }
    }
    let tries: usize = submits.values().map(|t| t.acks.len() + t.errors.len()).sum();
    let failed_tries: usize = submits.values().map(|t| t.errors.len()).sum();
    f.figure("submits", submits.len());
    f.figure("submit tries that failed (sent again if keyed)", format!("{failed_tries} of {tries}"));
    let mut by_kind: BTreeMap<WorkKind, u64> = BTreeMap::new();
    for (seq, t) in &submits {
        let Some(kind) = t.kind else { continue };
        *by_kind.entry(kind).or_default() += 1;
        if t.acks.is_empty() {
            let last = t.errors.last().map_or("", String::as_str);
            if t.key.is_some() {
                f.fail(format!(
                    "submit {seq} ({kind:?}) was never acknowledged, in {} tries; last: {last}",
                    t.errors.len()
                ));
            } else {
                f.note(format!("workflow submit {seq} failed (no key to send it again with): {last}"));
                ambiguous_workflow(e, f, *seq);
            }
            continue;
        }
        let jobs: BTreeSet<&str> = t.acks.iter().filter_map(|a| a.job.as_deref()).collect();
        if jobs.len() > 1 {
            f.fail(format!("submit {seq} ({:?}) was acknowledged as different jobs: {jobs:?}", t.key));
        }
        let ack = &t.acks[0];
        match kind {
            k if k.runs_once() => one_shot(e, f, *seq, ack),
            WorkKind::Workflow => workflow(e, f, *seq, ack),
            _ => {
                if let Some(job) = &ack.job
                    && !e.jobs.contains_key(job)
                {
                    f.fail(format!("acknowledged cron job {job} (submit {seq}) is missing"));
                }
            }
        }
    }
    for (kind, n) in &by_kind {
        f.figure(&format!("  {kind:?} submits").to_lowercase(), n);
    }
    stuck(e, f);
    cron_fires(e, f);
}

/// An acknowledged one-shot job: present, one run, terminal, succeeded.
fn one_shot(e: &Evidence, f: &mut Findings, seq: u64, ack: &Ack) {
    let Some(job) = &ack.job else {
        f.fail(format!("submit {seq} was acknowledged without a job"));
        return;
    };
    if !e.jobs.contains_key(job) {
        f.fail(format!("acknowledged {job} (submit {seq}) is missing"));
        return;
    }
    single_run(e, f, job, &format!("submit {seq}"));
    if let (Some(run), Some(runs)) = (&ack.run, e.runs_of_job.get(job))
        && !runs.contains(run)
    {
        f.fail(format!("{job} was acknowledged with {run}, which it does not have ({runs:?})"));
    }
}

/// `job` has exactly one run, and it succeeded.
fn single_run(e: &Evidence, f: &mut Findings, job: &str, of: &str) {
    let runs = e.runs_of_job.get(job).cloned().unwrap_or_default();
    match &runs[..] {
        [run] => {
            let r = &e.runs[run];
            match r["state"].as_str() {
                Some("succeeded") => {}
                Some(state) if TERMINAL.contains(&state) => {
                    f.fail(format!("{run} of {job} ({of}) ended {state}: {}", r["reason"]));
                }
                state => f.fail(format!("{run} of {job} ({of}) never ended: {state:?}")),
            }
        }
        [] => f.fail(format!("{job} ({of}) has no run")),
        many => f.fail(format!("{job} ({of}) ran as {} runs: {many:?}", many.len())),
    }
}

/// An acknowledged workflow: it succeeded, and each of its jobs ran once and succeeded.
fn workflow(e: &Evidence, f: &mut Findings, seq: u64, ack: &Ack) {
    let Some(id) = &ack.workflow else {
        f.fail(format!("workflow submit {seq} was acknowledged without a workflow"));
        return;
    };
    let Some(detail) = e.workflows.iter().find(|w| w["id"] == id.as_str()) else {
        f.fail(format!("acknowledged {id} (submit {seq}) is missing"));
        return;
    };
    if detail["state"] != "succeeded" {
        f.fail(format!("{id} (submit {seq}) ended {}", detail["state"]));
    }
    for job in &ack.jobs {
        if !e.jobs.contains_key(job) {
            f.fail(format!("{job} of acknowledged {id} is missing"));
            continue;
        }
        single_run(e, f, job, &format!("{id}, submit {seq}"));
    }
}

/// A workflow submit that failed may still have landed: say so if it did.
fn ambiguous_workflow(e: &Evidence, f: &mut Findings, seq: u64) {
    let name = format!("chaos-wf-{seq}");
    for w in e.workflows.iter().filter(|w| w["name"] == name.as_str()) {
        f.note(format!("  yet the cluster holds it: {} ({}), ended {}", w["id"], name, w["state"]));
    }
}

/// No run and no workflow may be left unfinished once the faults are healed.
fn stuck(e: &Evidence, f: &mut Findings) {
    let open: Vec<String> = e
        .runs
        .values()
        .filter(|r| !r["state"].as_str().is_some_and(|s| TERMINAL.contains(&s)))
        .map(|r| format!("{} of {} ({})", str_of(&r["id"]), str_of(&r["job"]), str_of(&r["state"])))
        .collect();
    f.figure("runs", e.runs.len());
    let states: BTreeMap<&str, usize> = e.runs.values().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r["state"].as_str().unwrap_or("?")).or_default() += 1;
        m
    });
    for (state, n) in states {
        f.figure(&format!("  {state}"), n);
    }
    if !open.is_empty() {
        f.fail(format!("{} runs stuck after healing, e.g. {:?}", open.len(), &open[..open.len().min(5)]));
    }
    let running: Vec<&str> = e.workflows.iter().filter(|w| w["state"] == "running").map(|w| str_of(&w["id"])).collect();
    if !running.is_empty() {
        f.fail(format!("workflows stuck running after healing: {running:?}"));
    }
    f.figure("workflows", e.workflows.len());
}

/// Each cron fire ran at most once: one run per (cron job, instant), one
/// workflow instance per (cron workflow, instant); and those runs succeeded
/// (or were cancelled with their job at the end).
fn cron_fires(e: &Evidence, f: &mut Findings) {
    let mut fires = 0;
    for detail in &e.crons {
        let job = str_of(&detail["job"]["id"]);
        let counts = &detail["schedule"]["state"];
        f.note(format!(
            "{job} ({}): fired {}, skipped {}, missed {}",
            str_of(&detail["job"]["schedule"]["cron"]),
            counts["fired"],
            counts["skipped"],
            counts["missed"]
        ));
        let mut by_instant: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for run in e.runs_of_job.get(job).into_iter().flatten() {
            let r = &e.runs[run];
            by_instant.entry(r["scheduled_for"].as_str().unwrap_or("none")).or_default().push(run);
            if !matches!(r["state"].as_str(), Some("succeeded" | "cancelled")) {
                f.fail(format!("cron {run} of {job} ended {}: {}", r["state"], r["reason"]));
            }
        }
        fires += by_instant.len();
        for (at, runs) in by_instant.iter().filter(|(_, runs)| runs.len() > 1) {
            f.fail(format!("the fire of {job} at {at} ran {} times: {runs:?}", runs.len()));
        }
        let instances: Vec<&Value> = e.workflows.iter().filter(|w| w["fired_by"] == job).collect();
        let mut by_instant: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for w in &instances {
            let at = w["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n["run"]["scheduled_for"].as_str())
                .min()
                .unwrap_or("none")
                .to_owned();
            by_instant.entry(at).or_default().push(str_of(&w["id"]));
            if w["state"] != "succeeded" {
                f.fail(format!("cron workflow instance {} of {job} ended {}", w["id"], w["state"]));
            }
        }
        fires += by_instant.len();
        for (at, ws) in by_instant.iter().filter(|(_, ws)| ws.len() > 1) {
            f.fail(format!("the fire of {job} at {at} started {} workflow instances: {ws:?}", ws.len()));
        }
    }
    f.figure("cron fires run", fires);
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}
