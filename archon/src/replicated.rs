//! The manager's durable store, the default of [`crate::Builder`] (so of
//! `archon dev` and `archon-manager` too): a Raft group on the data dir. By default a new node bootstraps a group of one;
//! given `peers` it bootstraps a group of all of them (every peer is started with
//! the same list); given `join` it asks that group's leader to add it. A node
//! that already belongs to a group just reopens it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use archon_core::metrics::Metrics;
use archon_raft::network::AdminClient;
use archon_raft::{RaftConfig, RaftStore};
use tokio_util::sync::CancellationToken;

use crate::Error;

/// Where and how the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// This manager's Raft node id (unique in the group, never reused).
    pub node_id: u64,
    /// The directory holding its durable state.
    pub data_dir: PathBuf,
    /// The group to bootstrap, id → address (empty: a group of this node alone).
    pub peers: BTreeMap<u64, String>,
    /// A member of an existing group to join through, instead of bootstrapping.
    pub join: Option<String>,
    /// The largest log entry (see [`RaftConfig::max_entry_bytes`]).
    pub max_entry_bytes: usize,
    /// The leader's heartbeat (see [`RaftConfig::heartbeat_interval`]).
    pub heartbeat: std::time::Duration,
    /// The election timeout's range (see [`RaftConfig::election_timeout`]).
    pub election_timeout: (std::time::Duration, std::time::Duration),
}

impl StoreOptions {
    /// Node 1, alone, in `data_dir`.
    pub fn new(data_dir: PathBuf) -> StoreOptions {
        let raft = RaftConfig::new(1, "", "");
        StoreOptions {
            node_id: 1,
            data_dir,
            peers: BTreeMap::new(),
            join: None,
            max_entry_bytes: raft.max_entry_bytes,
            heartbeat: raft.heartbeat_interval,
            election_timeout: raft.election_timeout,
        }
    }

    /// Checks the options agree with each other.
    pub fn validate(&self) -> Result<(), Error> {
        if self.node_id == 0 {
            return Err(config("node_id", "must be 1 or more".into()));
        }
        if self.join.is_some() && !self.peers.is_empty() {
            return Err(config(
                "join and peers",
                "give one or the other (peers bootstraps a new group, join enters one)".into(),
            ));
        }
        if !self.peers.is_empty() && !self.peers.contains_key(&self.node_id) {
            return Err(config(
                "peers",
                format!("must include this node's id {} (e.g. {}=HOST:PORT)", self.node_id, self.node_id),
            ));
        }
        Ok(())
    }

    /// Whether this node is a group of its own (it leads as soon as it starts).
    pub fn alone(&self) -> bool {
        self.join.is_none() && (self.peers.is_empty() || self.peers.keys().eq([&self.node_id]))
    }
}

/// The default data dir for `what` (`dev`, `manager-1`): under `$XDG_DATA_HOME`
/// or `~/.local/share`, else the working directory.
pub fn default_data_dir(what: &str) -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("archon").join(what)
}

/// Parses `1=10.0.0.1:50051,2=10.0.0.2:50051`.
pub fn parse_peers(s: &str) -> Result<BTreeMap<u64, String>, Error> {
    let mut peers = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| config("peers", format!("{part:?} is not ID=HOST:PORT (try 1=10.0.0.1:50051)")))?;
        let id: u64 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| config("peers", format!("{id:?} is not a node id (1, 2, …)")))?;
        if addr.trim().is_empty() {
            return Err(config("peers", format!("node {id} has no address (try {id}=10.0.0.1:50051)")));
        }
        if peers.insert(id, addr.trim().to_owned()).is_some() {
            return Err(config("peers", format!("node {id} is listed twice")));
        }
    }
    Ok(peers)
}

fn config(field: &'static str, message: String) -> Error {
    Error::Config { field, message }
}

/// Opens the store at `options.data_dir` for a node reached at `address`,
/// recording into the node's `metrics`, and bootstraps its group unless it is
/// one already or is to join one.
pub async fn open(
    options: &StoreOptions,
    address: &str,
    metrics: &Metrics,
    dialer: &archon_net::tls::Dialer,
) -> Result<RaftStore, Error> {
    options.validate()?;
    let data_dir = |source| Error::DataDir { path: options.data_dir.clone(), source };
    let mut config = RaftConfig::new(options.node_id, address, &options.data_dir);
    config.max_entry_bytes = options.max_entry_bytes;
    config.heartbeat_interval = options.heartbeat;
    config.election_timeout = options.election_timeout;
    config.metrics = metrics.clone();
    config.dialer = dialer.clone();
    let store = RaftStore::open(config).await.map_err(data_dir)?;
    if options.join.is_none() {
        store.bootstrap(options.peers.clone()).await.map_err(data_dir)?;
    }
    Ok(store)
}

/// Once serving, asks the group at `via` to add this node, retrying until it is a
/// member or `shutdown` fires. Does nothing for a node that already is one.
pub fn join_in_background(store: RaftStore, via: String, dialer: archon_net::tls::Dialer, shutdown: CancellationToken) {
    tokio::spawn(async move {
        if store.is_member().await {
            return;
        }
        let config = store.config().clone();
        let admin = AdminClient::with_dialer(vec![via.clone()], dialer);
        let mut delay = Duration::from_millis(200);
        loop {
            match admin.join(config.node_id, &config.address).await {
                Ok(_) => {
                    tracing::info!(node = config.node_id, %via, "joined the manager group");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, %via, retry_in = ?delay, "cannot join the manager group yet"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_bad_ones_name_the_flag() {
        let peers = parse_peers("1=127.0.0.1:7001, 2=127.0.0.1:7002").unwrap();
        assert_eq!(peers.get(&2).map(String::as_str), Some("127.0.0.1:7002"));
        for bad in ["1", "x=h:1", "0=h:1", "1=", "1=a:1,1=b:2"] {
            let err = parse_peers(bad).unwrap_err().to_string();
            assert!(err.starts_with("peers: "), "{bad}: {err}");
        }
    }

    #[test]
    fn peers_must_include_the_node_and_exclude_join() {
        let mut o = StoreOptions::new("/tmp/x".into());
        o.peers = parse_peers("2=h:1,3=h:2").unwrap();
        assert!(o.validate().unwrap_err().to_string().contains("this node's id 1"));
        o.peers.insert(1, "h:0".into());
        o.validate().unwrap();
        o.join = Some("h:1".into());
        assert!(o.validate().unwrap_err().to_string().starts_with("join and peers"));
    }
}
