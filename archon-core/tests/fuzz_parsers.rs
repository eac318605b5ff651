//! Fuzzing of the parsers users feed text to: units (durations, CPU, sizes), cron
//! expressions and their time zones, and the small `FromStr`s of the model
//! (constraints, ids, policy and state names). Each property: never a panic,
//! never more memory than a fixed multiple of the input (see `BUDGET`).
//!
//! Modest case counts by default; a long run: `scripts/fuzz` (100,000 cases each),
//! or `PROPTEST_CASES=N cargo nextest run -p archon-core --test fuzz_parsers`.
//! Each property prints its seed and a one-line replay command.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fuzz_harness/mod.rs"]
mod fuzz_harness;

use std::cell::Cell;
use std::time::{Duration, Instant};

use archon_core::cron::{CronSchedule, validate};
use archon_core::model::units::{format_cpu, format_duration, parse_bytes, parse_cpu, parse_duration};
use archon_core::model::{
    Constraint, EdgeCondition, JobId, OverlapPolicy, RunId, RunState, Schedule, TaskKind, Timestamp, WorkerId,
    WorkflowId, WorkflowState,
};
use fuzz_harness::{Budget, Fuzz, peak_bytes};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const TARGET: &str = "-p archon-core --test fuzz_parsers";

/// What parsing one string may hold at its peak. A parser keeps a few copies of
/// its input at most (the input echoed in an error, escaped: `{:?}` writes a
/// control character as up to 10 bytes, `\u{10ffff}`), so 64 bytes per input
/// byte is generous; the base covers fixed tables, error texts and the fires a
/// call is asked for (at most `MAX_FIRES`).
const BUDGET: Budget = Budget { per_byte: 64, base: 64 * 1024 };

/// The most fires one evaluation asks for.
const MAX_FIRES: usize = 16;

/// The longest one parse, search or validation may take. The slowest seen take
/// tens of milliseconds (an expression that never fires: croner looks 3,000
/// years ahead); an expression that made croner walk second by second took 13 s
/// (see `a_field_of_only_commas_is_refused_at_once`). Generous for a loaded
/// debug build.
const SLOW: Duration = Duration::from_secs(5);

/// Runs `f`, failing the case when it takes longer than [`SLOW`].
fn quick<T>(what: &str, f: impl FnOnce() -> Result<T, TestCaseError>) -> Result<T, TestCaseError> {
    let started = Instant::now();
    let out = f()?;
    let took = started.elapsed();
    prop_assert!(took < SLOW, "{what} took {took:?}");
    Ok(out)
}

/// Text a user might type for a duration, a CPU amount or a size, right or
/// nearly right, or anything at all.
fn unit_text() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        "[0-9]{0,4}",
        "[0-9]{15,40}",
        "[0-9]{0,6}\\.[0-9]{0,20}",
        "[0-9]e[+-]?[0-9]{1,4}",
        Just("18446744073709551615".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("NaN".to_owned()),
        Just("inf".to_owned()),
        Just("-0".to_owned()),
    ];
    let unit = prop::sample::select(vec![
        "", "ns", "us", "ms", "s", "sec", "m", "min", "h", "d", "w", "M", "y", "years", "k", "K", "G", "T", "Ki", "Mi",
        "Gi", "Ti", "B", "b", "KiB", "MiB", "GiB", "TiB", "m ", " ", "\u{0}", "é",
    ]);
    let piece =
        (number, unit, prop::sample::select(vec!["", " ", "  "])).prop_map(|(n, u, gap)| format!("{n}{gap}{u}"));
    prop_oneof![
        3 => (prop::sample::select(vec!["", " ", "-", "+", "\t"]), prop::collection::vec(piece, 1..4))
            .prop_map(|(sign, pieces)| format!("{sign}{}", pieces.concat())),
        1 => "\\PC{0,40}",
        1 => ".{0,12}",
    ]
}

