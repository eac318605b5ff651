//! [`ExtraWorker`]: more workers in the same process as an embedded Archon, so a
//! placement policy has a choice to make. A real cluster runs `archon-worker`s
//! instead; this is what the example's `main` and its tests share.

use std::sync::Arc;

use archon::{Archon, Resources};
use archon_core::transport::InProcTransport;
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A worker in this process, attached to the embedded manager like the local one.
#[derive(Debug)]
pub struct ExtraWorker {
    stop: CancellationToken,
    task: JoinHandle<Result<(), archon_core::Error>>,
}

impl ExtraWorker {
    /// Starts worker `name` offering `capacity`, with `labels`, running shell,
    /// script and process jobs.
    pub fn start(archon: &Archon, name: &str, capacity: Resources, labels: &[(&str, &str)]) -> ExtraWorker {
        let mut config = WorkerConfig::new(name, capacity);
        config.labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        config.address = "in-process".into();
        let transport = Arc::new(InProcTransport::new(archon.manager().clone()));
        let runtime = WorkerRuntime::new(config, Arc::new(archon::executors::processes(None)), transport);
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { runtime.run(stop).await }
        });
        ExtraWorker { stop, task }
    }

    /// Stops it (killing what it still runs) and waits until it has left.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await??;
        Ok(())
    }
}
