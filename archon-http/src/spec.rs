//! Job drafts: what a user writes in a spec file, on the command line or in a
//! REST request body, before it becomes a [`JobSpec`]. Every path goes through
//! [`JobDraft::into_spec`], so a bad value gets the same error either way, naming
//! the field (`timeout`) or the flag (`--timeout`) and the accepted form.
//!
//! A spec file is TOML: either one job at the top level, or several as `[[jobs]]`.
//! The REST API takes the same documents as JSON (`POST /api/v1/jobs`,
//! `POST /api/v1/workflows`).
//!
//! ```toml
//! name = "nightly-report"
//! command = "echo hello"          # or: script + interpreter, argv = [...], function + input
//! timeout = "30s"
//! max_retries = 2
//! retry_backoff = "1s"
//! cpu = "500m"
//! memory = "256MiB"
//! env = { REPORT_DAY = "monday" }
//! secret_env = { API_TOKEN = "…" } # passed like env; shown as *** everywhere else
//! retention = "1d"                # finished runs kept (default: the cluster's, 7d)
//! keep_last = 10                  # at most this many finished runs kept
//! output_limit = "256KiB"         # kept per stream of each attempt (default 1MiB)
//! on_disconnect = "keep"          # when its worker's lease lapses: kill (default) or keep
//! ```
//!
//! A container job names its image in a `[docker]` table:
//!
//! ```toml
//! name = "thumbnail"
//! cpu = "500m"                    # the container's CPU limit
//! memory = "128MiB"               # its memory limit (past it: out of memory)
//! [docker]
//! image = "archon-test/busybox:1"
//! command = ["sh", "-c", "echo hi"]
//! network = "none"                # default; or bridge, host, a network's name
//! pull = "if-not-present"         # default; or always, never
//! ```
//!
//! A recurring job adds a `[schedule]` table (see the `schedule` module).
//!
//! `secret_env` (also a `[secret_env]` table, `--secret-env` on the command
//! line) is an environment whose values only the worker running an attempt
//! gets: every read of the job answers each value as `***`. A variable may not
//! be in both `env` and `secret_env`.
//!
//! `on_disconnect` (`--on-disconnect`) is what a worker does with a running
//! attempt once it has heard from no leader for longer than its lease: `kill`
//! (the default) so the run never executes in two places at once, or `keep` to
//! ride out a short outage at the risk of the run executing twice at once if the
//! worker is declared lost (see [`JobSpec::on_disconnect`]).

use std::collections::BTreeMap;
use std::path::Path;

use archon_core::model::{
    Constraint, DockerTask, JobId, JobSpec, OnDisconnect, PlacementPolicy, PullPolicy, Resources, Secret, SpecError,
    Task,
    units::{parse_bytes, parse_cpu, parse_duration},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

mod schedule;
mod workflow;
pub use schedule::ScheduleDraft;
pub use workflow::{WorkflowDraft, WorkflowHead, parse_workflow_json};

/// What a spec file holds: jobs, or one workflow (see the `workflow` module).
#[derive(Debug)]
pub enum SpecFileContent {
    /// One job or several `[[jobs]]`, independent.
    Jobs(Vec<JobSpec>),
    /// A `[workflow]` with its `[[jobs]]` and their edges.
    Workflow(archon_core::model::WorkflowSpec),
}

/// Reads a spec file: jobs or a workflow. Errors name the file and the field.
pub fn read_any_spec_file(path: &Path) -> Result<SpecFileContent, crate::Error> {
    let in_file = |message: String| crate::Error::SpecFile { path: path.to_owned(), message };
    let text = std::fs::read_to_string(path).map_err(|e| in_file(format!("cannot read: {e}")))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| in_file(format!("not valid TOML: {e}")))?;
    if workflow::is_workflow(&table) {
        return workflow::parse_workflow(table).map(SpecFileContent::Workflow).map_err(in_file);
    }
    drop(table); // parse_spec_file parses the text again: not two trees at once
    parse_spec_file(&text).map(SpecFileContent::Jobs).map_err(in_file)
}

