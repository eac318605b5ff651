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
