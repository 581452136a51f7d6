//! Kafka's per-record rules on the produce path (`LogValidator`): record timestamps within
//! `message.timestamp.before/after.max.ms` for CreateTime topics, and keys in compacted
//! topics. A breach refuses the whole batch and names each record that broke a rule
//! (`StorageError::RecordsRefused`, answered as the Produce response's record_errors).
//!
//! The hot path reads no record: Kafka 4's default timestamp rule (after.max.ms one hour,
//! before.max.ms off) is answered from the header's max timestamp, and the records are read
//! (decompressed if need be) only when that fails, to name them, or when before.max.ms is set.

use std::borrow::Cow;

use crate::batch::compression::{decompress, Compression};
use crate::batch::header::BatchHeader;
use crate::batch::records::RecordIter;
use crate::config::TimestampType;
use crate::error::{RefusedBecause, StorageError};

/// Kafka's `RecordBatch.NO_TIMESTAMP`: a record without one passes any range.
const NO_TIMESTAMP: i64 = -1;

/// The bounds of `message.timestamp.before/after.max.ms` (negative values count as 0).
#[derive(Clone, Copy, Debug)]
pub struct TimestampBounds {
    pub before_max_ms: i64,
    pub after_max_ms: i64,
}

/// Kafka's `validateTimestamp` for a CreateTime topic at `now_ms`.
pub fn check_timestamps(
    header: &BatchHeader<'_>,
    now_ms: i64,
    bounds: TimestampBounds,
    max_decompressed_bytes: usize,
) -> Result<(), StorageError> {
    let earliest = now_ms.saturating_sub(bounds.before_max_ms.max(0));
    let latest = now_ms.saturating_add(bounds.after_max_ms.max(0));
    if header.max_timestamp() <= latest && bounds.before_max_ms == i64::MAX {
        return Ok(());
    }
    let records = records_section(header, max_decompressed_bytes)?;
    // A batch marked LogAppendTime gives every record its max timestamp (Kafka's
    // `DefaultRecord.timestamp`).
    let append_time = header.timestamp_type() == TimestampType::LogAppendTime;
    let mut refused = Vec::new();
    for (index, record) in (0i32..).zip(RecordIter::new(&records, header.records_count())) {
        let record = record?;
        let timestamp = if append_time {
            header.max_timestamp()
        } else {
            header
                .base_timestamp()
                .saturating_add(record.timestamp_delta)
        };
        if timestamp != NO_TIMESTAMP && (timestamp < earliest || timestamp > latest) {
            refused.push((
                index,
                format!(
                    "Timestamp {timestamp} of message with offset {} is out of range. The \
                     timestamp should be within [{earliest}, {latest}]",
                    record.offset_delta
                ),
            ));
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(StorageError::RecordsRefused {
        reason: RefusedBecause::Timestamp,
        records: refused,
        message: "One or more records have been rejected due to invalid timestamp".into(),
    })
}

/// A compacted log keeps the latest record per key, so (as Kafka's LogValidator) it refuses
/// records without a key: compaction would silently drop them.
pub fn require_keys(
    header: &BatchHeader<'_>,
    max_decompressed_bytes: usize,
) -> Result<(), StorageError> {
    if header.is_control() {
        return Ok(());
    }
    let records = records_section(header, max_decompressed_bytes)?;
    let mut refused = Vec::new();
    for (index, record) in (0i32..).zip(RecordIter::new(&records, header.records_count())) {
        if record?.key.is_none() {
            refused.push((
                index,
                "Compacted topic cannot accept message without key.".to_string(),
            ));
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(StorageError::RecordsRefused {
        reason: RefusedBecause::NoKey,
        records: refused,
        message: "Compacted topic cannot accept message without key.".into(),
    })
}

/// The batch's records section, decompressed if need be (at most `max_bytes`).
fn records_section<'a>(
    header: &BatchHeader<'a>,
    max_bytes: usize,
) -> Result<Cow<'a, [u8]>, StorageError> {
    let raw = header
        .records_bytes()
        .ok_or_else(|| StorageError::corrupt("truncated records"))?;
    Ok(match header.compression()? {
        Compression::None => Cow::Borrowed(raw),
        codec => Cow::Owned(decompress(codec, raw, max_bytes)?),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::batch::builder::BatchBuilder;

    const NOW: i64 = 10_000_000;
    const HOUR: i64 = 3_600_000;
    const KAFKA_DEFAULT: TimestampBounds = TimestampBounds {
        before_max_ms: i64::MAX,
        after_max_ms: HOUR,
    };

    fn batch(codec: Compression, timestamps: &[i64]) -> Vec<u8> {
        timestamps
            .iter()
            .fold(BatchBuilder::new().compression(codec), |b, &t| {
                b.record(Some(b"k"), Some(b"v"), t)
            })
            .build()
            .unwrap()
    }

    fn refused(result: Result<(), StorageError>) -> Vec<i32> {
        match result {
            Ok(()) => Vec::new(),
            Err(StorageError::RecordsRefused {
                reason: RefusedBecause::Timestamp,
                records,
                ..
            }) => records.into_iter().map(|(i, _)| i).collect(),
            Err(e) => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn the_default_refuses_records_more_than_an_hour_ahead_and_names_them() {
        for codec in Compression::ALL {
            let b = batch(
                codec,
                &[NOW, NOW + HOUR + 1, NOW - 100 * HOUR, NOW + 2 * HOUR],
            );
            let h = BatchHeader::parse(&b).unwrap();
            assert_eq!(
                refused(check_timestamps(&h, NOW, KAFKA_DEFAULT, 1 << 20)),
                vec![1, 3],
                "{codec:?}"
            );
            let ok = batch(codec, &[NOW - 100 * HOUR, NOW + HOUR, -1]);
            let h = BatchHeader::parse(&ok).unwrap();
            assert!(check_timestamps(&h, NOW, KAFKA_DEFAULT, 1 << 20).is_ok());
        }
    }

    #[test]
    fn before_max_ms_refuses_old_records_even_after_a_newer_first_one() {
        let bounds = TimestampBounds {
            before_max_ms: HOUR,
            after_max_ms: i64::MAX,
        };
        for codec in [Compression::None, Compression::Zstd] {
            // The first record (the base timestamp) is in range; a later one is older.
            let b = batch(codec, &[NOW, NOW - 2 * HOUR, NOW - HOUR, -1]);
            let h = BatchHeader::parse(&b).unwrap();
            assert_eq!(refused(check_timestamps(&h, NOW, bounds, 1 << 20)), vec![1]);
        }
    }

    #[test]
    fn records_without_keys_are_named() {
        let b = BatchBuilder::new()
            .compression(Compression::Lz4)
            .record(Some(b"k"), Some(b"v"), 1)
            .record(None, Some(b"v"), 1)
            .build()
            .unwrap();
        let h = BatchHeader::parse(&b).unwrap();
        match require_keys(&h, 1 << 20) {
            Err(StorageError::RecordsRefused {
                reason: RefusedBecause::NoKey,
                records,
                ..
            }) => assert_eq!(records.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1]),
            other => panic!("{other:?}"),
        }
    }
}
