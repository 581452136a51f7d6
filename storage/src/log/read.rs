//! Reads of a `Log`: fetch by offset, ListOffsets by timestamp and MAX_TIMESTAMP.
//!
//! Invariant: reads return whole batches exactly as stored and never allocate more than
//! `max_bytes` (or one batch when `min_one_batch`), a batch, or the bounded decompression limit.

use bytes::BytesMut;

use crate::batch::compression::{decompress, Compression};
use crate::batch::header::BatchHeader;
use crate::batch::records::RecordIter;
use crate::config::TimestampType;
use crate::error::StorageError;
use crate::log::{Log, ReadResult, TimestampOffset};
use crate::segment::{BatchInfo, Segment};

impl Log {
    /// Whole batches from the one containing `start_offset`, stopping before a batch whose base
    /// offset is >= `max_offset` or that would take the total past `max_bytes` (except the first
    /// one if `min_one_batch`, KIP-74).
    pub fn read(
        &self,
        start_offset: i64,
        max_offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<ReadResult, StorageError> {
        let log_end = self.log_end_offset();
        if start_offset < self.log_start_offset || start_offset > log_end {
            return Err(StorageError::OffsetOutOfRange {
                offset: start_offset,
                log_start: self.log_start_offset,
                log_end,
            });
        }
        let mut result = ReadResult::default();
        if start_offset == log_end {
            return Ok(result);
        }
        let mut out = BytesMut::new();
        'segments: for segment in self.segments_from(start_offset) {
            let Some(first) = segment.find_batch(start_offset)? else {
                continue;
            };
            // Batches are contiguous: find the byte range by headers, then read it in one go.
            let (start, mut end) = (first.position, first.position);
            let mut stop = false;
            for info in segment.scan(first.position) {
                let info = info?;
                if info.base_offset >= max_offset {
                    stop = true;
                    break;
                }
                let size = usize::try_from(info.total_size).unwrap_or(usize::MAX);
                let taken = out
                    .len()
                    .saturating_add(usize::try_from(end - start).unwrap_or(usize::MAX));
                let fits = taken.saturating_add(size) <= max_bytes;
                let first_allowed = min_one_batch && taken == 0;
                if !(fits || first_allowed) {
                    stop = true;
                    break;
                }
                end = info.position + info.total_size;
                result.first_offset.get_or_insert(info.base_offset);
                result.last_offset = Some(info.last_offset);
            }
            if end > start {
                out.extend_from_slice(&segment.read_bytes(start, end - start)?);
            }
            if stop {
                break 'segments;
            }
        }
        result.records = out.freeze();
        Ok(result)
    }

    /// Segments that may hold `offset` or anything after it, in order.
    fn segments_from(&self, offset: i64) -> impl Iterator<Item = &Segment> {
        self.segments().filter(move |s| s.next_offset() > offset)
    }

    /// The first record (in offset order, at or above the log start) whose timestamp is >= `ts`.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<TimestampOffset>, StorageError> {
        let log_start = self.log_start_offset;
        for segment in self.segments_from(log_start) {
            if segment.max_timestamp() < ts {
                continue;
            }
            for info in segment.scan(segment.timestamp_search_start(ts)) {
                let info = info?;
                if info.last_offset < log_start || info.max_timestamp < ts {
                    continue;
                }
                let found = self.find_in_batch(segment, &info, log_start, |t| t >= ts)?;
                if found.is_some() {
                    return Ok(found);
                }
            }
        }
        Ok(None)
    }

    /// The largest timestamp in the log and the offset of the first record carrying it.
    pub fn max_timestamp(&self) -> Result<Option<TimestampOffset>, StorageError> {
        let mut best: Option<&Segment> = None;
        for segment in self.segments_from(self.log_start_offset) {
            if segment.offset_of_max_timestamp() < 0 {
                continue;
            }
            if best.is_none_or(|b| segment.max_timestamp() > b.max_timestamp()) {
                best = Some(segment);
            }
        }
        let Some(segment) = best else {
            return Ok(None);
        };
        let max = segment.max_timestamp();
        let Some(info) = segment.find_batch(segment.offset_of_max_timestamp())? else {
            return Ok(None);
        };
        let found = self.find_in_batch(segment, &info, self.log_start_offset, |t| t == max)?;
        Ok(found.or(Some(TimestampOffset {
            offset: info.base_offset.max(self.log_start_offset),
            timestamp: max,
        })))
    }

    /// The first record of a stored batch at or above `min_offset` whose timestamp matches.
    fn find_in_batch(
        &self,
        segment: &Segment,
        info: &BatchInfo,
        min_offset: i64,
        matches: impl Fn(i64) -> bool,
    ) -> Result<Option<TimestampOffset>, StorageError> {
        let view = info.view()?;
        if view.timestamp_type() == TimestampType::LogAppendTime {
            let timestamp = view.max_timestamp();
            return Ok(matches(timestamp).then(|| TimestampOffset {
                offset: view.base_offset().max(min_offset),
                timestamp,
            }));
        }
        let bytes = segment.read_bytes(info.position, info.total_size)?;
        let batch = BatchHeader::parse(&bytes)?;
        let section = batch
            .records_bytes()
            .ok_or_else(|| StorageError::corrupt("batch truncated"))?;
        let codec = batch.compression()?;
        let decompressed;
        let records = if codec == Compression::None {
            section
        } else {
            decompressed = decompress(codec, section, self.config.max_decompressed_bytes())?;
            &decompressed[..]
        };
        for record in RecordIter::new(records, batch.records_count()) {
            let record = record?;
            let offset = batch
                .base_offset()
                .saturating_add(i64::from(record.offset_delta));
            let timestamp = batch
                .base_timestamp()
                .saturating_add(record.timestamp_delta);
            if offset >= min_offset && matches(timestamp) {
                return Ok(Some(TimestampOffset { offset, timestamp }));
            }
        }
        Ok(None)
    }
}
