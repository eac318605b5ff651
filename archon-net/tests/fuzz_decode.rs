//! Fuzzing of every protobuf message a client or a worker sends a manager (and of
//! every message a manager sends back, which clients and workers read): bytes are
//! decoded with `prost::Message::decode` and converted into archon-core's model
//! the way the server (`server.rs`, `sessions/service.rs`), the client
//! (`client.rs`) and the worker's transport do. Never a panic, and never more
//! memory than a fixed multiple of the input (see [`budget`]).
//!
//! The messages are listed once, in the tables below; the test
//! `every_message_on_the_wire_is_in_a_fuzz_table` compiles `proto/` (with protox,
//! as build.rs does) and fails when an rpc or a session message kind is missing,
//! so a new one cannot go unfuzzed.
//!
//! Inputs are raw bytes, and messages generated from the descriptors (the right
//! field numbers and wire types, nesting, repeats, unknown fields, wrong wire
//! types, truncation) so conversions see well-formed but hostile values.
//!
//! Modest case counts by default; a long run: `scripts/fuzz` (100,000 cases each),
//! or `PROPTEST_CASES=N cargo nextest run -p archon-net --test fuzz_decode`.
//! Each property prints its seed and a one-line replay command.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../archon-core/tests/fuzz_harness/mod.rs"]
mod fuzz_harness;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use archon_core::Error;
use archon_core::api::{
    CancelTarget, ClusterStatus, JobDetail, JobQuery, JobSummary, Page, RunDetail, RunQuery, RunSummary,
    ScheduleAction, ScheduleFire, SubmitResult, SubmittedWorkflow, WorkerInfo, WorkflowDetail, WorkflowQuery,
    WorkflowSummary,
};
use archon_core::auth::{IssuedToken, TokenId, TokenInfo, TokenSpec};
use archon_core::model::{JobId, JobSpec, OutputChunk, RunId, WorkerId, WorkflowId, WorkflowSpec};
use archon_core::transport::{Hello, ManagerMessage, Welcome, WorkerMessage};
use archon_net::proto::{self, manager_to_worker, worker_to_manager};
use fuzz_harness::{Budget, Fuzz};
use proptest::prelude::*;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};
use protox::prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor};

const TARGET: &str = "-p archon-net --test fuzz_decode";

// ------------------------------------------------------------------ the tables

/// What reading one message came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Not a valid encoding of the message.
    Undecodable,
    /// Decoded; the conversion refused it (with an error, as it should).
    Refused,
    /// Decoded and converted.
    Accepted,
}

/// One message and how its reader turns bytes into the model.
struct Reader {
    /// The message type (`archon.v1.SubmitRequest`), or for a session message
    /// kind the `oneof` field's name (`hello`).
    name: &'static str,
    /// The message type generated inputs are shaped as.
    message: &'static str,
    read: fn(&[u8]) -> Outcome,
}

/// The outcome of a conversion.
fn outcome<T, E>(converted: Result<T, E>) -> Outcome {
    match converted {
        Ok(_) => Outcome::Accepted,
        Err(_) => Outcome::Refused,
    }
}

/// Converts every item as the server's submit does (each on its own, all kept).
fn every<P, M: TryFrom<P>>(items: Vec<P>) -> Result<Vec<M>, M::Error> {
    let converted: Vec<Result<M, M::Error>> = items.into_iter().map(M::try_from).collect();
    converted.into_iter().collect()
}

/// A reader of `archon.v1.$message` that converts the decoded value `$m` with `$convert`.
macro_rules! reader {
    ($message:ident, |$m:ident| $convert:expr) => {
        reader!(concat!("archon.v1.", stringify!($message)), $message, |$m| $convert)
    };
    ($name:expr, $message:ident, |$m:ident| $convert:expr) => {
        Reader {
            name: $name,
            message: concat!("archon.v1.", stringify!($message)),
            read: |bytes| match proto::$message::decode(bytes) {
                Ok($m) => outcome::<_, Error>($convert),
                Err(_) => Outcome::Undecodable,
            },
        }
    };
}

