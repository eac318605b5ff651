//! Output capture with bounded memory: each stream keeps its last `limit` bytes
//! (1 MiB by default) and counts what it dropped; live chunks go to an optional
//! [`OutputSink`] (the worker forwards them to the manager for `logs -f`). A
//! writer made [`OutputWriter::masking`] a job's secret values prints `***` for
//! them (see [`super::mask`]).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::mask::Masks;
use crate::model::{AttemptId, AttemptResult, ExitStatus, OutputChunk, OutputStream, OutputTail, RunId, Secret};

/// The default tail kept per stream: 1 MiB.
pub const DEFAULT_TAIL_LIMIT: usize = 1 << 20;

/// Live output goes to the sink in chunks of at most this many bytes.
const LIVE_CHUNK: usize = 64 << 10;

/// Receives live output chunks.
#[async_trait]
pub trait OutputSink: Send + Sync {
    /// Takes one chunk; may wait (backpressure).
    async fn send(&self, chunk: OutputChunk);

    /// Hears that the attempt's process (or container) runs, `took` after its
    /// writer was made — when the executor was handed the attempt. (The worker
    /// records it as the spawn time; by default nothing listens.)
    fn spawned(&self, took: std::time::Duration) {
        let _ = took;
    }
}

/// The last `limit` bytes of a stream.
#[derive(Debug, Default)]
struct Tail {
    buf: Vec<u8>,
    truncated: u64,
}

impl Tail {
    fn push(&mut self, data: &[u8], limit: usize) {
        self.buf.extend_from_slice(data);
        // Trim lazily, at twice the limit, so trimming is amortised O(1) per byte.
        if self.buf.len() > limit.saturating_mul(2).max(4096) {
            self.trim(limit);
        }
    }

    fn trim(&mut self, limit: usize) {
        if self.buf.len() > limit {
            let excess = self.buf.len() - limit;
            self.buf.drain(..excess);
            self.truncated += excess as u64;
        }
    }

    fn finish(mut self, limit: usize) -> OutputTail {
        self.trim(limit);
        OutputTail { data: Bytes::from(self.buf), truncated: self.truncated }
    }
}

/// Where an executor writes an attempt's output.
pub struct OutputWriter {
    run: RunId,
    attempt: AttemptId,
    limit: usize,
    stdout: Tail,
    stderr: Tail,
    sink: Option<Arc<dyn OutputSink>>,
    /// When the writer was made, for [`OutputWriter::spawned`].
    made: std::time::Instant,
    /// Secret values to mask, and per stream the bytes held back meanwhile.
    masks: Masks,
    held: [Vec<u8>; 2],
}

impl std::fmt::Debug for OutputWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputWriter")
            .field("attempt", &self.attempt)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl OutputWriter {
    /// A writer keeping `limit` bytes per stream and forwarding chunks to `sink`.
    pub fn new(run: RunId, attempt: AttemptId, limit: usize, sink: Option<Arc<dyn OutputSink>>) -> OutputWriter {
        OutputWriter {
            run,
            attempt,
            limit,
            stdout: Tail::default(),
            stderr: Tail::default(),
            sink,
            made: std::time::Instant::now(),
            masks: Masks::default(),
            held: [Vec::new(), Vec::new()],
        }
    }

    /// The same writer, printing `***` for each of `secrets` (values of at
    /// least [`super::MIN_MASKED`] bytes) wherever the attempt prints it.
    pub fn masking<'a>(mut self, secrets: impl IntoIterator<Item = &'a Secret>) -> OutputWriter {
        self.masks = Masks::new(secrets);
        self
    }

    /// A writer that only keeps tails (tests, benchmarks).
    pub fn detached(limit: usize) -> OutputWriter {
        OutputWriter::new(RunId(0), AttemptId(0), limit, None)
    }

    /// Says the attempt's process (or container) now runs: executors call it
    /// once, right after they started it, so the worker can time the spawn.
    pub fn spawned(&self) {
        if let Some(sink) = &self.sink {
            sink.spawned(self.made.elapsed());
        }
    }

    /// Records a chunk of `stream` and forwards it live.
    pub async fn write(&mut self, stream: OutputStream, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let data = if self.masks.is_empty() {
            data
        } else {
            let held = &mut self.held[usize::from(stream == OutputStream::Stderr)];
            let released = self.masks.apply(held, &data);
            if released.is_empty() {
                return;
            }
            Bytes::from(released)
        };
        match stream {
            OutputStream::Stdout => self.stdout.push(&data, self.limit),
            OutputStream::Stderr => self.stderr.push(&data, self.limit),
        }
        if let Some(sink) = &self.sink {
            // Live chunks stay small: a manager takes at most its max_output_chunk.
            let mut offset = 0;
            while offset < data.len() {
                let end = (offset + LIVE_CHUNK).min(data.len());
                let chunk = data.slice(offset..end);
                sink.send(OutputChunk { run: self.run, attempt: self.attempt, stream, data: chunk }).await;
                offset = end;
            }
        }
    }

    /// The kept tails, with `status`, as the attempt's result. (Bytes held back
    /// while masking go into the tails only.)
    pub fn finish(mut self, status: ExitStatus) -> AttemptResult {
        let [out, err] = std::mem::take(&mut self.held);
        self.stdout.push(&out, self.limit);
        self.stderr.push(&err, self.limit);
        AttemptResult {
            status,
            stdout: self.stdout.finish(self.limit),
            stderr: self.stderr.finish(self.limit),
            usage: None,
        }
    }
}
