//! What a job runs. Each task kind is served by an executor on the worker; a worker
//! advertises the kinds it can run as capabilities (`shell`, `docker`,
//! `function:resize`, `custom:http`), and placement only considers workers that
//! can run the task. [`Task::Custom`] is the open end: a kind this crate does not
//! know, run by an executor an embedder registers for it.

use serde::{Deserialize, Serialize};

/// The work a job does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Task {
    /// A command line run by `sh -c`.
    Shell {
        /// The command line.
        command: String,
    },
    /// An inline script body run by an interpreter (written to a private temp file).
    Script {
        /// The interpreter, e.g. `bash` or `python3`.
        interpreter: String,
        /// The script's text.
        body: String,
    },
    /// A program run directly from its argv, no shell involved.
    Process {
        /// Program and arguments.
        argv: Vec<String>,
    },
    /// A container run on the worker's Docker engine (boxed: rare, and large).
    Docker(Box<DockerTask>),
    /// A Rust function registered by name on the worker, with JSON input.
    Function {
        /// The registered name.
        name: String,
        /// The input, as JSON text.
        #[serde(default = "empty_json")]
        input: String,
    },
    /// A task of a kind of the embedder's own (an HTTP request, a query, …), run
    /// by the executor registered for `executor` on the worker (capability
    /// `custom:EXECUTOR`), which reads `input`.
    Custom {
        /// The kind's name, as its executor advertises it: letters, digits, `-`, `_`.
        executor: String,
        /// What to do, as JSON text the executor reads.
        #[serde(default = "empty_json")]
        input: String,
    },
}

fn empty_json() -> String {
    "null".to_owned()
}

/// A container task.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DockerTask {
    /// Image reference, e.g. `archon-test/busybox:1`.
    pub image: String,
    /// Command (overrides the image's CMD); empty keeps the image's.
    #[serde(default)]
    pub command: Vec<String>,
    /// Entrypoint override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Network mode: `none`, `bridge` or a named network.
    #[serde(default = "default_network")]
    pub network: String,
    /// User to run as inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Bind mounts `host:container[:ro]` (opt-in on the worker).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<String>,
    /// When to pull the image.
    #[serde(default)]
    pub pull: PullPolicy,
}

fn default_network() -> String {
    "none".to_owned()
}

/// When a worker pulls a container image.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Use the local image; pull only when it is missing.
    #[default]
    IfNotPresent,
    /// Always pull before running.
    Always,
    /// Never pull; fail when the image is missing.
    Never,
}

/// The kind of a task, without its details.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// [`Task::Shell`]
    Shell,
    /// [`Task::Script`]
    Script,
    /// [`Task::Process`]
    Process,
    /// [`Task::Docker`]
    Docker,
    /// [`Task::Function`]
    Function,
    /// [`Task::Custom`]
    Custom,
}

impl TaskKind {
    /// The name used in capabilities, specs and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Shell => "shell",
            TaskKind::Script => "script",
            TaskKind::Process => "process",
            TaskKind::Docker => "docker",
            TaskKind::Function => "function",
            TaskKind::Custom => "custom",
        }
    }

    /// Every kind, in declaration order.
    pub const ALL: [TaskKind; 6] =
        [TaskKind::Shell, TaskKind::Script, TaskKind::Process, TaskKind::Docker, TaskKind::Function, TaskKind::Custom];
}

impl std::fmt::Display for TaskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TaskKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase();
        TaskKind::ALL.into_iter().find(|k| k.as_str() == norm).ok_or_else(|| {
            let names: Vec<_> = TaskKind::ALL.iter().map(|k| k.as_str()).collect();
            format!("{s:?} is not a task kind (one of {})", names.join(", "))
        })
    }
}

impl Task {
    /// This task's kind.
    pub fn kind(&self) -> TaskKind {
        match self {
            Task::Shell { .. } => TaskKind::Shell,
            Task::Script { .. } => TaskKind::Script,
            Task::Process { .. } => TaskKind::Process,
            Task::Docker(_) => TaskKind::Docker,
            Task::Function { .. } => TaskKind::Function,
            Task::Custom { .. } => TaskKind::Custom,
        }
    }

    /// The capability a worker must advertise to run this task: the kind's name,
    /// `function:NAME` for a registered function, `custom:EXECUTOR` for a custom kind.
    pub fn capability(&self) -> String {
        match self {
            Task::Function { name, .. } => function_capability(name),
            Task::Custom { executor, .. } => custom_capability(executor),
            other => other.kind().as_str().to_owned(),
        }
    }

