//! The cluster under test: three `archon-manager` containers bootstrapped as one
//! Raft group and four `archon-worker` containers on a Docker network the run
//! creates, secured as users run it — TLS with certificates from `archon
//! certs`, and a token — and reached from the host with the `archon` CLI.
//!
//! The one thing to know: every node has a fixed address on the network's
//! subnet (`--ip`, and again on reconnecting), as a machine keeps its address
//! when its cable is pulled; managers know each other, workers and the CLI know
//! the managers, by those addresses, which their certificates name. The host
//! reaches every container directly over the bridge.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::docker::{Guard, docker};

/// How often workers heartbeat.
pub(crate) const HEARTBEAT: &str = "500ms";
/// A worker silent this long is lost (its lease: this less 2 % less 800 ms, 3.12 s).
pub(crate) const WORKER_TIMEOUT: &str = "4s";
/// The port every manager serves on.
const PORT: u16 = 50051;
/// How long one CLI call may take before it is killed (it gives up by itself
/// after 15 s of looking for a leader).
const CLI_LIMIT: Duration = Duration::from_secs(60);

/// A container of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// Its name in the cluster and its host name (`m1`, `w3`).
    pub(crate) name: String,
    /// The container's name on the host (unique per run).
    pub(crate) container: String,
    /// Its fixed address on the network.
    pub(crate) ip: String,
}

/// Who a CLI call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    /// The chaos client's certificate with the run's admin token.
    Client,
    /// A manager's certificate, no token (how the first token is made).
    Manager,
}

/// What a CLI call printed and how it exited.
#[derive(Debug, Clone)]
pub(crate) struct CliOutput {
    /// Its exit code (none if killed).
    pub(crate) code: Option<i32>,
    /// Its stdout.
    pub(crate) stdout: String,
    /// Its stderr.
    pub(crate) stderr: String,
}

impl CliOutput {
    /// The call succeeded.
    pub(crate) fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Its error, in one line.
    pub(crate) fn error(&self) -> String {
        let text = self.stderr.trim();
        let text = if text.is_empty() { "no output" } else { text };
        format!("exit {:?}: {}", self.code, text.replace('\n', " | "))
    }
}

/// The cluster: its nodes, where its files are, how to reach it.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// The Docker network.
    pub(crate) network: String,
    /// `10.213.N`: the subnet's first three octets.
    prefix: String,
    /// m1, m2, m3.
    pub(crate) managers: Vec<Node>,
    /// w1 … w4.
    pub(crate) workers: Vec<Node>,
    /// The run's out dir.
    pub(crate) out: PathBuf,
    /// The image every node runs.
    pub(crate) image: String,
    /// Where the host's `archon` and `archon-manager` are.
    bin_dir: PathBuf,
    /// The admin token, once made.
    token: Mutex<Option<String>>,
    /// Rotates the order managers are tried in, so a dead one is not always first.
    turn: AtomicUsize,
}

impl Cluster {
    /// The cluster of the run tagged `tag` (nothing is started yet).
    pub(crate) fn new(tag: &str, out: &Path, image: &str, bin_dir: &Path) -> Cluster {
        let node = |name: String| Node { container: format!("archon-chaos-{tag}-{name}"), name, ip: String::new() };
        Cluster {
            network: format!("archon-chaos-{tag}"),
            prefix: String::new(),
            managers: (1..=3).map(|i| node(format!("m{i}"))).collect(),
            workers: (1..=4).map(|i| node(format!("w{i}"))).collect(),
            out: out.to_owned(),
            image: image.to_owned(),
            bin_dir: bin_dir.to_owned(),
            token: Mutex::new(None),
            turn: AtomicUsize::new(0),
        }
    }

