//! The router and the OpenAPI document agree: every operation the document
//! lists is answered by a handler, and what it does not list is answered by the
//! `no-route` / `method-not-allowed` problems.
//!
//! Both are built from one list: each handler is registered with utoipa-axum's
//! `routes!` from its `#[utoipa::path]`, and `OpenApiRouter::split_for_parts`
//! yields the axum router and the document from it (archon-http's
//! `routes::api_routes`). So the two directions hold by construction; these
//! probes check it from outside, through the router `archon dev` serves, and
//! would catch a handler routed around the list or a path written differently
//! in its `#[utoipa::path]` than in its registration. The document's own page
//! (`/api/v1/openapi.json`, `/api/docs`) and `/metrics` are served beside it and
//! are not operations of the API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use archon_core::api::Api;
use archon_core::manager::Manager;
use archon_core::store::MemStore;
use archon_http::HttpConfig;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The REST API of a manager on an in-memory store, running.
fn router(shutdown: &CancellationToken) -> axum::Router {
    let manager = Manager::builder(Arc::new(MemStore::new())).build();
    tokio::spawn({
        let (m, s) = (manager.clone(), shutdown.clone());
        async move { m.run(s).await }
    });
    let api: Arc<dyn Api> = Arc::new(manager);
    archon_http::router(api, &HttpConfig::default(), shutdown.clone())
}

/// Every (method, path template) of the document.
fn documented() -> Vec<(Method, String)> {
    let doc = serde_json::to_value(archon_http::openapi()).unwrap();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if let Ok(m) = method.to_uppercase().parse::<Method>()
                && ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&m.as_str())
            {
                ops.push((m, path.clone()));
            }
        }
    }
    ops
}

/// A token's id: 16 hex digits.
const TOKEN_ID: &str = "0123456789abcdef";

/// A template with an id of the right kind in each `{…}`: `/api/v1/runs/run-1/wait`.
fn concrete(template: &str) -> String {
    let mut out = Vec::new();
    for segment in template.split('/') {
        let id = match out.last().copied() {
            _ if !segment.starts_with('{') => segment,
            Some("jobs" | "schedules") => "job-1",
            Some("runs") => "run-1",
            Some("workflows") => "wf-1",
            Some("workers") => "w-1",
            Some("tokens") => TOKEN_ID,
            other => panic!("{template}: no id kind for a parameter after {other:?}"),
        };
        out.push(id);
    }
    out.join("/")
}

/// The answer to `method path`: status and, for a problem, its `type`.
async fn ask(router: &axum::Router, method: Method, path: &str) -> (StatusCode, Option<String>) {
    let mut req = Request::builder().method(method.clone()).uri(path);
    let body = if method == Method::POST || method == Method::PUT || method == Method::PATCH {
        req = req.header(header::CONTENT_TYPE, "application/json");
        Body::from("{}")
    } else {
        Body::empty()
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), router.clone().oneshot(req.body(body).unwrap()))
        .await
        .unwrap_or_else(|_| panic!("{method} {path} did not answer within 10s"))
        .unwrap();
    let status = answer.status();
    let is_problem = answer.headers().get(header::CONTENT_TYPE).is_some_and(|v| v == "application/problem+json");
    let kind = if is_problem {
        let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20).await.unwrap();
        let problem: Value = serde_json::from_slice(&bytes).unwrap();
        Some(problem["type"].as_str().unwrap().to_owned())
    } else {
        None
    };
    (status, kind)
}

const NO_ROUTE: &str = "urn:archon:problem:no-route";
const WRONG_METHOD: &str = "urn:archon:problem:method-not-allowed";

