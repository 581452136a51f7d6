//! `GroupRuntime`: the thin async layer around the pure `GroupCoordinator`.
//!
//! It owns the coordinator behind one mutex (calls are short and never await), hands each
//! request a token so JoinGroup/SyncGroup can be parked and answered later through a oneshot
//! channel, appends the records a call emits to `__consumer_offsets` (one batch per partition
//! per call, in call order, under the same mutex so the log order is the state order), and
//! releases replies only once those records are durable. A task (`run_timers`) fires the
//! coordinator's deadlines and the periodic offset expiry.
//!
//! Append failures become COORDINATOR_NOT_AVAILABLE (retriable, as Kafka answers when its
//! coordinator log write fails) or INVALID_COMMIT_OFFSET_SIZE for an oversized batch.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use protocol_shim::ErrorKind;
use storage::{AppendOutcome, BatchBuilder, StorageError};
use tokio::sync::{oneshot, Notify};

use super::api::ParkedReply;
use super::coordinator::{Answer, CoordinatorConfig, Effects, GroupCoordinator, MemberIds};
use super::loader::load_partition;
use super::partitioner::partition_for;
use super::records::GroupRecord;
use crate::config::BrokerSettings;
use crate::metadata::CONSUMER_OFFSETS_TOPIC;
use crate::node::Node;
use crate::partition::{AckWait, Partition, PartitionError};

/// Resolves once a call's records are durable, or with the error that prevented it.
pub type DurableWait = Pin<Box<dyn Future<Output = Result<(), ErrorKind>> + Send>>;

/// What one coordinator call produced.
pub struct Called<T> {
    pub answer: Answer<T>,
    /// Present when the answer is `Parked`: the reply arrives here.
    pub parked: Option<oneshot::Receiver<ParkedReply>>,
    /// Await before sending an answer given now.
    pub durable: DurableWait,
}

struct Inner {
    coord: GroupCoordinator,
    /// Parked requests by token.
    waiters: HashMap<u64, oneshot::Sender<ParkedReply>>,
}

pub struct GroupRuntime {
    inner: Mutex<Inner>,
    /// Wakes the timer task when deadlines may have moved.
    wake: Notify,
    next_token: AtomicU64,
    /// Partitions of `__consumer_offsets` (the topic's actual count, set at start; the
    /// coordinator holds the same count).
    num_partitions: AtomicI32,
    commit_timeout_ms: u64,
    retention_check_interval_ms: u64,
    /// Set at shutdown: nothing is parked any more, so shutdown never waits for a rebalance.
    closed: AtomicBool,
}

impl std::fmt::Debug for GroupRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupRuntime").finish_non_exhaustive()
    }
}

/// The coordinator settings from the broker's Kafka-named settings.
pub fn coordinator_config(settings: &BrokerSettings) -> CoordinatorConfig {
    CoordinatorConfig {
        initial_rebalance_delay_ms: settings.i64("group.initial.rebalance.delay.ms").max(0),
        min_session_timeout_ms: settings.i32("group.min.session.timeout.ms"),
        max_session_timeout_ms: settings.i32("group.max.session.timeout.ms"),
        max_group_size: usize::try_from(settings.i32("group.max.size")).unwrap_or(0),
        offsets_retention_ms: settings
            .i64("offsets.retention.minutes")
            .saturating_mul(60_000),
        // Counted as Kafka does (UTF-16 units). Metadata whose UTF-8 encoding is too long
        // for the record format's i16 length is refused on its own (`commit_offsets`).
        offset_metadata_max_bytes: usize::try_from(settings.i32("offset.metadata.max.bytes"))
            .unwrap_or(0),
        ..CoordinatorConfig::default()
    }
}

/// Why groups could not be loaded at start-up.
#[derive(Debug, thiserror::Error)]
pub enum GroupLoadError {
    #[error("cannot create {CONSUMER_OFFSETS_TOPIC}: {0}")]
    CreateTopic(String),
    #[error("cannot read {CONSUMER_OFFSETS_TOPIC}-{partition}: {source}")]
    Read {
        partition: i32,
        source: PartitionError,
    },
}

