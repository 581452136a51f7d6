//! The broker node: its configuration, metadata, partitions and shared services, and the
//! topic operations (create, delete, add partitions) that change them together.
//!
//! Invariant: a topic is persisted in `meta/topics.json` before its partitions are opened, and
//! removed from it before its partition directories are renamed to their `-delete` names and
//! removed; at start-up (single node), `-delete` directories are removed and partition
//! directories of no known topic are renamed to `-stray`, never deleted (`partition_dirs`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use protocol_shim::ErrorKind;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::config::{log_config_for, BrokerConfig, TopicConfigs};
use crate::handlers::fetch::FetchSessionCache;
use crate::metadata::{
    colliding_topic, validate_topic_name, MetaProperties, TopicMeta, TopicStore,
};
use crate::metrics::Metrics;
use crate::partition::{
    DurabilityPolicy, Partition, PartitionError, PartitionManager, TopicPartition,
};
use crate::producer_ids::ProducerIdAllocator;

/// A failed topic operation: the Kafka error and a message for the client.
#[derive(Debug, Clone)]
pub struct TopicOpError {
    pub kind: ErrorKind,
    pub message: String,
}

impl TopicOpError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Every config value of a new topic valid (INVALID_CONFIG naming the first that is not).
pub fn check_topic_configs(configs: &TopicConfigs) -> Result<(), TopicOpError> {
    for (k, v) in configs {
        crate::config::validate_topic_config(k, v)
            .map_err(|m| TopicOpError::new(ErrorKind::InvalidConfig, m))?;
    }
    Ok(())
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data directory {0} is in use by another sluice process")]
    DataDirLocked(PathBuf),
    #[error(transparent)]
    Meta(#[from] crate::metadata::MetaError),
    #[error(transparent)]
    Topics(#[from] crate::metadata::TopicStoreError),
    #[error("cannot open partition {tp}: {source}")]
    Partition {
        tp: TopicPartition,
        source: crate::partition::PartitionError,
    },
    #[error(transparent)]
    Groups(#[from] crate::group::runtime::GroupLoadError),
}

pub struct Node {
    pub config: BrokerConfig,
    pub meta: MetaProperties,
    pub topics: TopicStore,
    pub partitions: PartitionManager,
    pub producer_ids: ProducerIdAllocator,
    pub fetch_sessions: FetchSessionCache,
    /// Consumer groups and committed offsets (`__consumer_offsets`).
    pub groups: crate::group::GroupRuntime,
    pub metrics: Metrics,
    pub clock: SharedClock,
    /// Cancelled when the broker starts shutting down.
    pub shutdown: CancellationToken,
    /// The cluster side (controller, replication), set at start-up on a cluster node; unset
    /// on a single node.
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::ClusterRuntime>>,
    /// Exclusive lock on `<data-dir>/.lock`, held for the node's life so that two processes
    /// never open the same logs.
    _dir_lock: std::fs::File,
    /// Held by a single node's topic creations, partition additions and deletions, one at a
    /// time: a deletion's directories must not be renamed away under a creation that has
    /// opened them but not yet published them (`PartitionManager::open_many`), and two
    /// additions must not open the same directory twice. (In a cluster the metadata pass
    /// applies them in order.)
    topic_ops: parking_lot::Mutex<()>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.meta.node_id)
            .finish()
    }
}

/// Why the shared flush cannot be trusted here, if it cannot (`filesystem_sync`).
fn shared_flush_refused(data_dir: &std::path::Path) -> Option<String> {
    use crate::filesystem_sync::{syncfs_reports_errors, syncfs_trust, SyncfsTrust};
    if !syncfs_reports_errors() {
        return Some(
            "this kernel's syncfs does not report every write error (before Linux 5.17)".into(),
        );
    }
    match std::fs::File::open(data_dir) {
        Ok(dir) if syncfs_trust(&dir) != SyncfsTrust::No => None,
        Ok(_) => Some(format!(
            "{} is not on ext4 or XFS, whose syncfs it trusts",
            data_dir.display()
        )),
        Err(e) => Some(format!("{} cannot be opened: {e}", data_dir.display())),
    }
}

impl Node {
    /// Opens the data directory and every partition. Must run inside the tokio runtime.
    pub fn start(config: BrokerConfig, clock: SharedClock) -> Result<Arc<Self>, StartError> {
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| StartError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        let dir_lock = lock_data_dir(&data_dir)?;
        let meta_dir = data_dir.join("meta");
        let meta = MetaProperties::load_or_create(&meta_dir, config.node_id)?;
        let topics = TopicStore::open(&meta_dir)?;
        let producer_ids =
            ProducerIdAllocator::open(&meta_dir).map_err(|source| StartError::DataDir {
                path: meta_dir.clone(),
                source,
            })?;
        let policy = match config.settings.opt_i64("log.flush.interval.ms") {
            Some(ms) if ms > 0 => DurabilityPolicy::Interval {
                interval_ms: ms.unsigned_abs(),
            },
            _ => DurabilityPolicy::SyncOnAck,
        };
        let metrics = Metrics::new();
        let mut partitions =
            PartitionManager::new(&data_dir, policy, metrics.fsync_seconds.clone());
        if config.settings.bool("sluice.flush.shared") {
            match shared_flush_refused(&data_dir) {
                None => {
                    partitions =
                        partitions.with_shared_flush(crate::durable_file::SyncData::filesystem());
                }
                Some(why) => tracing::warn!(
                    "sluice.flush.shared is set, but {why}: each partition fsyncs its own log"
                ),
            }
        }
        let groups = crate::group::GroupRuntime::new(&config.settings);
        let fetch_sessions = FetchSessionCache::new(
            usize::try_from(
                config
                    .settings
                    .i32("max.incremental.fetch.session.cache.slots"),
            )
            .unwrap_or(0),
        );
        let node = Arc::new(Self {
            config,
            meta,
            topics,
            partitions,
            producer_ids,
            fetch_sessions,
            groups,
            metrics,
            clock,
            shutdown: CancellationToken::new(),
            cluster: std::sync::OnceLock::new(),
            _dir_lock: dir_lock,
            topic_ops: parking_lot::Mutex::new(()),
        });
        // Deleting a topic, on a single node or in a cluster, deletes its committed offsets.
        crate::group::GroupRuntime::follow_topic_deletions(&node);
        if node.config.cluster.is_some() {
            // Partitions are opened by the cluster reconciler once the controller unfenced
            // this broker (crate::cluster); groups follow `__consumer_offsets` leadership.
            node.producer_ids.set_namespace(node.meta.node_id);
            node.partitions.start_at_checkpointed_high_watermarks(
                crate::partition::hw_checkpoint::read(&node.config.data_dir),
            );
            crate::group::GroupRuntime::start_timers(&node);
            return Ok(node);
        }
        crate::partition_dirs::tidy_data_dir(&node.config.data_dir, |topic, partition| {
            node.topics
                .get(topic)
                .is_some_and(|t| partition < t.partitions)
        })
        .map_err(|source| StartError::DataDir {
            path: node.config.data_dir.clone(),
            source,
        })?;
        let now = node.clock.now_ms();
        let topics = node.topics.all();
        node.open_partitions_of(topics.iter().map(|t| (t, 0)), now)
            .map_err(|(tp, source)| StartError::Partition { tp, source })?;
        crate::group::GroupRuntime::start(&node)?;
        Ok(node)
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The partition for a client's produce, fetch or offset lookup: it must be hosted here
    /// and led here. A partition of a known topic led elsewhere is NOT_LEADER_OR_FOLLOWER (so
    /// the client refreshes its metadata), an unknown one UNKNOWN_TOPIC_OR_PARTITION.
    pub fn leader_partition(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Arc<crate::partition::Partition>, ErrorKind> {
        match self.partitions.get(topic, partition) {
            Some(p) if p.serves_reads() => Ok(p),
            Some(_) => Err(ErrorKind::NotLeaderOrFollower),
            None => Err(self.not_hosted_error(topic, partition)),
        }
    }

    /// What a request for a partition not hosted here gets: NOT_LEADER_OR_FOLLOWER for a
    /// partition of a known topic in a cluster (it is hosted elsewhere, so the client
    /// refreshes its metadata), UNKNOWN_TOPIC_OR_PARTITION otherwise.
    pub fn not_hosted_error(&self, topic: &str, partition: i32) -> ErrorKind {
        let known = self
            .topics
            .get(topic)
            .is_some_and(|t| partition >= 0 && partition < t.partitions);
        if known && self.cluster().is_some() {
            ErrorKind::NotLeaderOrFollower
        } else {
            ErrorKind::UnknownTopicOrPartition
        }
    }

    /// KIP-951: where a partition's leader is now, for NOT_LEADER_OR_FOLLOWER answers:
    /// (leader id, leader epoch, its host, port and rack). `None` on a single node or when the
    /// partition has no live leader.
    pub fn leader_hint(
        &self,
        topic: &str,
        partition: i32,
    ) -> Option<(i32, i32, String, i32, Option<String>)> {
        let rt = self.cluster()?;
        let (_, p) = rt.partition(topic, partition)?;
        let b = rt.broker(p.leader).filter(|b| !b.fenced)?;
        Some((p.leader, p.leader_epoch, b.host, i32::from(b.port), b.rack))
    }

    /// The cluster id clients see: the cluster's (from the controller) on a cluster node.
    pub fn cluster_id(&self) -> String {
        self.cluster()
            .and_then(|rt| rt.state().cluster_id)
            .map(crate::metadata::cluster_id_of)
            .unwrap_or_else(|| self.meta.cluster_id.clone())
    }

    /// The cluster runtime, on a cluster node.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::ClusterRuntime>> {
        self.cluster.get()
    }

    /// This broker gained (`leader`) or lost the leadership of a `__consumer_offsets`
    /// partition: its groups are loaded here or handed over.
    /// Loading reads the partition from disk, so it runs on a blocking thread.
    pub fn on_offsets_leadership(self: &Arc<Self>, partition: i32, leader: bool) {
        tracing::info!(partition, leader, "__consumer_offsets leadership changed");
        if !leader {
            self.groups.unload_partition(partition);
            return;
        }
        let node = Arc::clone(self);
        tokio::task::spawn_blocking(move || match node.groups.load_partition(&node, partition) {
            Ok(n) => tracing::info!(partition, records = n, "loaded consumer groups"),
            Err(e) => tracing::error!(partition, error = %e, "cannot load consumer groups"),
        });
    }

    /// The coordinator of the groups in `__consumer_offsets` partition `offsets_partition`:
    /// (node id, advertised host, advertised port) of its leader, or `None` if it has none
    /// now (FindCoordinator then answers COORDINATOR_NOT_AVAILABLE). A single node leads every
    /// partition; in a cluster it is the partition's leader.
    pub fn coordinator_endpoint(&self, offsets_partition: i32) -> Option<(i32, String, i32)> {
        let Some(rt) = self.cluster() else {
            return Some((
                self.meta.node_id,
                self.config.advertised_host.clone(),
                self.config.advertised_port,
            ));
        };
        let (_, p) = rt.partition(crate::metadata::CONSUMER_OFFSETS_TOPIC, offsets_partition)?;
        let b = rt.broker(p.leader).filter(|b| !b.fenced)?;
        Some((b.broker_id, b.host, i32::from(b.port)))
    }

    /// Kafka's first checks of a topic to create: a legal name, not taken here, and not one
    /// that collides with an existing name ('.' read as '_').
    pub fn check_new_topic_name(&self, name: &str) -> Result<(), TopicOpError> {
        validate_topic_name(name).map_err(|m| TopicOpError::new(ErrorKind::InvalidTopic, m))?;
        if self.topics.contains(name) {
            return Err(TopicOpError::new(
                ErrorKind::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        if name.contains(['.', '_']) {
            let topics = self.topics.all();
            if let Some(existing) = colliding_topic(name, topics.iter().map(|t| t.name.as_str())) {
                return Err(TopicOpError::new(
                    ErrorKind::InvalidTopic,
                    format!("Topic '{name}' collides with existing topic: {existing}"),
                ));
            }
        }
        Ok(())
    }

    /// A new topic's requested partition count and replication factor, checked as Kafka's
    /// `ReplicationControlManager.createTopic` checks them, before this broker's defaults
    /// replace -1: the replication factor first, then the count, each with Kafka's message.
    /// Then the counts the defaults make (`num.partitions`, `default.replication.factor`).
    pub fn requested_topic_counts(
        &self,
        num_partitions: i32,
        replication_factor: i16,
    ) -> Result<(i32, i16), TopicOpError> {
        let bad_rf = || {
            TopicOpError::new(
                ErrorKind::InvalidReplicationFactor,
                "Replication factor must be larger than 0, or -1 to use the default value.",
            )
        };
        let bad_partitions = || {
            TopicOpError::new(
                ErrorKind::InvalidPartitions,
                "Number of partitions was set to an invalid non-positive value.",
            )
        };
        if replication_factor < -1 || replication_factor == 0 {
            return Err(bad_rf());
        }
        if num_partitions < -1 || num_partitions == 0 {
            return Err(bad_partitions());
        }
        let rf = if replication_factor == -1 {
            i16::try_from(self.config.settings.i32("default.replication.factor")).unwrap_or(1)
        } else {
            replication_factor
        };
        let partitions = if num_partitions == -1 {
            self.config.settings.i32("num.partitions")
        } else {
            num_partitions
        };
        // A broker default of 0 or below is refused the same way rather than used.
        if rf <= 0 {
            return Err(bad_rf());
        }
        if partitions <= 0 {
            return Err(bad_partitions());
        }
        Ok((partitions, rf))
    }

    /// Validates a create-topic request without changing anything.
    pub fn validate_new_topic(
        &self,
        name: &str,
        num_partitions: i32,
        replication_factor: i16,
        configs: &TopicConfigs,
    ) -> Result<(i32, i16), TopicOpError> {
        self.check_new_topic_name(name)?;
        let (partitions, rf) = self.requested_topic_counts(num_partitions, replication_factor)?;
        if rf > 1 {
            return Err(TopicOpError::new(
                ErrorKind::InvalidReplicationFactor,
                format!("Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only 1 broker(s) are registered."),
            ));
        }
        check_topic_configs(configs)?;
        Ok((partitions, rf))
    }

    /// Creates a topic: persists it, then opens its partitions.
    pub fn create_topic(
        &self,
        name: &str,
        num_partitions: i32,
        replication_factor: i16,
        configs: TopicConfigs,
        internal: bool,
    ) -> Result<TopicMeta, TopicOpError> {
        let _one_at_a_time = self.topic_ops.lock();
        let (partitions, _rf) =
            self.validate_new_topic(name, num_partitions, replication_factor, &configs)?;
        let meta = TopicMeta {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            configs,
            internal,
        };
        let to_insert = meta.clone();
        let inserted = self
            .topics
            .update(|m| {
                if m.contains_key(name) {
                    return false;
                }
                m.insert(to_insert.name.clone(), to_insert);
                true
            })
            .map_err(|e| TopicOpError::new(ErrorKind::KafkaStorageError, e.to_string()))?;
        if !inserted {
            return Err(TopicOpError::new(
                ErrorKind::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        self.open_partitions(&meta, 0)?;
        tracing::info!(topic = name, partitions, "created topic");
        Ok(meta)
    }

    fn open_partitions(&self, meta: &TopicMeta, from: i32) -> Result<(), TopicOpError> {
        self.open_partitions_of([(meta, from)], self.now_ms())
            .map_err(|(_, e)| TopicOpError::new(ErrorKind::KafkaStorageError, e.to_string()))
    }

    /// Opens (creating where new) the partitions of each topic from its index on, each
    /// recording its epoch (the only copy, at epoch 0) before it serves, all synced together
    /// (`PartitionManager::open_many`). Reports the first partition that failed.
    fn open_partitions_of<'a>(
        &self,
        topics: impl IntoIterator<Item = (&'a TopicMeta, i32)>,
        now: i64,
    ) -> Result<(), (TopicPartition, PartitionError)> {
        let mut wanted = Vec::new();
        for (meta, from) in topics {
            let cfg = log_config_for(&meta.configs, &self.config.settings);
            for p in from..meta.partitions {
                let tp = TopicPartition {
                    topic: meta.name.clone(),
                    partition: p,
                };
                wanted.push((tp, meta.id, cfg.clone()));
            }
        }
        for opened in self
            .partitions
            .open_many(wanted, now, Partition::record_own_epoch)
        {
            // A partition open already (the same topic opened again) records its epoch here.
            let p = opened?;
            p.record_own_epoch().map_err(|e| (p.tp.clone(), e))?;
        }
        Ok(())
    }

    /// Creates a topic on a client's behalf (Metadata auto-create), if allowed.
    pub async fn auto_create_topic(
        self: &Arc<Self>,
        name: &str,
    ) -> Option<Result<TopicMeta, TopicOpError>> {
        if !self.config.settings.bool("auto.create.topics.enable") {
            return None;
        }
        let created = match self.cluster() {
            Some(rt) => rt
                .create_topic(self, name, -1, -1, TopicConfigs::new(), None, false)
                .await
                .and_then(|_| {
                    self.topics.get(name).ok_or_else(|| {
                        TopicOpError::new(ErrorKind::LeaderNotAvailable, "topic is being created")
                    })
                }),
            // Off the runtime's workers: it creates files, syncs, and may wait for another
            // topic operation (`topic_ops`).
            None => {
                let (node, owned) = (Arc::clone(self), name.to_string());
                topic_op_off_runtime(move || {
                    node.create_topic(&owned, -1, -1, TopicConfigs::new(), false)
                })
                .await
            }
        };
        match created {
            Err(e) if e.kind == ErrorKind::TopicAlreadyExists => self.topics.get(name).map(Ok),
            other => Some(other),
        }
    }

    /// The topic `name` if DeleteTopics may delete it: known here and not an internal one
    /// (Kafka's errors and messages otherwise). Whether deletion is enabled at all
    /// (`delete.topic.enable`) the handler decides for the whole request first, as Kafka.
    pub fn deletable_topic(&self, name: &str) -> Result<TopicMeta, TopicOpError> {
        let Some(meta) = self.topics.get(name) else {
            return Err(TopicOpError::new(
                ErrorKind::UnknownTopicOrPartition,
                "This server does not host this topic-partition.",
            ));
        };
        if meta.internal {
            return Err(TopicOpError::new(
                ErrorKind::InvalidTopic,
                "Internal topics cannot be deleted.",
            ));
        }
        Ok(meta)
    }

    /// Deletes a topic: unpersists it (which also makes the groups delete their committed
    /// offsets on it, see `GroupRuntime::follow_topic_deletions`), then closes its partitions
    /// and removes their directories (renamed to `-delete` first, see `partition_dirs`).
    pub fn delete_topic(&self, name: &str) -> Result<TopicMeta, TopicOpError> {
        let _one_at_a_time = self.topic_ops.lock();
        let meta = self.deletable_topic(name)?;
        self.topics
            .update(|m| m.remove(name).is_some())
            .map_err(|e| TopicOpError::new(ErrorKind::KafkaStorageError, e.to_string()))?;
        for p in 0..meta.partitions {
            let tp = TopicPartition {
                topic: name.to_string(),
                partition: p,
            };
            if let Some(partition) = self.partitions.remove(&tp) {
                // Closed first, so that nothing writes into the directory once it is renamed.
                if let Err(e) = partition.close() {
                    tracing::warn!(partition = %tp, error = %e, "error closing a deleted partition");
                }
            }
            if let Err(e) = crate::partition_dirs::delete_partition_dir(&self.config.data_dir, &tp)
            {
                tracing::error!(partition = %tp, error = %e, "cannot delete partition directory");
            }
        }
        self.fetch_sessions.forget_named_topic(name);
        tracing::info!(topic = name, "deleted topic");
        Ok(meta)
    }

    /// Raises a topic's partition count, by at most `budget` partitions
    /// (`partitions_within_budget`); how many it added (or, validating only, would add).
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
        budget: u64,
    ) -> Result<u64, TopicOpError> {
        let _one_at_a_time = self.topic_ops.lock();
        let Some(meta) = self.topics.get(name) else {
            return Err(TopicOpError::new(
                ErrorKind::UnknownTopicOrPartition,
                "This server does not host this topic-partition.",
            ));
        };
        check_partition_increase(name, meta.partitions, count, None)?;
        let added = partitions_within_budget(meta.partitions, count, budget)?;
        if validate_only {
            return Ok(added);
        }
        let from = meta.partitions;
        let mut updated = meta.clone();
        updated.partitions = count;
        let to_store = updated.clone();
        self.topics
            .update(|m| {
                m.insert(to_store.name.clone(), to_store);
                true
            })
            .map_err(|e| TopicOpError::new(ErrorKind::KafkaStorageError, e.to_string()))?;
        self.open_partitions(&updated, from)?;
        Ok(added)
    }

    /// Applies retention to every partition every `log.retention.check.interval.ms`.
    pub async fn run_retention(self: Arc<Self>) {
        let interval_ms = self
            .config
            .settings
            .i64("log.retention.check.interval.ms")
            .max(100);
        let mut tick = tokio::time::interval(Duration::from_millis(interval_ms.unsigned_abs()));
        tick.tick().await;
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = self.now_ms();
            let cleaner = self.config.settings.bool("log.cleaner.enable");
            for p in self.partitions.all() {
                match tokio::task::spawn_blocking(move || p.apply_retention(now).map(|n| (p, n)))
                    .await
                {
                    Ok(Ok((p, n))) => {
                        if n > 0 {
                            tracing::info!(partition = %p.tp, segments = n, "retention deleted segments");
                        }
                        if cleaner {
                            // Compaction rewrites sealed segments only; it runs on a blocking
                            // thread like retention (and holds the partition's log meanwhile).
                            let tp = p.tp.clone();
                            match tokio::task::spawn_blocking(move || p.compact(now)).await {
                                Ok(Ok(Some(o))) => tracing::info!(
                                    partition = %tp,
                                    bytes_before = o.bytes_before,
                                    bytes_after = o.bytes_after,
                                    "compacted"
                                ),
                                Ok(Err(e)) => {
                                    tracing::warn!(partition = %tp, error = %e, "compaction failed")
                                }
                                _ => {}
                            }
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "retention failed"),
                    _ => {}
                }
            }
        }
    }

    /// Flushes and closes every partition (after any topic operation under way).
    pub fn close_partitions(&self) {
        let _one_at_a_time = self.topic_ops.lock();
        if self.config.cluster.is_some() {
            // The high watermarks as they stand, for the next start (`hw_checkpoint`).
            let entries = crate::partition::hw_checkpoint::current(&self.partitions);
            // Nothing hosted (stopped before the controller let it take any): no write.
            let written = if entries.is_empty() {
                Ok(())
            } else {
                crate::partition::hw_checkpoint::write(&self.config.data_dir, &entries)
            };
            if let Err(e) = written {
                tracing::warn!(error = %e, "cannot write the high-watermark checkpoint");
            }
        }
        for (tp, e) in self.partitions.close_all() {
            tracing::error!(partition = %tp, error = %e, "error closing partition");
        }
    }
}

/// Runs a single node's topic creation (a client's, or Metadata's auto-creation), partition
/// addition or topic deletion on the blocking pool, off the runtime's workers: each creates,
/// renames or fsyncs files for every partition (a thousand partitions take a fraction of a
/// second to seconds), and they wait for one another (`Node::topic_ops`). A task that does not
/// finish answers UNKNOWN_SERVER_ERROR.
pub async fn topic_op_off_runtime<T: Send + 'static>(
    op: impl FnOnce() -> Result<T, TopicOpError> + Send + 'static,
) -> Result<T, TopicOpError> {
    tokio::task::spawn_blocking(op).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "topic operation task failed");
        Err(TopicOpError::new(
            ErrorKind::UnknownServerError,
            format!("topic operation failed: {e}"),
        ))
    })
}

/// Takes the exclusive lock on the data directory, failing if another process holds it.
fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    let path = data_dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StartError::DataDir {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(StartError::DataDirLocked(data_dir.to_path_buf()))
        }
        Err(std::fs::TryLockError::Error(source)) => Err(StartError::DataDir { path, source }),
    }
}

/// The most partitions one CreateTopics may create, or one CreatePartitions add, over all its
/// topics: Kafka's `MAX_PARTITIONS_PER_BATCH` for the first, and for the second the bound on
/// one request's metadata records (`MAX_RECORDS_PER_USER_OP`, one record per partition added).
/// Without it one request could ask for millions of partitions, each a directory and open
/// files.
pub const MAX_PARTITIONS_PER_REQUEST: u64 = 10_000;

/// What a request over `MAX_PARTITIONS_PER_REQUEST` gets (Kafka's words for CreateTopics).
pub const TOO_MANY_PARTITIONS: &str = "Excessively large number of partitions per request.";

/// The partitions a CreatePartitions entry adds (`count` over `current`, both checked by
/// `check_partition_increase` first), refused when more than `budget`: what is left of
/// `MAX_PARTITIONS_PER_REQUEST` after the request's earlier topics. Checked by the operation
/// itself, on the state it grows, so that no view taken earlier can let it past.
pub fn partitions_within_budget(
    current: i32,
    count: i32,
    budget: u64,
) -> Result<u64, TopicOpError> {
    let additional = u64::try_from(i64::from(count) - i64::from(current)).unwrap_or(0);
    if additional > budget {
        // Kafka's controller stops at the same bound with an UNKNOWN_SERVER_ERROR (its record
        // list overflows, after adding part of the topic's partitions); here the topic is
        // refused whole, with CreateTopics' error for the same excess.
        return Err(TopicOpError::new(
            ErrorKind::PolicyViolation,
            TOO_MANY_PARTITIONS,
        ));
    }
    Ok(additional)
}

/// Kafka's checks of a partition increase, in its order and words
/// (`ReplicationControlManager.createPartitions`): the count must grow, and manual assignments
/// (`assignments`: how many were given, if any) must name exactly the partitions added.
pub fn check_partition_increase(
    name: &str,
    current: i32,
    count: i32,
    assignments: Option<usize>,
) -> Result<(), TopicOpError> {
    if count == current {
        return Err(TopicOpError::new(
            ErrorKind::InvalidPartitions,
            format!("Topic already has {current} partition(s)."),
        ));
    }
    if count < current {
        return Err(TopicOpError::new(
            ErrorKind::InvalidPartitions,
            format!(
                "The topic {name} currently has {current} partition(s); {count} would not be an increase."
            ),
        ));
    }
    let additional = i64::from(count) - i64::from(current);
    if let Some(given) = assignments {
        if i64::try_from(given).ok() != Some(additional) {
            return Err(TopicOpError::new(
                ErrorKind::InvalidReplicaAssignment,
                format!(
                    "Attempted to add {additional} additional partition(s), but only {given} assignment(s) were specified."
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_data_dir(dir.path()).unwrap();
        assert!(matches!(
            lock_data_dir(dir.path()),
            Err(StartError::DataDirLocked(_))
        ));
        drop(first);
        assert!(lock_data_dir(dir.path()).is_ok());
    }

    async fn start(dir: &std::path::Path) -> Arc<Node> {
        // A node stopped just before may still be releasing the data directory's lock.
        for _ in 0..100 {
            match Node::start(
                BrokerConfig::for_tests(dir, Default::default()),
                Arc::new(crate::clock::SystemClock),
            ) {
                Err(StartError::DataDirLocked(_)) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                started => return started.unwrap(),
            }
        }
        panic!("the data directory stayed locked");
    }

    async fn stop(node: Arc<Node>) {
        node.shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(50)).await;
        node.close_partitions();
    }

    /// The names in `dir` starting with `prefix`, sorted.
    fn names_with(dir: &std::path::Path, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn deleted_topics_leave_nothing_and_start_up_sets_unknown_partitions_aside() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let node = start(data).await;
        node.create_topic("t", 2, 1, Default::default(), false)
            .unwrap();
        node.create_topic("u", 1, 1, Default::default(), false)
            .unwrap();
        assert_eq!(names_with(data, "t-"), vec!["t-0", "t-1"]);
        node.delete_topic("t").unwrap();
        assert!(names_with(data, "t-").is_empty());
        std::fs::write(data.join("u-0").join("marker"), b"u's data").unwrap();
        stop(node).await;

        // As if killed between the topics.json update and the directories' rename (u), and
        // during the removal of a renamed one (v); plus directories that are no partition.
        crate::metadata::TopicStore::open(&data.join("meta"))
            .unwrap()
            .update(|m| m.remove("u").is_some())
            .unwrap();
        let deleting = "v-0.0123456789abcdef0123456789abcdef-delete";
        for other in [deleting, "lost+found", "backup"] {
            std::fs::create_dir(data.join(other)).unwrap();
            std::fs::write(data.join(other).join("x"), b"x").unwrap();
        }
        let node = start(data).await;
        assert!(!data.join(deleting).exists());
        assert!(data.join("lost+found").join("x").exists());
        assert!(data.join("backup").join("x").exists());
        assert!(!data.join("u-0").exists());
        let strays = names_with(data, "u-0.");
        assert_eq!(strays.len(), 1, "{strays:?}");
        assert!(strays[0].ends_with("-stray"), "{strays:?}");
        assert_eq!(
            std::fs::read(data.join(&strays[0]).join("marker")).unwrap(),
            b"u's data"
        );
        // A new topic under the old name starts empty; the stray stays.
        node.create_topic("u", 1, 1, Default::default(), false)
            .unwrap();
        assert!(!data.join("u-0").join("marker").exists());
        stop(node).await;
        let node = start(data).await;
        assert_eq!(names_with(data, "u-0."), strays);
        assert!(node.partitions.get("u", 0).is_some());
        stop(node).await;
    }
}
