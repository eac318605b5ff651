//! Masking a job's secret values in its own output, as GitHub Actions does:
//! every occurrence of a `secret_env` value in what the attempt prints becomes
//! `***` before the output leaves the worker (live chunks and the kept tail).
//!
//! Best effort, and what a reader must know: bytes that could begin a secret
//! are held back until the next write shows whether they do, so a value split
//! across writes is still masked; output that ends on such bytes reaches the
//! kept tail but not live followers. Values shorter than [`MIN_MASKED`] bytes
//! are not masked (they would hide ordinary text), and a job that transforms a
//! value (base64, reversed, one character per line) prints what it made.

use crate::model::Secret;

/// Values shorter than this are not masked.
pub const MIN_MASKED: usize = 4;

/// The secret values to mask, longest first (so a value that contains another
/// is masked whole).
#[derive(Default)]
pub(super) struct Masks {
    values: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Masks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masks").field("values", &self.values.len()).finish()
    }
}

impl Masks {
    pub(super) fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Masks {
        let mut values: Vec<Vec<u8>> =
            secrets.into_iter().map(|s| s.expose().as_bytes().to_vec()).filter(|v| v.len() >= MIN_MASKED).collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Masks { values }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `held` (what the last call kept back) and `data`, masked: the bytes to
    /// release now; `held` keeps the suffix that may still begin a value.
    pub(super) fn apply(&self, held: &mut Vec<u8>, data: &[u8]) -> Vec<u8> {
        let mut input = std::mem::take(held);
        input.extend_from_slice(data);
        let mut out = Vec::with_capacity(input.len());
        let mut i = 0;
        while i < input.len() {
            let rest = &input[i..];
            match self.values.iter().find(|v| rest.starts_with(v)) {
                Some(v) => {
                    out.extend_from_slice(Secret::REDACTED.as_bytes());
                    i += v.len();
                }
                None => {
                    out.push(input[i]);
                    i += 1;
                }
            }
        }
        let keep = self.open_prefix(&out);
        *held = out.split_off(out.len() - keep);
        out
    }

    /// The length of the longest suffix of `out` that is a proper prefix of a value.
    fn open_prefix(&self, out: &[u8]) -> usize {
        let longest = self.values.first().map_or(0, Vec::len);
        (1..longest.min(out.len() + 1))
            .rev()
            .find(|&k| self.values.iter().any(|v| v.len() > k && out.ends_with(&v[..k])))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masks(values: &[&str]) -> Masks {
        let secrets: Vec<Secret> = values.iter().map(|v| Secret::new(*v)).collect();
        Masks::new(&secrets)
    }

    /// Feeds `writes` one by one and returns what was released, then what was held at the end.
    fn feed(m: &Masks, writes: &[&str]) -> (String, String) {
        let mut held = Vec::new();
        let mut out = Vec::new();
        for w in writes {
            out.extend(m.apply(&mut held, w.as_bytes()));
        }
        (String::from_utf8(out).unwrap(), String::from_utf8(held).unwrap())
    }

    #[test]
    fn every_occurrence_is_masked_even_split_across_writes() {
        let m = masks(&["hunter2", "s3cr3t-token"]);
        assert_eq!(feed(&m, &["pw=hunter2 and hunter2\n"]), ("pw=*** and ***\n".into(), String::new()));
        assert_eq!(feed(&m, &["pw=hun", "ter", "2!\n"]), ("pw=***!\n".into(), String::new()));
        assert_eq!(feed(&m, &["a s3cr3t-", "token b\n"]), ("a *** b\n".into(), String::new()));
        // A false start is released once it is clearly not a value.
        assert_eq!(feed(&m, &["hunt", "ing\n"]), ("hunting\n".into(), String::new()));
        assert_eq!(feed(&m, &["ends on hun"]), ("ends on ".into(), "hun".into()));
    }

    #[test]
    fn a_value_containing_another_is_masked_whole_and_short_values_are_not_masked() {
        let m = masks(&["abcd", "xxabcdxx", "pin"]);
        assert_eq!(feed(&m, &["xxabcdxx abcd pin\n"]), ("*** *** pin\n".into(), String::new()));
        assert!(masks(&["a", "12"]).is_empty());
    }
}