#[tokio::test]
async fn every_documented_operation_reaches_a_handler() {
    let shutdown = CancellationToken::new();
    let router = router(&shutdown);
    let ops = documented();
    assert!(ops.len() >= 25, "the document lists only {} operations", ops.len());
    for (method, template) in ops {
        let path = concrete(&template);
        let (status, kind) = ask(&router, method.clone(), &path).await;
        assert!(
            kind.as_deref() != Some(NO_ROUTE) && kind.as_deref() != Some(WRONG_METHOD),
            "{method} {path} (documented as {template}) is not routed: {status} {kind:?}"
        );
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
    shutdown.cancel();
}

#[tokio::test]
async fn what_the_document_does_not_list_gets_the_no_route_problems() {
    let shutdown = CancellationToken::new();
    let router = router(&shutdown);
    let ops = documented();

    // Each documented path with every method it does not list: 405.
    let mut paths: Vec<&String> = ops.iter().map(|(_, p)| p).collect();
    paths.sort();
    paths.dedup();
    for template in paths {
        for method in [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            if ops.iter().any(|(m, p)| *m == method && p == template) {
                continue;
            }
            let path = concrete(template);
            let (status, kind) = ask(&router, method.clone(), &path).await;
            assert_eq!(
                (status, kind.as_deref()),
                (StatusCode::METHOD_NOT_ALLOWED, Some(WRONG_METHOD)),
                "{method} {path} is not in the document"
            );
        }
    }

    // Paths the document does not have at all: 404.
    for path in [
        "/api/v1/jobz",
        "/api/v1/job",
        "/api/v1/jobs/job-1/runs",
        "/api/v1/runs/run-1/logs",
        "/api/v1/schedules/job-1/delete",
        "/api/v1/workers/w-1",
        "/api/v1/workflows/wf-1/nodes",
        "/api/v2/jobs",
        "/api/v1",
        "/index.html",
        "/ui",
        "/ui/app.js/x",
    ] {
        for method in [Method::GET, Method::POST] {
            let (status, kind) = ask(&router, method.clone(), path).await;
            assert_eq!((status, kind.as_deref()), (StatusCode::NOT_FOUND, Some(NO_ROUTE)), "{method} {path}");
        }
    }
    shutdown.cancel();
}

#[test]
fn every_id_in_a_path_has_its_pattern_in_the_document() {
    let doc = serde_json::to_value(archon_http::openapi()).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for param in op["parameters"].as_array().into_iter().flatten() {
                if param["in"] == "path" {
                    let pattern = param["schema"]["pattern"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{method} {path}: path parameter {} has no pattern", param["name"]));
                    if path.starts_with("/api/v1/tokens/") {
                        assert_eq!(pattern, "^[0-9a-f]{16}$", "{method} {path}");
                        continue;
                    }
                    let prefix = concrete(path).rsplit('/').find(|s| s.ends_with("-1")).unwrap().replace('1', "");
                    assert_eq!(pattern, format!("^({prefix})?[0-9]{{1,19}}$"), "{method} {path}");
                }
            }
        }
    }
}

