//! Worker session messages convert losslessly (model → proto → bytes → proto →
//! model) and malformed ones are rejected naming the field, never with a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use archon_core::Error;
use archon_core::model::{
    AttemptId, AttemptResult, ExitStatus, JobId, JobSpec, OutputChunk, OutputStream, OutputTail, ResourceUsage,
    Resources, RunId, Task, WorkerId,
};
use archon_core::transport::{Assignment, Hello, ManagerMessage, Welcome, WorkerMessage};
use archon_net::proto::{self, manager_to_worker, worker_to_manager};
use bytes::Bytes;
use prost::Message;

/// model → proto → wire bytes → proto.
fn over_the_wire<P: Message + Default>(message: P) -> P {
    P::decode(message.encode_to_vec().as_slice()).expect("decodes")
}

fn field_of(err: Error) -> String {
    match err {
        Error::InvalidArgument { field, .. } => field,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

fn hello() -> Hello {
    Hello {
        protocol: archon_core::transport::PROTOCOL,
        name: "w1".into(),
        address: "10.0.0.7:7000".into(),
        labels: [("zone".to_owned(), "a".to_owned())].into(),
        capacity: Resources {
            cpu_millis: 8_000,
            memory_bytes: 16 << 30,
            network_mbps: 1000,
            devices: [("gpu".to_owned(), 2)].into(),
        },
        capabilities: ["shell".to_owned(), "function:echo".to_owned()].into(),
        running: vec![AttemptId(3), AttemptId(9)],
        queue: 5,
    }
}

#[test]
fn hello_and_welcome_round_trip() {
    let wire = over_the_wire(proto::WorkerToManager::from(hello()));
    match wire.kind {
        Some(worker_to_manager::Kind::Hello(h)) => assert_eq!(Hello::try_from(h).unwrap(), hello()),
        other => panic!("expected a hello, got {other:?}"),
    }
    let welcome = Welcome {
        worker: WorkerId(4),
        stale: vec![AttemptId(9)],
        heartbeat_interval: Duration::from_millis(2500),
        protocol: 2,
        output_limit: 1 << 20,
        max_output_chunk: 64 << 10,
        lease: Duration::from_millis(8800),
    };
    match over_the_wire(proto::ManagerToWorker::from(welcome.clone())).kind {
        Some(manager_to_worker::Kind::Welcome(w)) => assert_eq!(Welcome::from(w), welcome),
        other => panic!("expected a welcome, got {other:?}"),
    }
}

#[test]
fn every_worker_report_round_trips() {
    let (run, attempt) = (RunId(5), AttemptId(6));
    let reports = vec![
        WorkerMessage::Heartbeat { running: 3, seq: 9 },
        WorkerMessage::Fenced { run: RunId(1), attempt: AttemptId(2) },
        WorkerMessage::Started { run, attempt },
        WorkerMessage::Output(OutputChunk { run, attempt, stream: OutputStream::Stderr, data: Bytes::from("oops\n") }),
        WorkerMessage::Finished {
            run,
            attempt,
            result: AttemptResult {
                status: ExitStatus::Signaled { signal: 9 },
                stdout: OutputTail { data: Bytes::from("out"), truncated: 10 },
                stderr: OutputTail::default(),
                usage: Some(ResourceUsage {
                    cpu_user_us: 500_000,
                    cpu_system_us: 20_000,
                    peak_memory_bytes: 100 << 20,
                    wall_us: 610_000,
                }),
            },
        },
        WorkerMessage::Draining,
        WorkerMessage::Leaving,
    ];
    for report in reports {
        let back = WorkerMessage::try_from(over_the_wire(proto::WorkerToManager::from(report.clone())));
        assert_eq!(back.unwrap(), report);
    }
}

#[test]
fn assignments_and_cancels_round_trip() {
    let spec = JobSpec {
        env: [("A".to_owned(), "1".to_owned())].into(),
        // An assignment carries secret values as they are: the worker passes them on.
        secret_env: [("TOKEN".to_owned(), "s3cr3t".into())].into(),
        timeout: Some(Duration::from_secs(30)),
        ..JobSpec::new("job", Task::Shell { command: "echo hi".into() })
    };
    let messages = vec![
        ManagerMessage::Assign(vec![
            Assignment { job: JobId(1), run: RunId(2), attempt: AttemptId(3), spec: Arc::new(spec.clone()) },
            Assignment { job: JobId(4), run: RunId(5), attempt: AttemptId(6), spec: Arc::new(spec) },
        ]),
        ManagerMessage::Assign(Vec::new()),
        ManagerMessage::Cancel { run: RunId(7), attempt: AttemptId(8) },
        ManagerMessage::Lease { seq: 12 },
    ];
    for message in messages {
        let back = ManagerMessage::try_from(over_the_wire(proto::ManagerToWorker::from(message.clone())));
        assert_eq!(back.unwrap(), message);
    }
}

#[test]
fn malformed_session_messages_are_invalid_arguments_naming_the_field() {
    let report = |kind| WorkerMessage::try_from(proto::WorkerToManager { kind }).unwrap_err();
    assert_eq!(field_of(report(None)), "kind");
    let second_hello = report(Some(worker_to_manager::Kind::Hello(hello().into())));
    assert_eq!(field_of(second_hello), "kind", "a hello after the first message is refused");
    let no_result = proto::Finished { run: 1, attempt: 2, result: None };
    assert_eq!(field_of(report(Some(worker_to_manager::Kind::Finished(no_result)))), "finished.result");
    let bad_stream = proto::OutputChunk { run: 1, attempt: 2, stream: 42, data: Bytes::new() };
    assert_eq!(field_of(report(Some(worker_to_manager::Kind::Output(bad_stream)))), "output.stream");

    let hello_without_capacity = proto::Hello { capacity: None, ..hello().into() };
    assert_eq!(field_of(Hello::try_from(hello_without_capacity).unwrap_err()), "capacity");

    let work = |kind| ManagerMessage::try_from(proto::ManagerToWorker { kind }).unwrap_err();
    assert_eq!(field_of(work(None)), "kind");
    let welcome = proto::Welcome { worker: 1, stale: Vec::new(), heartbeat_interval_ms: 1, ..Default::default() };
    assert_eq!(field_of(work(Some(manager_to_worker::Kind::Welcome(welcome)))), "kind");
    let no_spec = proto::Assignment { job: 1, run: 2, attempt: 3, spec: None };
    let assign = proto::Assign { assignments: vec![no_spec] };
    assert_eq!(field_of(work(Some(manager_to_worker::Kind::Assign(assign)))), "assign.assignments[0].spec");
}
