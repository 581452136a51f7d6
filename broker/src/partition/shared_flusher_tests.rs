//! Tests of the shared flusher: partitions that append while a round runs are covered together
//! by one sync of the filesystem in the next; a failed one fails every partition it covered
//! (nothing acknowledged, no retry, each reported); appends from several tasks at once are all
//! acknowledged (no wake-up lost between the queue and a round). With the interval policy a
//! round comes once per tick (one syncfs for every partition that appended, none when idle),
//! fails its partitions like any other, and comes at once for a failed sync to report.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;
use storage::{LogConfig, StorageError};
use uuid::Uuid;

use crate::durable_file::SyncData;

use super::flusher_tests::{appended_end, batch, failing_when};
use super::{
    AckWait, DurabilityPolicy, Partition, PartitionError, PartitionManager, TopicPartition,
};

/// A manager with fsync'd acks whose shared flusher runs `sync_data` and `sync_fs`.
fn manager(dir: &std::path::Path, sync_data: SyncData, sync_fs: SyncData) -> PartitionManager {
    manager_with(dir, DurabilityPolicy::SyncOnAck, sync_data, sync_fs)
}

fn manager_with(
    dir: &std::path::Path,
    policy: DurabilityPolicy,
    sync_data: SyncData,
    sync_fs: SyncData,
) -> PartitionManager {
    PartitionManager::new(dir, policy, Histogram::new([0.001]))
        .with_sync_data(sync_data)
        .with_shared_flush(sync_fs)
}

fn open(manager: &PartitionManager, partition: i32) -> Arc<Partition> {
    let tp = TopicPartition {
        topic: "t".into(),
        partition,
    };
    manager
        .open(tp, Uuid::nil(), LogConfig::default(), 0)
        .unwrap()
}

async fn acked(p: &Partition, end: i64, within_ms: u64) -> AckWait {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(within_ms);
    p.wait_all_replicas(end, p.leader_epoch(), deadline).await
}

/// The fdatasyncs that follow a syncfs of `dir`'s filesystem: none where the syncfs flushes
/// the device cache itself (ext4), else one.
fn after_syncfs(dir: &std::path::Path) -> usize {
    let handle = std::fs::File::open(dir).unwrap();
    usize::from(
        crate::filesystem_sync::syncfs_trust(&handle) != crate::filesystem_sync::SyncfsTrust::Alone,
    )
}

/// Meets the sync held at `gate` there (off the runtime's threads, which the flusher's round
/// may need meanwhile).
async fn pass(gate: &Arc<Barrier>) {
    let g = Arc::clone(gate);
    tokio::task::spawn_blocking(move || g.wait()).await.unwrap();
}

/// A counting sync that blocks its first call until `gate` lets it go.
fn gated(calls: &Arc<AtomicUsize>, gate: &Arc<Barrier>) -> SyncData {
    let (calls, gate) = (Arc::clone(calls), Arc::clone(gate));
    SyncData::new(move |file: &std::fs::File| {
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            gate.wait();
            gate.wait();
        }
        file.sync_data()
    })
}