/// One cron field whose values run `lo..=hi` (with `names` for some of them,
/// and `extra` atoms such as `L` or `5#2`): mostly right, sometimes out of
/// range or odd.
fn cron_field(
    lo: u64,
    hi: u64,
    names: &'static [&'static str],
    extra: &'static [&'static str],
) -> BoxedStrategy<String> {
    let number = prop_oneof![
        16 => (lo..=hi).prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![hi + 1, lo.saturating_sub(1), 99, 4_294_967_296, u64::MAX]).prop_map(|n| n.to_string()),
    ];
    let atom = if names.is_empty() {
        number.boxed()
    } else {
        prop_oneof![3 => number, 1 => prop::sample::select(names.to_vec()).prop_map(str::to_owned)].boxed()
    };
    let span = (lo..=hi, 0..=hi - lo).prop_map(move |(a, len)| (a, (a + len).min(hi)));
    let range = prop_oneof![
        6 => (span, prop::option::weighted(0.3, 1..=hi.max(1))).prop_map(|((a, b), step)| match step {
            Some(step) => format!("{a}-{b}/{step}"),
            None => format!("{a}-{b}"),
        }),
        3 => atom.clone(),
        1 => (atom.clone(), atom, prop::option::of(0..=hi + 1)).prop_map(|(a, b, step)| match step {
            Some(step) => format!("{a}-{b}/{step}"),
            None => format!("{a}-{b}"),
        }),
    ];
    let mut choices = vec![
        (6, Just("*".to_owned()).boxed()),
        (1, (1..=hi.max(1) + 1).prop_map(|n| format!("*/{n}")).boxed()),
        (4, range.clone().boxed()),
        (2, prop::collection::vec(range, 2..4).prop_map(|parts| parts.join(",")).boxed()),
        (1, "[0-9*/,LW#?A-Z-]{1,4}".boxed()),
    ];
    if !extra.is_empty() {
        choices.push((1, prop::sample::select(extra.to_vec()).prop_map(str::to_owned).boxed()));
    }
    prop::strategy::Union::new_weighted(choices).boxed()
}

/// A cron expression: 5 fields or 6 (seconds first), an alias, too few or too
/// many fields, or junk.
fn cron_expr() -> impl Strategy<Value = String> {
    const MONTHS: &[&str] = &["JAN", "feb", "Mar", "DEC", "FOO"];
    const DAYS: &[&str] = &["MON", "tue", "Sun", "SAT", "7", "BAR"];
    let fields = (
        prop::option::of(cron_field(0, 59, &[], &[])),
        cron_field(0, 59, &[], &[]),
        cron_field(0, 23, &[], &[]),
        cron_field(1, 31, &[], &["L", "W", "15W", "LW", "L-3", "?"]),
        cron_field(1, 12, MONTHS, &[]),
        cron_field(0, 7, DAYS, &["5L", "FRI#3", "1#5", "0#0", "?", "L"]),
    )
        .prop_map(|(sec, min, hour, dom, mon, dow)| {
            sec.into_iter().chain([min, hour, dom, mon, dow]).collect::<Vec<_>>().join(" ")
        });
    let alias = prop::sample::select(vec![
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
        "@every",
        "@reboot",
        "@",
        " @daily ",
        "@DAILY",
    ])
    .prop_map(str::to_owned);
    let any_field = cron_field(0, 60, DAYS, &["L", "W", "#"]);
    prop_oneof![
        12 => fields,
        1 => prop::collection::vec(any_field.clone(), 0..9).prop_map(|f| f.join(" ")),
        1 => (alias, prop::sample::select(vec!["", "", " ", "x", " * * * * *"])).prop_map(|(a, tail)| format!("{a}{tail}")),
        1 => "\\PC{0,40}",
        1 => prop::collection::vec(any_field, 5..=6).prop_map(|f| f.join("\t\n ")),
    ]
}

/// A time zone: any of the IANA zones, as written or mangled, or junk.
fn zone() -> impl Strategy<Value = String> {
    let known = prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec()).prop_map(|tz| tz.name().to_owned());
    prop_oneof![
        10 => known.clone(),
        1 => known.clone().prop_map(|z| z.to_lowercase()),
        1 => known.prop_map(|z| format!(" {z}\t")),
        1 => prop::sample::select(vec!["", "UTC", "utc", "Z", "GMT+5", "Etc/GMT-14", "Nowhere/Else", "../../etc"])
            .prop_map(str::to_owned),
        1 => "\\PC{0,30}",
    ]
}

/// An instant: mostly on or next to a whole hour of 1900–2200 (where cron fires
/// and clocks change), sometimes anywhere an `i64` reaches.
fn instant() -> impl Strategy<Value = Timestamp> {
    let hour = 3_600_000i64;
    let near_hour =
        (-613_608i64..=2_012_616, prop::sample::select(vec![0i64, 1, -1, 999, 1_000, 1_800_000, -1_800_000]))
            .prop_map(move |(hours, off)| Timestamp(hours * hour + off));
    prop_oneof![
        6 => near_hour,
        2 => (-2_208_988_800_000i64..7_258_118_400_000).prop_map(Timestamp),
        1 => any::<i64>().prop_map(Timestamp),
        1 => prop::sample::select(vec![i64::MIN, i64::MAX, i64::MAX - 1, 8_210_266_876_799_999, -8_334_601_228_800_000])
            .prop_map(Timestamp),
    ]
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..=86_400_000).prop_map(Duration::from_millis),
        any::<u64>().prop_map(Duration::from_millis),
        Just(Duration::MAX),
    ]
}

