//! Tests of `Log`: append/read, timestamps, idempotence, retention, truncation.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::batch::builder::BatchBuilder;
use crate::batch::compression::Compression;
use crate::batch::header::{BatchHeader, ATTRIBUTES_AT};

pub(crate) fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 100,
        segment_index_bytes: 4096,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

/// `records` records with values `v<i>`, timestamps `ts, ts+1, ...`.
pub(crate) fn batch(records: usize, ts: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    for i in 0..records {
        builder = builder.record(
            Some(b"key"),
            Some(format!("v{i}").as_bytes()),
            ts + i as i64,
        );
    }
    builder.build().unwrap()
}

pub(crate) fn idempotent(producer_id: i64, epoch: i16, seq: i32, records: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new().producer(producer_id, epoch, seq);
    for i in 0..records {
        builder = builder.record(None, Some(b"x"), 1000 + i as i64);
    }
    builder.build().unwrap()
}

/// (base offset, last offset) of each batch in `bytes`, checking CRCs.
pub(crate) fn batch_offsets(bytes: &[u8]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let h = BatchHeader::parse(&bytes[pos..]).unwrap();
        h.verify_crc().unwrap();
        out.push((h.base_offset(), h.last_offset()));
        pos += h.total_size();
    }
    out
}

/// Deletes every producer snapshot of the log in `dir`.
fn remove_snapshots(dir: &Path) {
    for o in snapshot::list(dir).unwrap() {
        std::fs::remove_file(crate::segment::file_name::path_for(dir, o, "snapshot")).unwrap();
    }
}

fn appended(outcome: AppendOutcome) -> (i64, i64) {
    match outcome {
        AppendOutcome::Appended {
            base_offset,
            last_offset,
            ..
        } => (base_offset, last_offset),
        other => panic!("expected Appended, got {other:?}"),
    }
}

#[test]
fn append_and_read_round_trip_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    for i in 0..30 {
        let (base, last) = appended(log.append(&batch(3, i * 10), 7, 0).unwrap());
        assert_eq!((base, last), (i * 3, i * 3 + 2));
    }
    assert_eq!(log.log_end_offset(), 90);
    assert!(log.segment_count() > 3, "{} segments", log.segment_count());
    let all = log.read(0, i64::MAX, usize::MAX, false).unwrap();
    let offsets = batch_offsets(&all.records);
    assert_eq!(offsets.len(), 30);
    assert_eq!(
        offsets,
        (0..30).map(|i| (i * 3, i * 3 + 2)).collect::<Vec<_>>()
    );
    assert_eq!((all.first_offset, all.last_offset), (Some(0), Some(89)));
    assert_eq!(all.records.len() as u64, log.size_bytes());
    let h = BatchHeader::parse(&all.records).unwrap();
    assert_eq!(h.partition_leader_epoch(), 7);
    for offset in 0..90 {
        let r = log.read(offset, i64::MAX, 1, true).unwrap();
        assert_eq!(
            batch_offsets(&r.records),
            vec![(offset / 3 * 3, offset / 3 * 3 + 2)]
        );
    }
    // Survives a clean reopen.
    log.close().unwrap();
    let log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 90);
    assert_eq!(log.read(0, i64::MAX, usize::MAX, false).unwrap(), all);
}

