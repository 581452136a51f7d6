//! Tests of how much a batch-header scan reads: a scan of large batches reads a page for the
//! first header and then each next header alone, one of small batches reads ahead in 64 KiB.

#![allow(clippy::unwrap_used)]

use super::tests::batch;
use super::*;
use crate::batch::builder::BatchBuilder;
use crate::batch::header::HEADER_BYTES;
use crate::segment::segment::{SCAN_CHUNK_BYTES, SCAN_FIRST_READ_BYTES};

/// One batch of `records` records of `value_bytes` each.
fn large_batch(records: usize, value_bytes: usize) -> Vec<u8> {
    let value = vec![7u8; value_bytes];
    let mut builder = BatchBuilder::new();
    for i in 0..records {
        builder = builder.record(None, Some(&value), i as i64);
    }
    builder.build().unwrap()
}

#[test]
fn a_scan_of_large_batches_reads_their_headers_not_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    for _ in 0..4 {
        log.append(&large_batch(10, 30_000), 0, 0).unwrap();
    }
    let segment = log.segments().next().unwrap();
    let mut scan = segment.scan(0);
    assert_eq!(
        scan.by_ref().collect::<Result<Vec<_>, _>>().unwrap().len(),
        4
    );
    let (reads, bytes) = scan.reads();
    assert_eq!(reads, 4, "one read per header");
    assert_eq!(
        bytes,
        (SCAN_FIRST_READ_BYTES + 3 * HEADER_BYTES) as u64,
        "a page for the first header, then each next header alone"
    );
}

#[test]
fn a_scan_of_small_batches_reads_many_headers_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    for i in 0..300 {
        log.append(&batch(3, i), 0, 0).unwrap();
    }
    let size = log.size_bytes();
    assert!(size > SCAN_FIRST_READ_BYTES as u64 && size < SCAN_CHUNK_BYTES as u64);
    let segment = log.segments().next().unwrap();
    let mut scan = segment.scan(0);
    assert_eq!(
        scan.by_ref().collect::<Result<Vec<_>, _>>().unwrap().len(),
        300
    );
    let (reads, bytes) = scan.reads();
    assert!(reads <= 3, "{reads} reads for 300 small batches");
    assert!(
        bytes <= size + SCAN_FIRST_READ_BYTES as u64,
        "{bytes} bytes read"
    );
}
