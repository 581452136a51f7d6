//! `LeaderEpochCache`: the (leader epoch, start offset) entries of one partition, with the
//! semantics of Kafka's `LeaderEpochFileCache` (assign, endOffsetFor, truncateFromEnd,
//! truncateFromStart).
//!
//! Invariants: epochs strictly increase along the list and so do start offsets; every epoch and
//! start offset is >= 0. An entry (e, s) says that epoch e's first batch starts at offset s (or,
//! for the first entry after the log start moved, that the log start lies in epoch e); epoch e's
//! offsets end where the next entry starts, or at the log end for the latest entry.

/// Kafka's `UNDEFINED_EPOCH` (`RecordBatch.NO_PARTITION_LEADER_EPOCH`).
pub(crate) const UNDEFINED_EPOCH: i32 = -1;

/// The epoch entries of one partition, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LeaderEpochCache {
    /// (epoch, start offset), both strictly increasing.
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochCache {
    /// A cache holding `entries` as they are; `None` if they break the invariants (a corrupt or
    /// hand-edited checkpoint, which is then rebuilt from the log).
    pub(crate) fn from_entries(entries: Vec<(i32, i64)>) -> Option<LeaderEpochCache> {
        let non_negative = entries.iter().all(|(e, s)| *e >= 0 && *s >= 0);
        let increasing = entries
            .windows(2)
            .all(|w| matches!(w, [(e0, s0), (e1, s1)] if e0 < e1 && s0 < s1));
        (non_negative && increasing).then_some(LeaderEpochCache { entries })
    }

    pub(crate) fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|(e, _)| *e)
    }

    /// Kafka's `assign(epoch, startOffset)`: records the entry unless the latest entry already
    /// has this epoch at an offset <= `start_offset`; entries that would break monotonicity (an
    /// epoch >= `epoch` or a start >= `start_offset`) are dropped first. Negative input is
    /// ignored (Kafka throws). Returns whether the cache changed.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        let needed = self
            .entries
            .last()
            .is_none_or(|(e, s)| epoch != *e || start_offset < *s);
        if !needed {
            return false;
        }
        while self
            .entries
            .last()
            .is_some_and(|(e, s)| *e >= epoch || *s >= start_offset)
        {
            self.entries.pop();
        }
        self.entries.push((epoch, start_offset));
        true
    }

    /// What appends do: records `epoch` from `start_offset` only if it is newer than the latest
    /// epoch (a leader change); older or undefined epochs change nothing.
    pub(crate) fn assign_if_newer(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return false;
        }
        self.assign(epoch, start_offset)
    }

    /// Kafka's `endOffsetFor`: the largest epoch <= `requested` and the start offset of the
    /// first epoch above `requested` (the log end when `requested` is the latest epoch). When
    /// `requested` is below every known epoch, `requested` itself and the first entry's start.
    /// `None` (Kafka's `(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)`) for an undefined epoch, an
    /// empty cache, or an epoch above the latest.
    pub(crate) fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        if requested == UNDEFINED_EPOCH {
            return None;
        }
        if self.latest_epoch() == Some(requested) {
            return Some((requested, log_end_offset));
        }
        let higher = self.entries.iter().find(|(e, _)| *e > requested)?;
        let floor = self.entries.iter().rev().find(|(e, _)| *e <= requested);
        Some(match floor {
            Some((epoch, _)) => (*epoch, higher.1),
            None => (requested, higher.1),
        })
    }

    /// Kafka's `epochForOffset`: the epoch whose offsets hold `offset` (the last entry starting
    /// at or below it); `None` below the first entry or with no entries.
    pub(crate) fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.entries
            .iter()
            .rev()
            .find(|(_, s)| *s <= offset)
            .map(|(e, _)| *e)
    }

    /// Kafka's `truncateFromEnd`: drops every entry starting at or after `end_offset` (the log
    /// was truncated there). Negative offsets change nothing. Returns whether anything went.
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        if end_offset < 0 {
            return false;
        }
        let before = self.entries.len();
        while self.entries.last().is_some_and(|(_, s)| *s >= end_offset) {
            self.entries.pop();
        }
        self.entries.len() != before
    }

    /// Kafka's `truncateFromStart`: the log now starts at `start_offset`; entries starting at or
    /// below it go, and the last of them comes back starting at `start_offset` (so the epoch
    /// holding the new log start stays known). Returns whether the entries changed.
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let removed = self
            .entries
            .iter()
            .take_while(|(_, s)| *s <= start_offset)
            .count();
        let Some(&(epoch, old_start)) = removed.checked_sub(1).and_then(|i| self.entries.get(i))
        else {
            return false;
        };
        self.entries.drain(..removed);
        self.entries.insert(0, (epoch, start_offset));
        removed > 1 || old_start != start_offset
    }

    pub(crate) fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! Mirrors Kafka's `LeaderEpochFileCacheTest` (same names, same numbers); Kafka's
    //! `(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)` is `None` here.

    use super::*;

    /// (epoch, start offset) entries.
    type Entries = &'static [(i32, i64)];
    /// (requested epoch, log end offset, expected answer).
    type Query = (i32, i64, Option<(i32, i64)>);

    fn cache(assigns: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::default();
        for (e, s) in assigns {
            c.assign(*e, *s);
        }
        c
    }

    /// One row: assigns, then queries (requested epoch, log end) → expected answer.
    struct EndOffsetCase {
        name: &'static str,
        assigns: Entries,
        queries: &'static [Query],
    }

    #[test]
    fn end_offset_for_matches_kafka() {
        let cases = [
            EndOffsetCase {
                name: "shouldAddEpochAndMessageOffsetToCache",
                assigns: &[(2, 10)],
                queries: &[(2, 11, Some((2, 11)))],
            },
            EndOffsetCase {
                name: "shouldReturnLogEndOffsetIfLatestEpochRequested",
                assigns: &[(2, 11), (2, 12)],
                queries: &[(2, 14, Some((2, 14)))],
            },
            EndOffsetCase {
                name: "shouldReturnUndefinedOffsetIfUndefinedEpochRequested",
                assigns: &[(2, 11), (3, 12)],
                queries: &[(UNDEFINED_EPOCH, 0, None)],
            },
            EndOffsetCase {
                name: "shouldReturnUnsupportedIfNoEpochRecorded",
                assigns: &[],
                queries: &[(0, 0, None)],
            },
            EndOffsetCase {
                name: "shouldReturnUnsupportedIfNoEpochRecordedAndUndefinedEpochRequested",
                assigns: &[],
                queries: &[(UNDEFINED_EPOCH, 73, None)],
            },
            EndOffsetCase {
                name: "shouldReturnFirstEpochIfRequestedEpochLessThanFirstEpoch",
                assigns: &[(5, 11), (6, 12), (7, 13)],
                queries: &[(4, 0, Some((4, 11)))],
            },
            EndOffsetCase {
                name: "shouldTruncateIfMatchingEpochButEarlierStartingOffset",
                assigns: &[(5, 11), (6, 12), (7, 13), (7, 12)],
                queries: &[(5, 0, Some((5, 12))), (6, 0, Some((5, 12)))],
            },
            EndOffsetCase {
                name: "shouldGetFirstOffsetOfSubsequentEpochWhenOffsetRequestedForPreviousEpoch",
                assigns: &[(1, 11), (1, 12), (2, 13), (2, 14), (3, 15), (3, 16)],
                queries: &[(2, 17, Some((2, 15)))],
            },
            EndOffsetCase {
                name: "shouldReturnNextAvailableEpochIfThereIsNoExactEpochForTheOneRequested",
                assigns: &[(0, 10), (2, 13), (4, 17)],
                queries: &[
                    (1, 0, Some((0, 13))),
                    (2, 0, Some((2, 17))),
                    (3, 0, Some((2, 17))),
                ],
            },
            EndOffsetCase {
                name: "shouldReturnInvalidOffsetIfEpochIsRequestedWhichIsNotCurrentlyTracked",
                assigns: &[(2, 100)],
                queries: &[(3, 100, None)],
            },
            EndOffsetCase {
                name: "shouldSupportEpochsThatDoNotStartFromZero",
                assigns: &[(2, 6)],
                queries: &[(2, 7, Some((2, 7)))],
            },
            EndOffsetCase {
                name: "shouldEnforceMonotonicallyIncreasingEpochs",
                assigns: &[(1, 5), (2, 6), (1, 7)],
                queries: &[(1, 8, Some((1, 8))), (2, 8, None)],
            },
            EndOffsetCase {
                name: "shouldIncreaseAndTrackEpochsAsLeadersChangeManyTimes (1)",
                assigns: &[(0, 0), (1, 0)],
                queries: &[
                    (1, 0, Some((1, 0))),
                    (0, 0, Some((0, 0))),
                    (1, 5, Some((1, 5))),
                    (0, 5, Some((0, 0))),
                ],
            },
            EndOffsetCase {
                name: "shouldIncreaseAndTrackEpochsAsLeadersChangeManyTimes (2)",
                assigns: &[(0, 0), (1, 0), (2, 5)],
                queries: &[
                    (2, 10, Some((2, 10))),
                    (1, 10, Some((1, 5))),
                    (0, 10, Some((0, 0))),
                ],
            },
            EndOffsetCase {
                name: "shouldIncreaseAndTrackEpochsAsFollowerReceivesManyMessages",
                assigns: &[
                    (0, 0),
                    (0, 1),
                    (0, 2),
                    (1, 3),
                    (1, 4),
                    (1, 5),
                    (2, 6),
                    (2, 7),
                    (2, 8),
                ],
                queries: &[
                    (2, 9, Some((2, 9))),
                    (0, 9, Some((0, 3))),
                    (1, 9, Some((1, 6))),
                ],
            },
            EndOffsetCase {
                name: "shouldFetchEndOffsetOfEmptyCache",
                assigns: &[],
                queries: &[(7, 0, None)],
            },
        ];
        for case in &cases {
            let c = cache(case.assigns);
            for (requested, log_end, expected) in case.queries {
                assert_eq!(
                    c.end_offset_for(*requested, *log_end),
                    *expected,
                    "{}: endOffsetFor({requested}, {log_end})",
                    case.name
                );
            }
        }
    }

    #[test]
    fn assign_matches_kafka() {
        let cases: [(&str, Entries, Entries); 6] = [
            (
                "shouldNotOverwriteLogEndOffsetForALeaderEpochOnceItHasBeenAssigned",
                &[(2, 9), (2, 10)],
                &[(2, 9)],
            ),
            (
                "shouldEnforceMonotonicallyIncreasingStartOffsets",
                &[(2, 9), (3, 9)],
                &[(3, 9)],
            ),
            (
                "shouldNotOverwriteOffsetForALeaderEpochOnceItHasBeenAssigned",
                &[(2, 6), (2, 10)],
                &[(2, 6)],
            ),
            (
                "shouldNotUpdateEpochAndStartOffsetIfItDidNotChange",
                &[(2, 6), (2, 7)],
                &[(2, 6)],
            ),
            (
                "shouldEnforceMonotonicallyIncreasingEpochs",
                &[(1, 5), (2, 6), (1, 7)],
                &[(1, 7)],
            ),
            (
                "shouldEnforceOffsetsIncreaseMonotonically",
                &[(2, 6), (3, 5)],
                &[(3, 5)],
            ),
        ];
        for (name, assigns, expected) in cases {
            assert_eq!(cache(assigns).entries(), expected, "{name}");
        }
        assert_eq!(cache(&[(1, 5), (2, 6), (1, 7)]).latest_epoch(), Some(1));
        assert_eq!(LeaderEpochCache::default().latest_epoch(), None);
    }

    #[test]
    fn truncation_matches_kafka() {
        let base: Entries = &[(2, 6), (3, 8), (4, 11)];
        // (name, from_end?, offset, expected entries, changed)
        let cases: [(&str, bool, i64, Entries, bool); 11] = [
            (
                "shouldDropEntriesOnEpochBoundaryWhenRemovingLatestEntries",
                true,
                8,
                &[(2, 6)],
                true,
            ),
            (
                "shouldDropEntriesBetweenEpochBoundaryWhenRemovingNewest",
                true,
                9,
                &[(2, 6), (3, 8)],
                true,
            ),
            (
                "shouldNotResetEpochHistoryTailIfUndefinedPassed",
                true,
                -1,
                base,
                false,
            ),
            ("end past everything", true, 12, base, false),
            (
                "shouldPreserveResetOffsetOnClearEarliestIfOneExists",
                false,
                8,
                &[(3, 8), (4, 11)],
                true,
            ),
            (
                "shouldNotClearAnythingIfOffsetTooEarly",
                false,
                1,
                base,
                false,
            ),
            (
                "shouldNotClearAnythingIfOffsetIsFirstOffset",
                false,
                6,
                base,
                false,
            ),
            (
                "shouldRetainLatestEpochOnClearAllEarliest",
                false,
                11,
                &[(4, 11)],
                true,
            ),
            (
                "shouldUpdateOffsetBetweenEpochBoundariesOnClearEarliest",
                false,
                9,
                &[(3, 9), (4, 11)],
                true,
            ),
            (
                "shouldRetainLatestEpochOnClearAllEarliestAndUpdateItsOffset",
                false,
                15,
                &[(4, 15)],
                true,
            ),
            (
                "shouldNotResetEpochHistoryHeadIfUndefinedPassed",
                false,
                -1,
                base,
                false,
            ),
        ];
        for (name, from_end, offset, expected, changed) in cases {
            let mut c = cache(base);
            let did = if from_end {
                c.truncate_from_end(offset)
            } else {
                c.truncate_from_start(offset)
            };
            assert_eq!(c.entries(), expected, "{name}");
            assert_eq!(did, changed, "{name}: changed");
        }
        // shouldUpdateOffsetBetweenFirstTwoEpochBoundariesOnClearEarliest
        let mut c = cache(&[(0, 0), (1, 7), (2, 10)]);
        c.truncate_from_start(5);
        assert_eq!(c.entries(), &[(0, 5), (1, 7), (2, 10)]);
        // testPreviousEpoch's truncation: 18 drops (10, 20).
        let mut c = cache(&[(2, 10), (4, 15), (10, 20)]);
        c.truncate_from_end(18);
        assert_eq!(c.entries(), &[(2, 10), (4, 15)]);
        // Empty caches: shouldClearEarliestOnEmptyCache, shouldClearLatestOnEmptyCache.
        let mut empty = LeaderEpochCache::default();
        assert!(!empty.truncate_from_start(7));
        assert!(!empty.truncate_from_end(7));
        // shouldClearAllEntries
        let mut c = cache(base);
        assert!(c.clear());
        assert!(c.entries().is_empty());
    }

    #[test]
    fn assign_if_newer_only_records_leader_changes() {
        let mut c = LeaderEpochCache::default();
        assert!(!c.assign_if_newer(-1, 0), "no epoch (old clients' batches)");
        assert!(c.assign_if_newer(3, 0));
        assert!(!c.assign_if_newer(3, 5));
        assert!(
            !c.assign_if_newer(2, 7),
            "older epochs never rewrite history"
        );
        assert!(c.assign_if_newer(5, 9));
        assert_eq!(c.entries(), &[(3, 0), (5, 9)]);
    }

    #[test]
    fn from_entries_checks_the_invariants() {
        assert!(LeaderEpochCache::from_entries(vec![(0, 0), (2, 5)]).is_some());
        assert!(LeaderEpochCache::from_entries(vec![]).is_some());
        assert!(LeaderEpochCache::from_entries(vec![(2, 0), (2, 5)]).is_none());
        assert!(LeaderEpochCache::from_entries(vec![(1, 5), (2, 5)]).is_none());
        assert!(LeaderEpochCache::from_entries(vec![(3, 0), (2, 5)]).is_none());
        assert!(LeaderEpochCache::from_entries(vec![(-1, 0)]).is_none());
        assert!(LeaderEpochCache::from_entries(vec![(1, -4)]).is_none());
    }

    /// Kafka's `testEpochForOffset` and the empty cache.
    #[test]
    fn epoch_for_offset_is_the_epoch_whose_range_holds_it() {
        let c = cache(&[(1, 0), (2, 5), (3, 10)]);
        let found: Vec<_> = [-1, 0, 4, 5, 9, 10, 100]
            .iter()
            .map(|&o| c.epoch_for_offset(o))
            .collect();
        assert_eq!(
            found,
            vec![None, Some(1), Some(1), Some(2), Some(2), Some(3), Some(3)]
        );
        assert_eq!(cache(&[(4, 7)]).epoch_for_offset(6), None);
        assert_eq!(LeaderEpochCache::default().epoch_for_offset(0), None);
    }
}
