//! Kafka's per-record rules on the produce path (`LogValidator`): record timestamps within
//! `message.timestamp.before/after.max.ms` for CreateTime topics, no producer batch marked
//! LogAppendTime (where Kafka refuses one), and keys in compacted topics. A breach refuses the
//! whole batch and names each record that broke a rule (`StorageError::RecordsRefused`,
//! answered as the Produce response's record_errors); as in Kafka's `processRecordErrors`, any
//! timestamp error makes the batch's error INVALID_TIMESTAMP, else INVALID_RECORD.
//!
//! The hot path decompresses nothing. An uncompressed batch's timestamps are read from its
//! records in the walk that checks their lengths (`validate_produce_with_span`); a compressed
//! batch is answered from its header's max timestamp under Kafka 4's default rule
//! (after.max.ms one hour, before.max.ms off) and decompressed only when that fails, to name
//! the records, or when before.max.ms is set. So a compressed batch whose header understates
//! its records' max timestamp is not caught (Kafka decompresses every batch).

use std::borrow::Cow;
use std::path::Path;

use crate::batch::compression::{decompress, Compression};
use crate::batch::header::BatchHeader;
use crate::batch::records::RecordIter;
use crate::config::TimestampType;
use crate::error::{RefusedBecause, StorageError};

/// Kafka's `RecordBatch.NO_TIMESTAMP`: a record without one passes any range.
const NO_TIMESTAMP: i64 = -1;

/// What the records of a produced batch must satisfy on this log.
#[derive(Clone, Copy, Debug)]
pub struct RecordRules {
    /// The topic's `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms` (negative counts as 0; i64::MAX: off).
    pub before_max_ms: i64,
    /// `message.timestamp.after.max.ms` (negative counts as 0).
    pub after_max_ms: i64,
    /// A compacted topic: every record needs a key.
    pub require_keys: bool,
}