#[test]
fn unit_parsers_never_panic_and_read_back_what_they_format() {
    Fuzz::new(TARGET, "unit_parsers_never_panic", 2_000).run(&unit_text(), |text| {
        let n = text.len();
        let d = BUDGET.check("parse_duration", n, || parse_duration(&text))?;
        let cpu = BUDGET.check("parse_cpu", n, || parse_cpu(&text))?;
        let bytes = BUDGET.check("parse_bytes", n, || parse_bytes(&text))?;
        for err in [d.as_ref().err(), cpu.as_ref().err(), bytes.as_ref().err()].into_iter().flatten() {
            prop_assert_eq!(&err.input, &text, "an error echoes the input as given");
        }
        if let Ok(d) = d {
            let shown = format_duration(d);
            let millis = Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            prop_assert_eq!(parse_duration(&shown), Ok(millis), "{:?} shown as {:?}", text, shown);
        }
        if let Ok(m) = cpu {
            prop_assert_eq!(parse_cpu(&format_cpu(m)), Ok(m));
        }
        Ok(())
    });
}

#[test]
fn cron_expressions_in_any_zone_never_panic_and_fire_in_order() {
    let input = (cron_expr(), zone(), instant(), duration(), prop::option::of(duration()), 0..=MAX_FIRES);
    let (cases, parsed) = (Cell::new(0u32), Cell::new(0u32));
    Fuzz::new(TARGET, "cron_expressions_in_any_zone", 1_000).run(&input, |(expr, tz, at, span, jitter, limit)| {
        cases.set(cases.get() + 1);
        let n = expr.len() + tz.len();
        let Ok(cron) = quick("parse", || BUDGET.check("CronSchedule::parse", n, || CronSchedule::parse(&expr, &tz)))?
        else {
            return Ok(());
        };
        parsed.set(parsed.get() + 1);
        let next = quick("next_after", || BUDGET.check("next_after", n, || cron.next_after(at)))?;
        if let Some(next) = next {
            prop_assert!(next > at, "{expr:?} in {tz}: next after {at:?} is {next:?}");
        }
        let until = Timestamp(at.0.saturating_add(i64::try_from(span.as_millis()).unwrap_or(i64::MAX)));
        let fires = quick("fires", || BUDGET.check("fires", n, || cron.fires(at, until, limit)))?;
        prop_assert!(fires.len() <= limit);
        prop_assert!(
            fires.iter().all(|t| *t > at && *t <= until),
            "{expr:?} in {tz}: {fires:?} outside ({at:?}, {until:?}]"
        );
        prop_assert!(fires.windows(2).all(|w| w[0] < w[1]), "{expr:?} in {tz}: fires out of order: {fires:?}");
        if let (Some(next), Some(first)) = (next, fires.first()) {
            prop_assert_eq!(next, *first, "next_after and fires disagree");
        }
        BUDGET.check("local", n, || cron.local(at))?;
        let _ = cron.timezone();
        let schedule =
            Schedule { cron: expr.clone(), timezone: tz.clone(), jitter, catch_up: Some(span), ..Schedule::new("") };
        let jitter_for = schedule.jitter_for(at.0 as u64, at);
        if let Some(j) = jitter.filter(|j| !j.is_zero()) {
            prop_assert!(jitter_for < j);
        }
        Ok(())
    });
    // The generator gets past the parser often enough to test the evaluator
    // (about 1 in 3 parse).
    let (parsed, cases) = (parsed.get(), cases.get());
    assert!(cases < 100 || parsed * 5 >= cases, "only {parsed} of {cases} expressions parsed");
}

#[test]
fn schedule_validation_never_panics_on_any_expression_zone_or_window() {
    let input = (cron_expr(), zone(), instant(), prop::option::of(duration()), prop::option::of(duration()));
    Fuzz::new(TARGET, "schedule_validation_never_panics", 500).run(&input, |(expr, tz, now, catch_up, jitter)| {
        let schedule = Schedule { cron: expr, timezone: tz, catch_up, jitter, ..Schedule::new("") };
        let n = schedule.cron.len() + schedule.timezone.len();
        if let Err(e) = quick("validate", || BUDGET.check("validate", n, || validate(&schedule, now)))? {
            prop_assert!(e.field.starts_with("schedule."), "the error names a schedule field: {e}");
        }
        Ok(())
    });
}

