//! Tests of a partition replica: acknowledgements wait for the high watermark, large fetch
//! answers stay file regions, leader epochs are recorded when opened and only while leading, a
//! new leader knows when its high watermark is behind its epoch start, a follower fetch beyond
//! the log end is not counted, a follower drops stale fetch answers and follows its leader's
//! log start, a roll by retention marks its records durable, and an acks=all wait that loses
//! the leadership answers not-leader with the interval policy.

#![allow(clippy::unwrap_used)]

use super::*;

fn batch(value_bytes: usize) -> Vec<u8> {
    storage::BatchBuilder::new()
        .record(None, Some(&vec![7u8; value_bytes]), 1)
        .build()
        .unwrap()
}

/// The stored form of `produced`: the same bytes after the offset and leader-epoch fields
/// the log stamps (the first 17 bytes: base offset, length, epoch, magic).
fn same_batch(stored: &[u8], produced: &[u8]) -> bool {
    stored.len() == produced.len() && stored.get(17..) == produced.get(17..)
}

/// Partition `t-0` in `dir`, the only copy, acknowledging after fsync.
fn open_single(dir: &std::path::Path) -> Arc<Partition> {
    let tp = TopicPartition {
        topic: "t".into(),
        partition: 0,
    };
    Partition::open(
        dir,
        tp,
        Uuid::nil(),
        LogConfig::default(),
        DurabilityPolicy::SyncOnAck,
        0,
    )
    .unwrap()
}

/// What the flusher does after syncing everything `p` holds, which ends at `offset`.
fn mark_durable_to(p: &Partition, offset: i64) {
    let target = p.pending_flush().unwrap();
    assert_eq!(target.up_to_offset, offset);
    p.mark_durable(&target);
}

/// On a single node an acknowledgement (acks=all or acks=1) waits for the high
/// watermark, not only the durable offset, so a fetch sent the moment it arrives finds
/// the records: with the durable offset published and the high watermark not yet moved
/// (the fsync thread between its two steps), neither wait may complete.
#[test]
fn single_node_acknowledgements_wait_for_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_single(dir.path());
    p.append(&batch(10), 0).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let soon = || tokio::time::Instant::now() + std::time::Duration::from_millis(50);
        p.durable.send_replace(1);
        assert_ne!(
            p.wait_all_replicas(1, p.leader_epoch(), soon()).await,
            AckWait::Done,
            "acks=all answered below the high watermark"
        );
        assert!(
            !p.wait_local_durable(1, soon()).await,
            "acks=1 answered below the high watermark"
        );
        mark_durable_to(&p, 1);
        assert_eq!(p.high_watermark(), 1);
        assert_eq!(
            p.wait_all_replicas(1, p.leader_epoch(), soon()).await,
            AckWait::Done
        );
        assert!(p.wait_local_durable(1, soon()).await);
    });
}

/// Fetch answers below `MIN_FILE_REGION_BYTES` come in memory, larger ones as a file
/// region for the connection writer; both hold exactly the stored batches.
#[test]
fn read_for_fetch_sends_large_answers_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_single(dir.path());
    let small = batch(100);
    p.append(&small, 0).unwrap();
    let read = p.read_for_fetch(0, usize::MAX, true, true).unwrap();
    assert!(matches!(&read.records, StoredRecords::Bytes(b) if same_batch(b, &small)));

    let large = batch(MIN_FILE_REGION_BYTES);
    p.append(&large, 0).unwrap();
    let read = p.read_for_fetch(1, usize::MAX, true, true).unwrap();
    let StoredRecords::File(region) = &read.records else {
        panic!("expected a file region, got {:?}", read.records);
    };
    assert!(same_batch(&region.read_to_bytes().unwrap(), &large));
}

/// A single-node partition records its epoch (0) when it is opened, as Kafka's new leader
/// does, so its first produce finds the checkpoint written and does not rewrite it.
#[test]
fn a_single_node_partition_records_its_epoch_when_opened() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let p = open_single(dir.path());
    let checkpoint = dir.path().join("leader-epoch-checkpoint");
    assert_eq!(
        p.end_offset_for_epoch(0).unwrap(),
        Some((0, 0)),
        "answered as the leader before the epoch is recorded"
    );
    p.record_own_epoch().unwrap();
    let written = std::fs::metadata(&checkpoint).unwrap().ino();
    assert_eq!(std::fs::read_to_string(&checkpoint).unwrap(), "0\n1\n0 0\n");
    p.record_own_epoch().unwrap();
    p.append(&batch(100), 0).unwrap();
    assert_eq!(
        std::fs::metadata(&checkpoint).unwrap().ino(),
        written,
        "the first append did not replace the checkpoint"
    );
    assert_eq!(p.end_offset_for_epoch(0).unwrap(), Some((0, 1)));
}

