//! The daemons as libraries: [`manager::run`] is `archon-manager`, [`worker::run`]
//! is `archon-worker`. Their mains only parse configuration and call these, so
//! anything a daemon does can be embedded.
//!
//! Configuration comes from a TOML file (`--config`), then `ARCHON_*` environment
//! variables, then flags — later ones win. Unknown keys in the file are errors.

pub mod keeping;
pub mod manager;
pub mod worker;

use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;

/// Reads a TOML config file into `T`, naming the file and the bad key on error.
pub fn load_file<T: DeserializeOwned + Default>(path: Option<&Path>) -> anyhow::Result<T> {
    let Some(path) = path else { return Ok(T::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("--config: cannot read {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))
}

/// Parses a duration setting, naming it on error.
pub(crate) fn duration(field: &str, value: &str) -> anyhow::Result<std::time::Duration> {
    archon_core::model::units::parse_duration(value).map_err(|e| anyhow::anyhow!("{field}: {e}"))
}

/// A daemon's whole `main`: configuration (a bad setting exits 2 naming it),
/// logging (`log` and `verbose` are the flags; the config's `log_*` keys come
/// after them and `RUST_LOG`, see [`crate::logging`]), then [`block_on`] of `run`.
pub fn main<C, F, Fut>(
    log: crate::logging::LogOptions,
    verbose: u8,
    configure: impl FnOnce() -> anyhow::Result<C>,
    run: F,
) -> std::process::ExitCode
where
    C: AsRef<crate::logging::LogOptions>,
    F: FnOnce(C, tokio_util::sync::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    match configure() {
        Ok(config) => {
            crate::logging::init(&log, verbose, config.as_ref());
            block_on(|shutdown| run(config, shutdown))
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(crate::EXIT_BAD_INPUT)
        }
    }
}

/// Runs a daemon on a multi-threaded runtime until Ctrl-C or SIGTERM, and turns
/// its result into an exit code.
pub fn block_on<F, Fut>(daemon: F) -> std::process::ExitCode
where
    F: FnOnce(tokio_util::sync::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match daemon(crate::shutdown_on_signals()).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::manager::{ManagerDaemonConfig, ManagerFile};
    use super::worker::{WorkerDaemonConfig, WorkerFile};
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn a_worker_file_is_applied_and_flags_override_it() {
        let f = file(
            "managers = [\"http://a:1\", \"http://b:2\"]\nname = \"w9\"\nlabels = { zone = \"a\" }\ncpu = \"1500m\"\nmemory = \"2GiB\"\ndevices = { gpu = 2 }\ndrain_grace = \"1m\"\n",
        );
        let mut c = WorkerDaemonConfig::default();
        c.apply(load_file::<WorkerFile>(Some(f.path())).unwrap()).unwrap();
        assert_eq!(c.managers, ["http://a:1", "http://b:2"]);
        assert_eq!((c.name.as_str(), c.capacity.cpu_millis, c.capacity.memory_bytes), ("w9", 1500, 2 << 30));
        assert_eq!(c.capacity.devices.get("gpu"), Some(&2));
        assert_eq!(c.drain_grace, Duration::from_secs(60));
        // Flags (and env, which clap folds into them) come after the file.
        c.apply(WorkerFile { cpu: Some("4".into()), name: Some("w10".into()), ..WorkerFile::default() }).unwrap();
        assert_eq!((c.name.as_str(), c.capacity.cpu_millis), ("w10", 4000));
        assert_eq!(c.labels.get("zone").map(String::as_str), Some("a"));
    }

    #[test]
    fn bad_settings_name_the_key_and_the_form() {
        let f = file("cpu = \"lots\"\n");
        let mut c = WorkerDaemonConfig::default();
        let e = c.apply(load_file::<WorkerFile>(Some(f.path())).unwrap()).unwrap_err().to_string();
        assert!(e.starts_with("cpu: \"lots\" is not a CPU amount"), "{e}");
        let f = file("managrs = []\n");
        let e = load_file::<WorkerFile>(Some(f.path())).unwrap_err().to_string();
        assert!(e.contains("unknown field `managrs`"), "{e}");
        let e = WorkerDaemonConfig::default().apply(WorkerFile { cpu: Some("0".into()), ..WorkerFile::default() });
        assert!(e.unwrap_err().to_string().starts_with("cpu and memory"));
        let e = load_file::<ManagerFile>(Some(std::path::Path::new("/no/such.toml"))).unwrap_err().to_string();
        assert!(e.starts_with("--config: cannot read /no/such.toml"), "{e}");
        let mut m = ManagerDaemonConfig::default();
        let e = m.apply(ManagerFile {
            worker_timeout: Some("1s".into()),
            heartbeat_interval: Some("2s".into()),
            ..ManagerFile::default()
        });
        let e = e.unwrap_err().to_string();
        assert!(e.starts_with("heartbeat_interval: 2s is too long for a worker timeout of 1s"), "{e}");
        let e = m.apply(ManagerFile {
            worker_timeout: Some("2s".into()),
            heartbeat_interval: Some("600ms".into()),
            ..ManagerFile::default()
        });
        let e = e.unwrap_err().to_string();
        assert!(e.contains("must outlast three heartbeats"), "{e}");
        let e = m.apply(ManagerFile { placement: Some("random".into()), ..ManagerFile::default() });
        assert_eq!(e.unwrap_err().to_string(), "placement: \"random\" is not a policy (binpack or spread)");
    }

    #[test]
    fn the_store_comes_from_the_file_and_a_bad_one_is_refused_without_its_password() {
        let f = file("store = \"postgres://archon:s3cret@db:5432/archon\"\nworker_timeout = \"20s\"\n");
        let mut m = ManagerDaemonConfig::default();
        m.apply(load_file::<ManagerFile>(Some(f.path())).unwrap()).unwrap();
        assert_eq!(m.store.as_deref(), Some("postgres://archon:s3cret@db:5432/archon"));
        let e = ManagerDaemonConfig::default()
            .apply(ManagerFile { store: Some("mysql://u:s3cret@db/x".into()), ..ManagerFile::default() })
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("store: mysql://u:***@db/x is not a store"), "{e}");
        assert!(e.contains("postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE") && !e.contains("s3cret"), "{e}");
        let e = m.apply(ManagerFile { peers: Some("1=a:1,2=b:2".into()), ..ManagerFile::default() });
        assert!(e.unwrap_err().to_string().starts_with("peers and join: not used with store"));
    }

    #[test]
    fn docker_settings_come_from_the_worker_file() {
        let f = file(
            "docker = false\ndocker_socket = \"/run/d.sock\"\ndocker_allow_mounts = true\ndocker_pids_limit = 0\n",
        );
        let mut c = WorkerDaemonConfig::default();
        assert!(c.docker.enabled && !c.docker.allow_mounts);
        c.apply(load_file::<WorkerFile>(Some(f.path())).unwrap()).unwrap();
        assert!(!c.docker.enabled && c.docker.allow_mounts);
        assert_eq!((c.docker.socket.as_deref(), c.docker.pids_limit), (Some("/run/d.sock"), 0));
        let e = c.apply(WorkerFile { docker_pids_limit: Some(-1), ..WorkerFile::default() }).unwrap_err();
        assert!(e.to_string().starts_with("docker_pids_limit: -1 is negative"), "{e}");
    }
}
