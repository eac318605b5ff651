//! One chaos run from start to verdict: a network, certificates, three
//! managers and four workers in containers, a token; then the load and the
//! faults side by side for the run's duration; then healing, collecting and
//! the check. Whatever happens — an error, a panic, Ctrl-C — the guard removes
//! every container, rule and network the run made before it returns.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::docker::{Guard, docker};
use crate::faults::Faults;
use crate::history::{Event, History};
use crate::load::Load;
use crate::marks::boot_micros;

/// What `archon-chaos run` is given.
#[derive(Debug, Clone)]
pub(crate) struct RunConfig {
    /// Seeds the load and the faults.
    pub(crate) seed: u64,
    /// How long the load and the faults last.
    pub(crate) duration: Duration,
    /// The image every node runs (with archon-manager, archon-worker and archon-chaos).
    pub(crate) image: String,
    /// Where the run keeps everything.
    pub(crate) out: PathBuf,
    /// Where the host's `archon` and `archon-manager` are.
    pub(crate) bin_dir: PathBuf,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The check passed.
    Passed,
    /// The check failed.
    Failed,
    /// Ctrl-C (or SIGTERM) stopped it.
    Interrupted,
}

/// Runs the chaos, cleans up, checks; how it ended.
pub(crate) async fn run(config: RunConfig, stop: CancellationToken) -> anyhow::Result<Outcome> {
    preflight(&config).await?;
    let tag = format!("{}-{}", config.seed, std::process::id());
    let guard = Guard::new(&tag);
    let mut cluster = Cluster::new(&tag, &absolute(&config.out)?, &config.image, &config.bin_dir);
    let scenario = scenario(&config, &mut cluster, &guard, &stop).await;
    if scenario.is_err() {
        // What the containers said is the best clue; collect saves it otherwise.
        if let Err(e) = crate::collect::save_logs(&cluster).await {
            eprintln!("archon-chaos: cannot save the containers' logs: {e:#}");
        }
    }
    eprintln!("archon-chaos: removing the containers, rules and network of run {tag}");
    let cleaned = guard.cleanup().await;
    if stop.is_cancelled() {
        cleaned?;
        return Ok(Outcome::Interrupted);
    }
    scenario?;
    cleaned.context("cannot remove what the run made")?;
    let profile = config.bin_dir.file_name().map_or_else(|| "release".into(), |p| p.to_string_lossy().into_owned());
    let replay =
        format!("scripts/chaos --seed {} --duration {}s --profile {profile}", config.seed, config.duration.as_secs());
    Ok(if crate::check::check(&config.out, Some(replay))? { Outcome::Passed } else { Outcome::Failed })
}

/// Refuses to start without the engine, the image or the host binaries, and
/// prepares the out dir (replacing an earlier run's, never anything else).
async fn preflight(config: &RunConfig) -> anyhow::Result<()> {
    docker(&["info", "--format", "{{.ServerVersion}}"]).await.context("the Docker engine is unreachable")?;
    for tag in crate::docker::sweep_stale().await? {
        eprintln!("archon-chaos: removed what run {tag} left behind (its process is gone)");
    }
    docker(&["image", "inspect", "--format", "{{.Id}}", &config.image])
        .await
        .with_context(|| format!("--image: no image {} (scripts/chaos builds it)", config.image))?;
    for bin in ["archon", "archon-manager"] {
        let path = config.bin_dir.join(bin);
        if !path.is_file() {
            bail!("--bin-dir: no {} (build it: cargo build --bin {bin})", path.display());
        }
    }
    let out = &config.out;
    if out.exists() {
        let ours = out.join("history.jsonl").exists() || std::fs::read_dir(out)?.next().is_none();
        if !ours {
            bail!(
                "--out: {} exists and is not a chaos run's out dir; give a new or an earlier run's dir",
                out.display()
            );
        }
        std::fs::remove_dir_all(out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))
}

/// Everything between the preflight and the cleanup.
async fn scenario(
    config: &RunConfig,
    cluster: &mut Cluster,
    guard: &Guard,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let history = History::create(&config.out.join("history.jsonl"))?;
    history.record(&Event::Started {
        seed: config.seed,
        duration_ms: u64::try_from(config.duration.as_millis()).unwrap_or(u64::MAX),
        image: config.image.clone(),
        at: boot_micros(),
    });
    history.phase("starting the cluster");
    cluster.create_network(guard, config.seed).await?;
    cluster.make_certs().await?;
    cluster.start(guard).await?;
    cluster.make_token(Duration::from_secs(120), stop).await?;
    cluster.wait_ready(Duration::from_secs(120), stop).await?;
    let can_cut = Guard::can_drop_packets().await;
    if !can_cut {
        history.note("iptables cannot filter between containers here: no partitions");
    }

    let cluster = &*cluster;
    let mut load = Load::new(cluster, history.clone(), config.seed);
    load.start_crons().await?;
    let mut faults = Faults::new(cluster, guard, history.clone(), config.seed, can_cut);
    history.phase(&format!("load and faults for {}", humantime::format_duration(config.duration)));
    let until = tokio::time::Instant::now() + config.duration;
    let (loaded, faulted) = tokio::join!(load.run(until, stop), faults.run(until, stop));
    faulted?;
    loaded?;
    history.phase("every fault healed");
    if stop.is_cancelled() {
        bail!("interrupted");
    }
    crate::collect::collect(cluster, &history, &mut load, stop).await
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() { path.to_owned() } else { std::env::current_dir()?.join(path) })
}