/// The input of every `ArchonApi` rpc, read as `server.rs` reads it. An rpc
/// added to api.proto must be added here (the descriptor test says so).
fn api_requests() -> Vec<Reader> {
    vec![
        reader!(SubmitRequest, |m| every::<_, JobSpec>(m.specs)),
        reader!(CreateTokenRequest, |m| TokenSpec::try_from(m)),
        reader!(ListTokensRequest, |_m| Ok(())),
        reader!(RevokeTokenRequest, |m| m.id.parse::<TokenId>().map_err(|e| Error::invalid("id", e))),
        reader!(GetJobRequest, |m| Ok(JobId(m.id))),
        reader!(GetRunRequest, |m| Ok(RunId(m.id))),
        reader!(ListJobsRequest, |m| JobQuery::try_from(m)),
        reader!(ListRunsRequest, |m| RunQuery::try_from(m)),
        reader!(CancelRequest, |m| CancelTarget::try_from(m)),
        reader!(WaitRunRequest, |m| Ok(RunId(m.id))),
        reader!(FollowOutputRequest, |m| Ok(RunId(m.id))),
        reader!(StatusRequest, |_m| Ok(())),
        reader!(ListWorkersRequest, |_m| Ok(())),
        reader!(SetDrainingRequest, |m| Ok((WorkerId(m.worker), m.draining))),
        reader!(ScheduleRequest, |m| {
            let action = m.action.ok_or_else(|| Error::invalid("action", "is required"));
            action.and_then(ScheduleAction::try_from).map(|a| (JobId(m.job), a))
        }),
        reader!(SubmitWorkflowRequest, |m| {
            m.spec.ok_or_else(|| Error::invalid("spec", "is required")).and_then(WorkflowSpec::try_from)
        }),
        reader!(GetWorkflowRequest, |m| Ok(WorkflowId(m.id))),
        reader!(ListWorkflowsRequest, |m| WorkflowQuery::try_from(m)),
    ]
}

/// The output of every `ArchonApi` rpc, read as `client.rs` reads it, and the
/// error detail a client reads from a failed call's metadata (`status.rs`).
fn api_responses() -> Vec<Reader> {
    vec![
        reader!(SubmitResponse, |m| every::<_, SubmitResult>(m.results)),
        reader!(CreateTokenResponse, |m| IssuedToken::try_from(m)),
        reader!(ListTokensResponse, |m| every::<_, TokenInfo>(m.tokens)),
        reader!(RevokeTokenResponse, |_m| Ok(())),
        reader!(JobDetail, |m| JobDetail::try_from(m)),
        reader!(RunDetail, |m| RunDetail::try_from(m)),
        reader!(ListJobsResponse, |m| Page::<JobSummary, JobId>::try_from(m)),
        reader!(ListRunsResponse, |m| Page::<RunSummary, RunId>::try_from(m)),
        reader!(CancelResponse, |_m| Ok(())),
        reader!(OutputChunk, |m| OutputChunk::try_from(m)),
        reader!(ClusterStatus, |m| Ok(ClusterStatus::from(m))),
        reader!(ListWorkersResponse, |m| every::<_, WorkerInfo>(m.workers)),
        reader!(SetDrainingResponse, |_m| Ok(())),
        reader!(ScheduleResponse, |m| every::<_, ScheduleFire>(m.fires)),
        reader!(SubmitWorkflowResponse, |m| Ok(SubmittedWorkflow::from(m))),
        reader!(WorkflowDetail, |m| WorkflowDetail::try_from(m)),
        reader!(ListWorkflowsResponse, |m| Page::<WorkflowSummary, WorkflowId>::try_from(m)),
        reader!(ErrorDetail, |m| Error::try_from(m).map(|e| e.to_string())),
    ]
}

