//! Secret values: a job's `secret_env`. A [`Secret`] formats as `***` (`Debug`
//! and `Display`), so no log line, panic message or `{:?}` of a spec shows it;
//! serde keeps the real value, because the spec travels through the log, the
//! snapshots and PostgreSQL to the worker that runs the attempt.
//!
//! What readers get is redacted at the source: the manager's API answers with
//! [`Secret::redacted`] in place of every value (see
//! [`JobSpec::redact_secrets`](super::JobSpec::redact_secrets)); only the
//! assignment that hands an attempt to its worker carries the values.

use serde::{Deserialize, Deserializer, Serialize, de};

/// A secret value. Only [`Secret::expose`] gives the text. It reads from a
/// string only, and an error about anything else does not quote the value.
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// What every secret value is shown as.
    pub const REDACTED: &'static str = "***";

    /// A secret of `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The stand-in the API answers with: `***`.
    pub fn redacted() -> Secret {
        Secret(Self::REDACTED.to_owned())
    }

    /// The value itself, for the executor that passes it to the job.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        // `any`, so a number or a bool reaches the visitor rather than the
        // format's own error; every format Archon reads (JSON, TOML) describes itself.
        deserializer.deserialize_any(SecretVisitor)
    }
}

/// Takes a string; refuses anything else without quoting it (serde's own
/// messages show a number's or a bool's value).
struct SecretVisitor;

impl SecretVisitor {
    fn refuse<E: de::Error>(self) -> Result<Secret, E> {
        Err(de::Error::invalid_type(de::Unexpected::Other("a value that is not a string"), &self))
    }
}

impl de::Visitor<'_> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string (the secret value)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
        self.refuse()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
        self.refuse()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
        self.refuse()
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Secret, E> {
        self.refuse()
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Secret, E> {
        self.refuse()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
        self.refuse()
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        self.refuse()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(Self::REDACTED)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(Self::REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:#?} {s:>10}"), "*** ***");
        let env = std::collections::BTreeMap::from([("TOKEN".to_owned(), s.clone())]);
        assert_eq!(format!("{env:?}"), r#"{"TOKEN": ***}"#);
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn serde_keeps_the_value() {
        let s = Secret::new("hunter2 \"quoted\"");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#""hunter2 \"quoted\"""#);
        assert_eq!(serde_json::from_str::<Secret>(&json).unwrap(), s);
    }

    #[test]
    fn a_value_that_is_not_a_string_is_refused_without_quoting_it() {
        for text in ["123456789", "12345.6789", "true"] {
            let e = serde_json::from_str::<Secret>(text).unwrap_err().to_string();
            assert!(e.contains("expected a string") && !e.contains(text), "{e}");
        }
    }

    #[test]
    fn the_redacted_stand_in_is_three_stars() {
        assert_eq!(Secret::redacted().expose(), "***");
        assert_ne!(Secret::redacted(), Secret::new("x"));
    }
}