/// A CPU amount as written: `"500m"`, `"2"`, `2` or `0.5` (cores).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CpuDraft {
    /// `"500m"` (millicores) or `"1.5"` (cores).
    Text(String),
    /// Cores, e.g. `0.5` or `2`.
    Cores(f64),
}

/// One job as written by a user.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobDraft {
    /// The job's name.
    pub name: Option<String>,
    /// A shell command line.
    pub command: Option<String>,
    /// An inline script body.
    pub script: Option<String>,
    /// The script's interpreter (default `sh`).
    pub interpreter: Option<String>,
    /// A program and its arguments, no shell.
    pub argv: Option<Vec<String>>,
    /// A registered function's name.
    pub function: Option<String>,
    /// A custom task kind: the name of the executor registered for it on the workers.
    pub executor: Option<String>,
    /// The function's or custom task's input (any TOML or JSON value, sent as JSON).
    pub input: Option<serde_json::Value>,
    /// Attempt timeout, e.g. `30s`.
    pub timeout: Option<String>,
    /// Retries after a failure.
    #[schema(format = "uint32", minimum = 0, maximum = 4294967295.0)]
    pub max_retries: Option<u32>,
    /// First retry delay, e.g. `1s`.
    pub retry_backoff: Option<String>,
    /// Largest retry delay, e.g. `5m`.
    pub retry_backoff_max: Option<String>,
    /// CPU, e.g. `"500m"`, `"2"` or `0.5`.
    pub cpu: Option<CpuDraft>,
    /// Memory, e.g. `"256MiB"`.
    pub memory: Option<String>,
    /// A container to run (instead of command, script, argv or function).
    pub docker: Option<DockerDraft>,
    /// Network bandwidth reserved, Mbit/s.
    #[schema(format = "uint64", minimum = 0, maximum = 18446744073709551615.0)]
    pub bandwidth: Option<u64>,
    /// Devices by kind, e.g. `{ gpu = 1 }`.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, u64>)]
    pub devices: BTreeMap<String, u32>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values are secret: passed to the job like
    /// `env`, answered as `***` by every read of the job.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, String>)]
    pub secret_env: BTreeMap<String, Secret>,
    /// Working directory on the worker.
    pub workdir: Option<String>,
    /// Label constraints (`key=value`, `key!=value`, `key`).
    #[serde(default)]
    pub constraints: Vec<String>,
    /// Priority (higher first).
    pub priority: Option<i32>,
    /// `binpack` or `spread`.
    pub placement: Option<String>,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Jobs this one waits for (`job-N`).
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// How long its finished runs stay in the history, e.g. `1h` (the cluster's
    /// default applies when it is longer).
    pub retention: Option<String>,
    /// Keep at most this many of its finished runs.
    #[schema(format = "uint32", minimum = 0, maximum = 4294967295.0)]
    pub keep_last: Option<u32>,
    /// Output kept per stream of an attempt, e.g. `256KiB`.
    pub output_limit: Option<String>,
    /// What the worker does with a running attempt when its lease lapses (no
    /// leader heard for longer than the lease): `kill` (default: a run never
    /// executes twice at once) or `keep` (rides out a short outage; if the
    /// worker is declared lost the run may execute twice at once). A string,
    /// as `placement` is: a batch answers a bad value in its item's result.
    pub on_disconnect: Option<String>,
    /// A cron schedule: the job runs at each fire instead of once now.
    pub schedule: Option<ScheduleDraft>,
}

/// A container job as written by a user: the `[docker]` table, or `--docker`
/// and its flags.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DockerDraft {
    /// The image, e.g. `busybox:1.36`.
    pub image: Option<String>,
    /// The command (default: the image's).
    #[serde(default)]
    pub command: Vec<String>,
    /// An entrypoint override.
    pub entrypoint: Option<Vec<String>>,
    /// `none` (default), `bridge`, `host` or a network's name.
    pub network: Option<String>,
    /// The user inside the container, e.g. `65534:65534`.
    pub user: Option<String>,
    /// Bind mounts `/host:/container[:ro]` (the worker must allow them).
    #[serde(default)]
    pub mounts: Vec<String>,
    /// `if-not-present` (default), `always` or `never`.
    pub pull: Option<String>,
}