    /// Every node, managers first.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.managers.iter().chain(&self.workers)
    }

    /// Creates the network on a free `10.213.N.0/24` (N from `seed`) and fixes
    /// every node's address on it.
    pub(crate) async fn create_network(&mut self, guard: &Guard, seed: u64) -> anyhow::Result<()> {
        let mut last = None;
        for i in 0..40 {
            let n = 16 + (seed.wrapping_add(u64::from(std::process::id())).wrapping_add(i * 7)) % 224;
            let prefix = format!("10.213.{n}");
            let subnet = format!("{prefix}.0/24");
            let label = guard.label();
            match docker(&["network", "create", "--subnet", &subnet, "--label", &label, &self.network]).await {
                Ok(_) => {
                    guard.made_network(&self.network);
                    self.prefix = prefix;
                    for (i, m) in self.managers.iter_mut().enumerate() {
                        m.ip = format!("{}.{}", self.prefix, 11 + i);
                    }
                    for (i, w) in self.workers.iter_mut().enumerate() {
                        w.ip = format!("{}.{}", self.prefix, 21 + i);
                    }
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no subnet tried"))).context("cannot create the network")
    }

    /// The certificates: a CA, each manager (named for its address too), each
    /// worker (its name), and the chaos client, with `archon certs`.
    pub(crate) async fn make_certs(&self) -> anyhow::Result<()> {
        let dir = self.certs();
        let dir = dir.to_str().context("the out dir is not UTF-8")?;
        let archon = self.bin("archon");
        crate::docker::command(&archon, &["certs", "init", "--name", "chaos", "--dir", dir]).await?;
        for m in &self.managers {
            crate::docker::command(&archon, &["certs", "issue", "manager", &m.name, "--san", &m.ip, "--dir", dir])
                .await?;
        }
        for w in &self.workers {
            crate::docker::command(&archon, &["certs", "issue", "worker", &w.name, "--dir", dir]).await?;
        }
        crate::docker::command(&archon, &["certs", "issue", "client", "chaos", "--dir", dir]).await?;
        Ok(())
    }

    fn certs(&self) -> PathBuf {
        self.out.join("certs")
    }

    /// A host binary next to this one.
    pub(crate) fn bin(&self, name: &str) -> String {
        self.bin_dir.join(name).to_string_lossy().into_owned()
    }

    /// Node `m`'s data dir on the host.
    pub(crate) fn data_dir(&self, m: &Node) -> PathBuf {
        self.out.join(&m.name).join("data")
    }

    fn peers(&self) -> String {
        let peers: Vec<String> =
            self.managers.iter().enumerate().map(|(i, m)| format!("{}={}:{PORT}", i + 1, m.ip)).collect();
        peers.join(",")
    }

    /// Every manager's address, rotated one further each call.
    pub(crate) fn servers(&self) -> String {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let n = self.managers.len();
        let list: Vec<String> = (0..n).map(|i| self.server_of(&self.managers[(turn + i) % n])).collect();
        list.join(",")
    }

    /// Manager `m`'s address for the CLI.
    pub(crate) fn server_of(&self, m: &Node) -> String {
        format!("https://{}:{PORT}", m.ip)
    }

    /// Starts every manager, then every worker.
    pub(crate) async fn start(&self, guard: &Guard) -> anyhow::Result<()> {
        let s = |words: &[&str]| words.iter().map(|w| (*w).to_owned()).collect::<Vec<String>>();
        for (i, m) in self.managers.iter().enumerate() {
            let data = self.data_dir(m);
            std::fs::create_dir_all(&data)?;
            let mut args = self.run_args(guard, m, &[(&data, "/data")]);
            args.extend(s(&["archon-manager", "--node-id", &(i + 1).to_string(), "--listen", "0.0.0.0:50051"]));
            let advertise = format!("{}:{PORT}", m.ip);
            args.extend(s(&["--advertise", &advertise, "--peers", &self.peers(), "--data-dir", "/data"]));
            args.extend(s(&["--heartbeat-interval", HEARTBEAT, "--worker-timeout", WORKER_TIMEOUT]));
            args.extend(tls_args(&m.name));
            docker(&args).await.with_context(|| format!("cannot start {}", m.name))?;
        }
        let managers: Vec<String> = self.managers.iter().map(|m| self.server_of(m)).collect();
        let marks = self.out.join("marks");
        std::fs::create_dir_all(&marks)?;
        for w in &self.workers {
            let state = self.out.join(&w.name).join("state");
            std::fs::create_dir_all(&state)?;
            let mut args = self.run_args(guard, w, &[(&state, "/state"), (&marks, "/marks")]);
            args.extend(s(&["archon-worker", "--manager", &managers.join(","), "--name", &w.name, "--no-docker"]));
            args.extend(s(&["--cpu", "2", "--memory", "2GiB", "--state-dir", "/state", "--drain-grace", "5s"]));
            args.extend(s(&["--reconnect-base", "100ms", "--reconnect-cap", "1s"]));
            args.extend(tls_args(&w.name));
            docker(&args).await.with_context(|| format!("cannot start {}", w.name))?;
        }
        Ok(())
    }

    /// `docker run -d` of `node` up to the image: an init process (so the
    /// daemon is not PID 1 and can be frozen alone), its name and address, the
    /// certificates (read-only) and `mounts` (host path, container path).
    fn run_args(&self, guard: &Guard, node: &Node, mounts: &[(&Path, &str)]) -> Vec<String> {
        let mut args: Vec<String> =
            ["run", "-d", "--init", "--name", &node.container, "--hostname", &node.name].map(str::to_owned).to_vec();
        args.extend(["--label".to_owned(), guard.label(), "--network".to_owned(), self.network.clone()]);
        args.extend(["--ip".to_owned(), node.ip.clone()]);
        args.extend(["-v".to_owned(), format!("{}:/certs:ro", self.certs().display())]);
        for (host, inside) in mounts {
            args.extend(["-v".to_owned(), format!("{}:{inside}", host.display())]);
        }
        args.push(self.image.clone());
        args
    }

    /// The admin token: made once with a manager's certificate (it may do
    /// anything), then used with the client certificate.
    pub(crate) async fn make_token(&self, within: Duration, stop: &CancellationToken) -> anyhow::Result<()> {
        let token = self
            .until(within, stop, "an admin token", || async {
                let out = self
                    .cli(Caller::Manager, &self.servers(), &["token", "create", "--name", "chaos", "--scope", "admin"])
                    .await?;
                if out.ok() { Ok(out.stdout.trim().to_owned()) } else { Err(anyhow::anyhow!(out.error())) }
            })
            .await?;
        *self.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(token);
        Ok(())
    }

    /// Runs the `archon` CLI as `caller` against `servers` with `args`.
    pub(crate) async fn cli(&self, caller: Caller, servers: &str, args: &[&str]) -> anyhow::Result<CliOutput> {
        let certs = self.certs();
        let who = match caller {
            Caller::Client => "chaos",
            Caller::Manager => "m1",
        };
        let mut command = tokio::process::Command::new(self.bin("archon"));
        command
            .args(["--server", servers, "--ca"])
            .arg(certs.join("ca.pem"))
            .arg("--cert")
            .arg(certs.join(format!("{who}.pem")))
            .arg("--key")
            .arg(certs.join(format!("{who}.key")))
            .args(args)
            .env("ARCHON_CLI_CONFIG", self.out.join("no-cli-settings.toml"))
            .env("RUST_LOG", "error")
            .env_remove("ARCHON_TOKEN")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if caller == Caller::Client {
            let token = self.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            command.env("ARCHON_TOKEN", token.context("no token yet")?);
        }
        let out = tokio::time::timeout(CLI_LIMIT, command.output())
            .await
            .map_err(|_| anyhow::anyhow!("archon {} took over {CLI_LIMIT:?}", args.join(" ")))?
            .context("cannot run archon")?;
        Ok(CliOutput {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// `archon ARGS -o json` as the client against every manager.
    pub(crate) async fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        self.json_from(&self.servers(), args).await
    }

    /// `archon ARGS -o json` as the client against `servers`.
    pub(crate) async fn json_from(&self, servers: &str, args: &[&str]) -> anyhow::Result<Value> {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let out = self.cli(Caller::Client, servers, &all).await?;
        if !out.ok() {
            bail!("archon {}: {}", args.join(" "), out.error());
        }
        serde_json::from_str(&out.stdout).with_context(|| format!("archon {}: not JSON", args.join(" ")))
    }

    /// Every item of a paged listing (`jobs`, `runs`, `workflows`).
    pub(crate) async fn list_all(&self, what: &str) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut before: Option<String> = None;
        loop {
            let mut args = vec![what, "--limit", "1000"];
            if let Some(b) = &before {
                args.extend(["--before", b.as_str()]);
            }
            let page = self.json(&args).await?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(next) if Some(next) != before.as_deref() => before = Some(next.to_owned()),
                _ => return Ok(items),
            }
        }
    }

    /// Polls `probe` until it succeeds, for at most `within` (or until `stop`).
    pub(crate) async fn until<T, F, Fut>(
        &self,
        within: Duration,
        stop: &CancellationToken,
        what: &str,
        probe: F,
    ) -> anyhow::Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<T>>,
    {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let last = match probe().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if stop.is_cancelled() {
                bail!("interrupted while waiting for {what}");
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(last.context(format!("gave up waiting for {what} after {within:?}")));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until one leader leads all three managers and every worker is
    /// connected and ready.
    pub(crate) async fn wait_ready(&self, within: Duration, stop: &CancellationToken) -> anyhow::Result<()> {
        self.until(within, stop, "a leader and every worker ready", || async {
            let status = self.json(&["status"]).await?;
            let managers = status["managers"].as_array().cloned().unwrap_or_default();
            let leaders = managers.iter().filter(|m| m["role"] == "leader").count();
            let followers = managers.iter().filter(|m| m["role"] == "follower").count();
            if leaders != 1 || followers != 2 {
                bail!("managers: {}", status["managers"]);
            }
            let workers = self.json(&["workers"]).await?;
            let ready = workers["items"]
                .as_array()
                .map_or(0, |ws| ws.iter().filter(|w| w["connected"] == true && w["state"] == "ready").count());
            if ready == self.workers.len() { Ok(()) } else { bail!("{ready} workers ready: {workers}") }
        })
        .await
    }

    /// Manager `m`'s own view of the cluster (`archon status` answered by it).
    pub(crate) async fn status_of(&self, m: &Node) -> anyhow::Result<Value> {
        self.json_from(&self.server_of(m), &["status"]).await
    }
}

/// The TLS flags of the member named `name` (files under /certs).
fn tls_args(name: &str) -> Vec<String> {
    vec![
        "--tls-ca".to_owned(),
        "/certs/ca.pem".to_owned(),
        "--tls-cert".to_owned(),
        format!("/certs/{name}.pem"),
        "--tls-key".to_owned(),
        format!("/certs/{name}.key"),
    ]
}
