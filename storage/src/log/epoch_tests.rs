//! Tests of the leader epoch entries of a `Log`: leader and follower appends, truncation,
//! retention and log-start moves, reopening after a close or a crash, and rebuilding a missing
//! or corrupt `leader-epoch-checkpoint`.

#![allow(clippy::unwrap_used)]

use super::tests::{batch, batch_offsets, idempotent, small_config};
use super::*;
use crate::batch::builder::BatchBuilder;
use crate::batch::header::{set_base_offset, ATTRIBUTES_AT};
use crate::segment::file_name::{path_for, LEADER_EPOCH_CHECKPOINT_FILE};

fn checkpoint_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(LEADER_EPOCH_CHECKPOINT_FILE)).unwrap()
}

/// Stored partitionLeaderEpoch of every batch, in order.
fn stored_epochs(log: &Log) -> Vec<i32> {
    let r = log
        .read(log.log_start_offset(), i64::MAX, usize::MAX, false)
        .unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < r.records.len() {
        let h = BatchHeader::parse(&r.records[pos..]).unwrap();
        out.push(h.partition_leader_epoch());
        pos += h.total_size();
    }
    out
}

/// A replicated batch: `records` records at `base`, stamped with `epoch` by its leader.
fn follower_batch(base: i64, records: usize, epoch: i32) -> Vec<u8> {
    let mut b = batch(records, 1000 + base);
    set_base_offset(&mut b, base).unwrap();
    crate::batch::header::set_partition_leader_epoch(&mut b, epoch).unwrap();
    b
}

/// Leader appends: epochs 0, 0, 3, 3, 5 over batches of two records (across segment rolls).
fn log_with_epochs(dir: &Path) -> Log {
    let mut log = Log::open(dir, small_config(), 0).unwrap();
    for epoch in [0, 0, 3, 3, 5, 5, 5, 5] {
        log.append(&batch(2, 0), epoch, 0).unwrap();
    }
    assert!(log.segment_count() > 1);
    log
}

#[test]
fn epoch_transitions_across_appends() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(log.end_offset_for_epoch(0), None);
    assert!(
        !dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE).exists(),
        "a new log has no epoch to write (a missing file reads back as the same empty cache)"
    );
    for epoch in [0, 0, 3, 3, 5, 5, 5, 5] {
        log.append(&batch(2, 0), epoch, 0).unwrap();
    }
    assert!(log.segment_count() > 1);
    assert_eq!(log.epoch_entries(), vec![(0, 0), (3, 4), (5, 8)]);
    assert_eq!(log.latest_epoch(), Some(5));
    assert_eq!(checkpoint_text(dir.path()), "0\n3\n0 0\n3 4\n5 8\n");
    assert_eq!(stored_epochs(&log), vec![0, 0, 3, 3, 5, 5, 5, 5]);
    // OffsetsForLeaderEpoch answers.
    assert_eq!(log.end_offset_for_epoch(0), Some((0, 4)));
    assert_eq!(log.end_offset_for_epoch(1), Some((0, 4)));
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 8)));
    assert_eq!(log.end_offset_for_epoch(4), Some((3, 8)));
    assert_eq!(log.end_offset_for_epoch(5), Some((5, 16)));
    assert_eq!(log.end_offset_for_epoch(6), None);
    assert_eq!(log.end_offset_for_epoch(-1), None);
    // A stale leader's epoch is stored in the batch but changes no entry.
    log.append(&batch(1, 0), 4, 0).unwrap();
    assert_eq!(log.epoch_entries(), vec![(0, 0), (3, 4), (5, 8)]);
    assert_eq!(log.end_offset_for_epoch(5), Some((5, 17)));
    // An idempotent retry is not written, so its (newer) epoch is not recorded either.
    log.append(&idempotent(7, 0, 0, 1), 5, 0).unwrap();
    assert!(matches!(
        log.append(&idempotent(7, 0, 0, 1), 9, 0).unwrap(),
        AppendOutcome::Duplicate { .. }
    ));
    assert_eq!(log.latest_epoch(), Some(5));
    // A rejected batch records nothing.
    let mut bad = batch(1, 0);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(log.append(&bad, 11, 0).is_err());
    assert_eq!(log.latest_epoch(), Some(5));
    log.append(&batch(1, 0), 6, 0).unwrap();
    assert_eq!(log.epoch_entries(), vec![(0, 0), (3, 4), (5, 8), (6, 18)]);
}