impl GroupRuntime {
    /// A runtime that serves no group until partitions are loaded.
    pub fn new(settings: &BrokerSettings) -> Self {
        let num_partitions = settings.i32("offsets.topic.num.partitions").max(1);
        let mut coord = GroupCoordinator::new(coordinator_config(settings), MemberIds::Random);
        coord.set_offsets_partitions(num_partitions);
        GroupRuntime {
            inner: Mutex::new(Inner {
                coord,
                waiters: HashMap::new(),
            }),
            wake: Notify::new(),
            next_token: AtomicU64::new(1),
            num_partitions: AtomicI32::new(num_partitions),
            commit_timeout_ms: u64::try_from(settings.i32("offsets.commit.timeout.ms"))
                .unwrap_or(5000),
            retention_check_interval_ms: u64::try_from(
                settings.i64("offsets.retention.check.interval.ms"),
            )
            .unwrap_or(600_000)
            .max(1000),
            closed: AtomicBool::new(false),
        }
    }

    /// The `__consumer_offsets` partition that holds `group_id`.
    pub fn partition_for(&self, group_id: &str) -> i32 {
        partition_for(group_id, self.num_partitions.load(Ordering::Relaxed))
    }

    /// Single node: creates `__consumer_offsets` if needed, loads every partition of it, and
    /// starts the timer task. Runs once, inside the tokio runtime, before the listener starts.
    /// (In a cluster, `start_timers` runs instead and leadership changes call
    /// `load_partition` / `unload_partition`.)
    pub fn start(node: &Arc<Node>) -> Result<(), GroupLoadError> {
        let rt = &node.groups;
        let topic = match node.topics.get(CONSUMER_OFFSETS_TOPIC) {
            Some(t) => t,
            None => {
                let configs = offsets_topic_configs(&node.config.settings);
                let n = rt.num_partitions.load(Ordering::Relaxed);
                node.create_topic(CONSUMER_OFFSETS_TOPIC, n, 1, configs, true)
                    .map_err(|e| GroupLoadError::CreateTopic(e.message))?
            }
        };
        rt.set_offsets_partitions(topic.partitions);
        let mut loaded = 0usize;
        for p in 0..topic.partitions {
            if node.partitions.get(CONSUMER_OFFSETS_TOPIC, p).is_none() {
                continue;
            }
            loaded += rt.load_partition(node, p)?;
        }
        tracing::info!(
            records = loaded,
            partitions = topic.partitions,
            "loaded consumer groups"
        );
        Self::start_timers(node);
        Ok(())
    }

    /// Sets the partition count of `__consumer_offsets` (its actual count, known once the
    /// topic exists). Drops every loaded partition: call before loading any.
    pub fn set_offsets_partitions(&self, num_partitions: i32) {
        let n = num_partitions.max(1);
        let mut inner = self.inner.lock();
        self.num_partitions.store(n, Ordering::Relaxed);
        inner.coord.set_offsets_partitions(n);
        self.send_replies(&mut inner);
    }

    /// Calls `on_topics_deleted` whenever this node's topic list loses a topic (deleted, or
    /// replaced by another of the same name). Every deletion goes through the topic list: a
    /// single node's DeleteTopics (`Node::delete_topic`) and, in a cluster, the reconciler
    /// applying the controller's metadata on every broker (each writes the tombstones of the
    /// groups it coordinates). Registered once, by `Node::start`.
    pub fn follow_topic_deletions(node: &Arc<Node>) {
        let node_ref = Arc::downgrade(node);
        node.topics.on_removed(Box::new(move |removed| {
            let Some(node) = node_ref.upgrade() else {
                return;
            };
            let names: Vec<String> = removed.iter().map(|t| t.name.clone()).collect();
            node.groups.on_topics_deleted(&node, &names);
        }));
    }

    /// Starts the task that fires the coordinator's deadlines and the periodic offset expiry
    /// (until shutdown). Needs the tokio runtime.
    pub fn start_timers(node: &Arc<Node>) {
        tokio::spawn(run_timers(Arc::clone(node)));
    }

