//! Identifier newtypes. Ids are assigned by the state machine from counters in the
//! state, so every replica assigns the same ones; they print with a prefix
//! (`job-12`, `run-340`, `att-7`, `w-3`, `wf-2`) and parse from either form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The error returned when a string is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a {kind} id (try {prefix}12 or 12)")]
pub struct ParseIdError {
    /// What was given.
    pub input: String,
    /// The kind of id that was expected (`job`, `run`, ...).
    pub kind: &'static str,
    /// The prefix the id prints with.
    pub prefix: &'static str,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The prefix this id prints with.
            pub const PREFIX: &'static str = $prefix;

            /// The raw counter value.
            pub fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let digits = s.trim().strip_prefix($prefix).unwrap_or(s.trim());
                digits.parse::<u64>().map($name).map_err(|_| ParseIdError {
                    input: s.to_owned(),
                    kind: $kind,
                    prefix: $prefix,
                })
            }
        }
    };
}

id_type!(
    /// A job definition.
    JobId, "job-", "job"
);
id_type!(
    /// One execution of a job.
    RunId, "run-", "run"
);
id_type!(
    /// One try of a run on one worker; also the fencing token for that try.
    AttemptId, "att-", "attempt"
);
id_type!(
    /// A worker registered with the cluster.
    WorkerId, "w-", "worker"
);
id_type!(
    /// A workflow: jobs submitted together with edges between them.
    WorkflowId, "wf-", "workflow"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_with_prefix_and_parse_both_forms() {
        assert_eq!(JobId(12).to_string(), "job-12");
        assert_eq!("job-12".parse::<JobId>().unwrap(), JobId(12));
        assert_eq!("12".parse::<JobId>().unwrap(), JobId(12));
        assert_eq!("w-3".parse::<WorkerId>().unwrap(), WorkerId(3));
        let err = "run-x".parse::<RunId>().unwrap_err();
        assert!(err.to_string().contains("not a run id"), "{err}");
    }
}