impl DockerDraft {
    fn task(&self, naming: Naming) -> Result<Task, SpecError> {
        let field = |key: &str| docker_field(key, naming);
        let image = self.image.clone().ok_or_else(|| {
            SpecError::new(field("image"), "is missing: name the image to run (e.g. image = \"busybox:1.36\")")
        })?;
        let pull = match self.pull.as_deref() {
            None | Some("if-not-present") => PullPolicy::IfNotPresent,
            Some("always") => PullPolicy::Always,
            Some("never") => PullPolicy::Never,
            Some(other) => {
                return Err(SpecError::new(
                    field("pull"),
                    format!("{other:?} is not a pull policy (if-not-present, always or never)"),
                ));
            }
        };
        Ok(Task::Docker(Box::new(DockerTask {
            image,
            command: self.command.clone(),
            entrypoint: self.entrypoint.clone(),
            network: self.network.clone().unwrap_or_else(|| "none".to_owned()),
            user: self.user.clone(),
            mounts: self.mounts.clone(),
            pull,
        })))
    }
}

/// How a container field is named: `docker.image` in a file, its flag on the
/// command line (`--docker`, `--network`, `--mount`, ...).
fn docker_field(key: &str, naming: Naming) -> String {
    match naming {
        Naming::File => format!("docker.{key}"),
        Naming::Flags => match key {
            "image" => "--docker".to_owned(),
            "mounts" => "--mount".to_owned(),
            "command" => "ARGV (after --)".to_owned(),
            other => format!("--{other}"),
        },
    }
}

/// How field names are shown in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// As spec-file keys: `timeout`.
    File,
    /// As flags: `--timeout`.
    Flags,
}

impl Naming {
    fn field(self, key: &str) -> String {
        match self {
            Naming::File => key.to_owned(),
            // `archon submit` takes a program and its arguments after `--`, not as a flag.
            Naming::Flags if key == "argv" => "ARGV (after --)".to_owned(),
            Naming::Flags => format!("--{}", key.replace('_', "-")),
        }
    }
}

impl JobDraft {
    /// Validates and converts into a [`JobSpec`].
    pub fn into_spec(self, naming: Naming) -> Result<JobSpec, SpecError> {
        let f = |key: &str| naming.field(key);
        let err = |key: &str, msg: String| SpecError::new(f(key), msg);
        let task = self.task(naming)?;
        let name = self.name.clone().unwrap_or_else(|| default_name(&task));
        let mut spec = JobSpec::new(name, task);
        if let Some(t) = &self.timeout {
            spec.timeout = Some(parse_duration(t).map_err(|e| err("timeout", e.to_string()))?);
        }
        if let Some(n) = self.max_retries {
            spec.retry.max_retries = n;
        }
        if let Some(b) = &self.retry_backoff {
            spec.retry.backoff_base = parse_duration(b).map_err(|e| err("retry_backoff", e.to_string()))?;
            spec.retry.backoff_max = spec.retry.backoff_max.max(spec.retry.backoff_base);
        }
        if let Some(b) = &self.retry_backoff_max {
            spec.retry.backoff_max = parse_duration(b).map_err(|e| err("retry_backoff_max", e.to_string()))?;
        }
        let mut resources = Resources::default_request();
        if let Some(cpu) = &self.cpu {
            let text = match cpu {
                CpuDraft::Text(s) => s.clone(),
                CpuDraft::Cores(x) => x.to_string(),
            };
            resources.cpu_millis = parse_cpu(&text).map_err(|e| err("cpu", e.to_string()))?;
        }
        if let Some(m) = &self.memory {
            resources.memory_bytes = parse_bytes(m).map_err(|e| err("memory", e.to_string()))?;
        }
        if let Some(n) = self.bandwidth {
            resources.network_mbps = n;
        }
        resources.devices = self.devices.clone();
        spec.resources = resources;
        spec.env = self.env.clone();
        spec.secret_env = self.secret_env.clone();
        spec.working_dir = self.workdir.clone();
        for c in &self.constraints {
            spec.constraints.push(c.parse::<Constraint>().map_err(|e| err("constraint", e.message))?);
        }
        spec.priority = self.priority.unwrap_or(0);
        if let Some(p) = &self.placement {
            spec.placement = Some(match p.as_str() {
                "binpack" => PlacementPolicy::Binpack,
                "spread" => PlacementPolicy::Spread,
                other => return Err(err("placement", format!("{other:?} is not a policy (binpack or spread)"))),
            });
        }
        spec.idempotency_key = self.idempotency_key.clone();
        for d in &self.depends_on {
            spec.depends_on.push(d.parse::<JobId>().map_err(|e| err("depends_on", e.to_string()))?);
        }
        if let Some(r) = &self.retention {
            spec.retention = Some(parse_duration(r).map_err(|e| err("retention", e.to_string()))?);
        }
        spec.keep_last = self.keep_last;
        if let Some(l) = &self.output_limit {
            spec.output_limit = Some(parse_bytes(l).map_err(|e| err("output_limit", e.to_string()))?);
        }
        if let Some(o) = &self.on_disconnect {
            spec.on_disconnect = o.parse::<OnDisconnect>().map_err(|e| err("on_disconnect", e))?;
        }
        if let Some(schedule) = self.schedule.clone() {
            let now = archon_core::clock::Clock::now(&archon_core::clock::SystemClock);
            spec.schedule = Some(Box::new(schedule.into_schedule(naming, now)?));
        }
        spec.validate().map_err(|e| SpecError::new(self.rename(&e.field, naming), e.message))?;
        Ok(spec)
    }