    /// Loads `__consumer_offsets` partition `partition` (this node leads it now): replays its
    /// records into the coordinator and serves its groups from then on. Meanwhile its groups
    /// get COORDINATOR_LOAD_IN_PROGRESS. Loading again rebuilds the same state. Returns how
    /// many records were replayed. The log is read without holding the coordinator's lock.
    pub fn load_partition(&self, node: &Node, partition: i32) -> Result<usize, GroupLoadError> {
        let load_id = {
            let mut inner = self.inner.lock();
            let id = inner.coord.begin_loading(partition);
            self.send_replies(&mut inner);
            id
        };
        let read = match node.partitions.get(CONSUMER_OFFSETS_TOPIC, partition) {
            Some(log) => {
                let mut records = Vec::new();
                load_partition(&log, |r| records.push(r)).map(|_| records)
            }
            // No replica of it here (yet): nothing to replay.
            None => Ok(Vec::new()),
        };
        let records = match read {
            Ok(records) => records,
            Err(source) => {
                self.inner.lock().coord.cancel_loading(partition, load_id);
                return Err(GroupLoadError::Read { partition, source });
            }
        };
        let count = records.len();
        let mut inner = self.inner.lock();
        let now = node.now_ms();
        if inner
            .coord
            .finish_loading_partition(partition, load_id, records, now)
        {
            tracing::debug!(
                partition,
                records = count,
                "loaded consumer group partition"
            );
        }
        drop(inner);
        self.wake.notify_one();
        Ok(count)
    }

    /// Stops coordinating the groups of `__consumer_offsets` partition `partition` (another
    /// node leads it now): drops them and their timers, and answers their parked
    /// JoinGroup/SyncGroup requests NOT_COORDINATOR.
    pub fn unload_partition(&self, partition: i32) {
        let mut inner = self.inner.lock();
        inner.coord.unload_partition(partition);
        self.send_replies(&mut inner);
        drop(inner);
        self.wake.notify_one();
        tracing::debug!(partition, "unloaded consumer group partition");
    }

    /// Marks `partition` loading and leaves it so (tests of the answers given meanwhile).
    #[cfg(test)]
    pub fn begin_loading_for_tests(&self, partition: i32) {
        self.inner.lock().coord.begin_loading(partition);
    }

    /// Whether this node coordinates `group_id` (its partition is loaded).
    pub fn owns_group(&self, group_id: &str) -> bool {
        self.inner.lock().coord.owns_group(group_id)
    }

    /// NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS if this node does not serve
    /// `group_id` now (see `GroupCoordinator::group_error`).
    pub fn group_error(&self, group_id: &str) -> Option<ErrorKind> {
        self.inner.lock().coord.group_error(group_id)
    }

    /// Sends the replies the coordinator left in its effects (load and unload emit replies
    /// only, no records).
    fn send_replies(&self, inner: &mut Inner) {
        let effects = inner.coord.take_effects();
        if !effects.records.is_empty() {
            // Not reachable: loading and unloading write nothing.
            tracing::error!(
                records = effects.records.len(),
                "group records emitted by a load or unload were not written"
            );
        }
        for (token, reply) in effects.replies {
            if let Some(tx) = inner.waiters.remove(&token) {
                let _ = tx.send(reply);
            }
        }
    }

