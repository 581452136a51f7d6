//! Retention: which old segments go (by `retention_ms` and `retention_bytes`), time-based
//! rolling, and moving the log start offset (DeleteRecords).
//!
//! Invariants: only a prefix of segments is ever deleted; an empty active segment is never
//! deleted; a non-empty active segment is rolled before it is deleted, so the log always keeps an
//! active segment at the log end; the log start offset only moves forward.

use crate::error::StorageError;
use crate::log::Log;
use crate::producer_state::snapshot;

/// What retention needs to know about a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    pub size_bytes: u64,
    /// -1 when the segment holds no timestamps (never expired by time).
    pub max_timestamp: i64,
    pub is_active: bool,
}

/// How many of the oldest segments are past retention. Time: a segment whose largest timestamp
/// is older than `now_ms - retention_ms` (the active one included, as in Kafka). Bytes: inactive
/// segments, oldest first, while the log stays at or above `retention_bytes` without them.
pub fn deletable_segments(
    segments: &[SegmentSummary],
    retention_ms: i64,
    retention_bytes: i64,
    now_ms: i64,
) -> usize {
    let mut count = 0;
    if retention_ms >= 0 {
        let cutoff = now_ms.saturating_sub(retention_ms);
        count = segments
            .iter()
            .take_while(|s| s.size_bytes > 0 && s.max_timestamp >= 0 && s.max_timestamp < cutoff)
            .count();
    }
    if retention_bytes >= 0 {
        let retention_bytes = retention_bytes as u64;
        let mut remaining: u64 = segments.iter().skip(count).map(|s| s.size_bytes).sum();
        for segment in segments.iter().skip(count) {
            if segment.is_active || remaining.saturating_sub(segment.size_bytes) < retention_bytes {
                break;
            }
            remaining -= segment.size_bytes;
            count += 1;
        }
    }
    count
}

impl Log {
    /// Rolls by `segment_ms`, forgets producers idle for `producer_id_expiration_ms`, then
    /// deletes segments past retention. Returns how many segments went.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize, StorageError> {
        self.apply_retention_below(now_ms, i64::MAX)
    }

    /// `apply_retention`, deleting only segments wholly below `high_watermark`: as in Kafka's
    /// `deletableSegments`, a record no in-sync follower has fetched yet (or, on a follower,
    /// one the leader has not committed) is never deleted by retention, so a lagging follower
    /// is not left with a gap and a consumer reading committed records does not lose them to
    /// a segment still being replicated.
    pub fn apply_retention_below(
        &mut self,
        now_ms: i64,
        high_watermark: i64,
    ) -> Result<usize, StorageError> {
        let expired = self
            .producers
            .remove_expired(now_ms, self.config.producer_id_expiration_ms);
        if expired > 0 {
            tracing::debug!(dir = %self.dir.display(), expired, "producer ids expired");
        }
        let segment_ms = self.config.segment_ms;
        if self
            .active
            .roll_base_ms()
            .is_some_and(|base| now_ms.saturating_sub(base) > segment_ms)
        {
            self.roll()?;
        }
        let summaries: Vec<SegmentSummary> = self
            .segments()
            .map(|s| SegmentSummary {
                size_bytes: s.size_bytes(),
                max_timestamp: s.max_timestamp(),
                is_active: std::ptr::eq(s, &self.active),
            })
            .collect();
        // Only segments that end at or below the high watermark may go.
        let below_hw = self
            .segments()
            .take_while(|s| s.next_offset() <= high_watermark)
            .count();
        let count = deletable_segments(
            &summaries,
            self.config.retention_ms,
            self.config.retention_bytes,
            now_ms,
        )
        .min(below_hw);
        if count == 0 {
            return Ok(0);
        }
        if count > self.sealed.len() {
            self.roll()?;
        }
        let deleted = self.delete_oldest_segments(count)?;
        let new_start = self
            .sealed
            .values()
            .next()
            .map_or(self.active.base_offset(), |s| s.base_offset());
        if new_start > self.log_start_offset {
            self.snapshot_producers_past(new_start)?;
            self.set_log_start_offset(new_start)?;
        }
        Ok(deleted)
    }

    fn delete_oldest_segments(&mut self, count: usize) -> Result<usize, StorageError> {
        let mut deleted = 0;
        while deleted < count {
            let Some((_, segment)) = self.sealed.pop_first() else {
                break;
            };
            tracing::info!(dir = %self.dir.display(), base_offset = segment.base_offset(), "deleting segment");
            segment.delete()?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Moves the log start offset forward (DeleteRecords), deleting segments wholly below it.
    pub fn advance_log_start_offset(&mut self, offset: i64) -> Result<(), StorageError> {
        let log_end = self.log_end_offset();
        if offset > log_end {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(());
        }
        if !self.active.is_empty() && self.active.next_offset() <= offset {
            self.roll()?;
        }
        let wholly_below = self
            .sealed
            .values()
            .take_while(|s| s.next_offset() <= offset)
            .count();
        self.delete_oldest_segments(wholly_below)?;
        self.snapshot_producers_past(offset)?;
        self.set_log_start_offset(offset)?;
        Ok(())
    }

    /// Producers keep their state when the log start passes their batches (see
    /// `producer_state`), and a reopen uses a snapshot only at or above the log start: before
    /// the start moves to `new_start`, a snapshot is written at the log end if none is at or
    /// above it, so a crash at any point finds one. (Retention's usually exists: the roll that
    /// started the first remaining segment wrote it; a crash between that roll's new segment
    /// and its snapshot is the exception.)
    fn snapshot_producers_past(&mut self, new_start: i64) -> Result<(), StorageError> {
        if !self.producers.is_empty()
            && snapshot::list(&self.dir)?
                .last()
                .is_none_or(|&latest| latest < new_start)
        {
            self.write_snapshot()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(size_bytes: u64, max_timestamp: i64, is_active: bool) -> SegmentSummary {
        SegmentSummary {
            size_bytes,
            max_timestamp,
            is_active,
        }
    }

    #[test]
    fn by_time_stops_at_first_young_segment() {
        let segs = [
            seg(10, 100, false),
            seg(10, 500, false),
            seg(10, 200, false),
            seg(10, 100, true),
        ];
        assert_eq!(deletable_segments(&segs, 1000, -1, 1300), 1);
        assert_eq!(deletable_segments(&segs, 1000, -1, 1501), 4);
        assert_eq!(deletable_segments(&segs, -1, -1, i64::MAX), 0);
        let empty_active = [seg(10, 100, false), seg(0, -1, true)];
        assert_eq!(deletable_segments(&empty_active, 0, -1, 10_000), 1);
    }

    #[test]
    fn by_bytes_keeps_at_least_the_limit_and_the_active_segment() {
        let segs = [
            seg(10, 1, false),
            seg(10, 1, false),
            seg(10, 1, false),
            seg(10, 1, true),
        ];
        assert_eq!(deletable_segments(&segs, -1, 25, 0), 1);
        assert_eq!(deletable_segments(&segs, -1, 20, 0), 2);
        assert_eq!(deletable_segments(&segs, -1, 0, 0), 3);
        assert_eq!(deletable_segments(&segs, -1, 40, 0), 0);
    }
}