#[test]
fn model_names_and_ids_parse_any_text_without_panic() {
    let text = prop_oneof![
        "\\PC{0,30}",
        "(job|run|wf|w|JOB)-?[0-9]{0,25}",
        "[a-z_ -]{0,14}",
        "[ !=a-z]{0,6}(=|!=)?[ =a-z]{0,6}",
    ];
    Fuzz::new(TARGET, "model_names_and_ids_parse_any_text", 2_000).run(&text, |text| {
        let n = text.len();
        BUDGET.check("Constraint", n, || text.parse::<Constraint>().is_ok())?;
        BUDGET.check("ids", n, || {
            (
                text.parse::<JobId>().is_ok(),
                text.parse::<RunId>().is_ok(),
                text.parse::<WorkerId>().is_ok(),
                text.parse::<WorkflowId>().is_ok(),
            )
        })?;
        BUDGET.check("names", n, || {
            (
                text.parse::<OverlapPolicy>().is_ok(),
                text.parse::<EdgeCondition>().is_ok(),
                text.parse::<RunState>().is_ok(),
                text.parse::<TaskKind>().is_ok(),
                text.parse::<WorkflowState>().is_ok(),
            )
        })?;
        if let Ok(id) = text.parse::<JobId>() {
            prop_assert_eq!(id.to_string().parse::<JobId>().ok(), Some(id));
        }
        Ok(())
    });
}

/// The budget is not vacuous: a parser that sizes a buffer from a number it read
/// fails it, one that copies its input passes.
#[test]
fn the_memory_budget_catches_an_allocation_sized_by_the_input() {
    let sized_by_number = |s: &str| Vec::<u8>::with_capacity(s.parse().unwrap_or(0));
    let result: Result<_, TestCaseError> = BUDGET.check("sized by a number", 8, || sized_by_number("67108864"));
    assert!(result.is_err(), "64 MiB for an input of 8 bytes passed the budget");
    assert!(BUDGET.check("a copy", 8, || "67108864".repeat(3)).is_ok());
    let (peak, _) = peak_bytes(|| vec![0u8; 1 << 20]);
    assert!(peak >= 1 << 20, "the counting allocator saw {peak} bytes of a 1 MiB vector");
}

/// Found by `cron_expressions_in_any_zone`: an instant past the year 9999 (any
/// `i64` can come off the wire) made `Timestamp`'s `Display` fail, so
/// `to_string` panicked; `since` overflowed on far-apart instants.
#[test]
fn extreme_instants_display_and_subtract_without_panic() {
    assert_eq!(Timestamp(i64::MAX).to_string(), format!("{}ms", i64::MAX));
    assert_eq!(Timestamp(253_402_300_799_999).to_string(), "9999-12-31T23:59:59.999Z");
    assert_eq!(Timestamp(i64::MAX).since(Timestamp(i64::MIN)), Duration::from_millis(i64::MAX as u64));
    assert_eq!(Timestamp(i64::MIN).since(Timestamp(i64::MAX)), Duration::ZERO);
    let cron = CronSchedule::parse("@yearly", "UTC").unwrap();
    assert_eq!(cron.local(Timestamp(i64::MAX)), format!("{}ms", i64::MAX));
}

/// Found by `schedule_validation_never_panics`: croner skips empty list items,
/// so `* , * * * ?` (a minute field of only a comma) matched nothing and each
/// search walked second by second to croner's limit, 13 s per validation of a
/// submitted job. Such a field is now refused when parsed.
#[test]
fn a_field_of_only_commas_is_refused_at_once() {
    let now = Timestamp(1_767_225_600_000);
    // Refused by the parser (the message says why), so no search walks at all.
    for expr in ["* , * * * ?", ", * 11-31 * *", "1,,2 * * * *", "1, * * * *", "* * * * ,MON"] {
        let err = validate(&Schedule::new(expr), now).unwrap_err();
        assert_eq!(err.field, "schedule.cron", "{expr}: {err}");
        assert!(err.message.contains("empty list item"), "{expr}: {err}");
    }
    assert!(validate(&Schedule::new("1,2 * * * MON,FRI"), now).is_ok());
}
