//! The OffsetForLeaderEpoch answer of a leader replica: the log's leader-epoch cache seen as
//! Kafka's leader sees it.
//!
//! Kafka's `Partition.makeLeader` assigns (leader epoch, log end offset) in the epoch cache as
//! soon as a replica becomes leader, before any batch of that epoch is written, so a fresh
//! leader answers for its own epoch. Sluice records it too, but from the blocking pool a
//! moment after the leadership starts (`Partition::record_epoch_as_leader`; at open for a
//! single node), and an append records its batch's epoch if that has not happened yet; in
//! between, this module adds the missing entry virtually so the answers match Kafka's.

/// Kafka's `LeaderEpochFileCache.endOffsetFor` over the log's entries plus
/// `(leader_epoch, log_end_offset)` when the log has no entry of `leader_epoch` yet
/// (`log_latest_epoch` older or absent). `log_answer` is `Log::end_offset_for_epoch(requested)`.
/// `None` is Kafka's (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET) = (-1, -1).
pub(super) fn end_offset_as_leader(
    requested: i32,
    log_answer: Option<(i32, i64)>,
    log_latest_epoch: Option<i32>,
    leader_epoch: i32,
    log_end_offset: i64,
) -> Option<(i32, i64)> {
    let leader_entry_missing =
        leader_epoch >= 0 && log_latest_epoch.is_none_or(|latest| latest < leader_epoch);
    if !leader_entry_missing || requested == -1 {
        return log_answer;
    }
    if requested == leader_epoch {
        return Some((leader_epoch, log_end_offset));
    }
    if requested > leader_epoch {
        return None;
    }
    // Below the leader epoch: the log's answer stands where it has one (the first entry above
    // `requested` is in the log, or `requested` is the log's latest, which ends at the log end
    // offset either way). Otherwise every log entry is below `requested` and the first entry
    // above it is the virtual one, starting at the log end offset.
    log_answer.or_else(|| {
        let floor = log_latest_epoch
            .filter(|&latest| latest <= requested)
            .unwrap_or(requested);
        Some((floor, log_end_offset))
    })
}

/// Kafka's `LeaderEpochFileCache.epochForOffset(offset)` on a leader: the log's answer
/// (`log_answer`), or `leader_epoch` for an offset at or past the log end while the log has no
/// entry of `leader_epoch` yet (its virtual entry starts at the log end). -1: none.
pub(super) fn epoch_for_offset_as_leader(
    offset: i64,
    log_answer: Option<i32>,
    log_latest_epoch: Option<i32>,
    leader_epoch: i32,
    log_end_offset: i64,
) -> i32 {
    let leader_entry_missing =
        leader_epoch >= 0 && log_latest_epoch.is_none_or(|latest| latest < leader_epoch);
    if leader_entry_missing && offset >= log_end_offset {
        return leader_epoch;
    }
    log_answer.unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::{end_offset_as_leader, epoch_for_offset_as_leader};

    #[test]
    fn epoch_for_offset_adds_the_leaders_missing_entry_at_the_log_end() {
        // Fresh leader at epoch 0 of an empty log: Kafka assigned (0, 0).
        assert_eq!(epoch_for_offset_as_leader(0, None, None, 0, 0), 0);
        // Entries (1, 0); leader epoch 3 not written yet; LEO 8.
        assert_eq!(epoch_for_offset_as_leader(2, Some(1), Some(1), 3, 8), 1);
        assert_eq!(epoch_for_offset_as_leader(8, Some(1), Some(1), 3, 8), 3);
        // The log holds the leader's epoch: its answers stand.
        assert_eq!(epoch_for_offset_as_leader(8, Some(3), Some(3), 3, 8), 3);
        assert_eq!(epoch_for_offset_as_leader(0, None, Some(3), 3, 8), -1);
    }

    #[test]
    fn empty_log_of_a_fresh_leader() {
        // Kafka: makeLeader assigned (0, 0); endOffsetFor(0) = (0, LEO), above = undefined.
        assert_eq!(end_offset_as_leader(0, None, None, 0, 0), Some((0, 0)));
        assert_eq!(end_offset_as_leader(5, None, None, 0, 0), None);
        assert_eq!(end_offset_as_leader(-1, None, None, 0, 0), None);
        // Leader epoch 3, nothing written: older epochs end where epoch 3 starts.
        assert_eq!(end_offset_as_leader(1, None, None, 3, 7), Some((1, 7)));
    }

    #[test]
    fn the_log_already_holds_the_leader_epoch() {
        // Entries (0, 0), (3, 4); leader epoch 3; LEO 10: the log's answers pass unchanged.
        let log = |requested| match requested {
            0..=2 => Some((0, 4)),
            3 => Some((3, 10)),
            _ => None,
        };
        for requested in [-1, 0, 2, 3, 4, 9] {
            assert_eq!(
                end_offset_as_leader(requested, log(requested), Some(3), 3, 10),
                log(requested),
                "{requested}"
            );
        }
    }

    #[test]
    fn a_new_leader_epoch_without_batches_yet() {
        // Entries (0, 0), (3, 4); LEO 10; leader epoch 5 (no batch of it yet): the cache
        // Kafka holds is (0, 0), (3, 4), (5, 10).
        let log = |requested| match requested {
            0..=2 => Some((0, 4)),
            3 => Some((3, 10)),
            _ => None,
        };
        let answer = |requested| end_offset_as_leader(requested, log(requested), Some(3), 5, 10);
        assert_eq!(answer(0), Some((0, 4)));
        assert_eq!(answer(3), Some((3, 10)));
        assert_eq!(answer(4), Some((3, 10)));
        assert_eq!(answer(5), Some((5, 10)));
        assert_eq!(answer(6), None);
        assert_eq!(answer(-1), None);
    }
}
