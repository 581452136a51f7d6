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
    /// one, for tests; the broker opens through `open_many`). Must be called inside the tokio
    /// runtime.
    #[cfg(test)]
    pub(crate) fn open(
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
#[path = "manager_tests.rs"]
mod tests;