#[test]
fn read_limits_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    for i in 0..10 {
        log.append(&batch(2, i), 0, 0).unwrap();
    }
    let one = batch(2, 0).len();
    // max_offset is an exclusive bound on batch base offsets.
    let r = log.read(0, 6, usize::MAX, false).unwrap();
    assert_eq!(batch_offsets(&r.records), vec![(0, 1), (2, 3), (4, 5)]);
    let r = log.read(3, 5, usize::MAX, false).unwrap();
    assert_eq!(batch_offsets(&r.records), vec![(2, 3), (4, 5)]);
    assert!(log
        .read(4, 4, usize::MAX, false)
        .unwrap()
        .records
        .is_empty());
    // A start at or past max_offset gets nothing, even from the batch that straddles it.
    for start in [5, 6] {
        assert!(log
            .read(start, 5, usize::MAX, true)
            .unwrap()
            .records
            .is_empty());
        assert!(log
            .read_region(start, 5, usize::MAX, true)
            .unwrap()
            .records
            .is_empty());
    }
    // max_bytes.
    let r = log.read(0, i64::MAX, one * 2 + one / 2, false).unwrap();
    assert_eq!(batch_offsets(&r.records).len(), 2);
    assert!(log
        .read(0, i64::MAX, one - 1, false)
        .unwrap()
        .records
        .is_empty());
    // min_one_batch returns one batch even when it is larger than max_bytes.
    let r = log.read(0, i64::MAX, 1, true).unwrap();
    assert_eq!(batch_offsets(&r.records), vec![(0, 1)]);
    let r = log.read(0, i64::MAX, 0, true).unwrap();
    assert_eq!(r.records.len(), one);
    // Ranges.
    assert!(log
        .read(20, i64::MAX, 100, true)
        .unwrap()
        .records
        .is_empty());
    assert!(matches!(
        log.read(21, i64::MAX, 100, true),
        Err(StorageError::OffsetOutOfRange {
            offset: 21,
            log_start: 0,
            log_end: 20
        })
    ));
    assert!(matches!(
        log.read(-1, i64::MAX, 100, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    log.advance_log_start_offset(7).unwrap();
    assert_eq!(log.log_start_offset(), 7);
    assert!(matches!(
        log.read(6, i64::MAX, 100, true),
        Err(StorageError::OffsetOutOfRange { log_start: 7, .. })
    ));
    let r = log.read(7, i64::MAX, 1, true).unwrap();
    assert_eq!(batch_offsets(&r.records), vec![(6, 7)]);
    assert!(matches!(
        log.advance_log_start_offset(21),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn invalid_batches_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    log.append(&batch(1, 0), 0, 0).unwrap();
    let size = log.size_bytes();
    let mut bad_crc = batch(2, 0);
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 1;
    assert!(matches!(
        log.append(&bad_crc, 0, 0),
        Err(StorageError::CorruptBatch(_))
    ));
    let mut two = batch(1, 0);
    two.extend_from_slice(&batch(1, 0));
    assert!(matches!(
        log.append(&two, 0, 0),
        Err(StorageError::InvalidRecord(_))
    ));
    assert!(matches!(
        log.append(&[], 0, 0),
        Err(StorageError::InvalidRecord(_))
    ));
    let mut config = small_config();
    config.max_message_bytes = 70;
    log.set_config(config);
    assert!(matches!(
        log.append(&batch(5, 0), 0, 0),
        Err(StorageError::MessageTooLarge { max: 70, .. })
    ));
    assert_eq!(log.size_bytes(), size);
    assert_eq!(log.log_end_offset(), 1);
}

#[test]
fn a_compacted_log_refuses_records_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config();
    config.compact = true;
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let keyless = BatchBuilder::new()
            .compression(codec)
            .record(Some(b"k"), Some(b"v"), 0)
            .record(None, Some(b"no key"), 1)
            .build()
            .unwrap();
        match log.append(&keyless, 0, 0) {
            Err(StorageError::RecordsRefused {
                reason: crate::error::RefusedBecause::NoKey,
                records,
                ..
            }) => assert_eq!(records.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1]),
            other => panic!("{codec:?}: {other:?}"),
        }
        let keyed = BatchBuilder::new()
            .compression(codec)
            .record(Some(b"k"), Some(b"v"), 0)
            .record(Some(b"k2"), None, 1)
            .build()
            .unwrap();
        log.append(&keyed, 0, 0).unwrap();
    }
    assert_eq!(log.log_end_offset(), 6);
    // Not compacted: keyless records are fine.
    let mut config = small_config();
    config.compact = false;
    log.set_config(config);
    let keyless = BatchBuilder::new()
        .record(None, Some(b"v"), 0)
        .build()
        .unwrap();
    log.append(&keyless, 0, 0).unwrap();
}

/// As Kafka: a CreateTime log takes a batch the producer marked LogAppendTime (judging its
/// records by the max timestamp) and stores it as CreateTime, with a valid CRC.
#[test]
fn a_create_time_log_stores_a_batch_marked_log_append_time_as_create_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    let marked = BatchBuilder::new()
        .timestamp_type(TimestampType::LogAppendTime)
        .record(Some(b"k"), Some(b"v"), 5)
        .build()
        .unwrap();
    assert_eq!(
        BatchHeader::parse(&marked).unwrap().timestamp_type(),
        TimestampType::LogAppendTime
    );
    log.append(&marked, 0, 1_000).unwrap();
    let r = log.read(0, i64::MAX, usize::MAX, false).unwrap();
    let h = BatchHeader::parse(&r.records).unwrap();
    h.verify_crc().unwrap();
    assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
}

