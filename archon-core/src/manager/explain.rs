//! Why pending runs stay pending. After a placement pass the driver explains the
//! first runs it could not place — no workers accepting work, none that can run
//! the task, or not enough free right now — in words for `archon get`. It is
//! leader-local soft state, refreshed at most every [`EXPLAIN_EVERY`].

use crate::model::{Misfit, RunId, WorkerState};
use crate::scheduler::{ClusterView, PendingRun, Placement};
use crate::state::ClusterState;

/// How often a placement pass explains the runs it could not place.
pub(crate) const EXPLAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// How many unplaced runs a pass explains (the first ones in placement order).
const EXPLAIN_AT_MOST: usize = 64;

/// Why each of the first unplaced runs found no worker, in words for `archon get`.
pub(crate) fn explain_unplaced(
    state: &ClusterState,
    view: &ClusterView<'_>,
    pending: &[PendingRun<'_>],
    placed: &[Placement],
) -> Vec<(RunId, String)> {
    let placed: std::collections::HashSet<RunId> = placed.iter().map(|p| p.run).collect();
    let registered = state.workers().values().filter(|w| w.state != WorkerState::Left).count();
    pending
        .iter()
        .filter(|p| !placed.contains(&p.run))
        .take(EXPLAIN_AT_MOST)
        .map(|p| {
            if view.workers.is_empty() {
                let why = if registered == 0 {
                    "no worker has registered yet".to_owned()
                } else {
                    format!("none of the {registered} registered workers accepts work (draining or lost)")
                };
                return (p.run, format!("waiting for a worker: {why}"));
            }
            let mut busy = Vec::new();
            let mut unfit = Vec::new();
            for slot in &view.workers {
                let w = slot.worker;
                let queue = match (w.queue, w.queued.len()) {
                    (0, _) => String::new(),
                    (q, n) if n >= q as usize => format!(" and its queue of {q} full"),
                    (_, n) => format!(" and {n} queued ahead"),
                };
                match w.fits_now(p.spec, &slot.free) {
                    Ok(()) if w.queued.is_empty() => busy.push(format!("{} (being placed this pass)", w.name)),
                    Ok(()) | Err(Misfit::Busy) => busy.push(format!("{} has {} free{queue}", w.name, slot.free)),
                    Err(m) => unfit.push(format!("{} {m}", w.name)),
                }
            }
            let reason = if busy.is_empty() {
                format!("no ready worker can run it: {}", unfit.join("; "))
            } else {
                let shown: Vec<&String> = busy.iter().take(3).collect();
                let more = if busy.len() > 3 { format!(" and {} more", busy.len() - 3) } else { String::new() };
                format!(
                    "waiting for capacity: needs {}; {}{more}",
                    p.spec.resources,
                    shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )
            };
            (p.run, reason)
        })
        .collect()
}
