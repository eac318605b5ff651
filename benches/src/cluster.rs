//! A cluster of the shipped daemons on this machine: `archon-manager`s (a Raft
//! group on free loopback ports, or managers sharing one PostgreSQL database) and
//! `archon-worker`s pointed at all of them. Plaintext on loopback, or secured as
//! an operator would run it: a throwaway CA, a certificate per member, TLS 1.3
//! with client certificates, and an admin token made with a manager's
//! certificate (the README's first-token recipe) that the clients send.
//!
//! What to know: [`Cluster::start`] returns once a leader has every worker in
//! session and its term has held for a second; each member logs to a file in
//! the cluster's directory; every process dies with the handle.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use archon_core::api::{Api, ClusterStatus, ManagerInfo};
use archon_core::auth::{Role, Scope, TokenSpec};
use archon_net::GrpcClient;
use archon_net::tls::{ClientTls, Dialer, TlsFiles};

use crate::Daemon;

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Where `archon-manager` and `archon-worker` are.
    pub bin_dir: PathBuf,
    /// Data dirs, logs and certificates go here.
    pub root: PathBuf,
    /// How many managers.
    pub managers: usize,
    /// How many workers.
    pub workers: usize,
    /// `postgres://…`: the managers keep their state there instead of in a Raft group.
    pub store: Option<String>,
    /// TLS, client certificates and tokens.
    pub secure: bool,
    /// Start the daemons with `-v`.
    pub verbose: bool,
    /// What each worker offers (`--cpu`, `--memory`).
    pub worker_cpu: String,
    /// Memory each worker offers.
    pub worker_memory: String,
    /// More flags for every `archon-manager` (say `--election-timeout 500ms-1s`).
    pub manager_flags: Vec<String>,
}

impl ClusterSpec {
    /// Three managers and two workers in `root`, plaintext, Raft.
    pub fn new(bin_dir: &Path, root: &Path) -> ClusterSpec {
        ClusterSpec {
            bin_dir: bin_dir.to_path_buf(),
            root: root.to_path_buf(),
            managers: 3,
            workers: 2,
            store: None,
            secure: false,
            verbose: false,
            worker_cpu: "16".into(),
            worker_memory: "16GiB".into(),
            manager_flags: Vec::new(),
        }
    }
}

/// A running cluster.
pub struct Cluster {
    /// The managers, node `i + 1` at index `i`.
    pub managers: Vec<Daemon>,
    /// The workers, `w1`, `w2`, …
    pub workers: Vec<Daemon>,
    /// The managers' endpoints, in node order (`http://127.0.0.1:PORT`; the
    /// dialer decides TLS).
    pub endpoints: Vec<String>,
    /// How clients dial: plaintext, or a client certificate and the admin token.
    pub dialer: Dialer,
    /// The leader's term once the cluster settled.
    pub term: u64,
    spec: ClusterSpec,
    addrs: Vec<String>,
}

/// What a manager prints once it listens, and a worker once it runs.
const MANAGER_LOG_READY: &str = "archon-manager listening on";
const WORKER_READY: &str = "offering";