#[test]
fn log_append_time_is_stamped_with_a_valid_crc() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    let outcome = log.append(&batch(3, 5), 0, 123_456).unwrap();
    assert_eq!(
        outcome,
        AppendOutcome::Appended {
            base_offset: 0,
            last_offset: 2,
            log_append_time_ms: 123_456,
            max_timestamp: 123_456,
            record_count: 3
        }
    );
    let r = log.read(0, i64::MAX, usize::MAX, false).unwrap();
    let h = BatchHeader::parse(&r.records).unwrap();
    h.verify_crc().unwrap();
    assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(h.max_timestamp(), 123_456);
    assert_eq!(
        log.offset_for_timestamp(100_000).unwrap(),
        Some(TimestampOffset {
            offset: 0,
            timestamp: 123_456
        })
    );
    assert_eq!(log.offset_for_timestamp(200_000).unwrap(), None);
    assert_eq!(
        log.max_timestamp().unwrap(),
        Some(TimestampOffset {
            offset: 0,
            timestamp: 123_456
        })
    );
    // CreateTime keeps the producer's timestamps and reports -1.
    let mut log2 = Log::open(&dir.path().join("p2"), small_config(), 0).unwrap();
    let outcome = log2.append(&batch(3, 5), 0, 123_456).unwrap();
    assert!(matches!(
        outcome,
        AppendOutcome::Appended {
            log_append_time_ms: -1,
            max_timestamp: 7,
            ..
        }
    ));
}

fn build_with(codec: Compression, xerial: bool, timestamps: &[i64]) -> Vec<u8> {
    let mut builder = BatchBuilder::new().compression(codec).xerial_snappy(xerial);
    for ts in timestamps {
        builder =
            builder.record_with_headers(Some(b"k"), Some(&[7u8; 40]), *ts, &[(b"h", Some(b"1"))]);
    }
    builder.build().unwrap()
}

#[test]
fn offset_for_timestamp_with_every_codec() {
    let variants = [
        (Compression::None, false),
        (Compression::Gzip, false),
        (Compression::Snappy, false),
        (Compression::Snappy, true),
        (Compression::Lz4, false),
        (Compression::Zstd, false),
    ];
    for (codec, xerial) in variants {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        // Timestamps are not monotonic inside batches; the answer is the first record (by
        // offset) whose timestamp is >= the target.
        let mut all = Vec::new();
        for b in 0..12i64 {
            let ts: Vec<i64> = (0..5)
                .map(|i| 1000 + b * 100 + [30, 10, 50, 20, 40][i as usize])
                .collect();
            all.extend(ts.iter().copied());
            log.append(&build_with(codec, xerial, &ts), 0, 0).unwrap();
        }
        assert!(log.segment_count() > 1 || codec != Compression::None);
        for target in (900..2300).step_by(7) {
            let expected = all
                .iter()
                .enumerate()
                .find(|(_, t)| **t >= target)
                .map(|(o, t)| TimestampOffset {
                    offset: o as i64,
                    timestamp: *t,
                });
            assert_eq!(
                log.offset_for_timestamp(target).unwrap(),
                expected,
                "{codec:?} xerial={xerial} target={target}"
            );
        }
        let max = *all.iter().max().unwrap();
        let offset = all.iter().position(|t| *t == max).unwrap() as i64;
        assert_eq!(
            log.max_timestamp().unwrap(),
            Some(TimestampOffset {
                offset,
                timestamp: max
            })
        );
        // And after a crash (indexes rebuilt from the log).
        drop(log);
        let log = Log::open(dir.path(), small_config(), 0).unwrap();
        assert_eq!(
            log.offset_for_timestamp(1234).unwrap().map(|t| t.timestamp),
            all.iter().copied().find(|t| *t >= 1234)
        );
    }
}