/// A counting syncfs that fails unless it is called through the data directory itself (the
/// handle opened when the thread started, which sees every write error since; a segment's
/// descriptor opened later may not).
fn through_the_data_dir(calls: &Arc<AtomicUsize>, dir: &std::path::Path) -> SyncData {
    use std::os::unix::fs::MetadataExt;
    let calls = Arc::clone(calls);
    let meta = dir.metadata().unwrap();
    let data_dir = (meta.dev(), meta.ino());
    SyncData::new(move |file: &std::fs::File| {
        calls.fetch_add(1, Ordering::SeqCst);
        let meta = file.metadata()?;
        if (meta.dev(), meta.ino()) != data_dir {
            return Err(std::io::Error::other(
                "syncfs not through the data directory",
            ));
        }
        file.sync_all()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_appending_during_a_round_share_the_next_one_sync_of_the_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let (data_calls, fs_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let gate = Arc::new(Barrier::new(2));
    let m = manager(
        dir.path(),
        gated(&data_calls, &gate),
        through_the_data_dir(&fs_calls, dir.path()),
    );
    let ps: Vec<_> = (0..3).map(|i| open(&m, i)).collect();

    // Alone in its round, partition 0 gets an fdatasync of its own, held at the gate.
    let first = appended_end(ps[0].append(&batch(), 0).unwrap());
    pass(&gate).await;
    // While it runs, all three append.
    let ends: Vec<i64> = ps
        .iter()
        .map(|p| appended_end(p.append(&batch(), 0).unwrap()))
        .collect();
    assert_eq!(acked(&ps[0], first, 100).await, AckWait::TimedOut);
    pass(&gate).await;

    assert_eq!(acked(&ps[0], first, 5_000).await, AckWait::Done);
    for (p, end) in ps.iter().zip(&ends) {
        assert_eq!(acked(p, *end, 5_000).await, AckWait::Done, "{}", p.tp);
        assert_eq!(p.high_watermark(), *end);
    }
    assert_eq!(
        data_calls.load(Ordering::SeqCst),
        1 + after_syncfs(dir.path()),
        "one fdatasync, the first round's (and one after the syncfs where it flushes no cache)"
    );
    assert_eq!(
        fs_calls.load(Ordering::SeqCst),
        1,
        "one syncfs covered the three partitions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_of_the_filesystem_fails_every_partition_it_covered() {
    let dir = tempfile::tempdir().unwrap();
    let (data_calls, fs_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let gate = Arc::new(Barrier::new(2));
    let failing = Arc::new(AtomicBool::new(true));
    let m = manager(
        dir.path(),
        gated(&data_calls, &gate),
        failing_when(&fs_calls, &failing),
    );
    let ps: Vec<_> = (0..3).map(|i| open(&m, i)).collect();

    // Partition 2's first record is made durable alone (its own fdatasync, held at the gate
    // while 0 and 1 append), then 0 and 1 share a syncfs that fails.
    let durable = appended_end(ps[2].append(&batch(), 0).unwrap());
    pass(&gate).await;
    let ends: Vec<i64> = ps[..2]
        .iter()
        .map(|p| appended_end(p.append(&batch(), 0).unwrap()))
        .collect();
    pass(&gate).await;
    assert_eq!(acked(&ps[2], durable, 5_000).await, AckWait::Done);

    let why = tokio::time::timeout(Duration::from_secs(5), m.sync_failures().wait())
        .await
        .expect("the failed syncfs is reported");
    assert!(why.contains("os error 5"), "{why}");
    for (p, end) in ps[..2].iter().zip(&ends) {
        assert_ne!(
            acked(p, *end, 300).await,
            AckWait::Done,
            "{}: a record the failed syncfs covered was acknowledged",
            p.tp
        );
        assert_eq!(p.high_watermark(), 0, "{}", p.tp);
        assert!(p.sync_failure().is_some(), "{}", p.tp);
        // The disk would now report success: nothing more is written or synced.
        failing.store(false, Ordering::SeqCst);
        assert!(matches!(
            p.append(&batch(), 0),
            Err(PartitionError::Storage(StorageError::SyncFailed(_)))
        ));
    }
    let tried = fs_calls.load(Ordering::SeqCst);
    assert_eq!(tried, 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        fs_calls.load(Ordering::SeqCst),
        tried,
        "the syncfs was retried"
    );
    assert_eq!(
        data_calls.load(Ordering::SeqCst),
        1,
        "an fdatasync after the failed syncfs"
    );
    // A partition the failed round did not cover goes on.
    let next = appended_end(ps[2].append(&batch(), 0).unwrap());
    assert_eq!(acked(&ps[2], next, 5_000).await, AckWait::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_from_several_tasks_at_once_are_all_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (data_calls, fs_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let never = Arc::new(AtomicBool::new(false));
    let m = manager(
        dir.path(),
        failing_when(&data_calls, &never),
        failing_when(&fs_calls, &never),
    );
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let p = open(&m, i);
            tokio::spawn(async move {
                for n in 0..200u64 {
                    let end = appended_end(p.append(&batch(), 0).unwrap());
                    assert_eq!(
                        acked(&p, end, 5_000).await,
                        AckWait::Done,
                        "{} append {n}",
                        p.tp
                    );
                    if n % 7 == 0 {
                        tokio::time::sleep(Duration::from_micros(n * 13 % 900)).await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let rounds = data_calls.load(Ordering::SeqCst) + fs_calls.load(Ordering::SeqCst);
    assert!(rounds <= 800, "{rounds} syncs for 800 appends");
}

/// A partition whose directory is on another filesystem (moved to another disk and linked
/// back) is not covered by the data directory's syncfs: it gets an fdatasync of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_on_another_filesystem_gets_its_own_fdatasync() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir_in("/dev/shm").unwrap();
    let device = |p: &std::path::Path| std::os::unix::fs::MetadataExt::dev(&p.metadata().unwrap());
    assert_ne!(device(dir.path()), device(elsewhere.path()));
    std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("t-2")).unwrap();
    let (data_calls, fs_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let gate = Arc::new(Barrier::new(2));
    let never = Arc::new(AtomicBool::new(false));
    let m = manager(
        dir.path(),
        gated(&data_calls, &gate),
        failing_when(&fs_calls, &never),
    );
    let ps: Vec<_> = (0..3).map(|i| open(&m, i)).collect();

    let first = appended_end(ps[0].append(&batch(), 0).unwrap());
    pass(&gate).await;
    // Partition 1 alone on the data directory's filesystem, 2 on the other: two fdatasyncs.
    let ends: Vec<i64> = ps[1..]
        .iter()
        .map(|p| appended_end(p.append(&batch(), 0).unwrap()))
        .collect();
    pass(&gate).await;
    assert_eq!(acked(&ps[0], first, 5_000).await, AckWait::Done);
    for (p, end) in ps[1..].iter().zip(&ends) {
        assert_eq!(acked(p, *end, 5_000).await, AckWait::Done, "{}", p.tp);
    }
    assert_eq!(data_calls.load(Ordering::SeqCst), 3);
    assert_eq!(fs_calls.load(Ordering::SeqCst), 0);
}

/// A follower that truncates while a sync of its old tail runs: that sync marks nothing (it
/// may not cover what is written below its offset again), and the truncation queues the
/// partition, so what is left below the new end is still made durable without another append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncation_during_a_sync_is_followed_by_another_round() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let hold = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(Barrier::new(2));
    let (c, h, g) = (Arc::clone(&calls), Arc::clone(&hold), Arc::clone(&gate));
    // The first fdatasync once `hold` is set waits at the gate.
    let sync_data = SyncData::new(move |file: &std::fs::File| {
        c.fetch_add(1, Ordering::SeqCst);
        if h.swap(false, Ordering::SeqCst) {
            g.wait();
            g.wait();
        }
        file.sync_data()
    });
    let never = Arc::new(AtomicBool::new(false));
    let m = manager(
        dir.path(),
        sync_data,
        failing_when(&Arc::new(AtomicUsize::new(0)), &never),
    );
    let p = open(&m, 0);
    assert!(p.become_follower(2, 1));
    // One batch of `n` records at `base`, as a leader stamped it.
    let leader_batch = |base: i64, n: usize| {
        let mut builder = storage::BatchBuilder::new();
        for _ in 0..n {
            builder = builder.record(None, Some(b"value"), 1);
        }
        let mut b = builder.build().unwrap();
        storage::batch::header::set_base_offset(&mut b, base).unwrap();
        storage::batch::header::set_partition_leader_epoch(&mut b, 1).unwrap();
        b
    };
    let durable = |want: i64| {
        let p = Arc::clone(&p);
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while p.durable_offset() < want && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            p.durable_offset()
        }
    };
    p.append_as_follower(&leader_batch(0, 2), 0, 1).unwrap();
    assert_eq!(durable(2).await, 2);

    // One append of 2..6 (two batches), whose sync is held; meanwhile the log is cut to 4 (the new
    // leader's end) and nothing more is appended.
    hold.store(true, Ordering::SeqCst);
    let two_batches = [leader_batch(2, 2), leader_batch(4, 2)].concat();
    assert_eq!(p.append_as_follower(&two_batches, 2, 1).unwrap(), 6);
    pass(&gate).await;
    let before = calls.load(Ordering::SeqCst);
    assert_eq!(p.truncate_to(4, 1).unwrap(), 4);
    pass(&gate).await;
    assert_eq!(durable(4).await, 4, "offsets 2 and 3 never made durable");
    assert!(
        calls.load(Ordering::SeqCst) > before,
        "no sync after the truncation"
    );
}

fn interval_manager(
    dir: &std::path::Path,
    interval_ms: u64,
    sync_data: SyncData,
    sync_fs: SyncData,
) -> PartitionManager {
    manager_with(
        dir,
        DurabilityPolicy::Interval { interval_ms },
        sync_data,
        sync_fs,
    )
}

/// Polls `calls` until it reaches `at_least` (or 5 s pass).
async fn reaches(calls: &AtomicUsize, at_least: usize) -> bool {
    for _ in 0..500 {
        if calls.load(Ordering::SeqCst) >= at_least {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_interval_one_round_per_tick_covers_every_partition_that_appended() {
    let dir = tempfile::tempdir().unwrap();
    let (data_calls, fs_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let never = Arc::new(AtomicBool::new(false));
    let m = interval_manager(
        dir.path(),
        1_000,
        failing_when(&data_calls, &never),
        through_the_data_dir(&fs_calls, dir.path()),
    );
    let ps: Vec<_> = (0..3).map(|i| open(&m, i)).collect();
    let opened = std::time::Instant::now();
    for p in &ps {
        let end = appended_end(p.append(&batch(), 0).unwrap());
        // The interval policy acknowledges once written.
        assert_eq!(acked(p, end, 100).await, AckWait::Done);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    if opened.elapsed() < Duration::from_millis(900) {
        assert_eq!(
            (
                data_calls.load(Ordering::SeqCst),
                fs_calls.load(Ordering::SeqCst)
            ),
            (0, 0),
            "synced before the tick"
        );
    }

    // The tick syncs all three with one syncfs, and an idle tick syncs nothing.
    assert!(reaches(&fs_calls, 1).await, "no round at the tick");
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(fs_calls.load(Ordering::SeqCst), 1);
    let after = after_syncfs(dir.path());
    assert_eq!(data_calls.load(Ordering::SeqCst), after);

    // One partition alone gets an fdatasync of its own at the next tick.
    ps[1].append(&batch(), 0).unwrap();
    assert!(
        reaches(&data_calls, after + 1).await,
        "no round at the tick"
    );
    assert_eq!(fs_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_interval_a_failed_sync_at_the_tick_fails_every_partition_it_covered() {
    let dir = tempfile::tempdir().unwrap();
    let (data_calls, fs_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (never, failing) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(true)),
    );
    let m = interval_manager(
        dir.path(),
        200,
        failing_when(&data_calls, &never),
        failing_when(&fs_calls, &failing),
    );
    let ps: Vec<_> = (0..2).map(|i| open(&m, i)).collect();
    for p in &ps {
        p.append(&batch(), 0).unwrap();
    }
    let why = tokio::time::timeout(Duration::from_secs(5), m.sync_failures().wait())
        .await
        .expect("the failed syncfs is reported");
    assert!(why.contains("os error 5"), "{why}");
    failing.store(false, Ordering::SeqCst);
    for p in &ps {
        assert!(p.sync_failure().is_some(), "{}", p.tp);
        assert!(matches!(
            p.append(&batch(), 0),
            Err(PartitionError::Storage(StorageError::SyncFailed(_)))
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fs_calls.load(Ordering::SeqCst), 1, "the syncfs was retried");
}

#[test]
fn with_an_interval_a_round_waits_for_the_tick_unless_asked_for_now() {
    let dir = tempfile::tempdir().unwrap();
    let m = PartitionManager::new(
        dir.path(),
        DurabilityPolicy::Interval {
            interval_ms: 60_000,
        },
        Histogram::new([0.001]),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let p = runtime.block_on(async { open(&m, 0) });
    let queue = super::shared_flusher::FlushQueue::new(Some(Duration::from_secs(60)));
    let mut taken = Vec::new();

    queue.push(&p, false);
    let started = std::time::Instant::now();
    assert!(queue.take(&mut taken, started + Duration::from_millis(300)));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "taken before the tick"
    );
    assert_eq!(taken.len(), 1);

    // Queued again (as the thread clears the flag), now to report a failed sync: taken at
    // once, ten seconds before the tick.
    p.flush_queued.store(false, Ordering::SeqCst);
    queue.push(&p, true);
    let started = std::time::Instant::now();
    assert!(queue.take(&mut taken, started + Duration::from_secs(10)));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(taken.len(), 1);

    // Already queued and then asked for now: the round still comes at once.
    p.flush_queued.store(false, Ordering::SeqCst);
    queue.push(&p, false);
    queue.push(&p, true);
    let started = std::time::Instant::now();
    assert!(queue.take(&mut taken, started + Duration::from_secs(10)));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(taken.len(), 1);
}
