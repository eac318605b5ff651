//! The check: reads a run's out dir — its history, the marks its jobs left,
//! and what the collection saved of the cluster — and judges it.
//!
//! It fails when an acknowledged submit is missing, not terminal, ran more
//! than once or did not succeed ([`outcomes`]); when a run is stuck; when two
//! attempts of one run executed at the same time, or a success is recorded for
//! an attempt that never finished ([`overlap`]); when a cron fire ran twice
//! ([`outcomes`]); when a daemon panicked or reported damaged storage, or the
//! managers' files do not verify or rebuild different states ([`data`]).
//! It prints the faults injected, what happened, and one verdict line.

mod data;
mod outcomes;
mod overlap;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use comfy_table::{Cell, CellAlignment, Table};
use serde_json::Value;

use crate::history::{Event, FaultKind};
use crate::marks::Marks;

/// Everything a run left, as read back.
#[derive(Debug, Default)]
pub(crate) struct Evidence {
    /// The history's events.
    pub(crate) events: Vec<Event>,
    /// Every run by id (`run-12`).
    pub(crate) runs: BTreeMap<String, Value>,
    /// Every run's attempts, oldest first, by run id.
    pub(crate) attempts: BTreeMap<String, Vec<Value>>,
    /// The runs of each job, by job id.
    pub(crate) runs_of_job: BTreeMap<String, Vec<String>>,
    /// Every job by id.
    pub(crate) jobs: BTreeMap<String, Value>,
    /// Every workflow's detail.
    pub(crate) workflows: Vec<Value>,
    /// Every cron job's detail.
    pub(crate) crons: Vec<Value>,
    /// Worker names by id (`w-1` → `w3`).
    pub(crate) worker_names: BTreeMap<String, String>,
    /// What the cluster did not answer once healed.
    pub(crate) problems: Vec<String>,
    /// The managers' own views at the common index.
    pub(crate) replicas: Value,
    /// `verify-data` of each manager, by name.
    pub(crate) verify: BTreeMap<String, Value>,
    /// Each container's log, by node name.
    pub(crate) logs: BTreeMap<String, String>,
    /// The marks, by run and attempt.
    pub(crate) marks: BTreeMap<String, BTreeMap<String, Marks>>,
}

/// What the check found.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    /// Broken guarantees: any one fails the run.
    pub(crate) failures: Vec<String>,
    /// Worth knowing, not wrong.
    pub(crate) info: Vec<String>,
    /// Figures for the summary table, in order.
    pub(crate) figures: Vec<(String, String)>,
}

impl Findings {
    pub(crate) fn fail(&mut self, what: impl Into<String>) {
        self.failures.push(what.into());
    }

    pub(crate) fn note(&mut self, what: impl Into<String>) {
        self.info.push(what.into());
    }

    pub(crate) fn figure(&mut self, name: &str, value: impl std::fmt::Display) {
        self.figures.push((name.to_owned(), value.to_string()));
    }
}

/// Reads the out dir `out`.
pub(crate) fn read(out: &Path) -> anyhow::Result<Evidence> {
    let dir = out.join("final");
    let load = |name: &str| -> anyhow::Result<Value> {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
    };
    let list = |v: Value| v.as_array().cloned().unwrap_or_default();
    let id = |v: &Value| v["id"].as_str().unwrap_or_default().to_owned();
    let mut e = Evidence { events: crate::history::read(&out.join("history.jsonl"))?, ..Evidence::default() };
    for detail in list(load("runs.json")?) {
        let run = detail["run"].clone();
        let job = run["job"].as_str().unwrap_or_default().to_owned();
        e.runs_of_job.entry(job).or_default().push(id(&run));
        e.attempts.insert(id(&run), list(detail["attempts"].clone()));
        e.runs.insert(id(&run), run);
    }
    e.jobs = list(load("jobs.json")?).into_iter().map(|j| (id(&j), j)).collect();
    e.workflows = list(load("workflows.json")?);
    e.crons = list(load("crons.json")?);
    for w in list(load("workers.json").unwrap_or_default()) {
        e.worker_names.insert(id(&w), w["name"].as_str().unwrap_or_default().to_owned());
    }
    e.problems =
        list(load("problems.json").unwrap_or_default()).iter().filter_map(|p| p.as_str().map(str::to_owned)).collect();
    e.replicas = load("replicas.json")?;
    for name in ["m1", "m2", "m3"] {
        e.verify.insert(name.to_owned(), load(&format!("verify-{name}.json")).unwrap_or(Value::Null));
    }
    if let Ok(entries) = std::fs::read_dir(out.join("logs")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().trim_end_matches(".log").to_owned();
            e.logs.insert(name, String::from_utf8_lossy(&std::fs::read(entry.path())?).into_owned());
        }
    }
    e.marks = crate::marks::read_all(&out.join("marks"))?;
    Ok(e)
}

