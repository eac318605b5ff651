//! Why an attempt could not run. Every [`ExecError`] ends the attempt as
//! [`ExitStatus::Failed`] with the error's text as the reason, so the text names
//! the offending value and, where it helps, what to do instead.

use archon_core::model::{ExitStatus, TaskKind};

/// An attempt that could not run, or could not be watched to its end.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The executor was handed a task of a kind it does not serve.
    #[error("the {executor} executor cannot run a {task} task")]
    WrongKind {
        /// The executor's kind.
        executor: TaskKind,
        /// The task's kind.
        task: TaskKind,
    },
    /// A process task with an empty argv.
    #[error("task.argv is empty: name a program (e.g. [\"/bin/echo\", \"hi\"])")]
    EmptyArgv,
    /// The job's working directory is missing or not a directory.
    #[error("working directory {dir:?} {problem}")]
    WorkingDir {
        /// The directory from the job spec.
        dir: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Waiting for the program failed.
    #[error("cannot wait for {program}: {source}")]
    Wait {
        /// The program.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The script body could not be written to a temporary file.
    #[error("cannot write the script to a temporary file: {0}")]
    ScriptFile(String),
    /// No function of that name is registered.
    #[error("no function named {name:?} is registered on this worker (registered: {registered})")]
    UnknownFunction {
        /// The requested name.
        name: String,
        /// The registered names, comma-separated, or `none`.
        registered: String,
    },
    /// A function's input is not JSON.
    #[error("task.input of function {name:?} is not JSON text: {source}")]
    BadInput {
        /// The function.
        name: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A function's output could not be serialised.
    #[error("the output of function {name:?} cannot be written as JSON: {source}")]
    BadOutput {
        /// The function.
        name: String,
        /// The serialisation error.
        source: serde_json::Error,
    },
    /// The Docker engine did not answer, or stopped answering.
    #[error("the Docker engine at {engine} is unreachable: {message}")]
    DockerUnreachable {
        /// The engine's socket.
        engine: String,
        /// What went wrong.
        message: String,
    },
    /// The image is not on the worker and the pull policy forbids pulling it.
    #[error(
        "image {image:?} not found locally and the pull policy is never (load it on the worker with `docker load`, or set pull = \"if-not-present\")"
    )]
    ImageMissing {
        /// The image.
        image: String,
    },
    /// The image could not be pulled.
    #[error("{}", pull_failed(image, *always, message))]
    PullFailed {
        /// The image.
        image: String,
        /// Whether the pull was for the policy `always` (not a missing image).
        always: bool,
        /// The engine's error.
        message: String,
    },
    /// The job asks for bind mounts on a worker that does not allow them.
    #[error(
        "task.mounts ({mounts}) needs bind mounts, which this worker does not allow (start it with --docker-allow-mounts)"
    )]
    MountsDisabled {
        /// The mounts asked for.
        mounts: String,
    },
    /// The engine refused to create the container.
    #[error("cannot create a container of {image:?}: {message}")]
    ContainerCreate {
        /// The image.
        image: String,
        /// The engine's error.
        message: String,
    },
    /// The engine refused to start the container.
    #[error("cannot start the container of {image:?}: {message}")]
    ContainerStart {
        /// The image.
        image: String,
        /// The engine's error.
        message: String,
    },
    /// A function panicked.
    #[error("function {name:?} panicked: {message}")]
    Panicked {
        /// The function.
        name: String,
        /// The panic message, if it had one.
        message: String,
    },
}

/// The text of [`ExecError::PullFailed`].
fn pull_failed(image: &str, always: bool, message: &str) -> String {
    if always {
        format!("pull of image {image:?} failed (pull policy always): {message}")
    } else {
        format!(
            "image {image:?} not found locally and pull failed: {message} (on a worker without registry access, load it with `docker load`)"
        )
    }
}

impl ExecError {
    /// The attempt status this error ends in.
    pub(crate) fn into_status(self) -> ExitStatus {
        ExitStatus::Failed { reason: self.to_string() }
    }
}
