//! Fuzzing of the job and workflow documents users write: TOML spec files
//! (`archon run -f`, [`read_any_spec_file`], [`parse_spec_file`]) and the same
//! documents as JSON bodies of `POST /api/v1/jobs` and `POST /api/v1/workflows`
//! ([`JobDraft`] through [`JobDraft::into_spec`], [`parse_workflow_json`]).
//! Inputs: any text, documents built from random TOML values under the real
//! keys (right keys, wrong types, odd values, deep nesting), and those documents
//! with their text mutated. Never a panic, never more memory than a fixed
//! multiple of the input (see `BUDGET`); an error names what it refuses.
//!
//! Modest case counts by default; a long run: `scripts/fuzz` (100,000 cases each),
//! or `PROPTEST_CASES=N cargo nextest run -p archon-http --test fuzz_spec`.
//! Each property prints its seed and a one-line replay command.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../archon-core/tests/fuzz_harness/mod.rs"]
mod fuzz_harness;

use std::cell::Cell;
use std::path::PathBuf;

use archon_http::spec::{JobDraft, Naming, SpecFileContent, parse_spec_file, parse_workflow_json, read_any_spec_file};
use fuzz_harness::{Budget, Fuzz};
use proptest::prelude::*;
use toml::{Table, Value};

const TARGET: &str = "-p archon-http --test fuzz_spec";

/// What reading one document of `n` bytes may hold at its peak. A TOML document
/// becomes a tree of values, and the densest text there is, lines of nested
/// arrays (`k = [[[0]]]`), holds about 310 bytes per byte of text while toml
/// builds that tree (measured with the `nested` documents below); JSON bodies
/// stay under 40. 512 bytes per byte leaves room; the base covers the parsers'
/// fixed tables, error texts and the cron lookahead of a schedule.
const BUDGET: Budget = Budget { per_byte: 512, base: 256 * 1024 };

/// The keys a job draft, its `[docker]` and `[schedule]` tables, a workflow and
/// its edges have, and a few they do not.
const KEYS: &[&str] = &[
    "name",
    "command",
    "script",
    "interpreter",
    "argv",
    "function",
    "input",
    "timeout",
    "max_retries",
    "retry_backoff",
    "retry_backoff_max",
    "cpu",
    "memory",
    "docker",
    "bandwidth",
    "devices",
    "env",
    "secret_env",
    "workdir",
    "constraints",
    "priority",
    "placement",
    "idempotency_key",
    "depends_on",
    "retention",
    "keep_last",
    "output_limit",
    "on_disconnect",
    "schedule",
    "image",
    "entrypoint",
    "network",
    "user",
    "mounts",
    "pull",
    "cron",
    "timezone",
    "tz",
    "overlap",
    "catch_up",
    "jitter",
    "jobs",
    "workflow",
    "job",
    "when",
    "gpu",
    "",
    "timeuot",
    "é",
];

/// Strings a field might hold: units, cron expressions, names, or junk.
fn text_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "30s",
            "5m",
            "1h30m",
            "0",
            "500m",
            "0.5",
            "2",
            "256MiB",
            "1.5GiB",
            "18446744073709551616",
            "-1s",
            "",
            " ",
            "*/5 * * * *",
            "0 0 30 2 *",
            "@daily",
            "@hourly ",
            "61 * * * *",
            "Europe/Berlin",
            "Nowhere/Else",
            "skip",
            "buffer-one",
            "allow_all",
            "binpack",
            "spread",
            "keep",
            "never",
            "always",
            "if-not-present",
            "success",
            "failure",
            "completion",
            "job-1",
            "job-0",
            "job-18446744073709551616",
            "a=b",
            "a!=b",
            "=b",
            "/a:/b:ro",
            "busybox:1",
            "none",
            "host",
            "sh",
            "echo hi",
            "\u{0}",
            "💥",
        ])
        .prop_map(str::to_owned),
        "\\PC{0,16}",
        "[0-9]{1,30}(\\.[0-9]{1,20})?(ms|s|m|h|d|Ki|Mi|Gi|k|M|G)?",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => text_value().prop_map(Value::String),
        2 => prop_oneof![
            Just(0i64), Just(1), Just(-1), Just(i64::MAX), Just(i64::MIN), Just(i64::from(u32::MAX) + 1), any::<i64>(),
        ]
        .prop_map(Value::Integer),
        1 => prop_oneof![Just(0.5f64), Just(-0.0), Just(f64::NAN), Just(f64::INFINITY), Just(1e300), Just(1e-300), any::<f64>()]
            .prop_map(Value::Float),
        1 => any::<bool>().prop_map(Value::Boolean),
        1 => prop::sample::select(vec!["1979-05-27T07:32:00Z", "1979-05-27", "07:32:00", "1979-05-27T00:32:00.999999-07:00"])
            .prop_map(|d| Value::Datetime(d.parse().expect("a TOML datetime"))),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![6 => prop::sample::select(KEYS.to_vec()).prop_map(str::to_owned), 1 => "\\PC{0,8}"]
}

