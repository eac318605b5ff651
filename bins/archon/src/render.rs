//! How read commands print: tables for people, JSON for programs.

use archon_core::api::{
    ClusterStatus, JobDetail, JobSummary, RunDetail, RunSummary, ScheduleInfo, WorkerInfo, WorkflowDetail,
    WorkflowSummary,
};
use archon_core::model::units::{format_bytes, format_cpu, format_duration};
use archon_core::model::{ExitStatus, OnDisconnect, ResourceUsage, Schedule, Secret, Timestamp};
use comfy_table::{Table, presets::NOTHING};

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(NOTHING);
    t.set_header(header.to_vec());
    t
}

fn exit(e: Option<&ExitStatus>) -> String {
    e.map_or_else(|| "-".into(), |e| e.to_string())
}

fn time(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".into(), |t| t.to_string())
}

pub(crate) fn jobs(items: &[JobSummary]) -> String {
    let mut t = table(&["JOB", "NAME", "KIND", "TASK", "RUNS", "LAST STATE", "NEXT FIRE", "CREATED"]);
    for j in items {
        let task: String = j.task.chars().take(48).collect();
        let next = match (j.paused, j.next_fire) {
            (true, _) => "paused".to_owned(),
            (false, next) => time(next),
        };
        t.add_row(vec![
            j.id.to_string(),
            j.name.clone(),
            j.kind.clone(),
            task,
            j.runs.to_string(),
            j.last_state.map_or("-".into(), |s| s.to_string()),
            next,
            j.created_at.to_string(),
        ]);
    }
    t.to_string()
}

pub(crate) fn workflows(items: &[WorkflowSummary]) -> String {
    let mut t = table(&["WORKFLOW", "NAME", "STATE", "JOBS", "CREATED", "FINISHED"]);
    for w in items {
        t.add_row(vec![
            w.id.to_string(),
            w.name.clone(),
            w.state.to_string(),
            w.nodes.to_string(),
            w.created_at.to_string(),
            time(w.finished_at),
        ]);
    }
    t.to_string()
}

pub(crate) fn runs(items: &[RunSummary]) -> String {
    let mut t = table(&["RUN", "JOB", "NAME", "STATE", "ATTEMPTS", "EXIT", "CREATED", "FINISHED"]);
    for r in items {
        t.add_row(vec![
            r.id.to_string(),
            r.job.to_string(),
            r.job_name.clone(),
            r.state.to_string(),
            r.attempts.to_string(),
            exit(r.exit.as_ref()),
            r.created_at.to_string(),
            time(r.finished_at),
        ]);
    }
    t.to_string()
}

pub(crate) fn job(d: &JobDetail) -> String {
    let s = &d.job.spec;
    let mut out = format!(
        "{}  {}\n  task:       {} ({})\n  resources:  {}\n  priority:   {}\n  timeout:    {}\n  retries:    {} (backoff {})\n  created:    {}\n",
        d.job.id,
        s.name,
        s.task.summary(),
        s.task.kind(),
        s.resources,
        s.priority,
        s.timeout.map_or("none".into(), format_duration),
        s.retry.max_retries,
        format_duration(s.retry.backoff_base),
        d.job.created_at,
    );
    if !s.secret_env.is_empty() {
        // The names only: a value is never shown (the API answers `***` anyway).
        let names: Vec<String> = s.secret_env.keys().map(|k| format!("{k}={}", Secret::REDACTED)).collect();
        out.push_str(&format!("  secret env: {}\n", names.join(", ")));
    }
    if s.on_disconnect == OnDisconnect::Keep {
        // Only the choice that can run an attempt twice at once is worth a line.
        out.push_str("  on disconnect: keep (runs on past its worker's lease; may run twice at once)\n");
    }
    if d.job.cancelled {
        out.push_str("  cancelled:  yes\n");
    }
    if let Some(spec) = s.schedule.as_deref() {
        out.push_str(&schedule(spec, d.schedule.as_ref()));
    }
    let summaries: Vec<RunSummary> = d
        .runs
        .iter()
        .map(|r| RunSummary {
            id: r.id,
            job: r.job,
            job_name: s.name.clone(),
            state: r.state,
            created_at: r.created_at,
            finished_at: r.finished_at,
            attempts: u32::try_from(r.attempts.len()).unwrap_or(u32::MAX),
            exit: None,
        })
        .collect();
    out.push_str(&runs(&summaries));
    out
}

