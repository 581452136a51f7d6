//! Planning a cleaning (Kafka's `LogCleanerManager` decisions), pure over segment summaries:
//! where the cleanable range ends, whether the log is dirty enough, and how the segments below
//! that end are grouped into cleaned segments.
//!
//! Invariants: the active segment is never cleanable; the cleanable end is a segment base
//! offset; groups are runs of consecutive segments covering the range exactly once.

use std::ops::Range;

/// What planning needs to know about a sealed segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentStat {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size_bytes: u64,
    /// -1 when the segment has no timestamps.
    pub max_timestamp: i64,
}

/// Kafka's `firstUncleanableDirtyOffset`: the active segment's base, or the base of the first
/// sealed segment holding a record younger than `min_compaction_lag_ms`.
pub(crate) fn first_uncleanable_offset(
    sealed: &[SegmentStat],
    active_base: i64,
    min_compaction_lag_ms: i64,
    now_ms: i64,
) -> i64 {
    if min_compaction_lag_ms <= 0 {
        return active_base;
    }
    let cutoff = now_ms.saturating_sub(min_compaction_lag_ms);
    sealed
        .iter()
        .find(|s| s.max_timestamp > cutoff)
        .map_or(active_base, |s| s.base_offset)
}

/// (clean bytes, dirty bytes): sizes of the sealed segments below `first_dirty` and of those in
/// `[first_dirty, end)` (a segment holding `first_dirty` counts as dirty).
pub(crate) fn clean_and_dirty_bytes(
    sealed: &[SegmentStat],
    first_dirty: i64,
    end: i64,
) -> (u64, u64) {
    let mut clean = 0u64;
    let mut dirty = 0u64;
    for s in sealed.iter().filter(|s| s.base_offset < end) {
        if s.next_offset <= first_dirty {
            clean = clean.saturating_add(s.size_bytes);
        } else {
            dirty = dirty.saturating_add(s.size_bytes);
        }
    }
    (clean, dirty)
}

/// Kafka's cleanable ratio: dirty / (clean + dirty); 0 for nothing.
pub(crate) fn dirty_ratio(clean_bytes: u64, dirty_bytes: u64) -> f64 {
    let total = clean_bytes.saturating_add(dirty_bytes);
    if total == 0 {
        0.0
    } else {
        dirty_bytes as f64 / total as f64
    }
}

/// Kafka's `groupSegmentsBySize`: runs of consecutive segments (indexes into `segments`) whose
/// summed size stays within `max_bytes` and whose offsets fit one segment's 32-bit deltas. Every
/// run holds at least one segment.
pub(crate) fn group_segments(segments: &[SegmentStat], max_bytes: u64) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < segments.len() {
        let Some(first) = segments.get(start) else {
            break;
        };
        let mut end = start + 1;
        let mut size = first.size_bytes;
        while let Some(next) = segments.get(end) {
            let fits_bytes = size.saturating_add(next.size_bytes) <= max_bytes;
            let fits_offsets =
                next.next_offset.saturating_sub(first.base_offset) <= i64::from(i32::MAX);
            if !(fits_bytes && fits_offsets) {
                break;
            }
            size = size.saturating_add(next.size_bytes);
            end += 1;
        }
        groups.push(start..end);
        start = end;
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base_offset: i64, next_offset: i64, size_bytes: u64, max_timestamp: i64) -> SegmentStat {
        SegmentStat {
            base_offset,
            next_offset,
            size_bytes,
            max_timestamp,
        }
    }

    #[test]
    fn compaction_lag_stops_at_the_first_young_segment() {
        let segs = [seg(0, 10, 1, 100), seg(10, 20, 1, 900), seg(20, 30, 1, 200)];
        assert_eq!(first_uncleanable_offset(&segs, 30, 0, 1000), 30);
        assert_eq!(first_uncleanable_offset(&segs, 30, 500, 1000), 10);
        assert_eq!(first_uncleanable_offset(&segs, 30, 50, 1000), 30);
        assert_eq!(first_uncleanable_offset(&segs, 30, 5000, 1000), 0);
    }

    #[test]
    fn ratio_counts_segments_from_the_first_dirty_one() {
        let segs = [seg(0, 10, 100, 1), seg(10, 20, 100, 1), seg(20, 30, 200, 1)];
        assert_eq!(clean_and_dirty_bytes(&segs, 10, 30), (100, 300));
        assert_eq!(clean_and_dirty_bytes(&segs, 15, 20), (100, 100));
        assert_eq!(clean_and_dirty_bytes(&segs, 30, 30), (400, 0));
        assert!((dirty_ratio(100, 300) - 0.75).abs() < 1e-9);
        assert_eq!(dirty_ratio(0, 0), 0.0);
    }

    #[test]
    fn groups_fit_the_segment_size_and_cover_everything() {
        let segs = [
            seg(0, 10, 40, 1),
            seg(10, 20, 40, 1),
            seg(20, 30, 40, 1),
            seg(30, 40, 200, 1),
            seg(40, 50, 10, 1),
        ];
        assert_eq!(group_segments(&segs, 100), vec![0..2, 2..3, 3..4, 4..5]);
        assert_eq!(group_segments(&segs, 1000), vec![0..5]);
        assert!(group_segments(&[], 100).is_empty());
        let far = [
            seg(0, 10, 1, 1),
            seg(i64::from(i32::MAX), i64::from(i32::MAX) + 5, 1, 1),
        ];
        assert_eq!(group_segments(&far, 1000), vec![0..1, 1..2]);
    }
}
