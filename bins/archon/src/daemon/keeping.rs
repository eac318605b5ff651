//! What a manager keeps and accepts: how long finished runs stay in the history,
//! how long idempotency keys are honoured, how much output it keeps, and the
//! limits on every input. The same settings are flags of `archon-manager` and
//! `archon dev` and keys of the manager's config file; each has a default.

use std::time::Duration;

use archon_core::manager::{Limits, ManagerConfig};
use archon_core::model::units::parse_bytes;
use serde::Deserialize;

/// The settings as given (flags, environment or config file keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args, Deserialize)]
#[serde(default)]
pub struct KeepingFlags {
    /// How long finished runs stay in the history, e.g. 7d, 12h [default: 7d].
    #[arg(long, env = "ARCHON_HISTORY_RETENTION", value_name = "DURATION")]
    pub history_retention: Option<String>,
    /// How long an idempotency key makes a repeated submit return the first job [default: 24h].
    #[arg(long, env = "ARCHON_IDEMPOTENCY_WINDOW", value_name = "DURATION")]
    pub idempotency_window: Option<String>,
    /// Output kept per stream of each attempt when its job does not say [default: 1MiB].
    #[arg(long, env = "ARCHON_OUTPUT_LIMIT", value_name = "SIZE")]
    pub output_limit: Option<String>,
    /// The most output per stream a job may ask to keep [default: 16MiB].
    #[arg(long, value_name = "SIZE")]
    pub max_output_limit: Option<String>,
    /// Job specs in one submit [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_submit_specs: Option<usize>,
    /// Bytes of a job's task: command, script, argv, function input [default: 512KiB].
    #[arg(long, value_name = "SIZE")]
    pub max_task_bytes: Option<String>,
    /// Bytes of a job's environment [default: 128KiB].
    #[arg(long, value_name = "SIZE")]
    pub max_env_bytes: Option<String>,
    /// Jobs one job may depend on [default: 1000].
    #[arg(long, value_name = "N")]
    pub max_depends_on: Option<usize>,
    /// Jobs in one workflow [default: 5000].
    #[arg(long, value_name = "N")]
    pub max_workflow_nodes: Option<usize>,
    /// Labels a worker may announce [default: 256].
    #[arg(long, value_name = "N")]
    pub max_worker_labels: Option<usize>,
    /// Running attempts a worker may announce when it connects [default: 65536].
    #[arg(long, value_name = "N")]
    pub max_announced_attempts: Option<usize>,
    /// Attempts a worker may hold queued beyond what fits it [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_worker_queue: Option<u32>,
    /// The largest chunk of live output a worker may send [default: 1MiB].
    #[arg(long, value_name = "SIZE")]
    pub max_output_chunk: Option<String>,
    /// The largest Raft log entry; larger proposals are split [default: 1MiB].
    #[arg(long, value_name = "SIZE")]
    pub max_entry_bytes: Option<String>,
    /// How often a Raft leader heartbeats its followers; also how long it waits
    /// for one AppendEntries or vote to be answered [default: 100ms].
    #[arg(long, value_name = "DURATION")]
    pub raft_heartbeat: Option<String>,
    /// How long a follower waits without a leader before standing, a random
    /// time in MIN-MAX [default: 500ms-1s]. Longer keeps leadership on busy
    /// or small machines; failover takes about twice MAX.
    #[arg(long, value_name = "MIN-MAX")]
    pub election_timeout: Option<String>,
    /// How often the dashboard's last-hour charts sample the cluster, e.g. 10s [default: 10s].
    #[arg(long, env = "ARCHON_TIMELINE_EVERY", value_name = "DURATION")]
    pub timeline_every: Option<String>,
}

/// The settings, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keeping {
    /// How long finished runs stay in the history.
    pub history_retention: Duration,
    /// How long an idempotency key is honoured.
    pub idempotency_window: Duration,
    /// Bounds on inputs and on kept output.
    pub limits: Limits,
    /// The largest Raft log entry.
    pub max_entry_bytes: usize,
    /// How often the last hour's timeline samples the cluster.
    pub timeline_every: Duration,
    /// The Raft leader's heartbeat (and RPC deadline).
    pub raft_heartbeat: Duration,
    /// The Raft election timeout's range.
    pub election_timeout: (Duration, Duration),
}