    /// Runs one coordinator operation with a fresh token, then persists its effects.
    pub fn call<T>(
        &self,
        node: &Node,
        op: impl FnOnce(&mut GroupCoordinator, i64, u64) -> Answer<T>,
    ) -> Called<T> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner.lock();
        // Read under the lock so calls see time move forward in the order they run.
        let now = node.now_ms();
        inner.waiters.insert(token, tx);
        let answer = op(&mut inner.coord, now, token);
        if self.closed.load(Ordering::Relaxed) {
            // Shutting down: a parked request is answered COORDINATOR_NOT_AVAILABLE at once
            // (its sender is dropped) so the client looks for the coordinator again.
            inner.waiters.remove(&token);
        }
        let parked = match answer {
            Answer::Parked => Some(rx),
            Answer::Now(_) => {
                inner.waiters.remove(&token);
                None
            }
        };
        let effects = inner.coord.take_effects();
        let durable = self.persist(&mut inner, node, effects, now);
        drop(inner);
        self.wake.notify_one();
        Called {
            answer,
            parked,
            durable,
        }
    }

    /// Topics were deleted (Kafka's `GroupCoordinatorService.onPartitionsDeleted`): writes a
    /// tombstone for every offset the groups served here committed on them, so consumers of
    /// a topic created again under the same name do not resume at the old topic's offsets.
    /// The tombstones are appended (and the offsets dropped) before this returns, so a commit
    /// on the new topic cannot be overtaken by them; their durability is not awaited, and a
    /// failure is logged (Kafka logs and swallows it too). Groups whose partition is still
    /// loading here are not covered, as in Kafka.
    pub fn on_topics_deleted(&self, node: &Node, topics: &[String]) {
        if topics.is_empty() {
            return;
        }
        let called = self.call(node, |c, _, _| Answer::Now(c.on_topics_deleted(topics)));
        let Answer::Now(tombstones) = called.answer else {
            return;
        };
        if tombstones == 0 {
            return;
        }
        tracing::info!(
            ?topics,
            tombstones,
            "deleting committed offsets of deleted topics"
        );
        let topics = topics.to_vec();
        // Records were appended, so `persist` is already waiting on the tokio runtime.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            if let Err(error) = called.durable.await {
                tracing::warn!(
                    ?topics,
                    ?error,
                    "offset tombstones of deleted topics not durable"
                );
            }
        });
    }

    /// Runs a read-only operation.
    pub fn read<T>(&self, op: impl FnOnce(&GroupCoordinator) -> T) -> T {
        op(&self.inner.lock().coord)
    }

    /// Appends the records (applying them once written) and arranges for the replies to be
    /// sent once they are durable.
    fn persist(&self, inner: &mut Inner, node: &Node, effects: Effects, now: i64) -> DurableWait {
        let replies: Vec<(oneshot::Sender<ParkedReply>, ParkedReply)> = effects
            .replies
            .into_iter()
            .filter_map(|(token, reply)| inner.waiters.remove(&token).map(|tx| (tx, reply)))
            .collect();
        if effects.records.is_empty() {
            for (tx, reply) in replies {
                let _ = tx.send(reply);
            }
            return Box::pin(std::future::ready(Ok(())));
        }
        let mut by_partition: BTreeMap<i32, Vec<GroupRecord>> = BTreeMap::new();
        for r in effects.records {
            by_partition
                .entry(self.partition_for(r.group_id()))
                .or_default()
                .push(r);
        }
        // (partition, offset that must be on every in-sync replica, epoch it was appended at)
        let mut waits: Vec<(Arc<Partition>, i64, i32)> = Vec::new();
        let mut failure: Option<ErrorKind> = None;
        for (p, records) in by_partition {
            match append(node, p, &records, now) {
                Ok(wait) => {
                    inner.coord.apply_persisted(&records, now);
                    waits.push(wait);
                }
                Err(kind) => {
                    tracing::error!(partition = p, error = ?kind, records = records.len(), "cannot append group records");
                    failure = Some(kind);
                }
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.commit_timeout_ms);
        let (done_tx, done_rx) = oneshot::channel();
        tokio::spawn(async move {
            let mut result = failure.map_or(Ok(()), Err);
            for (partition, end_offset, epoch) in waits {
                match partition
                    .wait_all_replicas(end_offset, epoch, deadline)
                    .await
                {
                    AckWait::Done => {}
                    AckWait::TimedOut => {
                        tracing::warn!(partition = %partition.tp, "group records not durable in time");
                        result = Err(ErrorKind::CoordinatorNotAvailable);
                    }
                    // The offsets partition moved on: Kafka fails the coordinator's pending
                    // writes with NOT_COORDINATOR, and the client finds the new one.
                    AckWait::NotLeader => result = Err(ErrorKind::NotCoordinator),
                }
            }
            for (tx, reply) in replies {
                let reply = match result {
                    Ok(()) => reply,
                    Err(kind) => reply.into_error(kind),
                };
                let _ = tx.send(reply);
            }
            let _ = done_tx.send(result);
        });
        Box::pin(async move {
            done_rx
                .await
                .unwrap_or(Err(ErrorKind::CoordinatorNotAvailable))
        })
    }
}