impl Cluster {
    /// Starts the managers, then the workers, and waits until it has settled (30 s at most).
    pub async fn start(spec: ClusterSpec) -> anyhow::Result<Cluster> {
        if spec.managers == 0 {
            bail!("a cluster needs a manager");
        }
        for bin in ["archon-manager", "archon-worker"] {
            if !spec.bin_dir.join(bin).is_file() {
                bail!(
                    "{} is missing (build it: cargo build --release -p archon-manager -p archon-worker)",
                    spec.bin_dir.join(bin).display()
                );
            }
        }
        let addrs: Vec<String> = free_ports(spec.managers)?.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let endpoints = addrs.iter().map(|a| format!("http://{a}")).collect();
        if spec.secure {
            make_certificates(&spec.root.join("certs"), spec.managers, spec.workers)?;
        }
        let mut cluster = Cluster {
            managers: Vec::new(),
            workers: Vec::new(),
            endpoints,
            dialer: Dialer::plain(),
            term: 0,
            spec,
            addrs,
        };
        for i in 0..cluster.spec.managers {
            let daemon = cluster.start_manager(i).await?;
            cluster.managers.push(daemon);
        }
        for w in 1..=cluster.spec.workers {
            let daemon = cluster.start_worker(w).await?;
            cluster.workers.push(daemon);
        }
        // As the operator: a manager's certificate may do anything, a token included.
        let operator = if cluster.spec.secure {
            let files = TlsFiles::in_dir(&cluster.spec.root.join("certs"), "m1");
            Dialer::tls(ClientTls::load(files, Role::Manager)?)
        } else {
            Dialer::plain()
        };
        let admin = GrpcClient::connect_with(&cluster.endpoints, operator).await?;
        cluster.term = cluster.settle(&admin).await?;
        if cluster.spec.secure {
            let spec = TokenSpec { name: "bench".into(), scopes: BTreeSet::from([Scope::Admin]), ttl: None };
            let token = admin.create_token(spec).await?.token;
            let files = TlsFiles::in_dir(&cluster.spec.root.join("certs"), "bench");
            cluster.dialer = Dialer::tls(ClientTls::load(files, Role::Client)?).with_token(&token)?;
            cluster.until_every_manager_knows_the_token().await?;
        }
        Ok(cluster)
    }

