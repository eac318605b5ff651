//! A job's `[schedule]` table, or `archon submit --cron … --tz … --overlap …
//! --catch-up … --jitter …`: a cron schedule as written by a user.
//!
//! ```toml
//! name = "nightly-report"
//! command = "make report"
//! [schedule]
//! cron = "30 2 * * *"             # 5 fields, 6 with seconds first, or @hourly, @daily, ...
//! timezone = "Europe/Berlin"      # IANA zone (default UTC)
//! overlap = "skip"                # skip (default), buffer_one, buffer_all, cancel_other, allow_all
//! catch_up = "1h"                 # fires missed during downtime run if this recent (default 1h; "0" none)
//! jitter = "30s"                  # each fire starts up to this late, fixed per fire
//! ```

use archon_core::model::units::parse_duration;
use archon_core::model::{OverlapPolicy, Schedule, SpecError, Timestamp};
use serde::Deserialize;
use utoipa::ToSchema;

use super::Naming;

/// The `[schedule]` table.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDraft {
    /// The cron expression.
    pub cron: Option<String>,
    /// The IANA time zone it is read in.
    #[serde(alias = "tz")]
    pub timezone: Option<String>,
    /// What a fire does while the previous run goes.
    pub overlap: Option<String>,
    /// How far back missed fires are run.
    pub catch_up: Option<String>,
    /// How late, at most, a fire may start.
    pub jitter: Option<String>,
}

/// How a schedule field is named to the user: `schedule.cron` in a file,
/// `--cron` on the command line.
pub(super) fn field(key: &str, naming: Naming) -> String {
    match naming {
        Naming::File => format!("schedule.{key}"),
        Naming::Flags => match key {
            "timezone" => "--tz".to_owned(),
            other => format!("--{}", other.replace('_', "-")),
        },
    }
}

impl ScheduleDraft {
    /// Validates and converts into a [`Schedule`] (the expression is checked
    /// here too, so a bad one never leaves the machine).
    pub fn into_schedule(self, naming: Naming, now: Timestamp) -> Result<Schedule, SpecError> {
        let err = |key: &str, msg: String| SpecError::new(field(key, naming), msg);
        let cron = self.cron.filter(|c| !c.trim().is_empty()).ok_or_else(|| {
            err("cron", "is required: a cron expression such as \"30 2 * * *\" or \"@hourly\"".into())
        })?;
        let mut schedule = Schedule::new(cron.trim());
        if let Some(tz) = self.timezone {
            schedule.timezone = tz.trim().to_owned();
        }
        if let Some(o) = &self.overlap {
            schedule.overlap = o.parse::<OverlapPolicy>().map_err(|e| err("overlap", e))?;
        }
        if let Some(c) = &self.catch_up {
            let window = if c.trim() == "0" { Ok(std::time::Duration::ZERO) } else { parse_duration(c) };
            schedule.catch_up = Some(window.map_err(|e| err("catch_up", e.to_string()))?);
        }
        if let Some(j) = &self.jitter {
            schedule.jitter = Some(parse_duration(j).map_err(|e| err("jitter", e.to_string()))?);
        }
        archon_core::cron::validate(&schedule, now).map_err(|e| {
            let key = e.field.strip_prefix("schedule.").unwrap_or(&e.field).to_owned();
            SpecError::new(field(&key, naming), e.message)
        })?;
        Ok(schedule)
    }
}
