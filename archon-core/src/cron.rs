//! Cron expressions evaluated in a time zone ([croner] with [chrono_tz]): when a
//! schedule fires. Pure functions of the expression, the zone and the instants
//! given; the leader's ticker uses them to propose fires, and the CLI to preview.
//!
//! What an expression means:
//! - 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds
//!   first; aliases `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily`,
//!   `@hourly`; names (`MON`, `JAN`), ranges, steps, lists, and croner's `L`, `#`
//!   and `W`. When both day fields are restricted, either matching is enough
//!   (Vixie cron).
//! - Wall-clock times are read in the schedule's IANA zone (default UTC).
//!
//! Daylight-saving changes (checked by tests for Europe/Berlin and
//! America/New_York):
//! - **Spring forward**: a time that does not exist that day (02:30 when clocks
//!   jump from 02:00 to 03:00) fires once, at the first valid instant after the
//!   gap (03:00), as Vixie cron does. It is never skipped.
//! - **Fall back**: a time that occurs twice (01:30 when clocks go back from
//!   02:00 to 01:00) fires once, at its first occurrence. It is never doubled.
//! - Expressions that fire every hour or more often keep their rhythm in real
//!   time: `0 * * * *` fires every 60 minutes across both changes.
//!
//! Temporal matches literally (skips 02:30 on the spring day, fires 01:30 twice
//! in the fall); Archon's choice is the one users of cron expect.

use std::str::FromStr as _;
use std::time::Duration;

use chrono::{DateTime, Datelike as _, TimeZone as _};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::{Cron, YEAR_LOWER_LIMIT, YEAR_UPPER_LIMIT};

use crate::model::{Schedule, SpecError, Timestamp};

/// The longest catch-up window a schedule may ask for.
pub const MAX_CATCH_UP: Duration = Duration::from_secs(366 * 24 * 3600);

/// How many fires ahead validation looks for the shortest gap (for the jitter
/// check) and whether the expression fires at all.
const LOOKAHEAD: usize = 64;

/// A cron expression parsed and bound to its time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    tz: Tz,
}

impl CronSchedule {
    /// Parses `expr` in the IANA zone `tz`. Errors name the field
    /// (`schedule.cron`, `schedule.timezone`) and the accepted form.
    pub fn parse(expr: &str, tz: &str) -> Result<CronSchedule, SpecError> {
        let tz = Tz::from_str(tz.trim()).map_err(|_| {
            SpecError::new(
                "schedule.timezone",
                format!("{tz:?} is not an IANA time zone (e.g. UTC, Europe/Berlin, America/New_York)"),
            )
        })?;
        let bad = |why: String| {
            SpecError::new(
                "schedule.cron",
                format!(
                    "{expr:?} is not a cron expression: {why} (use 5 fields \"MIN HOUR DOM MON DOW\" such as \"30 2 * * *\", \
                     6 with seconds first, or @hourly, @daily, @weekly, @monthly, @yearly)"
                ),
            )
        };
        let fields = expr.split_whitespace().count();
        if !expr.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
            return Err(bad(format!("it has {fields} fields")));
        }
        // croner skips empty list items, so a field of only commas matches
        // nothing, and every search then walks second by second to its limit.
        if let Some(field) = expr.split_whitespace().find(|f| f.split(',').any(|item| item.is_empty())) {
            return Err(bad(format!("{field:?} has an empty list item")));
        }
        let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
        let cron = parser.parse(expr).map_err(|e| bad(e.to_string()))?;
        Ok(CronSchedule { cron, tz })
    }

    /// The zone it is read in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first fire strictly after `t`, if there is one (none from instants
    /// outside croner's years 1–4999: it panics near chrono's limits).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let from = self.tz.from_utc_datetime(&DateTime::from_timestamp_millis(t.0)?.naive_utc());
        if !(YEAR_LOWER_LIMIT..YEAR_UPPER_LIMIT).contains(&from.year()) {
            return None;
        }
        let next = self.cron.find_next_occurrence(&from, false).ok()?;
        let next = Timestamp(next.timestamp_millis());
        // croner searches from the next whole second: never return `t` itself.
        if next > t { Some(next) } else { self.next_after(Timestamp(t.0 + 1)) }
    }

    /// The fires in `(after, until]`, oldest first, at most `limit` of them.
    pub fn fires(&self, after: Timestamp, until: Timestamp, limit: usize) -> Vec<Timestamp> {
        let mut out = Vec::new();
        let mut t = after;
        while out.len() < limit {
            match self.next_after(t) {
                Some(next) if next <= until => {
                    out.push(next);
                    t = next;
                }
                _ => break,
            }
        }
        out
    }

    /// The next `n` fires after `t`.
    pub fn upcoming(&self, t: Timestamp, n: usize) -> Vec<Timestamp> {
        self.fires(t, Timestamp(i64::MAX), n)
    }

    /// An instant as wall-clock time in the schedule's zone, e.g.
    /// `2026-03-29 03:00:00 CEST`.
    pub fn local(&self, t: Timestamp) -> String {
        match DateTime::from_timestamp_millis(t.0) {
            Some(utc) => utc.with_timezone(&self.tz).format("%Y-%m-%d %H:%M:%S %Z").to_string(),
            None => t.to_string(),
        }
    }
}

/// Checks a schedule as a whole: the expression and zone parse, it fires at all,
/// the catch-up window is at most [`MAX_CATCH_UP`], and the jitter is shorter
/// than the shortest gap between its fires (a longer one would reorder them).
/// `now` is where the lookahead starts.
pub fn validate(schedule: &Schedule, now: Timestamp) -> Result<CronSchedule, SpecError> {
    let cron = CronSchedule::parse(&schedule.cron, &schedule.timezone)?;
    let ahead = cron.upcoming(now, LOOKAHEAD);
    if ahead.is_empty() {
        return Err(SpecError::new(
            "schedule.cron",
            format!("{:?} never fires (no date matches it); check the day and month fields", schedule.cron),
        ));
    }
    if schedule.catch_up.is_some_and(|c| c > MAX_CATCH_UP) {
        return Err(SpecError::new("schedule.catch_up", "must be at most 366d (0 catches nothing up)"));
    }
    if let Some(jitter) = schedule.jitter.filter(|j| !j.is_zero()) {
        let gap = ahead.windows(2).map(|w| w[1].since(w[0])).min();
        if let Some(gap) = gap
            && jitter >= gap
        {
            return Err(SpecError::new(
                "schedule.jitter",
                format!(
                    "{} is not shorter than the {} between fires of {:?}: jitter must be less than the interval",
                    humantime::format_duration(jitter),
                    humantime::format_duration(gap),
                    schedule.cron
                ),
            ));
        }
    }
    Ok(cron)
}

#[cfg(test)]
mod tests;
