//! [`Proposal`]: what one log entry carries — a batch of commands and the format
//! they were written in. Archon 0.1 wrote a bare JSON array of commands (format
//! 0, read as such); this release writes `{"v": N, "commands": [...]}`, N being
//! the newest [`Command::format`] among its commands (1, or 2 once a cron
//! command is in it), so entries a node of the first cut reads stay readable to
//! it. A node
//! given an entry of a format it does not know refuses to decode it, with an
//! error naming both formats, so it never applies what it cannot understand.
//!
//! Entries the leader reads back from its log to replicate are read
//! [unread](read_unread): after a failover most of them are found held by the
//! follower and never sent, so their commands are not decoded unless they are.

use std::sync::{Arc, OnceLock};

use archon_core::state::Command;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The newest entry format this build writes and reads (its
/// [`archon_core::state::COMMAND_FORMAT`]).
pub const ENTRY_FORMAT: u32 = archon_core::state::COMMAND_FORMAT;

/// One log entry's commands.
///
/// An entry read from the log for replication is *unread*: its format is
/// checked, its commands stay as the JSON they were stored as and are decoded
/// only if something asks for them — sending the entry to a follower, say,
/// which a follower found to hold it already never does (see
/// `Proposal::unread`). Cheap to clone either way.
#[derive(Clone)]
pub struct Proposal {
    /// The format it was written in: 0 for Archon 0.1's entries, else the newest
    /// format among its commands (at most [`ENTRY_FORMAT`]).
    pub format: u32,
    commands: Commands,
}

#[derive(Clone)]
enum Commands {
    Decoded(Arc<[Command]>),
    /// The stored JSON of the whole log entry, and its commands once decoded.
    Unread(Arc<Unread>),
}

struct Unread {
    entry: Vec<u8>,
    decoded: OnceLock<Result<Arc<[Command]>, String>>,
}

impl Proposal {
    /// Commands, labelled with the newest format among them.
    pub fn new(commands: Vec<Command>) -> Proposal {
        let format = commands.iter().map(Command::format).max().unwrap_or(1);
        Proposal { format, commands: Commands::Decoded(commands.into()) }
    }

    /// The commands of a stored log entry of `format` (checked by the caller),
    /// decoded from `entry` — the entry's stored JSON — when first asked for.
    pub(crate) fn unread(format: u32, entry: Vec<u8>) -> Proposal {
        Proposal { format, commands: Commands::Unread(Arc::new(Unread { entry, decoded: OnceLock::new() })) }
    }

    /// The commands, in the order they apply; for an unread entry, decoded
    /// now (once), which fails only if its stored JSON does not decode.
    pub fn commands(&self) -> Result<&[Command], ProposalError> {
        match &self.commands {
            Commands::Decoded(commands) => Ok(commands),
            Commands::Unread(unread) => {
                let decoded = unread.decoded.get_or_init(|| {
                    match serde_json::from_slice::<openraft::Entry<crate::TypeConfig>>(&unread.entry) {
                        Ok(openraft::Entry {
                            payload: openraft::EntryPayload::Normal(Proposal { commands: Commands::Decoded(c), .. }),
                            ..
                        }) => Ok(c),
                        Ok(_) => Err("the stored entry holds no commands".to_owned()),
                        Err(e) => Err(e.to_string()),
                    }
                });
                decoded.as_deref().map_err(|e| ProposalError(e.clone()))
            }
        }
    }
}

/// Why an unread entry's commands could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a log entry's commands do not decode: {0}")]
pub struct ProposalError(String);

impl PartialEq for Proposal {
    fn eq(&self, other: &Proposal) -> bool {
        self.format == other.format && self.commands() == other.commands()
    }
}

impl Eq for Proposal {}

impl std::fmt::Debug for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.commands {
            Commands::Decoded(commands) => {
                f.debug_struct("Proposal").field("format", &self.format).field("commands", commands).finish()
            }
            Commands::Unread(unread) => f
                .debug_struct("Proposal")
                .field("format", &self.format)
                .field("unread_bytes", &unread.entry.len())
                .finish(),
        }
    }
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.commands {
            Commands::Decoded(commands) => write!(f, "{} commands (format {})", commands.len(), self.format),
            Commands::Unread(unread) => write!(f, "{} bytes unread (format {})", unread.entry.len(), self.format),
        }
    }
}

#[derive(Serialize)]
struct Versioned<'a> {
    v: u32,
    commands: &'a [Command],
}