#[test]
fn empty_log_has_no_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.max_timestamp().unwrap(), None);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
}

#[test]
fn idempotent_duplicates_return_original_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    log.append(&batch(1, 0), 0, 0).unwrap();
    assert_eq!(
        appended(log.append(&idempotent(5, 0, 0, 3), 0, 0).unwrap()),
        (1, 3)
    );
    assert_eq!(
        appended(log.append(&idempotent(5, 0, 3, 2), 0, 0).unwrap()),
        (4, 5)
    );
    let size = log.size_bytes();
    assert_eq!(
        log.append(&idempotent(5, 0, 0, 3), 0, 0).unwrap(),
        AppendOutcome::Duplicate {
            base_offset: 1,
            last_offset: 3,
            log_append_time_ms: -1
        }
    );
    assert_eq!(
        log.append(&idempotent(5, 0, 3, 2), 0, 0).unwrap(),
        AppendOutcome::Duplicate {
            base_offset: 4,
            last_offset: 5,
            log_append_time_ms: -1
        }
    );
    assert_eq!(log.size_bytes(), size);
    assert_eq!(log.log_end_offset(), 6);
    let view = log.producer_state(5).unwrap();
    assert_eq!(
        (view.epoch, view.last_sequence, view.last_offset),
        (0, 4, 5)
    );
}

