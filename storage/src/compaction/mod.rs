//! Log compaction (Kafka's `LogCleaner`) for logs whose `LogConfig::compact` is set: the sealed
//! segments are rewritten keeping, for every key, only the record with the highest offset.
//!
//! A cleaning: (1) plan — the cleanable range ends at the active segment's base or at the first
//! segment younger than `min_compaction_lag_ms` (`plan`); the log is cleaned when the dirty
//! section (from the checkpointed first dirty offset) makes up at least
//! `min_cleanable_dirty_ratio` of the cleanable bytes, or when a kept tombstone's delete horizon
//! has passed; (2) map — the latest offset of each key of the dirty section (`offset_map`,
//! memory-bounded: it stops at a segment boundary when full); (3) filter — every sealed segment
//! below the end, grouped to at most `segment_bytes`, is rewritten batch by batch (`filter`);
//! (4) swap — each cleaned group replaces its segments crash-safely (`swap`); (5) checkpoint —
//! the new first dirty offset and the earliest kept delete horizon (`checkpoint`). Steps 2 and 3
//! check every batch's CRC; a bad one stops the cleaning with `StorageError::CorruptSegment`
//! before the group holding it is swapped (groups swapped before stay cleaned, the checkpoint
//! does not move), so a damaged batch is neither copied nor re-signed into the cleaned log.
//!
//! Invariants: the active segment is never touched; every retained record keeps its offset,
//! and a record goes only if a later record has its key, it has no key, or it is a tombstone
//! past its delete horizon; segment base offsets do not change (a group keeps its first base);
//! the log start and end offsets do not change; batches keep their base offset and
//! lastOffsetDelta; the last batch of every producer in the producer state stays (maybe empty),
//! so idempotent producers keep their sequence state.

mod checkpoint;
mod filter;
mod offset_map;
mod plan;
pub(crate) mod swap;

pub use checkpoint::CLEANER_CHECKPOINT_FILE;

use crate::batch::header::BatchHeader;
use crate::compaction::checkpoint::CleanerCheckpoint;
use crate::compaction::filter::{filter_batch, FilterContext, Filtered};
use crate::compaction::offset_map::OffsetMap;
use crate::compaction::plan::SegmentStat;
use crate::error::StorageError;
use crate::log::Log;
use crate::segment::{BatchInfo, Segment};

/// Memory budget of the offset map of one cleaning (Kafka's `log.cleaner.dedupe.buffer.size`
/// is 128 MiB shared by its cleaner threads).
pub const OFFSET_MAP_BYTES: usize = 64 * 1024 * 1024;

/// What one cleaning did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionOutcome {
    /// Sealed segments read.
    pub segments_before: usize,
    /// Sealed segments they became.
    pub segments_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Everything below it is now clean.
    pub first_dirty_offset: i64,
}

/// Where a test makes a cleaning stop, as a crash would (the swap steps of `swap`).
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    /// After step 1 (`.cleaned` written).
    Cleaned,
    /// After step 2 (`.swap`).
    Committed,
    /// After step 3 (other segments of the group deleted).
    OthersDeleted,
    /// After step 5 of every group, before the checkpoint.
    Installed,
}

/// Stops here if the test asked for it.
fn crash_point(crash_at: Option<CrashPoint>, here: CrashPoint) -> Result<(), StorageError> {
    if crash_at == Some(here) {
        return Err(StorageError::Io(std::io::Error::other("simulated crash")));
    }
    Ok(())
}

impl Log {
    /// Cleans the log if its cleanup policy is compact and it is worth it (see the module doc).
    /// `None` when nothing was done.
    pub fn compact(&mut self, now_ms: i64) -> Result<Option<CompactionOutcome>, StorageError> {
        self.compact_until(now_ms, None)
    }

    /// The share of the cleanable bytes not yet cleaned (Kafka's `cleanableRatio`).
    pub fn dirty_ratio(&self, now_ms: i64) -> f64 {
        let stats = self.sealed_stats();
        let end = self.cleanable_end(&stats, now_ms);
        let first_dirty = self.read_checkpoint().first_dirty_offset;
        let (clean, dirty) = plan::clean_and_dirty_bytes(&stats, first_dirty, end);
        plan::dirty_ratio(clean, dirty)
    }