/// A cron job's schedule: its definition, where it stands, its next fires.
fn schedule(spec: &Schedule, info: Option<&ScheduleInfo>) -> String {
    let catch_up = match spec.catch_up_window() {
        d if d.is_zero() => "none".to_owned(),
        d => format_duration(d),
    };
    let mut out = format!(
        "  schedule:   {:?} in {}\n  overlap:    {}\n  catch-up:   {catch_up}\n",
        spec.cron,
        spec.timezone,
        spec.overlap.as_str().replace('_', "-"),
    );
    if let Some(j) = spec.jitter.filter(|j| !j.is_zero()) {
        out.push_str(&format!("  jitter:     up to {}\n", format_duration(j)));
    }
    let Some(info) = info else { return out };
    let st = &info.state;
    if let Some(p) = &st.paused {
        let note = p.note.as_deref().map(|n| format!(": {n}")).unwrap_or_default();
        out.push_str(&format!("  paused:     since {}{note}\n", p.at));
    }
    let recent = |ts: &std::collections::VecDeque<Timestamp>| {
        if ts.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = ts.iter().map(Timestamp::to_string).collect();
            format!(" (latest: {})", list.join(", "))
        }
    };
    out.push_str(&format!("  fired:      {}{}\n", st.fired.count, recent(&st.fired.recent)));
    out.push_str(&format!("  skipped:    {}{}\n", st.skipped.count, recent(&st.skipped.recent)));
    out.push_str(&format!("  missed:     {}{}\n", st.missed.count, recent(&st.missed.recent)));
    if !st.buffered.is_empty() {
        let list: Vec<String> = st.buffered.iter().take(5).map(Timestamp::to_string).collect();
        let more = st.buffered.len().saturating_sub(5);
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        out.push_str(&format!("  buffered:   {}{more}\n", list.join(", ")));
    }
    if !st.active.is_empty() {
        let list: Vec<String> = st.active.iter().map(ToString::to_string).collect();
        out.push_str(&format!("  running:    {}\n", list.join(", ")));
    }
    let next: Vec<String> = info.next.iter().map(Timestamp::to_string).collect();
    out.push_str(&format!("  next fires: {}\n", if next.is_empty() { "-".to_owned() } else { next.join(", ") }));
    out
}

/// A workflow as a text tree: each node under its first parent, with its job,
/// run and state, and the condition of the edge it hangs by.
pub(crate) fn workflow(d: &WorkflowDetail) -> String {
    let w = &d.workflow;
    let nodes = &w.spec.nodes;
    let finished = d.finished_at.map(|t| format!(", finished {t}")).unwrap_or_default();
    let mut out = format!("{}  {}  {}  (created {}{finished})\n", w.id, w.spec.name, d.state, w.created_at);
    let index: std::collections::HashMap<&str, usize> =
        nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        if let Some(first) = n.after.first().and_then(|e| index.get(e.parent.as_str())) {
            children[*first].push(i);
        }
    }
    let line = |i: usize, prefix: &str| {
        let n = &nodes[i];
        let run = d.runs.get(i).and_then(Option::as_ref);
        let state = run.map_or("-".to_owned(), |r| r.state.to_string());
        let run = run.map_or("-".to_owned(), |r| r.id.to_string());
        let job = w.jobs.get(i).map_or("-".to_owned(), ToString::to_string);
        let edges: Vec<String> = n.after.iter().map(|e| format!("{} on {}", e.parent, e.when.as_str())).collect();
        let after = if edges.is_empty() { String::new() } else { format!("  (after {})", edges.join(", ")) };
        format!("{prefix}{}  {job}  {run}  {state}{after}\n", n.name)
    };
    fn walk(i: usize, depth: usize, children: &[Vec<usize>], line: &dyn Fn(usize, &str) -> String, out: &mut String) {
        let prefix = if depth == 0 { "  ".to_owned() } else { format!("  {}└─ ", "   ".repeat(depth - 1)) };
        out.push_str(&line(i, &prefix));
        for c in &children[i] {
            walk(*c, depth + 1, children, line, out);
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        if n.after.is_empty() {
            walk(i, 0, &children, &line, &mut out);
        }
    }
    out
}

