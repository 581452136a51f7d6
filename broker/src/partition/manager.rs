//! Finds partitions by topic and index, opens them (spawning their flusher) and removes them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use prometheus_client::metrics::histogram::Histogram;
use storage::LogConfig;
use uuid::Uuid;

use super::flusher::{run_flusher, FlushContext, SyncData};
use super::lookup_key::PartitionLookup;
use super::{DurabilityPolicy, Partition, PartitionError, SyncFailures, TopicPartition};

#[derive(Debug)]
pub struct PartitionManager {
    /// Root data directory; partition `t-p` lives in `<data_dir>/t-p`.
    data_dir: PathBuf,
    partitions: DashMap<TopicPartition, Arc<Partition>>,
    /// Bumped after every insert and removal, so a list of partitions found earlier (a fetch
    /// session's) knows whether it still holds.
    generation: AtomicU64,
    policy: DurabilityPolicy,
    /// What the flushers share: the fsync histogram, the fsync itself, where failures go.
    flush: FlushContext,
}

impl PartitionManager {
    pub fn new(data_dir: &Path, policy: DurabilityPolicy, fsync_seconds: Histogram) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            partitions: DashMap::new(),
            generation: AtomicU64::new(0),
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

    /// Where a failed fsync is reported; the broker halts on the first.
    pub fn sync_failures(&self) -> &SyncFailures {
        &self.flush.failures
    }

    pub fn partition_dir(&self, tp: &TopicPartition) -> PathBuf {
        self.data_dir.join(tp.to_string())
    }

    /// Opens the partition's log (creating it if new) and starts its flusher. Must be called
    /// inside the tokio runtime.
    pub fn open(
        &self,
        tp: TopicPartition,
        topic_id: Uuid,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Arc<Partition>, PartitionError> {
        if let Some(p) = self.partitions.get(&tp) {
            return Ok(Arc::clone(p.value()));
        }
        let dir = self.partition_dir(&tp);
        let partition = Partition::open(&dir, tp.clone(), topic_id, config, self.policy, now_ms)?;
        tokio::spawn(run_flusher(Arc::clone(&partition), self.flush.clone()));
        self.partitions.insert(tp, Arc::clone(&partition));
        self.generation.fetch_add(1, Ordering::Release);
        Ok(partition)
    }

    /// Changes whenever a partition is opened or removed: partitions found while it held one
    /// value are still the ones `get` finds while it holds it.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .get(&(topic, partition) as &dyn PartitionLookup)
            .map(|p| Arc::clone(p.value()))
    }

    pub fn remove(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        let removed = self.partitions.remove(tp).map(|(_, p)| p);
        self.generation.fetch_add(1, Ordering::Release);
        removed
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .iter()
            .map(|e| Arc::clone(e.value()))
            .collect()
    }

    pub fn of_topic(&self, topic: &str) -> Vec<Arc<Partition>> {
        let mut v: Vec<_> = self
            .partitions
            .iter()
            .filter(|e| e.key().topic == topic)
            .map(|e| Arc::clone(e.value()))
            .collect();
        v.sort_by_key(|p| p.tp.partition);
        v
    }
}
