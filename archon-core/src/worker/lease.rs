//! Worker leases, worker side: the worker acts only while it holds a lease, and
//! kills what it runs the moment the lease ends unrenewed — before any manager
//! can have declared it lost and placed its runs elsewhere (the manager side and
//! the argument are in `manager::leases`; the length in
//! [`ManagerConfig::worker_lease`](crate::manager::ManagerConfig::worker_lease)).
//!
//! The lease is renewed by [`ManagerMessage::Lease`](crate::transport::ManagerMessage::Lease)
//! `n`, the leader's answer to heartbeat `n`, and runs from when the worker
//! *sent* that heartbeat; a session's welcome grants one from when the worker
//! sent its hello (the leader committed the registration after hearing it).
//! Each lapse starts a new *generation*: an attempt that started in an earlier
//! generation was fenced, whatever it reports.
//!
//! Whatever enforces the lease must not freeze with the worker: the in-process
//! watcher here covers a worker cut off from the managers; a frozen worker
//! process (SIGSTOP, a long pause) is covered by an outside keeper that follows
//! [`Lease::watch`] (archon-exec's lease keeper kills the process groups the
//! worker left when the lease ends).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// Heartbeats remembered while waiting for their lease.
const SENT_KEPT: usize = 64;

/// The lease as its followers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseView {
    /// When the lease ends; `None`: the worker holds no leases (its manager
    /// grants none), so nothing is killed for want of one.
    pub until: Option<Instant>,
    /// How many times the lease has lapsed.
    pub generation: u64,
}

struct State {
    /// Zero: leases are off.
    length: Duration,
    until: Option<Instant>,
    /// The lapse of `until` has been noticed (and counted).
    lapsed: bool,
    generation: u64,
    next_seq: u64,
    sent: VecDeque<(u64, Instant)>,
    /// With an outside keeper: the end it has been told (and enforces). The
    /// lease counts as held only up to it, so the worker never believes in a
    /// lease its keeper may already have ended (say, frozen between a renewal
    /// and telling the keeper).
    kept: Option<Option<Instant>>,
}

/// A worker's lease.
pub(crate) struct Lease {
    state: Mutex<State>,
    view: watch::Sender<LeaseView>,
}