/// A cluster leader records its epoch at the log end once it leads, and only while it
/// still leads at that epoch: a late call after the role moved on adds nothing.
#[test]
fn a_leader_records_its_epoch_only_while_it_leads_at_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_single(dir.path());
    p.become_follower(2, 1);
    p.append_as_follower(&batch(100), 0, 1).unwrap();
    let leo = p.log_end_offset().unwrap();
    let latest = p.latest_epoch().unwrap();
    assert!(p.become_leader(3, 1, vec![1, 2], vec![1, 2], 1, 0));
    assert!(
        !p.become_leader(3, 2, vec![1], vec![1, 2], 1, 0),
        "the same epoch again is not a new leadership"
    );
    assert!(!p.record_epoch_as_leader(2).unwrap(), "not its epoch");
    assert_eq!(p.latest_epoch().unwrap(), latest);
    assert!(p.record_epoch_as_leader(3).unwrap());
    assert!(!p.record_epoch_as_leader(3).unwrap(), "recorded once");
    assert_eq!(p.latest_epoch().unwrap(), Some(3));
    assert_eq!(p.end_offset_for_epoch(3).unwrap(), Some((3, leo)));
    let checkpoint = std::fs::read_to_string(dir.path().join("leader-epoch-checkpoint"));
    assert!(checkpoint.unwrap().ends_with(&format!("3 {leo}\n")));

    // Leader at 4, then a follower at 5 before the recording ran: nothing is added.
    assert!(p.become_leader(4, 3, vec![1], vec![1, 2], 1, 0));
    p.become_follower(2, 5);
    assert!(!p.record_epoch_as_leader(4).unwrap());
    assert!(!p.record_epoch_as_leader(5).unwrap());
    assert_eq!(p.latest_epoch().unwrap(), Some(3));
}

/// A new leader whose high watermark is below the log end it had when elected says so
/// (ListOffsets answers OFFSET_NOT_AVAILABLE meanwhile), until the ISR catches up.
#[test]
fn a_new_leader_knows_when_its_high_watermark_is_behind_its_epoch_start() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_single(dir.path());
    p.become_follower(2, 1);
    p.append_as_follower(&batch(100), 0, 1).unwrap();
    assert!(!p.high_watermark_behind_epoch_start(), "a follower");
    assert!(p.become_leader(3, 1, vec![1, 2], vec![1, 2], 1, 0));
    assert_eq!(p.high_watermark(), 0);
    assert!(p.high_watermark_behind_epoch_start());
    mark_durable_to(&p, 1);
    p.record_follower_fetch(2, 1, 0, 0).unwrap();
    assert_eq!(p.high_watermark(), 1);
    assert!(!p.high_watermark_behind_epoch_start());
}

/// As Kafka's leader: a follower fetching beyond the log end (a follower of some other log,
/// say a deleted topic's of the same name) is refused and moves nothing.
#[test]
fn a_follower_fetch_beyond_the_log_end_is_not_counted() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_single(dir.path());
    assert!(p.become_leader(1, 1, vec![1, 2], vec![1, 2], 1, 0));
    p.append(&batch(100), 0).unwrap();
    p.append(&batch(100), 0).unwrap();
    mark_durable_to(&p, 2);
    assert_eq!(p.high_watermark(), 0, "the follower has not fetched");
    assert_eq!(
        p.record_follower_fetch(2, 1_000, 0, 0),
        Err(FollowerFetchRefused::BeyondLogEnd)
    );
    assert_eq!(p.high_watermark(), 0);
    p.record_follower_fetch(2, 1, 0, 0).unwrap();
    assert_eq!(p.high_watermark(), 1);
}

/// `batch` as a leader at `epoch` stored it at `base`.
fn leader_batch(base: i64, epoch: i32) -> Vec<u8> {
    let mut b = batch(10);
    storage::batch::header::set_base_offset(&mut b, base).unwrap();
    storage::batch::header::set_partition_leader_epoch(&mut b, epoch).unwrap();
    b
}

