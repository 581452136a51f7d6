//! Tests of the partition manager: partitions found one at a time or many, reopened ones at
//! their checkpointed high watermark, and many opened and closed with their syncs together
//! (published only after the sync, nothing published or marked clean after a failure, a
//! partition directory on another filesystem synced on its own).

#![allow(clippy::unwrap_used)]

use super::*;

fn open(m: &PartitionManager, topic: &str, partition: i32) -> Arc<Partition> {
    let tp = TopicPartition {
        topic: topic.into(),
        partition,
    };
    m.open(tp, Uuid::nil(), LogConfig::default(), 0).unwrap()
}

fn names(found: &[Option<Arc<Partition>>]) -> Vec<Option<String>> {
    found
        .iter()
        .map(|p| p.as_ref().map(|p| p.tp.to_string()))
        .collect()
}

fn wanted(topic: &str, n: i32) -> Vec<(TopicPartition, Uuid, LogConfig)> {
    (0..n)
        .map(|partition| {
            let tp = TopicPartition {
                topic: topic.into(),
                partition,
            };
            (tp, Uuid::nil(), LogConfig::default())
        })
        .collect()
}

fn manager(dir: &Path) -> PartitionManager {
    PartitionManager::new(dir, DurabilityPolicy::SyncOnAck, Histogram::new([0.001]))
}

/// New partitions are created with their epoch recorded, synced together (where the data
/// directory's filesystem is ext4, as the tests' is here: a syncfs for their files, one for
/// their checkpoints' renames) or by their own fsyncs, and published only after that; a
/// partition open already is returned as it is.
#[tokio::test]
async fn open_many_syncs_new_directories_together_before_publishing() {
    use std::sync::atomic::AtomicUsize;
    use std::sync::{OnceLock, Weak};
    let dir = tempfile::tempdir().unwrap();
    let ext4 = syncfs_trust(&std::fs::File::open(dir.path()).unwrap()) == SyncfsTrust::Alone;
    let syncs = Arc::new(AtomicUsize::new(0));
    let me: Arc<OnceLock<Weak<PartitionManager>>> = Arc::default();
    let sync_fs = {
        let (syncs, me) = (Arc::clone(&syncs), Arc::clone(&me));
        SyncData::new(move |file| {
            let m = me.get().and_then(Weak::upgrade).unwrap();
            assert!(m.get("t", 1).is_none(), "synced before publishing");
            syncs.fetch_add(1, Ordering::Relaxed);
            crate::filesystem_sync::syncfs(file)
        })
    };
    let m = Arc::new(
        manager(dir.path())
            .with_shared_flush(SyncData::filesystem())
            .with_batch_sync(sync_fs),
    );
    me.set(Arc::downgrade(&m)).unwrap();
    let existing = open(&m, "t", 0);
    assert_eq!(
        syncs.load(Ordering::Relaxed),
        usize::from(ext4),
        "one alone"
    );
    let prepared = AtomicUsize::new(0);
    let opened = m
        .open_many(wanted("t", 40), 0, |p| {
            assert!(p.syncs_deferred());
            assert!(m.get("t", p.tp.partition).is_none(), "not published yet");
            prepared.fetch_add(1, Ordering::Relaxed);
            p.record_own_epoch()
        })
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(prepared.load(Ordering::Relaxed), 39, "not run on t-0");
    assert_eq!(opened.len(), 40);
    assert!(Arc::ptr_eq(&opened[0], &existing));
    for p in &opened {
        assert!(!p.syncs_deferred());
        assert!(Arc::ptr_eq(p, &m.get("t", p.tp.partition).unwrap()));
    }
    assert_eq!(
        syncs.load(Ordering::Relaxed),
        3 * usize::from(ext4),
        "39 together: their files, then their checkpoints' renames"
    );
    let checkpoint = dir.path().join("t-39").join("leader-epoch-checkpoint");
    assert_eq!(std::fs::read_to_string(checkpoint).unwrap(), "0\n1\n0 0\n");

    // Without the shared flush, each new log fsyncs its own.
    let plain = manager(dir.path());
    let opened = plain
        .open_many(wanted("u", 3), 0, |_| Ok(()))
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert!(opened.iter().all(|p| !p.syncs_deferred()));
    assert!(opened
        .iter()
        .all(|p| plain.get("u", p.tp.partition).is_some()));
}

