//! Filtering one stored batch for compaction (Kafka's `MemoryRecords.filterTo` with the
//! cleaner's record filter).
//!
//! A record stays if it has a key, no later record of that key is in the offset map, and it is
//! not a tombstone whose batch's delete horizon has passed. Keyless records are dropped (Kafka's
//! cleaner counts them as invalid in a compacted log). A batch keeping every record and needing
//! no new delete horizon is copied byte for byte; otherwise it is rebuilt with the same base
//! offset, lastOffsetDelta, producer fields, leader epoch and codec (so sequence numbers and
//! offsets survive), a new CRC, and, if it keeps a tombstone, a delete horizon (KIP-534:
//! baseTimestamp = horizon, attribute bit 6). An emptied batch goes unless it is the last batch
//! of a producer still tracked, which stays as an empty header (Kafka's `RETAIN_EMPTY`). Control
//! batches are never changed. Decompression is bounded.

use crate::batch::compression::{compress, decompress, Compression};
use crate::batch::header::{
    reset_crc, BatchHeader, COMPRESSION_MASK, CONTROL_BIT, DELETE_HORIZON_BIT, HEADER_BYTES,
    LOG_OVERHEAD_BYTES, MAGIC_V2, TIMESTAMP_TYPE_BIT, TRANSACTIONAL_BIT,
};
use crate::batch::records::{RecordIter, RecordView};
use crate::batch::varint::write_varlong;
use crate::compaction::offset_map::OffsetMap;
use crate::config::TimestampType;
use crate::error::StorageError;

/// What the filter needs besides the batch.
pub(crate) struct FilterContext<'a> {
    /// The latest offset of each key of the dirty section.
    pub latest: &'a OffsetMap,
    pub now_ms: i64,
    pub delete_retention_ms: i64,
    pub max_decompressed_bytes: usize,
}

/// The fate of one batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Filtered {
    /// Copied as it is.
    Unchanged,
    /// Replaced by these bytes.
    Rewritten(Vec<u8>),
    /// Gone.
    Dropped,
}

/// A filtered batch and the delete horizon of the tombstones it still holds, if any.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FilterOutcome {
    pub filtered: Filtered,
    pub tombstone_horizon_ms: Option<i64>,
}

/// Filters a whole stored batch. `keep_if_empty`: the batch is the last of a live producer.
pub(crate) fn filter_batch(
    batch: &[u8],
    ctx: &FilterContext<'_>,
    keep_if_empty: bool,
) -> Result<FilterOutcome, StorageError> {
    let header = BatchHeader::parse(batch)?;
    let unchanged = FilterOutcome {
        filtered: Filtered::Unchanged,
        tombstone_horizon_ms: None,
    };
    if header.is_control() {
        return Ok(unchanged);
    }
    let section = header
        .records_bytes()
        .ok_or_else(|| StorageError::corrupt("batch truncated"))?;
    let codec = header.compression()?;
    let data = decompress(codec, section, ctx.max_decompressed_bytes)?;
    let existing_horizon = header.delete_horizon_ms();
    let drop_tombstones = existing_horizon.is_some_and(|h| ctx.now_ms >= h);
    let mut kept = Vec::new();
    let mut kept_tombstone = false;
    let mut dropped_any = false;
    for record in RecordIter::new(&data, header.records_count()) {
        let record = record?;
        let offset = header
            .base_offset()
            .saturating_add(i64::from(record.offset_delta));
        let is_latest = record
            .key
            .is_some_and(|key| ctx.latest.get(key).is_none_or(|latest| offset >= latest));
        if is_latest && (record.value.is_some() || !drop_tombstones) {
            kept_tombstone |= record.value.is_none();
            kept.push(record);
        } else {
            dropped_any = true;
        }
    }
    let horizon = if kept_tombstone {
        Some(existing_horizon.unwrap_or_else(|| ctx.now_ms.saturating_add(ctx.delete_retention_ms)))
    } else {
        None
    };
    if !dropped_any && (existing_horizon.is_some() || !kept_tombstone) {
        return Ok(FilterOutcome {
            tombstone_horizon_ms: horizon,
            ..unchanged
        });
    }
    let filtered = if !kept.is_empty() {
        Filtered::Rewritten(rebuild(
            &header,
            codec,
            &kept,
            horizon.or(existing_horizon),
        )?)
    } else if keep_if_empty && header.producer_id() >= 0 {
        Filtered::Rewritten(empty_batch(&header)?)
    } else {
        Filtered::Dropped
    };
    Ok(FilterOutcome {
        filtered,
        tombstone_horizon_ms: horizon,
    })
}

/// The absolute timestamp of a record of `header`'s batch.
fn record_timestamp(header: &BatchHeader<'_>, record: &RecordView<'_>) -> i64 {
    header
        .base_timestamp()
        .saturating_add(record.timestamp_delta)
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            write_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        None => write_varlong(out, -1),
    }
}

