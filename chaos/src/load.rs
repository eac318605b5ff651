//! The load: a seeded stream of submits through the `archon` CLI — shell,
//! script and process jobs one at a time, small workflows now and then, and
//! at the start two cron jobs and a cron workflow — each recorded in the
//! history with its acknowledgement or its error.
//!
//! Every job submit carries an idempotency key (`chaos-<seed>-<n>`); one that
//! failed is tried again later with the same key, as a client should, and
//! once more after the faults are healed, until the cluster answers. Archon
//! takes no idempotency key for a workflow, so a failed workflow submit is
//! recorded and not repeated: it may or may not exist.
//!
//! Every job marks its execution (see [`crate::marks`]) and succeeds if it runs
//! to its end, so any run that does not end `succeeded` says something.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Caller, Cluster};
use crate::history::{Ack, Event, History, WorkKind};
use crate::marks::{boot_micros, shell_body};
use crate::rng::Rng;

/// Where the marks directory is inside a worker container.
const MARKS: &str = "/marks";

/// What every job reserves (a worker offers 2 CPUs: four at a time).
const CPU: &str = "500m";
const MEMORY: &str = "64MiB";

/// A submit: what it asks and how often it was tried.
#[derive(Debug, Clone)]
struct Submit {
    seq: u64,
    kind: WorkKind,
    key: Option<String>,
    args: Vec<String>,
    tries: u32,
}

/// The submits of a run.
#[derive(Debug)]
pub(crate) struct Load<'a> {
    cluster: &'a Cluster,
    history: History,
    rng: Rng,
    seed: u64,
    next_seq: u64,
    /// Keyed submits not yet acknowledged, to try again.
    unanswered: VecDeque<Submit>,
    /// The cron jobs (to cancel before the end).
    pub(crate) crons: Vec<String>,
    /// How many tries were acknowledged and how many failed.
    pub(crate) acked: u64,
    pub(crate) failed: u64,
}

impl<'a> Load<'a> {
    /// The load of run `seed` on `cluster`.
    pub(crate) fn new(cluster: &'a Cluster, history: History, seed: u64) -> Load<'a> {
        Load {
            cluster,
            history,
            rng: Rng::stream(seed, "load"),
            seed,
            next_seq: 1,
            unanswered: VecDeque::new(),
            crons: Vec::new(),
            acked: 0,
            failed: 0,
        }
    }

    /// The cron jobs: one every 3 s (all fires run, alongside), one every 5 s
    /// (a fire is skipped while the last still runs), and a cron workflow
    /// every 20 s (an instance per fire, skipped while one runs).
    pub(crate) async fn start_crons(&mut self) -> anyhow::Result<()> {
        let every3 = shell_body(MARKS, 10);
        let fast = self.job_args(&["--cron", "*/3 * * * * *", "--overlap", "allow-all", "-c", &every3]);
        let every5 = shell_body(MARKS, 60);
        let slow = self.job_args(&["--cron", "*/5 * * * * *", "--overlap", "skip", "-c", &every5]);
        let flow = self.workflow_file(Some("*/20 * * * * *"))?;
        for (kind, args) in [(WorkKind::Cron, fast), (WorkKind::Cron, slow), (WorkKind::CronWorkflow, flow)] {
            let submit = self.submit_of(kind, args);
            if let Some(ack) = self.send(submit).await {
                self.crons.extend(ack.job);
            }
        }
        Ok(())
    }

    /// Submits until `until` or `stop`: a new submit every 250–900 ms, or now
    /// and then a try again of one that failed.
    pub(crate) async fn run(&mut self, until: tokio::time::Instant, stop: &CancellationToken) -> anyhow::Result<()> {
        while tokio::time::Instant::now() < until && !stop.is_cancelled() {
            // Drawn every turn, so a seed draws the same numbers whatever failed.
            let retry = self.rng.chance(30) && !self.unanswered.is_empty();
            let submit = match retry.then(|| self.unanswered.pop_front()).flatten() {
                Some(s) => s,
                None => self.next_submit()?,
            };
            self.send(submit).await;
            let pause = self.rng.millis(250, 900);
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = stop.cancelled() => {}
            }
        }
        Ok(())
    }

    /// Tries every unanswered keyed submit again until each is answered, for
    /// at most `within` (after the faults are healed: the cluster must answer).
    pub(crate) async fn settle(&mut self, within: Duration, stop: &CancellationToken) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        while let Some(submit) = self.unanswered.pop_front() {
            if tokio::time::Instant::now() >= deadline || stop.is_cancelled() {
                self.unanswered.push_front(submit);
                break;
            }
            if self.send(submit).await.is_none() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        self.unanswered.len()
    }