impl Serialize for Proposal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let commands = self.commands().map_err(serde::ser::Error::custom)?;
        if self.format == 0 {
            // Kept as 0.1 wrote it, so 0.1 followers can still read it.
            return commands.serialize(s);
        }
        Versioned { v: self.format, commands }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Proposal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Proposal, D::Error> {
        d.deserialize_any(ProposalVisitor)
    }
}

/// Reads either shape in one pass; the format (written first) is checked before
/// any command is decoded.
struct ProposalVisitor;

impl<'de> serde::de::Visitor<'de> for ProposalVisitor {
    type Value = Proposal;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a log entry's commands: {\"v\": N, \"commands\": [...]} or, from Archon 0.1, [...]")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Proposal, A::Error> {
        let mut commands = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(command) = seq.next_element()? {
            commands.push(command);
        }
        Ok(Proposal { format: 0, commands: Commands::Decoded(commands.into()) })
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Proposal, A::Error> {
        let mut format = None;
        let mut commands = None;
        // Commands seen before the format (a writer that reordered the keys) wait,
        // undecoded, until the format is known.
        let mut early: Option<Vec<serde_json::Value>> = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "v" => format = Some(checked_format::<A::Error>(map.next_value()?)?),
                "commands" if format.is_some() => commands = Some(map.next_value::<Vec<Command>>()?),
                "commands" => early = Some(map.next_value()?),
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        if let (None, Some(raw)) = (&commands, early) {
            let decoded = raw.into_iter().map(serde_json::from_value).collect::<Result<Vec<Command>, _>>();
            commands = Some(decoded.map_err(A::Error::custom)?);
        }
        match (format, commands) {
            (Some(format), Some(commands)) => Ok(Proposal { format, commands: Commands::Decoded(commands.into()) }),
            (None, _) => Err(A::Error::missing_field("v")),
            (_, None) => Err(A::Error::missing_field("commands")),
        }
    }
}

/// A stored log entry (its JSON as written), read for replication: the log id
/// and the format in full, the commands left unread (see [`Proposal::unread`]).
/// An entry of a format newer than this node reads is refused, as in full.
pub(crate) fn read_unread(row: &[u8]) -> Result<openraft::Entry<crate::TypeConfig>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Skeleton {
        log_id: openraft::LogId<u64>,
        payload: SkeletonPayload,
    }
    // Mirrors openraft's `EntryPayload` as serde writes it.
    #[derive(Deserialize)]
    enum SkeletonPayload {
        Blank,
        Normal(FormatOnly),
        Membership(openraft::Membership<u64, openraft::BasicNode>),
    }
    let skeleton: Skeleton = serde_json::from_slice(row)?;
    let payload = match skeleton.payload {
        SkeletonPayload::Blank => openraft::EntryPayload::Blank,
        SkeletonPayload::Membership(m) => openraft::EntryPayload::Membership(m),
        SkeletonPayload::Normal(FormatOnly(format)) => {
            openraft::EntryPayload::Normal(Proposal::unread(format, row.to_vec()))
        }
    };
    Ok(openraft::Entry { log_id: skeleton.log_id, payload })
}

/// A proposal's format, its commands skipped (scanned, not decoded).
struct FormatOnly(u32);

