//! When schedules fire: daylight-saving changes in two zones, calendar edges,
//! aliases and seconds, bad expressions, and random text that must never panic.

use std::time::Duration;

use chrono::{TimeZone as _, Utc};
use proptest::prelude::*;

use super::*;

/// An instant given in UTC.
fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Timestamp {
    Timestamp(Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).single().expect("valid UTC time").timestamp_millis())
}

fn fires(expr: &str, tz: &str, from: Timestamp, to: Timestamp) -> Vec<Timestamp> {
    CronSchedule::parse(expr, tz).expect("parses").fires(from, to, 10_000)
}

fn local(expr: &str, tz: &str, from: Timestamp, to: Timestamp) -> Vec<String> {
    let cron = CronSchedule::parse(expr, tz).expect("parses");
    cron.fires(from, to, 10_000).into_iter().map(|t| cron.local(t)).collect()
}

#[test]
fn a_daily_0230_job_fires_once_on_the_spring_forward_day_at_the_first_valid_instant() {
    // Berlin: on 2026-03-29 clocks jump from 02:00 CET to 03:00 CEST.
    let got = local("30 2 * * *", "Europe/Berlin", utc(2026, 3, 27, 12, 0), utc(2026, 3, 30, 12, 0));
    assert_eq!(got, ["2026-03-28 02:30:00 CET", "2026-03-29 03:00:00 CEST", "2026-03-30 02:30:00 CEST"]);
    // New York: on 2026-03-08 clocks jump from 02:00 EST to 03:00 EDT.
    let got = local("30 2 * * *", "America/New_York", utc(2026, 3, 7, 12, 0), utc(2026, 3, 9, 12, 0));
    assert_eq!(got, ["2026-03-08 03:00:00 EDT", "2026-03-09 02:30:00 EDT"]);
}