/// Every kind of `WorkerToManager`, read as the manager's session reads it: the
/// hello as the first message, the rest as reports. A kind added to
/// worker.proto must be added here.
fn worker_messages() -> Vec<Reader> {
    fn report(kind: worker_to_manager::Kind) -> Result<WorkerMessage, Error> {
        WorkerMessage::try_from(proto::WorkerToManager { kind: Some(kind) })
    }
    vec![
        reader!("hello", Hello, |m| Hello::try_from(m)),
        reader!("heartbeat", Heartbeat, |m| report(worker_to_manager::Kind::Heartbeat(m))),
        reader!("started", Started, |m| report(worker_to_manager::Kind::Started(m))),
        reader!("output", OutputChunk, |m| report(worker_to_manager::Kind::Output(m))),
        reader!("finished", Finished, |m| report(worker_to_manager::Kind::Finished(m))),
        reader!("leaving", Leaving, |m| report(worker_to_manager::Kind::Leaving(m))),
        reader!("draining", Draining, |m| report(worker_to_manager::Kind::Draining(m))),
        reader!("fenced", Fenced, |m| report(worker_to_manager::Kind::Fenced(m))),
        // The whole envelope, as it arrives on the stream.
        reader!(WorkerToManager, |m| match m.kind {
            Some(worker_to_manager::Kind::Hello(h)) => Hello::try_from(h).map(drop),
            kind => WorkerMessage::try_from(proto::WorkerToManager { kind }).map(drop),
        }),
    ]
}

/// Every kind of `ManagerToWorker`, read as the worker's transport reads it.
fn manager_messages() -> Vec<Reader> {
    fn work(kind: manager_to_worker::Kind) -> Result<ManagerMessage, Error> {
        ManagerMessage::try_from(proto::ManagerToWorker { kind: Some(kind) })
    }
    vec![
        reader!("welcome", Welcome, |m| Ok(Welcome::from(m))),
        reader!("assign", Assign, |m| work(manager_to_worker::Kind::Assign(m))),
        reader!("cancel", Cancel, |m| work(manager_to_worker::Kind::Cancel(m))),
        reader!("lease", Lease, |m| work(manager_to_worker::Kind::Lease(m))),
        reader!(ManagerToWorker, |m| match m.kind {
            Some(manager_to_worker::Kind::Welcome(w)) => Ok(Some(Welcome::from(w))),
            kind => ManagerMessage::try_from(proto::ManagerToWorker { kind }).map(|_| None),
        }),
    ]
}

fn all_readers() -> Vec<Reader> {
    [api_requests(), api_responses(), worker_messages(), manager_messages()].into_iter().flatten().collect()
}

// ------------------------------------------------------------------ the descriptors

/// `proto/` compiled as build.rs compiles it.
fn descriptors() -> DescriptorPool {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let mut compiler = protox::Compiler::new([&dir]).expect("the proto directory");
    compiler.include_imports(true);
    compiler.open_files(["archon/v1/api.proto", "archon/v1/worker.proto"]).expect("the protos compile");
    compiler.descriptor_pool()
}

/// The fields of the `oneof kind` of `message`, by name.
fn kinds(pool: &DescriptorPool, message: &str) -> BTreeSet<String> {
    let message = pool.get_message_by_name(message).unwrap_or_else(|| panic!("{message} is gone"));
    let kind = message.oneofs().find(|o| o.name() == "kind").expect("a oneof kind");
    kind.fields().map(|f| f.name().to_owned()).collect()
}

/// Fails unless the table `table` lists exactly the messages `on_the_wire`.
fn assert_lists(table: &str, readers: &[Reader], on_the_wire: BTreeSet<String>) {
    let listed: BTreeSet<String> = readers.iter().map(|r| r.name.to_owned()).collect();
    let missing: Vec<&String> = on_the_wire.difference(&listed).collect();
    let gone: Vec<&String> = listed.difference(&on_the_wire).collect();
    assert!(
        missing.is_empty() && gone.is_empty(),
        "{table}: add a reader for {missing:?} (decode, then convert as the code that receives it does); \
         remove {gone:?}, no longer on the wire"
    );
}

