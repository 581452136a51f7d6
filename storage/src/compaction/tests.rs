//! Tests of `Log::compact`: latest value per key at its offset, tombstones and their horizon,
//! the active segment, idempotent producers, compression, dirty ratio and compaction lag, and a
//! crash at every step of the swap.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use super::*;
use crate::batch::builder::BatchBuilder;
use crate::batch::compression::{decompress, Compression};
use crate::batch::header::BatchHeader;
use crate::batch::records::RecordIter;
use crate::config::LogConfig;

pub(crate) type Record = (i64, Vec<u8>, Option<Vec<u8>>);

pub(crate) fn compact_config() -> LogConfig {
    LogConfig {
        segment_bytes: 300,
        index_interval_bytes: 100,
        segment_index_bytes: 4096,
        retention_ms: -1,
        compact: true,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: 1000,
        ..LogConfig::default()
    }
}

/// Every record of the log from its start: (offset, key, value); checks CRCs and that offsets
/// increase.
pub(crate) fn all_records(log: &Log) -> Vec<Record> {
    records_from(log, log.log_start_offset())
}

/// `all_records` from the batch holding `offset` on.
fn records_from(log: &Log, offset: i64) -> Vec<Record> {
    let bytes = log
        .read(offset, i64::MAX, usize::MAX, false)
        .unwrap()
        .records;
    let mut out: Vec<Record> = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let h = BatchHeader::parse(&bytes[pos..]).unwrap();
        h.verify_crc().unwrap();
        let data = decompress(
            h.compression().unwrap(),
            h.records_bytes().unwrap(),
            1 << 24,
        )
        .unwrap();
        for r in RecordIter::new(&data, h.records_count()) {
            let r = r.unwrap();
            let offset = h.base_offset() + i64::from(r.offset_delta);
            assert!(offset <= h.last_offset());
            if let Some(last) = out.last() {
                assert!(offset > last.0, "offsets increase");
            }
            out.push((
                offset,
                r.key.unwrap_or_default().to_vec(),
                r.value.map(<[u8]>::to_vec),
            ));
        }
        pos += h.total_size();
    }
    out
}

fn keyed(key: &str, value: Option<&str>, ts: i64) -> Vec<u8> {
    BatchBuilder::new()
        .record(Some(key.as_bytes()), value.map(str::as_bytes), ts)
        .build()
        .unwrap()
}

fn append_all(log: &mut Log, entries: &[(&str, Option<&str>)], ts: i64) {
    for (key, value) in entries {
        log.append(&keyed(key, *value, ts), 0, ts).unwrap();
    }
}

fn rec(offset: i64, key: &str, value: Option<&str>) -> Record {
    (
        offset,
        key.as_bytes().to_vec(),
        value.map(|v| v.as_bytes().to_vec()),
    )
}

/// a..e written three times over, then a tombstone for `b`; the log has several segments.
fn overwritten_log(dir: &Path) -> Log {
    let mut log = Log::open(dir, compact_config(), 0).unwrap();
    for round in 0..3 {
        for key in ["a", "b", "c", "d", "e"] {
            let value = format!("{key}{round}");
            append_all(&mut log, &[(key, Some(value.as_str()))], 10);
        }
    }
    append_all(&mut log, &[("b", None)], 10);
    log.roll().unwrap();
    append_all(&mut log, &[("a", Some("active"))], 10);
    assert!(log.segment_count() > 3);
    // Cleaned groups may now merge all sealed segments into one.
    log.set_config(LogConfig {
        segment_bytes: 100_000,
        ..compact_config()
    });
    log
}

fn expected_after_one_cleaning() -> Vec<Record> {
    vec![
        rec(10, "a", Some("a2")),
        rec(12, "c", Some("c2")),
        rec(13, "d", Some("d2")),
        rec(14, "e", Some("e2")),
        rec(15, "b", None),
        rec(16, "a", Some("active")),
    ]
}

