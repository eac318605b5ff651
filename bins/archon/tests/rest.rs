//! The REST API with a real HTTP client (reqwest) against a real `archon dev`:
//! every operation of the OpenAPI document driven as a user would with curl,
//! live output followed over Server-Sent Events to the run's end, the problems
//! bad requests get, and the CLI's `--output json` giving the very documents
//! REST gives for the same objects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use common::Dev;
use futures::StreamExt;
use reqwest::header::{CONTENT_TYPE, HeaderMap, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Long enough for a loaded 2-core machine; checks return as soon as they hold.
const PATIENCE: Duration = Duration::from_secs(60);

/// The REST API of one dev cluster.
struct Rest {
    base: String,
    http: reqwest::Client,
}

/// One HTTP answer.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    /// The body when it is JSON (or a problem), else null.
    json: Value,
}

impl Answer {
    /// Panics unless the status is `status`; the JSON body.
    fn expect(self, status: StatusCode, what: &str) -> Value {
        assert_eq!(self.status, status, "{what}: {}", self.text);
        self.json
    }

    /// Checks this is a problem object of `status` and `kind` (naming `field`
    /// when given) with every member RFC 9457 asks for; the problem.
    fn problem(self, status: u16, kind: &str, field: Option<&str>, what: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "{what}: {}", self.text);
        let content_type = self.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        assert_eq!(content_type, Some("application/problem+json"), "{what}");
        let p = self.json;
        assert_eq!(p["type"], format!("urn:archon:problem:{kind}"), "{what}: {p}");
        assert_eq!(p["status"], status, "{what}: {p}");
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()), "{what}: {p}");
        assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()), "{what}: {p}");
        if let Some(field) = field {
            assert_eq!(p["field"], field, "{what}: {p}");
        }
        p
    }
}

impl Rest {
    fn new(dev: &Dev) -> Rest {
        Rest { base: dev.server.trim_end_matches('/').to_owned(), http: reqwest::Client::new() }
    }

    /// `path` is from the root: `/api/v1/jobs`.
    async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>, headers: &[(&str, &str)]) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(body) = body {
            if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
                req = req.header(CONTENT_TYPE, "application/json");
            }
            req = req.body(body);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let (status, headers) = (res.status(), res.headers().clone());
        let text = res.text().await.unwrap();
        let is_json = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("json"));
        let json = if is_json { serde_json::from_str(&text).unwrap() } else { Value::Null };
        Answer { status, headers, text, json }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None, &[]).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(body.to_string().into_bytes()), &[]).await
    }

    /// A POST with no body (cancel, drain, resume, trigger).
    async fn act(&self, path: &str) -> Answer {
        self.send(Method::POST, path, None, &[]).await
    }

    /// Submits one job; (job, run) ids.
    async fn submit(&self, job: Value) -> (String, Option<String>) {
        let v = self.post("/api/v1/jobs", job.clone()).await.expect(StatusCode::CREATED, &format!("submit {job}"));
        (v["job"].as_str().unwrap().to_owned(), v["run"].as_str().map(str::to_owned))
    }

    /// The run once it has ended (waits through `/wait`, as a client would).
    async fn ended(&self, run: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let d = self.get(&format!("/api/v1/runs/{run}/wait?timeout=10s")).await.expect(StatusCode::OK, run);
            if ["succeeded", "failed", "cancelled", "timed_out"].contains(&d["run"]["state"].as_str().unwrap()) {
                return d;
            }
            assert!(Instant::now() < deadline, "{run} did not end within {PATIENCE:?}: {d}");
        }
    }
}

/// Polls `check` every 100 ms until it gives a value; panics with its last
/// complaint after `within`.
async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(why) => assert!(Instant::now() < deadline, "{what} not within {within:?}: {why}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ids(items: &Value) -> Vec<String> {
    items.as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect()
}

