//! Finds partitions by topic and index, opens them (spawning their flusher) and removes them.
//! The map is keyed by topic, each entry indexed by partition, so a request naming many
//! partitions of one topic (every Fetch of a librdkafka consumer names all of its partitions)
//! looks the name up once (`get_many`).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use prometheus_client::metrics::histogram::Histogram;
use storage::{LogConfig, StorageError};
use uuid::Uuid;

use super::flusher::{run_flusher, FlushContext, SyncData};
use super::shared_flusher::SharedFlusher;
use super::{DurabilityPolicy, Partition, PartitionError, SyncFailures, TopicPartition};
use crate::filesystem_sync::{syncfs_trust, SyncfsTrust};

/// The syncfs that makes many partitions' opens or closes durable together
/// (`PartitionManager::with_shared_flush`).
#[derive(Debug)]
struct BatchSync {
    /// The data directory, opened before any partition.
    handle: std::fs::File,
    /// Its filesystem's device: a partition directory elsewhere (linked in from another disk)
    /// syncs its own files.
    device: u64,
    /// `SyncData::filesystem`, or one a test injects.
    sync_fs: SyncData,
    /// A sync through the handle failed (`sync`).
    failed: AtomicBool,
}

impl BatchSync {
    /// A syncfs through the handle. It reports a write error once (the handle's view of the
    /// filesystem's error count moves on with it), so after one failure every later call
    /// fails too: a later success would not mean that earlier writes are durable.
    fn sync(&self) -> Result<(), StorageError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(StorageError::Io(std::io::Error::other(
                "an earlier sync of the data directory's filesystem failed",
            )));
        }
        self.sync_fs.sync(&self.handle).map_err(|e| {
            self.failed.store(true, Ordering::Release);
            StorageError::from(e)
        })
    }

    /// Whether the syncfs covers the partition's files.
    fn covers(&self, partition: &Partition) -> bool {
        partition.filesystem == self.device
    }
}

/// One partition of `PartitionManager::open_many`: opened, or why not.
pub type Opened = Result<Arc<Partition>, (TopicPartition, PartitionError)>;

/// An I/O error that another result reports too.
fn copy_io_error(e: &std::io::Error) -> StorageError {
    StorageError::Io(std::io::Error::new(e.kind(), e.to_string()))
}

/// A failed sync of many partitions, as each one's error.
fn shared_failure(e: &dyn std::fmt::Display) -> PartitionError {
    StorageError::Io(std::io::Error::other(format!(
        "syncing the partitions' files together: {e}"
    )))
    .into()
}

#[derive(Debug)]
pub struct PartitionManager {
    /// Root data directory; partition `t-p` lives in `<data_dir>/t-p`.
    data_dir: PathBuf,
    /// Each topic's partitions hosted here, by index (`None`: not hosted here).
    partitions: DashMap<Arc<str>, Vec<Option<Arc<Partition>>>>,
    /// Bumped after every insert and removal, so a list of partitions found earlier (a fetch
    /// session's) knows whether it still holds.
    generation: AtomicU64,
    policy: DurabilityPolicy,
    /// What the flushers share: the fsync histogram, the fsync itself, where failures go.
    flush: FlushContext,
    /// With `Some`, the shared flusher (`shared_flusher`) syncs every partition, with this as
    /// its sync of the filesystem; it starts with the first partition opened.
    shared_sync_fs: Option<SyncData>,
    /// Where the shared flush is on and a syncfs ends with a device cache flush (ext4): what
    /// syncs many partitions' opens (`open_many`) and closes (`close_all`) together.
    batch_sync: Option<BatchSync>,
    shared: parking_lot::Mutex<Option<SharedFlusher>>,
    /// In a cluster, the high watermarks read from the checkpoint at start (`hw_checkpoint`):
    /// a partition opened here starts at its entry (taken out), or at its log start without
    /// one. `None` on a single node, whose only copy starts at its log end.
    restart_high_watermarks: parking_lot::Mutex<Option<HashMap<TopicPartition, i64>>>,
}