#[test]
fn every_message_on_the_wire_is_in_a_fuzz_table() {
    let pool = descriptors();
    let services: BTreeSet<String> = pool.services().map(|s| s.full_name().to_owned()).collect();
    assert_eq!(
        services,
        BTreeSet::from(["archon.v1.ArchonApi".to_owned(), "archon.v1.WorkerSessions".to_owned()]),
        "a new service: give its messages a fuzz table"
    );
    let api = pool.get_service_by_name("archon.v1.ArchonApi").expect("ArchonApi");
    let inputs: BTreeSet<String> = api.methods().map(|m| m.input().full_name().to_owned()).collect();
    assert_lists("api_requests()", &api_requests(), inputs);
    let mut outputs: BTreeSet<String> = api.methods().map(|m| m.output().full_name().to_owned()).collect();
    outputs.insert("archon.v1.ErrorDetail".to_owned());
    assert_lists("api_responses()", &api_responses(), outputs);

    let sessions = pool.get_service_by_name("archon.v1.WorkerSessions").expect("WorkerSessions");
    let streams: Vec<(String, String)> =
        sessions.methods().map(|m| (m.input().full_name().to_owned(), m.output().full_name().to_owned())).collect();
    assert_eq!(streams, [("archon.v1.WorkerToManager".to_owned(), "archon.v1.ManagerToWorker".to_owned())]);
    let mut up = kinds(&pool, "archon.v1.WorkerToManager");
    up.insert("archon.v1.WorkerToManager".to_owned());
    assert_lists("worker_messages()", &worker_messages(), up);
    let mut down = kinds(&pool, "archon.v1.ManagerToWorker");
    down.insert("archon.v1.ManagerToWorker".to_owned());
    assert_lists("manager_messages()", &manager_messages(), down);

    for reader in all_readers() {
        let descriptor = pool.get_message_by_name(reader.message);
        assert!(descriptor.is_some(), "{}: no message {}", reader.name, reader.message);
    }
    for (message, kinds) in
        [("archon.v1.WorkerToManager", worker_messages()), ("archon.v1.ManagerToWorker", manager_messages())]
    {
        let oneof = pool.get_message_by_name(message).unwrap();
        for reader in kinds.iter().filter(|r| !r.name.contains('.')) {
            let field = oneof.get_field_by_name(reader.name).unwrap();
            let Kind::Message(shape) = field.kind() else { panic!("{message}.{} is not a message", reader.name) };
            assert_eq!(shape.full_name(), reader.message, "{message}.{} is read as the wrong type", reader.name);
        }
    }
}

// ------------------------------------------------------------------ the inputs

/// Decisions read from a tape of bytes (proptest shrinks the tape, and so the
/// message); an exhausted tape reads zeros, which end the message.
struct Tape<'a> {
    bytes: &'a [u8],
    /// Wire bytes still allowed, so nesting and repeats stay small.
    room: usize,
}

impl Tape<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.bytes.split_first() else { return 0 };
        self.bytes = rest;
        b
    }

    fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n.max(1)
    }

    fn chance(&mut self, in_256: u8) -> bool {
        self.byte() < in_256
    }

    /// A number of the kinds that break things: 0, 1, small, an enum's range,
    /// negative as a 10-byte varint, the limits, or any 64 bits.
    fn number(&mut self) -> u64 {
        match self.below(9) {
            0 => 0,
            1 => 1,
            2 => u64::from(self.byte()),
            3 => self.below(24) as u64,
            4 => (-(self.below(3) as i64) - 1) as u64,
            5 => u64::from(u32::MAX) + self.below(2) as u64,
            6 => u64::MAX,
            7 => i64::MAX as u64 + self.below(2) as u64,
            _ => u64::from_le_bytes(std::array::from_fn(|_| self.byte())),
        }
    }

    /// How many times a repeated field occurs: mostly a few, sometimes hundreds.
    fn repeats(&mut self) -> usize {
        match self.below(16) {
            0..=11 => self.below(4),
            12..=14 => self.below(32),
            _ => 64 + self.below(256) * 4,
        }
    }

    fn text(&mut self) -> Vec<u8> {
        let len = self.below(24);
        if self.chance(16) {
            return (0..len).map(|_| self.byte()).collect(); // maybe not UTF-8
        }
        let pool = ["a", "job-1", "=", " ", "é", "\u{0}", "💥", "\n", "x", "-", "shell", "function:f", "0"];
        (0..len).flat_map(|_| pool[self.below(pool.len())].bytes()).collect()
    }
}

