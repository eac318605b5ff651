//! Secret environment variables end to end. A value given with `--secret-env`,
//! in a spec file's `[secret_env]`, in a REST body's `secret_env` or in a gRPC
//! JobSpec reaches the job's real shell process (it prints the value without
//! its first character, proving delivery, and the value itself, which comes out
//! masked as `***`), while every read — the CLI's tables and JSON, REST, gRPC,
//! the manager's log and its metrics — shows `***` and never the value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use archon_core::api::{Api, JobQuery, RunDetail};
use archon_core::manager::Manager;
use archon_core::model::{JobSpec, Resources, RunState, Secret, Task, WorkflowNode, WorkflowSpec};
use archon_core::store::MemStore;
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use common::{CLI, Dev, text};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// What each job runs: the plain variable, the secret as it is (masked in the
/// output), and the secret without its first character (so the output proves
/// the value arrived without containing it).
const SHOW: &str = r#"echo "plain=$PLAIN"; echo "raw=$API_TOKEN"; echo "rest=${API_TOKEN#?}""#;

/// What [`SHOW`] prints for `secret`.
fn shown(secret: &str) -> String {
    format!("plain=p\nraw=***\nrest={}\n", &secret[1..])
}

/// Panics if `what`'s `text` contains any of `secrets`.
fn assert_hidden(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "{what} shows the secret value {secret:?}:\n{text}");
    }
}

#[test]
fn a_secret_given_to_the_cli_or_a_spec_file_reaches_the_job_and_no_read_shows_it() {
    const INLINE: &str = "s3cr3t-inline-7f3a";
    const FROM_SHELL: &str = "s3cr3t-from-shell-91c2";
    const IN_FILE: &str = "s3cr3t-in-file-0b6e";
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("dev.log");
    let dev = Dev::start_with(&["--log-filter", "debug"], &log);
    let secrets = [INLINE, FROM_SHELL, IN_FILE];

    // Inline, and from this shell's environment (NAME alone).
    let show_both = format!(r#"{SHOW}; echo "db=${{DB_PASSWORD#?}}""#);
    let out = Command::new(CLI)
        .args(["submit", "--wait", "--name", "deploy", "--env", "PLAIN=p"])
        .args(["--secret-env", &format!("API_TOKEN={INLINE}"), "--secret-env", "DB_PASSWORD"])
        .args(["--command", &show_both])
        .env("ARCHON_SERVER", &dev.server)
        .env("DB_PASSWORD", FROM_SHELL)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{}db={}\n", shown(INLINE), &FROM_SHELL[1..]));

    // A spec file's [secret_env] table.
    let spec = dir.path().join("secret.toml");
    std::fs::write(
        &spec,
        format!("name = \"from-file\"\ncommand = '{SHOW}'\nenv = {{ PLAIN = \"p\" }}\n[secret_env]\nAPI_TOKEN = \"{IN_FILE}\"\n"),
    )
    .unwrap();
    let out = dev.cli(&["run", "-f", spec.to_str().unwrap(), "--wait"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), shown(IN_FILE));

    // Every read shows the names with ***, never a value.
    let job = dev.json(&["get", "job-1"]);
    assert_eq!(job["job"]["secret_env"], json!({"API_TOKEN": "***", "DB_PASSWORD": "***"}), "{job}");
    assert_eq!(job["job"]["env"], json!({"PLAIN": "p"}));
    let file_job = dev.json(&["get", "job-2"]);
    assert_eq!(file_job["job"]["secret_env"], json!({"API_TOKEN": "***"}), "{file_job}");
    let table = text(&dev.cli(&["get", "job-1"]).stdout);
    assert!(table.contains("secret env: API_TOKEN=***, DB_PASSWORD=***"), "{table}");
    for args in [
        vec!["get", "job-1"],
        vec!["get", "job-2"],
        vec!["jobs"],
        vec!["get", "run-1"],
        vec!["get", "run-2"],
        vec!["runs"],
        vec!["logs", "run-1"],
        vec!["status"],
    ] {
        for format in ["table", "json"] {
            let mut all = args.clone();
            all.extend(["--output", format]);
            let out = dev.cli(&all);
            assert!(out.status.success(), "{all:?}: {}", text(&out.stderr));
            assert_hidden(&format!("archon {}", all.join(" ")), &(text(&out.stdout) + &text(&out.stderr)), &secrets);
        }
    }

    // A variable in both env and secret_env is refused naming the flag, showing no value.
    let clash = dev.cli(&["submit", "--env", "K=plain", "--secret-env", &format!("K={INLINE}"), "--command", "true"]);
    assert_eq!(clash.status.code(), Some(2), "{}", text(&clash.stderr));
    assert!(text(&clash.stderr).contains("--secret-env: K is also in env"), "{}", text(&clash.stderr));
    assert_hidden("the refusal", &text(&clash.stderr), &secrets);

    // Nor does the manager's log (at debug) or its metrics.
    let metrics = get_text(&format!("{}/metrics", dev.server.trim_end_matches('/')));
    assert!(metrics.contains("archon_"), "{metrics}");
    assert_hidden("/metrics", &metrics, &secrets);
    drop(dev);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("job submitted"), "the log was written at debug: {logged}");
    assert_hidden("the manager's log", &logged, &secrets);
}

