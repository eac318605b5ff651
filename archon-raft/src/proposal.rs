//! [`Proposal`]: what one log entry carries — a batch of commands and the format
//! they were written in. Archon 0.1 wrote a bare JSON array of commands (format
//! 0, read as such); this release writes `{"v": N, "commands": [...]}`, N being
//! the newest [`Command::format`] among its commands (1, or 2 once a cron
//! command is in it), so entries a node of the first cut reads stay readable to
//! it. A node
//! given an entry of a format it does not know refuses to decode it, with an
//! error naming both formats, so it never applies what it cannot understand.

use std::sync::Arc;

use archon_core::state::Command;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The newest entry format this build writes and reads (its
/// [`archon_core::state::COMMAND_FORMAT`]).
pub const ENTRY_FORMAT: u32 = archon_core::state::COMMAND_FORMAT;

/// One log entry's commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The format it was written in: 0 for Archon 0.1's entries, else the newest
    /// format among its commands (at most [`ENTRY_FORMAT`]).
    pub format: u32,
    /// The commands, applied in order (shared: an entry is cloned cheaply).
    pub commands: Arc<[Command]>,
}

impl Proposal {
    /// Commands, labelled with the newest format among them.
    pub fn new(commands: Vec<Command>) -> Proposal {
        let format = commands.iter().map(Command::format).max().unwrap_or(1);
        Proposal { format, commands: commands.into() }
    }
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} commands (format {})", self.commands.len(), self.format)
    }
}

#[derive(Serialize)]
struct Versioned<'a> {
    v: u32,
    commands: &'a [Command],
}

impl Serialize for Proposal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.format == 0 {
            // Kept as 0.1 wrote it, so 0.1 followers can still read it.
            return self.commands.serialize(s);
        }
        Versioned { v: self.format, commands: &self.commands }.serialize(s)
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
        Ok(Proposal { format: 0, commands: commands.into() })
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Proposal, A::Error> {
        let mut format = None;
        let mut commands = None;
        // Commands seen before the format (a writer that reordered the keys) wait,
        // undecoded, until the format is known.
        let mut early: Option<Vec<serde_json::Value>> = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "v" => {
                    let v: u32 = map.next_value()?;
                    if v > ENTRY_FORMAT {
                        return Err(A::Error::custom(format!(
                            "log entry format {v} is newer than this node reads ({ENTRY_FORMAT}); upgrade this node \
                             (managers one at a time, followers first)"
                        )));
                    }
                    format = Some(v);
                }
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
            (Some(format), Some(commands)) => Ok(Proposal { format, commands: commands.into() }),
            (None, _) => Err(A::Error::missing_field("v")),
            (_, None) => Err(A::Error::missing_field("commands")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_of_0_1_read_as_format_0_and_newer_formats_are_refused() {
        let old: Proposal = serde_json::from_str(r#"[{"cmd":"cancel_run","at":5,"run":3}]"#).unwrap();
        assert_eq!(old.format, 0);
        assert_eq!(serde_json::to_string(&old).unwrap(), r#"[{"cmd":"cancel_run","at":5,"run":3}]"#);
        let new = Proposal::new(old.commands.to_vec());
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
}
