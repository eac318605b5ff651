//! The web dashboard in a real headless Chromium (WebDriver) against a real
//! `archon dev`: the overview, a job submitted from the CLI appearing and
//! finishing live, a run's output followed as it prints, cancel, the submit
//! form, drain, a workflow's graph, the reconnect after a restart, escaping,
//! keyboard use and phone width. Screenshots of each page land in
//! `target/tmp/dashboard/` (see `docs/screenshots/` for the committed ones).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser;
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use browser::Browser;
use common::{CLI, Dev, Proc, free_ports, text};
use serde_json::json;

/// Long enough for a loaded 2-core machine; checks return as soon as they hold.
const PATIENCE: Duration = Duration::from_secs(60);

/// A shell command that waits until `gate` exists (the test opens it).
fn gated(gate: &Path, then: &str) -> String {
    format!("while [ ! -e {} ]; do sleep 0.05; done; {then}", gate.display())
}

/// A run's state as the CLI reports it, awaited.
fn cli_state(dev: &Dev, run: &str, state: &str) {
    dev.wait_for_state(run, state, PATIENCE);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_submitted_from_the_cli_appears_and_finishes_live_on_the_overview_and_jobs_pages() {
    let logs = tempfile::tempdir().unwrap();
    let dev = Dev::start_with(&["--timeline-every", "200ms"], &logs.path().join("dev.log"));
    let web = Browser::start("overview", 1400, 1000).await;
    web.open(&format!("{}/", dev.server)).await;
    web.wait_attr("main", "data-page", "overview").await;
    web.wait_attr("#conn", "data-state", "live").await;
    web.wait_attr("#managers tr[data-role=leader]", "data-manager", "1").await;
    web.wait_for("#worker-bars li[data-worker]").await;
    web.wait_for("#chart-rate").await;
    web.wait_for("#chart-queue").await;
    web.wait_for("#chart-util").await;
    assert_eq!(web.text("#jobs-count").await.unwrap(), "0");
    web.screenshot("empty").await;

    // Submitted from the CLI, with the page left alone: no reload.
    let marker = web.js("window.__same_page = 42; return 1;", vec![]).await;
    assert_eq!(marker, json!(1));
    let submitted = Instant::now();
    let run = dev.submit(&["--name", "from-the-cli", "--command", "sleep 1; echo done"]);
    web.wait_text("#jobs-count", "1").await;
    eprintln!("the job showed on the overview {:?} after the CLI submitted it", submitted.elapsed());
    web.wait_for("#runs-by-state li[data-state=succeeded]").await;
    assert_eq!(web.js("return window.__same_page;", vec![]).await, json!(42), "the page reloaded");

    // The jobs page follows the same job to its end.
    let second = dev.submit(&["--name", "second-from-the-cli", "--command", "sleep 2"]);
    web.route("#/jobs", "jobs").await;
    web.wait_for("#jobs-table tr[data-job='job-2']").await;
    web.wait_attr("#jobs-table tr[data-job='job-2'] .state .badge", "data-state", "succeeded").await;
    assert!(web.text("#jobs-table tr[data-job='job-1'] .name").await.unwrap().contains("from-the-cli"));
    assert_eq!(web.js("return window.__same_page;", vec![]).await, json!(42), "the page reloaded");
    web.screenshot("jobs").await;
    let _ = (run, second);
    // The last hour's charts count them: two ended, then one more that failed.
    let failed = dev.submit(&["--name", "fails", "--command", "exit 3"]);
    cli_state(&dev, &failed, "failed");
    web.route("#/", "overview").await;
    let sum = |what: &str| {
        format!(
            "return [...document.querySelectorAll('#chart-rate g.bar')].reduce((n, b) => n + Number(b.dataset.{what}), 0);"
        )
    };
    web.until("the rate chart to count three ended runs", &format!("{} === 3", sum("ended").trim_end_matches(';')))
        .await;
    assert_eq!(web.js(&sum("failed"), vec![]).await, json!(1));
    let points =
        web.js("return Number(document.querySelector('#chart-queue polyline.queued').dataset.points);", vec![]).await;
    assert!(points.as_f64().unwrap() >= 2.0, "the queue line has {points} points");
    web.wait_for("#recent-failures tr[data-run]").await;
    web.screenshot("overview").await;
    web.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runs_output_is_followed_live_in_colour_and_the_run_is_cancelled_from_the_page() {
    let dev = Dev::start();
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    let command = format!(
        "printf '\\033[31mred line\\033[0m and plain\\n'; echo first; {}; echo second; sleep 600",
        gated(&gate, "true")
    );
    let run = dev.submit(&["--name", "printer", "--command", &command]);
    let web = Browser::start("run", 1400, 1000).await;
    web.open(&format!("{}/#/runs/{run}", dev.server)).await;
    web.wait_attr("#run-state", "data-state", "running").await;
    web.wait_text("#output", "first").await;
    // The colour is a styled span; the escape codes are gone.
    let red = web
        .js("return [...document.querySelectorAll('#output span.ansi-1')].map(s => s.textContent).join('');", vec![])
        .await;
    assert_eq!(red, json!("red line"));
    let shown = web.text("#output").await.unwrap();
    assert!(!shown.contains('\u{1b}') && !shown.contains("[31m"), "escape codes shown: {shown:?}");
    assert!(!shown.contains("second"));
    // More output arrives while the page watches.
    std::fs::write(&gate, b"").unwrap();
    web.wait_text("#output", "second").await;
    assert_eq!(web.js("return document.getElementById('output-follow').checked;", vec![]).await, json!(true));
    web.screenshot("running").await;

    // Cancel asks first; keeping it changes nothing.
    web.click("button[data-action=cancel-run]").await;
    web.until("the confirmation", "return document.getElementById('confirm').open;").await;
    web.click("#confirm button[value=cancel]").await;
    assert_eq!(dev.run_state(&run), "running");
    web.click("button[data-action=cancel-run]").await;
    web.confirm().await;
    cli_state(&dev, &run, "cancelled");
    web.wait_attr("#run-state", "data-state", "cancelled").await;
    web.wait_text("#attempts .exit", "cancelled").await;
    web.screenshot("cancelled").await;
    web.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_run_says_why_per_worker() {
    let dir = tempfile::tempdir().unwrap();
    // A worker queue would take the second run; with none it stays pending.
    let dev = Dev::start_with(&["--queue", "0"], &dir.path().join("dev.log"));
    let gate = dir.path().join("gate");
    let big = dev.submit(&["--name", "big", "--cpu", "3", "--command", &gated(&gate, "true")]);
    cli_state(&dev, &big, "running");
    let waiting = dev.submit(&["--name", "waits", "--cpu", "3", "--command", "true"]);
    let web = Browser::start("pending", 1400, 1000).await;
    web.open(&format!("{}/#/runs/{waiting}", dev.server)).await;
    web.wait_attr("#run-state", "data-state", "pending").await;
    let why = web.wait_text("#pending-reason", "waiting for capacity").await;
    assert!(why.contains("dev-"), "each worker is named: {why}");
    web.screenshot("pending").await;
    std::fs::write(&gate, b"").unwrap();
    web.wait_attr("#run-state", "data-state", "succeeded").await;
    assert!(web.text("#pending-reason").await.is_none(), "a placed run has no pending reason");
    web.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_is_submitted_from_the_form_and_a_bad_field_is_named_next_to_it() {
    let dev = Dev::start();
    let web = Browser::start("submit", 1400, 1100).await;
    web.open(&format!("{}/#/submit", dev.server)).await;
    web.wait_attr("main", "data-page", "submit").await;
    let type_in = |css: &'static str, value: &'static str| {
        let web = &web;
        async move {
            let el = web.wait_for(css).await;
            el.clear().await.unwrap();
            el.send_keys(value).await.unwrap();
        }
    };
    type_in("#f-name", "from-the-form").await;
    type_in("#f-command", "echo made in a browser").await;
    type_in("#f-cpu", "lots").await;
    type_in("#f-timeout", "30s").await;
    type_in("#f-max_retries", "2").await;
    web.click("#submit-button").await;
    let error = web.wait_text(".field-error[data-for=cpu]", "").await;
    assert!(!error.is_empty(), "the CPU error is shown next to the CPU field");
    assert_eq!(
        web.js("return document.getElementById('f-cpu').getAttribute('aria-invalid');", vec![]).await,
        json!("true")
    );
    assert_eq!(dev.job_count(), 0, "nothing was stored");
    web.screenshot("bad-field").await;

    // A bad cron expression is named at the cron field.
    type_in("#f-cpu", "500m").await;
    type_in("#f-cron", "every tuesday").await;
    web.click("#submit-button").await;
    web.until("the cron error", "return document.querySelector('.field-error[data-for=cron]').textContent.length > 0;")
        .await;
    assert!(web.text(".field-error[data-for=cpu]").await.unwrap_or_default().is_empty());
    assert_eq!(dev.job_count(), 0, "nothing was stored");

    web.js("document.getElementById('f-cron').value = '';", vec![]).await;
    web.click("#submit-button").await;
    let job = web.wait_text("#submitted-job", "job-").await;
    let detail = dev.json(&["get", &job]);
    assert_eq!(detail["job"]["name"], "from-the-form");
    assert_eq!(detail["job"]["resources"]["cpu"], "500m");
    assert_eq!(detail["job"]["retry"]["max_retries"], 2);
    let run = detail["runs"][0]["id"].as_str().unwrap().to_owned();
    cli_state(&dev, &run, "succeeded");
    assert_eq!(dev.first_line_of(&run), "made in a browser");

    // A container job without an image is named at the image field.
    web.js(
        "const k = document.getElementById('f-kind'); k.value = 'docker'; k.dispatchEvent(new Event('change'));",
        vec![],
    )
    .await;
    web.click("#submit-button").await;
    web.until(
        "the image error",
        "return document.querySelector('.field-error[data-for=image]').textContent.length > 0;",
    )
    .await;
    web.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_is_drained_and_undrained_from_the_workers_page() {
    let dev = Dev::start();
    let web = Browser::start("workers", 1400, 900).await;
    web.open(&format!("{}/#/workers", dev.server)).await;
    let row = "#workers-table tr[data-worker='w-1']";
    web.wait_attr(&format!("{row} .state .badge"), "data-state", "ready").await;
    web.click(&format!("{row} button[data-action=drain]")).await;
    web.confirm().await;
    web.wait_attr(&format!("{row} .state .badge"), "data-state", "draining").await;
    let workers = dev.json(&["workers"]);
    assert_eq!(workers["items"][0]["state"], "draining", "{workers}");
    web.screenshot("draining").await;
    web.click(&format!("{row} button[data-action=undrain]")).await;
    web.wait_attr(&format!("{row} .state .badge"), "data-state", "ready").await;
    assert_eq!(dev.json(&["workers"])["items"][0]["state"], "ready");
    web.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workflows_graph_colours_its_nodes_as_they_finish() {
    let dev = Dev::start();
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    let spec = dir.path().join("flow.toml");
    std::fs::write(
        &spec,
        format!(
            "[workflow]\nname = \"graph\"\n\
             [[jobs]]\nname = \"extract\"\ncommand = \"{}\"\n\
             [[jobs]]\nname = \"transform\"\ndepends_on = [\"extract\"]\ncommand = \"true\"\n\
             [[jobs]]\nname = \"report\"\ndepends_on = [\"extract\"]\ncommand = \"true\"\n\
             [[jobs]]\nname = \"publish\"\ndepends_on = [\"transform\", \"report\"]\ncommand = \"true\"\n",
            gated(&gate, "true")
        ),
    )
    .unwrap();
    let out = dev.cli(&["run", "-f", spec.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let web = Browser::start("workflow", 1400, 900).await;
    web.open(&format!("{}/#/workflows/wf-1", dev.server)).await;
    web.wait_attr("#dag g.node[data-node=extract]", "data-state", "running").await;
    web.wait_attr("#dag g.node[data-node=publish]", "data-state", "waiting").await;
    let edges = web.js("return document.querySelectorAll('#dag path.edge').length;", vec![]).await;
    assert_eq!(edges, json!(4));
    web.screenshot("running").await;
    std::fs::write(&gate, b"").unwrap();
    web.wait_attr("#dag g.node[data-node=publish]", "data-state", "succeeded").await;
    web.wait_attr("#workflow-state", "data-state", "succeeded").await;
    for node in ["extract", "transform", "report"] {
        web.wait_attr(&format!("#dag g.node[data-node={node}]"), "data-state", "succeeded").await;
    }
    web.screenshot("done").await;
    web.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn names_commands_and_output_are_shown_as_text_never_run_as_markup() {
    let dev = Dev::start();
    let name = "<script>window.__xss = 1</script>";
    let command = "echo '<img src=x onerror=\"window.__xss = 2\"><b>bold?</b>'";
    let run = dev.submit(&["--name", name, "--command", command]);
    cli_state(&dev, &run, "succeeded");
    let web = Browser::start("xss", 1400, 900).await;
    web.open(&format!("{}/#/jobs", dev.server)).await;
    let shown = web.wait_text("#jobs-table .name", "<script>").await;
    assert_eq!(shown, name);
    web.open(&format!("{}/#/runs/{run}", dev.server)).await;
    let output = web.wait_text("#output", "onerror").await;
    assert!(output.contains("<img src=x onerror=\"window.__xss = 2\"><b>bold?</b>"), "{output}");
    web.route("#/jobs/job-1", "jobs").await;
    web.wait_text("#job-name", "<script>").await;
    web.wait_text("#job-task", "onerror").await;
    let injected = web
        .js("return document.querySelectorAll('main script, main img, #output b, main b:not(.x)').length;", vec![])
        .await;
    assert_eq!(injected, json!(0), "markup from a job became elements");
    assert_eq!(web.js("return window.__xss === undefined;", vec![]).await, json!(true), "a payload ran");
    assert!(web.client.get_alert_text().await.is_err(), "an alert opened");
    // No inline script on the page, and a policy that would refuse one.
    assert_eq!(web.js("return document.querySelectorAll('script:not([src])').length;", vec![]).await, json!(0));
    let page = reqwest::get(format!("{}/", dev.server)).await.unwrap();
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"), "{policy}");
    web.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_output_keeps_a_bounded_tail_in_the_page() {
    let dev = Dev::start();
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    // About 40 MB as fast as the machine prints it, once the page follows.
    let command =
        gated(&gate, "yes 'archon floods the page with this line of output, again and again' | head -c 40000000");
    let run = dev.submit(&["--name", "flood", "--command", &command]);
    let web = Browser::start("flood", 1400, 900).await;
    web.open(&format!("{}/#/runs/{run}", dev.server)).await;
    web.wait_attr("#run-state", "data-state", "running").await;
    web.wait_text("#output-state", "live").await;
    std::fs::write(&gate, b"").unwrap();
    web.wait_attr("#run-state", "data-state", "succeeded").await;
    web.wait_text("#output-state", "ended").await;
    let chars = web.js("return Number(document.getElementById('output').dataset.chars);", vec![]).await;
    let chars = chars.as_f64().unwrap();
    assert!(chars > 0.0 && chars <= 200_000.0, "the page holds {chars} characters");
    web.wait_text("#output-note", "newest output only").await;
    let heap = web.js("return performance.memory ? performance.memory.usedJSHeapSize : 0;", vec![]).await;
    eprintln!("JS heap after 40 MB of output: {heap} bytes; the page holds {chars} characters");
    assert!(heap.as_f64().unwrap() < 96.0 * 1024.0 * 1024.0, "heap {heap}");
    // The page still answers.
    web.route("#/", "overview").await;
    web.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_says_it_is_disconnected_and_reconnects_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1)[0];
    let listen = format!("127.0.0.1:{port}");
    let data = dir.path().join("data");
    let args = [
        "dev",
        "--insecure",
        "--listen",
        &listen,
        "--cpu",
        "2",
        "--memory",
        "2GiB",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let start = |log: &str| {
        let mut p = Proc::spawn(Path::new(CLI), &args, &dir.path().join(log));
        p.wait_line("gRPC API listening on ", PATIENCE);
        p
    };
    let mut dev = start("first.log");
    let server = format!("http://{listen}");
    let web = Browser::start("reconnect", 1400, 900).await;
    web.open(&format!("{server}/#/jobs")).await;
    web.wait_attr("#conn", "data-state", "live").await;
    web.js("window.__same_page = 7;", vec![]).await;
    dev.kill9();
    web.wait_attr("#conn", "data-state", "disconnected").await;
    web.wait_text("#conn", "reconnecting").await;
    web.screenshot("disconnected").await;
    let _dev = start("second.log");
    web.wait_attr("#conn", "data-state", "live").await;
    assert_eq!(web.js("return window.__same_page;", vec![]).await, json!(7), "the page reloaded");
    assert_eq!(web.js("return location.hash;", vec![]).await, json!("#/jobs"));
    // Live again: a job submitted now shows up.
    let out = std::process::Command::new(CLI)
        .args(["submit", "--name", "after-the-restart", "--command", "true"])
        .env("ARCHON_SERVER", &server)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    web.wait_text("#jobs-table .name", "after-the-restart").await;
    web.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keyboard_phone_width_and_dark_theme() {
    let dev = Dev::start();
    let run = dev.submit(&["--name", "small-screen", "--command", "printf '\\033[1;32mgreen\\033[0m\\n'"]);
    cli_state(&dev, &run, "succeeded");
    let web = Browser::start("phone", 390, 844).await;
    web.open(&format!("{}/", dev.server)).await;
    web.wait_attr("main", "data-page", "overview").await;
    // Tab reaches the navigation; Enter follows it.
    let mut reached = false;
    for _ in 0..20 {
        web.client.active_element().await.unwrap().send_keys("\u{e004}").await.unwrap();
        let on = web.js("return document.activeElement && document.activeElement.dataset.nav || '';", vec![]).await;
        if on == json!("jobs") {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab never reached the Jobs link");
    web.client.active_element().await.unwrap().send_keys("\u{e007}").await.unwrap();
    web.wait_attr("main", "data-page", "jobs").await;
    // Nothing is wider than a phone.
    let overflow = web.js("return document.documentElement.scrollWidth - window.innerWidth;", vec![]).await;
    assert!(overflow.as_f64().unwrap() <= 1.0, "the page is {overflow} px wider than the screen");
    web.screenshot("jobs").await;
    // Dark: automatic → light → dark.
    web.click("#theme").await;
    web.click("#theme").await;
    web.wait_attr("html", "data-theme", "dark").await;
    let bg = web.js("return getComputedStyle(document.body).backgroundColor;", vec![]).await;
    assert_eq!(bg, json!("rgb(13, 17, 23)"));
    web.route(&format!("#/runs/{run}"), "runs").await;
    web.wait_text("#output", "green").await;
    web.screenshot("run-dark").await;
    web.route("#/", "overview").await;
    web.screenshot("overview-dark").await;
    web.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_are_filtered_and_paged_and_a_schedule_is_operated_from_its_page() {
    let dev = Dev::start();
    for (name, command) in [("alpha-ok", "true"), ("beta-ok", "true"), ("gamma-fails", "exit 1")] {
        let run = dev.submit(&["--name", name, "--command", command]);
        cli_state(&dev, &run, if command == "true" { "succeeded" } else { "failed" });
    }
    let web = Browser::start("filters", 1400, 1000).await;
    let rows = "return [...document.querySelectorAll('#jobs-table tr[data-job]')].map(r => r.dataset.job).join(',');";
    web.open(&format!("{}/#/jobs", dev.server)).await;
    web.wait_for("#jobs-table tr[data-job='job-3']").await;
    // By latest run state, from the form.
    web.js("document.getElementById('filter-state').value = 'failed';", vec![]).await;
    web.click("#filter-apply").await;
    web.until("only the failed job", &format!("{} === 'job-3'", rows.trim_end_matches(';'))).await;
    assert!(web.js("return location.hash;", vec![]).await.as_str().unwrap().contains("state=failed"));
    // By name and kind.
    web.route("#/jobs?name=-ok", "jobs").await;
    web.until("the two -ok jobs", &format!("{} === 'job-2,job-1'", rows.trim_end_matches(';'))).await;
    web.route("#/jobs?kind=docker", "jobs").await;
    web.until("no docker job", &format!("{} === ''", rows.trim_end_matches(';'))).await;
    // Two at a time, newest first, older pages by cursor.
    web.route("#/jobs?limit=2", "jobs").await;
    web.until("the newest two", &format!("{} === 'job-3,job-2'", rows.trim_end_matches(';'))).await;
    web.click("#older").await;
    web.until("the oldest", &format!("{} === 'job-1'", rows.trim_end_matches(';'))).await;
    web.screenshot("paged").await;

    // A cron job: its next fires, pause (asked first), resume, trigger.
    let out = dev.cli(&["submit", "--name", "every-hour", "--cron", "0 0 * * * *", "--command", "echo fired"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    web.route("#/jobs/job-4", "jobs").await;
    web.wait_for("#schedule").await;
    let fires = web.js("return document.querySelectorAll('#next-fires li').length;", vec![]).await;
    assert!(fires.as_u64().unwrap() >= 3, "next fires: {fires}");
    web.wait_text("#missed", "0").await;
    web.screenshot("schedule").await;
    web.click("button[data-action=pause]").await;
    web.confirm().await;
    web.wait_for("button[data-action=resume]").await;
    assert!(dev.json(&["get", "job-4"])["schedule"]["state"]["paused_at"].is_string(), "paused per the CLI");
    web.click("button[data-action=resume]").await;
    web.wait_for("button[data-action=pause]").await;
    assert!(dev.json(&["get", "job-4"])["schedule"]["state"]["paused_at"].is_null(), "resumed per the CLI");
    web.click("button[data-action=trigger]").await;
    web.confirm().await;
    web.wait_for("#job-runs tr[data-run]").await;
    let run = web.js("return document.querySelector('#job-runs tr[data-run]').dataset.run;", vec![]).await;
    cli_state(&dev, run.as_str().unwrap(), "succeeded");
    web.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workflow_is_cancelled_from_its_page() {
    let dev = Dev::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("flow.toml");
    std::fs::write(
        &spec,
        "[workflow]\nname = \"stuck\"\n[[jobs]]\nname = \"first\"\ncommand = \"sleep 600\"\n\
         [[jobs]]\nname = \"second\"\ndepends_on = [\"first\"]\ncommand = \"true\"\n",
    )
    .unwrap();
    let out = dev.cli(&["run", "-f", spec.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let web = Browser::start("workflow-cancel", 1400, 900).await;
    web.open(&format!("{}/#/workflows/wf-1", dev.server)).await;
    web.wait_attr("#dag g.node[data-node=first]", "data-state", "running").await;
    web.click("button[data-action=cancel-workflow]").await;
    web.confirm().await;
    web.wait_attr("#workflow-state", "data-state", "cancelled").await;
    assert_eq!(dev.json(&["get", "wf-1"])["state"], "cancelled");
    web.wait_attr("#dag g.node[data-node=first]", "data-state", "cancelled").await;
    web.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_works_in_firefox_too() {
    let dev = Dev::start();
    let web = Browser::firefox("firefox", 1280, 900).await;
    web.open(&format!("{}/#/jobs", dev.server)).await;
    web.wait_attr("main", "data-page", "jobs").await;
    web.wait_attr("#conn", "data-state", "live").await;
    let run = dev.submit(&["--name", "<b>in-firefox</b>", "--command", "printf '\\033[32mgreen\\033[0m\\n'"]);
    web.wait_text("#jobs-table .name", "<b>in-firefox</b>").await;
    web.wait_attr("#jobs-table tr[data-job='job-1'] .state .badge", "data-state", "succeeded").await;
    web.route(&format!("#/runs/{run}"), "runs").await;
    web.wait_text("#output span.ansi-2", "green").await;
    web.route("#/submit", "submit").await;
    let cpu = web.wait_for("#f-cpu").await;
    cpu.send_keys("lots").await.unwrap();
    web.wait_for("#f-command").await.send_keys("true").await.unwrap();
    web.click("#submit-button").await;
    web.until("the CPU error", "return document.querySelector('.field-error[data-for=cpu]').textContent.length > 0;")
        .await;
    web.route("#/", "overview").await;
    web.wait_for("#chart-rate").await;
    web.screenshot("overview").await;
    web.close().await;
}