#[test]
fn follower_appends_with_mixed_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    let mut payload = Vec::new();
    // (base, records, epoch): no epoch (old format producer path), 1, 1, 2, an older 1, 4.
    let batches = [
        (0, 1, -1),
        (1, 2, 1),
        (3, 1, 1),
        (4, 2, 2),
        (6, 1, 1),
        (7, 3, 4),
    ];
    for (base, records, epoch) in batches {
        payload.extend(follower_batch(base, records, epoch));
    }
    log.append_as_follower(&payload).unwrap();
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(log.epoch_entries(), vec![(1, 1), (2, 4), (4, 7)]);
    assert_eq!(stored_epochs(&log), vec![-1, 1, 1, 2, 1, 4]);
    assert_eq!(checkpoint_text(dir.path()), "0\n3\n1 1\n2 4\n4 7\n");
    assert_eq!(log.end_offset_for_epoch(0), Some((0, 1)));
    assert_eq!(log.end_offset_for_epoch(3), Some((2, 7)));
    // A payload whose second batch is corrupt is refused whole: no epoch from its first batch.
    let mut refused = follower_batch(10, 1, 8);
    let mut bad = follower_batch(11, 1, 9);
    bad[ATTRIBUTES_AT + 5] ^= 1;
    refused.extend(bad);
    assert!(log.append_as_follower(&refused).is_err());
    assert_eq!(log.epoch_entries(), vec![(1, 1), (2, 4), (4, 7)]);
    assert_eq!(checkpoint_text(dir.path()), "0\n3\n1 1\n2 4\n4 7\n");
    // Leader and follower appends share one history.
    log.append(&batch(1, 0), 6, 0).unwrap();
    log.append_as_follower(&follower_batch(11, 2, 7)).unwrap();
    assert_eq!(
        log.epoch_entries(),
        vec![(1, 1), (2, 4), (4, 7), (6, 10), (7, 11)]
    );
}

#[test]
fn truncation_drops_entries_from_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_with_epochs(dir.path());
    // Inside epoch 5: its entry stays (it still has offsets 8..9).
    log.truncate_to(10).unwrap();
    assert_eq!(log.epoch_entries(), vec![(0, 0), (3, 4), (5, 8)]);
    assert_eq!(log.end_offset_for_epoch(5), Some((5, 10)));
    // On the boundary of epoch 5: it goes.
    log.truncate_to(8).unwrap();
    assert_eq!(log.epoch_entries(), vec![(0, 0), (3, 4)]);
    assert_eq!(checkpoint_text(dir.path()), "0\n2\n0 0\n3 4\n");
    // Mid-batch: the whole batch 4..5 goes, and with it epoch 3.
    log.truncate_to(5).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(log.epoch_entries(), vec![(0, 0)]);
    // A follower that diverged now takes the new leader's epoch 4 from offset 4.
    log.append_as_follower(&follower_batch(4, 2, 4)).unwrap();
    assert_eq!(log.epoch_entries(), vec![(0, 0), (4, 4)]);
    assert_eq!(log.end_offset_for_epoch(3), Some((0, 4)));
    // Truncating below the log start empties the log and its epochs.
    log.advance_log_start_offset(5).unwrap();
    log.truncate_to(2).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (2, 2));
    assert!(log.epoch_entries().is_empty());
    assert_eq!(checkpoint_text(dir.path()), "0\n0\n");
    log.append(&batch(1, 0), 9, 0).unwrap();
    assert_eq!(log.epoch_entries(), vec![(9, 2)]);
}