    /// Whether a worker advertising `capabilities` can run this task (the same test
    /// as `capabilities.contains(&self.capability())`, without allocating).
    pub fn runs_on(&self, capabilities: &std::collections::BTreeSet<String>) -> bool {
        match self {
            Task::Function { name, .. } => {
                capabilities.iter().any(|c| c.strip_prefix("function:") == Some(name.as_str()))
            }
            Task::Custom { executor, .. } => {
                capabilities.iter().any(|c| c.strip_prefix("custom:") == Some(executor.as_str()))
            }
            other => capabilities.contains(other.kind().as_str()),
        }
    }

    /// The bytes of text the task carries (command, script, argv, input, the
    /// container's fields): what the manager's `max_task_bytes` limit counts.
    pub fn size(&self) -> usize {
        match self {
            Task::Shell { command } => command.len(),
            Task::Script { interpreter, body } => interpreter.len() + body.len(),
            Task::Process { argv } => argv.iter().map(String::len).sum(),
            Task::Docker(d) => {
                let list = |l: &[String]| l.iter().map(String::len).sum::<usize>();
                d.image.len()
                    + list(&d.command)
                    + d.entrypoint.as_deref().map_or(0, list)
                    + d.network.len()
                    + d.user.as_ref().map_or(0, String::len)
                    + list(&d.mounts)
            }
            Task::Function { name, input } => name.len() + input.len(),
            Task::Custom { executor, input } => executor.len() + input.len(),
        }
    }

    /// The first field holding a NUL byte, which no process can take (and which
    /// PostgreSQL's jsonb refuses), as a spec path.
    pub fn nul_field(&self) -> Option<&'static str> {
        let nul = |s: &str| s.contains('\0');
        let any = |l: &[String]| l.iter().any(|s| nul(s));
        match self {
            Task::Shell { command } => nul(command).then_some("task.command"),
            Task::Script { interpreter, body } => {
                if nul(interpreter) {
                    Some("task.interpreter")
                } else {
                    nul(body).then_some("task.body")
                }
            }
            Task::Process { argv } => any(argv).then_some("task.argv"),
            Task::Docker(d) => {
                if any(&d.command) {
                    Some("task.command")
                } else if d.entrypoint.as_deref().is_some_and(any) {
                    Some("task.entrypoint")
                } else if nul(&d.image) {
                    Some("task.image")
                } else if d.user.as_deref().is_some_and(nul) {
                    Some("task.user")
                } else {
                    any(&d.mounts).then_some("task.mounts")
                }
            }
            Task::Function { name, input } => {
                if nul(name) {
                    Some("task.name")
                } else {
                    nul(input).then_some("task.input")
                }
            }
            Task::Custom { executor, input } => {
                if nul(executor) {
                    Some("task.executor")
                } else {
                    nul(input).then_some("task.input")
                }
            }
        }
    }

    /// A one-line description for tables.
    pub fn summary(&self) -> String {
        match self {
            Task::Shell { command } => command.clone(),
            Task::Script { interpreter, body } => {
                format!("{interpreter} script ({} lines)", body.lines().count())
            }
            Task::Process { argv } => argv.join(" "),
            Task::Docker(d) => format!("docker {} {}", d.image, d.command.join(" ")).trim_end().to_owned(),
            Task::Function { name, .. } => format!("fn {name}"),
            Task::Custom { executor, input } => format!("{executor} {input}"),
        }
    }
}

/// The capability string for a registered function.
pub fn function_capability(name: &str) -> String {
    format!("function:{name}")
}

/// The capability string for a custom task kind's executor.
pub fn custom_capability(executor: &str) -> String {
    format!("custom:{executor}")
}

#[cfg(test)]
mod tests {
    use super::TaskKind;

    #[test]
    fn task_kinds_parse_from_the_names_they_print_and_refuse_others_listing_them() {
        for kind in TaskKind::ALL {
            assert_eq!(kind.to_string().parse::<TaskKind>(), Ok(kind));
            assert_eq!(serde_json::to_value(kind).ok(), Some(serde_json::Value::from(kind.as_str())));
        }
        assert_eq!(" Docker ".parse::<TaskKind>(), Ok(TaskKind::Docker));
        let err = "workflow".parse::<TaskKind>().unwrap_err();
        assert_eq!(err, r#""workflow" is not a task kind (one of shell, script, process, docker, function, custom)"#);
    }
}