#[test]
fn keeps_the_last_value_per_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = overwritten_log(dir.path());
    let active_base = log.active.base_offset();
    let outcome = log.compact(100).unwrap().unwrap();
    assert!(outcome.bytes_after < outcome.bytes_before);
    assert!(outcome.segments_before > 2);
    assert_eq!((outcome.segments_after, log.segment_count()), (1, 2));
    assert_eq!(outcome.first_dirty_offset, active_base);
    assert_eq!(all_records(&log), expected_after_one_cleaning());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 17));
    // Reads from an offset inside a removed range start at the next kept batch.
    let read = log.read(3, i64::MAX, usize::MAX, false).unwrap();
    assert_eq!(read.first_offset, Some(10));
    let read = log.read(11, i64::MAX, usize::MAX, false).unwrap();
    assert_eq!(read.first_offset, Some(12));
    // Nothing more to do until new data arrives.
    assert_eq!(log.compact(200).unwrap(), None);
    // The result survives a clean and an unclean reopen.
    log.close().unwrap();
    let log = Log::open(dir.path(), compact_config(), 300).unwrap();
    assert_eq!(all_records(&log), expected_after_one_cleaning());
    drop(log);
    let log = Log::open(dir.path(), compact_config(), 300).unwrap();
    assert_eq!(all_records(&log), expected_after_one_cleaning());
}

#[test]
fn never_touches_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config(), 0).unwrap();
    append_all(
        &mut log,
        &[("k", Some("1")), ("k", Some("2")), ("k", Some("3"))],
        10,
    );
    assert_eq!(log.segment_count(), 1);
    let before = std::fs::read(crate::segment::file_name::path_for(dir.path(), 0, "log")).unwrap();
    assert_eq!(log.compact(100).unwrap(), None);
    assert_eq!(
        std::fs::read(crate::segment::file_name::path_for(dir.path(), 0, "log")).unwrap(),
        before
    );
    assert_eq!(all_records(&log).len(), 3);
}

#[test]
fn tombstones_go_delete_retention_after_the_cleaning_that_kept_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = overwritten_log(dir.path());
    log.compact(100).unwrap().unwrap();
    assert!(all_records(&log).contains(&rec(15, "b", None)));
    // delete.retention.ms is 1000: the tombstone's horizon is 1100.
    assert_eq!(log.compact(1099).unwrap(), None);
    assert!(all_records(&log).contains(&rec(15, "b", None)));
    // Past the horizon the log is cleaned even though nothing is dirty.
    log.compact(1100).unwrap().unwrap();
    let records = all_records(&log);
    assert!(!records.iter().any(|r| r.1 == b"b"), "{records:?}");
    assert_eq!(records.len(), 5);
    // The horizon survives a reopen (it is stored in the batch and the checkpoint).
    drop(log);
    let mut log = Log::open(dir.path(), compact_config(), 1200).unwrap();
    assert_eq!(log.compact(5000).unwrap(), None);
}

#[test]
fn dirty_ratio_and_compaction_lag_gate_the_cleaning() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = overwritten_log(dir.path());
    assert!((log.dirty_ratio(100) - 1.0).abs() < 1e-9);
    let strict = LogConfig {
        min_cleanable_dirty_ratio: 1.0,
        min_compaction_lag_ms: 1000,
        ..compact_config()
    };
    log.set_config(strict.clone());
    // Every record has timestamp 10: too young before 1010.
    assert_eq!(log.compact(500).unwrap(), None);
    log.compact(1011).unwrap().unwrap();
    assert_eq!(log.dirty_ratio(1011), 0.0);
    // A little new dirt is not enough for a high ratio.
    let before = all_records(&log);
    append_all(&mut log, &[("z", Some("1"))], 10);
    log.roll().unwrap();
    log.set_config(LogConfig {
        min_cleanable_dirty_ratio: 0.9,
        ..strict
    });
    assert!(log.dirty_ratio(2000) < 0.9);
    assert_eq!(log.compact(2000).unwrap(), None);
    assert_eq!(all_records(&log).len(), before.len() + 1);
    // Compaction off: nothing happens whatever the ratio.
    log.set_config(LogConfig {
        compact: false,
        ..compact_config()
    });
    assert_eq!(log.compact(2000).unwrap(), None);
}

#[test]
fn compressed_batches_keep_their_codec_and_offsets() {
    for codec in Compression::ALL {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), compact_config(), 0).unwrap();
        let batch = BatchBuilder::new()
            .compression(codec)
            .record(Some(b"x"), Some(b"1"), 5)
            .record(Some(b"y"), Some(b"1"), 6)
            .record(Some(b"x"), Some(b"2"), 7)
            .build()
            .unwrap();
        log.append(&batch, 0, 10).unwrap();
        log.roll().unwrap();
        append_all(&mut log, &[("y", Some("2"))], 10);
        log.roll().unwrap();
        log.compact(100).unwrap().unwrap();
        assert_eq!(
            all_records(&log),
            vec![rec(2, "x", Some("2")), rec(3, "y", Some("2"))]
        );
        let bytes = log.read(0, i64::MAX, usize::MAX, false).unwrap().records;
        let h = BatchHeader::parse(&bytes).unwrap();
        assert_eq!(h.compression().unwrap(), codec);
        assert_eq!(
            (h.base_offset(), h.last_offset(), h.records_count()),
            (0, 2, 1)
        );
    }
}

