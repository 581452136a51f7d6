//! Tests of the segment indexes as the log drives them: the active indexes grow by one entry per
//! indexed append (never preallocated), a crash that leaves a short or torn active index is
//! repaired on open, and a full index rolls the segment without any file passing the limit.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use super::tests::{batch, batch_offsets, small_config};
use super::*;
use crate::segment::file_name::path_for;

/// Every batch gets an index entry except each segment's first (`index_interval_bytes` 0).
fn index_every_batch() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 0,
        ..small_config()
    }
}

fn ts(offset: i64) -> i64 {
    1000 + offset * 10
}

fn file_len(dir: &Path, base: i64, suffix: &str) -> u64 {
    std::fs::metadata(path_for(dir, base, suffix))
        .unwrap()
        .len()
}

/// Appends one-record batches with increasing timestamps until the log end is `end`.
fn append_until(log: &mut Log, end: i64) {
    while log.log_end_offset() < end {
        let offset = log.log_end_offset();
        log.append(&batch(1, ts(offset)), 0, 0).unwrap();
    }
}

/// Every offset reads back its own batch and every timestamp finds its offset (both go through
/// the indexes).
fn check_lookups(log: &Log, end: i64) {
    assert_eq!(log.log_end_offset(), end);
    for offset in 0..end {
        let r = log.read(offset, i64::MAX, 1, true).unwrap();
        assert_eq!(
            batch_offsets(&r.records),
            vec![(offset, offset)],
            "{offset}"
        );
        assert_eq!(
            log.offset_for_timestamp(ts(offset)).unwrap(),
            Some(TimestampOffset {
                offset,
                timestamp: ts(offset)
            })
        );
        assert_eq!(
            log.offset_for_timestamp(ts(offset) - 5).unwrap(),
            Some(TimestampOffset {
                offset,
                timestamp: ts(offset)
            })
        );
    }
}

#[test]
fn active_indexes_grow_one_entry_per_indexed_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), index_every_batch(), 0).unwrap();
    assert_eq!(file_len(dir.path(), 0, "index"), 0, "not preallocated");
    assert_eq!(file_len(dir.path(), 0, "timeindex"), 0, "not preallocated");
    for end in 1..=20 {
        append_until(&mut log, end);
        let entries = (end - 1) as u64; // the first batch of a segment is never indexed
        assert_eq!(file_len(dir.path(), 0, "index"), 8 * entries);
        assert_eq!(file_len(dir.path(), 0, "timeindex"), 12 * entries);
    }
    check_lookups(&log, 20);
    // What is on disk is what lookups used: entry k is batch k + 1 at its file position.
    let bytes = log.read(0, i64::MAX, usize::MAX, false).unwrap().records;
    let batch_bytes = (bytes.len() / 20) as u32;
    let index = std::fs::read(path_for(dir.path(), 0, "index")).unwrap();
    for (k, entry) in index.chunks(8).enumerate() {
        let k = k as u32 + 1;
        assert_eq!(entry[..4], k.to_be_bytes());
        assert_eq!(entry[4..], (k * batch_bytes).to_be_bytes());
    }
    log.close().unwrap();
    // Clean reopen: the entries are kept and appends go on growing the same files.
    let mut log = Log::open(dir.path(), index_every_batch(), 0).unwrap();
    append_until(&mut log, 25);
    assert_eq!(file_len(dir.path(), 0, "index"), 8 * 24);
    assert_eq!(file_len(dir.path(), 0, "timeindex"), 12 * 24);
    check_lookups(&log, 25);
}

#[test]
fn crash_with_a_short_active_index_rebuilds_it() {
    // Entries are written after their batch: a crash in between leaves the index behind the
    // log, and a crash inside an entry's write leaves a torn entry. The last case is an active
    // index of an earlier build, preallocated to `segment_index_bytes` with zeros.
    let cuts: [(u64, u64); 5] = [
        (0, 0),
        (8 * 5 + 3, 12 * 2),
        (8 * 19 - 1, 12 * 19 - 7),
        (4, 11),
        (4096, 4092),
    ];
    let template = tempfile::tempdir().unwrap();
    let mut log = Log::open(template.path(), index_every_batch(), 0).unwrap();
    append_until(&mut log, 20);
    drop(log); // no close: no clean-shutdown marker
    let full_index = std::fs::read(path_for(template.path(), 0, "index")).unwrap();
    let full_time_index = std::fs::read(path_for(template.path(), 0, "timeindex")).unwrap();
    assert_eq!((full_index.len(), full_time_index.len()), (8 * 19, 12 * 19));
    for (index_len, time_index_len) in cuts {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), index_every_batch(), 0).unwrap();
        append_until(&mut log, 20);
        drop(log);
        for (suffix, len) in [("index", index_len), ("timeindex", time_index_len)] {
            // Cut, or extended with zeros.
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path_for(dir.path(), 0, suffix))
                .unwrap();
            file.set_len(len).unwrap();
        }
        let mut log = Log::open(dir.path(), index_every_batch(), 0).unwrap();
        assert_eq!(
            std::fs::read(path_for(dir.path(), 0, "index")).unwrap(),
            full_index
        );
        assert_eq!(
            std::fs::read(path_for(dir.path(), 0, "timeindex")).unwrap(),
            full_time_index
        );
        check_lookups(&log, 20);
        append_until(&mut log, 22);
        assert_eq!(file_len(dir.path(), 0, "index"), 8 * 21);
        check_lookups(&log, 22);
    }
}

#[test]
fn clean_open_with_a_short_active_index_keeps_it_and_extends_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), index_every_batch(), 0).unwrap();
    append_until(&mut log, 20);
    log.close().unwrap();
    // A sane prefix of the entries: lookups scan further, nothing is lost.
    for (suffix, len) in [("index", 8 * 5), ("timeindex", 12 * 5)] {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path_for(dir.path(), 0, suffix))
            .unwrap();
        file.set_len(len).unwrap();
    }
    let mut log = Log::open(dir.path(), index_every_batch(), 0).unwrap();
    check_lookups(&log, 20);
    append_until(&mut log, 25);
    assert_eq!(file_len(dir.path(), 0, "index"), 8 * 10);
    assert_eq!(file_len(dir.path(), 0, "timeindex"), 12 * 10);
    check_lookups(&log, 25);
}

#[test]
fn full_index_rolls_and_no_index_file_passes_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_index_bytes: 24, // 3 offset-index entries, 2 time-index entries
        ..index_every_batch()
    };
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    for end in 1..=12 {
        append_until(&mut log, end);
        for segment in log.segments() {
            for suffix in ["index", "timeindex"] {
                assert!(file_len(dir.path(), segment.base_offset(), suffix) <= 24);
            }
        }
    }
    // The time index fills first: 2 entries, so 3 batches per segment.
    let bases: Vec<i64> = log.segments().map(Segment::base_offset).collect();
    assert_eq!(bases, [0, 3, 6, 9]);
    for base in &bases[..3] {
        assert_eq!(file_len(dir.path(), *base, "index"), 16, "sealed, trimmed");
        assert_eq!(file_len(dir.path(), *base, "timeindex"), 24);
    }
    check_lookups(&log, 12);
    log.close().unwrap();
    let log = Log::open(dir.path(), config.clone(), 0).unwrap();
    check_lookups(&log, 12);
    drop(log); // crash: the active segment is rebuilt, within the limit again
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    check_lookups(&log, 12);
    append_until(&mut log, 14);
    assert_eq!(log.segment_count(), 5);
    check_lookups(&log, 14);
}