    /// Cancels the cron jobs (their schedules stop; unfinished runs are
    /// cancelled), trying each until it is answered, for at most `within`.
    pub(crate) async fn cancel_crons(&self, within: Duration, stop: &CancellationToken) -> anyhow::Result<()> {
        for job in &self.crons {
            self.cluster
                .until(within, stop, &format!("{job} cancelled"), || async {
                    let out = self.cluster.cli(Caller::Client, &self.cluster.servers(), &["cancel", job]).await?;
                    if out.ok() { Ok(()) } else { Err(anyhow::anyhow!(out.error())) }
                })
                .await?;
            self.history.note(format!("cancelled {job}"));
        }
        Ok(())
    }

    /// A new submit of a kind drawn by weight.
    fn next_submit(&mut self) -> anyhow::Result<Submit> {
        let kinds = [WorkKind::Shell, WorkKind::Script, WorkKind::Process, WorkKind::Workflow];
        let kind = self.rng.weighted(&[35, 25, 30, 10]).map_or(WorkKind::Shell, |i| kinds[i]);
        let args = match kind {
            WorkKind::Shell => {
                let body = shell_body(MARKS, self.ticks(10, 200));
                self.job_args(&["--command", &body])
            }
            WorkKind::Script => {
                let body = format!("#!/bin/sh\n{}\n", shell_body(MARKS, self.ticks(10, 200)));
                let path = self.file("sh", &body)?;
                self.job_args(&["--script", &path, "--interpreter", "sh"])
            }
            WorkKind::Process => {
                let ticks = self.ticks(10, 400).to_string();
                self.job_args(&["--", "/bin/archon-chaos", "work", MARKS, "--ticks", &ticks])
            }
            _ => self.workflow_file(None)?,
        };
        Ok(self.submit_of(kind, args))
    }

    fn ticks(&mut self, lo: u32, hi: u32) -> u32 {
        u32::try_from(self.rng.range(u64::from(lo), u64::from(hi))).unwrap_or(lo)
    }

    /// Numbers a submit; jobs get their key.
    fn submit_of(&mut self, kind: WorkKind, mut args: Vec<String>) -> Submit {
        let seq = self.next_seq;
        self.next_seq += 1;
        let key = matches!(kind, WorkKind::Shell | WorkKind::Script | WorkKind::Process | WorkKind::Cron)
            .then(|| format!("chaos-{}-{seq}", self.seed));
        if let Some(key) = &key {
            // Before a `--` (argv follows it).
            let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
            args.splice(at..at, ["--idempotency-key".to_owned(), key.clone()]);
            args.splice(at..at, ["--name".to_owned(), format!("chaos-{kind:?}-{seq}").to_lowercase()]);
        }
        Submit { seq, kind, key, args, tries: 0 }
    }

    /// `archon submit` of a job with `rest` and its reservation.
    fn job_args(&self, rest: &[&str]) -> Vec<String> {
        let mut args: Vec<String> =
            ["submit", "--output", "json", "--cpu", CPU, "--memory", MEMORY].map(str::to_owned).to_vec();
        args.extend(rest.iter().map(|s| (*s).to_owned()));
        args
    }

    /// `archon run -f` of a new workflow file: `a`, then `b` (a shell loop) and
    /// `c` (a process) after it, then `d` (a script) after both; with
    /// `schedule`, a cron workflow of just `a` then `b`.
    fn workflow_file(&mut self, schedule: Option<&str>) -> anyhow::Result<Vec<String>> {
        let seq = self.next_seq;
        let node = |name: &str, after: &[&str], task: String| {
            let after: Vec<String> = after.iter().map(|p| toml_str(p)).collect();
            format!(
                "\n[[jobs]]\nname = {}\n{task}\ncpu = {}\nmemory = {}\ndepends_on = [{}]\n",
                toml_str(name),
                toml_str(CPU),
                toml_str(MEMORY),
                after.join(", ")
            )
        };
        let shell = |ticks: u32| format!("command = {}", toml_str(&shell_body(MARKS, ticks)));
        let mut text = format!("[workflow]\nname = {}\n", toml_str(&format!("chaos-wf-{seq}")));
        if let Some(cron) = schedule {
            text += &format!("\n[workflow.schedule]\ncron = {}\noverlap = \"skip\"\n", toml_str(cron));
            text += &node("a", &[], shell(10));
            text += &node("b", &["a"], shell(20));
        } else {
            let (a, b, c, d) = (self.ticks(5, 40), self.ticks(5, 60), self.ticks(5, 80), self.ticks(5, 40));
            text += &node("a", &[], shell(a));
            text += &node("b", &["a"], shell(b));
            let argv = ["/bin/archon-chaos", "work", MARKS, "--ticks", &c.to_string()].map(toml_str);
            text += &node("c", &["a"], format!("argv = [{}]", argv.join(", ")));
            let script = format!("#!/bin/sh\n{}\n", shell_body(MARKS, d));
            text += &node("d", &["b", "c"], format!("script = {}\ninterpreter = \"sh\"", toml_str(&script)));
        }
        let path = self.file("toml", &text)?;
        Ok(["run", "--output", "json", "-f", &path].map(str::to_owned).to_vec())
    }