/// Appends `records` as one batch; returns the partition, the offset that must become
/// durable and the leader epoch it was appended at.
fn append(
    node: &Node,
    partition: i32,
    records: &[GroupRecord],
    now: i64,
) -> Result<(Arc<Partition>, i64, i32), ErrorKind> {
    let p = node
        .partitions
        .get(CONSUMER_OFFSETS_TOPIC, partition)
        .ok_or(ErrorKind::CoordinatorNotAvailable)?;
    let mut builder = BatchBuilder::new();
    for r in records {
        // Callers bound every field's length, so this is a bug: nothing is written (a field
        // is never cut), and the client gets UNKNOWN_SERVER_ERROR, as Kafka answers when a
        // coordinator record cannot be serialised.
        let (key, value) = r.encode().map_err(|e| {
            tracing::error!(group = r.group_id(), error = %e, "cannot encode group record");
            ErrorKind::UnknownServerError
        })?;
        builder = builder.record(Some(&key), value.as_deref(), now);
    }
    let batch = builder.build().map_err(|e| storage_error_kind(&e))?;
    match p.append_at_epoch(&batch, now) {
        Ok((AppendOutcome::Appended { last_offset, .. }, epoch))
        | Ok((AppendOutcome::Duplicate { last_offset, .. }, epoch)) => {
            Ok((p, last_offset.saturating_add(1), epoch))
        }
        Err(PartitionError::Storage(e)) => Err(storage_error_kind(&e)),
        Err(
            PartitionError::Closed(_)
            | PartitionError::NotLeader(_)
            | PartitionError::NegativeIndex(_)
            | PartitionError::StaleFetch(_),
        ) => Err(ErrorKind::NotCoordinator),
    }
}

/// The configs `__consumer_offsets` is created with, as Kafka's
/// `GroupCoordinatorService.groupMetadataTopicConfigs`: compacted, with segments of
/// `offsets.topic.segment.bytes` (100 MiB) so that compaction (which never touches the active
/// segment) keeps the log a coordinator replays on a leadership change small, and the
/// producer's compression.
pub fn offsets_topic_configs(
    settings: &crate::config::BrokerSettings,
) -> crate::config::TopicConfigs {
    let mut configs = crate::config::TopicConfigs::new();
    configs.insert("cleanup.policy".into(), "compact".into());
    configs.insert("compression.type".into(), "producer".into());
    configs.insert(
        "segment.bytes".into(),
        settings.i64("offsets.topic.segment.bytes").to_string(),
    );
    configs
}

/// Kafka's normalisation of coordinator write failures.
fn storage_error_kind(e: &StorageError) -> ErrorKind {
    match e {
        StorageError::MessageTooLarge { .. } => ErrorKind::InvalidCommitOffsetSize,
        _ => ErrorKind::CoordinatorNotAvailable,
    }
}

/// Fires coordinator deadlines and the periodic offset expiry until shutdown.
async fn run_timers(node: Arc<Node>) {
    let rt = &node.groups;
    let mut next_expiry_ms = node
        .now_ms()
        .saturating_add(i64::try_from(rt.retention_check_interval_ms).unwrap_or(i64::MAX));
    loop {
        let now = node.now_ms();
        let next = rt
            .read(|c| c.next_deadline())
            .map_or(next_expiry_ms, |d| d.min(next_expiry_ms));
        // Re-check at least every second: the wall clock may jump.
        let sleep_ms = u64::try_from(next.saturating_sub(now))
            .unwrap_or(0)
            .min(1000);
        tokio::select! {
            () = node.shutdown.cancelled() => {
                rt.closed.store(true, Ordering::Relaxed);
                // Dropping the senders answers every parked JoinGroup/SyncGroup with
                // COORDINATOR_NOT_AVAILABLE, so connections can drain.
                rt.inner.lock().waiters.clear();
                return;
            }
            () = rt.wake.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {}
        }
        let now = node.now_ms();
        let run_expiry = now >= next_expiry_ms;
        if run_expiry {
            next_expiry_ms = now
                .saturating_add(i64::try_from(rt.retention_check_interval_ms).unwrap_or(i64::MAX));
        }
        let due = rt.read(|c| c.next_deadline()).is_some_and(|d| d <= now);
        if !due && !run_expiry {
            continue;
        }
        let mut inner = rt.inner.lock();
        inner.coord.expire(now);
        if run_expiry {
            inner.coord.expire_offsets(now);
        }
        let effects = inner.coord.take_effects();
        if !effects.is_empty() {
            // Replies go out from the spawned durability task; nobody awaits the result.
            drop(rt.persist(&mut inner, &node, effects, now));
        }
    }
}
