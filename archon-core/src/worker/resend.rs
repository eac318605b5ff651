//! The results a worker handed to a session, kept for a while to send again to
//! the next manager if that session breaks before the result was committed (a
//! failover). Bounded in count, age and output bytes: past the byte budget the
//! oldest results give up their output — counted as dropped, as a tail limit
//! would — and keep their status, so a burst of chatty jobs costs the worker at
//! most [`RESEND_OUTPUT_BYTES`].

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::model::{AttemptId, AttemptResult, OutputStream, RunId};

/// How long a result is kept: longer than a manager failover takes.
const RESEND_WINDOW: Duration = Duration::from_secs(15);
/// The most results kept.
const RESEND_MAX: usize = 4096;
/// The most output bytes the kept results hold.
pub(super) const RESEND_OUTPUT_BYTES: usize = 32 << 20;

/// A result handed to a session.
pub(super) struct Sent {
    at: Instant,
    pub(super) run: RunId,
    pub(super) attempt: AttemptId,
    pub(super) result: AttemptResult,
}

/// The output bytes `result` holds.
fn output_bytes(result: &AttemptResult) -> usize {
    result.stdout.data.len() + result.stderr.data.len()
}

/// See the module docs.
#[derive(Default)]
pub(super) struct Resend {
    sent: VecDeque<Sent>,
    /// Output bytes of the results from `stripped` on.
    bytes: usize,
    /// Results before this index hold no output any more.
    stripped: usize,
}

impl Resend {
    fn pop_front(&mut self) {
        if let Some(s) = self.sent.pop_front() {
            if self.stripped > 0 {
                self.stripped -= 1;
            } else {
                self.bytes -= output_bytes(&s.result);
            }
        }
    }

    /// Remembers a result just handed to a session at `now`.
    pub(super) fn push(&mut self, now: Instant, run: RunId, attempt: AttemptId, result: AttemptResult) {
        while self.sent.front().is_some_and(|s| now.duration_since(s.at) > RESEND_WINDOW)
            || self.sent.len() >= RESEND_MAX
        {
            self.pop_front();
        }
        self.bytes += output_bytes(&result);
        self.sent.push_back(Sent { at: now, run, attempt, result });
        while self.bytes > RESEND_OUTPUT_BYTES && self.stripped < self.sent.len() {
            let result = &mut self.sent[self.stripped].result;
            self.bytes -= output_bytes(result);
            for stream in OutputStream::BOTH {
                let tail = result.tail_mut(stream);
                tail.truncated += tail.data.len() as u64;
                tail.data = bytes::Bytes::new();
            }
            self.stripped += 1;
        }
    }

    /// Takes the results still within the window at `now` (to send again).
    pub(super) fn take(&mut self, now: Instant) -> Vec<Sent> {
        (self.bytes, self.stripped) = (0, 0);
        std::mem::take(&mut self.sent).into_iter().filter(|s| now.duration_since(s.at) <= RESEND_WINDOW).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ExitStatus, OutputTail};

    fn result(bytes: usize) -> AttemptResult {
        let mut r = AttemptResult::status(ExitStatus::Exited { code: 0 });
        r.stdout = OutputTail { data: vec![b'x'; bytes].into(), truncated: 0 };
        r
    }

    #[test]
    fn a_burst_of_chatty_results_keeps_their_status_within_the_byte_budget() {
        let mut resend = Resend::default();
        let now = Instant::now();
        let mib = 1 << 20;
        for i in 0..100u64 {
            resend.push(now, RunId(i), AttemptId(i), result(mib));
            let held: usize = resend.sent.iter().map(|s| output_bytes(&s.result)).sum();
            assert!(held <= RESEND_OUTPUT_BYTES && held == resend.bytes, "after {i}: {held} held");
        }
        let sent = resend.take(now);
        assert_eq!(sent.len(), 100, "every status is kept");
        let keep = RESEND_OUTPUT_BYTES / mib;
        for (i, s) in sent.iter().enumerate() {
            let (kept, dropped) = (s.result.stdout.data.len(), s.result.stdout.truncated);
            let expected = if i < 100 - keep { (0, mib as u64) } else { (mib, 0) };
            assert_eq!((kept, dropped), expected, "result {i}: the newest keep their output");
        }
        assert!(resend.take(now).is_empty());
    }

    #[test]
    fn results_past_the_window_are_not_sent_again() {
        let mut resend = Resend::default();
        let start = Instant::now();
        resend.push(start, RunId(1), AttemptId(1), result(10));
        let later = start + RESEND_WINDOW + Duration::from_secs(1);
        resend.push(later, RunId(2), AttemptId(2), result(10));
        let runs: Vec<RunId> = resend.take(later).iter().map(|s| s.run).collect();
        assert_eq!(runs, vec![RunId(2)]);
    }
}