/// A batch of `records` (a subset of `header`'s batch) like Kafka's `buildRetainedRecordsInto`.
fn rebuild(
    header: &BatchHeader<'_>,
    codec: Compression,
    records: &[RecordView<'_>],
    horizon_ms: Option<i64>,
) -> Result<Vec<u8>, StorageError> {
    let first_timestamp = records.first().map_or(-1, |r| record_timestamp(header, r));
    let base_timestamp = horizon_ms.unwrap_or(first_timestamp);
    let max_timestamp = if header.timestamp_type() == TimestampType::LogAppendTime {
        header.max_timestamp()
    } else {
        records
            .iter()
            .map(|r| record_timestamp(header, r))
            .max()
            .unwrap_or(-1)
    };
    let mut section = Vec::new();
    let mut body = Vec::new();
    for record in records {
        body.clear();
        body.extend_from_slice(&record.attributes.to_be_bytes());
        let timestamp = record_timestamp(header, record);
        write_varlong(&mut body, timestamp.wrapping_sub(base_timestamp));
        write_varlong(&mut body, i64::from(record.offset_delta));
        put_bytes(&mut body, record.key);
        put_bytes(&mut body, record.value);
        write_varlong(&mut body, record.headers.len() as i64);
        for (key, value) in &record.headers {
            put_bytes(&mut body, Some(key));
            put_bytes(&mut body, *value);
        }
        write_varlong(&mut section, body.len() as i64);
        section.extend_from_slice(&body);
    }
    let section = compress(codec, &section)?;
    let mut attributes = header.attributes() & !DELETE_HORIZON_BIT;
    if horizon_ms.is_some() {
        attributes |= DELETE_HORIZON_BIT;
    }
    let count =
        i32::try_from(records.len()).map_err(|_| StorageError::corrupt("too many records"))?;
    write_batch(
        header,
        attributes,
        base_timestamp,
        max_timestamp,
        count,
        &section,
    )
}

/// Kafka's `DefaultRecordBatch.writeEmptyHeader`: no records, offsets and producer fields kept.
fn empty_batch(header: &BatchHeader<'_>) -> Result<Vec<u8>, StorageError> {
    let attributes = header.attributes()
        & (TIMESTAMP_TYPE_BIT | TRANSACTIONAL_BIT | CONTROL_BIT)
        & !COMPRESSION_MASK;
    write_batch(header, attributes, -1, header.max_timestamp(), 0, &[])
}

fn write_batch(
    header: &BatchHeader<'_>,
    attributes: i16,
    base_timestamp: i64,
    max_timestamp: i64,
    count: i32,
    section: &[u8],
) -> Result<Vec<u8>, StorageError> {
    let total = HEADER_BYTES + section.len();
    let batch_length = i32::try_from(total - LOG_OVERHEAD_BYTES)
        .map_err(|_| StorageError::corrupt("cleaned batch too large"))?;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&header.base_offset().to_be_bytes());
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&header.partition_leader_epoch().to_be_bytes());
    out.extend_from_slice(&MAGIC_V2.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&header.last_offset_delta().to_be_bytes());
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&header.producer_id().to_be_bytes());
    out.extend_from_slice(&header.producer_epoch().to_be_bytes());
    out.extend_from_slice(&header.base_sequence().to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(section);
    reset_crc(&mut out)?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::batch::builder::BatchBuilder;
    use crate::batch::validate::check_stored_batch;

    type Rec = (i64, Option<Vec<u8>>, Option<Vec<u8>>, i64);

    /// (offset, key, value, timestamp) of every record of one batch.
    fn records(batch: &[u8]) -> Vec<Rec> {
        let h = check_stored_batch(batch).unwrap();
        let data = decompress(
            h.compression().unwrap(),
            h.records_bytes().unwrap(),
            1 << 20,
        )
        .unwrap();
        RecordIter::new(&data, h.records_count())
            .map(|r| {
                let r = r.unwrap();
                (
                    h.base_offset() + i64::from(r.offset_delta),
                    r.key.map(<[u8]>::to_vec),
                    r.value.map(<[u8]>::to_vec),
                    h.base_timestamp() + r.timestamp_delta,
                )
            })
            .collect()
    }

    fn ctx(map: &OffsetMap, now_ms: i64) -> FilterContext<'_> {
        FilterContext {
            latest: map,
            now_ms,
            delete_retention_ms: 100,
            max_decompressed_bytes: 1 << 20,
        }
    }

    fn sample(codec: Compression) -> Vec<u8> {
        BatchBuilder::new()
            .compression(codec)
            .base_offset(10)
            .producer(3, 1, 7)
            .record(Some(b"a"), Some(b"1"), 1000)
            .record(Some(b"b"), Some(b"2"), 1005)
            .record(None, Some(b"x"), 1001)
            .record(Some(b"c"), None, 1002)
            .build()
            .unwrap()
    }

    #[test]
    fn drops_superseded_and_keyless_records_keeping_offsets_and_codec() {
        for codec in Compression::ALL {
            let mut map = OffsetMap::new(1 << 20);
            map.put(b"a", 50);
            map.put(b"b", 11);
            map.put(b"c", 13);
            let out = filter_batch(&sample(codec), &ctx(&map, 5000), false).unwrap();
            let Filtered::Rewritten(bytes) = out.filtered else {
                panic!("expected a rewrite");
            };
            let h = check_stored_batch(&bytes).unwrap();
            assert_eq!(h.compression().unwrap(), codec);
            assert_eq!((h.base_offset(), h.last_offset()), (10, 13));
            assert_eq!(
                (h.producer_id(), h.producer_epoch(), h.base_sequence()),
                (3, 1, 7)
            );
            assert_eq!(h.delete_horizon_ms(), Some(5100));
            assert_eq!(out.tombstone_horizon_ms, Some(5100));
            assert_eq!(h.max_timestamp(), 1005);
            assert_eq!(
                records(&bytes),
                vec![
                    (11, Some(b"b".to_vec()), Some(b"2".to_vec()), 1005),
                    (13, Some(b"c".to_vec()), None, 1002),
                ]
            );
        }
    }

    #[test]
    fn tombstones_go_only_after_their_horizon() {
        let map = OffsetMap::new(1 << 20);
        let batch = BatchBuilder::new()
            .record(Some(b"k"), None, 10)
            .build()
            .unwrap();
        let first = filter_batch(&batch, &ctx(&map, 1000), false).unwrap();
        let Filtered::Rewritten(marked) = first.filtered else {
            panic!("expected a horizon to be set");
        };
        assert_eq!(first.tombstone_horizon_ms, Some(1100));
        assert_eq!(records(&marked)[0].3, 10, "record timestamp survives");
        let before = filter_batch(&marked, &ctx(&map, 1099), false).unwrap();
        assert_eq!(before.filtered, Filtered::Unchanged);
        assert_eq!(before.tombstone_horizon_ms, Some(1100));
        let after = filter_batch(&marked, &ctx(&map, 1100), false).unwrap();
        assert_eq!(after.filtered, Filtered::Dropped);
        assert_eq!(after.tombstone_horizon_ms, None);
    }

    #[test]
    fn untouched_batches_and_control_batches_are_copied() {
        let map = OffsetMap::new(1 << 20);
        let batch = BatchBuilder::new()
            .record(Some(b"k"), Some(b"v"), 10)
            .build()
            .unwrap();
        assert_eq!(
            filter_batch(&batch, &ctx(&map, 0), false).unwrap().filtered,
            Filtered::Unchanged
        );
        let control = BatchBuilder::new()
            .control(true)
            .record(None, None, 10)
            .build()
            .unwrap();
        assert_eq!(
            filter_batch(&control, &ctx(&map, 0), false)
                .unwrap()
                .filtered,
            Filtered::Unchanged
        );
    }

    #[test]
    fn last_batch_of_a_live_producer_stays_empty() {
        let mut map = OffsetMap::new(1 << 20);
        map.put(b"a", 99);
        map.put(b"b", 99);
        map.put(b"c", 99);
        let batch = sample(Compression::Zstd);
        assert_eq!(
            filter_batch(&batch, &ctx(&map, 0), false).unwrap().filtered,
            Filtered::Dropped
        );
        let Filtered::Rewritten(empty) =
            filter_batch(&batch, &ctx(&map, 0), true).unwrap().filtered
        else {
            panic!("expected an empty batch");
        };
        let h = check_stored_batch(&empty).unwrap();
        assert_eq!(h.total_size(), HEADER_BYTES);
        assert_eq!(
            (h.base_offset(), h.last_offset(), h.records_count()),
            (10, 13, 0)
        );
        assert_eq!((h.producer_id(), h.last_sequence()), (3, 10));
        assert!(records(&empty).is_empty());
    }

    #[test]
    fn decompression_is_bounded() {
        let map = OffsetMap::new(1 << 20);
        let big = vec![0u8; 100_000];
        let batch = BatchBuilder::new()
            .compression(Compression::Gzip)
            .record(Some(b"k"), Some(&big), 10)
            .build()
            .unwrap();
        let mut c = ctx(&map, 0);
        c.max_decompressed_bytes = 1000;
        assert!(matches!(
            filter_batch(&batch, &c, false),
            Err(StorageError::DecompressionLimit { .. })
        ));
    }
}