#[test]
fn idempotent_producers_keep_their_last_batch_and_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config(), 0).unwrap();
    for seq in 0..3 {
        let batch = BatchBuilder::new()
            .producer(7, 0, seq)
            .record(Some(b"k"), Some(format!("{seq}").as_bytes()), 10)
            .build()
            .unwrap();
        log.append(&batch, 0, 10).unwrap();
        log.roll().unwrap();
    }
    // A later non-idempotent write supersedes the producer's last record.
    append_all(&mut log, &[("k", Some("final"))], 10);
    log.roll().unwrap();
    log.compact(100).unwrap().unwrap();
    assert_eq!(all_records(&log), vec![rec(3, "k", Some("final"))]);
    let bytes = log.read(0, i64::MAX, usize::MAX, false).unwrap().records;
    let h = BatchHeader::parse(&bytes).unwrap();
    assert_eq!(
        (h.base_offset(), h.records_count(), h.producer_id()),
        (2, 0, 7)
    );
    // The producer's next sequence is still accepted after a reopen.
    drop(log);
    let mut log = Log::open(dir.path(), compact_config(), 200).unwrap();
    assert_eq!(log.producer_state(7).unwrap().last_sequence, 2);
    let next = BatchBuilder::new()
        .producer(7, 0, 3)
        .record(Some(b"k"), Some(b"3"), 10)
        .build()
        .unwrap();
    log.append(&next, 0, 300).unwrap();
}

#[test]
fn follower_accepts_the_gaps_of_a_compacted_leader() {
    let dir = tempfile::tempdir().unwrap();
    let mut leader = overwritten_log(&dir.path().join("leader"));
    leader.compact(100).unwrap().unwrap();
    let bytes = leader.read(0, i64::MAX, usize::MAX, false).unwrap().records;
    let mut follower = Log::open(&dir.path().join("follower"), compact_config(), 0).unwrap();
    follower.append_as_follower(&bytes).unwrap();
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(all_records(&follower), all_records(&leader));
    drop(follower);
    let follower = Log::open(&dir.path().join("follower"), compact_config(), 0).unwrap();
    assert_eq!(all_records(&follower), expected_after_one_cleaning());
}

#[test]
fn survives_a_crash_at_every_step_of_the_swap() {
    let original = {
        let dir = tempfile::tempdir().unwrap();
        all_records(&overwritten_log(dir.path()))
    };
    for (point, completed) in [
        (CrashPoint::Cleaned, false),
        (CrashPoint::Committed, true),
        (CrashPoint::OthersDeleted, true),
        (CrashPoint::Installed, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = overwritten_log(dir.path());
        assert!(log.compact_until(100, Some(point)).is_err());
        drop(log);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let swap_left = names.iter().any(|n| n.ends_with(".swap"));
        let cleaned_left = names.iter().any(|n| n.ends_with(".cleaned"));
        assert_eq!(
            (cleaned_left, swap_left),
            (
                point == CrashPoint::Cleaned,
                matches!(point, CrashPoint::Committed | CrashPoint::OthersDeleted)
            ),
            "{point:?}: {names:?}"
        );
        let mut log = Log::open(dir.path(), compact_config(), 100).unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names
            .iter()
            .any(|n| n.ends_with(".swap") || n.ends_with(".cleaned")));
        let records = all_records(&log);
        if completed {
            assert_eq!(records, expected_after_one_cleaning(), "{point:?}");
        } else {
            assert_eq!(records, original, "{point:?}");
        }
        // Cleaning again finishes the job and changes nothing kept.
        log.compact(100).unwrap();
        assert_eq!(
            all_records(&log),
            expected_after_one_cleaning(),
            "{point:?}"
        );
        log.append(&keyed("new", Some("v"), 10), 0, 100).unwrap();
        assert_eq!(log.log_end_offset(), 18);
    }
}