#[test]
fn idempotent_sequence_errors_and_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    // A producer the log has no state for starts at any sequence (Kafka: no current producer
    // epoch); from then on the sequence must follow.
    log.append(&idempotent(9, 0, 5, 1), 0, 0).unwrap();
    assert!(matches!(
        log.append(&idempotent(9, 0, 7, 1), 0, 0),
        Err(StorageError::OutOfOrderSequence {
            expected: 6,
            received: 7,
            ..
        })
    ));
    log.append(&idempotent(1, 0, 0, 2), 0, 0).unwrap();
    assert!(matches!(
        log.append(&idempotent(1, 0, 3, 1), 0, 0),
        Err(StorageError::OutOfOrderSequence {
            expected: 2,
            received: 3,
            ..
        })
    ));
    // Overlapping but not identical to a cached batch: out of order.
    assert!(matches!(
        log.append(&idempotent(1, 0, 1, 1), 0, 0),
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    // New epoch must start at 0.
    assert!(matches!(
        log.append(&idempotent(1, 1, 2, 1), 0, 0),
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    log.append(&idempotent(1, 1, 0, 1), 0, 0).unwrap();
    // The old epoch is fenced.
    assert!(matches!(
        log.append(&idempotent(1, 0, 2, 1), 0, 0),
        Err(StorageError::InvalidProducerEpoch {
            current: 1,
            received: 0,
            ..
        })
    ));
    assert_eq!(log.log_end_offset(), 4);
}

#[test]
fn idempotent_sequence_wraps_around() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    log.append(&idempotent(3, 0, 0, 1), 0, 0).unwrap();
    // Seed the state near i32::MAX through the follower path (replay semantics).
    let mut near_max = BatchBuilder::new()
        .producer(3, 0, i32::MAX - 1)
        .base_offset(1);
    for _ in 0..2 {
        near_max = near_max.record(None, Some(b"x"), 1);
    }
    log.append_as_follower(&near_max.build().unwrap()).unwrap();
    assert_eq!(log.producer_state(3).unwrap().last_sequence, i32::MAX);
    assert_eq!(
        appended(log.append(&idempotent(3, 0, 0, 2), 0, 0).unwrap()),
        (3, 4)
    );
    assert!(matches!(
        log.append(&idempotent(3, 0, 0, 2), 0, 0).unwrap(),
        AppendOutcome::Duplicate { base_offset: 3, .. }
    ));
    assert_eq!(
        appended(log.append(&idempotent(3, 0, 2, 1), 0, 0).unwrap()),
        (5, 5)
    );
}

#[test]
fn producer_state_survives_close_and_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    for seq in 0..20 {
        log.append(&idempotent(9, 2, seq, 1), 0, 0).unwrap();
    }
    assert!(log.segment_count() > 1, "want a roll, hence a snapshot");
    log.close().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert!(matches!(
        log.append(&idempotent(9, 2, 19, 1), 0, 0).unwrap(),
        AppendOutcome::Duplicate {
            base_offset: 19,
            ..
        }
    ));
    log.append(&idempotent(9, 2, 20, 1), 0, 0).unwrap();
    log.append(&idempotent(9, 2, 21, 1), 0, 0).unwrap();
    // Crash: no close, no clean marker; the state after the last snapshot comes from replay.
    drop(log);
    assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert!(matches!(
        log.append(&idempotent(9, 2, 21, 1), 0, 0).unwrap(),
        AppendOutcome::Duplicate {
            base_offset: 21,
            ..
        }
    ));
    assert!(matches!(
        log.append(&idempotent(9, 2, 23, 1), 0, 0),
        Err(StorageError::OutOfOrderSequence { expected: 22, .. })
    ));
    assert!(matches!(
        log.append(&idempotent(9, 1, 0, 1), 0, 0),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
    // And with every snapshot gone, a full replay gives the same answer.
    drop(log);
    remove_snapshots(dir.path());
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert!(matches!(
        log.append(&idempotent(9, 2, 21, 1), 0, 0).unwrap(),
        AppendOutcome::Duplicate {
            base_offset: 21,
            ..
        }
    ));
    log.append(&idempotent(9, 2, 22, 1), 0, 0).unwrap();
}

#[test]
fn truncate_to_drops_batches_and_fixes_producer_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    for seq in 0..20 {
        log.append(&idempotent(4, 0, seq * 2, 2), 0, 0).unwrap();
    }
    assert_eq!(log.log_end_offset(), 40);
    let segments = log.segment_count();
    // Mid-batch: the whole batch containing 25 goes.
    log.truncate_to(25).unwrap();
    assert_eq!(log.log_end_offset(), 24);
    assert!(log.segment_count() < segments);
    assert_eq!(log.producer_state(4).unwrap().last_sequence, 23);
    let r = log.read(0, i64::MAX, usize::MAX, false).unwrap();
    assert_eq!(batch_offsets(&r.records).last(), Some(&(22, 23)));
    // Sequence continues from the truncated state.
    assert!(log.append(&idempotent(4, 0, 26, 2), 0, 0).is_err());
    assert_eq!(
        appended(log.append(&idempotent(4, 0, 24, 2), 0, 0).unwrap()),
        (24, 25)
    );
    log.truncate_to(100).unwrap();
    assert_eq!(log.log_end_offset(), 26);
    // Reopen after a crash sees the truncated log.
    drop(log);
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 26);
    assert_eq!(log.producer_state(4).unwrap().last_sequence, 25);
    log.truncate_to(0).unwrap();
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.segment_count()
        ),
        (0, 0, 1)
    );
    assert!(log.producer_state(4).is_none());
    log.append(&idempotent(4, 0, 0, 1), 0, 0).unwrap();
}

