//! The CLI's settings file: where `archon` finds its managers, the cluster CA,
//! its client certificate and its token without flags. `archon dev` writes it
//! on first start; flags and `ARCHON_*` variables win over it. Mode 0600: it
//! holds a token.
//!
//! Where: `$ARCHON_CLI_CONFIG`, else `$XDG_CONFIG_HOME/archon/cli.toml`, else
//! `~/.config/archon/cli.toml`.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// What the file holds; every key optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The manager(s), comma-separated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The cluster CA's certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// The client certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// Its key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// The API token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Where the settings file is.
pub fn path() -> PathBuf {
    if let Some(p) = std::env::var_os("ARCHON_CLI_CONFIG") {
        return PathBuf::from(p);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("archon").join("cli.toml")
}

/// The settings at `path`; none when there is no file.
pub fn load(path: &Path) -> anyhow::Result<Settings> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
        Err(e) => return Err(e).with_context(|| format!("settings: cannot read {}", path.display())),
    };
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        eprintln!("warning: {} is readable by others and holds a token; chmod 600 it", path.display());
    }
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))
}

/// Writes `settings` to `path` (mode 0600, its directory created).
pub fn save(path: &Path, settings: &Settings) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("settings: cannot create {}", dir.display()))?;
    }
    let text = toml::to_string(settings).context("settings: cannot encode")?;
    let tmp = path.with_extension("toml.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("settings: cannot write {}", tmp.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(b"# archon CLI settings (written by `archon dev`); flags and ARCHON_* variables win.\n")?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("settings: cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_at_0600_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cli.toml");
        assert_eq!(load(&path).unwrap(), Settings::default());
        let s = Settings {
            server: Some("https://127.0.0.1:1".into()),
            token: Some("archon_x".into()),
            ..Settings::default()
        };
        save(&path, &s).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load(&path).unwrap(), s);
        std::fs::write(&path, "servr = \"x\"\n").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("unknown field `servr`"));
    }
}
