//! The process machinery shared by the shell, script and process executors: spawn
//! a child in its own process group, stream its stdout and stderr, enforce the
//! timeout and cancellation, and return how it ended.
//!
//! The one thing to know: signals always go to the child's whole process group.
//! A timeout or cancel sends SIGTERM, then SIGKILL after the grace period (sooner
//! if the main child exited and the output pipes closed). When the main child exits
//! by itself the group is SIGKILLed at once, so no background grandchild outlives
//! its attempt. A process that left the group (`setsid`) is not killed, and its
//! hold on the pipes is not waited for beyond [`PIPE_DRAIN_LIMIT`].
//!
//! Every attempt that started reports its usage (see [`crate::usage`] for where
//! the figures come from): the main child is measured after it exits and before
//! it is reaped.

use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use archon_core::executor::ExecContext;
use archon_core::model::{AttemptResult, ExitStatus, OutputStream};
use bytes::Bytes;
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use crate::error::ExecError;
use crate::ledger::ProcessLedger;
use crate::usage::TreeMeter;

/// How long a process group gets between SIGTERM and SIGKILL, by default.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(1);

/// The most read from a pipe at a time.
const CHUNK_SIZE: usize = 64 * 1024;

/// A pipe's first read buffer; it grows towards [`CHUNK_SIZE`] when reads fill it,
/// so quiet jobs (most of them) do not pay for two 64 KiB buffers each.
const FIRST_CHUNK_SIZE: usize = 4 * 1024;

/// How long output is still read after the main child exited and its group was
/// killed: only a process that left the group can hold the pipes open that long.
const PIPE_DRAIN_LIMIT: Duration = Duration::from_millis(250);

/// A program and its arguments.
#[derive(Debug, Clone)]
pub(crate) struct Invocation<'a> {
    /// The program: a path, or a name looked up in `PATH`.
    pub(crate) program: &'a str,
    /// Its arguments.
    pub(crate) args: Vec<&'a OsStr>,
}

/// Runs programs as attempts: one child per attempt, in its own process group.
#[derive(Debug, Clone)]
pub(crate) struct ChildRunner {
    /// Time between SIGTERM and SIGKILL on timeout or cancel.
    pub(crate) kill_grace: Duration,
    /// Where running attempts' process groups are noted, if anywhere.
    pub(crate) ledger: Option<Arc<ProcessLedger>>,
}

impl Default for ChildRunner {
    fn default() -> Self {
        ChildRunner { kill_grace: DEFAULT_KILL_GRACE, ledger: None }
    }
}