impl PartitionManager {
    pub fn new(data_dir: &Path, policy: DurabilityPolicy, fsync_seconds: Histogram) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            partitions: DashMap::new(),
            generation: AtomicU64::new(0),
            restart_high_watermarks: parking_lot::Mutex::new(None),
            shared_sync_fs: None,
            batch_sync: None,
            shared: parking_lot::Mutex::new(None),
            policy,
            flush: FlushContext {
                fsync_seconds,
                sync_data: SyncData::default(),
                failures: SyncFailures::default(),
            },
        }
    }

    /// Replaces the fdatasync the flushers run (a disk that fails, in tests).
    pub fn with_sync_data(mut self, sync_data: SyncData) -> Self {
        self.flush.sync_data = sync_data;
        self
    }

    /// Has one thread sync every partition's appends together (`shared_flusher`), with
    /// `sync_fs` (`SyncData::filesystem`, or a failing one in tests) as its sync of several:
    /// whenever a partition appends with fsync'd acks, once per interval with the interval
    /// policy. Only on Linux (elsewhere each partition keeps its flusher). The caller checks
    /// that the kernel and the data directory's filesystem deserve it (`filesystem_sync`;
    /// `Node::start`).
    ///
    /// Where a syncfs of the data directory's filesystem also flushes the device cache (ext4),
    /// opens and closes of many partitions are then synced together by one
    /// (`BatchSync`), through a handle opened here, before any partition: a syncfs reports
    /// a write error on the filesystem since its handle was opened, once (`filesystem_sync`),
    /// so a failed one fails every later one.
    pub fn with_shared_flush(mut self, sync_fs: SyncData) -> Self {
        if cfg!(target_os = "linux") {
            self.shared_sync_fs = Some(sync_fs);
            self.batch_sync = std::fs::File::open(&self.data_dir)
                .ok()
                .filter(|handle| syncfs_trust(handle) == SyncfsTrust::Alone)
                .and_then(|handle| {
                    let device = handle.metadata().ok()?.dev();
                    Some(BatchSync {
                        handle,
                        device,
                        sync_fs: SyncData::filesystem(),
                        failed: AtomicBool::new(false),
                    })
                });
        }
        self
    }

    /// Replaces the syncfs of `BatchSync` (one that counts or fails, in tests).
    #[cfg(test)]
    fn with_batch_sync(mut self, sync_fs: SyncData) -> Self {
        if let Some(batch) = self.batch_sync.as_mut() {
            batch.sync_fs = sync_fs;
        }
        self
    }

    /// Where a failed fsync is reported; the broker halts on the first.
    pub fn sync_failures(&self) -> &SyncFailures {
        &self.flush.failures
    }

    pub fn partition_dir(&self, tp: &TopicPartition) -> PathBuf {
        self.data_dir.join(tp.to_string())
    }

    /// Opens the partition's log (creating it if new) and starts its flusher (`open_many` of
    /// one). Must be called inside the tokio runtime.
    pub fn open(
        &self,
        tp: TopicPartition,
        topic_id: Uuid,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Arc<Partition>, PartitionError> {
        let mut opened = self.open_many([(tp.clone(), topic_id, config)], now_ms, |_| Ok(()));
        match opened.pop() {
            Some(result) => result.map_err(|(_, e)| e),
            // `open_many` answers every partition asked for.
            None => Err(PartitionError::Closed(tp)),
        }
    }

    /// Opens many partitions (creating those that are new) and starts their flushers, answering
    /// for each in the order asked. `prepare` runs on each before it is published (setting its
    /// role, recording its epoch). What the opens of new and cleanly shut down directories
    /// would fsync one by one (`Log::open_deferring_syncs`) is made durable together before any
    /// of them is published (`sync_opened`): by a `syncfs` of the data directory's
    /// filesystem, and a second one for the renames of their staged epoch checkpoints, where
    /// the shared flush uses it and it ends with a device cache flush (ext4); else by each
    /// log's own fsyncs (its epoch checkpoint, its directory) and one fsync of the data
    /// directory for the new entries in it. One by one, with their epoch checkpoints and
    /// renames each fsynced, 1,000 new partitions took 1.9-2.6 s on journaled ext4.
    ///
    /// A partition open already is answered as it is (`prepare` not run). One that fails to
    /// open or prepare is not published and the others go on; a failed sync fails every one
    /// opened here. Directories created stay, as they would one by one.
    pub fn open_many(
        &self,
        wanted: impl IntoIterator<Item = (TopicPartition, Uuid, LogConfig)>,
        now_ms: i64,
        prepare: impl Fn(&Partition) -> Result<(), PartitionError>,
    ) -> Vec<Opened> {
        // Without `BatchSync`, for its fsync after the new entries.
        let data_dir = std::fs::File::open(&self.data_dir);
        let mut results: Vec<Option<Opened>> = Vec::new();
        let mut opening: Vec<(usize, Arc<Partition>, usize)> = Vec::new();
        for (tp, topic_id, config) in wanted {
            if let Some(p) = self.get(&tp.topic, tp.partition) {
                results.push(Some(Ok(p)));
                continue;
            }
            let opened_here = match (usize::try_from(tp.partition), &data_dir) {
                (Err(_), _) => Err(PartitionError::NegativeIndex(tp.clone())),
                (Ok(_), Err(e)) => Err(copy_io_error(e).into()),
                (Ok(index), Ok(_)) => {
                    let dir = self.partition_dir(&tp);
                    Partition::open_deferring_syncs(
                        &dir,
                        tp.clone(),
                        topic_id,
                        config,
                        self.policy,
                        now_ms,
                    )
                    .and_then(|p| prepare(&p).map(|()| (p, index)))
                }
            };
            match opened_here {
                Ok((partition, index)) => {
                    opening.push((results.len(), partition, index));
                    results.push(None);
                }
                Err(e) => results.push(Some(Err((tp, e)))),
            }
        }
        // (Nothing is opened here without the data directory's handle.)
        let synced = match &data_dir {
            Ok(handle) if opening.iter().any(|(_, p, _)| p.syncs_deferred()) => {
                self.sync_opened(handle, opening.iter().map(|(_, p, _)| p))
            }
            _ => Ok(()),
        };
        for (slot, partition, index) in opening {
            let tp = partition.tp.clone();
            let result = match &synced {
                Ok(()) => self.publish(partition, index),
                Err(e) => Err(shared_failure(e)),
            };
            results[slot] = Some(result.map_err(|e| (tp, e)));
        }
        results.into_iter().flatten().collect()
    }

    /// Makes what the opens of `opened` deferred durable (`open_many`). With `BatchSync`: a
    /// syncfs for what the opens wrote (staged epoch checkpoints among it), the staged
    /// checkpoints renamed into place, a second syncfs for the renames if there were any;
    /// partitions on another filesystem fsync their own. Without: each log's own fsyncs and
    /// one of the data directory. A failure is reported as a failed sync (the broker halts on
    /// it): the syncfs may have found a write error of any file on the filesystem.
    fn sync_opened<'a>(
        &self,
        data_dir: &std::fs::File,
        opened: impl Iterator<Item = &'a Arc<Partition>> + Clone,
    ) -> Result<(), PartitionError> {
        let synced: Result<(), PartitionError> = match &self.batch_sync {
            Some(batch) => (|| {
                batch.sync()?;
                let mut renamed = false;
                for p in opened.clone() {
                    if batch.covers(p) {
                        renamed |= p.install_staged_checkpoint()?;
                    } else {
                        p.sync_deferred()?;
                    }
                }
                if renamed {
                    batch.sync()?;
                }
                for p in opened.clone().filter(|p| batch.covers(p)) {
                    p.deferred_syncs_done()?;
                }
                Ok(())
            })(),
            None => (|| {
                for p in opened.clone() {
                    p.sync_deferred()?;
                }
                Ok(data_dir.sync_all().map_err(StorageError::from)?)
            })(),
        };
        if let Err(e) = &synced {
            self.flush
                .failures
                .report(&"opening partitions", &e.to_string());
        }
        synced
    }

    /// Flushes and closes every partition (they stay found by `get`, refusing what comes as
    /// closed), answering the failures. With `BatchSync`, the partitions on the data
    /// directory's filesystem are synced together, twice for all: once for their data,
    /// indexes and producer snapshots, and once after their clean-shutdown markers
    /// (`Log::close_unsynced`); one by one each takes seven fsyncs (4,000 partitions: 7.4 s
    /// on journaled ext4). The others close one by one.
    pub fn close_all(&self) -> Vec<(TopicPartition, PartitionError)> {
        let close_each = |partitions: Vec<Arc<Partition>>| -> Vec<_> {
            partitions
                .into_iter()
                .filter_map(|p| p.close().err().map(|e| (p.tp.clone(), e)))
                .collect()
        };
        let Some(batch) = &self.batch_sync else {
            return close_each(self.all());
        };
        // A partition directory on another filesystem closes with its own fsyncs.
        let (covered, elsewhere) = self.all().into_iter().partition(|p| batch.covers(p));
        let mut failed = close_each(elsewhere);
        let mut closing = Vec::new();
        for p in covered {
            match p.close_unsynced() {
                Ok(Some(unsynced)) => closing.push((p.tp.clone(), unsynced)),
                Ok(None) => {}
                Err(e) => failed.push((p.tp.clone(), e)),
            }
        }
        // No marker after a failed sync anywhere (each log then recovers at its next open):
        // a failure reported earlier may have been this handle's one report of a lost write.
        let synced = batch
            .sync()
            .and_then(|()| match self.flush.failures.first() {
                Some(why) => Err(StorageError::SyncFailed(why)),
                None => Ok(()),
            });
        if let Err(e) = synced {
            failed.extend(closing.into_iter().map(|(tp, _)| (tp, shared_failure(&e))));
            return failed;
        }
        let mut marked = Vec::new();
        for (tp, unsynced) in closing {
            match unsynced.mark_clean() {
                Ok(()) => marked.push(tp),
                Err(e) => failed.push((tp, e.into())),
            }
        }
        if let Err(e) = batch.sync() {
            failed.extend(marked.into_iter().map(|tp| (tp, shared_failure(&e))));
        }
        failed
    }

    /// Starts an opened partition's flushing and makes it found by `get`.
    fn publish(
        &self,
        partition: Arc<Partition>,
        index: usize,
    ) -> Result<Arc<Partition>, PartitionError> {
        let tp = partition.tp.clone();
        let topic = Arc::<str>::from(tp.topic.as_str());
        let restart_hw = self
            .restart_high_watermarks
            .lock()
            .as_mut()
            .map(|hws| hws.remove(&tp).unwrap_or(0));
        if let Some(hw) = restart_hw {
            partition.start_high_watermark_at(hw)?;
        }
        match &self.shared_sync_fs {
            Some(sync_fs) => {
                let mut shared = self.shared.lock();
                if shared.is_none() {
                    let interval = match self.policy {
                        DurabilityPolicy::SyncOnAck => None,
                        DurabilityPolicy::Interval { interval_ms } => {
                            Some(std::time::Duration::from_millis(interval_ms))
                        }
                    };
                    let started = SharedFlusher::start(
                        &self.data_dir,
                        self.flush.clone(),
                        sync_fs.clone(),
                        interval,
                    )
                    .map_err(|e| PartitionError::Storage(e.into()))?;
                    *shared = Some(started);
                }
                if let Some(flusher) = shared.as_ref() {
                    partition.use_shared_flush(Arc::clone(flusher.queue()));
                }
            }
            None => {
                tokio::spawn(run_flusher(Arc::clone(&partition), self.flush.clone()));
            }
        }
        {
            let mut slots = self.partitions.entry(topic).or_default();
            if slots.len() <= index {
                slots.resize(index + 1, None);
            }
            slots[index] = Some(Arc::clone(&partition));
        }
        self.generation.fetch_add(1, Ordering::Release);
        Ok(partition)
    }

    /// Changes whenever a partition is opened or removed: partitions found while it held one
    /// value are still the ones `get` finds while it holds it.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        let slots = self.partitions.get(topic)?;
        slot(&slots, partition).cloned()
    }

    /// The partitions named by `wanted` (topic, index), in its order (`None`: not hosted
    /// here), looking each run of one topic's partitions up with one search of the map.
    pub fn get_many<'a>(
        &self,
        wanted: impl IntoIterator<Item = (Option<&'a str>, i32)>,
    ) -> Vec<Option<Arc<Partition>>> {
        let wanted = wanted.into_iter();
        let mut found = Vec::with_capacity(wanted.size_hint().0);
        // The run's topic and its entry; the guard holds its shard's read lock until the run
        // ends (nothing here writes the map meanwhile).
        let mut run: Option<(&str, Option<_>)> = None;
        for (topic, partition) in wanted {
            let Some(topic) = topic else {
                found.push(None);
                continue;
            };
            if run.as_ref().is_none_or(|(name, _)| *name != topic) {
                // Let the last run's guard go before taking the next.
                drop(run.take());
                run = Some((topic, self.partitions.get(topic)));
            }
            let slots = run.as_ref().and_then(|(_, slots)| slots.as_ref());
            found.push(slots.and_then(|s| slot(s, partition)).cloned());
        }
        found
    }

    pub fn remove(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        let removed = self
            .partitions
            .get_mut(tp.topic.as_str())
            .and_then(|mut slots| {
                usize::try_from(tp.partition)
                    .ok()
                    .and_then(|i| slots.get_mut(i))
                    .and_then(Option::take)
            });
        self.partitions.remove_if(tp.topic.as_str(), |_, slots| {
            slots.iter().all(Option::is_none)
        });
        self.generation.fetch_add(1, Ordering::Release);
        removed
    }

    /// Cluster mode: partitions opened from now on start at these high watermarks (read from
    /// the checkpoint), or at their log start when they have none.
    pub fn start_at_checkpointed_high_watermarks(&self, hws: HashMap<TopicPartition, i64>) {
        *self.restart_high_watermarks.lock() = Some(hws);
    }

    /// The checkpointed high watermarks of partitions not opened since the start.
    pub fn checkpointed_not_opened(&self) -> Vec<(TopicPartition, i64)> {
        self.restart_high_watermarks
            .lock()
            .as_ref()
            .map(|hws| hws.iter().map(|(tp, hw)| (tp.clone(), *hw)).collect())
            .unwrap_or_default()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .iter()
            .flat_map(|e| e.value().iter().flatten().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// The topic's partitions hosted here, by index.
    pub fn of_topic(&self, topic: &str) -> Vec<Arc<Partition>> {
        self.partitions
            .get(topic)
            .map(|slots| slots.iter().flatten().cloned().collect())
            .unwrap_or_default()
    }
}

/// Partition `partition` of a topic's entry, if hosted here.
fn slot(slots: &[Option<Arc<Partition>>], partition: i32) -> Option<&Arc<Partition>> {
    usize::try_from(partition)
        .ok()
        .and_then(|i| slots.get(i))
        .and_then(Option::as_ref)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
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
}
