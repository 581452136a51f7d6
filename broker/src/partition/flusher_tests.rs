//! Tests of the flusher: against a disk whose fdatasync fails on demand (a failed fsync is
//! not retried, acknowledges nothing it covered nor anything after it, and is reported), and
//! with appends spaced around the flusher thread's linger (none is left unsynced).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;
use storage::{AppendOutcome, LogConfig, StorageError};
use uuid::Uuid;

use crate::durable_file::SyncData;

use super::{
    AckWait, DurabilityPolicy, Partition, PartitionError, PartitionManager, TopicPartition,
};

/// A one-record batch (also the shared flusher's tests').
pub(super) fn batch() -> Vec<u8> {
    storage::BatchBuilder::new()
        .record(None, Some(b"value"), 1)
        .build()
        .unwrap()
}

/// The log end after an append that must have been appended.
pub(super) fn appended_end(outcome: AppendOutcome) -> i64 {
    match outcome {
        AppendOutcome::Appended { last_offset, .. } => last_offset + 1,
        other => panic!("not appended: {other:?}"),
    }
}

/// A counting sync that fails (EIO) while `failing` is set.
pub(super) fn failing_when(calls: &Arc<AtomicUsize>, failing: &Arc<AtomicBool>) -> SyncData {
    let (calls, failing) = (Arc::clone(calls), Arc::clone(failing));
    SyncData::new(move |file: &std::fs::File| {
        calls.fetch_add(1, Ordering::SeqCst);
        if failing.load(Ordering::SeqCst) {
            Err(std::io::Error::from_raw_os_error(5))
        } else {
            file.sync_data()
        }
    })
}

/// Partition `t-0`, opened (with its flusher) by `manager`.
fn open_t0(manager: &PartitionManager) -> Arc<Partition> {
    let tp = TopicPartition {
        topic: "t".into(),
        partition: 0,
    };
    manager
        .open(tp, Uuid::nil(), LogConfig::default(), 0)
        .unwrap()
}

#[tokio::test]
async fn a_failed_fsync_is_reported_and_nothing_after_the_last_good_one_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let failing = Arc::new(AtomicBool::new(false));
    let manager = PartitionManager::new(
        dir.path(),
        DurabilityPolicy::SyncOnAck,
        Histogram::new([0.001].into_iter()),
    )
    .with_sync_data(failing_when(&calls, &failing));
    let p = open_t0(&manager);
    let within = |ms| tokio::time::Instant::now() + Duration::from_millis(ms);

    let first = appended_end(p.append(&batch(), 0).unwrap());
    assert_eq!(
        p.wait_all_replicas(first, p.leader_epoch(), within(5_000))
            .await,
        AckWait::Done,
        "a good fsync acks"
    );

    failing.store(true, Ordering::SeqCst);
    let second = appended_end(p.append(&batch(), 0).unwrap());
    let why = tokio::time::timeout(Duration::from_secs(5), manager.sync_failures().wait())
        .await
        .expect("the failed fsync is reported");
    assert!(
        why.starts_with("t-0: ") && why.contains("os error 5"),
        "{why}"
    );
    assert_ne!(
        p.wait_all_replicas(second, p.leader_epoch(), within(300))
            .await,
        AckWait::Done,
        "a record the failed fsync covered was acknowledged"
    );
    assert_eq!(p.high_watermark(), first);

    // The disk would now report success: no fsync is tried again and nothing more is written.
    failing.store(false, Ordering::SeqCst);
    let tried = calls.load(Ordering::SeqCst);
    assert!(matches!(
        p.append(&batch(), 0),
        Err(PartitionError::Storage(StorageError::SyncFailed(_)))
    ));
    let target = p.pending_flush().expect("records past the durable offset");
    assert_eq!(target.up_to_offset, second);
    p.mark_durable(&target);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(calls.load(Ordering::SeqCst), tried, "the fsync was retried");
    assert_eq!(
        p.high_watermark(),
        first,
        "marked durable after a failed fsync"
    );
    assert!(p.sync_failure().is_some());
}

/// Appends spaced around the flusher thread's linger (some while it waits, some just as it
/// gives up, some after it returned) are each acknowledged: no wake-up falls between the
/// thread and the flusher task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_around_the_linger_are_all_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let manager = PartitionManager::new(
        dir.path(),
        DurabilityPolicy::SyncOnAck,
        Histogram::new([0.001].into_iter()),
    );
    let p = open_t0(&manager);
    let linger_us = u64::try_from(super::flusher::LINGER.as_micros()).unwrap();
    for i in 0..300u64 {
        let end = appended_end(p.append(&batch(), 0).unwrap());
        assert_eq!(
            p.wait_all_replicas(
                end,
                p.leader_epoch(),
                tokio::time::Instant::now() + Duration::from_secs(5)
            )
            .await,
            AckWait::Done,
            "append {i} was never made durable"
        );
        // 0 to 2x the linger, in steps that cross its end (a thread sleep: tokio's timer
        // counts whole milliseconds).
        let pause = (i * 37 % 21) * linger_us / 10;
        std::thread::sleep(Duration::from_micros(pause));
    }
}