impl Lease {
    /// No lease yet: nothing may start until a session grants one.
    pub(crate) fn new() -> Lease {
        let now = Instant::now();
        Lease {
            state: Mutex::new(State {
                length: Duration::ZERO,
                until: Some(now),
                lapsed: true,
                generation: 0,
                next_seq: 0,
                sent: VecDeque::new(),
                kept: None,
            }),
            view: watch::channel(LeaseView { until: Some(now), generation: 0 }).0,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Follows the lease (its end and generation).
    pub(crate) fn watch(&self) -> watch::Receiver<LeaseView> {
        self.view.subscribe()
    }

    fn publish(&self, s: &State) {
        let view = LeaseView { until: if s.length.is_zero() { None } else { s.until }, generation: s.generation };
        self.view.send_if_modified(|v| std::mem::replace(v, view) != view);
    }

    /// A session began: the manager grants `length` from `hello_sent` (zero:
    /// the manager grants no leases). Returns true if the lease had lapsed
    /// unnoticed.
    pub(crate) fn welcome(&self, length: Duration, hello_sent: Instant) -> bool {
        let mut s = self.state();
        let lapsed = notice(&mut s, Instant::now());
        s.length = length;
        s.sent.clear();
        extend(&mut s, hello_sent + length);
        self.publish(&s);
        lapsed
    }

    /// The number of the next heartbeat, noted as sent now.
    pub(crate) fn heartbeat(&self) -> u64 {
        let mut s = self.state();
        if s.length.is_zero() {
            return 0;
        }
        s.next_seq += 1;
        let seq = s.next_seq;
        if s.sent.len() == SENT_KEPT {
            s.sent.pop_front();
        }
        s.sent.push_back((seq, Instant::now()));
        seq
    }

    /// The leader answered heartbeat `seq`. Returns true if the lease had
    /// lapsed unnoticed before this renewal (the caller fences what runs).
    pub(crate) fn renewed(&self, seq: u64) -> bool {
        let mut s = self.state();
        let lapsed = notice(&mut s, Instant::now());
        let Some(pos) = s.sent.iter().position(|(n, _)| *n == seq) else { return lapsed };
        let sent = s.sent[pos].1;
        s.sent.drain(..=pos);
        let until = sent + s.length;
        extend(&mut s, until);
        self.publish(&s);
        lapsed
    }

    /// An outside keeper follows this lease: from now on it counts only up to
    /// what [`Lease::kept`] last said the keeper enforces.
    pub(crate) fn attach_keeper(&self) {
        let mut s = self.state();
        s.kept = Some(None);
    }

    /// The keeper now enforces `until` (`None`: no lease). Returns true if the
    /// lease has lapsed unnoticed (the caller fences what runs).
    pub(crate) fn kept(&self, until: Option<Instant>) -> bool {
        let mut s = self.state();
        let now = Instant::now();
        // Until now the keeper enforced the end it was told before: if that
        // end passed unnoticed (the worker frozen past it, say), the keeper
        // has killed what ran — a lapse, whatever end it is told next.
        let mut lapsed = matches!(s.kept, Some(Some(_))) && notice(&mut s, now);
        s.kept = Some(until);
        // A later end the keeper now knows revives a lapsed lease (in the new
        // generation), or one noticed only because it had not been told yet.
        if s.lapsed && !s.length.is_zero() && effective(&s).is_some_and(|u| u > now) {
            s.lapsed = false;
        }
        lapsed |= notice(&mut s, now);
        self.publish(&s);
        lapsed
    }

    /// Notices a lapse now due. Returns true the first time for each lapse.
    pub(crate) fn check(&self) -> bool {
        let mut s = self.state();
        let lapsed = notice(&mut s, Instant::now());
        if lapsed {
            self.publish(&s);
        }
        lapsed
    }

    /// The generation now, if the lease is valid (leases off counts as valid).
    pub(crate) fn valid(&self) -> Option<u64> {
        let mut s = self.state();
        if notice(&mut s, Instant::now()) {
            self.publish(&s);
        }
        (!s.lapsed).then_some(s.generation)
    }

    /// Whether an attempt started in `generation` has been fenced since: the
    /// lease lapsed (now or before) after it started.
    pub(crate) fn fenced_since(&self, generation: u64) -> bool {
        let mut s = self.state();
        if notice(&mut s, Instant::now()) {
            self.publish(&s);
        }
        s.lapsed || s.generation != generation
    }

    /// When the lease ends, if it holds one that has not lapsed.
    pub(crate) fn until(&self) -> Option<Instant> {
        let s = self.state();
        if s.length.is_zero() || s.lapsed { None } else { effective(&s) }
    }
}

/// Marks a due lapse; true if it is new.
fn notice(s: &mut State, now: Instant) -> bool {
    if s.length.is_zero() || s.lapsed {
        return false;
    }
    match effective(s) {
        Some(until) if until <= now => {
            s.lapsed = true;
            s.generation += 1;
            true
        }
        _ => false,
    }
}

/// Moves the lease's end to `until` if later, reviving a lapsed lease only
/// with an end still ahead.
fn extend(s: &mut State, until: Instant) {
    if s.length.is_zero() {
        s.lapsed = false;
        return;
    }
    if s.until.is_none_or(|u| until > u) {
        s.until = Some(until);
    }
    if s.lapsed && effective(s).is_some_and(|u| u > Instant::now()) {
        s.lapsed = false;
    }
}

/// The lease's end as the worker may count on it: its own, or earlier what its
/// keeper enforces.
fn effective(s: &State) -> Option<Instant> {
    match (s.until, s.kept) {
        (until, None) => until,
        (Some(until), Some(Some(kept))) => Some(until.min(kept)),
        // The keeper has been told nothing yet: no lease to count on.
        (Some(_), Some(None)) => Some(Instant::now() - Duration::from_millis(1)),
        (None, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_lease_runs_from_the_answered_heartbeat_and_each_lapse_is_a_new_generation() {
        let lease = Lease::new();
        assert_eq!(lease.valid(), None, "nothing may start before a welcome");
        assert!(!lease.welcome(Duration::from_secs(8), Instant::now()));
        assert_eq!(lease.valid(), Some(0));
        tokio::time::advance(Duration::from_secs(2)).await;
        let seq = lease.heartbeat();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!lease.renewed(seq));
        // Renewed from when the heartbeat was sent (t = 2 s), not answered.
        assert_eq!(lease.until(), Some(Instant::now() + Duration::from_secs(7)));
        tokio::time::advance(Duration::from_secs(7)).await;
        assert!(lease.check(), "the lease ends 8 s after the heartbeat was sent");
        assert!(!lease.check(), "a lapse is noticed once");
        assert!(lease.fenced_since(0));
        assert_eq!(lease.valid(), None);
        // A late answer to an old heartbeat revives nothing.
        let old = lease.heartbeat();
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!lease.renewed(old));
        assert_eq!(lease.valid(), None);
        // A fresh one does, in a new generation.
        let fresh = lease.heartbeat();
        assert!(!lease.renewed(fresh));
        assert_eq!(lease.valid(), Some(1));
        assert!(lease.fenced_since(0) && !lease.fenced_since(1));
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_keeper_the_lease_counts_only_up_to_what_the_keeper_was_told() {
        let lease = Lease::new();
        lease.attach_keeper();
        lease.welcome(Duration::from_secs(8), Instant::now());
        assert_eq!(lease.valid(), None, "the keeper has not been told yet");
        assert!(!lease.kept(Some(Instant::now() + Duration::from_secs(2))));
        assert_eq!(lease.valid(), Some(0));
        let seq = lease.heartbeat();
        assert!(!lease.renewed(seq));
        // Renewed to 8 s, but the keeper still enforces 2 s: that is the end.
        assert_eq!(lease.until(), Some(Instant::now() + Duration::from_secs(2)));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(lease.check(), "the keeper's end is the lease's end");
        assert!(!lease.kept(Some(Instant::now() + Duration::from_secs(5))));
        assert_eq!(lease.valid(), Some(1), "told a later end, it holds again, in a new generation");
    }

    #[tokio::test(start_paused = true)]
    async fn a_keeper_told_a_later_end_only_after_its_earlier_end_passed_has_fenced_what_ran() {
        let lease = Lease::new();
        lease.attach_keeper();
        lease.welcome(Duration::from_secs(8), Instant::now());
        assert!(!lease.kept(Some(Instant::now() + Duration::from_secs(2))));
        assert_eq!(lease.valid(), Some(0));
        // Frozen past the end the keeper enforces (it kills what runs), then
        // the keeper is told a later end before anything noticed the lapse.
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(lease.kept(Some(Instant::now() + Duration::from_secs(5))), "the keeper's end passed: a lapse");
        assert!(lease.fenced_since(0), "what started before it was killed by the keeper, not failed");
        assert_eq!(lease.valid(), Some(1), "and the lease holds again, in a new generation");
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_after_an_unnoticed_lapse_reports_it_and_managers_without_leases_grant_no_lapse() {
        let lease = Lease::new();
        lease.welcome(Duration::from_secs(1), Instant::now());
        tokio::time::advance(Duration::from_secs(5)).await;
        let seq = lease.heartbeat();
        assert!(lease.renewed(seq), "frozen past its lease: the renewal finds the lapse first");
        assert!(lease.fenced_since(0));
        assert_eq!(lease.valid(), Some(1));

        let off = Lease::new();
        off.welcome(Duration::ZERO, Instant::now());
        assert_eq!(off.heartbeat(), 0, "no lease asked of a manager that grants none");
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(!off.check());
        assert_eq!(off.valid(), Some(0));
        assert_eq!(*off.watch().borrow(), LeaseView { until: None, generation: 0 });
    }
}
