//! The dashboard of a secured `archon dev` in a real headless Chromium: the
//! page sends a browser without a session to sign in, takes the token once
//! into a cookie its scripts cannot read, and its forms change things only
//! with the CSRF token the server gave it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser;
mod common;
mod secure;

use std::time::{Duration, Instant};

use browser::Browser;
use secure::SecureDev;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_signs_in_once_and_submits_from_the_form() {
    let dev = SecureDev::start();
    let token = dev.token("read,submit", None);
    let web = Browser::start("secured", 1400, 1000).await;

    web.open(&format!("{}/", dev.server)).await;
    web.until("the sign-in page", "return location.pathname === '/login';").await;
    let field = web.wait_for("#token").await;
    field.send_keys(&token).await.unwrap();
    web.click("button[type=submit]").await;
    web.until(
        "the overview after signing in",
        "return location.pathname === '/' && !!document.querySelector('main[data-page]');",
    )
    .await;
    // The session cookie is HttpOnly: the page's scripts never see the token.
    let cookies = web.js("return document.cookie;", vec![]).await;
    assert!(!cookies.as_str().unwrap().contains("archon_session"), "{cookies}");
    assert!(cookies.as_str().unwrap().contains("archon_csrf="), "{cookies}");

    web.open(&format!("{}/#/submit", dev.server)).await;
    web.wait_attr("main", "data-page", "submit").await;
    for (css, value) in [("#f-name", "signed-in"), ("#f-command", "echo from a signed-in page")] {
        let el = web.wait_for(css).await;
        el.clear().await.unwrap();
        el.send_keys(value).await.unwrap();
    }
    web.click("#submit-button").await;
    let job = web.wait_text("#submitted-job", "job-").await;
    web.screenshot("submitted").await;

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = dev.cli(&["get", &job, "--output", "json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let detail: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(detail["job"]["name"], json!("signed-in"));
        if detail["runs"][0]["state"] == json!("succeeded") {
            break;
        }
        assert!(Instant::now() < deadline, "{job} did not succeed: {detail}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    web.close().await;
}
