//! Worker session messages: the hello and welcome that open a session, the
//! reports a worker sends up and the work a manager sends down.

use std::sync::Arc;

use archon_core::Error;
use archon_core::model::{AttemptId, JobId, RunId, WorkerId};
use archon_core::transport::{Assignment, Hello, ManagerMessage, Welcome, WorkerMessage};

use super::{At, duration, each, message, millis, required};
use crate::proto::{self, manager_to_worker, worker_to_manager};

impl From<Hello> for proto::Hello {
    fn from(h: Hello) -> Self {
        proto::Hello {
            name: h.name,
            address: h.address,
            labels: h.labels,
            capacity: Some(h.capacity.into()),
            capabilities: h.capabilities.into_iter().collect(),
            running: h.running.into_iter().map(AttemptId::get).collect(),
            protocol: h.protocol,
            queue: h.queue,
        }
    }
}

impl TryFrom<proto::Hello> for Hello {
    type Error = Error;

    fn try_from(h: proto::Hello) -> Result<Self, Error> {
        Ok(Hello {
            name: h.name,
            address: h.address,
            labels: h.labels,
            capacity: required(h.capacity, "capacity")?.into(),
            capabilities: h.capabilities.into_iter().collect(),
            running: h.running.into_iter().map(AttemptId).collect(),
            protocol: h.protocol,
            queue: h.queue,
        })
    }
}

impl From<Welcome> for proto::Welcome {
    fn from(w: Welcome) -> Self {
        proto::Welcome {
            worker: w.worker.get(),
            stale: w.stale.into_iter().map(AttemptId::get).collect(),
            heartbeat_interval_ms: millis(w.heartbeat_interval),
            protocol: w.protocol,
            output_limit: w.output_limit,
            max_output_chunk: w.max_output_chunk as u64,
            lease_ms: millis(w.lease),
        }
    }
}

impl From<proto::Welcome> for Welcome {
    fn from(w: proto::Welcome) -> Self {
        Welcome {
            worker: WorkerId(w.worker),
            stale: w.stale.into_iter().map(AttemptId).collect(),
            heartbeat_interval: duration(w.heartbeat_interval_ms),
            protocol: w.protocol,
            output_limit: w.output_limit,
            max_output_chunk: usize::try_from(w.max_output_chunk).unwrap_or(usize::MAX),
            lease: duration(w.lease_ms),
        }
    }
}

impl From<WorkerMessage> for proto::WorkerToManager {
    fn from(m: WorkerMessage) -> Self {
        let kind = match m {
            WorkerMessage::Heartbeat { running, seq } => {
                worker_to_manager::Kind::Heartbeat(proto::Heartbeat { running, seq })
            }
            WorkerMessage::Started { run, attempt } => {
                worker_to_manager::Kind::Started(proto::Started { run: run.get(), attempt: attempt.get() })
            }
            WorkerMessage::Output(chunk) => worker_to_manager::Kind::Output(chunk.into()),
            WorkerMessage::Finished { run, attempt, result } => worker_to_manager::Kind::Finished(proto::Finished {
                run: run.get(),
                attempt: attempt.get(),
                result: Some(result.into()),
            }),
            WorkerMessage::Fenced { run, attempt } => {
                worker_to_manager::Kind::Fenced(proto::Fenced { run: run.get(), attempt: attempt.get() })
            }
            WorkerMessage::Draining => worker_to_manager::Kind::Draining(proto::Draining {}),
            WorkerMessage::Leaving => worker_to_manager::Kind::Leaving(proto::Leaving {}),
        };
        proto::WorkerToManager { kind: Some(kind) }
    }
}

impl From<Hello> for proto::WorkerToManager {
    fn from(h: Hello) -> Self {
        proto::WorkerToManager { kind: Some(worker_to_manager::Kind::Hello(h.into())) }
    }
}

impl TryFrom<proto::WorkerToManager> for WorkerMessage {
    type Error = Error;

    /// A report after the hello; a second hello is an error.
    fn try_from(m: proto::WorkerToManager) -> Result<Self, Error> {
        Ok(match required(m.kind, "kind")? {
            worker_to_manager::Kind::Hello(_) => {
                return Err(Error::invalid("kind", "a hello is only accepted as the first message of a session"));
            }
            worker_to_manager::Kind::Heartbeat(h) => WorkerMessage::Heartbeat { running: h.running, seq: h.seq },
            worker_to_manager::Kind::Started(s) => {
                WorkerMessage::Started { run: RunId(s.run), attempt: AttemptId(s.attempt) }
            }
            worker_to_manager::Kind::Output(chunk) => WorkerMessage::Output(chunk.try_into().at("output")?),
            worker_to_manager::Kind::Finished(f) => WorkerMessage::Finished {
                run: RunId(f.run),
                attempt: AttemptId(f.attempt),
                result: message(f.result, "result").at("finished")?,
            },
            worker_to_manager::Kind::Fenced(f) => {
                WorkerMessage::Fenced { run: RunId(f.run), attempt: AttemptId(f.attempt) }
            }
            worker_to_manager::Kind::Draining(proto::Draining {}) => WorkerMessage::Draining,
            worker_to_manager::Kind::Leaving(proto::Leaving {}) => WorkerMessage::Leaving,
        })
    }
}

impl From<Assignment> for proto::Assignment {
    fn from(a: Assignment) -> Self {
        proto::Assignment {
            job: a.job.get(),
            run: a.run.get(),
            attempt: a.attempt.get(),
            spec: Some(Arc::unwrap_or_clone(a.spec).into()),
        }
    }
}

impl TryFrom<proto::Assignment> for Assignment {
    type Error = Error;

    fn try_from(a: proto::Assignment) -> Result<Self, Error> {
        Ok(Assignment {
            job: JobId(a.job),
            run: RunId(a.run),
            attempt: AttemptId(a.attempt),
            spec: Arc::new(message(a.spec, "spec")?),
        })
    }
}

impl From<ManagerMessage> for proto::ManagerToWorker {
    fn from(m: ManagerMessage) -> Self {
        let kind = match m {
            ManagerMessage::Assign(batch) => manager_to_worker::Kind::Assign(proto::Assign {
                assignments: batch.into_iter().map(Into::into).collect(),
            }),
            ManagerMessage::Cancel { run, attempt } => {
                manager_to_worker::Kind::Cancel(proto::Cancel { run: run.get(), attempt: attempt.get() })
            }
            ManagerMessage::Lease { seq } => manager_to_worker::Kind::Lease(proto::Lease { seq }),
        };
        proto::ManagerToWorker { kind: Some(kind) }
    }
}

impl From<Welcome> for proto::ManagerToWorker {
    fn from(w: Welcome) -> Self {
        proto::ManagerToWorker { kind: Some(manager_to_worker::Kind::Welcome(w.into())) }
    }
}

impl TryFrom<proto::ManagerToWorker> for ManagerMessage {
    type Error = Error;

    /// Work after the welcome; a second welcome is an error.
    fn try_from(m: proto::ManagerToWorker) -> Result<Self, Error> {
        Ok(match required(m.kind, "kind")? {
            manager_to_worker::Kind::Welcome(_) => {
                return Err(Error::invalid("kind", "a welcome is only sent as the first message of a session"));
            }
            manager_to_worker::Kind::Assign(a) => ManagerMessage::Assign(each(a.assignments, "assign.assignments")?),
            manager_to_worker::Kind::Cancel(c) => {
                ManagerMessage::Cancel { run: RunId(c.run), attempt: AttemptId(c.attempt) }
            }
            manager_to_worker::Kind::Lease(l) => ManagerMessage::Lease { seq: l.seq },
        })
    }
}