/// The body of a GET, from a test without a runtime.
fn get_text(url: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_submitted_over_rest_reaches_the_job_and_every_get_answers_stars() {
    const SECRET: &str = "s3cr3t-over-rest-5d1e";
    let dev = Dev::start();
    let base = dev.server.trim_end_matches('/').to_owned();
    let http = reqwest::Client::new();
    let body =
        json!({"name": "rest-secret", "command": SHOW, "env": {"PLAIN": "p"}, "secret_env": {"API_TOKEN": SECRET}});
    let res = http.post(format!("{base}/api/v1/jobs")).json(&body).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let submitted: Value = res.json().await.unwrap();
    assert_hidden("the submit's answer", &submitted.to_string(), &[SECRET]);
    let (job, run) = (submitted["job"].as_str().unwrap(), submitted["run"].as_str().unwrap());

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let ended = loop {
        let d: Value =
            http.get(format!("{base}/api/v1/runs/{run}/wait?timeout=10s")).send().await.unwrap().json().await.unwrap();
        if d["run"]["state"] == "succeeded" {
            break d;
        }
        assert!(std::time::Instant::now() < deadline && d["run"]["state"] != "failed", "{d}");
    };
    assert_eq!(ended["attempts"][0]["stdout"]["text"], shown(SECRET), "{ended}");

    let detail = http.get(format!("{base}/api/v1/jobs/{job}")).send().await.unwrap().text().await.unwrap();
    let detail_json: Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(detail_json["job"]["secret_env"], json!({"API_TOKEN": "***"}), "{detail}");
    assert_hidden("GET the job", &detail, &[SECRET]);
    for path in ["/api/v1/jobs", &format!("/api/v1/runs/{run}"), "/api/v1/runs", "/api/v1/cluster"] {
        let text = http.get(format!("{base}{path}")).send().await.unwrap().text().await.unwrap();
        assert_hidden(&format!("GET {path}"), &text, &[SECRET]);
    }

    // A variable in both maps: 400 naming secret_env.
    let clash = json!({"command": "true", "env": {"K": "a"}, "secret_env": {"K": SECRET}});
    let res = http.post(format!("{base}/api/v1/jobs")).json(&clash).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let problem = res.text().await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&problem).unwrap()["field"], "secret_env", "{problem}");
    assert_hidden("the problem", &problem, &[SECRET]);
}

/// A manager on a MemStore served over gRPC on loopback, a worker with the real
/// local executors connected through its gRPC session, and a gRPC client.
struct GrpcCluster {
    manager: Manager,
    api: Arc<dyn Api>,
    shutdown: CancellationToken,
}