/// Checks the run in `out`, prints the tables and the verdict; whether it
/// passed. `replay` is the command that replays its seed.
pub(crate) fn check(out: &Path, replay: Option<String>) -> anyhow::Result<bool> {
    let evidence = read(out)?;
    let mut findings = Findings::default();
    for problem in &evidence.problems {
        findings.fail(problem.clone());
    }
    outcomes::check(&evidence, &mut findings);
    overlap::check(&evidence, &mut findings);
    data::check(&evidence, &mut findings);

    println!("{}", fault_table(&evidence.events));
    let mut summary = Table::new();
    summary.set_header(["what", "count"]);
    for (name, value) in &findings.figures {
        summary.add_row([Cell::new(name), Cell::new(value).set_alignment(CellAlignment::Right)]);
    }
    println!("{summary}");
    for line in &findings.info {
        println!("info: {line}");
    }
    for line in &findings.failures {
        println!("FAIL: {line}");
    }
    let passed = findings.failures.is_empty();
    if passed {
        println!("VERDICT: PASS");
    } else {
        let shown: Vec<&str> = findings.failures.iter().take(5).map(String::as_str).collect();
        let more = findings.failures.len().saturating_sub(shown.len());
        let more = if more > 0 { format!("; and {more} more") } else { String::new() };
        println!("VERDICT: FAIL: {}{more}", shown.join("; "));
        let replay = replay.or_else(|| {
            evidence.events.iter().find_map(|e| match e {
                Event::Started { seed, duration_ms, .. } => {
                    Some(format!("scripts/chaos --seed {seed} --duration {}s", duration_ms / 1000))
                }
                _ => None,
            })
        });
        if let Some(replay) = replay {
            println!("replay: {replay}");
        }
        println!("evidence: {}", out.display());
    }
    Ok(passed)
}

/// The faults injected, by kind: how many, and how long they lasted.
fn fault_table(events: &[Event]) -> Table {
    let mut begun: BTreeMap<u64, (FaultKind, u64)> = BTreeMap::new();
    let mut lasted: BTreeMap<FaultKind, Vec<u64>> = BTreeMap::new();
    let mut counts: BTreeMap<FaultKind, u64> = BTreeMap::new();
    for e in events {
        match e {
            Event::Fault { id, kind, effective, .. } => {
                begun.insert(*id, (*kind, *effective));
                *counts.entry(*kind).or_default() += 1;
            }
            Event::Healed { id, at } => {
                if let Some((kind, from)) = begun.get(id) {
                    lasted.entry(*kind).or_default().push(at.saturating_sub(*from));
                }
            }
            _ => {}
        }
    }
    let mut table = Table::new();
    table.set_header(["fault", "count", "shortest", "longest"]);
    let secs = |us: Option<&u64>| us.map_or_else(|| "-".to_owned(), |us| format!("{:.1}s", *us as f64 / 1e6));
    for kind in FaultKind::ALL {
        let times = lasted.get(&kind).cloned().unwrap_or_default();
        table.add_row([
            Cell::new(kind.describe()),
            Cell::new(counts.get(&kind).copied().unwrap_or(0)).set_alignment(CellAlignment::Right),
            Cell::new(secs(times.iter().min())).set_alignment(CellAlignment::Right),
            Cell::new(secs(times.iter().max())).set_alignment(CellAlignment::Right),
        ]);
    }
    table.add_row([
        Cell::new("clock step (infeasible in containers: see README)"),
        Cell::new(0).set_alignment(CellAlignment::Right),
        Cell::new("-").set_alignment(CellAlignment::Right),
        Cell::new("-").set_alignment(CellAlignment::Right),
    ]);
    table.add_row([
        Cell::new("total"),
        Cell::new(counts.values().sum::<u64>()).set_alignment(CellAlignment::Right),
        Cell::new(""),
        Cell::new(""),
    ]);
    table
}