impl ChildRunner {
    /// Runs `program args...` with the job's env (secret_env too) and working directory until it ends,
    /// times out or is cancelled.
    pub(crate) async fn run<I, S>(&self, program: &str, args: I, ctx: ExecContext) -> AttemptResult
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<S> = args.into_iter().collect();
        let program = Invocation { program, args: args.iter().map(AsRef::as_ref).collect() };
        self.run_or(program, None, ctx).await
    }

    /// Runs `program`, or `fallback` when `program` cannot be spawned (a program
    /// that is not there, not executable, or fails to exec for any other reason):
    /// the fallback is then what runs and reports, as if it had been asked for.
    pub(crate) async fn run_or(
        &self,
        program: Invocation<'_>,
        fallback: Option<Invocation<'_>>,
        ctx: ExecContext,
    ) -> AttemptResult {
        let ExecContext { spec, mut output, cancel, attempt, job, run } = ctx;
        if cancel.is_cancelled() {
            return output.finish(ExitStatus::Cancelled);
        }
        if let Some(dir) = &spec.working_dir
            && let Err(e) = check_working_dir(dir).await
        {
            return output.finish(e.into_status());
        }
        let command = |invocation: &Invocation<'_>| {
            let mut command = Command::new(invocation.program);
            command
                .args(&invocation.args)
                .envs(spec.environment())
                .env("ARCHON_JOB_ID", job.to_string())
                .env("ARCHON_RUN_ID", run.to_string())
                .env("ARCHON_ATTEMPT_ID", attempt.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .kill_on_drop(true);
            if let Some(dir) = &spec.working_dir {
                command.current_dir(dir);
            }
            command
        };
        // Registered before the spawn, so the child's exit cannot slip past it.
        let mut sigchld = signal(SignalKind::child())
            .inspect_err(|e| tracing::debug!(error = %e, "no SIGCHLD stream; CPU time will not be measured"))
            .ok();
        // Noted before the spawn (and named after it), so a worker restarted after
        // a crash, or the lease keeper of a frozen one, can kill it.
        let noted = match &self.ledger {
            Some(ledger) => ledger
                .spawning(attempt, spec.on_disconnect == archon_core::model::OnDisconnect::Keep)
                .inspect_err(|e| tracing::warn!(%attempt, error = %e, "cannot note the process group in the ledger"))
                .ok(),
            None => None,
        };
        let started = Instant::now();
        let (program, spawned) = match command(&program).spawn() {
            Ok(child) => (program.program, Ok(child)),
            Err(first) => match &fallback {
                Some(fallback) => {
                    tracing::debug!(program = program.program, error = %first, "cannot spawn; running the fallback");
                    (fallback.program, command(fallback).spawn())
                }
                None => (program.program, Err(first)),
            },
        };
        let mut child = match spawned {
            Ok(child) => child,
            Err(source) => {
                return output.finish(ExecError::Spawn { program: program.to_owned(), source }.into_status());
            }
        };
        output.spawned();
        let mut meter = child.id().and_then(|pid| TreeMeter::new(pid, started));
        // With `process_group(0)` the child leads a new group whose id is its pid.
        let mut group = ProcessGroup::new(child.id());
        if let (Some(entry), Some(pgid)) = (&noted, child.id())
            && let Err(e) = entry.spawned(pgid)
        {
            tracing::warn!(%attempt, error = %e, "cannot note the process group in the ledger");
        }
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let mut stdout_buf = vec![0; FIRST_CHUNK_SIZE];
        let mut stderr_buf = vec![0; FIRST_CHUNK_SIZE];

        let deadline = spec.timeout.map(|t| Instant::now() + t);
        let mut ending: Option<ExitStatus> = None;
        let mut sigkill_at: Option<Instant> = None;
        let mut drain_until: Option<Instant> = None;
        let mut exit: Option<std::io::Result<std::process::ExitStatus>> = None;

        loop {
            if exit.is_some() && stdout.is_none() && stderr.is_none() {
                break;
            }
            tokio::select! {
                chunk = read_chunk(&mut stdout, &mut stdout_buf), if stdout.is_some() => {
                    if let Some(data) = chunk {
                        output.write(OutputStream::Stdout, data).await;
                    }
                }
                chunk = read_chunk(&mut stderr, &mut stderr_buf), if stderr.is_some() => {
                    if let Some(data) = chunk {
                        output.write(OutputStream::Stderr, data).await;
                    }
                }
                status = wait_measured(&mut child, meter.as_mut(), sigchld.as_mut()), if exit.is_none() => {
                    exit = Some(status);
                    // After a normal exit nothing the main child left in its group may
                    // stay. While terminating, the rest of the group keeps its grace:
                    // it ends when the pipes close or at `sigkill_at`.
                    if ending.is_none() || sigkill_at.is_none() {
                        group.kill();
                        drain_until = Some(Instant::now() + PIPE_DRAIN_LIMIT);
                    }
                }
                () = sleep_until(deadline), if ending.is_none() && exit.is_none() => {
                    tracing::debug!(program, "timeout expired; terminating the process group");
                    ending = Some(ExitStatus::TimedOut);
                    group.signal(Signal::SIGTERM);
                    sigkill_at = Some(Instant::now() + self.kill_grace);
                }
                () = cancel.cancelled(), if ending.is_none() && exit.is_none() => {
                    tracing::debug!(program, "cancelled; terminating the process group");
                    ending = Some(ExitStatus::Cancelled);
                    group.signal(Signal::SIGTERM);
                    sigkill_at = Some(Instant::now() + self.kill_grace);
                }
                () = sleep_until(sigkill_at) => {
                    tracing::debug!(program, "grace period over; killing the process group");
                    group.kill();
                    sigkill_at = None;
                    if exit.is_some() {
                        drain_until = Some(Instant::now() + PIPE_DRAIN_LIMIT);
                    }
                }
                () = sleep_until(drain_until) => {
                    tracing::debug!(program, "output pipes still open after exit; a process left the group");
                    break;
                }
            }
        }
        group.kill();

        let status = match (ending, exit) {
            (Some(ending), _) => ending,
            (None, Some(Ok(status))) => exit_status(status),
            (None, Some(Err(source))) => ExecError::Wait { program: program.to_owned(), source }.into_status(),
            // The loop only ends once the child has been waited for.
            (None, None) => ExitStatus::Failed { reason: format!("{program} ended without an exit status") },
        };
        let mut result = output.finish(status);
        result.usage = meter.map(|m| m.finish());
        result
    }
}