impl<'de> Deserialize<'de> for FormatOnly {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FormatOnly, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = FormatOnly;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                ProposalVisitor.expecting(f)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<FormatOnly, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(FormatOnly(0))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<FormatOnly, A::Error> {
                let mut format = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "v" {
                        format = Some(checked_format::<A::Error>(map.next_value()?)?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                format.map(FormatOnly).ok_or_else(|| A::Error::missing_field("v"))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `v`, if this node reads entries of that format.
fn checked_format<E: serde::de::Error>(v: u32) -> Result<u32, E> {
    if v > ENTRY_FORMAT {
        return Err(E::custom(format!(
            "log entry format {v} is newer than this node reads ({ENTRY_FORMAT}); upgrade this node \
             (managers one at a time, followers first)"
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_of_0_1_read_as_format_0_and_newer_formats_are_refused() {
        let old: Proposal = serde_json::from_str(r#"[{"cmd":"cancel_run","at":5,"run":3}]"#).unwrap();
        assert_eq!(old.format, 0);
        assert_eq!(serde_json::to_string(&old).unwrap(), r#"[{"cmd":"cancel_run","at":5,"run":3}]"#);
        let new = Proposal::new(old.commands().unwrap().to_vec());
        let json = serde_json::to_string(&new).unwrap();
        assert!(json.starts_with(r#"{"v":1,"commands":["#), "{json}");
        assert_eq!(serde_json::from_str::<Proposal>(&json).unwrap(), new);
        let future = r#"{"v":7,"commands":[{"cmd":"teleport"}]}"#;
        let err = serde_json::from_str::<Proposal>(future).unwrap_err().to_string();
        assert!(err.contains(&format!("log entry format 7 is newer than this node reads ({ENTRY_FORMAT})")), "{err}");
        // The same with the keys the other way round: refused for its format, not its commands.
        let reordered = r#"{"commands":[{"cmd":"teleport"}],"v":7}"#;
        let err = serde_json::from_str::<Proposal>(reordered).unwrap_err().to_string();
        assert!(err.contains("log entry format 7 is newer"), "{err}");
        let reordered = r#"{"commands":[{"cmd":"cancel_run","at":5,"run":3}],"v":1}"#;
        assert_eq!(serde_json::from_str::<Proposal>(reordered).unwrap(), new);
    }

    #[test]
    fn an_entry_is_labelled_with_the_newest_format_among_its_commands() {
        use archon_core::model::{JobId, Timestamp};
        let cancel = Command::CancelJob { at: Timestamp(1), job: JobId(1) };
        let pause = Command::PauseSchedule { at: Timestamp(2), job: JobId(1), paused: true, note: None };
        assert_eq!(Proposal::new(vec![cancel.clone()]).format, 1, "readable by a node of the first cut");
        let mixed = Proposal::new(vec![cancel, pause]);
        assert_eq!(mixed.format, 2);
        let json = serde_json::to_string(&mixed).unwrap();
        assert!(json.starts_with(r#"{"v":2,"#), "{json}");
        assert_eq!(serde_json::from_str::<Proposal>(&json).unwrap(), mixed);
    }

    #[test]
    fn an_entry_read_for_replication_leaves_its_commands_unread_until_asked_and_then_equals_the_full_read() {
        use archon_core::model::{JobId, Timestamp};
        use openraft::{Entry, EntryPayload, LogId};
        let proposal = Proposal::new(vec![
            Command::CancelJob { at: Timestamp(1), job: JobId(7) },
            Command::PauseSchedule { at: Timestamp(2), job: JobId(7), paused: true, note: Some("why".into()) },
        ]);
        let log_id = LogId::new(openraft::CommittedLeaderId::new(3, 1), 42);
        let entry: Entry<crate::TypeConfig> = Entry { log_id, payload: EntryPayload::Normal(proposal.clone()) };
        let row = serde_json::to_vec(&entry).unwrap();

        let read = read_unread(&row).unwrap();
        assert_eq!(read.log_id, log_id);
        let EntryPayload::Normal(unread) = &read.payload else { panic!("{read:?}") };
        assert_eq!(unread.format, 2);
        assert!(unread.to_string().contains("unread"), "{unread}");
        // Asked for, the commands are those written; sent on, the same JSON.
        assert_eq!(unread.commands().unwrap(), proposal.commands().unwrap());
        assert_eq!(serde_json::to_vec(&read).unwrap(), row);
        assert_eq!(serde_json::from_slice::<Entry<crate::TypeConfig>>(&row).unwrap(), read);

        // Commands that do not decode are found only when asked for.
        let text = String::from_utf8(row).unwrap().replace("cancel_job", "teleport");
        let read = read_unread(text.as_bytes()).unwrap();
        let EntryPayload::Normal(unread) = &read.payload else { panic!("{read:?}") };
        let err = unread.commands().unwrap_err().to_string();
        assert!(err.contains("teleport"), "{err}");
        assert!(serde_json::to_vec(&read).is_err(), "an entry that does not decode is not sent on");

        // The format is checked at once; entries without commands read in full.
        let future = text.replace(r#""v":2"#, r#""v":9"#);
        let err = read_unread(future.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("log entry format 9 is newer"), "{err}");
        for payload in [EntryPayload::Blank, EntryPayload::Membership(openraft::Membership::new(vec![], None))] {
            let entry: Entry<crate::TypeConfig> = Entry { log_id, payload };
            assert_eq!(read_unread(&serde_json::to_vec(&entry).unwrap()).unwrap(), entry);
        }
        // Archon 0.1's bare arrays are format 0, read lazily too.
        let old = r#"{"log_id":{"leader_id":1,"index":5},"payload":{"Normal":[{"cmd":"cancel_run","at":5,"run":3}]}}"#;
        let read = read_unread(old.as_bytes()).unwrap();
        let EntryPayload::Normal(unread) = &read.payload else { panic!("{read:?}") };
        assert_eq!((unread.format, unread.commands().unwrap().len()), (0, 1));
    }
}
