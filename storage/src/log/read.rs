//! Reads of a `Log`: fetch by offset, ListOffsets by timestamp and MAX_TIMESTAMP.
//!
//! A fetch costs one positional read per segment it touches (plus one more only when the first
//! batch is larger than what was read ahead, or the batch holding the start offset lies further
//! from its offset-index entry than expected) and one copy (page cache → the buffer that becomes
//! the returned `Bytes`, without zero-filling it first). Batch boundaries are found by walking
//! the headers inside that buffer.
//!
//! Invariant: reads return whole batches exactly as stored and allocate at most `max_bytes` plus
//! one offset-index interval and a header (or the first batch when `min_one_batch`), a batch, or
//! the bounded decompression limit.

use bytes::Bytes;

use crate::batch::compression::{decompress, Compression};
use crate::batch::header::{BatchHeader, HEADER_BYTES};
use crate::batch::records::RecordIter;
use crate::config::TimestampType;
use crate::error::StorageError;
use crate::log::{Log, ReadResult, TimestampOffset};
use crate::segment::{BatchInfo, Segment};

impl Log {
    /// Whole batches from the one containing `start_offset`, stopping before a batch whose base
    /// offset is >= `max_offset` or that would take the total past `max_bytes` (except the first
    /// one if `min_one_batch`, KIP-74). Continues into the next segment when one is exhausted.
    /// Nothing when `start_offset >= max_offset`, as Kafka's `LocalLog.read`: a fetch at or past
    /// the high watermark gets no records, even from a batch that straddles it.
    pub fn read(
        &self,
        start_offset: i64,
        max_offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<ReadResult, StorageError> {
        let log_end = self.check_read_offset(start_offset)?;
        if start_offset == log_end || start_offset >= max_offset {
            return Ok(ReadResult::default());
        }
        let mut fetch = Fetch {
            start_offset,
            max_offset,
            max_bytes,
            min_one_batch,
            // The batch holding the start offset begins at most about one index interval (plus
            // a batch) after the index entry the read starts from.
            skip_allowance: usize::try_from(self.config.index_interval_bytes)
                .unwrap_or(0)
                .saturating_add(HEADER_BYTES),
            buf: Vec::new(),
            out_start: 0,
            out_end: 0,
            result: ReadResult::default(),
        };
        let mut segments = self.segments_from(start_offset).peekable();
        if let Some(first) = segments.peek() {
            // One allocation for the whole read: what the budget allows, at most what is there.
            let position = first.index_position(start_offset);
            let on_disk: u64 = self
                .segments_from(start_offset)
                .map(Segment::size_bytes)
                .sum::<u64>()
                .saturating_sub(position);
            let capacity = usize::try_from(on_disk)
                .unwrap_or(usize::MAX)
                .min(max_bytes.saturating_add(fetch.skip_allowance));
            fetch.buf.reserve_exact(capacity);
        }
        for segment in segments {
            if fetch.read_segment(segment)? == Next::Stop {
                break;
            }
        }
        let Fetch {
            buf,
            out_start,
            out_end,
            mut result,
            ..
        } = fetch;
        if out_end > out_start {
            // No copy: the read buffer becomes the `Bytes`, of which the batches are a slice.
            result.records = Bytes::from(buf).slice(out_start..out_end);
        }
        Ok(result)
    }

    /// OffsetOutOfRange unless `start_offset` lies in [log start, log end]; returns the log end.
    pub(crate) fn check_read_offset(&self, start_offset: i64) -> Result<i64, StorageError> {
        let log_end = self.log_end_offset();
        if start_offset < self.log_start_offset || start_offset > log_end {
            return Err(StorageError::OffsetOutOfRange {
                offset: start_offset,
                log_start: self.log_start_offset,
                log_end,
            });
        }
        Ok(log_end)
    }

    /// Segments that may hold `offset` or anything after it, in order. Starts at the last
    /// sealed segment based at or below `offset` (each segment ends at or before the next one's
    /// base, so none before it can), not at the first of the log.
    pub(crate) fn segments_from(&self, offset: i64) -> impl Iterator<Item = &Segment> {
        let first = self
            .sealed
            .range(..=offset)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        self.sealed
            .range(first..)
            .map(|(_, s)| s)
            .chain(std::iter::once(&self.active))
            .filter(move |s| s.next_offset() > offset)
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

/// Whether a fetch goes on into the next segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    Continue,
    Stop,
}

/// State of one `Log::read`.
///
/// Invariant: `buf[out_start..out_end]` are the whole batches taken so far, contiguous across
/// segments; `buf[out_end..]` are bytes read ahead from the current segment, starting at the batch
/// boundary being looked at.
struct Fetch {
    start_offset: i64,
    max_offset: i64,
    max_bytes: usize,
    min_one_batch: bool,
    /// Extra read-ahead while looking for the batch holding `start_offset`.
    skip_allowance: usize,
    buf: Vec<u8>,
    out_start: usize,
    out_end: usize,
    result: ReadResult,
}

impl Fetch {
    fn taken(&self) -> usize {
        self.out_end - self.out_start
    }

    fn buffered(&self) -> usize {
        self.buf.len() - self.out_end
    }

    /// Takes batches from `segment`; `Stop` once a limit is reached.
    fn read_segment(&mut self, segment: &Segment) -> Result<Next, StorageError> {
        let size = segment.size_bytes();
        // Only the first segment is entered mid-way; later ones start at 0.
        let mut position = if self.taken() == 0 {
            segment.index_position(self.start_offset)
        } else {
            0
        };
        debug_assert_eq!(self.buffered(), 0, "read-ahead never crosses a segment end");
        while position < size {
            if self.buffered() < HEADER_BYTES {
                self.fill(segment, position, HEADER_BYTES)?;
            }
            let header: [u8; HEADER_BYTES] = self
                .buf
                .get(self.out_end..self.out_end + HEADER_BYTES)
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| StorageError::corrupt("short batch header"))?;
            let info = BatchInfo::from_header(position, header)?;
            let batch_end = position
                .checked_add(info.total_size)
                .filter(|end| *end <= size)
                .ok_or_else(|| {
                    StorageError::corrupt("batch extends past the end of the segment")
                })?;
            let batch_bytes = usize::try_from(info.total_size)
                .map_err(|_| StorageError::corrupt("batch too large"))?;
            if info.last_offset < self.start_offset {
                // Before the start: nothing is taken yet, so the buffer can be dropped or reused.
                if self.buffered() >= batch_bytes {
                    self.out_end += batch_bytes;
                    self.out_start = self.out_end;
                } else {
                    self.buf.clear();
                    (self.out_start, self.out_end) = (0, 0);
                }
                position = batch_end;
                continue;
            }
            if info.base_offset >= self.max_offset {
                return Ok(Next::Stop);
            }
            let taken = self.taken();
            let fits = taken.saturating_add(batch_bytes) <= self.max_bytes;
            let first_allowed = self.min_one_batch && taken == 0;
            if !(fits || first_allowed) {
                return Ok(Next::Stop);
            }
            if self.buffered() < batch_bytes {
                self.fill(segment, position, batch_bytes)?;
            }
            self.out_end += batch_bytes;
            position = batch_end;
            self.result.first_offset.get_or_insert(info.base_offset);
            self.result.last_offset = Some(info.last_offset);
        }
        Ok(Next::Continue)
    }

    /// Makes at least `need` bytes from `position` (the batch at `out_end`) available, reading
    /// ahead as far as the byte budget (plus the skip allowance before the start) may use.
    fn fill(&mut self, segment: &Segment, position: u64, need: usize) -> Result<(), StorageError> {
        let buffered = self.buffered();
        let taken = self.taken();
        let budget = self.max_bytes.saturating_sub(taken);
        let read_ahead = if taken == 0 {
            budget.saturating_add(self.skip_allowance)
        } else {
            budget
        };
        let left_in_segment =
            usize::try_from(segment.size_bytes().saturating_sub(position)).unwrap_or(usize::MAX);
        let want = need.max(read_ahead).min(left_in_segment);
        if want <= buffered {
            return Err(StorageError::corrupt(
                "batch extends past the end of the segment",
            ));
        }
        segment.read_into(&mut self.buf, position + buffered as u64, want - buffered)
    }
}
