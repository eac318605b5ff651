//! The proposer's waiting room: proposals not yet in an entry, cut into entries
//! of at most the byte bound, and the answers of written entries put back
//! together per caller.
//!
//! A proposal that fits in an entry is never split: its commands apply together.
//! A larger one (it cannot be atomic anyway) fills whatever room the entry has
//! left and goes on in the next, so a batch of large submits is written as full
//! entries rather than each alone with a short last one.

use std::collections::{HashMap, VecDeque};

use archon_core::state::{Command, Outcome};
use tokio::sync::oneshot;

pub(super) type Reply = oneshot::Sender<Result<Vec<Outcome>, archon_core::Error>>;

/// What of one caller's proposal is not in an entry yet.
struct Part {
    id: u64,
    /// Where the first command left here sits in the caller's proposal.
    offset: usize,
    /// The proposal is larger than an entry, so it may be split anywhere.
    splits: bool,
    commands: VecDeque<(Command, usize)>,
    bytes: usize,
}

/// A caller waiting for the outcomes of all its commands.
struct Caller {
    outcomes: Vec<Option<Outcome>>,
    left: usize,
    reply: Reply,
}

/// Which commands of an entry are whose: `count` of caller `id`'s, from `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slice {
    pub(super) id: u64,
    pub(super) offset: usize,
    pub(super) count: usize,
}

/// Proposals waiting for an entry, oldest first, and the callers still waiting
/// for outcomes.
pub(super) struct Queue {
    max: usize,
    parts: VecDeque<Part>,
    callers: HashMap<u64, Caller>,
    next_id: u64,
}

impl Queue {
    /// A queue cutting entries of at most `max` bytes (by the commands' size hints).
    pub(super) fn new(max: usize) -> Queue {
        Queue { max: max.max(1), parts: VecDeque::new(), callers: HashMap::new(), next_id: 0 }
    }

    /// Nothing waits for an entry.
    pub(super) fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Queues a caller's proposal; answers at once, and queues nothing, if one
    /// of its commands is larger than an entry may be.
    pub(super) fn push(&mut self, commands: Vec<Command>, reply: Reply) {
        let sized: VecDeque<(Command, usize)> = commands
            .into_iter()
            .map(|c| {
                let size = c.size_hint();
                (c, size)
            })
            .collect();
        if let Some(&(_, size)) = sized.iter().find(|(_, size)| *size > self.max) {
            let _ = reply.send(Err(too_large(size, self.max)));
            return;
        }
        if sized.is_empty() {
            let _ = reply.send(Ok(Vec::new()));
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let bytes = sized.iter().map(|(_, size)| size).sum();
        let outcomes = std::iter::repeat_with(|| None).take(sized.len()).collect();
        self.callers.insert(id, Caller { outcomes, left: sized.len(), reply });
        self.parts.push_back(Part { id, offset: 0, splits: bytes > self.max, commands: sized, bytes });
    }

    /// The next entry: whole proposals in the order they came while they fit,
    /// then as much of a splittable one as still fits. `None` when nothing waits.
    pub(super) fn cut(&mut self) -> Option<(Vec<Command>, Vec<Slice>)> {
        let mut commands = Vec::new();
        let mut slices = Vec::new();
        let mut room = self.max;
        while let Some(part) = self.parts.front_mut() {
            if part.bytes > room && !(part.splits || commands.is_empty()) {
                break;
            }
            let offset = part.offset;
            let mut count = 0;
            while let Some((_, size)) = part.commands.front() {
                if *size > room && !commands.is_empty() {
                    break;
                }
                let Some((command, size)) = part.commands.pop_front() else { break };
                room = room.saturating_sub(size);
                part.bytes -= size;
                commands.push(command);
                count += 1;
            }
            if count > 0 {
                slices.push(Slice { id: part.id, offset, count });
                part.offset += count;
            }
            if !part.commands.is_empty() {
                break;
            }
            self.parts.pop_front();
        }
        (!commands.is_empty()).then_some((commands, slices))
    }

    /// Takes an entry's result: each caller whose commands are all answered gets
    /// its outcomes in order. An error goes to every caller with commands in the
    /// entry, and what of theirs still waits is dropped unwritten; so does an
    /// answer whose outcomes do not match the entry's commands one for one.
    pub(super) fn answer(&mut self, slices: Vec<Slice>, result: Result<Vec<Outcome>, archon_core::Error>) {
        // One outcome per command, or no caller could tell which are its own.
        let commands: usize = slices.iter().map(|s| s.count).sum();
        let result = result.and_then(|outcomes| match outcomes.len() {
            n if n == commands => Ok(outcomes),
            n => Err(archon_core::Error::Internal(format!(
                "the log answered {n} outcomes for an entry of {commands} commands"
            ))),
        });
        match result {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for slice in slices {
                    // Taken whether or not the caller still waits, so the next slice gets its own.
                    let got: Vec<Outcome> = outcomes.by_ref().take(slice.count).collect();
                    let Some(caller) = self.callers.get_mut(&slice.id) else { continue };
                    for (at, outcome) in (slice.offset..).zip(got) {
                        if let Some(slot) = caller.outcomes.get_mut(at)
                            && slot.replace(outcome).is_none()
                        {
                            caller.left -= 1;
                        }
                    }
                    if caller.left == 0
                        && let Some(caller) = self.callers.remove(&slice.id)
                    {
                        let _ = caller.reply.send(Ok(caller.outcomes.into_iter().flatten().collect()));
                    }
                }
            }
            Err(e) => {
                for slice in slices {
                    if let Some(caller) = self.callers.remove(&slice.id) {
                        self.parts.retain(|p| p.id != slice.id);
                        let _ = caller.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

/// The error for a command no entry can hold.
fn too_large(size: usize, max: usize) -> archon_core::Error {
    archon_core::Error::invalid(
        "proposal",
        format!(
            "a command of about {} is larger than a log entry may be (max_entry_bytes {}); it was not proposed",
            archon_core::model::units::format_bytes(size as u64),
            archon_core::model::units::format_bytes(max as u64)
        ),
    )
}
