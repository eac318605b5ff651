//! No two attempts of one run executed at the same time, measured by the jobs
//! themselves on the boot clock (see [`crate::marks`]), and a success is only
//! ever recorded for an attempt that ran to its end.
//!
//! An attempt executed from its first mark to its end mark. One with no end
//! mark was SIGKILLed: it executed at most until the kill — its lease keeper's
//! (the workers' logs say when, on the boot clock) or its container's (the
//! history says when the killed worker container had stopped) — or, when no
//! kill is known, until its last mark plus the widest gap between its marks.

use std::collections::BTreeMap;

use super::{Evidence, Findings};
use crate::history::{Event, FaultKind};
use crate::marks::{Marks, TICK};

/// Slack for a mark's writing after its clock reading (µs).
const RESOLUTION: u64 = 1_000;

/// How long after an attempt's last mark its container's kill may come and
/// still be what ended it (µs): the kill is recorded once the container has
/// stopped, a moment after its processes died.
const CONTAINER_KILL_WITHIN: u64 = 5_000_000;

/// Runs the overlap checks.
pub(super) fn check(e: &Evidence, f: &mut Findings) {
    let keeper = keeper_kills(&e.logs);
    let containers = container_kills(&e.events);
    let mut unexplained = Vec::new();
    let (mut attempts, mut moved) = (0, 0);
    for (run, marks) in &e.marks {
        attempts += marks.len();
        if marks.len() > 1 {
            moved += 1;
        }
        let mut spans: Vec<(u64, u64, &str)> = marks
            .iter()
            .map(|(attempt, m)| {
                let end = end_of(m, keeper.get(attempt.as_str()).copied(), containers.get(m.host.as_str()));
                if end.known.is_none() {
                    unexplained.push(format!("{run} {attempt} on {}", m.host));
                }
                (m.first.saturating_sub(RESOLUTION), end.at + RESOLUTION, attempt.as_str())
            })
            .collect();
        spans.sort_unstable();
        for pair in spans.windows(2) {
            let ((_, until, a), (from, _, b)) = (pair[0], pair[1]);
            if until > from {
                f.fail(format!(
                    "{run}: {a} executed until {} but {b} started at {} ({:.1} ms of overlap): {marks:?}",
                    secs(until),
                    secs(from),
                    (until - from) as f64 / 1e3
                ));
            }
        }
    }
    f.figure("attempts that marked", attempts);
    f.figure("runs executed by more than one attempt", moved);
    f.figure("attempts killed by a lease keeper", keeper.len());
    f.figure("attempts ended without an end mark or a known kill", unexplained.len());
    if !unexplained.is_empty() {
        f.note(format!(
            "attempts without an end mark or a known kill (taken to end a gap after their last mark): {:?}",
            &unexplained[..unexplained.len().min(10)]
        ));
    }
    if moved == 0 {
        f.note("no run was executed by more than one attempt: the faults interrupted nothing");
    }
    successes(e, f);
}

/// When an attempt stopped executing, and what says so.
struct End {
    at: u64,
    known: Option<&'static str>,
}

/// The end of an attempt with marks `m`: its end mark; else its keeper's
/// kill (`keeper`); else its container's kill (among `container`) if one came
/// within [`CONTAINER_KILL_WITHIN`] of its last mark; else a gap after its
/// last mark.
fn end_of(m: &Marks, keeper: Option<u64>, container: Option<&Vec<u64>>) -> End {
    if m.ended {
        return End { at: m.last, known: Some("end mark") };
    }
    if let Some(at) = keeper.filter(|k| *k + RESOLUTION >= m.last) {
        return End { at: at.max(m.last), known: Some("keeper kill") };
    }
    let soon = m.last + CONTAINER_KILL_WITHIN;
    match container.into_iter().flatten().copied().filter(|k| *k + RESOLUTION >= m.last && *k <= soon).min() {
        Some(at) => End { at: at.max(m.last), known: Some("container kill") },
        None => {
            let gap = m.widest_gap.max(u64::try_from(TICK.as_micros()).unwrap_or(0) * 2);
            End { at: m.last + gap, known: None }
        }
    }
}

/// When the lease keepers killed each attempt they killed, from the workers'
/// logs (`archon lease keeper: … by 4425.561234s (boot clock) killed the
/// process groups of att-1 att-2`), in µs. The keeper shares the worker's
/// stderr and its line may be split by one of the worker's, so only what
/// follows the instant is relied on.
fn keeper_kills(logs: &BTreeMap<String, String>) -> BTreeMap<&str, u64> {
    const MARKER: &str = "s (boot clock) killed the process groups of ";
    let mut kills = BTreeMap::new();
    for line in logs.values().flat_map(|l| l.lines()) {
        let Some((before, attempts)) = line.split_once(MARKER) else { continue };
        let Some(Ok(at)) = before.split_whitespace().last().map(str::parse::<f64>) else { continue };
        let at = (at * 1e6).round() as u64;
        for attempt in attempts.split_whitespace() {
            kills.entry(attempt).or_insert(at);
        }
    }
    kills
}