pub(crate) fn run(d: &RunDetail) -> String {
    let r = &d.run;
    let mut out = format!(
        "{}  of {} ({})\n  state:      {}\n  exit:       {}\n  attempts:   {} (retries used {})\n  created:    {}\n  finished:   {}\n",
        r.id,
        r.job,
        d.job_name,
        r.state,
        exit(d.exit()),
        r.attempts.len(),
        r.retries_used,
        r.created_at,
        time(r.finished_at),
    );
    if let Some(reason) = &r.reason {
        out.push_str(&format!("  reason:     {reason}\n"));
    }
    if let Some(why) = &d.pending_reason {
        out.push_str(&format!("  pending:    {why}\n"));
    }
    if let Some(t) = r.not_before {
        out.push_str(&format!("  next try:   {t}\n"));
    }
    let mut t = table(&["ATTEMPT", "WORKER", "STATE", "STARTED", "FINISHED", "EXIT"]);
    for a in &d.attempts {
        t.add_row(vec![
            a.id.to_string(),
            a.worker.to_string(),
            format!("{:?}", a.state).to_lowercase(),
            time(a.started_at),
            time(a.finished_at),
            exit(a.result.as_ref().map(|r| &r.status)),
        ]);
    }
    if !d.attempts.is_empty() {
        out.push_str(&t.to_string());
        out.push('\n');
    }
    let measured: Vec<_> = d.attempts.iter().filter_map(|a| a.result.as_ref()?.usage.map(|u| (a.id, u))).collect();
    if !measured.is_empty() {
        out.push_str("usage:\n");
        for (attempt, u) in measured {
            out.push_str(&format!("  {attempt}  {}\n", usage(&u)));
        }
    }
    if let Some(result) = d.attempts.last().and_then(|a| a.result.as_ref()) {
        for (name, tail) in [("stdout", &result.stdout), ("stderr", &result.stderr)] {
            if tail.data.is_empty() {
                continue;
            }
            let note =
                if tail.truncated > 0 { format!(" (first {} bytes dropped)", tail.truncated) } else { String::new() };
            out.push_str(&format!("--- {name}{note} ---\n{}", tail.text()));
            if !tail.text().ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
}

/// One attempt's usage on a line: `cpu 0.52s (user 0.50s, sys 0.02s) · peak memory
/// 101.3MiB · wall 0.61s`.
fn usage(u: &ResourceUsage) -> String {
    let secs = |us: u64| format!("{:.2}s", us as f64 / 1e6);
    format!(
        "cpu {} (user {}, sys {}) · peak memory {} · wall {}",
        secs(u.cpu_us()),
        secs(u.cpu_user_us),
        secs(u.cpu_system_us),
        format_bytes(u.peak_memory_bytes),
        secs(u.wall_us)
    )
}

/// The managers' table: id, address, role, term and last applied index.
pub(crate) fn managers(managers: &[archon_core::api::ManagerInfo]) -> String {
    let mut t = table(&["MANAGER", "ADDRESS", "ROLE", "TERM", "APPLIED"]);
    for m in managers {
        t.add_row(vec![
            m.id.to_string(),
            m.address.clone(),
            m.role.clone(),
            m.term.to_string(),
            m.last_applied.to_string(),
        ]);
    }
    t.to_string()
}

pub(crate) fn status(s: &ClusterStatus) -> String {
    let t = managers(&s.managers);
    let counts = |m: &std::collections::BTreeMap<String, u64>| {
        if m.is_empty() {
            "none".to_owned()
        } else {
            m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
        }
    };
    format!(
        "{t}\nworkers: {}\njobs:    {}\nruns:    {}\nqueued:  {}\n",
        counts(&s.workers),
        s.jobs,
        counts(&s.runs),
        s.queued
    )
}

pub(crate) fn workers(items: &[WorkerInfo], now: Timestamp) -> String {
    let mut t =
        table(&["WORKER", "NAME", "STATE", "CONNECTED", "LAST SEEN", "CPU", "MEMORY", "RUNNING", "LABELS", "RUNS"]);
    for w in items {
        let r = &w.worker;
        t.add_row(vec![
            r.id.to_string(),
            r.name.clone(),
            r.state.to_string(),
            if w.connected { "yes".into() } else { "no".into() },
            w.last_seen.map_or("-".into(), |s| {
                format!("{} ago", format_duration(std::time::Duration::from_secs(now.since(s).as_secs())))
            }),
            format!("{}/{}", format_cpu(r.allocated.cpu_millis), format_cpu(r.capacity.cpu_millis)),
            format!("{}/{}", format_bytes(r.allocated.memory_bytes), format_bytes(r.capacity.memory_bytes)),
            r.running.len().to_string(),
            r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
            r.capabilities.iter().cloned().collect::<Vec<_>>().join(","),
        ]);
    }
    t.to_string()
}

pub(crate) use archon_http::views::TokenView;

pub(crate) fn tokens(items: &[TokenView]) -> String {
    let mut t = table(&["TOKEN", "NAME", "SCOPES", "CREATED", "EXPIRES"]);
    for v in items {
        t.add_row(vec![
            v.id.clone(),
            v.name.clone(),
            v.scopes.join(","),
            v.created_at.clone(),
            v.expires_at.clone().unwrap_or_else(|| "never".into()),
        ]);
    }
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_that_keeps_its_attempts_on_disconnect_says_so() {
        use archon_core::model::{Job, JobId, JobSpec, Task};
        let detail = |on_disconnect| JobDetail {
            job: Job {
                id: JobId(7),
                spec: std::sync::Arc::new(JobSpec {
                    on_disconnect,
                    ..JobSpec::new("etl", Task::Shell { command: "true".into() })
                }),
                created_at: Timestamp(0),
                runs: vec![],
                cancelled: false,
            },
            runs: vec![],
            schedule: None,
        };
        let keep = job(&detail(OnDisconnect::Keep));
        assert!(keep.contains("  on disconnect: keep ("), "{keep}");
        let kill = job(&detail(OnDisconnect::Kill));
        assert!(!kill.contains("disconnect"), "the default is not shown: {kill}");
    }

    #[test]
    fn usage_reads_as_seconds_and_binary_units() {
        let u = ResourceUsage {
            cpu_user_us: 500_000,
            cpu_system_us: 20_000,
            peak_memory_bytes: 106_254_745,
            wall_us: 610_000,
        };
        assert_eq!(usage(&u), "cpu 0.52s (user 0.50s, sys 0.02s) · peak memory 101.3MiB · wall 0.61s");
    }
}
