//! A real browser for the dashboard tests: Debian's headless Chromium driven
//! over WebDriver (chromedriver, fantoccini), or Firefox ESR (geckodriver,
//! which `scripts/test` builds from crates.io into `target/tools/bin`). Each
//! [`Browser`] starts its own driver on a free loopback port and closes both
//! when dropped. Waits are on what the page shows, polled, with generous
//! deadlines.
#![allow(dead_code)] // each test crate uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// Where chromedriver is (Debian's `chromium-driver`; `scripts/test` installs it).
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a wait on the page may take before the test fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// A headless Chromium and its chromedriver.
pub(crate) struct Browser {
    pub(crate) client: Client,
    driver: Child,
    name: String,
}

impl Browser {
    /// A Chromium window `width`×`height` px; `name` names its screenshots.
    pub(crate) async fn start(name: &str, width: u32, height: u32) -> Browser {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists(),
            "{CHROMEDRIVER} is missing: the dashboard tests need Debian's chromium and chromium-driver \
             (scripts/test installs them)"
        );
        let mut options = json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--disable-extensions", format!("--window-size={width},{height}")],
        });
        // A window cannot be narrower than about 500 px: phones are emulated.
        if width < 600 {
            options["mobileEmulation"] =
                json!({ "deviceMetrics": { "width": width, "height": height, "pixelRatio": 2 } });
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        // A secured dev cluster's certificate comes from its own CA.
        caps.insert("acceptInsecureCerts".into(), Value::Bool(true));
        Browser::connect(name, Path::new(CHROMEDRIVER), caps).await
    }

    /// A headless Firefox window `width`×`height` px.
    pub(crate) async fn firefox(name: &str, width: u32, height: u32) -> Browser {
        let driver = std::env::var_os("GECKODRIVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/bin/geckodriver"));
        assert!(
            driver.exists() && Path::new("/usr/bin/firefox-esr").exists(),
            "{} or /usr/bin/firefox-esr is missing: scripts/test installs them (Debian's firefox-esr, \
             geckodriver built from crates.io)",
            driver.display()
        );
        let mut caps = serde_json::Map::new();
        caps.insert(
            "moz:firefoxOptions".into(),
            json!({ "binary": "/usr/bin/firefox-esr", "args": ["-headless", format!("--width={width}"), format!("--height={height}")] }),
        );
        caps.insert("acceptInsecureCerts".into(), Value::Bool(true));
        Browser::connect(name, &driver, caps).await
    }

    async fn connect(name: &str, program: &Path, caps: serde_json::Map<String, Value>) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + PATIENCE;
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot start a Chromium session: {e}"),
            }
        };
        Browser { client, driver, name: name.to_owned() }
    }

    /// Opens `url`.
    pub(crate) async fn open(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub(crate) async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap()
    }

    /// Waits until `script` returns a truthy value; returns it.
    pub(crate) async fn until(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let v = self.client.execute(script, vec![]).await;
            match v {
                Ok(v) if truthy(&v) => return v,
                _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                other => {
                    let main = self.text("main").await.unwrap_or_default();
                    let conn = self.text("#conn").await.unwrap_or_default();
                    let at = self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
                    panic!("timed out waiting for {what}: last {other:?}; at {at} ({conn}) the page shows:\n{main}")
                }
            }
        }
    }

    /// The text of the first element matching `css`, if any.
    pub(crate) async fn text(&self, css: &str) -> Option<String> {
        let el = self.client.find(Locator::Css(css)).await.ok()?;
        el.text().await.ok()
    }

    /// Waits for an element matching `css` whose text contains `needle`.
    pub(crate) async fn wait_text(&self, css: &str, needle: &str) -> String {
        let script = format!(
            "return [...document.querySelectorAll({css:?})].map(e => e.textContent).find(t => t.includes({needle:?})) || null;",
            css = css,
            needle = needle
        );
        self.until(&format!("{css} to show {needle:?}"), &script).await.as_str().unwrap_or_default().to_owned()
    }

    /// Waits for `css` to match an element, and returns it.
    pub(crate) async fn wait_for(&self, css: &str) -> Element {
        self.until(&format!("{css} to appear"), &format!("return document.querySelector({css:?}) !== null;")).await;
        self.client.find(Locator::Css(css)).await.unwrap()
    }

    /// Waits for the attribute `attr` of the element matching `css` to be `value`.
    pub(crate) async fn wait_attr(&self, css: &str, attr: &str, value: &str) {
        let script = format!(
            "const e = document.querySelector({css:?}); return e !== null && e.getAttribute({attr:?}) === {value:?};"
        );
        self.until(&format!("{css} [{attr}={value}]"), &script).await;
    }

    /// Clicks the element matching `css` (waiting for it). A live page redraws
    /// what changed: an element replaced between finding and clicking it is
    /// found again, the others' errors fail the test.
    pub(crate) async fn click(&self, css: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.wait_for(css).await.click().await {
                Ok(()) => return,
                Err(fantoccini::error::CmdError::Standard(e))
                    if e.error == fantoccini::error::ErrorStatus::StaleElementReference
                        && Instant::now() < deadline => {}
                Err(e) => panic!("cannot click {css}: {e}"),
            }
        }
    }

    /// Confirms the open confirmation dialog.
    pub(crate) async fn confirm(&self) {
        self.until("the confirmation dialog", "return document.getElementById('confirm').open;").await;
        self.click("#confirm button[value=confirm]").await;
    }

    /// Navigates inside the page (a hash route) and waits for that page to be drawn.
    pub(crate) async fn route(&self, hash: &str, page: &str) {
        let before = self.js("return document.querySelector('main').dataset.ready || '';", vec![]).await;
        self.js("location.hash = arguments[0];", vec![json!(hash)]).await;
        let script = format!(
            "const m = document.querySelector('main'); \
             return (m.dataset.ready || '') !== {before} && m.dataset.page === {page:?};"
        );
        self.until(&format!("{hash} to be drawn"), &script).await;
    }

    /// Saves a screenshot as an artefact under `target/tmp/dashboard/`.
    pub(crate) async fn screenshot(&self, what: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}-{what}.png", self.name));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Resizes the window.
    pub(crate) async fn resize(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.unwrap();
    }

    /// Ends the session and chromedriver.
    pub(crate) async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}