    /// Writes `text` to a new file of the run's `jobs/` dir; its path.
    fn file(&self, ext: &str, text: &str) -> anyhow::Result<String> {
        let dir = self.cluster.out.join("jobs");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.{ext}", self.next_seq));
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path.to_string_lossy().into_owned())
    }

    /// One try of `submit`, recorded; its acknowledgement. A keyed submit that
    /// failed is kept to try again.
    async fn send(&mut self, mut submit: Submit) -> Option<Ack> {
        submit.tries += 1;
        let sent = boot_micros();
        let args: Vec<&str> = submit.args.iter().map(String::as_str).collect();
        let answer = match self.cluster.cli(Caller::Client, &self.cluster.servers(), &args).await {
            Ok(out) if out.ok() => parse_ack(&out.stdout).map_err(|e| format!("{e:#}: {}", out.stdout.trim())),
            Ok(out) => Err(out.error()),
            Err(e) => Err(format!("{e:#}")),
        };
        let answered = boot_micros();
        let (ack, error) = match answer {
            Ok(ack) => (Some(ack), None),
            Err(e) => (None, Some(e)),
        };
        self.history.record(&Event::Submit {
            seq: submit.seq,
            try_no: submit.tries,
            kind: submit.kind,
            key: submit.key.clone(),
            sent,
            answered,
            ack: ack.clone(),
            error,
        });
        if ack.is_some() {
            self.acked += 1;
        } else {
            self.failed += 1;
            if submit.key.is_some() {
                self.unanswered.push_back(submit);
            }
        }
        ack
    }
}

/// The acknowledgement in a submit's JSON: `[{"job", "run", "duplicate"}]` for
/// a job, `{"workflow", "jobs", "schedule"}` for a workflow.
fn parse_ack(stdout: &str) -> anyhow::Result<Ack> {
    let v: Value = serde_json::from_str(stdout).context("the answer is not JSON")?;
    let text = |v: &Value| v.as_str().map(str::to_owned);
    if let Some(first) = v.as_array().and_then(|a| a.first()) {
        return Ok(Ack {
            job: text(&first["job"]),
            run: text(&first["run"]),
            duplicate: first["duplicate"] == true,
            ..Ack::default()
        });
    }
    if v.get("jobs").is_some() {
        let jobs = v["jobs"].as_array().map(|js| js.iter().filter_map(text).collect()).unwrap_or_default();
        return Ok(Ack { job: text(&v["schedule"]), workflow: text(&v["workflow"]), jobs, ..Ack::default() });
    }
    anyhow::bail!("no job in the answer")
}

/// `s` as a TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_of_jobs_and_workflows_are_read() {
        let job = parse_ack(r#"[{"job":"job-3","run":"run-7","duplicate":true}]"#).unwrap();
        assert_eq!((job.job.as_deref(), job.run.as_deref(), job.duplicate), (Some("job-3"), Some("run-7"), true));
        let wf = parse_ack(r#"{"workflow":"wf-2","jobs":["job-4","job-5"],"schedule":null}"#).unwrap();
        assert_eq!((wf.workflow.as_deref(), wf.jobs.len(), wf.job), (Some("wf-2"), 2, None));
        let cron = parse_ack(r#"{"workflow":null,"jobs":[],"schedule":"job-9"}"#).unwrap();
        assert_eq!(cron.job.as_deref(), Some("job-9"));
        assert!(parse_ack("{}").is_err());
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_str(r#"a "b" \c"#), r#""a \"b\" \\c""#);
    }
}
