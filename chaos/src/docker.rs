//! The Docker engine and the host's packet filter, driven through their CLIs
//! (`docker`, `iptables`), and the guard that removes everything a run made.
//!
//! The one thing to know: every container and the network carry the label
//! `archon.chaos=<run tag>`, and every packet filter rule the comment
//! `archon-chaos-<run tag>`, so [`Guard::cleanup`] finds them all — on a normal
//! end, an error, a panic (its `Drop`) and Ctrl-C — even one whose creating
//! command failed half-way. Only the image stays.

use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};

/// How long one docker or iptables command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// The label on everything a run creates.
pub(crate) const LABEL: &str = "archon.chaos";

/// The packet filter chain Docker leaves to its users (consulted first for
/// traffic between containers).
const CHAIN: &str = "DOCKER-USER";

/// Runs `program args`; its stdout, or an error with its stderr.
pub(crate) async fn command<S: AsRef<str>>(program: &str, args: &[S]) -> anyhow::Result<String> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let child = tokio::process::Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(COMMAND_LIMIT, child)
        .await
        .with_context(|| format!("{program} {} took over {COMMAND_LIMIT:?}", args.join(" ")))?
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!("{program} {} failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `docker args`.
pub(crate) async fn docker<S: AsRef<str>>(args: &[S]) -> anyhow::Result<String> {
    command("docker", args).await
}

/// Whether `container` runs now.
pub(crate) async fn running(container: &str) -> anyhow::Result<bool> {
    Ok(docker(&["inspect", "-f", "{{.State.Running}}", container]).await?.trim() == "true")
}

/// Waits until `container` has stopped (after a kill); false if it still runs
/// after `within`.
pub(crate) async fn wait_stopped(container: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if let Ok(false) = running(container).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A packet filter rule dropping what `from` sends `to` (IP addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Drop {
    /// The source address.
    pub(crate) from: String,
    /// The destination address.
    pub(crate) to: String,
}

/// What a run made, and how to remove it.
#[derive(Debug)]
pub(crate) struct Guard {
    /// The run's tag (in labels, names and rule comments).
    tag: String,
    /// The network, once made.
    network: Mutex<Option<String>>,
    /// Set once everything is gone.
    done: Mutex<bool>,
}

impl Guard {
    /// A guard for the run tagged `tag`.
    pub(crate) fn new(tag: &str) -> Guard {
        Guard { tag: tag.to_owned(), network: Mutex::new(None), done: Mutex::new(false) }
    }

    /// The `--label` value for what this run creates.
    pub(crate) fn label(&self) -> String {
        format!("{LABEL}={}", self.tag)
    }

    /// The comment on this run's packet filter rules.
    fn comment(&self) -> String {
        format!("archon-chaos-{}", self.tag)
    }

    /// Remembers the network to remove.
    pub(crate) fn made_network(&self, name: &str) {
        *self.network.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(name.to_owned());
    }

    /// Adds the rules dropping `drops`, each both ways.
    pub(crate) async fn drop_packets(&self, drops: &[Drop]) -> anyhow::Result<()> {
        for d in drops {
            for (a, b) in [(&d.from, &d.to), (&d.to, &d.from)] {
                command("iptables", &self.rule("-I", a, b)).await?;
            }
        }
        Ok(())
    }

    /// Removes the rules [`Guard::drop_packets`] added for `drops`.
    pub(crate) async fn pass_packets(&self, drops: &[Drop]) -> anyhow::Result<()> {
        for d in drops {
            for (a, b) in [(&d.from, &d.to), (&d.to, &d.from)] {
                command("iptables", &self.rule("-D", a, b)).await?;
            }
        }
        Ok(())
    }

    fn rule(&self, op: &str, from: &str, to: &str) -> Vec<String> {
        let comment = self.comment();
        [op, CHAIN, "-s", from, "-d", to, "-m", "comment", "--comment", &comment, "-j", "DROP"]
            .map(str::to_owned)
            .to_vec()
    }

    /// Whether the packet filter can cut links between containers here.
    pub(crate) async fn can_drop_packets() -> bool {
        command("iptables", &["-S", CHAIN]).await.is_ok()
    }

    /// Removes every container and rule of this run and its network (paused
    /// containers are unpaused first: the engine will not remove them).
    pub(crate) async fn cleanup(&self) -> anyhow::Result<()> {
        let label = format!("label={}", self.label());
        let ids = docker(&["ps", "-aq", "--filter", &label]).await?;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let paused = docker(&["ps", "-q", "--filter", &label, "--filter", "status=paused"]).await?;
            for id in paused.split_whitespace() {
                let _ = docker(&["unpause", id]).await;
            }
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(&ids);
            docker(&args).await?;
        }
        if let Ok(rules) = command("iptables", &["-S", CHAIN]).await {
            let comment = self.comment();
            for line in rules.lines().filter(|l| l.contains(&comment)) {
                let words: Vec<&str> = line.split_whitespace().map(|w| w.trim_matches('"')).collect();
                if let Some((&"-A", rest)) = words.split_first() {
                    let mut args = vec!["-D"];
                    args.extend(rest);
                    command("iptables", &args).await?;
                }
            }
        }
        let network = self.network.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if let Some(network) = network {
            let exists = docker(&["network", "ls", "-q", "--filter", &format!("name=^{network}$")]).await?;
            if !exists.trim().is_empty() {
                docker(&["network", "rm", &network]).await?;
            }
        }
        *self.done.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        Ok(())
    }
}

/// Removes what earlier runs left when they were killed outright (SIGKILL, a
/// crash): everything labelled with a tag whose process (the tag ends with its
/// pid) is gone. Returns the tags swept.
pub(crate) async fn sweep_stale() -> anyhow::Result<Vec<String>> {
    let key = format!("label={LABEL}");
    let format = format!("{{{{.Label \"{LABEL}\"}}}} {{{{.Names}}}}");
    let containers = docker(&["ps", "-a", "--filter", &key, "--format", &format]).await?;
    let format = format!("{{{{.Label \"{LABEL}\"}}}} {{{{.Name}}}}");
    let networks = docker(&["network", "ls", "--filter", &key, "--format", &format]).await?;
    let mut swept = Vec::new();
    let mut tags: Vec<(String, Option<String>)> = Vec::new();
    for line in containers.lines() {
        if let Some((tag, _)) = line.split_once(' ') {
            tags.push((tag.to_owned(), None));
        }
    }
    for line in networks.lines() {
        if let Some((tag, name)) = line.split_once(' ') {
            tags.push((tag.to_owned(), Some(name.to_owned())));
        }
    }
    for (tag, network) in tags {
        let pid = tag.rsplit('-').next().unwrap_or_default();
        let alive = !pid.is_empty() && std::path::Path::new("/proc").join(pid).exists();
        if alive {
            continue;
        }
        let guard = Guard::new(&tag);
        if let Some(network) = network {
            guard.made_network(&network);
        }
        guard.cleanup().await?;
        if !swept.contains(&tag) {
            swept.push(tag);
        }
    }
    Ok(swept)
}

impl std::ops::Drop for Guard {
    /// The last resort (a panic, an early return): the same removal, blocking.
    fn drop(&mut self) {
        if *self.done.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            return;
        }
        let sync = |program: &str, args: &[&str]| {
            std::process::Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        let label = format!("label={}", self.label());
        for id in sync("docker", &["ps", "-q", "--filter", &label, "--filter", "status=paused"]).split_whitespace() {
            sync("docker", &["unpause", id]);
        }
        for id in sync("docker", &["ps", "-aq", "--filter", &label]).split_whitespace() {
            sync("docker", &["rm", "-f", "-v", id]);
        }
        let comment = self.comment();
        for line in sync("iptables", &["-S", CHAIN]).lines().filter(|l| l.contains(&comment)) {
            let words: Vec<&str> = line.split_whitespace().map(|w| w.trim_matches('"')).collect();
            if let Some((&"-A", rest)) = words.split_first() {
                let mut args = vec!["-D"];
                args.extend(rest);
                sync("iptables", &args);
            }
        }
        if let Some(network) = self.network.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_deref() {
            sync("docker", &["network", "rm", network]);
        }
        eprintln!("archon-chaos: removed the containers, rules and network of run {}", self.tag);
    }
}