/// A leader's answer is appended only while the replica follows at the epoch it fetched
/// with and its log still ends where the fetch began; anything else is a stale answer and
/// writes nothing.
#[test]
fn a_stale_fetch_answer_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_single(dir.path());
    p.become_follower(2, 4);
    assert_eq!(p.append_as_follower(&leader_batch(0, 4), 0, 4).unwrap(), 1);
    let stale = |r: Result<i64, PartitionError>| matches!(r, Err(PartitionError::StaleFetch(_)));
    // Fetched at offset 0, but the log now ends at 1 (or was truncated below it).
    assert!(stale(p.append_as_follower(&leader_batch(0, 4), 0, 4)));
    // Fetched at epoch 3 from an earlier leader.
    assert!(stale(p.append_as_follower(&leader_batch(1, 3), 1, 3)));
    // A batch stamped after the leader's epoch.
    assert!(matches!(
        p.append_as_follower(&leader_batch(1, 5), 1, 4),
        Err(PartitionError::Storage(
            StorageError::EpochAboveLeader { .. }
        ))
    ));
    // Became the leader meanwhile.
    assert!(p.become_leader(5, 1, vec![1, 2], vec![1, 2], 1, 0));
    assert!(stale(p.append_as_follower(&leader_batch(1, 4), 1, 4)));
    assert_eq!(p.log_end_offset().unwrap(), 1);
    // A follower's high watermark from an old epoch's leader is ignored too.
    p.become_follower(2, 6);
    p.set_follower_hw(1, 5);
    assert_eq!(p.high_watermark(), 0);
    p.set_follower_hw(1, 6);
    assert_eq!(p.high_watermark(), 1);
}

/// The follower's log start follows its leader's, capped by its high watermark; a
/// follower whose log ends below the leader's start restarts there.
#[test]
fn a_follower_follows_its_leaders_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_single(dir.path());
    p.become_follower(2, 1);
    for base in 0..4 {
        p.append_as_follower(&leader_batch(base, 1), base, 1)
            .unwrap();
    }
    mark_durable_to(&p, 4);
    p.set_follower_hw(2, 1);
    p.follow_leader_log_start(3).unwrap();
    assert_eq!(
        p.log_start_offset().unwrap(),
        2,
        "capped by the high watermark"
    );
    p.set_follower_hw(4, 1);
    p.follow_leader_log_start(3).unwrap();
    assert_eq!(p.log_start_offset().unwrap(), 3);
    assert!(matches!(
        p.truncate_fully_and_start_at(100, 2),
        Err(PartitionError::StaleFetch(_))
    ));
    p.truncate_fully_and_start_at(100, 1).unwrap();
    assert_eq!(p.log_offsets().unwrap(), (100, 100));
    assert_eq!((p.high_watermark(), p.durable_offset()), (100, 100));
    assert_eq!(
        p.append_as_follower(&leader_batch(100, 1), 100, 1).unwrap(),
        101
    );
}

/// A roll outside an append (here `segment.ms` at a retention pass) fsyncs the active
/// segment, so the flusher finds nothing left to sync: the durable offset, and the single
/// copy's high watermark, must still move over those records, or what waits on them
/// (an acknowledgement, a follower's next fetch) waits for the next append.
#[test]
fn a_roll_by_retention_marks_its_records_durable() {
    let dir = tempfile::tempdir().unwrap();
    let tp = TopicPartition {
        topic: "t".into(),
        partition: 0,
    };
    let config = LogConfig {
        segment_ms: 1_000,
        ..LogConfig::default()
    };
    let p = Partition::open(
        dir.path(),
        tp,
        Uuid::nil(),
        config,
        DurabilityPolicy::SyncOnAck,
        0,
    )
    .unwrap();
    p.append(&batch(10), 0).unwrap();
    assert_eq!((p.durable_offset(), p.high_watermark()), (0, 0));
    assert!(p.pending_flush().is_some());
    p.apply_retention(1_000_000).unwrap();
    assert!(p.pending_flush().is_none(), "the roll synced it");
    assert_eq!((p.durable_offset(), p.high_watermark()), (1, 1));
}

/// With the interval policy (`log.flush.interval.ms` set) an acks=all wait has no watch
/// on a replica that no longer leads; it must still answer NotLeader for records its old
/// epoch appended, not success (they may never reach the new leader).
#[tokio::test]
async fn an_acks_all_wait_after_losing_the_leadership_is_not_leader_with_the_interval_policy() {
    let dir = tempfile::tempdir().unwrap();
    let tp = TopicPartition {
        topic: "t".into(),
        partition: 0,
    };
    let p = Partition::open(
        dir.path(),
        tp,
        Uuid::nil(),
        LogConfig::default(),
        DurabilityPolicy::Interval { interval_ms: 1_000 },
        0,
    )
    .unwrap();
    assert!(p.become_leader(1, 1, vec![1, 2], vec![1, 2], 1, 0));
    let (_, epoch) = p.append_at_epoch(&batch(10), 0).unwrap();
    assert_eq!(epoch, 1);
    p.become_follower(2, 2);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    assert!(matches!(
        p.wait_all_replicas(1, epoch, deadline).await,
        AckWait::NotLeader
    ));
}