/// A failed sync publishes none of the new partitions; a partition whose preparation
/// fails is the only one not published.
#[tokio::test]
async fn open_many_publishes_nothing_a_failure_touches() {
    let dir = tempfile::tempdir().unwrap();
    let ext4 = syncfs_trust(&std::fs::File::open(dir.path()).unwrap()) == SyncfsTrust::Alone;
    let failing = SyncData::new(|_| Err(std::io::Error::other("injected")));
    let m = manager(dir.path())
        .with_shared_flush(SyncData::filesystem())
        .with_batch_sync(failing);
    if ext4 {
        let results = m.open_many(wanted("t", 5), 0, |_| Ok(()));
        assert_eq!(results.len(), 5);
        for (p, result) in results.iter().enumerate() {
            let (tp, e) = result.as_ref().unwrap_err();
            assert_eq!(tp.partition, i32::try_from(p).unwrap());
            assert!(e.to_string().contains("injected"), "{e}");
        }
        assert!((0..5).all(|p| m.get("t", p).is_none()));
        assert!(
            m.sync_failures().first().is_some(),
            "reported: the broker halts"
        );
    }
    let plain = manager(dir.path());
    let results = plain.open_many(wanted("u", 5), 0, |p| {
        if p.tp.partition == 3 {
            Err(PartitionError::Closed(p.tp.clone()))
        } else {
            Ok(())
        }
    });
    let published: Vec<bool> = results.iter().map(Result::is_ok).collect();
    assert_eq!(published, [true, true, true, false, true]);
    let found: Vec<bool> = (0..5).map(|p| plain.get("u", p).is_some()).collect();
    assert_eq!(found, published);
}

/// Closing many partitions syncs the filesystem twice for all of them where it batches
/// (before and after their clean-shutdown markers); a failed first sync leaves no marker,
/// so each log recovers at its next open.
#[tokio::test]
async fn close_all_marks_logs_clean_only_after_a_sync() {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    let clean = |dir: &Path, topic: &str, p: i32| {
        dir.join(format!("{topic}-{p}"))
            .join(storage::segment::file_name::CLEAN_SHUTDOWN_FILE)
            .exists()
    };
    let dir = tempfile::tempdir().unwrap();
    let ext4 = syncfs_trust(&std::fs::File::open(dir.path()).unwrap()) == SyncfsTrust::Alone;
    let syncs = Arc::new(AtomicUsize::new(0));
    let fail = Arc::new(AtomicBool::new(false));
    let sync_fs = {
        let (syncs, fail) = (Arc::clone(&syncs), Arc::clone(&fail));
        SyncData::new(move |file| {
            syncs.fetch_add(1, Ordering::Relaxed);
            if fail.load(Ordering::Relaxed) {
                return Err(std::io::Error::other("injected"));
            }
            crate::filesystem_sync::syncfs(file)
        })
    };
    let m = manager(dir.path())
        .with_shared_flush(SyncData::filesystem())
        .with_batch_sync(sync_fs);
    let opened = m.open_many(wanted("t", 10), 0, |_| Ok(()));
    assert!(opened.iter().all(Result::is_ok));
    let before = syncs.load(Ordering::Relaxed);
    assert!(m.close_all().is_empty());
    assert_eq!(
        syncs.load(Ordering::Relaxed) - before,
        2 * usize::from(ext4)
    );
    assert!((0..10).all(|p| clean(dir.path(), "t", p)));
    assert!(m.close_all().is_empty(), "closed already: nothing to do");

    if ext4 {
        let other = tempfile::tempdir().unwrap();
        let failing = Arc::clone(&fail);
        let m = manager(other.path())
            .with_shared_flush(SyncData::filesystem())
            .with_batch_sync(SyncData::new(move |file| {
                if failing.load(Ordering::Relaxed) {
                    return Err(std::io::Error::other("injected"));
                }
                crate::filesystem_sync::syncfs(file)
            }));
        let opened = m.open_many(wanted("u", 4), 0, |_| Ok(()));
        assert!(opened.iter().all(Result::is_ok));
        fail.store(true, Ordering::Relaxed);
        let failed = m.close_all();
        assert_eq!(failed.len(), 4);
        assert!(failed
            .iter()
            .all(|(_, e)| e.to_string().contains("injected")));
        assert!((0..4).all(|p| !clean(other.path(), "u", p)));
        // The handle reported its error once; later syncs through it fail too.
        fail.store(false, Ordering::Relaxed);
        assert!(m.batch_sync.as_ref().unwrap().sync().is_err());
    }
}

/// A partition directory on another filesystem (linked in from another disk) is not
/// covered by the data directory's syncfs: it opens and closes with its own fsyncs, the
/// others together; after a sync failure was reported, a shutdown writes no marker.
#[tokio::test]
async fn a_partition_elsewhere_syncs_its_own_and_a_reported_failure_leaves_no_marker() {
    let dir = tempfile::tempdir().unwrap();
    if syncfs_trust(&std::fs::File::open(dir.path()).unwrap()) != SyncfsTrust::Alone {
        return; // no batching to split (the tests' data directory is ext4 on Linux CI)
    }
    let elsewhere = tempfile::tempdir_in("/dev/shm").unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("t-1")).unwrap();
    let marker = |p: &Path| p.join(storage::segment::file_name::CLEAN_SHUTDOWN_FILE);
    let m = manager(dir.path()).with_shared_flush(SyncData::filesystem());
    let batch = m.batch_sync.as_ref().unwrap();
    let opened: Vec<_> = m
        .open_many(wanted("t", 2), 0, Partition::record_own_epoch)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(batch.covers(&opened[0]) && !batch.covers(&opened[1]));
    assert!(opened.iter().all(|p| !p.syncs_deferred()));
    let checkpoint = elsewhere.path().join("leader-epoch-checkpoint");
    assert_eq!(std::fs::read_to_string(checkpoint).unwrap(), "0\n1\n0 0\n");
    assert!(m.close_all().is_empty());
    assert!(marker(&dir.path().join("t-0")).exists());
    assert!(marker(elsewhere.path()).exists(), "closed on its own");

    let other = tempfile::tempdir().unwrap();
    let m = manager(other.path()).with_shared_flush(SyncData::filesystem());
    assert!(m
        .open_many(wanted("u", 2), 0, |_| Ok(()))
        .iter()
        .all(Result::is_ok));
    m.sync_failures().report(&"u-0", "injected");
    let failed = m.close_all();
    assert_eq!(failed.len(), 2);
    assert!((0..2).all(|p| !marker(&other.path().join(format!("u-{p}"))).exists()));
}

