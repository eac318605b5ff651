//! Workers as the cluster records them and as `archon workers` shows them.

use archon_core::Error;
use archon_core::api::WorkerInfo;
use archon_core::model::{AttemptId, Worker, WorkerId, WorkerState};

use super::{ProtoEnum, enum_required, instant, message, proto_enum, timestamp};
use crate::proto;

proto_enum!(WorkerState => WorkerState { Ready, Draining, Lost, Left });

impl From<Worker> for proto::Worker {
    fn from(w: Worker) -> Self {
        proto::Worker {
            id: w.id.get(),
            name: w.name,
            address: w.address,
            labels: w.labels,
            capacity: Some(w.capacity.into()),
            allocated: Some(w.allocated.into()),
            capabilities: w.capabilities.into_iter().collect(),
            state: w.state.to_wire(),
            registered_at_ms: instant(w.registered_at),
            running: w.running.into_iter().map(AttemptId::get).collect(),
            queue: w.queue,
            queued: w.queued.into_iter().map(AttemptId::get).collect(),
        }
    }
}

impl TryFrom<proto::Worker> for Worker {
    type Error = Error;

    fn try_from(w: proto::Worker) -> Result<Self, Error> {
        Ok(Worker {
            id: WorkerId(w.id),
            name: w.name,
            address: w.address,
            labels: w.labels,
            capacity: super::required(w.capacity, "capacity")?.into(),
            allocated: super::required(w.allocated, "allocated")?.into(),
            capabilities: w.capabilities.into_iter().collect(),
            state: enum_required(w.state, "state")?,
            registered_at: timestamp(w.registered_at_ms),
            running: w.running.into_iter().map(AttemptId).collect(),
            queue: w.queue,
            queued: w.queued.into_iter().map(AttemptId).collect(),
        })
    }
}

impl From<WorkerInfo> for proto::WorkerInfo {
    fn from(w: WorkerInfo) -> Self {
        proto::WorkerInfo {
            worker: Some(w.worker.into()),
            connected: w.connected,
            last_seen_ms: w.last_seen.map(instant),
        }
    }
}

impl TryFrom<proto::WorkerInfo> for WorkerInfo {
    type Error = Error;

    fn try_from(w: proto::WorkerInfo) -> Result<Self, Error> {
        Ok(WorkerInfo {
            worker: message(w.worker, "worker")?,
            connected: w.connected,
            last_seen: w.last_seen_ms.map(timestamp),
        })
    }
}