    /// A new token is committed on the leader before the followers have applied
    /// it, and a follower checks a call's token itself: until it has, it refuses
    /// the token as unknown. Waits (10 s at most) until each manager accepts it.
    async fn until_every_manager_knows_the_token(&self) -> anyhow::Result<()> {
        let give_up = Instant::now() + Duration::from_secs(10);
        for endpoint in &self.endpoints {
            loop {
                let answered = match self.client_to(endpoint).await {
                    Ok(client) => client.find_leader_for(Duration::ZERO).status().await.map_err(anyhow::Error::from),
                    Err(e) => Err(e),
                };
                match answered {
                    Ok(_) => break,
                    Err(e) if Instant::now() > give_up => {
                        bail!("{endpoint} still refuses the new token after 10s: {e:#}")
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
        Ok(())
    }

    /// Waits for a leader with every worker in session whose term holds for 1 s.
    async fn settle(&self, admin: &GrpcClient) -> anyhow::Result<u64> {
        let ready_by = Instant::now() + Duration::from_secs(30);
        loop {
            let status = admin.status().await;
            let workers_up = match admin.list_workers().await {
                Ok(w) => w.iter().filter(|w| w.connected).count(),
                Err(_) => 0,
            };
            if let Some(term) = status.as_ref().ok().and_then(|s| leader_of(s).map(|m| m.term))
                && workers_up == self.spec.workers
            {
                // Settled: the bootstrap's elections are over when the term holds for 1 s.
                tokio::time::sleep(Duration::from_secs(1)).await;
                if admin.status().await.ok().as_ref().and_then(leader_of).map(|m| m.term) == Some(term) {
                    return Ok(term);
                }
                continue;
            }
            if Instant::now() > ready_by {
                bail!(
                    "no leader with {} connected workers within 30s (logs in {})",
                    self.spec.workers,
                    self.spec.root.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Manager `i`'s arguments (node id `i + 1`).
    pub fn manager_args(&self, i: usize) -> Vec<String> {
        let mut args = vec!["--listen".into(), self.addrs[i].clone(), "--node-id".into(), (i + 1).to_string()];
        match &self.spec.store {
            Some(url) => args.extend(["--store".into(), url.clone()]),
            None => {
                let peers =
                    self.addrs.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect::<Vec<_>>().join(",");
                let data = self.spec.root.join(format!("m{}", i + 1));
                args.extend(["--data-dir".into(), data.display().to_string(), "--peers".into(), peers]);
            }
        }
        if self.spec.secure {
            args.extend(self.tls_args(&format!("m{}", i + 1)));
        }
        if self.spec.verbose {
            args.push("-v".into());
        }
        args.extend(self.spec.manager_flags.iter().cloned());
        args
    }

    fn tls_args(&self, name: &str) -> Vec<String> {
        let files = TlsFiles::in_dir(&self.spec.root.join("certs"), name);
        [("--tls-ca", files.ca), ("--tls-cert", files.cert), ("--tls-key", files.key)]
            .into_iter()
            .flat_map(|(flag, path)| [flag.to_owned(), path.display().to_string()])
            .collect()
    }

    /// The log of manager `i`.
    pub fn manager_log(&self, i: usize) -> PathBuf {
        self.spec.root.join(format!("m{}.log", i + 1))
    }

    async fn start_manager(&self, i: usize) -> anyhow::Result<Daemon> {
        let bin = self.spec.bin_dir.join("archon-manager");
        Daemon::spawn_logged(&bin, &self.manager_args(i), &self.manager_log(i), MANAGER_LOG_READY).await
    }

    async fn start_worker(&self, w: usize) -> anyhow::Result<Daemon> {
        let name = format!("w{w}");
        let mut args: Vec<String> = vec![
            "--manager".into(),
            self.addrs.join(","),
            "--name".into(),
            name.clone(),
            "--cpu".into(),
            self.spec.worker_cpu.clone(),
            "--memory".into(),
            self.spec.worker_memory.clone(),
            "--no-docker".into(),
        ];
        if self.spec.secure {
            args.extend(self.tls_args(&name));
        }
        if self.spec.verbose {
            args.push("-v".into());
        }
        let log = self.spec.root.join(format!("{name}.log"));
        Daemon::spawn_logged(&self.spec.bin_dir.join("archon-worker"), &args, &log, WORKER_READY).await
    }

    /// Starts manager `i` again (after it was killed), on its data dir.
    pub async fn restart_manager(&mut self, i: usize) -> anyhow::Result<()> {
        self.managers[i] = self.start_manager(i).await?;
        Ok(())
    }

    /// A client of its own to whichever manager answers (it follows the leader).
    pub async fn client(&self) -> anyhow::Result<GrpcClient> {
        Ok(GrpcClient::connect_with(&self.endpoints, self.dialer.clone()).await?)
    }

    /// A client to `endpoint` alone.
    pub async fn client_to(&self, endpoint: &str) -> anyhow::Result<GrpcClient> {
        Ok(GrpcClient::connect_with(&[endpoint.to_owned()], self.dialer.clone()).await?)
    }

    /// Kills every worker, then every manager.
    pub async fn stop(&mut self) {
        for d in self.workers.iter_mut().chain(self.managers.iter_mut()) {
            let _ = d.kill().await;
        }
    }
}

/// `n` loopback ports free right now.
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<Vec<_>, _>>().context("free ports")?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// The manager that leads, as `status` reports it.
pub fn leader_of(status: &ClusterStatus) -> Option<&ManagerInfo> {
    status.managers.iter().find(|m| m.role == "leader")
}

/// A CA in `dir` and certificates for managers `m1…`, workers `w1…` and the client `bench`.
fn make_certificates(dir: &Path, managers: usize, workers: usize) -> anyhow::Result<()> {
    use archon_cli::certs::{self, CA_DAYS, LEAF_DAYS};
    certs::init(dir, "bench", CA_DAYS, true)?;
    let sans = ["127.0.0.1".to_owned(), "localhost".to_owned()];
    for m in 1..=managers {
        certs::issue(dir, Role::Manager, &format!("m{m}"), &sans, LEAF_DAYS, true)?;
    }
    for w in 1..=workers {
        certs::issue(dir, Role::Worker, &format!("w{w}"), &[], LEAF_DAYS, true)?;
    }
    certs::issue(dir, Role::Client, "bench", &[], LEAF_DAYS, true)?;
    Ok(())
}