#[test]
fn truncate_below_log_start_restarts_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    for i in 0..10 {
        log.append(&batch(2, i), 0, 0).unwrap();
    }
    log.advance_log_start_offset(10).unwrap();
    log.truncate_to(5).unwrap();
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.size_bytes()
        ),
        (5, 5, 0)
    );
    assert_eq!(appended(log.append(&batch(1, 0), 0, 0).unwrap()), (5, 5));
    drop(log);
    let log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (5, 6));
}

#[test]
fn retention_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: 1000,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    for i in 0..40 {
        log.append(&batch(2, i), 0, 0).unwrap();
    }
    let before = log.segment_count();
    let deleted = log.apply_retention(0).unwrap();
    assert!(deleted > 0);
    assert_eq!(log.segment_count(), before - deleted);
    assert!(log.size_bytes() >= 1000);
    assert!(log.log_start_offset() > 0);
    assert!(matches!(
        log.read(0, i64::MAX, 10, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let r = log
        .read(log.log_start_offset(), i64::MAX, usize::MAX, false)
        .unwrap();
    assert_eq!(r.first_offset, Some(log.log_start_offset()));
    assert_eq!(r.last_offset, Some(79));
    assert_eq!(log.apply_retention(0).unwrap(), 0);
    let start = log.log_start_offset();
    drop(log);
    let log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.log_start_offset(), start);
}

/// Retention deletes only segments wholly below the high watermark it is given (Kafka's
/// `deletableSegments`): what a follower has not fetched yet stays, and goes once the high
/// watermark passes it.
#[test]
fn retention_keeps_segments_above_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: 0,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    for i in 0..40 {
        log.append(&batch(2, i), 0, 0).unwrap();
    }
    assert!(log.segment_count() > 3);
    let second_base = log.segments().nth(1).unwrap().base_offset();
    let third_base = log.segments().nth(2).unwrap().base_offset();
    // The high watermark inside the second segment: only the first may go.
    assert_eq!(log.apply_retention_below(0, third_base - 1).unwrap(), 1);
    assert_eq!(log.log_start_offset(), second_base);
    assert_eq!(log.apply_retention_below(0, third_base - 1).unwrap(), 0);
    // At the log end, every sealed segment goes.
    let end = log.log_end_offset();
    assert!(log.apply_retention_below(0, end).unwrap() > 0);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_end_offset(), end);
}

#[test]
fn retention_by_time_and_time_based_roll() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: 1000,
        segment_ms: 500,
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    log.append(&batch(2, 100), 0, 100).unwrap();
    log.append(&batch(2, 200), 0, 200).unwrap();
    assert_eq!(log.segment_count(), 1);
    // Older than segment_ms since the first append: the next append rolls.
    log.append(&batch(2, 700), 0, 700).unwrap();
    assert_eq!(log.segment_count(), 2);
    assert_eq!(
        log.apply_retention(1100).unwrap(),
        0,
        "max timestamp 201 is not older than 1100-1000"
    );
    assert_eq!(log.apply_retention(1300).unwrap(), 1);
    assert_eq!(log.log_start_offset(), 4);
    // The active segment expires too: it is rolled, then deleted; the log stays usable.
    assert_eq!(log.apply_retention(5000).unwrap(), 1);
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.size_bytes()
        ),
        (6, 6, 0)
    );
    assert_eq!(
        appended(log.append(&batch(1, 5000), 0, 5000).unwrap()),
        (6, 6)
    );
}

#[test]
fn flush_tracking() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.flushed_offset(), 0);
    log.append(&batch(2, 0), 0, 0).unwrap();
    assert_eq!(log.flushed_offset(), 0);
    let target = log.flush_target();
    assert_eq!(target.up_to_offset, 2);
    log.append(&batch(2, 0), 0, 0).unwrap();
    target.file.sync_data().unwrap();
    log.mark_flushed(target.up_to_offset).unwrap();
    assert_eq!(log.flushed_offset(), 2);
    log.mark_flushed(1).unwrap();
    assert_eq!(log.flushed_offset(), 2);
    log.flush().unwrap();
    assert_eq!(log.flushed_offset(), 4);
}