#[test]
fn a_time_that_occurs_twice_on_the_fall_back_day_fires_once_at_its_first_occurrence() {
    // Berlin: on 2026-10-25 clocks go back from 03:00 CEST to 02:00 CET, so
    // 02:30 happens at 00:30 UTC and again at 01:30 UTC.
    let got = fires("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12, 0), utc(2026, 10, 26, 12, 0));
    assert_eq!(got, [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]);
    // New York: on 2026-11-01 clocks go back from 02:00 EDT to 01:00 EST.
    let got = local("30 1 * * *", "America/New_York", utc(2026, 10, 31, 12, 0), utc(2026, 11, 2, 12, 0));
    assert_eq!(got, ["2026-11-01 01:30:00 EDT", "2026-11-02 01:30:00 EST"]);
}

#[test]
fn an_hourly_job_keeps_its_rhythm_across_both_changes() {
    for (tz, spring, fall) in [
        ("Europe/Berlin", utc(2026, 3, 28, 12, 0), utc(2026, 10, 24, 12, 0)),
        ("America/New_York", utc(2026, 3, 7, 12, 0), utc(2026, 10, 31, 12, 0)),
    ] {
        for from in [spring, fall] {
            let got = fires("0 * * * *", tz, from, from.plus(Duration::from_secs(48 * 3600)));
            assert_eq!(got.len(), 48, "{tz} from {from}: one fire per real hour");
            for pair in got.windows(2) {
                assert_eq!(pair[1].since(pair[0]), Duration::from_secs(3600), "{tz}: {} → {}", pair[0], pair[1]);
            }
        }
    }
}

#[test]
fn the_31st_fires_only_in_months_that_have_one_and_29_february_only_in_leap_years() {
    let got = local("0 0 31 * *", "UTC", utc(2025, 12, 31, 12, 0), utc(2026, 12, 31, 12, 0));
    let months: Vec<&str> = got.iter().map(|s| &s[5..7]).collect();
    assert_eq!(months, ["01", "03", "05", "07", "08", "10", "12"]);
    let got = local("0 0 29 2 *", "Europe/Berlin", utc(2025, 1, 1, 0, 0), utc(2034, 1, 1, 0, 0));
    assert_eq!(got, ["2028-02-29 00:00:00 CET", "2032-02-29 00:00:00 CET"]);
}

#[test]
fn aliases_and_six_field_expressions_with_seconds_parse() {
    let from = utc(2026, 1, 1, 0, 0);
    let day = from.plus(Duration::from_secs(86_400));
    assert_eq!(fires("@hourly", "UTC", from, day).len(), 24);
    assert_eq!(fires("@daily", "UTC", from, day), [day]);
    assert_eq!(fires("@weekly", "UTC", from, from.plus(Duration::from_secs(7 * 86_400))).len(), 1);
    let minute = from.plus(Duration::from_secs(60));
    assert_eq!(fires("*/15 * * * * *", "UTC", from, minute).len(), 4);
    assert_eq!(fires("0 9 * * MON-FRI", "UTC", from, from.plus(Duration::from_secs(7 * 86_400))).len(), 5);
}

#[test]
fn bad_expressions_and_zones_are_refused_naming_the_field() {
    for (expr, tz, field, says) in [
        ("30 2 * *", "UTC", "schedule.cron", "4 fields"),
        ("* * * * * * *", "UTC", "schedule.cron", "7 fields"),
        ("61 * * * *", "UTC", "schedule.cron", "is not a cron expression"),
        ("every day", "UTC", "schedule.cron", "is not a cron expression"),
        ("@sometimes", "UTC", "schedule.cron", "is not a cron expression"),
        ("30 2 * * *", "Mars/Olympus", "schedule.timezone", "is not an IANA time zone"),
        ("30 2 * * *", "", "schedule.timezone", "is not an IANA time zone"),
    ] {
        let err = CronSchedule::parse(expr, tz).expect_err(expr);
        assert_eq!(err.field, field, "{expr} {tz}: {err}");
        assert!(err.message.contains(says), "{expr} {tz}: {err}");
    }
}

#[test]
fn impossible_combinations_are_refused_naming_the_field() {
    let now = utc(2026, 1, 1, 0, 0);
    let never = Schedule::new("0 0 30 2 *");
    assert_eq!(validate(&never, now).unwrap_err().field, "schedule.cron");
    let mut jittery = Schedule::new("*/10 * * * *");
    jittery.jitter = Some(Duration::from_secs(600));
    let err = validate(&jittery, now).unwrap_err();
    assert_eq!(err.field, "schedule.jitter", "{err}");
    assert!(err.message.contains("10m"), "{err}");
    jittery.jitter = Some(Duration::from_secs(599));
    assert!(validate(&jittery, now).is_ok());
    let mut long = Schedule::new("@daily");
    long.catch_up = Some(Duration::from_secs(400 * 86_400));
    assert_eq!(validate(&long, now).unwrap_err().field, "schedule.catch_up");
}

#[test]
fn next_after_is_strictly_later_even_within_a_second() {
    let cron = CronSchedule::parse("* * * * * *", "UTC").unwrap();
    let t = Timestamp(1_000_500);
    assert_eq!(cron.next_after(t), Some(Timestamp(1_001_000)));
    assert_eq!(cron.next_after(Timestamp(1_001_000)), Some(Timestamp(1_002_000)));
}

/// Random text, and random near-cron text, never makes the parser or the
/// evaluator panic. Prints its seed; `ARCHON_TEST_SEED=N cargo test -p
/// archon-core cron::tests::random_text` replays one run exactly.
#[test]
fn random_text_never_panics_the_parser_or_the_evaluator() {
    use proptest::test_runner::{Config, RngSeed, TestRunner};
    let seed = std::env::var("ARCHON_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64)
    });
    eprintln!(
        "cron fuzz seed: {seed} (replay with ARCHON_TEST_SEED={seed} cargo test -p archon-core cron::tests::random_text)"
    );
    let mut runner = TestRunner::new(Config {
        cases: 2000,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        ".{0,40}",
        prop::collection::vec("[0-9*/,LW#?A-Z@-]{1,6}", 1..8),
        prop::sample::select(vec!["UTC", "Europe/Berlin", "America/New_York", "Nowhere/Else"]),
        0i64..4_102_444_800_000,
    );
    runner
        .run(&strategy, |(junk, fields, tz, at)| {
            for expr in [junk, fields.join(" ")] {
                if let Ok(cron) = CronSchedule::parse(&expr, tz) {
                    let _ = cron.upcoming(Timestamp(at), 3);
                }
                let schedule = Schedule { cron: expr.clone(), timezone: tz.into(), ..Schedule::new("") };
                let _ = validate(&schedule, Timestamp(at));
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
}