/// A message of type `message`, mostly well formed: each entry is one of its
/// fields with a value of its type, or now and then an unknown field, a wrong
/// wire type, a packed list; the whole may be truncated or bit-flipped.
fn shaped(message: &MessageDescriptor, tape: &mut Tape<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    fields(message, tape, 0, &mut out);
    match tape.below(32) {
        0 if !out.is_empty() => out.truncate(tape.below(out.len())),
        1 if !out.is_empty() => {
            let at = tape.below(out.len());
            out[at] ^= 1 << tape.below(8);
        }
        2 => out.extend((0..tape.below(8)).map(|_| tape.byte())),
        _ => {}
    }
    out
}

fn fields(message: &MessageDescriptor, tape: &mut Tape<'_>, depth: usize, out: &mut Vec<u8>) {
    let all: Vec<FieldDescriptor> = message.fields().collect();
    for _ in 0..tape.below(7) {
        if tape.room == 0 {
            return;
        }
        match all.get(tape.below(all.len() + 1)) {
            Some(field) if field.is_list() || field.is_map() => {
                if field.is_packed() && tape.chance(96) {
                    packed(field, tape, out);
                } else {
                    for _ in 0..tape.repeats() {
                        value(field.number(), &field.kind(), tape, depth, out);
                    }
                }
            }
            Some(field) => value(field.number(), &field.kind(), tape, depth, out),
            None => unknown(tape, out),
        }
    }
}

/// One entry of field `number`; now and then with a wrong wire type.
fn value(number: u32, kind: &Kind, tape: &mut Tape<'_>, depth: usize, out: &mut Vec<u8>) {
    let before = out.len();
    if tape.chance(6) {
        unknown_with(number, tape, out);
    } else {
        match kind {
            Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => {
                encode_key(number, WireType::SixtyFourBit, out);
                out.extend(tape.number().to_le_bytes());
            }
            Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => {
                encode_key(number, WireType::ThirtyTwoBit, out);
                out.extend((tape.number() as u32).to_le_bytes());
            }
            Kind::String | Kind::Bytes => {
                encode_key(number, WireType::LengthDelimited, out);
                let text = tape.text();
                encode_varint(text.len() as u64, out);
                out.extend(text);
            }
            Kind::Message(inner) => {
                encode_key(number, WireType::LengthDelimited, out);
                let mut body = Vec::new();
                if depth < 8 {
                    fields(inner, tape, depth + 1, &mut body);
                }
                encode_varint(body.len() as u64, out);
                out.extend(body);
            }
            _ => {
                encode_key(number, WireType::Varint, out);
                encode_varint(tape.number(), out);
            }
        }
    }
    tape.room = tape.room.saturating_sub(out.len() - before);
}

/// A packed run of a repeated scalar field.
fn packed(field: &FieldDescriptor, tape: &mut Tape<'_>, out: &mut Vec<u8>) {
    let mut body = Vec::new();
    for _ in 0..tape.repeats() {
        match field.kind() {
            Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => body.extend(tape.number().to_le_bytes()),
            Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => body.extend((tape.number() as u32).to_le_bytes()),
            _ => encode_varint(tape.number(), &mut body),
        }
    }
    if tape.chance(16) && !body.is_empty() {
        body.pop(); // a run that ends inside a value
    }
    encode_key(field.number(), WireType::LengthDelimited, out);
    encode_varint(body.len() as u64, out);
    tape.room = tape.room.saturating_sub(body.len());
    out.extend(body);
}