/// The number in an id (`run-12` → 12), to check newest-first order.
fn number(id: &str) -> u64 {
    id.rsplit('-').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_are_submitted_once_per_key_refused_by_field_listed_in_pages_and_cancelled() {
    let dev = Dev::start();
    let rest = Rest::new(&dev);

    // One job: 201 with Location; the same Idempotency-Key again: 200, the same job.
    let body = json!({"name": "rest-one", "command": "echo one"});
    let key = [("Idempotency-Key", "rest-suite-key-1")];
    let first = rest.send(Method::POST, "/api/v1/jobs", Some(body.to_string().into_bytes()), &key).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let job = first.json["job"].as_str().unwrap().to_owned();
    assert_eq!(first.json["duplicate"], false);
    assert_eq!(first.headers[LOCATION], format!("/api/v1/jobs/{job}").as_str());
    let again = rest.send(Method::POST, "/api/v1/jobs", Some(body.to_string().into_bytes()), &key).await;
    let again = again.expect(StatusCode::OK, "the same key again");
    assert_eq!((again["job"].as_str(), &again["duplicate"]), (Some(job.as_str()), &json!(true)));
    assert_eq!(again["run"], first.json["run"]);
    let detail = rest.get(&format!("/api/v1/jobs/{job}")).await.expect(StatusCode::OK, "the job");
    assert_eq!((detail["job"]["id"].as_str(), detail["job"]["name"].as_str()), (Some(job.as_str()), Some("rest-one")));
    assert_eq!(detail["job"]["task"], json!({"kind": "shell", "command": "echo one"}));
    assert_eq!(detail["runs"].as_array().unwrap().len(), 1, "a duplicate makes no run: {detail}");

    // A batch with one bad job: the bad one refused naming jobs[1].cpu, the good one stored.
    let batch = json!({"jobs": [
        {"name": "rest-good", "command": "true"},
        {"name": "rest-bad", "command": "true", "cpu": "lots"},
    ]});
    let results = rest.post("/api/v1/jobs/batch", batch).await.expect(StatusCode::OK, "batch")["results"].clone();
    let good = results[0]["job"].as_str().expect("the good job was accepted").to_owned();
    assert_eq!(results[1]["error"]["field"], "jobs[1].cpu", "{results}");
    assert_eq!(results[1]["error"]["type"], "urn:archon:problem:invalid-argument", "{results}");
    assert!(results[1].get("job").is_none(), "{results}");
    rest.get(&format!("/api/v1/jobs/{good}")).await.expect(StatusCode::OK, "the good job is stored");
    let named = rest.get("/api/v1/jobs?name=rest-bad").await.expect(StatusCode::OK, "jobs named rest-bad");
    assert_eq!(named["items"], json!([]), "the refused job was stored");
    let named = rest.get("/api/v1/jobs?name=rest-one").await.expect(StatusCode::OK, "jobs named rest-one");
    assert_eq!(ids(&named["items"]), [job.as_str()]);

    // Paging: `next` of one page is `before` of the next; together the pages
    // hold every job once, newest first.
    let more = json!({"jobs": [{"command": "true"}, {"command": "true"}, {"command": "true"}]});
    rest.post("/api/v1/jobs/batch", more).await.expect(StatusCode::OK, "three more");
    let all = ids(&rest.get("/api/v1/jobs?limit=1000").await.expect(StatusCode::OK, "all jobs")["items"]);
    assert_eq!(all.len(), 5, "{all:?}");
    let (mut paged, mut query, mut pages) = (Vec::new(), "/api/v1/jobs?limit=2".to_owned(), 0);
    loop {
        let page = rest.get(&query).await.expect(StatusCode::OK, &query);
        let items = ids(&page["items"]);
        assert!(items.len() <= 2, "{page}");
        paged.extend(items);
        pages += 1;
        match page["next"].as_str() {
            Some(next) => query = format!("/api/v1/jobs?limit=2&before={next}"),
            None => break,
        }
    }
    assert_eq!((paged.clone(), pages), (all.clone(), 3));
    assert!(paged.windows(2).all(|w| number(&w[0]) > number(&w[1])), "not newest first: {paged:?}");

    // Cancel a job: its running run ends cancelled.
    let (long, run) = rest.submit(json!({"name": "rest-long", "command": "sleep 60"})).await;
    let run = run.unwrap();
    eventually(PATIENCE, "the long job runs", || async {
        let d = rest.get(&format!("/api/v1/runs/{run}")).await.json;
        if d["run"]["state"] == "running" { Ok(()) } else { Err(d["run"]["state"].to_string()) }
    })
    .await;
    let cancelled = rest.act(&format!("/api/v1/jobs/{long}/cancel")).await;
    assert_eq!(cancelled.status, StatusCode::NO_CONTENT, "{}", cancelled.text);
    assert_eq!(rest.ended(&run).await["run"]["state"], "cancelled");
    let detail = rest.get(&format!("/api/v1/jobs/{long}")).await.expect(StatusCode::OK, "the cancelled job");
    assert_eq!(detail["job"]["cancelled"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_are_filtered_waited_for_read_and_cancelled() {
    let dev = Dev::start();
    let rest = Rest::new(&dev);
    let (job, run) = rest.submit(json!({"name": "rest-out", "command": "echo out-line; echo err-line >&2"})).await;
    let run = run.unwrap();

    // Wait: a blocking read that answers when the run ends.
    let done = rest.ended(&run).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    let got = rest.get(&format!("/api/v1/runs/{run}")).await.expect(StatusCode::OK, "the run");
    assert_eq!(got, done, "GET and wait disagree on an ended run");
    assert_eq!((got["run"]["id"].as_str(), got["run"]["job"].as_str()), (Some(run.as_str()), Some(job.as_str())));
    assert_eq!(got["job_name"], "rest-out");
    let attempt = &got["attempts"][0];
    assert_eq!(attempt["exit"], json!({"kind": "exited", "code": 0}), "{got}");
    assert_eq!(attempt["stdout"]["text"], "out-line\n", "{got}");
    assert_eq!(attempt["stderr"]["text"], "err-line\n", "{got}");

    // Output: stdout by default, stderr on request, the tail counting what it left out.
    let out = rest.get(&format!("/api/v1/runs/{run}/output")).await;
    assert_eq!((out.status, out.text.as_str()), (StatusCode::OK, "out-line\n"));
    assert!(out.headers[CONTENT_TYPE].to_str().unwrap().starts_with("text/plain"));
    let err = rest.get(&format!("/api/v1/runs/{run}/output?stream=stderr")).await;
    assert_eq!((err.status, err.text.as_str()), (StatusCode::OK, "err-line\n"));
    let tail = rest.get(&format!("/api/v1/runs/{run}/output?stream=stderr&tail=5")).await;
    assert_eq!((tail.status, tail.text.as_str()), (StatusCode::OK, "line\n"));
    assert_eq!(tail.headers["archon-truncated"], "4");
    let first_attempt = attempt["id"].as_str().unwrap();
    let by_attempt = rest.get(&format!("/api/v1/runs/{run}/output?attempt={first_attempt}")).await;
    assert_eq!(by_attempt.text, "out-line\n");

    // A wait with a short timeout answers the run as it stands, still going.
    let (_, long) = rest.submit(json!({"name": "rest-sleeper", "command": "sleep 60"})).await;
    let long = long.unwrap();
    let started = Instant::now();
    let going = rest.get(&format!("/api/v1/runs/{long}/wait?timeout=300ms")).await.expect(StatusCode::OK, "wait");
    assert!(started.elapsed() >= Duration::from_millis(300), "the wait did not wait");
    assert!(["pending", "scheduled", "running"].contains(&going["run"]["state"].as_str().unwrap()), "{going}");
    assert_eq!(rest.act(&format!("/api/v1/runs/{long}/cancel")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(rest.ended(&long).await["run"]["state"], "cancelled");

    // Filters: by job, by state, by creation time (RFC 3339, any offset).
    let of_job = rest.get(&format!("/api/v1/runs?job={job}")).await.expect(StatusCode::OK, "runs of the job");
    assert_eq!(ids(&of_job["items"]), [run.as_str()]);
    let succeeded = rest.get("/api/v1/runs?state=succeeded").await.expect(StatusCode::OK, "succeeded runs");
    assert_eq!(ids(&succeeded["items"]), [run.as_str()]);
    let cancelled = rest.get("/api/v1/runs?state=cancelled").await.expect(StatusCode::OK, "cancelled runs");
    assert_eq!(ids(&cancelled["items"]), [long.as_str()]);
    let created = got["run"]["created_at"].as_str().unwrap();
    let since = rest.get(&format!("/api/v1/runs?since={created}")).await.expect(StatusCode::OK, "since");
    assert_eq!(ids(&since["items"]), [long.as_str(), run.as_str()]);
    let until = rest.get(&format!("/api/v1/runs?until={created}")).await.expect(StatusCode::OK, "until");
    assert_eq!(ids(&until["items"]), Vec::<String>::new(), "until is exclusive");
    let future = rest.get("/api/v1/runs?since=2999-01-01T00:00:00%2B02:00").await.expect(StatusCode::OK, "future");
    assert_eq!(future["items"], json!([]));
    let past = rest.get("/api/v1/runs?since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00-05:00").await;
    assert_eq!(ids(&past.expect(StatusCode::OK, "a wide range")["items"]).len(), 2);

    // Paging runs: next → before.
    let page = rest.get("/api/v1/runs?limit=1").await.expect(StatusCode::OK, "first page");
    assert_eq!(ids(&page["items"]), [long.as_str()]);
    let next = page["next"].as_str().expect("a next page");
    let rest_page = rest.get(&format!("/api/v1/runs?limit=1&before={next}")).await.expect(StatusCode::OK, "next");
    assert_eq!(ids(&rest_page["items"]), [run.as_str()]);
}

/// One Server-Sent Event.
#[derive(Debug, Default, Clone)]
struct Sse {
    event: String,
    id: Option<String>,
    data: String,
}

/// Reads events off an SSE body as they arrive, calling `seen` with each.
async fn read_events(res: reqwest::Response, mut seen: impl AsyncFnMut(&Sse)) -> Vec<Sse> {
    let mut stream = res.bytes_stream();
    let (mut buffer, mut events, mut current) = (Vec::<u8>::new(), Vec::new(), Sse::default());
    while let Some(chunk) = stream.next().await {
        buffer.extend_from_slice(&chunk.unwrap());
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let line = String::from_utf8(line).unwrap();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !current.event.is_empty() || !current.data.is_empty() {
                    let event = std::mem::take(&mut current);
                    seen(&event).await;
                    events.push(event);
                }
                continue;
            }
            if line.starts_with(':') {
                continue; // a keep-alive comment
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match name {
                "event" => current.event = value.to_owned(),
                "id" => current.id = Some(value.to_owned()),
                "data" if current.data.is_empty() => current.data = value.to_owned(),
                "data" => current.data = format!("{}\n{value}", current.data),
                other => panic!("unexpected SSE field {other:?} in {line:?}"),
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread")]
async fn events_follow_a_live_run_to_its_end_in_order() {
    let dev = Dev::start();
    let rest = Rest::new(&dev);
    let script = "for i in 1 2 3 4 5 6 7 8; do echo line-$i; sleep 0.25; done";
    let (_, run) = rest.submit(json!({"name": "rest-chatty", "command": script})).await;
    let run = run.unwrap();

    let res = rest.http.get(format!("{}/api/v1/runs/{run}/events", rest.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/event-stream"));
    // When the first output arrives, the run is still going (its worker may not
    // have reported it started yet): the output is live, not a replay.
    let mut state_at_first = None;
    let events = tokio::time::timeout(
        PATIENCE,
        read_events(res, async |e: &Sse| {
            if e.event == "output" && state_at_first.is_none() {
                let d = rest.get(&format!("/api/v1/runs/{run}")).await.json;
                state_at_first = Some(d["run"]["state"].as_str().unwrap().to_owned());
            }
        }),
    )
    .await
    .expect("the event stream did not end with the run");

    let (outputs, ends): (Vec<&Sse>, Vec<&Sse>) = events.iter().partition(|e| e.event == "output");
    let state_at_first = state_at_first.expect("no output event");
    assert!(
        ["scheduled", "running"].contains(&state_at_first.as_str()),
        "the first output came when the run was {state_at_first}, not while it went"
    );
    let text: String = outputs
        .iter()
        .map(|e| {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            assert_eq!(v["stream"], "stdout", "{v}");
            assert!(v["attempt"].as_str().unwrap().starts_with("att-"), "{v}");
            v["text"].as_str().unwrap().to_owned()
        })
        .collect();
    let expected: String = (1..=8).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(text, expected, "output out of order or missing");
    let seq: Vec<u64> = outputs.iter().map(|e| e.id.as_deref().unwrap().parse().unwrap()).collect();
    assert_eq!(seq, (1..=seq.len() as u64).collect::<Vec<_>>(), "event ids must count from 1");
    assert_eq!(ends.len(), 1, "{events:?}");
    assert_eq!(events.last().unwrap().event, "end", "the end event must come last");
    let end: Value = serde_json::from_str(&ends[0].data).unwrap();
    assert_eq!((end["run"].as_str(), end["state"].as_str()), (Some(run.as_str()), Some("succeeded")), "{end}");
    assert!(end["error"].is_null(), "{end}");
}

#[tokio::test(flavor = "multi_thread")]
async fn workflows_are_submitted_listed_read_and_cancelled() {
    let dev = Dev::start();
    let rest = Rest::new(&dev);
    let body = json!({
        "workflow": {"name": "rest-release"},
        "jobs": [
            {"name": "build", "command": "sleep 60"},
            {"name": "test", "command": "true", "depends_on": ["build"]},
            {"name": "rollback", "command": "true", "depends_on": [{"job": "test", "when": "failure"}]},
        ],
    });
    let created = rest.post("/api/v1/workflows", body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let wf = created.json["workflow"].as_str().unwrap().to_owned();
    assert_eq!(created.headers[LOCATION], format!("/api/v1/workflows/{wf}").as_str());
    assert_eq!(created.json["jobs"].as_array().unwrap().len(), 3);

    let listed = rest.get("/api/v1/workflows").await.expect(StatusCode::OK, "workflows");
    assert_eq!(ids(&listed["items"]), [wf.as_str()]);
    assert_eq!(listed["items"][0]["nodes"], 3);
    let running = rest.get("/api/v1/workflows?state=running&name=release").await.expect(StatusCode::OK, "running");
    assert_eq!(ids(&running["items"]), [wf.as_str()]);
    let none = rest.get("/api/v1/workflows?name=nightly").await.expect(StatusCode::OK, "by another name");
    assert_eq!(none["items"], json!([]));

    let detail = rest.get(&format!("/api/v1/workflows/{wf}")).await.expect(StatusCode::OK, "the workflow");
    assert_eq!((detail["name"].as_str(), detail["state"].as_str()), (Some("rest-release"), Some("running")));
    let names: Vec<&str> = detail["nodes"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["build", "test", "rollback"]);
    assert_eq!(detail["nodes"][1]["depends_on"], json!([{"job": "build", "when": "success"}]));
    assert_eq!(detail["nodes"][2]["depends_on"], json!([{"job": "test", "when": "failure"}]));
    assert_eq!(detail["nodes"][0]["job"], created.json["jobs"][0]);

    assert_eq!(rest.act(&format!("/api/v1/workflows/{wf}/cancel")).await.status, StatusCode::NO_CONTENT);
    let ended = eventually(PATIENCE, "the workflow ends cancelled", || async {
        let d = rest.get(&format!("/api/v1/workflows/{wf}")).await.json;
        if d["state"] == "cancelled" { Ok(d) } else { Err(d["state"].to_string()) }
    })
    .await;
    assert_eq!(ended["cancelled"], true);
    let cancelled = rest.get("/api/v1/workflows?state=cancelled").await.expect(StatusCode::OK, "cancelled");
    assert_eq!(ids(&cancelled["items"]), [wf]);
}

#[tokio::test(flavor = "multi_thread")]
async fn schedules_are_listed_paused_resumed_triggered_and_backfilled() {
    let dev = Dev::start();
    let rest = Rest::new(&dev);
    // Once a year at midnight, 1 January: it never fires during the test by itself.
    let cron = json!({"name": "rest-cron", "command": "true", "schedule": {"cron": "0 0 1 1 *"}});
    let (job, first_run) = rest.submit(cron).await;
    assert_eq!(first_run, None, "a cron job makes no run until it fires");
    let (plain, _) = rest.submit(json!({"name": "rest-plain", "command": "true"})).await;

    let listed = rest.get("/api/v1/schedules").await.expect(StatusCode::OK, "schedules");
    assert_eq!(ids(&listed["items"]), [job.as_str()], "only the cron job is a schedule");
    assert!(listed["items"][0]["next_fire"].as_str().unwrap().contains("-01-01T00:00:00"), "{listed}");
    let info = rest.get(&format!("/api/v1/schedules/{job}")).await.expect(StatusCode::OK, "the schedule");
    assert_eq!(info["schedule"]["cron"], "0 0 1 1 *");
    assert!(!info["next"].as_array().unwrap().is_empty(), "{info}");
    assert!(info["state"]["paused_at"].is_null());
    rest.get(&format!("/api/v1/schedules/{plain}")).await.problem(404, "not-found", None, "a job with no schedule");

    let paused = rest.post(&format!("/api/v1/schedules/{job}/pause"), json!({"note": "maintenance"})).await;
    paused.expect(StatusCode::OK, "pause");
    let info = rest.get(&format!("/api/v1/schedules/{job}")).await.expect(StatusCode::OK, "paused");
    assert!(info["state"]["paused_at"].is_string(), "{info}");
    assert_eq!(info["state"]["pause_note"], "maintenance");
    assert_eq!(info["next"], json!([]), "a paused schedule has no next fires");
    assert_eq!(rest.get("/api/v1/schedules").await.json["items"][0]["paused"], true);

    rest.act(&format!("/api/v1/schedules/{job}/resume")).await.expect(StatusCode::OK, "resume");
    let info = rest.get(&format!("/api/v1/schedules/{job}")).await.expect(StatusCode::OK, "resumed");
    assert!(info["state"]["paused_at"].is_null(), "{info}");
    assert!(!info["next"].as_array().unwrap().is_empty(), "{info}");

    let fired = rest.act(&format!("/api/v1/schedules/{job}/trigger")).await.expect(StatusCode::OK, "trigger");
    assert_eq!(fired["fires"][0]["result"], "started", "{fired}");
    let run = fired["fires"][0]["run"].as_str().unwrap().to_owned();
    assert_eq!(rest.ended(&run).await["run"]["state"], "succeeded");

    let range = json!({"from": "2020-01-01T00:00:00Z", "to": "2021-12-31T00:00:00Z", "overlap": "allow_all"});
    let filled =
        rest.post(&format!("/api/v1/schedules/{job}/backfill"), range).await.expect(StatusCode::OK, "backfill");
    let instants: Vec<&str> =
        filled["fires"].as_array().unwrap().iter().map(|f| f["instant"].as_str().unwrap()).collect();
    assert_eq!(instants, ["2020-01-01T00:00:00.000Z", "2021-01-01T00:00:00.000Z"], "{filled}");
    for fire in filled["fires"].as_array().unwrap() {
        assert_eq!(fire["result"], "started", "{filled}");
        let run = fire["run"].as_str().unwrap();
        let d = rest.ended(run).await;
        assert_eq!(
            (d["run"]["state"].as_str(), d["run"]["scheduled_for"].as_str()),
            (Some("succeeded"), Some(fire["instant"].as_str().unwrap()))
        );
    }
    let info = rest.get(&format!("/api/v1/schedules/{job}")).await.expect(StatusCode::OK, "after the fires");
    assert_eq!(info["state"]["fired"], 3, "{info}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_and_its_workers_are_shown_and_a_drained_worker_takes_no_work() {
    let dev = Dev::start();
    let rest = Rest::new(&dev);
    let status = rest.get("/api/v1/cluster").await.expect(StatusCode::OK, "the cluster");
    assert_eq!(status["managers"].as_array().unwrap().len(), 1, "{status}");
    assert_eq!(status["workers"]["ready"], 1, "{status}");

    let workers = rest.get("/api/v1/workers").await.expect(StatusCode::OK, "workers")["items"].clone();
    assert_eq!(workers.as_array().unwrap().len(), 1, "{workers}");
    let worker = workers[0]["id"].as_str().unwrap().to_owned();
    assert_eq!((workers[0]["state"].as_str(), workers[0]["connected"].as_bool()), (Some("ready"), Some(true)));
    assert_eq!(workers[0]["capacity"]["cpu"], "4", "{workers}");

    assert_eq!(rest.act(&format!("/api/v1/workers/{worker}/drain")).await.status, StatusCode::NO_CONTENT);
    let workers = rest.get("/api/v1/workers").await.json;
    assert_eq!(workers["items"][0]["state"], "draining");
    // Submitted while the only worker drains, a run stays pending and says why.
    let (_, run) = rest.submit(json!({"name": "rest-held", "command": "true"})).await;
    let run = run.unwrap();
    let why = eventually(PATIENCE, "the pending run gives its reason", || async {
        let d = rest.get(&format!("/api/v1/runs/{run}")).await.json;
        match (d["run"]["state"].as_str(), d["pending_reason"].as_str()) {
            (Some("pending"), Some(why)) => Ok(why.to_owned()),
            (state, why) => Err(format!("{state:?} {why:?}")),
        }
    })
    .await;
    assert!(!why.is_empty());
    assert_eq!(rest.act(&format!("/api/v1/workers/{worker}/undrain")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(rest.get("/api/v1/workers").await.json["items"][0]["state"], "ready");
    assert_eq!(rest.ended(&run).await["run"]["state"], "succeeded", "undrained, the worker takes the run");

    rest.act("/api/v1/workers/w-999/drain").await.problem(404, "not-found", None, "an unknown worker");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_problems_naming_what_was_wrong() {
    let dev = Dev::start();
    let rest = Rest::new(&dev);
    rest.get("/api/v1/nothing-here").await.problem(404, "no-route", None, "an unknown route");
    rest.send(Method::DELETE, "/api/v1/jobs", None, &[]).await.problem(405, "method-not-allowed", None, "DELETE jobs");
    rest.get("/api/v1/jobs/job-4242").await.problem(404, "not-found", None, "an unknown job");
    rest.get("/api/v1/runs/run-4242").await.problem(404, "not-found", None, "an unknown run");

    // Bodies: malformed JSON, a wrong type, an unknown field, a bad value, not JSON at all.
    let cases: [(&str, &[u8], &str); 6] = [
        ("/api/v1/jobs", br#"{"command": "#, "command"),
        ("/api/v1/jobs", br#"{"command": 5}"#, "command"),
        ("/api/v1/jobs", br#"{"command": "true", "tiemout": "5s"}"#, "tiemout"),
        ("/api/v1/jobs", br#"{"command": "true", "timeout": "5x"}"#, "timeout"),
        ("/api/v1/jobs/batch", br#"{"jobs": [{"command": "true"}, {"argv": "ls"}]}"#, "jobs[1].argv"),
        ("/api/v1/workflows", br#"{"workflow": {"name": "w"}, "jobs": [{"command": "true"}]}"#, "jobs[0].name"),
    ];
    for (path, body, field) in cases {
        let what = String::from_utf8_lossy(body).into_owned();
        let p = rest.send(Method::POST, path, Some(body.to_vec()), &[]).await.problem(
            400,
            "invalid-argument",
            Some(field),
            &what,
        );
        assert!(p["detail"].as_str().unwrap().starts_with(&format!("{field}: ")), "{p}");
    }
    let text = rest
        .send(Method::POST, "/api/v1/jobs", Some(b"command=true".to_vec()), &[("content-type", "text/plain")])
        .await;
    text.problem(400, "invalid-argument", Some("content-type"), "a text body");

    // Query values.
    for (path, field) in [
        ("/api/v1/runs?limit=lots", "limit"),
        ("/api/v1/runs?limit=5000", "limit"),
        ("/api/v1/runs?state=sleeping", "state"),
        ("/api/v1/runs?since=yesterday", "since"),
        ("/api/v1/runs?until=2026-12-01%2010:00:00", "until"),
        ("/api/v1/runs?job=run-3", "job"),
        ("/api/v1/jobs?before=job-x", "before"),
        ("/api/v1/jobs?colour=blue", "colour"),
        ("/api/v1/runs/run-1/wait?timeout=5x", "timeout"),
        ("/api/v1/runs/run-1/output?stream=stdin", "stream"),
        ("/api/v1/runs/run-1/output?tail=-1", "tail"),
        ("/api/v1/runs/run-x", "id"),
        ("/api/v1/workflows/job-3", "id"),
    ] {
        rest.get(path).await.problem(400, "invalid-argument", Some(field), path);
    }

    // A body over the limit (64 MiB) is refused before it is read whole.
    let mut big = br#"{"command": ""#.to_vec();
    big.resize(65 << 20, b'a');
    big.extend_from_slice(br#""}"#);
    let refused = rest.send(Method::POST, "/api/v1/jobs", Some(big), &[]).await;
    refused.problem(413, "body-too-large", Some("body"), "a 65 MiB body");
    assert_eq!(rest.get("/api/v1/jobs").await.json["items"], json!([]), "a refused request stored a job");
}

/// Where two JSON documents differ, one line per differing path.
fn differences(path: &str, cli: &Value, rest: &Value, out: &mut Vec<String>) {
    match (cli, rest) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                differences(
                    &format!("{path}.{k}"),
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(&format!("{path}[{i}]"), x, y, out);
            }
        }
        (a, b) if a != b => out.push(format!("{path}: CLI {a} vs REST {b}")),
        _ => {}
    }
}

fn assert_same(what: &str, cli: &Value, rest: &Value) {
    let mut diff = Vec::new();
    differences("", cli, rest, &mut diff);
    assert!(diff.is_empty(), "{what}: the CLI's --output json and REST differ:\n{}", diff.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_and_rest_give_the_same_documents_for_the_same_objects() {
    let dev = Dev::start();
    let rest = Rest::new(&dev);
    let (job, run) = rest.submit(json!({"name": "same-job", "command": "echo same", "env": {"A": "1"}})).await;
    let run = run.unwrap();
    rest.ended(&run).await;
    let flow = json!({"workflow": {"name": "same-flow"}, "jobs": [
        {"name": "a", "command": "true"}, {"name": "b", "command": "true", "depends_on": ["a"]}]});
    let wf = rest.post("/api/v1/workflows", flow).await.expect(StatusCode::CREATED, "workflow")["workflow"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(PATIENCE, "the workflow ends", || async {
        let d = rest.get(&format!("/api/v1/workflows/{wf}")).await.json;
        if d["state"] == "succeeded" { Ok(()) } else { Err(d["state"].to_string()) }
    })
    .await;

    let server = dev.server.clone();
    let cli = |args: &'static [&'static str], extra: Option<String>| {
        let server = server.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut all: Vec<&str> = args.to_vec();
                if let Some(e) = &extra {
                    all.push(e);
                }
                common::json(&server, &all)
            })
            .await
            .unwrap()
        }
    };
    for (what, cli_doc, path) in [
        ("the job", cli(&["get"], Some(job.clone())).await, format!("/api/v1/jobs/{job}")),
        ("the run", cli(&["get"], Some(run.clone())).await, format!("/api/v1/runs/{run}")),
        ("the workflow", cli(&["get"], Some(wf.clone())).await, format!("/api/v1/workflows/{wf}")),
        ("the runs", cli(&["runs"], None).await, "/api/v1/runs".to_owned()),
        ("the workflows", cli(&["workflows"], None).await, "/api/v1/workflows".to_owned()),
        ("the jobs", cli(&["jobs"], None).await, "/api/v1/jobs".to_owned()),
    ] {
        let rest_doc = rest.get(&path).await.expect(StatusCode::OK, &path);
        assert_same(what, &cli_doc, &rest_doc);
    }

    // Workers: `last_seen` moves with every heartbeat, so it is compared apart:
    // both must have one.
    let mut cli_workers = cli(&["workers"], None).await;
    let mut rest_workers = rest.get("/api/v1/workers").await.expect(StatusCode::OK, "workers");
    // The CLI may print the list itself or the same {"items": […]} page.
    if cli_workers.is_array() {
        cli_workers = json!({"items": cli_workers});
    }
    for doc in [&mut cli_workers, &mut rest_workers] {
        for w in doc["items"].as_array_mut().unwrap() {
            let seen = w.as_object_mut().unwrap().remove("last_seen");
            assert!(seen.as_ref().is_some_and(Value::is_string), "a connected worker has a last_seen: {w}");
        }
    }
    assert_same("the workers", &cli_workers, &rest_workers);
}
