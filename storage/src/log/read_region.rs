//! Fetch reads that locate batches instead of copying them: `Log::read_region` walks batch
//! headers only and returns where the batches lie in the segment file, so the broker can send
//! them from a mapping of the file (`FileRegion::map`) or with `sendfile`, without a copy in
//! between, or read them into a buffer of its own (`FileRegion::read_part_into`). Like Kafka's
//! `LogSegment.read`, one fetch answers from one segment. The caller decides what to read
//! into memory instead (`FileRegion::read_to_bytes`), outside any lock it holds.
//!
//! Invariant: the same batches as `Log::read` with the same arguments, as long as they lie in
//! one segment (when they would continue into the next, fewer are returned; the consumer's next
//! fetch gets the rest). When everything from the first batch to the segment's end is wanted
//! and fits, no header after the first is read: like Kafka's `LogSegment.read`, which slices
//! the file up to the high watermark's position, the batches are not walked one by one.

use crate::error::StorageError;
use crate::log::{FileRegion, Log, RegionRead, StoredRecords};

impl Log {
    /// Whole batches from the one containing `start_offset`, stopping before a batch whose base
    /// offset is >= `max_offset` or that would take the total past `max_bytes` (except the first
    /// one if `min_one_batch`, KIP-74), all from one segment, as a `FileRegion` (empty records
    /// when there is nothing to return). Nothing when `start_offset >= max_offset`, as `read`.
    pub fn read_region(
        &self,
        start_offset: i64,
        max_offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<RegionRead, StorageError> {
        self.read_region_inline(start_offset, max_offset, max_bytes, min_one_batch, 0)
    }

    /// As `read_region`, but an answer of at most `inline_up_to` bytes that the header walk has
    /// read already (a consumer near the log end: the first header's page holds the few
    /// batches after it) comes back as bytes copied from that read, not as a region to read a
    /// second time.
    pub fn read_region_inline(
        &self,
        start_offset: i64,
        max_offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        inline_up_to: usize,
    ) -> Result<RegionRead, StorageError> {
        self.check_read_offset(start_offset)?;
        if (max_bytes == 0 && !min_one_batch) || start_offset >= max_offset {
            // No batch fits in nothing (a partition after a fetch's budget is spent), and a
            // consumer at the high watermark (below the log end while acks=all records wait
            // for their fsync or replicas) gets nothing: skip the read of the first header.
            return Ok(RegionRead::default());
        }
        for segment in self.segments_from(start_offset) {
            let mut start_position = 0u64;
            let mut taken = 0usize;
            let mut result = RegionRead::default();
            let mut stop = false;
            let mut scan = segment.scan(segment.index_position(start_offset));
            for info in &mut scan {
                let info = info?;
                if info.last_offset < start_offset {
                    continue;
                }
                if info.base_offset >= max_offset {
                    stop = true;
                    break;
                }
                let size = usize::try_from(info.total_size)
                    .map_err(|_| StorageError::corrupt("batch too large"))?;
                let fits = taken.saturating_add(size) <= max_bytes;
                if !(fits || (min_one_batch && taken == 0)) {
                    stop = true;
                    break;
                }
                if taken == 0 {
                    start_position = info.position;
                    result.first_offset = Some(info.base_offset);
                    // The rest of the segment all below `max_offset` and within the budget (a
                    // catch-up read of a log whose high watermark is its end): the batches run
                    // contiguously to `size_bytes` and the last ends at `next_offset` - 1, so
                    // take them whole without reading their headers (a scan of small batches
                    // reads every byte of them once more).
                    let rest = segment.size_bytes().saturating_sub(info.position);
                    let rest_bytes = usize::try_from(rest).unwrap_or(usize::MAX);
                    if segment.next_offset() <= max_offset
                        && rest >= info.total_size
                        && rest_bytes <= max_bytes
                    {
                        taken = rest_bytes;
                        result.last_offset = Some(segment.next_offset() - 1);
                        break;
                    }
                }
                taken += size;
                result.last_offset = Some(info.last_offset);
            }
            if taken > 0 {
                let buffered = if taken <= inline_up_to {
                    scan.buffered(start_position, taken)
                } else {
                    None
                };
                result.records = match buffered {
                    Some(bytes) => StoredRecords::Bytes(bytes::Bytes::copy_from_slice(bytes)),
                    None => StoredRecords::File(FileRegion {
                        file: segment.log_file(),
                        position: start_position,
                        len: taken as u64,
                    }),
                };
                return Ok(result);
            }
            if stop {
                break;
            }
        }
        Ok(RegionRead::default())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::log::tests::{batch, small_config};
    use crate::LogConfig;

    fn bytes_of(r: &RegionRead) -> Vec<u8> {
        match &r.records {
            StoredRecords::Bytes(b) => b.to_vec(),
            StoredRecords::File(region) => region.read_to_bytes().unwrap().to_vec(),
        }
    }

    /// `read_region` returns what `read` returns, cut at the first segment end, for every
    /// start offset and limit, always as a file region.
    #[test]
    fn matches_read_within_a_segment() {
        for config in [small_config(), LogConfig::default()] {
            let dir = tempfile::tempdir().unwrap();
            let mut log = Log::open(dir.path(), config, 0).unwrap();
            for i in 0..30 {
                log.append(&batch(1 + i % 4, i as i64), 0, 0).unwrap();
            }
            let end = log.log_end_offset();
            for start in 0..end {
                for max_bytes in [0usize, 50, 200, 1000, usize::MAX] {
                    for max_offset in [end, start + 3] {
                        let full = log.read(start, max_offset, max_bytes, true).unwrap();
                        let region = log.read_region(start, max_offset, max_bytes, true).unwrap();
                        let got = bytes_of(&region);
                        assert!(!got.is_empty(), "start {start} max {max_bytes}");
                        assert!(full.records.starts_with(&got));
                        assert_eq!(region.first_offset, full.first_offset);
                        assert!(matches!(region.records, StoredRecords::File(_)));
                        if log.segment_count() == 1 {
                            assert_eq!(got, full.records.to_vec());
                            assert_eq!(region.last_offset, full.last_offset);
                        }
                    }
                }
                // Without min_one_batch, a budget below the first batch returns nothing.
                let none = log.read_region(start, end, 10, false).unwrap();
                assert!(none.records.is_empty());
            }
            assert!(log
                .read_region(end, end, 100, true)
                .unwrap()
                .records
                .is_empty());
            assert!(matches!(
                log.read_region(end + 1, end, 100, true),
                Err(StorageError::OffsetOutOfRange { .. })
            ));
        }
    }

    /// With `inline_up_to`, an answer the header walk has read already comes back as its bytes
    /// (no second read), one larger than the limit or past what the walk read as a region; the
    /// bytes are `read`'s either way.
    #[test]
    fn small_answers_the_walk_has_read_come_back_as_bytes() {
        use crate::segment::segment::SCAN_FIRST_READ_BYTES;
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        for i in 0..2_000 {
            log.append(&batch(1 + i % 3, log.log_end_offset()), 0, 0)
                .unwrap();
        }
        let end = log.log_end_offset();
        let one_page = SCAN_FIRST_READ_BYTES;
        for start in [0, 1, 7, end / 2, end - 3, end - 1] {
            for (max_bytes, inline_up_to) in [
                (usize::MAX, 0),
                (usize::MAX, usize::MAX),
                (500, usize::MAX),
                (500, 499),
                (one_page / 2, one_page),
            ] {
                let full = log.read(start, end, max_bytes, true).unwrap();
                let r = log
                    .read_region_inline(start, end, max_bytes, true, inline_up_to)
                    .unwrap();
                assert_eq!(bytes_of(&r), full.records.to_vec(), "start {start}");
                assert_eq!(
                    (r.first_offset, r.last_offset),
                    (full.first_offset, full.last_offset)
                );
                let len = full.records.len();
                // Small answers lie in what the walk read (a page from the index entry, then
                // 64 KiB windows): here every one of them does, none crossing a window's end.
                let inline = matches!(r.records, StoredRecords::Bytes(_));
                if len > inline_up_to {
                    assert!(!inline, "start {start}: {len} bytes > {inline_up_to}");
                } else if max_bytes == 500 || max_bytes == one_page / 2 {
                    assert!(inline, "start {start}: {len} bytes, read by the walk");
                }
            }
        }
        // The whole rest of a large segment is taken without walking: a region.
        let r = log
            .read_region_inline(0, end, usize::MAX, true, usize::MAX)
            .unwrap();
        assert!(matches!(r.records, StoredRecords::File(_)));
    }

    /// A read of the whole rest of a segment (below `max_offset`, within the budget) reads a
    /// page for its first header and none of the others; one that stops early walks them.
    #[test]
    fn the_whole_rest_of_a_segment_is_taken_without_walking_its_headers() {
        use crate::segment::file_io::BYTES_READ_ON_THIS_THREAD;
        use crate::segment::segment::SCAN_FIRST_READ_BYTES;
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        for i in 0..2_000 {
            log.append(&batch(2, i * 2), 0, 0).unwrap();
        }
        let end = log.log_end_offset();
        let size = log.size_bytes();
        assert!(size > 16 * SCAN_FIRST_READ_BYTES as u64, "{size} bytes");
        let read_bytes = |start: i64, max_offset: i64, max_bytes: usize| {
            let full = log.read(start, max_offset, max_bytes, true).unwrap();
            let before = BYTES_READ_ON_THIS_THREAD.with(std::cell::Cell::get);
            let region = log.read_region(start, max_offset, max_bytes, true).unwrap();
            let scanned = BYTES_READ_ON_THIS_THREAD.with(std::cell::Cell::get) - before;
            assert_eq!(bytes_of(&region), full.records.to_vec());
            assert_eq!(
                (region.first_offset, region.last_offset),
                (full.first_offset, full.last_offset)
            );
            scanned
        };
        for start in [0, 1, 2, 1_001, end - 1] {
            let scanned = read_bytes(start, end, usize::MAX);
            assert!(
                scanned <= 2 * SCAN_FIRST_READ_BYTES as u64,
                "start {start}: {scanned} bytes read for the headers"
            );
        }
        // A budget of nothing reads nothing (and still checks the offset).
        let before = BYTES_READ_ON_THIS_THREAD.with(std::cell::Cell::get);
        assert!(log
            .read_region(5, end, 0, false)
            .unwrap()
            .records
            .is_empty());
        assert_eq!(BYTES_READ_ON_THIS_THREAD.with(std::cell::Cell::get), before);
        assert!(log.read_region(end + 1, end, 0, false).is_err());
        // Stopping below the end (the high watermark behind, or the budget short) walks the
        // headers up to the cut.
        assert!(read_bytes(0, end - 2, usize::MAX) > size / 2);
        assert!(read_bytes(0, end, (size / 2) as usize) > size / 4);
    }

    /// A region read in parts into one reused buffer gives the same bytes as one whole read;
    /// a part past the region, or past a file truncated under it, is an error.
    #[test]
    fn a_region_reads_in_parts_as_a_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        for i in 0..10 {
            log.append(&batch(3, i * 3), 0, 0).unwrap();
        }
        let read = log.read_region(0, 30, usize::MAX, true).unwrap();
        let StoredRecords::File(region) = read.records else {
            panic!("expected a file region");
        };
        let whole = region.read_to_bytes().unwrap();
        for part in [1usize, 7, 100, whole.len()] {
            let mut got = Vec::new();
            let mut buf = Vec::with_capacity(part);
            let mut done = 0u64;
            while done < region.len {
                let n = part.min((region.len - done) as usize);
                buf.clear();
                region.read_part_into(&mut buf, done, n).unwrap();
                assert_eq!(buf.len(), n);
                got.extend_from_slice(&buf);
                done += n as u64;
            }
            assert_eq!(got, whole.to_vec(), "parts of {part}");
        }
        let mut buf = Vec::new();
        assert!(region.read_part_into(&mut buf, region.len, 1).is_err());
        assert!(region.read_part_into(&mut buf, 1, whole.len()).is_err());
        assert!(buf.is_empty());
        // The file cut below the region (a truncation after the read): a short read is an error.
        region
            .file
            .set_len(region.position + region.len / 2)
            .unwrap();
        assert!(region.read_part_into(&mut buf, 0, whole.len()).is_err());
        assert!(buf.is_empty());
    }
}