/// After a crash recovery fsyncs the active segment before counting it flushed (a kill -9
/// may have left its last writes unsynced in the page cache, readable at once); after a clean
/// close it has nothing to sync.
#[test]
fn an_unclean_open_syncs_the_active_segment_and_a_clean_one_does_not() {
    use crate::segment::segment::test_syncs;
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    log.append(&batch(3, 0), 0, 0).unwrap();
    drop(log);
    let before = test_syncs::count();
    let log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    assert_eq!(
        test_syncs::count(),
        before + 1,
        "the crashed segment was not synced"
    );
    assert_eq!(log.flushed_offset(), 3);
    log.close().unwrap();
    let before = test_syncs::count();
    let _log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    assert_eq!(test_syncs::count(), before, "a clean open synced");
}

/// A sync of a target taken before a truncation marks nothing: the records written again
/// below its offset since (a follower's, from a new leader) are not what it synced.
#[test]
fn a_target_taken_before_a_truncation_marks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    log.append(&batch(2, 0), 0, 0).unwrap();
    log.flush().unwrap();
    log.append(&batch(4, 0), 0, 0).unwrap();
    let stale = log.flush_target();
    assert_eq!(stale.up_to_offset, 6);
    log.truncate_to(2).unwrap();
    log.append(&batch(5, 0), 0, 0).unwrap();
    stale.file.sync_data().unwrap();
    log.mark_target_flushed(&stale).unwrap();
    assert_eq!(
        log.flushed_offset(),
        2,
        "marked what the stale sync did not cover"
    );
    let fresh = log.flush_target();
    fresh.file.sync_data().unwrap();
    log.mark_target_flushed(&fresh).unwrap();
    assert_eq!(log.flushed_offset(), 7);
}

#[test]
fn follower_append_checks_offsets_and_crc() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    let mut payload = BatchBuilder::new()
        .base_offset(0)
        .record(None, Some(b"a"), 1)
        .record(None, Some(b"b"), 2)
        .build()
        .unwrap();
    payload.extend(
        BatchBuilder::new()
            .base_offset(2)
            .producer(7, 0, 0)
            .record(None, Some(b"c"), 3)
            .build()
            .unwrap(),
    );
    log.append_as_follower(&payload).unwrap();
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(log.producer_state(7).unwrap().last_offset, 2);
    assert_eq!(
        log.read(0, i64::MAX, usize::MAX, false).unwrap().records,
        payload
    );
    let wrong = BatchBuilder::new()
        .base_offset(2)
        .record(None, None, 1)
        .build()
        .unwrap();
    assert!(matches!(
        log.append_as_follower(&wrong),
        Err(StorageError::UnexpectedBaseOffset {
            expected: 3,
            actual: 2
        })
    ));
    let mut good_then_bad = BatchBuilder::new()
        .base_offset(3)
        .record(None, None, 1)
        .build()
        .unwrap();
    let mut bad = BatchBuilder::new()
        .base_offset(4)
        .record(None, None, 1)
        .build()
        .unwrap();
    bad[ATTRIBUTES_AT + 5] ^= 1;
    good_then_bad.extend(bad);
    assert!(log.append_as_follower(&good_then_bad).is_err());
    assert_eq!(
        log.log_end_offset(),
        3,
        "nothing of a rejected payload is written"
    );
}

#[test]
fn delete_removes_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topic-0");
    let mut log = Log::open(&path, small_config(), 0).unwrap();
    log.append(&batch(1, 0), 0, 0).unwrap();
    log.delete().unwrap();
    assert!(!path.exists());
}

#[test]
fn log_can_move_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Log>();
}

#[test]
fn full_index_rolls_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 0,
        segment_index_bytes: 24, // two offset-index entries
        ..small_config()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    for i in 0..10 {
        log.append(&batch(1, i), 0, 0).unwrap();
    }
    assert!(log.segment_count() >= 3, "{} segments", log.segment_count());
    let r = log.read(0, i64::MAX, usize::MAX, false).unwrap();
    assert_eq!(batch_offsets(&r.records).len(), 10);
}