impl Default for Keeping {
    fn default() -> Self {
        let core = ManagerConfig::default();
        let raft = archon_raft::RaftConfig::new(1, "", "");
        Keeping {
            history_retention: core.history_retention,
            idempotency_window: core.idempotency_window,
            limits: core.limits,
            max_entry_bytes: raft.max_entry_bytes,
            timeline_every: core.timeline_every,
            raft_heartbeat: raft.heartbeat_interval,
            election_timeout: raft.election_timeout,
        }
    }
}

fn size(field: &str, value: &str) -> anyhow::Result<u64> {
    parse_bytes(value).map_err(|e| anyhow::anyhow!("{field}: {e}"))
}

fn at_least_one(field: &str, n: usize) -> anyhow::Result<usize> {
    if n == 0 {
        anyhow::bail!("{field}: must be at least 1");
    }
    Ok(n)
}

impl Keeping {
    /// Applies what `flags` give, naming a bad value's setting.
    pub fn apply(&mut self, flags: &KeepingFlags) -> anyhow::Result<()> {
        let limits = &mut self.limits;
        if let Some(d) = &flags.history_retention {
            self.history_retention = super::duration("history_retention", d)?;
            if self.history_retention.is_zero() {
                anyhow::bail!("history_retention: must be longer than 0 (e.g. 1h, 7d)");
            }
        }
        if let Some(d) = &flags.idempotency_window {
            self.idempotency_window = super::duration("idempotency_window", d)?;
        }
        if let Some(s) = &flags.output_limit {
            limits.output_limit = size("output_limit", s)?;
        }
        if let Some(s) = &flags.max_output_limit {
            limits.max_output_limit = size("max_output_limit", s)?;
        }
        if let Some(n) = flags.max_submit_specs {
            limits.max_submit_specs = at_least_one("max_submit_specs", n)?;
        }
        if let Some(s) = &flags.max_task_bytes {
            limits.max_task_bytes = size("max_task_bytes", s)? as usize;
        }
        if let Some(s) = &flags.max_env_bytes {
            limits.max_env_bytes = size("max_env_bytes", s)? as usize;
        }
        if let Some(n) = flags.max_depends_on {
            limits.max_depends_on = n;
        }
        if let Some(n) = flags.max_workflow_nodes {
            limits.max_workflow_nodes = at_least_one("max_workflow_nodes", n)?;
        }
        if let Some(n) = flags.max_worker_labels {
            limits.max_worker_labels = n;
        }
        if let Some(n) = flags.max_announced_attempts {
            limits.max_announced_attempts = n;
        }
        if let Some(n) = flags.max_worker_queue {
            limits.max_worker_queue = n;
        }
        if let Some(s) = &flags.max_output_chunk {
            limits.max_output_chunk = at_least_one("max_output_chunk", size("max_output_chunk", s)? as usize)?;
        }
        if let Some(d) = &flags.timeline_every {
            self.timeline_every = super::duration("timeline_every", d)?;
            if self.timeline_every < Duration::from_millis(100) || self.timeline_every > Duration::from_secs(600) {
                anyhow::bail!("timeline_every: must be between 100ms and 10m (e.g. 10s)");
            }
        }
        if let Some(d) = &flags.raft_heartbeat {
            self.raft_heartbeat = super::duration("raft_heartbeat", d)?;
        }
        if let Some(range) = &flags.election_timeout {
            let parsed = range.split_once('-').map(|(min, max)| {
                Ok::<_, anyhow::Error>((
                    super::duration("election_timeout", min.trim())?,
                    super::duration("election_timeout", max.trim())?,
                ))
            });
            self.election_timeout = match parsed {
                Some(range) => range?,
                None => anyhow::bail!("election_timeout: {range:?} is not MIN-MAX (e.g. 500ms-1s)"),
            };
        }
        if flags.raft_heartbeat.is_some() || flags.election_timeout.is_some() {
            let (min, max) = self.election_timeout;
            if self.raft_heartbeat < Duration::from_millis(10) || min <= self.raft_heartbeat * 2 || max <= min {
                anyhow::bail!(
                    "election_timeout: {min:?}-{max:?} with raft_heartbeat {:?}: the heartbeat must be at least \
                     10ms, MIN more than twice the heartbeat, and MAX more than MIN (e.g. 100ms with 500ms-1s)",
                    self.raft_heartbeat
                );
            }
        }
        if let Some(s) = &flags.max_entry_bytes {
            self.max_entry_bytes = size("max_entry_bytes", s)? as usize;
            if self.max_entry_bytes < 64 << 10 {
                anyhow::bail!("max_entry_bytes: must be at least 64KiB (a log entry holds whole commands)");
            }
        }
        if limits.output_limit == 0 || limits.output_limit > limits.max_output_limit {
            anyhow::bail!(
                "output_limit: must be between 1 byte and max_output_limit ({} now)",
                archon_core::model::units::format_bytes(limits.max_output_limit)
            );
        }
        Ok(())
    }

