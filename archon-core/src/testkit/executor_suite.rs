//! The executor conformance suite: every [`Executor`] runs [`run_all`] with a
//! [`SuiteTasks`] that says how to express each behaviour (print, exit, sleep) in
//! its own task kind. A failed check panics with the check's name, so the suite
//! is called from a `#[tokio::test]`.
//!
//! ```ignore
//! #[tokio::test]
//! async fn shell_executor_conforms() {
//!     run_all(Arc::new(ShellExecutor::new()), &ShellTasks).await;
//! }
//! ```

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::executor::{DEFAULT_TAIL_LIMIT, ExecContext, Executor, OutputSink, OutputWriter};
use crate::model::{AttemptId, AttemptResult, ExitStatus, JobId, JobSpec, OutputChunk, OutputStream, RunId, Task};

/// How the suite expresses each behaviour it checks as a task of the executor's kind.
pub trait SuiteTasks: Send + Sync {
    /// Writes `text` to stdout (possibly with decoration, e.g. JSON quotes) and succeeds.
    fn print(&self, text: &str) -> Task;
    /// Writes `text` to stderr, and nothing of it to stdout (the exit code is not checked).
    fn print_stderr(&self, text: &str) -> Task;
    /// Exits with `code`; called only with codes from [`SuiteTasks::exit_codes`].
    fn exit_with(&self, code: i32) -> Task;
    /// Runs for `secs` seconds, then succeeds.
    fn sleep(&self, secs: u64) -> Task;
    /// Writes at least `n` bytes to stdout and succeeds.
    fn print_bytes(&self, n: usize) -> Task;
    /// The nonzero exit codes the task kind can express; the suite checks each one
    /// propagates. Processes can express any; a function only 1.
    fn exit_codes(&self) -> Vec<i32> {
        vec![1, 42]
    }
}

/// The run, attempt and job ids of contexts built by [`context`].
pub const SUITE_JOB: JobId = JobId(7);
/// See [`SUITE_JOB`].
pub const SUITE_RUN: RunId = RunId(70);
/// See [`SUITE_JOB`].
pub const SUITE_ATTEMPT: AttemptId = AttemptId(700);

/// How long any single attempt may take before the suite calls the executor hung.
const HANG_LIMIT: Duration = Duration::from_secs(30);

/// Builds the context of one attempt of `spec` keeping `limit` bytes per stream and
/// forwarding live output to `sink`; the token cancels the attempt.
pub fn context(spec: JobSpec, limit: usize, sink: Option<Arc<dyn OutputSink>>) -> (ExecContext, CancellationToken) {
    let cancel = CancellationToken::new();
    let ctx = ExecContext {
        job: SUITE_JOB,
        run: SUITE_RUN,
        attempt: SUITE_ATTEMPT,
        spec: Arc::new(spec),
        output: OutputWriter::new(SUITE_RUN, SUITE_ATTEMPT, limit, sink),
        cancel: cancel.clone(),
    };
    (ctx, cancel)
}

/// An [`OutputSink`] that keeps every chunk it is sent.
#[derive(Debug, Default)]
pub struct CollectingSink {
    chunks: Mutex<Vec<OutputChunk>>,
}

impl CollectingSink {
    /// An empty sink.
    pub fn new() -> CollectingSink {
        CollectingSink::default()
    }