#[test]
fn retention_and_log_start_moves_truncate_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_with_epochs(dir.path());
    // DeleteRecords inside epoch 0: its entry now starts at the log start.
    log.advance_log_start_offset(1).unwrap();
    assert_eq!(log.epoch_entries(), vec![(0, 1), (3, 4), (5, 8)]);
    // Past epoch 0 and into epoch 3.
    log.advance_log_start_offset(6).unwrap();
    assert_eq!(log.epoch_entries(), vec![(3, 6), (5, 8)]);
    assert_eq!(checkpoint_text(dir.path()), "0\n2\n3 6\n5 8\n");
    assert_eq!(log.end_offset_for_epoch(0), Some((0, 6)));
    // Retention by bytes deletes whole segments: the first entry follows the new log start.
    log.set_config(LogConfig {
        retention_bytes: 1,
        ..small_config()
    });
    assert!(log.apply_retention(0).unwrap() > 0);
    let start = log.log_start_offset();
    assert!(start >= 8, "log start {start}");
    assert_eq!(log.epoch_entries(), vec![(5, start)]);
    // Retention by time removes everything: the latest epoch is kept at the (empty) log start.
    log.set_config(LogConfig {
        retention_ms: 0,
        ..small_config()
    });
    log.apply_retention(i64::MAX / 2).unwrap();
    assert_eq!(log.log_start_offset(), 16);
    assert_eq!(log.log_end_offset(), 16);
    assert_eq!(log.epoch_entries(), vec![(5, 16)]);
    assert_eq!(log.end_offset_for_epoch(5), Some((5, 16)));
}

#[test]
fn epochs_survive_clean_and_crash_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_with_epochs(dir.path());
    log.advance_log_start_offset(1).unwrap();
    let entries = log.epoch_entries();
    log.close().unwrap();
    let log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.epoch_entries(), entries);
    drop(log);
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.epoch_entries(), entries);
    // Crash after a new epoch's batch reached the page cache but not the disk: recovery cuts
    // the torn batch and with it the epoch's entry (the checkpoint was written first).
    log.append(&batch(2, 0), 7, 0).unwrap();
    assert_eq!(log.latest_epoch(), Some(7));
    let active = path_for(dir.path(), log.active.base_offset(), "log");
    let torn = log.active.size_bytes() - 3;
    drop(log);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&active)
        .unwrap()
        .set_len(torn)
        .unwrap();
    let log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 16);
    assert_eq!(log.epoch_entries(), entries);
    assert_eq!(checkpoint_text(dir.path()), "0\n3\n0 1\n3 4\n5 8\n");
}

#[test]
fn crash_with_a_lost_checkpoint_update_recovers_the_epoch_from_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_with_epochs(dir.path());
    log.append(&batch(2, 0), 7, 0).unwrap();
    let entries = log.epoch_entries();
    assert_eq!(entries.last(), Some(&(7, 16)));
    drop(log);
    // As if the rename of the last checkpoint had not reached the disk.
    std::fs::write(
        dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE),
        "0\n3\n0 0\n3 4\n5 8\n",
    )
    .unwrap();
    let log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.epoch_entries(), entries);
    assert_eq!(checkpoint_text(dir.path()), "0\n4\n0 0\n3 4\n5 8\n7 16\n");
}

#[test]
fn missing_or_corrupt_checkpoint_is_rebuilt_from_batch_headers() {
    let garbage: [&[u8]; 5] = [
        b"",
        b"1\n0\n",
        b"0\n2\n0 0\n",
        b"0\n2\n5 0\n3 4\n",
        &[0xff, 0x00, 0x13],
    ];
    for clean in [true, false] {
        for bad in garbage.iter().map(|g| Some(*g)).chain([None]) {
            let dir = tempfile::tempdir().unwrap();
            let mut log = log_with_epochs(dir.path());
            log.advance_log_start_offset(6).unwrap();
            let entries = log.epoch_entries();
            assert_eq!(entries, vec![(3, 6), (5, 8)]);
            if clean {
                log.close().unwrap();
            } else {
                drop(log);
            }
            let path = dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE);
            match bad {
                Some(bytes) => std::fs::write(&path, bytes).unwrap(),
                None => std::fs::remove_file(&path).unwrap(),
            }
            let log = Log::open(dir.path(), small_config(), 0).unwrap();
            assert_eq!(log.epoch_entries(), entries, "clean={clean} {bad:?}");
            assert_eq!(checkpoint_text(dir.path()), "0\n2\n3 6\n5 8\n");
        }
    }
}

#[test]
fn rebuild_skips_batches_without_an_epoch_and_older_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    let mut payload = Vec::new();
    for (base, epoch) in [(0, -1), (1, 2), (2, 1), (3, 2), (4, 6)] {
        payload.extend(follower_batch(base, 1, epoch));
    }
    log.append_as_follower(&payload).unwrap();
    let entries = log.epoch_entries();
    assert_eq!(entries, vec![(2, 1), (6, 4)]);
    drop(log);
    std::fs::remove_file(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE)).unwrap();
    let log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.epoch_entries(), entries);
    assert_eq!(
        batch_offsets(&log.read(0, i64::MAX, usize::MAX, false).unwrap().records).len(),
        5
    );
}