#[test]
fn decompression_bomb_is_refused_not_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_message_bytes: 100_000,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    let zeros = vec![0u8; 20 << 20];
    let bomb = BatchBuilder::new()
        .compression(Compression::Zstd)
        .record(None, Some(&zeros), 5)
        .build()
        .unwrap();
    assert!(bomb.len() < 100_000);
    log.append(&bomb, 0, 0).unwrap();
    assert!(matches!(
        log.offset_for_timestamp(0),
        Err(StorageError::DecompressionLimit { .. })
    ));
    // An empty follower payload is a no-op.
    log.append_as_follower(&[]).unwrap();
    assert_eq!(log.log_end_offset(), 1);
}

/// Producer 7's retry of its second batch is a duplicate of offset 1, and a gap is refused.
fn assert_producer_7_known(log: &mut Log, when: &str) {
    assert!(
        matches!(
            log.append(&idempotent(7, 0, 1, 1), 0, 0),
            Ok(AppendOutcome::Duplicate { base_offset: 1, .. })
        ),
        "{when}: the retry is a duplicate"
    );
    assert!(
        matches!(
            log.append(&idempotent(7, 0, 5, 1), 0, 0),
            Err(StorageError::OutOfOrderSequence { expected: 2, .. })
        ),
        "{when}: the gap is refused"
    );
}

/// A log in `dir` holding producer 7's batches 0 and 1 (timestamps 1000, offsets 0 and 1),
/// then `batches` plain batches of two records.
fn log_after_producer_7(dir: &Path, config: LogConfig, batches: i64) -> Log {
    let mut log = Log::open(dir, config, 0).unwrap();
    log.append(&idempotent(7, 0, 0, 1), 0, 0).unwrap();
    log.append(&idempotent(7, 0, 1, 1), 0, 0).unwrap();
    for i in 0..batches {
        log.append(&batch(2, 2000 + i), 0, 0).unwrap();
    }
    log
}

/// As Kafka: an idempotent producer's state outlives its batches (DeleteRecords, retention) and
/// a reopen, and goes only once the producer has been idle for `producer_id_expiration_ms`.
#[test]
fn producer_state_outlives_its_batches_until_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        producer_id_expiration_ms: 10_000,
        ..small_config()
    };
    let mut log = log_after_producer_7(dir.path(), config.clone(), 10);
    // Into the active segment's last batch: no roll, so no snapshot from one.
    let start = log.log_end_offset() - 1;
    log.advance_log_start_offset(start).unwrap();
    assert_producer_7_known(&mut log, "after DeleteRecords");
    drop(log);
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    assert_eq!(log.log_start_offset(), start);
    assert_producer_7_known(&mut log, "after a crash");
    log.close().unwrap();
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    assert_producer_7_known(&mut log, "after a clean close");

    // Its batches' timestamps are 1000: idle for 10 s at 11,000.
    assert_eq!(log.apply_retention(10_999).unwrap(), 0);
    assert_producer_7_known(&mut log, "before it expires");
    log.apply_retention(11_000).unwrap();
    assert!(log.producer_state(7).is_none());
    assert!(matches!(
        log.append(&idempotent(7, 0, 5, 1), 0, 0),
        Ok(AppendOutcome::Appended { .. })
    ));
}

#[test]
fn producer_state_outlives_retention_deleting_its_batches() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: 1000,
        ..small_config()
    };
    let mut log = log_after_producer_7(dir.path(), config.clone(), 40);
    // As if a crash had come between a roll's new segment and its snapshot: retention then
    // writes one before the log start passes the producer's batches.
    remove_snapshots(dir.path());
    assert!(log.apply_retention(0).unwrap() > 0);
    assert!(log.log_start_offset() > 1);
    assert_producer_7_known(&mut log, "after retention");
    drop(log);
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    assert_producer_7_known(&mut log, "after a crash");
}