    fn sealed_stats(&self) -> Vec<SegmentStat> {
        self.sealed
            .values()
            .map(|s| SegmentStat {
                base_offset: s.base_offset(),
                next_offset: s.next_offset(),
                size_bytes: s.size_bytes(),
                max_timestamp: s.max_timestamp(),
            })
            .collect()
    }

    fn cleanable_end(&self, stats: &[SegmentStat], now_ms: i64) -> i64 {
        plan::first_uncleanable_offset(
            stats,
            self.active.base_offset(),
            self.config.min_compaction_lag_ms,
            now_ms,
        )
    }

    /// The checkpoint, reset to the log start if missing or outside the log (Kafka does the
    /// same with a checkpoint out of range).
    fn read_checkpoint(&self) -> CleanerCheckpoint {
        let fresh = CleanerCheckpoint {
            first_dirty_offset: self.log_start_offset,
            next_delete_horizon_ms: -1,
        };
        match checkpoint::read(&self.dir) {
            Some(c)
                if c.first_dirty_offset >= self.log_start_offset
                    && c.first_dirty_offset <= self.log_end_offset() =>
            {
                c
            }
            _ => fresh,
        }
    }

    pub(crate) fn compact_until(
        &mut self,
        now_ms: i64,
        crash_at: Option<CrashPoint>,
    ) -> Result<Option<CompactionOutcome>, StorageError> {
        if !self.config.compact {
            return Ok(None);
        }
        let stats = self.sealed_stats();
        let end = self.cleanable_end(&stats, now_ms);
        let checkpoint = self.read_checkpoint();
        let first_dirty = checkpoint.first_dirty_offset.min(end);
        let (clean, dirty) = plan::clean_and_dirty_bytes(&stats, first_dirty, end);
        let horizon_passed =
            checkpoint.next_delete_horizon_ms >= 0 && now_ms >= checkpoint.next_delete_horizon_ms;
        let dirty_enough =
            dirty > 0 && plan::dirty_ratio(clean, dirty) >= self.config.min_cleanable_dirty_ratio;
        if !(dirty_enough || horizon_passed) {
            return Ok(None);
        }
        let max_decompressed = self.config.max_decompressed_bytes();
        // The map covers whole dirty segments; once it is full, the cleaning ends before the
        // next one, which becomes the first dirty segment.
        let mut map = OffsetMap::new(OFFSET_MAP_BYTES);
        let mut map_end = end;
        for segment in self
            .sealed
            .values()
            .filter(|s| s.next_offset() > first_dirty && s.base_offset() < end)
        {
            if map.is_full() {
                map_end = segment.base_offset();
                break;
            }
            map.add_segment(segment, max_decompressed)?;
        }
        let cleanable: Vec<SegmentStat> = stats
            .iter()
            .copied()
            .filter(|s| s.base_offset < map_end)
            .collect();
        let groups = plan::group_segments(&cleanable, self.config.segment_bytes);
        let ctx = FilterContext {
            latest: &map,
            now_ms,
            delete_retention_ms: self.config.delete_retention_ms,
            max_decompressed_bytes: max_decompressed,
        };
        let mut outcome = CompactionOutcome {
            segments_before: cleanable.len(),
            ..CompactionOutcome::default()
        };
        // Tombstones above map_end have no horizon yet (they were never cleaned).
        let mut next_horizon: Option<i64> = None;
        for group in groups {
            let bases: Vec<i64> = cleanable
                .get(group)
                .unwrap_or_default()
                .iter()
                .map(|s| s.base_offset)
                .collect();
            let (before, after, horizon) = self.clean_group(&bases, &ctx, crash_at)?;
            outcome.bytes_before += before;
            outcome.bytes_after += after;
            outcome.segments_after += 1;
            next_horizon = match (next_horizon, horizon) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        crash_point(crash_at, CrashPoint::Installed)?;
        let first_dirty_offset = map_end.max(first_dirty);
        outcome.first_dirty_offset = first_dirty_offset;
        checkpoint::write(
            &self.dir,
            CleanerCheckpoint {
                first_dirty_offset,
                next_delete_horizon_ms: next_horizon.unwrap_or(-1),
            },
        )?;
        tracing::info!(
            dir = %self.dir.display(),
            keys = map.len(),
            segments_before = outcome.segments_before,
            segments_after = outcome.segments_after,
            bytes_before = outcome.bytes_before,
            bytes_after = outcome.bytes_after,
            first_dirty_offset,
            "compacted log"
        );
        Ok(Some(outcome))
    }

    /// Cleans the consecutive sealed segments at `bases` into one segment at `bases[0]`.
    /// Returns (bytes before, bytes after, earliest delete horizon of a kept tombstone). A
    /// source batch failing its CRC stops the cleaning before the swap (`CorruptSegment`): the
    /// group's segments stay as they are and its `.cleaned` file goes.
    fn clean_group(
        &mut self,
        bases: &[i64],
        ctx: &FilterContext<'_>,
        crash_at: Option<CrashPoint>,
    ) -> Result<(u64, u64, Option<i64>), StorageError> {
        let Some(&base) = bases.first() else {
            return Ok((0, 0, None));
        };
        let mut writer = swap::CleanedWriter::create(&self.dir, base)?;
        let (before, horizon) = match self.write_cleaned(bases, ctx, &mut writer) {
            Ok(written) => written,
            Err(e) => {
                drop(writer);
                swap::discard(&self.dir, base);
                return Err(e);
            }
        };
        let after = match writer.finish() {
            Ok(after) => after,
            Err(e) => {
                swap::discard(&self.dir, base);
                return Err(e);
            }
        };
        crash_point(crash_at, CrashPoint::Cleaned)?;
        swap::commit(&self.dir, base)?;
        crash_point(crash_at, CrashPoint::Committed)?;
        for other in bases.iter().skip(1) {
            if let Some(segment) = self.sealed.remove(other) {
                segment.delete()?;
            }
        }
        crash_point(crash_at, CrashPoint::OthersDeleted)?;
        swap::install(&self.dir, base)?;
        let cleaned = swap::open_installed(
            &self.dir,
            base,
            self.config.index_interval_bytes,
            self.config.segment_index_bytes,
            ctx.now_ms,
        )?;
        // The old segment's files were replaced; dropping it closes them.
        self.sealed.insert(base, cleaned);
        Ok((before, after, horizon))
    }

    /// Writes the cleaned batches of the segments at `bases` to `writer`. Returns (bytes read,
    /// earliest delete horizon of a kept tombstone).
    fn write_cleaned(
        &self,
        bases: &[i64],
        ctx: &FilterContext<'_>,
        writer: &mut swap::CleanedWriter,
    ) -> Result<(u64, Option<i64>), StorageError> {
        let mut before = 0u64;
        let mut horizon: Option<i64> = None;
        for segment in bases.iter().filter_map(|b| self.sealed.get(b)) {
            before += segment.size_bytes();
            for info in segment.scan(0) {
                let info = info?;
                let bytes = read_checked_batch(segment, &info)?;
                let view = info.view()?;
                let keep_if_empty = view.producer_id() >= 0
                    && self
                        .producers
                        .view(view.producer_id())
                        .is_some_and(|p| p.last_offset == view.last_offset());
                let out = filter_batch(&bytes, ctx, keep_if_empty)?;
                match out.filtered {
                    Filtered::Unchanged => writer.write(&bytes)?,
                    Filtered::Rewritten(new) => writer.write(&new)?,
                    Filtered::Dropped => {}
                }
                if let Some(h) = out.tombstone_horizon_ms {
                    horizon = Some(horizon.map_or(h, |old| old.min(h)));
                }
            }
        }
        Ok((before, horizon))
    }
}

/// The whole batch `info` of `segment`, its CRC checked. The cleaner reads nothing it has not
/// checked: a batch it copies keeps a bad CRC (and the cleaned segment is its only copy), one
/// it rewrites gets a new CRC over damaged records, and a damaged key in the offset map could
/// remove another key's records. Sealed segments are otherwise trusted as written.
pub(crate) fn read_checked_batch(
    segment: &Segment,
    info: &BatchInfo,
) -> Result<Vec<u8>, StorageError> {
    let bytes = segment.read_bytes(info.position, info.total_size)?;
    BatchHeader::parse(&bytes)
        .and_then(|header| header.verify_crc())
        .map_err(|e| StorageError::CorruptSegment {
            path: segment.log_path().display().to_string(),
            position: info.position,
            reason: e.to_string(),
        })?;
    Ok(bytes)
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