#[test]
fn builder_batches_default_to_no_epoch() {
    // Producers send partitionLeaderEpoch -1; only the broker's stamp gives it meaning.
    let b = BatchBuilder::new()
        .record(None, Some(b"x"), 1)
        .build()
        .unwrap();
    assert_eq!(BatchHeader::parse(&b).unwrap().partition_leader_epoch(), -1);
}

/// A leader's own epoch recorded before any batch (Kafka's `makeLeader`): written once at the
/// log end, and its batches then leave the checkpoint alone.
#[test]
fn an_epoch_assigned_before_its_first_batch_is_written_once() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    log.append(&batch(2, 1000), 0, 0).unwrap();
    assert!(log.assign_leader_epoch(4).unwrap());
    assert!(!log.assign_leader_epoch(4).unwrap(), "already recorded");
    assert!(!log.assign_leader_epoch(3).unwrap(), "older");
    assert_eq!(log.epoch_entries(), vec![(0, 0), (4, 2)]);
    assert_eq!(checkpoint_text(dir.path()), "0\n2\n0 0\n4 2\n");
    let inode = |dir: &Path| {
        std::fs::metadata(dir.join(LEADER_EPOCH_CHECKPOINT_FILE))
            .unwrap()
            .ino()
    };
    let written = inode(dir.path());
    log.append(&batch(2, 1000), 4, 0).unwrap();
    assert_eq!(inode(dir.path()), written, "the batch did not rewrite it");
    assert_eq!(log.end_offset_for_epoch(0), Some((0, 2)));
    assert_eq!(log.end_offset_for_epoch(4), Some((4, 4)));
    assert_eq!(stored_epochs(&log), vec![0, 4]);
    // It survives a crash (no close) like an entry written with a batch.
    drop(log);
    let log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.epoch_entries(), vec![(0, 0), (4, 2)]);
}

/// A follower of a leader at epoch 5 refuses a payload holding a batch stamped 6 (Kafka's
/// `hasHigherPartitionLeaderEpoch`): nothing of it is written, no epoch is recorded, and a
/// batch at the leader's epoch goes in after it.
#[test]
fn a_follower_refuses_a_batch_stamped_after_its_leaders_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    let mut payload = follower_batch(0, 2, 5);
    payload.extend(follower_batch(2, 1, 6));
    assert!(matches!(
        log.append_from_leader(&payload, 5),
        Err(StorageError::EpochAboveLeader {
            epoch: 6,
            leader_epoch: 5
        })
    ));
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.epoch_entries(), vec![]);
    log.append_from_leader(&follower_batch(0, 2, 5), 5).unwrap();
    assert_eq!(log.epoch_entries(), vec![(5, 0)]);
    assert_eq!(log.log_end_offset(), 2);
}

/// A follower whose log ends below its leader's log start restarts empty at that offset
/// (Kafka's `truncateFullyAndStartAt`), and the next batch from the leader goes in there; the
/// new start survives a reopen.
#[test]
fn truncating_fully_restarts_the_log_at_the_leaders_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_with_epochs(dir.path());
    log.truncate_fully_and_start_at(500).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 500));
    assert_eq!(log.epoch_entries(), vec![]);
    assert_eq!(log.segment_count(), 1);
    log.append_from_leader(&follower_batch(500, 2, 9), 9)
        .unwrap();
    assert_eq!(log.epoch_entries(), vec![(9, 500)]);
    log.close().unwrap();
    let log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 502));
    assert_eq!(stored_epochs(&log), vec![9]);
}

/// Truncating at the log end drops an epoch entry there that no batch followed (a leader that
/// recorded its epoch and appended nothing before the next election), as Kafka's `truncateTo`
/// always truncates the epoch cache from the log end; entries with batches stay.
#[test]
fn truncating_at_the_log_end_drops_an_epoch_without_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_with_epochs(dir.path());
    let end = log.log_end_offset();
    let before = log.epoch_entries();
    assert!(log.assign_leader_epoch(7).unwrap());
    assert_eq!(log.latest_epoch(), Some(7));
    log.truncate_to(end).unwrap();
    assert_eq!(log.epoch_entries(), before);
    assert_eq!(log.log_end_offset(), end);
    log.truncate_to(end + 10).unwrap();
    assert_eq!(log.epoch_entries(), before, "nothing more to drop");
}