impl GrpcCluster {
    async fn start() -> GrpcCluster {
        let manager = Manager::builder(Arc::new(MemStore::new())).build();
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let (manager, shutdown) = (manager.clone(), shutdown.clone());
            async move { manager.run(shutdown).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(archon_net::serve_manager(listener, manager.clone(), shutdown.clone()));
        let worker = WorkerRuntime::new(
            WorkerConfig::new("w1", Resources { cpu_millis: 4000, memory_bytes: 4 << 30, ..Resources::default() }),
            Arc::new(archon_exec::local_registry()),
            Arc::new(archon_net::GrpcTransport::new(vec![format!("http://{address}")])),
        );
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move { worker.run(shutdown).await }
        });
        let api: Arc<dyn Api> = Arc::new(archon_net::GrpcClient::connect(&format!("http://{address}")).await.unwrap());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !api.list_workers().await.unwrap().iter().any(|w| w.connected) {
            assert!(tokio::time::Instant::now() < deadline, "the worker did not connect");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        GrpcCluster { manager, api, shutdown }
    }

    async fn wait(&self, run: archon_core::model::RunId) -> RunDetail {
        tokio::time::timeout(Duration::from_secs(60), self.api.wait(run)).await.expect("the run ends").unwrap()
    }
}

fn secret_job(name: &str, secret: &str) -> JobSpec {
    let mut spec = JobSpec::new(name, Task::Shell { command: SHOW.into() });
    spec.env.insert("PLAIN".into(), "p".into());
    spec.secret_env.insert("API_TOKEN".into(), Secret::new(secret));
    spec
}

#[tokio::test(flavor = "multi_thread")]
async fn over_grpc_the_worker_gets_the_secret_and_get_and_list_show_stars() {
    const SECRET: &str = "s3cr3t-over-grpc-c0de";
    const IN_WORKFLOW: &str = "s3cr3t-in-workflow-77aa";
    let c = GrpcCluster::start().await;

    let submitted = c.api.submit(vec![secret_job("grpc-secret", SECRET)]).await.unwrap().pop().unwrap().unwrap();
    let done = c.wait(submitted.run.unwrap()).await;
    assert_eq!(done.run.state, RunState::Succeeded, "{done:?}");
    let result = done.attempts[0].result.as_ref().unwrap();
    assert_eq!(result.stdout.text(), shown(SECRET), "delivered to the shell, masked in its output");

    for (via, api) in [("gRPC", c.api.clone()), ("in process", Arc::new(c.manager.clone()) as Arc<dyn Api>)] {
        let detail = api.get_job(submitted.job).await.unwrap();
        assert_eq!(detail.job.spec.secret_env["API_TOKEN"].expose(), "***", "{via}");
        assert_eq!(detail.job.spec.env["PLAIN"], "p", "{via}");
        assert_hidden(via, &serde_json::to_string(&detail).unwrap(), &[SECRET]);
        let page = api.list_jobs(JobQuery::default()).await.unwrap();
        assert_hidden(via, &serde_json::to_string(&page).unwrap(), &[SECRET]);
        let run = api.get_run(submitted.run.unwrap()).await.unwrap();
        assert_hidden(via, &serde_json::to_string(&run).unwrap(), &[SECRET]);
    }

    // A workflow's job: delivered to its worker, redacted in the workflow's detail.
    let node = WorkflowNode { name: "only".into(), job: secret_job("wf-secret", IN_WORKFLOW), after: Vec::new() };
    let spec = WorkflowSpec { name: "with-a-secret".into(), nodes: vec![node], schedule: None };
    let wf = c.api.submit_workflow(spec).await.unwrap();
    let job = wf.jobs[0];
    let run = c.api.get_job(job).await.unwrap().runs[0].id;
    assert_eq!(c.wait(run).await.attempts[0].result.as_ref().unwrap().stdout.text(), shown(IN_WORKFLOW));
    let detail = c.api.get_workflow(wf.workflow.unwrap()).await.unwrap();
    assert_eq!(detail.workflow.spec.nodes[0].job.secret_env["API_TOKEN"].expose(), "***");
    assert_hidden("the workflow", &serde_json::to_string(&detail).unwrap(), &[IN_WORKFLOW]);
    assert_hidden(
        "the workflow's job",
        &serde_json::to_string(&c.api.get_job(job).await.unwrap()).unwrap(),
        &[IN_WORKFLOW],
    );
    c.shutdown.cancel();
}