/// A TOML value: leaves, arrays and tables nested a few levels, keyed mostly by
/// the real keys.
fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..8).prop_map(|m| Value::Table(m.into_iter().collect())),
        ]
    })
}

/// A string of one of the forms a field takes: mostly right, sometimes wrong in
/// the way a user gets it wrong, sometimes anything.
fn of_form(form: &'static str) -> BoxedStrategy<Value> {
    let one_of = |items: &[&'static str]| prop::sample::select(items.to_vec()).prop_map(str::to_owned).boxed();
    let pick = |right: &[&'static str], wrong: &[&'static str]| (one_of(right), one_of(wrong));
    let (right, wrong) = match form {
        "duration" => (
            prop_oneof!["[1-9][0-9]{0,3} ?(ms|s|m|h|d)", Just("1h30m".to_owned())].boxed(),
            one_of(&["0s", "-1s", "5x", "18446744073709551615s", "1e3s", ""]),
        ),
        "size" => (
            "[1-9][0-9]{0,4}(\\.[0-9])? ?(k|M|G|Ki|Mi|Gi|MiB|GiB|B)?".boxed(),
            one_of(&["0", "lots", "1.5.5M", "99999999999999999999", "-1k"]),
        ),
        "cpu" => ("[1-9][0-9]{0,3}(m|\\.[0-9]{1,3})?".boxed(), one_of(&["0", "-1", "NaN", "1e300", "m"])),
        "cron" => pick(
            &[
                "*/5 * * * *",
                "30 2 * * *",
                "0 0 * * MON-FRI",
                "@hourly",
                "@daily",
                "*/10 * * * * *",
                "0 0 L * *",
                "15 10 ? * 6#3",
            ],
            &["0 0 30 2 *", "61 * * * *", "* * *", "* , * * *", ""],
        ),
        "zone" => pick(&["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"], &["Mars/Base", "utc", ""]),
        "overlap" => pick(&["skip", "buffer-one", "buffer_all", "allow-all", "cancel_other"], &["later", ""]),
        "placement" => pick(&["binpack", "spread"], &["random", ""]),
        "on_disconnect" => pick(&["kill", "keep", "Keep"], &["linger", ""]),
        "pull" => pick(&["if-not-present", "always", "never"], &["sometimes"]),
        "constraint" => ("[a-z]{1,3}(=|!=)?[a-z]{0,3}".boxed(), one_of(&["=b", "", " "])),
        "mount" => pick(&["/a:/b", "/a:/b:ro"], &["data:/data", "/a", ""]),
        "job" => ("job-[1-9][0-9]{0,2}".boxed(), one_of(&["job-0", "job-18446744073709551616", "wf-1", "1"])),
        _ => ("[a-z0-9][a-z0-9 ./:_-]{0,11}".boxed(), one_of(&["", " "])),
    };
    prop_oneof![
        16 => right.prop_map(Value::String),
        1 => wrong.prop_map(Value::String),
        1 => text_value().prop_map(Value::String),
    ]
    .boxed()
}

/// A list of `item`s.
fn list(item: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop::collection::vec(item, 0..4).prop_map(Value::Array).boxed()
}

/// A table of these keys, each present or not, with a value of its form; now and
/// then a key holds a value of another type.
fn table(fields: Vec<(&'static str, BoxedStrategy<Value>)>, present: f64) -> BoxedStrategy<Table> {
    let entries: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
        .into_iter()
        .map(|(key, form)| {
            let entry = prop_oneof![24 => form, 1 => value()].prop_map(move |v| (key.to_owned(), v));
            if present < 1.0 { prop::option::weighted(present, entry).boxed() } else { entry.prop_map(Some).boxed() }
        })
        .collect();
    entries.prop_map(|entries| entries.into_iter().flatten().collect()).boxed()
}

fn integer(range: std::ops::RangeInclusive<i64>) -> BoxedStrategy<Value> {
    prop_oneof![8 => range.prop_map(Value::Integer), 1 => any::<i64>().prop_map(Value::Integer)].boxed()
}

fn schedule_table() -> BoxedStrategy<Value> {
    table(
        vec![
            ("cron", of_form("cron")),
            ("timezone", of_form("zone")),
            ("overlap", of_form("overlap")),
            ("catch_up", of_form("duration")),
            ("jitter", of_form("duration")),
        ],
        0.4,
    )
    .prop_map(|mut t| {
        t.entry("cron").or_insert_with(|| Value::String("@hourly".into()));
        Value::Table(t)
    })
    .boxed()
}

/// A job draft: one task (now and then none, or two) and a few more fields,
/// mostly of the right form.
fn job_draft() -> BoxedStrategy<Table> {
    let strings = |form| list(of_form(form));
    let pairs = |values: BoxedStrategy<Value>| {
        prop::collection::btree_map("[A-Z_]{0,4}", values, 0..3)
            .prop_map(|m| Value::Table(m.into_iter().collect()))
            .boxed()
    };
    let docker = table(
        vec![
            ("image", of_form("name")),
            ("command", strings("name")),
            ("entrypoint", strings("name")),
            ("network", of_form("name")),
            ("user", of_form("name")),
            ("mounts", strings("mount")),
            ("pull", of_form("pull")),
        ],
        0.4,
    )
    .prop_map(Value::Table)
    .boxed();
    let tasks = vec![
        ("command", of_form("name")),
        ("script", of_form("name")),
        ("argv", strings("name")),
        ("function", of_form("name")),
        ("docker", docker),
    ];
    let extra = prop_oneof![14 => Just(0usize), 1 => 1..=2usize];
    let task = (extra, prop::sample::subsequence(tasks, 1..=5)).prop_flat_map(|(extra, tasks)| {
        let chosen: Vec<_> = tasks.into_iter().take(1 + extra).collect();
        table(chosen, 1.0)
    });
    let rest = table(
        vec![
            ("name", of_form("name")),
            ("interpreter", of_form("name")),
            ("input", value().boxed()),
            ("timeout", of_form("duration")),
            ("max_retries", integer(0..=10)),
            ("retry_backoff", of_form("duration")),
            ("retry_backoff_max", of_form("duration")),
            ("cpu", prop_oneof![3 => of_form("cpu"), 1 => leaf()].boxed()),
            ("memory", of_form("size")),
            ("bandwidth", integer(0..=10_000)),
            ("devices", pairs(integer(0..=8))),
            ("env", pairs(of_form("name"))),
            ("secret_env", pairs(of_form("name"))),
            ("workdir", of_form("name")),
            ("constraints", strings("constraint")),
            ("priority", integer(-10..=10)),
            ("placement", of_form("placement")),
            ("idempotency_key", of_form("name")),
            ("depends_on", strings("job")),
            ("retention", of_form("duration")),
            ("keep_last", integer(0..=100)),
            ("output_limit", of_form("size")),
            ("on_disconnect", of_form("on_disconnect")),
            ("schedule", schedule_table()),
        ],
        0.15,
    );
    (task, rest)
        .prop_map(|(mut task, rest)| {
            task.extend(rest);
            task
        })
        .boxed()
}

/// A workflow: a head with a name (and maybe a schedule), and jobs named
/// `j0`, `j1`, ... whose `depends_on` name earlier ones (so no cycle), as names
/// or `{ job, when }` tables, now and then junk.
fn workflow_document() -> BoxedStrategy<Table> {
    let when = prop::option::of(prop::sample::select(vec!["success", "failure", "completion"]));
    let edge = prop_oneof![
        12 => (any::<prop::sample::Index>(), when).prop_map(|(parent, when)| (Some((parent, when)), None)),
        1 => value().prop_map(|junk| (None, Some(junk))),
    ];
    let node = (job_draft(), prop::collection::vec(edge, 0..3), prop::bool::weighted(0.95));
    let head = table(vec![("name", of_form("name")), ("schedule", schedule_table())], 0.3);
    (head, prop::collection::vec(node, 1..5))
        .prop_map(|(mut head, nodes)| {
            head.entry("name").or_insert_with(|| Value::String("release".into()));
            let jobs = nodes
                .into_iter()
                .enumerate()
                .map(|(i, (mut job, edges, named))| {
                    if named {
                        job.insert("name".into(), Value::String(format!("j{i}")));
                    }
                    let after = edges.into_iter().filter_map(|edge| match edge {
                        (Some(_), _) if i == 0 => None,
                        (Some((parent, when)), _) => {
                            let parent = Value::String(format!("j{}", parent.index(i)));
                            Some(match when {
                                None => parent,
                                Some(when) => Value::Table(Table::from_iter([
                                    ("job".to_owned(), parent),
                                    ("when".to_owned(), Value::String(when.to_owned())),
                                ])),
                            })
                        }
                        (None, junk) => junk,
                    });
                    job.insert("depends_on".into(), Value::Array(after.collect()));
                    Value::Table(job)
                })
                .collect();
            Table::from_iter([("workflow".to_owned(), Value::Table(head)), ("jobs".to_owned(), Value::Array(jobs))])
        })
        .boxed()
}

/// A document: a job, several `[[jobs]]`, a workflow, or a table of anything.
fn document() -> BoxedStrategy<Table> {
    prop_oneof![
        4 => job_draft(),
        2 => prop::collection::vec(job_draft(), 0..4).prop_map(|jobs| {
            Table::from_iter([("jobs".to_owned(), Value::Array(jobs.into_iter().map(Value::Table).collect()))])
        }),
        3 => workflow_document(),
        1 => prop::collection::btree_map(key(), value(), 0..6).prop_map(|m| m.into_iter().collect()),
    ]
    .boxed()
}

/// Text: anything, TOML-ish token soup, a document written out, a document
/// with its text cut and spliced, or nesting deep enough to hurt a recursive
/// parser.
fn text() -> impl Strategy<Value = String> {
    let written = document().prop_filter_map("not writable as TOML", |d| toml::to_string(&d).ok()).boxed();
    let soup = prop::collection::vec(
        prop_oneof![
            key(),
            text_value().prop_map(|v| format!("{v:?}")),
            prop::sample::select(vec![
                " = ",
                "\n",
                "[",
                "]",
                "[[",
                "]]",
                "{",
                "}",
                ",",
                ".",
                "\"",
                "'",
                "'''",
                "\"\"\"",
                "#",
                "=",
                "\\",
                "\\u",
                "[jobs]",
                "[[jobs]]",
                "[workflow]",
                "[docker]",
                "[schedule]",
                "[workflow.schedule]",
                "inf",
                "nan",
                "0x",
                "1979-05-27",
                "true",
            ])
            .prop_map(str::to_owned),
        ],
        0..40,
    )
    .prop_map(|tokens| tokens.concat());
    let spliced = (written.clone(), any::<prop::sample::Index>(), any::<prop::sample::Index>(), ".{0,4}").prop_map(
        |(text, cut, len, insert)| {
            let chars: Vec<char> = text.chars().collect();
            let at = cut.index(chars.len() + 1);
            let end = (at + len.index(8)).min(chars.len());
            chars[..at].iter().chain(insert.chars().collect::<Vec<_>>().iter()).chain(&chars[end..]).collect()
        },
    );
    let deep = (prop::sample::select(vec!["[", "{a=", "[{a=[", "a."]), 1usize..3000).prop_map(|(open, depth)| {
        if open == "a." { format!("{}b = 1", open.repeat(depth)) } else { format!("x = {}", open.repeat(depth)) }
    });
    // Many lines of closed nesting: the most values per byte a document holds.
    let nested = (1usize..200, 1usize..130, prop::sample::select(vec![("[", "]"), ("{a=", "}"), ("[{a=", "}]")]))
        .prop_map(|(lines, depth, (open, close))| {
            (0..lines).map(|i| format!("k{i} = {}0{}\n", open.repeat(depth), close.repeat(depth))).collect()
        });
    prop_oneof![5 => written, 2 => spliced, 1 => soup, 1 => "\\PC{0,64}", 1 => deep, 1 => nested]
}

/// One temporary file per test process, rewritten for each case.
fn spec_path() -> PathBuf {
    std::env::temp_dir().join(format!("archon-fuzz-spec-{}.toml", std::process::id()))
}

/// How many cases ran, and how many got through to a spec (so the generators
/// keep reaching past the parsers into the checks behind them).
#[derive(Default)]
struct Reach {
    cases: Cell<u32>,
    jobs: Cell<u32>,
    workflows: Cell<u32>,
}

impl Reach {
    fn count(cell: &Cell<u32>) {
        cell.set(cell.get() + 1);
    }

    /// With enough cases, at least 1 in 20 made jobs, and some made a workflow
    /// (about 1 in 8 and 1 in 40 do).
    fn check(&self, what: &str) {
        let (cases, jobs, workflows) = (self.cases.get(), self.jobs.get(), self.workflows.get());
        if cases >= 200 {
            assert!(
                jobs * 20 >= cases && workflows > 0,
                "{what}: {jobs} jobs and {workflows} workflows in {cases} cases"
            );
        }
    }
}

#[test]
fn spec_file_text_never_panics_the_parsers() {
    let path = spec_path();
    let reach = Reach::default();
    Fuzz::new(TARGET, "spec_file_text_never_panics", 400).run(&text(), |text| {
        Reach::count(&reach.cases);
        let n = text.len();
        match BUDGET.check("parse_spec_file", n, || parse_spec_file(&text))? {
            Ok(_) => Reach::count(&reach.jobs),
            Err(e) => prop_assert!(!e.is_empty()),
        }
        std::fs::write(&path, &text).expect("the temporary spec file");
        match BUDGET.check("read_any_spec_file", n, || read_any_spec_file(&path))? {
            Ok(SpecFileContent::Jobs(specs)) => prop_assert!(!specs.is_empty()),
            Ok(SpecFileContent::Workflow(w)) => {
                Reach::count(&reach.workflows);
                prop_assert!(!w.nodes.is_empty());
            }
            Err(e) => prop_assert!(e.to_string().contains(&*path.to_string_lossy()), "the error names the file: {e}"),
        }
        Ok(())
    });
    let _ = std::fs::remove_file(path);
    reach.check("spec files");
}

#[test]
fn json_bodies_never_panic_the_draft_conversions() {
    let body = prop_oneof![
        3 => document().prop_filter_map("not writable as JSON", |d| serde_json::to_vec(&d).ok()),
        1 => "\\PC{0,64}".prop_map(String::into_bytes),
        1 => (prop::sample::select(vec!["[", "{\"a\":"]), 1usize..400).prop_map(|(open, depth)| open.repeat(depth).into_bytes()),
    ];
    let reach = Reach::default();
    Fuzz::new(TARGET, "json_bodies_never_panic", 400).run(&body, |body| {
        Reach::count(&reach.cases);
        let n = body.len();
        // As the REST API's body extractor reads a job (routes/extract.rs).
        let job = BUDGET.check("JobDraft", n, || {
            let mut de = serde_json::Deserializer::from_slice(&body);
            serde_path_to_error::deserialize::<_, JobDraft>(&mut de).map(|d| d.into_spec(Naming::File))
        })?;
        match job {
            Ok(Ok(_)) => Reach::count(&reach.jobs),
            Ok(Err(e)) => prop_assert!(!e.field.is_empty(), "the error names a field: {e}"),
            Err(_) => {}
        }
        let workflow = BUDGET.check("parse_workflow_json", n, || {
            serde_json::from_slice::<serde_json::Value>(&body).map(parse_workflow_json)
        })?;
        match workflow {
            Ok(Ok(_)) => Reach::count(&reach.workflows),
            Ok(Err(e)) => prop_assert!(e.contains(": "), "the error names a field: {e}"),
            Err(_) => {}
        }
        Ok(())
    });
    reach.check("JSON bodies");
}