#[test]
fn a_swap_file_left_alone_replaces_the_segments_it_covers() {
    // Hand-made state: two old segments and a swap covering both, the second already deleted
    // or not.
    for delete_second in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), compact_config(), 0).unwrap();
        append_all(&mut log, &[("a", Some("1")), ("b", Some("1"))], 10);
        log.roll().unwrap();
        let second = log.active.base_offset();
        append_all(&mut log, &[("a", Some("2"))], 10);
        log.roll().unwrap();
        append_all(&mut log, &[("c", Some("1"))], 10);
        drop(log);
        let mut swap = keyed("b", Some("1"), 10);
        crate::batch::header::set_base_offset(&mut swap, 1).unwrap();
        let mut tail = keyed("a", Some("2"), 10);
        crate::batch::header::set_base_offset(&mut tail, 2).unwrap();
        swap.extend(tail);
        let swap_path = crate::segment::file_name::path_for(dir.path(), 0, "log.swap");
        std::fs::write(&swap_path, &swap).unwrap();
        if delete_second {
            swap::remove_segment_files(dir.path(), second).unwrap();
        }
        let log = Log::open(dir.path(), compact_config(), 0).unwrap();
        assert_eq!(
            all_records(&log),
            vec![
                rec(1, "b", Some("1")),
                rec(2, "a", Some("2")),
                rec(3, "c", Some("1"))
            ]
        );
        assert_eq!(log.segment_count(), 2);
    }
}

/// Flips a byte inside the records of the batch holding `offset` (the CRC no longer matches);
/// returns the batch's segment base and position.
fn damage_batch(log: &Log, offset: i64) -> (i64, u64) {
    use std::os::unix::fs::FileExt;
    let segment = log
        .segments()
        .find(|s| s.base_offset() <= offset && offset < s.next_offset())
        .unwrap();
    let info = segment.find_batch(offset).unwrap().unwrap();
    let at = info.position + info.total_size - 2;
    let file = segment.log_file();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0x20], at).unwrap();
    (segment.base_offset(), info.position)
}

/// Every file of `dir` by name, with its bytes.
fn dir_files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_batch_failing_its_crc_stops_the_cleaning_and_leaves_the_segments_alone() {
    // Damaged in the dirty section (the offset map reads it first), or in the clean section
    // (only the cleaning of its group reads it): "c2" at 12 is a record the cleaning keeps.
    for damaged_after_a_first_cleaning in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = overwritten_log(dir.path());
        if damaged_after_a_first_cleaning {
            log.compact(100).unwrap().unwrap();
            append_all(&mut log, &[("d", Some("d3")), ("e", Some("e3"))], 10);
            log.roll().unwrap();
            append_all(&mut log, &[("a", Some("active"))], 10);
        }
        let (base, position) = damage_batch(&log, 12);
        let files = dir_files(dir.path());
        let bytes = log.read(0, i64::MAX, usize::MAX, false).unwrap().records;
        match log.compact(200) {
            Err(StorageError::CorruptSegment {
                path, position: at, ..
            }) => {
                assert_eq!(at, position);
                assert!(path.ends_with(&format!("{base:020}.log")), "{path}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            dir_files(dir.path()),
            files,
            "no file changed, none left behind"
        );
        assert_eq!(
            log.read(0, i64::MAX, usize::MAX, false).unwrap().records,
            bytes
        );
        // The same holds after a reopen: nothing was cut at the damaged batch.
        let end = log.log_end_offset();
        drop(log);
        let log = Log::open(dir.path(), compact_config(), 300).unwrap();
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(
            log.read(0, i64::MAX, usize::MAX, false).unwrap().records,
            bytes
        );
    }
}

#[test]
fn a_cleaned_segment_is_indexed_without_cutting_it_at_a_bad_batch() {
    // A swap committed before a crash whose first batch ("a2" at 10) no longer matches its CRC:
    // installing it on open keeps every batch after it.
    let dir = tempfile::tempdir().unwrap();
    let mut log = overwritten_log(dir.path());
    assert!(log.compact_until(100, Some(CrashPoint::Committed)).is_err());
    drop(log);
    let swap_path = crate::segment::file_name::path_for(dir.path(), 0, "log.swap");
    let mut swap = std::fs::read(&swap_path).unwrap();
    let first = BatchHeader::parse(&swap).unwrap().total_size();
    swap[first - 2] ^= 0x20;
    std::fs::write(&swap_path, &swap).unwrap();
    let log = Log::open(dir.path(), compact_config(), 100).unwrap();
    assert_eq!(log.log_end_offset(), 17);
    assert_eq!(
        records_from(&log, 11),
        expected_after_one_cleaning()[1..].to_vec()
    );
}
