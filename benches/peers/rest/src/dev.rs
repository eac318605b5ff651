//! `archon dev` as shipped (secured: TLS 1.3, client certificates, tokens) in a
//! fresh temporary data dir, and what its CLI settings file says: where it
//! listens, its CA, a client certificate and the admin token. What to know: the
//! process is killed and the directory removed when [`Dev`] is dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use tokio::io::AsyncBufReadExt;

/// A running `archon dev`.
pub struct Dev {
    child: tokio::process::Child,
    dir: PathBuf,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The settings it wrote.
    pub settings: Settings,
}

/// The CLI settings file's keys this client uses.
pub struct Settings {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub token: String,
}

impl Dev {
    /// Starts `archon dev` with a worker offering a huge capacity.
    pub async fn start(archon: &Path) -> anyhow::Result<Dev> {
        let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("archon-rest-peer-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let settings = dir.join("cli.toml");
        let mut child = tokio::process::Command::new(archon)
            .args(["dev", "--listen", "127.0.0.1:0", "--no-docker", "--cpu", "1000000", "--memory", "1TiB"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--cli-config")
            .arg(&settings)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", archon.display()))?;
        let mut lines = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
        let address = loop {
            let line = lines.next_line().await?.context("archon dev exited")?;
            if let Some(a) = line.strip_prefix("gRPC API listening on ") {
                break a.trim().to_owned();
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let Some(bare) = address.strip_prefix("https://") else {
            bail!("archon dev serves {address}: not secured");
        };
        let addr = bare.parse().with_context(|| format!("{address} is not an address"))?;
        let settings = read_settings(&settings)?;
        Ok(Dev { child, dir, addr, settings })
    }
}

impl Dev {
    /// Kills it and waits until it is gone.
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads the `key = "value"` lines of the settings file (it holds nothing else).
fn read_settings(path: &Path) -> anyhow::Result<Settings> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value = |key: &str| -> anyhow::Result<String> {
        text.lines()
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
            })
            .with_context(|| format!("no {key} in {}", path.display()))
    };
    Ok(Settings {
        ca: value("ca")?.into(),
        cert: value("cert")?.into(),
        key: value("key")?.into(),
        token: value("token")?,
    })
}