#[tokio::test]
async fn partitions_are_found_by_topic_and_index_one_at_a_time_or_many() {
    let dir = tempfile::tempdir().unwrap();
    let m = PartitionManager::new(
        dir.path(),
        DurabilityPolicy::SyncOnAck,
        Histogram::new([0.001].into_iter()),
    );
    // Opened out of order, with a gap (partition 1 of "a" is hosted elsewhere).
    open(&m, "a", 2);
    open(&m, "b", 0);
    open(&m, "a", 0);
    let again = open(&m, "a", 0);
    assert!(Arc::ptr_eq(&again, &m.get("a", 0).unwrap()), "opened once");
    assert!(matches!(
        m.open(
            TopicPartition {
                topic: "a".into(),
                partition: -1
            },
            Uuid::nil(),
            LogConfig::default(),
            0
        ),
        Err(PartitionError::NegativeIndex(_))
    ));
    assert!(m.get("a", 1).is_none() && m.get("a", 3).is_none() && m.get("a", -1).is_none());
    assert!(m.get("c", 0).is_none());

    let wanted = [
        (Some("a"), 0),
        (Some("a"), 1),
        (Some("a"), 2),
        (Some("b"), 0),
        (None, 0),
        (Some("a"), 2),
        (Some("c"), 0),
        (Some("a"), -5),
    ];
    let found = m.get_many(wanted);
    assert_eq!(
        names(&found),
        [
            Some("a-0"),
            None,
            Some("a-2"),
            Some("b-0"),
            None,
            Some("a-2"),
            None,
            None
        ]
        .map(|n| n.map(String::from))
    );
    let of_a: Vec<String> = m.of_topic("a").iter().map(|p| p.tp.to_string()).collect();
    assert_eq!(of_a, ["a-0", "a-2"]);
    assert_eq!(m.all().len(), 3);

    let before = m.generation();
    let removed = m.remove(&TopicPartition {
        topic: "a".into(),
        partition: 0,
    });
    assert_eq!(removed.unwrap().tp.to_string(), "a-0");
    assert!(m.generation() > before);
    assert!(m.get("a", 0).is_none() && m.get("a", 2).is_some());
    m.remove(&TopicPartition {
        topic: "a".into(),
        partition: 2,
    });
    assert!(m.of_topic("a").is_empty());
    assert!(
        !m.partitions.contains_key("a"),
        "a topic with none left goes"
    );
    assert_eq!(names(&m.get_many([(Some("b"), 0)])), [Some("b-0".into())]);
}

/// In a cluster, a partition reopened after a restart starts at its checkpointed high
/// watermark (within its log), or at its log start without an entry; on a single node
/// (no checkpoint handed over) at its log end.
#[tokio::test]
async fn reopened_partitions_start_at_their_checkpointed_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let manager = || {
        PartitionManager::new(
            dir.path(),
            DurabilityPolicy::SyncOnAck,
            Histogram::new([0.001].into_iter()),
        )
    };
    let m = manager();
    let batch = storage::BatchBuilder::new()
        .record(None, Some(b"v"), 1)
        .build()
        .unwrap();
    for (topic, partition) in [("a", 0), ("a", 1), ("b", 0)] {
        let p = open(&m, topic, partition);
        for _ in 0..5 {
            p.append(&batch, 0).unwrap();
        }
        p.close().unwrap();
    }
    let single = manager();
    assert_eq!(open(&single, "a", 0).high_watermark(), 5);

    let cluster = manager();
    let tp = |topic: &str, partition| TopicPartition {
        topic: topic.into(),
        partition,
    };
    cluster.start_at_checkpointed_high_watermarks(
        [(tp("a", 0), 3), (tp("a", 1), 99), (tp("c", 0), 7)]
            .into_iter()
            .collect(),
    );
    assert_eq!(open(&cluster, "a", 0).high_watermark(), 3);
    assert_eq!(
        open(&cluster, "a", 1).high_watermark(),
        5,
        "capped by the log end"
    );
    assert_eq!(
        open(&cluster, "b", 0).high_watermark(),
        0,
        "no entry: the log start"
    );
    // The next checkpoint keeps c-0's entry, not opened since the start.
    assert_eq!(
        super::super::hw_checkpoint::current(&cluster),
        vec![
            (tp("a", 0), 3),
            (tp("a", 1), 5),
            (tp("b", 0), 0),
            (tp("c", 0), 7)
        ]
    );
}