    fn task(&self, naming: Naming) -> Result<Task, SpecError> {
        let given: Vec<&str> = [
            self.command.as_ref().map(|_| "command"),
            self.script.as_ref().map(|_| "script"),
            self.argv.as_ref().map(|_| "argv"),
            self.function.as_ref().map(|_| "function"),
            self.docker.as_ref().map(|_| "docker"),
            self.executor.as_ref().map(|_| "executor"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let keys = ["command", "script", "argv", "function", "docker", "executor"].map(|k| naming.field(k));
        let what = format!("give exactly one of {} or {}", keys[..5].join(", "), keys[5]);
        match given.as_slice() {
            [] => Err(SpecError::new(naming.field("command"), format!("no task: {what}"))),
            [_] => Ok(if let Some(docker) = &self.docker {
                docker.task(naming)?
            } else if let Some(command) = &self.command {
                Task::Shell { command: command.clone() }
            } else if let Some(body) = &self.script {
                Task::Script {
                    interpreter: self.interpreter.clone().unwrap_or_else(|| "sh".into()),
                    body: body.clone(),
                }
            } else if let Some(argv) = &self.argv {
                Task::Process { argv: argv.clone() }
            } else {
                let input = match &self.input {
                    None => "null".to_owned(),
                    Some(v) => serde_json::to_string(v)
                        .map_err(|e| SpecError::new(naming.field("input"), format!("cannot be sent as JSON: {e}")))?,
                };
                match &self.executor {
                    Some(executor) => Task::Custom { executor: executor.clone(), input },
                    None => Task::Function { name: self.function.clone().unwrap_or_default(), input },
                }
            }),
            many => {
                Err(SpecError::new(naming.field(many[1]), format!("conflicts with {}: {what}", naming.field(many[0]))))
            }
        }
    }

    /// Maps a spec path (`task.command`) back to what the user wrote.
    fn rename(&self, field: &str, naming: Naming) -> String {
        if let Some(key) = field.strip_prefix("task.")
            && self.docker.is_some()
        {
            return docker_field(key, naming);
        }
        let key = match field {
            "task.command" => "command",
            "task.body" => "script",
            "task.interpreter" => "interpreter",
            "task.argv" => "argv",
            "task.name" => "function",
            "task.executor" => "executor",
            "task.input" => "input",
            "retry.backoff" => "retry_backoff",
            "retry.backoff_max" => "retry_backoff_max",
            "retry.max_retries" => "max_retries",
            other => other,
        };
        naming.field(key)
    }
}

fn default_name(task: &Task) -> String {
    let name = match task {
        Task::Shell { command } => command.split_whitespace().next().unwrap_or("job").to_owned(),
        Task::Script { interpreter, .. } => format!("{interpreter}-script"),
        Task::Process { argv } => argv.first().map_or("job", |p| p.rsplit('/').next().unwrap_or(p)).to_owned(),
        Task::Docker(d) => d.image.clone(),
        Task::Function { name, .. } => name.clone(),
        Task::Custom { executor, .. } => executor.clone(),
    };
    if name.trim().is_empty() { "job".to_owned() } else { name }
}

/// A spec file: one job at the top level, or several under `[[jobs]]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SpecFile {
    Many { jobs: Vec<JobDraft> },
    One(Box<JobDraft>),
}

/// Parses spec-file text into job specs.
pub fn parse_spec_file(text: &str) -> Result<Vec<JobSpec>, String> {
    // Parse as a table first to give TOML syntax errors with their position.
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| format!("not valid TOML: {e}"))?;
    let drafts = if table.contains_key("jobs") {
        let file: SpecFile =
            toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| e.message().to_owned())?;
        match file {
            SpecFile::Many { jobs } => jobs,
            SpecFile::One(d) => vec![*d],
        }
    } else {
        let one: JobDraft =
            toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| e.message().to_owned())?;
        vec![one]
    };
    if drafts.is_empty() {
        return Err("jobs: the file defines no job".into());
    }
    let many = drafts.len() > 1;
    drafts
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            d.into_spec(Naming::File).map_err(|e| if many { format!("jobs[{i}].{e}") } else { e.to_string() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_spec_file_parses() {
        let specs = parse_spec_file(
            r#"
            name = "report"
            command = "echo hi"
            timeout = "30s"
            max_retries = 2
            retry_backoff = "2s"
            cpu = 0.5
            memory = "256MiB"
            env = { A = "1" }
            constraints = ["zone=a"]
            priority = 5
            "#,
        )
        .unwrap();
        let s = &specs[0];
        assert_eq!(s.name, "report");
        assert_eq!(s.task, Task::Shell { command: "echo hi".into() });
        assert_eq!(s.timeout, Some(std::time::Duration::from_secs(30)));
        assert_eq!(s.retry.max_retries, 2);
        assert_eq!(s.resources.cpu_millis, 500);
        assert_eq!(s.resources.memory_bytes, 256 << 20);
        assert_eq!(s.priority, 5);
    }

    #[test]
    fn a_custom_task_is_an_executor_with_its_input_and_a_bad_one_names_the_key() {
        let specs = parse_spec_file("executor = \"http\"\ninput = { url = \"http://example.test/\" }").unwrap();
        let input = r#"{"url":"http://example.test/"}"#.to_owned();
        assert_eq!(specs[0].task, Task::Custom { executor: "http".into(), input });
        assert_eq!(specs[0].name, "http", "named after its executor by default");
        let e = parse_spec_file("executor = \"two words\"").unwrap_err();
        assert!(e.starts_with("executor: \"two words\" is not an executor name"), "{e}");
        let e = parse_spec_file("executor = \"http\"\ncommand = \"x\"").unwrap_err();
        assert!(e.contains("conflicts with command") && e.contains("executor"), "{e}");
    }

    #[test]
    fn bad_values_name_the_field_and_the_form() {
        let e = parse_spec_file("command = \"x\"\ntimeout = \"5x\"").unwrap_err();
        assert_eq!(e, "timeout: \"5x\" is not a duration (try 30s, 5m, 1h30m, 250ms)");
        let e = parse_spec_file("command = \"x\"\nmemory = \"lots\"").unwrap_err();
        assert!(e.starts_with("memory: \"lots\" is not a size"), "{e}");
        let e = parse_spec_file("command = \"x\"\ntimeuot = \"5s\"").unwrap_err();
        assert!(e.contains("unknown field `timeuot`"), "{e}");
        let e = parse_spec_file("command = \"\"").unwrap_err();
        assert!(e.starts_with("command: must not be empty"), "{e}");
        let e = parse_spec_file("command = \"a\"\nargv = [\"b\"]").unwrap_err();
        assert!(e.contains("conflicts with command"), "{e}");
        let e = parse_spec_file("[[jobs]]\ncommand = \"a\"\n[[jobs]]\ncommand = \"b\"\ncpu = \"x\"").unwrap_err();
        assert!(e.starts_with("jobs[1].cpu:"), "{e}");
        let e = parse_spec_file("command = ").unwrap_err();
        assert!(e.starts_with("not valid TOML"), "{e}");
    }

    #[test]
    fn flags_are_named_as_flags() {
        let d = JobDraft { command: Some("x".into()), timeout: Some("soon".into()), ..JobDraft::default() };
        let e = d.into_spec(Naming::Flags).unwrap_err();
        assert_eq!(e.field, "--timeout");
        let d = JobDraft { command: Some(" ".into()), ..JobDraft::default() };
        assert_eq!(d.into_spec(Naming::Flags).unwrap_err().field, "--command");
    }

    #[test]
    fn a_container_job_parses_from_its_docker_table() {
        let specs = parse_spec_file(
            r#"
            name = "thumb"
            cpu = "500m"
            memory = "128MiB"
            bandwidth = 10
            [docker]
            image = "archon-test/busybox:1"
            command = ["sh", "-c", "echo hi"]
            entrypoint = []
            network = "bridge"
            user = "65534:65534"
            mounts = ["/srv/in:/in:ro"]
            pull = "never"
            "#,
        )
        .unwrap();
        let Task::Docker(d) = &specs[0].task else { panic!("{:?}", specs[0].task) };
        assert_eq!(d.image, "archon-test/busybox:1");
        assert_eq!(d.command, ["sh", "-c", "echo hi"]);
        assert_eq!(d.entrypoint, Some(vec![]));
        assert_eq!((d.network.as_str(), d.user.as_deref()), ("bridge", Some("65534:65534")));
        assert_eq!(d.mounts, ["/srv/in:/in:ro"]);
        assert_eq!(d.pull, PullPolicy::Never);
        assert_eq!((specs[0].resources.cpu_millis, specs[0].resources.network_mbps), (500, 10));
        let defaults = parse_spec_file("[docker]\nimage = \"busybox:1\"").unwrap();
        let Task::Docker(d) = &defaults[0].task else { panic!() };
        assert_eq!((d.network.as_str(), d.pull, d.command.len()), ("none", PullPolicy::IfNotPresent, 0));
        assert_eq!(defaults[0].name, "busybox:1");
    }

    #[test]
    fn bad_container_fields_are_named_in_files_and_as_flags() {
        let e = parse_spec_file("[docker]\nimage = \"b:1\"\npull = \"sometimes\"").unwrap_err();
        assert_eq!(e, "docker.pull: \"sometimes\" is not a pull policy (if-not-present, always or never)");
        let e = parse_spec_file("[docker]\ncommand = [\"true\"]").unwrap_err();
        assert!(e.starts_with("docker.image: is missing"), "{e}");
        let e = parse_spec_file("[docker]\nimage = \"b:1\"\nmounts = [\"data:/data\"]").unwrap_err();
        assert!(e.starts_with("docker.mounts: \"data:/data\" is not a bind mount"), "{e}");
        let e = parse_spec_file("[docker]\nimage = \"b:1\"\nnetwrok = \"none\"").unwrap_err();
        assert!(e.contains("unknown field `netwrok`"), "{e}");
        let e = parse_spec_file("command = \"x\"\n[docker]\nimage = \"b:1\"").unwrap_err();
        assert!(e.starts_with("docker: conflicts with command"), "{e}");
        let flags = |d: DockerDraft| JobDraft { docker: Some(d), ..JobDraft::default() }.into_spec(Naming::Flags);
        let e =
            flags(DockerDraft { image: Some("b:1".into()), network: Some("no ne".into()), ..DockerDraft::default() });
        assert_eq!(e.unwrap_err().field, "--network");
        let e = flags(DockerDraft { image: Some(" ".into()), ..DockerDraft::default() });
        assert_eq!(e.unwrap_err().field, "--docker");
        let e = flags(DockerDraft { image: Some("b:1".into()), mounts: vec!["x".into()], ..DockerDraft::default() });
        assert_eq!(e.unwrap_err().field, "--mount");
    }

    #[test]
    fn a_secret_env_table_parses_into_secret_values() {
        let specs = parse_spec_file(
            r#"
            command = "deploy"
            env = { REGION = "eu" }
            [secret_env]
            API_TOKEN = "s3cr3t-token"
            "#,
        )
        .unwrap();
        let s = &specs[0];
        assert_eq!(s.env["REGION"], "eu");
        assert_eq!(s.secret_env["API_TOKEN"].expose(), "s3cr3t-token");
        assert!(!format!("{s:?}").contains("s3cr3t-token"), "a spec's Debug hides the value");
        // The same in JSON, as the REST API takes it.
        let draft: JobDraft =
            serde_json::from_str(r#"{"command": "deploy", "secret_env": {"API_TOKEN": "s3cr3t-token"}}"#).unwrap();
        assert!(!format!("{draft:?}").contains("s3cr3t-token"), "a draft's Debug hides the value");
        assert_eq!(draft.into_spec(Naming::File).unwrap().secret_env["API_TOKEN"].expose(), "s3cr3t-token");
        let e = parse_spec_file("command = \"x\"\nenv = { K = \"a\" }\nsecret_env = { K = \"b\" }").unwrap_err();
        assert!(e.starts_with("secret_env: K is also in env"), "{e}");
        let d = JobDraft {
            command: Some("x".into()),
            env: BTreeMap::from([("K".into(), "a".into())]),
            secret_env: BTreeMap::from([("K".into(), Secret::new("b"))]),
            ..JobDraft::default()
        };
        assert_eq!(d.into_spec(Naming::Flags).unwrap_err().field, "--secret-env");
    }

    #[test]
    fn on_disconnect_is_read_from_a_file_and_refused_naming_the_key_or_flag() {
        let specs = parse_spec_file("command = \"x\"\non_disconnect = \"keep\"").unwrap();
        assert_eq!(specs[0].on_disconnect, OnDisconnect::Keep);
        let specs = parse_spec_file("command = \"x\"").unwrap();
        assert_eq!(specs[0].on_disconnect, OnDisconnect::Kill, "kill when not given");
        let e = parse_spec_file("command = \"x\"\non_disconnect = \"linger\"").unwrap_err();
        assert_eq!(e, "on_disconnect: \"linger\" is not an on-disconnect choice (use kill or keep)");
        let e = parse_spec_file("command = \"x\"\non_disconnect = true").unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
        let d = JobDraft { command: Some("x".into()), on_disconnect: Some("stay".into()), ..JobDraft::default() };
        assert_eq!(d.into_spec(Naming::Flags).unwrap_err().field, "--on-disconnect");
    }

    #[test]
    fn several_jobs_in_one_file() {
        let specs = parse_spec_file("[[jobs]]\ncommand = \"a\"\n[[jobs]]\nargv = [\"/bin/echo\", \"b c\"]").unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].task, Task::Process { argv: vec!["/bin/echo".into(), "b c".into()] });
    }

    #[test]
    fn the_shipped_example_specs_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/specs");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                match read_any_spec_file(&path).unwrap_or_else(|e| panic!("{e}")) {
                    SpecFileContent::Jobs(specs) => assert!(!specs.is_empty()),
                    SpecFileContent::Workflow(w) => assert!(!w.nodes.is_empty()),
                }
                seen += 1;
            }
        }
        assert!(seen >= 2, "expected example specs in {}", dir.display());
    }
}