    /// The chunks received so far, in order.
    pub fn chunks(&self) -> Vec<OutputChunk> {
        self.chunks.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The concatenation of the chunks of `stream` received so far.
    pub fn bytes(&self, stream: OutputStream) -> Vec<u8> {
        let chunks = self.chunks.lock().unwrap_or_else(PoisonError::into_inner);
        chunks.iter().filter(|c| c.stream == stream).flat_map(|c| c.data.iter().copied()).collect()
    }
}

#[async_trait]
impl OutputSink for CollectingSink {
    async fn send(&self, chunk: OutputChunk) {
        self.chunks.lock().unwrap_or_else(PoisonError::into_inner).push(chunk);
    }
}

/// Runs every check against `executor`, panicking with the check's name on the
/// first failure.
pub async fn run_all(executor: Arc<dyn Executor>, tasks: &dyn SuiteTasks) {
    let executor = executor.as_ref();
    stdout_is_captured_and_exit_zero_succeeds(executor, tasks).await;
    nonzero_exit_codes_propagate(executor, tasks).await;
    stderr_is_captured_apart_from_stdout(executor, tasks).await;
    timeout_ends_the_attempt_as_timed_out(executor, tasks).await;
    cancel_ends_the_attempt_as_cancelled(executor, tasks).await;
    output_beyond_the_limit_keeps_the_tail(executor, tasks).await;
    live_chunks_reach_the_sink(executor, tasks).await;
    a_task_of_another_kind_fails_cleanly(executor).await;
}

/// Runs `spec` to its end, panicking if the executor hangs.
async fn run(check: &str, executor: &dyn Executor, spec: JobSpec, limit: usize) -> AttemptResult {
    let (ctx, _cancel) = context(spec, limit, None);
    finish(check, executor.execute(ctx)).await
}

async fn finish(check: &str, attempt: impl Future<Output = AttemptResult>) -> AttemptResult {
    match tokio::time::timeout(HANG_LIMIT, attempt).await {
        Ok(result) => result,
        Err(_) => panic!("[{check}] the attempt did not end within {HANG_LIMIT:?}"),
    }
}

fn spec(check: &str, task: Task) -> JobSpec {
    JobSpec::new(format!("suite-{check}"), task)
}

async fn stdout_is_captured_and_exit_zero_succeeds(executor: &dyn Executor, tasks: &dyn SuiteTasks) {
    let check = "stdout_is_captured_and_exit_zero_succeeds";
    let text = "hello from the executor suite";
    let r = run(check, executor, spec(check, tasks.print(text)), DEFAULT_TAIL_LIMIT).await;
    assert_eq!(r.status, ExitStatus::Exited { code: 0 }, "[{check}] status; stderr: {}", r.stderr.text());
    assert!(r.status.is_success(), "[{check}] exit 0 must count as success");
    assert!(r.stdout.text().contains(text), "[{check}] stdout {:?} does not contain {text:?}", r.stdout.text());
    assert!(!r.stderr.text().contains(text), "[{check}] the text leaked to stderr: {:?}", r.stderr.text());
    assert_eq!(r.stdout.truncated, 0, "[{check}] nothing should be truncated");
}

async fn nonzero_exit_codes_propagate(executor: &dyn Executor, tasks: &dyn SuiteTasks) {
    let check = "nonzero_exit_codes_propagate";
    let codes = tasks.exit_codes();
    assert!(codes.iter().any(|&c| c != 0), "[{check}] SuiteTasks::exit_codes must name a nonzero code");
    for code in codes.into_iter().filter(|&c| c != 0) {
        let r = run(check, executor, spec(check, tasks.exit_with(code)), DEFAULT_TAIL_LIMIT).await;
        assert_eq!(r.status, ExitStatus::Exited { code }, "[{check}] exit {code}; stderr: {}", r.stderr.text());
        assert!(!r.status.is_success(), "[{check}] exit {code} must not count as success");
    }
}

async fn stderr_is_captured_apart_from_stdout(executor: &dyn Executor, tasks: &dyn SuiteTasks) {
    let check = "stderr_is_captured_apart_from_stdout";
    let text = "complaint from the executor suite";
    let r = run(check, executor, spec(check, tasks.print_stderr(text)), DEFAULT_TAIL_LIMIT).await;
    assert!(
        matches!(r.status, ExitStatus::Exited { .. }),
        "[{check}] the task should run to an exit, got {:?}",
        r.status
    );
    assert!(r.stderr.text().contains(text), "[{check}] stderr {:?} does not contain {text:?}", r.stderr.text());
    assert!(!r.stdout.text().contains(text), "[{check}] the text leaked to stdout: {:?}", r.stdout.text());
}

async fn timeout_ends_the_attempt_as_timed_out(executor: &dyn Executor, tasks: &dyn SuiteTasks) {
    let check = "timeout_ends_the_attempt_as_timed_out";
    let timeout = Duration::from_secs(1);
    // Sleeps past HANG_LIMIT: only the timeout can end it in time. How soon after
    // the timeout it ends is a benchmark's question, not a check's.
    let mut job = spec(check, tasks.sleep(60));
    job.timeout = Some(timeout);
    let started = Instant::now();
    let r = run(check, executor, job, DEFAULT_TAIL_LIMIT).await;
    let took = started.elapsed();
    assert_eq!(r.status, ExitStatus::TimedOut, "[{check}] status; stderr: {}", r.stderr.text());
    assert!(took >= timeout, "[{check}] ended after {took:?}, before the {timeout:?} timeout");
}

async fn cancel_ends_the_attempt_as_cancelled(executor: &dyn Executor, tasks: &dyn SuiteTasks) {
    let check = "cancel_ends_the_attempt_as_cancelled";
    let (ctx, cancel) = context(spec(check, tasks.sleep(60)), DEFAULT_TAIL_LIMIT, None);
    let attempt = executor.execute(ctx);
    let canceller = async {
        // A moment in, so the cancel usually lands while the task runs (one landing
        // before it starts must end it as cancelled too: any moment is right).
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    };
    // The task sleeps past HANG_LIMIT: only the cancel can end it in time.
    let (r, ()) = tokio::join!(finish(check, attempt), canceller);
    assert_eq!(r.status, ExitStatus::Cancelled, "[{check}] status; stderr: {}", r.stderr.text());
}

async fn output_beyond_the_limit_keeps_the_tail(executor: &dyn Executor, tasks: &dyn SuiteTasks) {
    let check = "output_beyond_the_limit_keeps_the_tail";
    let limit = 1000;
    let printed = 200_000;
    let sink = Arc::new(CollectingSink::new());
    let (ctx, _cancel) = context(spec(check, tasks.print_bytes(printed)), limit, Some(sink.clone()));
    let r = finish(check, executor.execute(ctx)).await;
    assert_eq!(r.status, ExitStatus::Exited { code: 0 }, "[{check}] status; stderr: {}", r.stderr.text());
    let live = sink.bytes(OutputStream::Stdout);
    assert!(live.len() >= printed, "[{check}] only {} of at least {printed} bytes were streamed", live.len());
    assert_eq!(r.stdout.data.len(), limit, "[{check}] the kept tail must be exactly the limit");
    assert_eq!(
        r.stdout.truncated,
        (live.len() - limit) as u64,
        "[{check}] the truncated count must be everything before the tail"
    );
    assert!(r.stdout.data[..] == live[live.len() - limit..], "[{check}] the kept tail is not the last {limit} bytes");
}

async fn live_chunks_reach_the_sink(executor: &dyn Executor, tasks: &dyn SuiteTasks) {
    let check = "live_chunks_reach_the_sink";
    let out = "streamed to stdout";
    let err = "streamed to stderr";
    for (task, stream, text) in
        [(tasks.print(out), OutputStream::Stdout, out), (tasks.print_stderr(err), OutputStream::Stderr, err)]
    {
        let sink = Arc::new(CollectingSink::new());
        let (ctx, _cancel) = context(spec(check, task), DEFAULT_TAIL_LIMIT, Some(sink.clone()));
        let r = finish(check, executor.execute(ctx)).await;
        let chunks = sink.chunks();
        assert!(!chunks.is_empty(), "[{check}] no chunk reached the sink ({stream:?})");
        for c in &chunks {
            assert_eq!((c.run, c.attempt), (SUITE_RUN, SUITE_ATTEMPT), "[{check}] a chunk names another attempt");
            assert!(!c.data.is_empty(), "[{check}] empty chunks should not be sent");
        }
        let (kept, other_kept) = match stream {
            OutputStream::Stdout => (&r.stdout, &r.stderr),
            OutputStream::Stderr => (&r.stderr, &r.stdout),
        };
        let other = match stream {
            OutputStream::Stdout => OutputStream::Stderr,
            OutputStream::Stderr => OutputStream::Stdout,
        };
        let live = sink.bytes(stream);
        assert!(
            live == kept.data[..],
            "[{check}] live {stream:?} {:?} differs from the kept {:?}",
            String::from_utf8_lossy(&live),
            kept.text()
        );
        assert!(
            sink.bytes(other) == other_kept.data[..],
            "[{check}] live {other:?} differs from the kept {other:?} output"
        );
        assert!(kept.text().contains(text), "[{check}] {stream:?} {:?} does not contain {text:?}", kept.text());
    }
}

async fn a_task_of_another_kind_fails_cleanly(executor: &dyn Executor) {
    let check = "a_task_of_another_kind_fails_cleanly";
    let capabilities = executor.capabilities();
    let candidates = [
        Task::Shell { command: "true".into() },
        Task::Process { argv: vec!["true".into()] },
        Task::Function { name: "archon-suite-no-such-function".into(), input: "null".into() },
    ];
    let Some(task) = candidates.into_iter().find(|t| !capabilities.contains(&t.capability())) else {
        return;
    };
    let r = run(check, executor, spec(check, task.clone()), DEFAULT_TAIL_LIMIT).await;
    assert!(
        matches!(r.status, ExitStatus::Failed { .. }),
        "[{check}] a {} task should fail to run, got {:?}",
        task.kind(),
        r.status
    );
}
