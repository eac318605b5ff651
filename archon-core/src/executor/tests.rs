use bytes::Bytes;

use super::*;
use crate::model::{ExitStatus, OutputStream};

#[tokio::test]
async fn output_keeps_only_the_tail_and_counts_what_it_dropped() {
    let mut w = OutputWriter::detached(10);
    for _ in 0..1000 {
        w.write(OutputStream::Stdout, Bytes::from_static(b"0123456789abcdef")).await;
    }
    w.write(OutputStream::Stderr, Bytes::from_static(b"err")).await;
    let r = w.finish(ExitStatus::Exited { code: 0 });
    assert_eq!(r.stdout.data.len(), 10);
    assert_eq!(&r.stdout.data[..], b"6789abcdef");
    assert_eq!(r.stdout.truncated, 16_000 - 10);
    assert_eq!(&r.stderr.data[..], b"err");
    assert_eq!(r.stderr.truncated, 0);
}

/// Collects live chunks.
#[derive(Default)]
struct Collect(std::sync::Mutex<Vec<u8>>);

#[async_trait::async_trait]
impl OutputSink for Collect {
    async fn send(&self, chunk: crate::model::OutputChunk) {
        self.0.lock().unwrap().extend_from_slice(&chunk.data);
    }
}

#[tokio::test]
async fn a_masking_writer_prints_stars_for_secret_values_live_and_in_the_tail() {
    let live = std::sync::Arc::new(Collect::default());
    let secrets = [crate::model::Secret::new("hunter2-pw"), crate::model::Secret::new("abc")];
    let mut w = OutputWriter::new(crate::model::RunId(1), crate::model::AttemptId(1), 1 << 20, Some(live.clone()))
        .masking(&secrets);
    w.write(OutputStream::Stdout, Bytes::from_static(b"token=hunter2-pw abc\nsplit=hunt")).await;
    w.write(OutputStream::Stdout, Bytes::from_static(b"er2-pw\nlast hunter")).await;
    w.write(OutputStream::Stderr, Bytes::from_static(b"err hunter2-pw\n")).await;
    let r = w.finish(ExitStatus::Exited { code: 0 });
    assert_eq!(r.stdout.text(), "token=*** abc\nsplit=***\nlast hunter", "a value of 3 bytes is not masked");
    assert_eq!(r.stderr.text(), "err ***\n");
    let live = String::from_utf8(live.0.lock().unwrap().clone()).unwrap();
    assert!(!live.contains("hunter2-pw"), "{live}");
    assert!(live.contains("token=*** abc\nsplit=***\n") && live.contains("err ***\n"), "{live}");
}
