//! The web application over real HTTP: the router served on a loopback port,
//! driven with reqwest as a browser or curl would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use archon::Archon;
use archon_core::api::Api;
use archon_core::model::{RunId, RunState};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use serde_json::{Value, json};

/// How long any one step may take on a loaded machine before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

/// Awaits `step`, failing the test if it takes longer than [`DEADLINE`].
async fn within<T>(what: &str, step: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, step).await.unwrap_or_else(|_| panic!("{what}: not done within {DEADLINE:?}"))
}

/// An embedded Archon (in memory) and the router serving it on a loopback
/// port; returns the Archon and the server's base URL.
async fn serve() -> (Archon, String) {
    let archon = within("start Archon", Archon::embedded().in_memory().start()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, example_web_app::router(archon.handle())).into_future());
    (archon, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_streams_its_lines_while_the_job_runs() {
    const LINES: u64 = 60; // 3 s of job at 0.05 s a line
    let (archon, base) = serve().await;
    let http = reqwest::Client::new();

    let request = http.post(format!("{base}/reports")).json(&json!({ "lines": LINES }));
    let submitted = within("POST /reports", request.send()).await.unwrap();
    assert_eq!(submitted.status(), StatusCode::ACCEPTED);
    let location = submitted.headers()[LOCATION].to_str().unwrap().to_owned();
    let body: Value = submitted.json().await.unwrap();
    let run: RunId = body["run"].as_str().unwrap().parse().unwrap();
    assert!(body["job"].as_str().unwrap().starts_with("job-"), "{body}");
    assert_eq!(location, format!("/reports/{run}/output"));

    let mut output = within("GET the output", http.get(format!("{base}{location}")).send()).await.unwrap();
    assert_eq!(output.status(), StatusCode::OK);
    assert_eq!(output.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");

    let first = within("the first chunk", output.chunk()).await.unwrap().expect("a first chunk");
    let state = archon.manager().get_run(run).await.unwrap().run.state;
    assert!(!state.is_terminal(), "the first chunk arrived only once {run} was {state}");
    assert!(first.starts_with(b"line 1\n"), "first chunk: {:?}", String::from_utf8_lossy(&first));

    let mut streamed = first.to_vec();
    while let Some(chunk) = within("the next chunk", output.chunk()).await.unwrap() {
        streamed.extend_from_slice(&chunk);
    }
    let expected: String = (1..=LINES).map(|i| format!("line {i}\n")).collect();
    assert_eq!(String::from_utf8(streamed).unwrap(), expected);
    let ended = within("the run's end", archon.manager().wait(run)).await.unwrap();
    assert_eq!(ended.run.state, RunState::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_report_request_is_a_400_naming_the_field_and_range() {
    let (_archon, base) = serve().await;
    let http = reqwest::Client::new();

    for body in [json!({ "lines": 0 }), json!({ "lines": 1001 }), json!({ "lines": "many" }), json!({})] {
        let answer = within("POST /reports", http.post(format!("{base}/reports")).json(&body).send()).await.unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "for {body}");
        let error: Value = answer.json().await.unwrap();
        assert_eq!(error["field"], "lines", "for {body}: {error}");
        let message = error["error"].as_str().unwrap();
        assert!(message.contains("from 1 to 1000"), "for {body}: {message}");
    }

    let not_json = http.post(format!("{base}/reports")).body("lines=5").send();
    let answer = within("POST /reports", not_json).await.unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    assert_eq!(answer.json::<Value>().await.unwrap()["field"], "body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_run_is_a_404_and_a_malformed_one_a_400() {
    let (_archon, base) = serve().await;
    let http = reqwest::Client::new();

    let unknown = within("GET an unknown run", http.get(format!("{base}/reports/run-999999/output")).send()).await;
    let unknown = unknown.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let error: Value = unknown.json().await.unwrap();
    assert!(error["error"].as_str().unwrap().contains("run-999999"), "{error}");

    let malformed = within("GET a malformed run", http.get(format!("{base}/reports/yesterday/output")).send()).await;
    let malformed = malformed.unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(malformed.json::<Value>().await.unwrap()["field"], "run");
}