/// Checks the records of `header`'s batch at `now_ms`; `span`: an uncompressed batch's smallest
/// and largest timestamp delta, as `validate_produce_with_span` read them; `log_dir`, whose
/// name names the partition in messages (read only when a record is refused).
pub fn check_records(
    header: &BatchHeader<'_>,
    span: Option<(i64, i64)>,
    rules: RecordRules,
    now_ms: i64,
    log_dir: &Path,
    max_decompressed_bytes: usize,
) -> Result<(), StorageError> {
    if header.is_control() {
        return Ok(());
    }
    let create_time = rules.timestamp_type == TimestampType::CreateTime;
    let marked_append_time = header.timestamp_type() == TimestampType::LogAppendTime;
    let earliest = now_ms.saturating_sub(rules.before_max_ms.max(0));
    let latest = now_ms.saturating_add(rules.after_max_ms.max(0));
    if !rules.require_keys && !marked_append_time {
        if !create_time {
            return Ok(());
        }
        if timestamps_in_range(
            header,
            span,
            earliest,
            latest,
            rules.before_max_ms == i64::MAX,
        )? {
            return Ok(());
        }
    }
    // Some rule may be broken: read every record, as Kafka's `validateRecord`.
    let records = records_section(header, max_decompressed_bytes)?;
    let mut refused = Vec::new();
    let mut timestamp_refused = false;
    for (index, record) in (0i32..).zip(RecordIter::new(&records, header.records_count())) {
        let record = record?;
        if rules.require_keys && record.key.is_none() {
            let partition = log_dir.file_name().unwrap_or_default().to_string_lossy();
            refused.push((
                index,
                format!(
                    "Compacted topic cannot accept message without key in topic partition \
                     {partition}."
                ),
            ));
            continue;
        }
        // Kafka's `DefaultRecord.timestamp`: a batch marked LogAppendTime gives every record
        // its max timestamp.
        let timestamp = if marked_append_time {
            header.max_timestamp()
        } else {
            header
                .base_timestamp()
                .saturating_add(record.timestamp_delta)
        };
        let why = if create_time && timestamp != NO_TIMESTAMP {
            (timestamp < earliest || timestamp > latest).then(|| {
                format!(
                    "Timestamp {timestamp} of message with offset {} is out of range. The \
                     timestamp should be within [{earliest}, {latest}]",
                    record.offset_delta
                )
            })
        } else if marked_append_time {
            Some(format!(
                "Invalid timestamp type in message with offset {}. Producer should not set \
                 timestamp type to LogAppendTime.",
                record.offset_delta
            ))
        } else {
            None
        };
        if let Some(why) = why {
            timestamp_refused = true;
            refused.push((index, why));
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    let (reason, message) = if timestamp_refused {
        (
            RefusedBecause::Timestamp,
            "One or more records have been rejected due to invalid timestamp".to_string(),
        )
    } else {
        let first: Vec<String> = refused
            .iter()
            .take(3)
            .map(|(i, why)| format!("RecordError(batchIndex={i}, message='{why}')"))
            .collect();
        (
            RefusedBecause::NoKey,
            format!(
                "One or more records have been rejected due to {} record errors in total, and \
                 only showing the first three errors at most: [{}]",
                refused.len(),
                first.join(", ")
            ),
        )
    };
    Err(StorageError::RecordsRefused {
        reason,
        records: refused,
        message,
    })
}

/// Whether every timestamp of a CreateTime batch not marked LogAppendTime is surely within
/// [`earliest`, `latest`]: an uncompressed batch's by the span of its records' timestamps
/// (`span`; a record without a timestamp at an edge makes it unsure), a compressed one's by its
/// header max timestamp when only the upper bound applies (`before_off`). False means: read the
/// records.
fn timestamps_in_range(
    header: &BatchHeader<'_>,
    span: Option<(i64, i64)>,
    earliest: i64,
    latest: i64,
    before_off: bool,
) -> Result<bool, StorageError> {
    let in_range = |t: i64| (earliest..=latest).contains(&t);
    Ok(match span {
        Some((min, max)) => {
            let base = header.base_timestamp();
            in_range(base.saturating_add(min)) && in_range(base.saturating_add(max))
        }
        None => before_off && header.max_timestamp() <= latest,
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
    use crate::batch::header::{reset_crc, MAX_TIMESTAMP_AT};
    use crate::batch::validate::validate_produce_with_span;

    const NOW: i64 = 10_000_000;
    const HOUR: i64 = 3_600_000;
    const KAFKA_DEFAULT: RecordRules = RecordRules {
        timestamp_type: TimestampType::CreateTime,
        before_max_ms: i64::MAX,
        after_max_ms: HOUR,
        require_keys: false,
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

    /// The refused records' indexes and the batch's reason; empty when accepted.
    fn refused(b: &[u8], rules: RecordRules) -> (Vec<i32>, Option<RefusedBecause>) {
        let (h, span) = validate_produce_with_span(b, 1 << 20).unwrap();
        match check_records(&h, span, rules, NOW, Path::new("/data/t-0"), 1 << 20) {
            Ok(()) => (Vec::new(), None),
            Err(StorageError::RecordsRefused {
                reason, records, ..
            }) => (records.into_iter().map(|(i, _)| i).collect(), Some(reason)),
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
            assert_eq!(
                refused(&b, KAFKA_DEFAULT),
                (vec![1, 3], Some(RefusedBecause::Timestamp)),
                "{codec:?}"
            );
            let ok = batch(codec, &[NOW - 100 * HOUR, NOW + HOUR, -1]);
            assert_eq!(refused(&ok, KAFKA_DEFAULT).0, Vec::<i32>::new());
        }
    }

    #[test]
    fn an_uncompressed_batch_is_judged_by_its_records_not_its_header() {
        let mut b = batch(Compression::None, &[NOW, NOW + 2 * HOUR]);
        b[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&NOW.to_be_bytes());
        reset_crc(&mut b).unwrap();
        assert_eq!(refused(&b, KAFKA_DEFAULT).0, vec![1]);
    }

    #[test]
    fn before_max_ms_refuses_old_records_even_after_a_newer_first_one() {
        let rules = RecordRules {
            before_max_ms: HOUR,
            after_max_ms: i64::MAX,
            ..KAFKA_DEFAULT
        };
        for codec in [Compression::None, Compression::Zstd] {
            let b = batch(codec, &[NOW, NOW - 2 * HOUR, NOW - HOUR, -1]);
            assert_eq!(refused(&b, rules).0, vec![1], "{codec:?}");
        }
    }

    #[test]
    fn log_append_time_topics_check_no_timestamp_but_refuse_batches_marked_so() {
        let rules = RecordRules {
            timestamp_type: TimestampType::LogAppendTime,
            ..KAFKA_DEFAULT
        };
        assert_eq!(
            refused(&batch(Compression::Lz4, &[NOW + 5 * HOUR]), rules).0,
            Vec::<i32>::new()
        );
        let marked = |max: i64| {
            BatchBuilder::new()
                .timestamp_type(TimestampType::LogAppendTime)
                .record(Some(b"k"), Some(b"v"), 0)
                .record(Some(b"k"), Some(b"v"), 0)
                .build()
                .map(|mut b| {
                    b[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max.to_be_bytes());
                    reset_crc(&mut b).unwrap();
                    b
                })
                .unwrap()
        };
        assert_eq!(
            refused(&marked(NOW), rules),
            (vec![0, 1], Some(RefusedBecause::Timestamp))
        );
        // A CreateTime topic takes its records' timestamps as the max timestamp: refused when
        // that is none, judged by it otherwise.
        assert_eq!(refused(&marked(-1), KAFKA_DEFAULT).0, vec![0, 1]);
        assert_eq!(refused(&marked(NOW), KAFKA_DEFAULT).0, Vec::<i32>::new());
        assert_eq!(
            refused(&marked(NOW + 2 * HOUR), KAFKA_DEFAULT).0,
            vec![0, 1]
        );
    }

    #[test]
    fn keyless_records_are_named_and_a_timestamp_error_decides_the_code() {
        let keys = RecordRules {
            require_keys: true,
            ..KAFKA_DEFAULT
        };
        let b = BatchBuilder::new()
            .compression(Compression::Lz4)
            .record(Some(b"k"), Some(b"v"), NOW)
            .record(None, Some(b"v"), NOW)
            .build()
            .unwrap();
        assert_eq!(refused(&b, keys), (vec![1], Some(RefusedBecause::NoKey)));
        let both = BatchBuilder::new()
            .record(None, Some(b"v"), NOW)
            .record(Some(b"k"), Some(b"v"), NOW + 2 * HOUR)
            .build()
            .unwrap();
        assert_eq!(
            refused(&both, keys),
            (vec![0, 1], Some(RefusedBecause::Timestamp))
        );
    }
}