/// Waits for the main child to exit, sampling its tree's memory meanwhile; once
/// it has exited, measures it (see [`TreeMeter::exited`]) and then reaps it.
/// Cancel safe: what was measured stays in `meter`.
async fn wait_measured(
    child: &mut Child,
    meter: Option<&mut TreeMeter>,
    sigchld: Option<&mut tokio::signal::unix::Signal>,
) -> std::io::Result<std::process::ExitStatus> {
    let Some(meter) = meter else { return child.wait().await };
    match sigchld {
        Some(sigchld) => {
            while !meter.exited() {
                tokio::select! {
                    _ = sigchld.recv() => {}
                    () = tokio::time::sleep_until(meter.next_sample()) => meter.sample(),
                }
            }
        }
        // Without SIGCHLD the child is reaped unmeasured: memory and wall time only.
        None => loop {
            tokio::select! {
                status = child.wait() => return status,
                () = tokio::time::sleep_until(meter.next_sample()) => meter.sample(),
            }
        },
    }
    child.wait().await
}

/// Checks that `dir` exists and is a directory, so the error can say so (a failed
/// `chdir` would otherwise read like a missing program).
async fn check_working_dir(dir: &str) -> Result<(), ExecError> {
    let problem = match tokio::fs::metadata(dir).await {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => "is not a directory".to_owned(),
        Err(e) => format!("cannot be used: {e}"),
    };
    Err(ExecError::WorkingDir { dir: dir.to_owned(), problem })
}

/// Reads the next chunk of `pipe` through `buf`; at end of file (or on a read
/// error) closes the pipe and returns `None`. Cancel safe. The chunk is copied out
/// at its exact size, so a small chunk held downstream does not pin `buf`'s size;
/// a read that fills `buf` grows it (up to [`CHUNK_SIZE`]) for the next one.
async fn read_chunk<R: AsyncRead + Unpin>(pipe: &mut Option<R>, buf: &mut Vec<u8>) -> Option<Bytes> {
    let reader = pipe.as_mut()?;
    match reader.read(buf).await {
        Ok(0) => {
            *pipe = None;
            None
        }
        Ok(n) => {
            let chunk = Bytes::copy_from_slice(&buf[..n]);
            if n == buf.len() && buf.len() < CHUNK_SIZE {
                buf.resize((buf.len() * 4).min(CHUNK_SIZE), 0);
            }
            Some(chunk)
        }
        Err(e) => {
            tracing::debug!(error = %e, "reading child output failed; closing the pipe");
            *pipe = None;
            None
        }
    }
}

/// Sleeps until `at`, or forever when there is no `at`.
pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Maps a process exit to an attempt status.
fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus::Exited { code },
        (None, Some(signal)) => ExitStatus::Signaled { signal },
        (None, None) => ExitStatus::Failed { reason: format!("unrecognised process status {status}") },
    }
}

/// The child's process group. Dropping it SIGKILLs the group unless it was already
/// killed, so an attempt whose future is dropped leaves nothing behind.
struct ProcessGroup {
    id: Option<Pid>,
}

impl ProcessGroup {
    fn new(child_pid: Option<u32>) -> ProcessGroup {
        ProcessGroup { id: child_pid.and_then(|pid| i32::try_from(pid).ok()).map(Pid::from_raw) }
    }

    /// Sends `signal` to every process of the group.
    fn signal(&self, signal: Signal) {
        let Some(id) = self.id else { return };
        match killpg(id, signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => tracing::warn!(group = id.as_raw(), ?signal, error = %e, "cannot signal the process group"),
        }
    }

    /// SIGKILLs the group; after this nothing in it survives, so the drop does nothing.
    fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        self.id = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}