    /// `config` keeping what these settings say.
    pub fn configure(&self, config: ManagerConfig) -> ManagerConfig {
        ManagerConfig {
            history_retention: self.history_retention,
            idempotency_window: self.idempotency_window,
            limits: self.limits.clone(),
            // A turn is one proposal; the store splits larger ones, but each turn
            // stays within one entry.
            max_batch_bytes: self.max_entry_bytes,
            timeline_every: self.timeline_every,
            ..config
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_with_their_units_and_bad_ones_name_the_key() {
        let mut k = Keeping::default();
        assert_eq!(k.history_retention, Duration::from_secs(7 * 86_400));
        k.apply(&KeepingFlags {
            history_retention: Some("1m".into()),
            output_limit: Some("64KiB".into()),
            max_task_bytes: Some("2MiB".into()),
            max_entry_bytes: Some("8MiB".into()),
            raft_heartbeat: Some("100ms".into()),
            election_timeout: Some("500ms-1s".into()),
            ..KeepingFlags::default()
        })
        .unwrap();
        assert_eq!(k.history_retention, Duration::from_secs(60));
        assert_eq!(k.raft_heartbeat, Duration::from_millis(100));
        assert_eq!(k.election_timeout, (Duration::from_millis(500), Duration::from_secs(1)));
        assert_eq!((k.limits.output_limit, k.limits.max_task_bytes), (64 << 10, 2 << 20));
        assert_eq!(k.max_entry_bytes, 8 << 20);
        let bad = |flags: KeepingFlags| Keeping::default().apply(&flags).unwrap_err().to_string();
        assert!(
            bad(KeepingFlags { election_timeout: Some("1s".into()), ..Default::default() })
                .starts_with("election_timeout: \"1s\" is not MIN-MAX")
        );
        assert!(
            bad(KeepingFlags { election_timeout: Some("90ms-1s".into()), ..Default::default() })
                .contains("MIN more than twice the heartbeat")
        );
        assert!(
            bad(KeepingFlags { history_retention: Some("soon".into()), ..Default::default() })
                .starts_with("history_retention: \"soon\" is not a duration")
        );
        assert!(
            bad(KeepingFlags { max_env_bytes: Some("lots".into()), ..Default::default() })
                .starts_with("max_env_bytes: \"lots\" is not a size")
        );
        assert!(
            bad(KeepingFlags { output_limit: Some("1GiB".into()), ..Default::default() })
                .starts_with("output_limit: must be between 1 byte and max_output_limit (16MiB now)")
        );
        assert!(
            bad(KeepingFlags { timeline_every: Some("10ms".into()), ..Default::default() })
                .starts_with("timeline_every: must be between 100ms and 10m")
        );
        assert!(
            bad(KeepingFlags { max_entry_bytes: Some("1KiB".into()), ..Default::default() })
                .starts_with("max_entry_bytes: must be at least 64KiB")
        );
    }
}