/// When each worker container was killed (had stopped, in µs), by node name.
fn container_kills(events: &[Event]) -> BTreeMap<&str, Vec<u64>> {
    let mut kills: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for e in events {
        if let Event::Fault { kind: FaultKind::KillWorker, targets, effective, .. } = e {
            for t in targets {
                kills.entry(t.as_str()).or_default().push(*effective);
            }
        }
    }
    kills
}

/// Every attempt executed where it was placed, and every run's outcome came
/// from one attempt: a succeeded run has exactly one attempt that finished
/// with exit code 0, and that attempt ran to its end.
fn successes(e: &Evidence, f: &mut Findings) {
    for (id, run) in &e.runs {
        let attempts = e.attempts.get(id).map(Vec::as_slice).unwrap_or_default();
        placed_where_executed(e, f, id, attempts);
        if run["state"] != "succeeded" {
            continue;
        }
        let won: Vec<&str> = attempts
            .iter()
            .filter(|a| a["state"] == "finished" && a["exit"]["kind"] == "exited" && a["exit"]["code"] == 0)
            .filter_map(|a| a["id"].as_str())
            .collect();
        let [attempt] = won[..] else {
            f.fail(format!("{id} succeeded, recorded from {} attempts: {won:?}", won.len()));
            continue;
        };
        match e.marks.get(id).and_then(|m| m.get(attempt)) {
            Some(m) if m.ended && m.started => {}
            Some(m) => f.fail(format!("{id} succeeded with {attempt}, which did not run to its end: {m:?}")),
            None => f.fail(format!("{id} succeeded with {attempt}, which left no marks: it never executed")),
        }
    }
}

/// Each attempt that marked did so on the worker it was placed on.
fn placed_where_executed(e: &Evidence, f: &mut Findings, run: &str, attempts: &[serde_json::Value]) {
    for a in attempts {
        let (Some(id), Some(worker)) = (a["id"].as_str(), a["worker"].as_str()) else { continue };
        let Some(marks) = e.marks.get(run).and_then(|m| m.get(id)) else { continue };
        let placed = e.worker_names.get(worker).map_or(worker, String::as_str);
        if marks.host != placed {
            f.fail(format!("{run}: {id} was placed on {placed} ({worker}) but executed on {}", marks.host));
        }
    }
}

fn secs(us: u64) -> String {
    format!("{:.6}s", us as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(first: u64, last: u64, ended: bool) -> Marks {
        Marks { host: "w1".into(), first, last, started: true, ended, widest_gap: 20_000 }
    }

    #[test]
    fn an_attempt_ends_at_its_end_mark_or_the_first_kill_after_its_last_mark() {
        let ms = |n: u64| n * 1_000;
        assert_eq!(end_of(&marks(0, ms(500), true), Some(ms(900)), None).at, ms(500));
        let kills = vec![ms(100), ms(700), ms(800)];
        let e = end_of(&marks(0, ms(500), false), None, Some(&kills));
        assert_eq!((e.at, e.known), (ms(700), Some("container kill")));
        assert_eq!(end_of(&marks(0, ms(500), false), Some(ms(650)), Some(&kills)).at, ms(650));
        let e = end_of(&marks(0, ms(500), false), None, None);
        assert_eq!((e.at, e.known), (ms(500) + 40_000, None));
        let late = vec![ms(500) + CONTAINER_KILL_WITHIN + 1];
        assert_eq!(end_of(&marks(0, ms(500), false), None, Some(&late)).known, None);
    }

    #[test]
    fn keeper_kills_are_read_from_worker_logs() {
        let logs = BTreeMap::from([(
            "w1".to_owned(),
            "2026-01-01T00:00:00Z archon lease keeper: the worker's lease ended; by 12.5s (boot clock) \
             killed the process groups of att-3 att-4\n\
             2026-01-01T00:00:01Z archon lease keeper: the worker's lease ended; by 2026-01-01T00:00:01Z WARN x\n\
             2026-01-01T00:00:01Z 14.25s (boot clock) killed the process groups of att-5\n"
                .to_owned(),
        )]);
        let kills = keeper_kills(&logs);
        assert_eq!(kills.get("att-3"), Some(&12_500_000));
        assert_eq!(kills.get("att-4"), Some(&12_500_000));
        assert_eq!(kills.get("att-5"), Some(&14_250_000), "a line split by the worker's");
    }
}