/// A field the message does not have (or a known number with any wire type).
fn unknown(tape: &mut Tape<'_>, out: &mut Vec<u8>) {
    let number = match tape.below(4) {
        0 => 1 + tape.below(40) as u32,
        1 => 536_870_911, // the largest field number
        _ => 100 + tape.below(100_000) as u32,
    };
    unknown_with(number, tape, out);
}

fn unknown_with(number: u32, tape: &mut Tape<'_>, out: &mut Vec<u8>) {
    let before = out.len();
    match tape.below(6) {
        0 => {
            encode_key(number, WireType::Varint, out);
            encode_varint(tape.number(), out);
        }
        1 => {
            encode_key(number, WireType::SixtyFourBit, out);
            out.extend(tape.number().to_le_bytes());
        }
        2 => {
            encode_key(number, WireType::ThirtyTwoBit, out);
            out.extend((tape.number() as u32).to_le_bytes());
        }
        3 => {
            // A group: start, maybe an end (deprecated, still parsed).
            encode_key(number, WireType::StartGroup, out);
            if tape.chance(200) {
                encode_key(number, WireType::EndGroup, out);
            }
        }
        4 => {
            // A length that claims more than there is.
            encode_key(number, WireType::LengthDelimited, out);
            encode_varint(tape.number(), out);
        }
        _ => {
            encode_key(number, WireType::LengthDelimited, out);
            let text = tape.text();
            encode_varint(text.len() as u64, out);
            out.extend(text);
        }
    }
    tape.room = tape.room.saturating_sub(out.len() - before);
}

// ------------------------------------------------------------------ the properties

/// What decoding and converting one message may hold at its peak.
///
/// The densest input is a repeated message field of empty elements: 2 wire
/// bytes each (tag, length 0), each decoded into a struct of a few hundred
/// bytes, in a `Vec` that holds its old and new buffers while it grows. The
/// worst measured (`the_densest_messages_stay_within_the_budget`, which prints
/// it) is about 600 bytes per wire byte, for `SubmitWorkflowRequest.spec.nodes`.
/// 1 KiB per byte leaves room for the structs to grow; the base covers error
/// texts and small tables. A reader that sized a buffer from a decoded number
/// (a count, a length, a limit) would pass this line by orders of magnitude.
fn budget() -> Budget {
    Budget { per_byte: 1024, base: 64 * 1024 }
}

/// Reads `input(i)` with reader `i`, for every reader, each within the budget.
fn read_all(readers: &[Reader], input: impl Fn(usize) -> Vec<u8>) -> Result<Vec<Outcome>, TestCaseError> {
    let mut outcomes = Vec::with_capacity(readers.len());
    for (i, reader) in readers.iter().enumerate() {
        let bytes = input(i);
        outcomes.push(budget().check(reader.name, bytes.len(), || (reader.read)(&bytes))?);
    }
    Ok(outcomes)
}

#[test]
fn arbitrary_bytes_never_panic_a_reader_or_outgrow_the_budget() {
    let readers = all_readers();
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(any::<u8>(), 0..2048),
        // Keys of small fields and lengths, so some of it decodes.
        prop::collection::vec(
            prop::sample::select(vec![0x08, 0x0a, 0x10, 0x12, 0x1a, 0x22, 0x00, 0x01, 0x02, 0xff]),
            0..256
        ),
    ];
    Fuzz::new(TARGET, "arbitrary_bytes_never_panic", 1_000)
        .run(&bytes, |bytes| read_all(&readers, |_| bytes.clone()).map(drop));
}