/// The status and body of `GET path`.
async fn get(router: &axum::Router, path: &str, headers: &[(&str, &[u8])]) -> (StatusCode, Value) {
    let mut req = Request::builder().uri(path);
    for (name, value) in headers {
        req = req.header(*name, axum::http::HeaderValue::from_bytes(value).unwrap());
    }
    let answer = router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = answer.status();
    let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn ids_numbers_states_and_instants_are_read_exactly_as_the_document_writes_them() {
    let shutdown = CancellationToken::new();
    let router = router(&shutdown);
    // Accepted: what the patterns, bounds and enums of the document admit.
    for path in [
        "/api/v1/jobs?before=job-12&limit=1",
        "/api/v1/jobs?before=12&limit=1000",
        "/api/v1/runs?before=run-9999999999999999999&state=timed_out",
        "/api/v1/runs?since=0001-01-01T00:00:00Z&until=9999-12-31T23:59:59.999-23:59",
        "/api/v1/workflows?state=cancelled&before=wf-3",
        "/api/v1/schedules?limit=7",
    ] {
        let (status, body) = get(&router, path, &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    // Refused naming the parameter: anything the document does not admit.
    for (path, field) in [
        ("/api/v1/jobs?limit=0", "limit"),
        ("/api/v1/jobs?limit=1001", "limit"),
        ("/api/v1/jobs?limit=%2B5", "limit"),
        ("/api/v1/jobs?limit=%205", "limit"),
        ("/api/v1/jobs?before=%2012", "before"),
        ("/api/v1/jobs?before=job-%2B12", "before"),
        ("/api/v1/jobs?before=00000000000000000012", "before"),
        ("/api/v1/jobs?before=run-12", "before"),
        ("/api/v1/runs?state=Succeeded", "state"),
        ("/api/v1/runs?state=timed-out", "state"),
        ("/api/v1/workflows?state=%20running", "state"),
        ("/api/v1/runs?since=2026-12-01%2010:00:00Z", "since"),
        ("/api/v1/runs?until=2026-02-29T10:00:00Z", "until"),
        ("/api/v1/runs/run-1/output?tail=9223372036854775808", "tail"),
        ("/api/v1/jobs/job-%2B1", "id"),
        ("/api/v1/workflows/wf-1x", "id"),
    ] {
        let (status, body) = get(&router, path, &[]).await;
        assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{path}: {body}");
    }
    let (status, body) = get(&router, "/api/v1/runs/run-1/events", &[("last-event-id", b"null")]).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("Last-Event-ID")), "{body}");
    shutdown.cancel();
}

#[test]
fn the_job_listing_documents_the_kinds_and_states_it_accepts() {
    let doc = serde_json::to_value(archon_http::openapi()).unwrap();
    let params = doc["paths"]["/api/v1/jobs"]["get"]["parameters"].as_array().unwrap();
    for (name, values) in [
        ("kind", vec!["shell", "script", "process", "docker", "function", "custom"]),
        ("state", archon_core::model::RunState::ALL.iter().map(|s| s.as_str()).collect()),
    ] {
        let param = params.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no {name} parameter"));
        assert_eq!(param["in"], "query", "{param}");
        // The schema, or the one it refers to (possibly as one of a nullable pair).
        let schema = &param["schema"];
        let reference =
            schema["$ref"].as_str().or_else(|| schema["oneOf"].as_array()?.iter().find_map(|s| s["$ref"].as_str()));
        let schema = match reference {
            Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
            None => schema,
        };
        let listed: Vec<&str> = schema["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {param}"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(listed, values, "{name}");
    }
}

/// The status and body of `POST path` with a JSON `body`.
async fn post(router: &axum::Router, path: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let answer = router.clone().oneshot(req).await.unwrap();
    let status = answer.status();
    let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn jobs_are_listed_by_task_kind_and_latest_run_state() {
    let shutdown = CancellationToken::new();
    let router = router(&shutdown);
    // No worker joins: runs stay pending until cancelled, which retires their
    // job to the history, so both the live state and the history are filtered.
    let mut job = Vec::new();
    for body in [
        serde_json::json!({"name": "shell-live", "command": "true"}),
        serde_json::json!({"name": "process-live", "argv": ["true"]}),
        serde_json::json!({"name": "shell-done", "command": "true"}),
        serde_json::json!({"name": "process-done", "argv": ["true"]}),
        serde_json::json!({"name": "shell-cron", "command": "true", "schedule": {"cron": "0 0 1 1 *"}}),
    ] {
        let (status, submitted) = post(&router, "/api/v1/jobs", body).await;
        assert_eq!(status, StatusCode::CREATED, "{submitted}");
        job.push(submitted["job"].as_str().unwrap().to_owned());
    }
    // A cron workflow: a job of its own, listed as `workflow`, of no task kind.
    let flow = serde_json::json!({
        "workflow": {"name": "nightly", "schedule": {"cron": "0 0 1 1 *"}},
        "jobs": [{"name": "step", "command": "true"}],
    });
    let (status, created) = post(&router, "/api/v1/workflows", flow).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    for done in &job[2..4] {
        let (status, body) = post(&router, &format!("/api/v1/jobs/{done}/cancel"), Value::Null).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    let (_, all) = get(&router, "/api/v1/jobs", &[]).await;
    let cron_flow = all["items"].as_array().unwrap().iter().find(|j| j["kind"] == "workflow").unwrap()["id"].clone();
    assert_eq!(all["items"].as_array().unwrap().len(), 6, "{all}");

    let listed = |query: &'static str| {
        let router = router.clone();
        async move {
            let (status, page) = get(&router, &format!("/api/v1/jobs?{query}"), &[]).await;
            assert_eq!(status, StatusCode::OK, "{query}: {page}");
            let ids: Vec<String> =
                page["items"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_owned()).collect();
            (ids, page["next"].as_str().map(str::to_owned))
        }
    };
    let of = |i: &[usize]| i.iter().map(|i| job[*i].clone()).collect::<Vec<_>>();
    assert_eq!(listed("kind=shell").await, (of(&[4, 2, 0]), None));
    assert_eq!(listed("kind=process").await, (of(&[3, 1]), None));
    assert_eq!(listed("kind=docker").await, (of(&[]), None));
    assert_eq!(listed("kind=function").await, (of(&[]), None), "the cron workflow ({cron_flow}) is no function");
    assert_eq!(listed("state=pending").await, (of(&[1, 0]), None));
    assert_eq!(listed("state=cancelled").await, (of(&[3, 2]), None));
    assert_eq!(listed("state=succeeded").await, (of(&[]), None));
    assert_eq!(listed("kind=process&state=pending").await, (of(&[1]), None));
    assert_eq!(listed("kind=shell&state=cancelled&name=done").await, (of(&[2]), None));
    // Pages hold only matching jobs, and the cursor leads to the next match.
    assert_eq!(listed("kind=shell&limit=2").await, (of(&[4, 2]), Some(job[2].clone())));
    let (status, rest) = get(&router, &format!("/api/v1/jobs?kind=shell&limit=2&before={}", job[2]), &[]).await;
    assert_eq!(status, StatusCode::OK, "{rest}");
    assert_eq!((rest["items"][0]["id"].as_str(), rest["items"].as_array().unwrap().len()), (Some(job[0].as_str()), 1));
    assert_eq!(rest["next"], Value::Null);

    // Refused naming the parameter and what it accepts.
    for (query, field, accepted) in [
        ("kind=nope", "kind", "shell, script, process, docker, function"),
        ("kind=Shell", "kind", "\"shell\""),
        ("kind=workflow", "kind", "shell, script, process, docker, function"),
        ("state=nope", "state", "waiting, pending, scheduled, running"),
        ("state=Failed", "state", "\"failed\""),
    ] {
        let (status, problem) = get(&router, &format!("/api/v1/jobs?{query}"), &[]).await;
        assert_eq!((status, problem["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{query}: {problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.starts_with(&format!("{field}: ")) && detail.contains(accepted), "{query}: {detail}");
    }
    shutdown.cancel();
}

#[tokio::test]
async fn any_idempotency_key_a_client_can_send_is_a_key() {
    let shutdown = CancellationToken::new();
    let router = router(&shutdown);
    let submit = |key: &'static [u8]| {
        let router = router.clone();
        async move {
            let req = Request::post("/api/v1/jobs")
                .header(header::CONTENT_TYPE, "application/json")
                .header("idempotency-key", axum::http::HeaderValue::from_bytes(key).unwrap())
                .body(Body::from(r#"{"command": "true"}"#))
                .unwrap();
            let answer = router.oneshot(req).await.unwrap();
            let status = answer.status();
            let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20).await.unwrap();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    let (status, first) = submit(b"caf\xe9 \xff").await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = submit(b"caf\xe9 \xff").await;
    assert_eq!((status, &again["job"], &again["duplicate"]), (StatusCode::OK, &first["job"], &Value::Bool(true)));
    let (status, other) = submit(b"caf\xe9 \xfe").await;
    assert_eq!(status, StatusCode::CREATED, "another key is another job: {other}");
    shutdown.cancel();
}

#[tokio::test]
async fn on_disconnect_is_taken_from_a_submit_shown_by_the_job_and_refused_naming_the_field() {
    let shutdown = CancellationToken::new();
    let router = router(&shutdown);
    let body = serde_json::json!({"name": "etl", "command": "true", "on_disconnect": "keep"});
    let (status, submitted) = post(&router, "/api/v1/jobs", body).await;
    assert_eq!(status, StatusCode::CREATED, "{submitted}");
    let (status, detail) = get(&router, &format!("/api/v1/jobs/{}", submitted["job"].as_str().unwrap()), &[]).await;
    assert_eq!((status, &detail["job"]["on_disconnect"]), (StatusCode::OK, &Value::from("keep")), "{detail}");
    let (_, submitted) = post(&router, "/api/v1/jobs", serde_json::json!({"command": "true"})).await;
    let (_, detail) = get(&router, &format!("/api/v1/jobs/{}", submitted["job"].as_str().unwrap()), &[]).await;
    assert_eq!(detail["job"]["on_disconnect"], "kill", "kill when not given: {detail}");

    for bad in [Value::from("linger"), Value::from(""), Value::from(true)] {
        let body = serde_json::json!({"command": "true", "on_disconnect": bad});
        let (status, problem) = post(&router, "/api/v1/jobs", body).await;
        assert_eq!((status, problem["field"].as_str()), (StatusCode::BAD_REQUEST, Some("on_disconnect")), "{problem}");
        if bad.is_string() {
            let detail = problem["detail"].as_str().unwrap();
            assert!(detail.starts_with("on_disconnect: ") && detail.contains("kill or keep"), "{detail}");
        }
    }
    // The document lists both choices: the job view's enum, and the submit
    // body's description (a string there, as `placement` is, so that a batch
    // answers a bad value in that item's result rather than refusing the batch).
    let doc = serde_json::to_value(archon_http::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["OnDisconnect"]["enum"], serde_json::json!(["kill", "keep"]), "{}", schemas["OnDisconnect"]);
    let view = schemas["JobView"]["properties"]["on_disconnect"].to_string();
    assert!(view.contains("#/components/schemas/OnDisconnect"), "{view}");
    let draft = schemas["JobDraft"]["properties"]["on_disconnect"].to_string();
    assert!(draft.contains("`kill`") && draft.contains("`keep`"), "{draft}");
    shutdown.cancel();
}

/// `GET path` through `router`: status, content type and body.
async fn fetch(router: &axum::Router, path: &str) -> (StatusCode, String, Vec<u8>) {
    let req = Request::builder().uri(path).body(Body::empty()).unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let kind = resp.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap().to_vec();
    (status, kind, body)
}

#[tokio::test]
async fn the_api_page_and_every_asset_it_loads_are_served_from_the_binary() {
    let shutdown = CancellationToken::new();
    let router = router(&shutdown);
    let (status, kind, page) = fetch(&router, "/api/docs/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("text/html"), "{kind}");
    let page = String::from_utf8(page).unwrap();
    // Every script and stylesheet it names is relative (no CDN) and served here.
    let assets: Vec<&str> = page.split(['"', '\'']).filter(|s| s.ends_with(".js") || s.ends_with(".css")).collect();
    assert!(assets.len() >= 3, "the page loads its bundle, its styles and its initializer: {page}");
    for asset in assets {
        assert!(!asset.contains("://"), "{asset} is loaded from elsewhere");
        let path = format!("/api/docs/{}", asset.trim_start_matches("./"));
        let (status, _, body) = fetch(&router, &path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(body.len() > 100, "{path} is {} bytes", body.len());
    }
    // The initializer points the page at the document, which is served too.
    let (_, _, init) = fetch(&router, "/api/docs/swagger-initializer.js").await;
    assert!(String::from_utf8_lossy(&init).contains("/api/v1/openapi.json"));
    let (status, _, doc) = fetch(&router, "/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let doc: Value = serde_json::from_slice(&doc).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    shutdown.cancel();
}