/// The staged epoch checkpoint of an open whose syncs are deferred.
fn staged_text(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(format!("{LEADER_EPOCH_CHECKPOINT_FILE}.tmp"))).ok()
}

/// A new directory opened with `open_deferring_syncs` stages its first epoch's checkpoint,
/// which `sync_deferred` (or, after a sync of the filesystem, `install_staged_checkpoint`)
/// puts in place; so does a cleanly shut down one, while one left by a crash recovers with
/// its own fsyncs.
#[test]
fn the_syncs_of_a_new_or_clean_open_wait_for_the_caller() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("t-0");
    let mut log = Log::open_deferring_syncs(&dir, small_config(), 0).unwrap();
    assert!(log.syncs_deferred());
    assert!(log.assign_leader_epoch(0).unwrap());
    assert_eq!(staged_text(&dir).as_deref(), Some("0\n1\n0 0\n"));
    assert!(
        !dir.join(LEADER_EPOCH_CHECKPOINT_FILE).exists(),
        "staged only"
    );
    assert!(log.syncs_deferred(), "the epoch did not sync it");
    log.sync_deferred().unwrap();
    assert!(!log.syncs_deferred());
    assert_eq!(checkpoint_text(&dir), "0\n1\n0 0\n");
    assert_eq!(staged_text(&dir), None);
    // Later checkpoints are written with their fsyncs again.
    log.append(&batch(2, 1000), 0, 0).unwrap();
    assert!(log.assign_leader_epoch(2).unwrap());
    assert_eq!(checkpoint_text(&dir), "0\n2\n0 0\n2 2\n");
    log.append(&batch(2, 1000), 2, 0).unwrap();
    drop(log);
    let log = Log::open_deferring_syncs(&dir, small_config(), 0).unwrap();
    assert!(
        !log.syncs_deferred(),
        "after a crash the open recovers with its own fsyncs"
    );
    assert_eq!(log.epoch_entries(), vec![(0, 0), (2, 2)]);
    log.close().unwrap();

    // After a clean shutdown they wait; the filesystem's sync stands in for the log's own.
    let mut log = Log::open_deferring_syncs(&dir, small_config(), 0).unwrap();
    assert!(log.syncs_deferred(), "after a clean shutdown they wait");
    assert!(!log.install_staged_checkpoint().unwrap(), "nothing staged");
    assert!(log.assign_leader_epoch(5).unwrap());
    assert_eq!(
        checkpoint_text(&dir),
        "0\n2\n0 0\n2 2\n",
        "in place: the old one"
    );
    assert!(log.install_staged_checkpoint().unwrap());
    assert_eq!(checkpoint_text(&dir), "0\n3\n0 0\n2 2\n5 4\n");
    log.deferred_syncs_done();
    assert!(!log.syncs_deferred());
}

/// A crash before the caller's syncs leaves the checkpoint of the clean shutdown in place
/// and the staged one (whole, torn or empty) in its temp file, which the next open deletes.
#[test]
fn a_crash_before_a_deferred_opens_syncs_keeps_the_old_checkpoint() {
    for torn in [None, Some(""), Some("0\n3\n0 0\n2 2\n5")] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        log.append(&batch(2, 1000), 0, 0).unwrap();
        log.append(&batch(2, 1000), 2, 0).unwrap();
        log.close().unwrap();
        let mut log = Log::open_deferring_syncs(dir.path(), small_config(), 0).unwrap();
        assert!(log.assign_leader_epoch(5).unwrap());
        drop(log);
        if let Some(text) = torn {
            std::fs::write(
                dir.path()
                    .join(format!("{LEADER_EPOCH_CHECKPOINT_FILE}.tmp")),
                text,
            )
            .unwrap();
        }
        let log = Log::open(dir.path(), small_config(), 0).unwrap();
        assert_eq!(log.epoch_entries(), vec![(0, 0), (2, 2)], "{torn:?}");
        assert_eq!(checkpoint_text(dir.path()), "0\n2\n0 0\n2 2\n");
        assert_eq!(staged_text(dir.path()), None, "{torn:?}");
    }
}