#[test]
fn schema_shaped_messages_never_panic_a_reader_or_outgrow_the_budget() {
    let pool = descriptors();
    let readers = all_readers();
    let shapes: Vec<MessageDescriptor> =
        readers.iter().map(|r| pool.get_message_by_name(r.message).expect("in the descriptors")).collect();
    let seen = RefCell::new(vec![[0u32; 3]; readers.len()]);
    let fuzz = Fuzz::new(TARGET, "schema_shaped_messages_never_panic", 500);
    fuzz.run(&prop::collection::vec(any::<u8>(), 0..4096), |tape| {
        let outcomes = read_all(&readers, |i| shaped(&shapes[i], &mut Tape { bytes: &tape, room: 64 * 1024 }))?;
        for (counts, outcome) in seen.borrow_mut().iter_mut().zip(outcomes) {
            counts[outcome as usize] += 1;
        }
        Ok(())
    });
    // The generator reaches past the decoder: every reader got messages that
    // decode, and most got some that convert.
    let seen: BTreeMap<&str, [u32; 3]> = readers.iter().map(|r| r.name).zip(seen.into_inner()).collect();
    let undecoded: Vec<&str> =
        seen.iter().filter(|(_, [_, refused, accepted])| refused + accepted == 0).map(|(n, _)| *n).collect();
    assert!(undecoded.is_empty(), "no generated message decoded for {undecoded:?}");
    let accepted = seen.values().filter(|[_, _, accepted]| *accepted > 0).count();
    assert!(accepted * 4 >= seen.len() * 3, "few readers accepted a generated message: {seen:?}");
}

/// The densest inputs there are: every repeated field of every message (and of
/// the messages in its singular fields) filled with empty elements, 1 or 2 wire
/// bytes each, and packed runs of zeros. They set the budget's per-byte rate.
#[test]
fn the_densest_messages_stay_within_the_budget() {
    let pool = descriptors();
    let mut worst = (0u64, String::new());
    for reader in all_readers() {
        let message = pool.get_message_by_name(reader.message).expect("in the descriptors");
        for (path, bytes) in dense(&message, 2) {
            let (peak, outcome) = fuzz_harness::peak_bytes(|| (reader.read)(&bytes));
            assert_ne!(outcome.expect("no panic"), Outcome::Undecodable, "{}.{path}", reader.name);
            let rate = peak / bytes.len() as u64;
            if rate > worst.0 {
                worst = (rate, format!("{}.{path}", reader.name));
            }
            let limit = budget().limit(bytes.len());
            assert!(peak <= limit, "{}.{path}: {} bytes held {peak}, over {limit}", reader.name, bytes.len());
        }
    }
    eprintln!("densest input: {} bytes held per wire byte, by {}", worst.0, worst.1);
}

/// For each repeated field reachable through singular message fields (up to
/// `depth` levels), its path and a message holding 4,096 empty elements of it.
fn dense(message: &MessageDescriptor, depth: usize) -> Vec<(String, Vec<u8>)> {
    const ELEMENTS: usize = 4096;
    let mut out = Vec::new();
    for field in message.fields() {
        let number = field.number();
        if field.is_list() || field.is_map() {
            let mut bytes = Vec::new();
            match field.kind() {
                Kind::Message(_) | Kind::String | Kind::Bytes => {
                    for _ in 0..ELEMENTS {
                        encode_key(number, WireType::LengthDelimited, &mut bytes);
                        encode_varint(0, &mut bytes);
                    }
                }
                _ if field.is_packed() => {
                    encode_key(number, WireType::LengthDelimited, &mut bytes);
                    encode_varint(ELEMENTS as u64, &mut bytes);
                    bytes.resize(bytes.len() + ELEMENTS, 0);
                }
                _ => {}
            }
            if !bytes.is_empty() {
                out.push((field.name().to_owned(), bytes));
            }
        } else if let Kind::Message(inner) = field.kind()
            && depth > 1
        {
            for (path, body) in dense(&inner, depth - 1) {
                let mut bytes = Vec::new();
                encode_key(number, WireType::LengthDelimited, &mut bytes);
                encode_varint(body.len() as u64, &mut bytes);
                bytes.extend(body);
                out.push((format!("{}.{path}", field.name()), bytes));
            }
        }
    }
    out
}
