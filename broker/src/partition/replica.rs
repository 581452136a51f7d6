//! One topic-partition replica on this broker: its log, its role (the only copy on a single
//! node; leader or follower in a cluster, see `role`; the role changes and the leader's and
//! follower's work are in the child module `roles`, file `replica_roles.rs`), and the offsets
//! published from it.
//!
//! Invariants: appends happen under `log`'s mutex, in the order requests arrive; the high
//! watermark only moves forward (except when a follower truncates below it) and never passes
//! the log end offset; with `SyncOnAck` it never passes the flushed offset, so a consumer never
//! sees a record a crash could take back. As a cluster leader the high watermark is also at most
//! the log end offset of every in-sync follower (`role::LeaderState::high_watermark`).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;
use storage::{AppendOutcome, Log, LogConfig, StorageError, StoredRecords};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use super::role::Role;
use super::shared_flusher::FlushQueue;
use super::{DurabilityPolicy, TopicPartition};

#[path = "replica_roles.rs"]
mod roles;

/// Why an operation on a partition failed.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("partition {0} is closed")]
    Closed(TopicPartition),
    /// This replica is not the partition's leader (cluster mode).
    #[error("this broker is not the leader of {0}")]
    NotLeader(TopicPartition),
    #[error("partition {0} has a negative index")]
    NegativeIndex(TopicPartition),
    /// A leader's answer to a fetch this replica no longer stands by: it stopped following at
    /// that epoch, or its log end moved (a truncation) since the fetch was sent.
    #[error("a stale fetch answer for {0}")]
    StaleFetch(TopicPartition),
}

/// Fetch answers at least this large stay file regions, which the connection writer sends from
/// the segment file (from a mapping, copied out through a bounded buffer, or with `sendfile`),
/// so the handler holds no copy of them; smaller ones are read into memory here at once.
const MIN_FILE_REGION_BYTES: usize = 32 * 1024;

/// The result of reading for a fetch: records in memory (`Bytes`) or, for a consumer or
/// follower fetch, possibly a file region (`StoredRecords`).
#[derive(Debug)]
pub struct FetchRead<R = bytes::Bytes> {
    pub records: R,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

pub struct Partition {
    pub tp: TopicPartition,
    pub topic_id: Uuid,
    /// Leader epoch stamped into appended batches (0 on a single node; the controller's epoch
    /// in a cluster).
    leader_epoch: AtomicI32,
    /// Leader, follower or the only copy; see `role`.
    role: Mutex<Role>,
    /// `None` once closed (shutdown or topic deletion).
    log: Mutex<Option<Log>>,
    /// Set once the log is taken out (`take_log`), before waiters are woken: what
    /// `is_closed` reads, with no lock, so a watch's predicate may read it too.
    closed: AtomicBool,
    /// The log end offset, published for follower fetches that long-poll on new data.
    log_end: watch::Sender<i64>,
    /// Consumers read below this; fetches and acks wait on it.
    high_watermark: watch::Sender<i64>,
    /// Offset below which everything is fsynced; acks=1/-1 wait on it.
    durable: watch::Sender<i64>,
    /// Wakes the flusher after an append (a stored permit, so no wake-up is lost).
    pub(super) flush_wanted: Notify,
    /// The blocking thread that has just fsynced this log and waits a moment for the next
    /// append (`flusher::LINGER`); an append unparks it instead of waking the flusher task.
    pub(super) lingering_flusher: Mutex<Option<std::thread::Thread>>,
    pub(super) policy: DurabilityPolicy,
    /// Set when the shared flusher (`shared_flusher`) makes this partition durable instead of
    /// a flusher of its own: appends queue it there.
    shared_flush: OnceLock<Arc<FlushQueue>>,
    /// Queued for the shared flusher's next round and not yet taken by it.
    pub(super) flush_queued: AtomicBool,
    /// A failed sync of this partition was reported (by the shared flusher, which sees the
    /// partition again after every write it refuses).
    pub(super) sync_reported: AtomicBool,
    /// This partition, for queueing itself.
    pub(super) me: Weak<Partition>,
    /// The device of the filesystem holding the log's directory: the shared flusher's syncfs
    /// of the data directory covers the partition only when it is the same.
    pub(super) filesystem: u64,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition").field("tp", &self.tp).finish()
    }
}

/// Why a follower's fetch was not counted (`Partition::record_follower_fetch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerFetchRefused {
    /// This replica does not lead the partition, or the follower is not one of its replicas.
    NotLeader,
    /// The fetch offset lies beyond this log's end (OFFSET_OUT_OF_RANGE).
    BeyondLogEnd,
}

/// How an acks=all wait ended (`Partition::wait_all_replicas`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckWait {
    Done,
    TimedOut,
    /// The replica no longer leads at the epoch that appended the records.
    NotLeader,
}

impl Partition {
    /// Opens (recovering) the log in `dir`, with its own fsyncs (the broker opens through
    /// `open_deferring_syncs`; tests open one partition alone).
    #[cfg(test)]
    pub(crate) fn open(
        dir: &std::path::Path,
        tp: TopicPartition,
        topic_id: Uuid,
        config: LogConfig,
        policy: DurabilityPolicy,
        now_ms: i64,
    ) -> Result<Arc<Self>, PartitionError> {
        Self::from_log(dir, Log::open(dir, config, now_ms)?, tp, topic_id, policy)
    }

    /// `open`, except that a new or cleanly shut down directory's fsyncs wait for the caller
    /// (`Log::open_deferring_syncs`; `PartitionManager::open_many`): the partition must not
    /// take writes before that.
    pub fn open_deferring_syncs(
        dir: &std::path::Path,
        tp: TopicPartition,
        topic_id: Uuid,
        config: LogConfig,
        policy: DurabilityPolicy,
        now_ms: i64,
    ) -> Result<Arc<Self>, PartitionError> {
        let log = Log::open_deferring_syncs(dir, config, now_ms)?;
        Self::from_log(dir, log, tp, topic_id, policy)
    }

    /// Renames the log's staged epoch checkpoint into place, after the caller synced the
    /// filesystem; whether there was one (`Log::install_staged_checkpoint`).
    pub(super) fn install_staged_checkpoint(&self) -> Result<bool, PartitionError> {
        self.with_log(Log::install_staged_checkpoint)
    }

    /// The caller synced the filesystem after the open and the checkpoint's installation.
    pub(super) fn deferred_syncs_done(&self) -> Result<(), PartitionError> {
        self.with_log(|log| {
            log.deferred_syncs_done();
            Ok(())
        })
    }

    /// Makes what the open deferred durable with the log's own fsyncs (`Log::sync_deferred`).
    pub(super) fn sync_deferred(&self) -> Result<(), PartitionError> {
        self.with_log(Log::sync_deferred)
    }

    /// Whether the open's fsyncs still wait (`open_deferring_syncs`).
    pub(crate) fn syncs_deferred(&self) -> bool {
        self.log.lock().as_ref().is_some_and(Log::syncs_deferred)
    }

    fn from_log(
        dir: &std::path::Path,
        log: Log,
        tp: TopicPartition,
        topic_id: Uuid,
        policy: DurabilityPolicy,
    ) -> Result<Arc<Self>, PartitionError> {
        let leo = log.log_end_offset();
        let filesystem = std::os::unix::fs::MetadataExt::dev(
            &std::fs::metadata(dir).map_err(StorageError::from)?,
        );
        Ok(Arc::new_cyclic(|me| Self {
            tp,
            topic_id,
            leader_epoch: AtomicI32::new(0),
            role: Mutex::new(Role::Single),
            log: Mutex::new(Some(log)),
            closed: AtomicBool::new(false),
            log_end: watch::Sender::new(leo),
            high_watermark: watch::Sender::new(leo),
            durable: watch::Sender::new(leo),
            flush_wanted: Notify::new(),
            lingering_flusher: Mutex::new(None),
            policy,
            shared_flush: OnceLock::new(),
            flush_queued: AtomicBool::new(false),
            sync_reported: AtomicBool::new(false),
            me: me.clone(),
            filesystem,
        }))
    }

    fn with_log<T>(
        &self,
        f: impl FnOnce(&mut Log) -> Result<T, StorageError>,
    ) -> Result<T, PartitionError> {
        let mut guard = self.log.lock();
        let log = guard
            .as_mut()
            .ok_or_else(|| PartitionError::Closed(self.tp.clone()))?;
        let result = f(log);
        if result.is_err() && log.sync_failure().is_some() {
            // The flusher reports it (the broker halts on it).
            drop(guard);
            self.want_flush();
        }
        Ok(result?)
    }

    /// Why an fsync of this partition's log failed, if one has.
    pub fn sync_failure(&self) -> Option<String> {
        self.log
            .lock()
            .as_ref()
            .and_then(|log| log.sync_failure().map(str::to_owned))
    }

    /// Records a failed fsync of the log: it takes no more writes and marks nothing durable.
    pub(super) fn fail_sync(&self, why: &str) {
        if let Some(log) = self.log.lock().as_mut() {
            log.fail_sync(&why);
        }
    }

    /// Records this replica's leader epoch in its log's epoch checkpoint now, if the log has
    /// no entry of it yet (Kafka's `Partition.makeLeader`), instead of with the first batch:
    /// the checkpoint's rewrite and its two fsyncs then come when the partition is created or
    /// opened, not on the first produce's path. Single-node partitions call it when they are
    /// opened (the only copy, at epoch 0).
    pub fn record_own_epoch(&self) -> Result<(), PartitionError> {
        let epoch = self.leader_epoch();
        self.with_log(|log| log.assign_leader_epoch(epoch).map(|_| ()))
    }

    /// As a cluster leader: records `leader_epoch` in the log's epoch checkpoint if this
    /// replica still leads at that epoch and the log has no entry of it yet (Kafka's
    /// `Partition.makeLeader`), so the first produce after an election does not rewrite the
    /// checkpoint (tmp file, two fsyncs) on its way. Called on the blocking pool after
    /// `become_leader` reported a new leadership; it may run after a later role change, hence
    /// the check, made under the role lock so the role cannot change before the entry is
    /// written (no path takes the role lock while holding the log's). Returns whether an
    /// entry was added.
    pub fn record_epoch_as_leader(&self, leader_epoch: i32) -> Result<bool, PartitionError> {
        let role = self.role.lock();
        if !matches!(*role, Role::Leader(_)) || self.leader_epoch() != leader_epoch {
            return Ok(false);
        }
        let added = self.with_log(|log| log.assign_leader_epoch(leader_epoch));
        drop(role);
        added
    }

    /// The leader epoch stamped into appended batches.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    /// Validates and appends one produce payload. Does not wait for durability. Refused with
    /// `NotLeader` unless this replica may take writes (the only copy, or the leader).
    pub fn append(&self, records: &[u8], now_ms: i64) -> Result<AppendOutcome, PartitionError> {
        self.append_at_epoch(records, now_ms)
            .map(|(outcome, _)| outcome)
    }

    /// `append`, also giving the leader epoch the batch was stamped with, read with the role
    /// that let it in: what an acks=all wait checks the leadership against
    /// (`wait_all_replicas`).
    pub fn append_at_epoch(
        &self,
        records: &[u8],
        now_ms: i64,
    ) -> Result<(AppendOutcome, i32), PartitionError> {
        // The role lock is held across the append (role, then log, as everywhere): a
        // replica that became a follower meanwhile must not append a batch of its old epoch
        // after its fetcher checked the log for divergence (Kafka holds
        // `leaderIsrUpdateLock` across `appendAsLeader`).
        let role = self.role.lock();
        if !role.accepts_writes() {
            return Err(PartitionError::NotLeader(self.tp.clone()));
        }
        let epoch = self.leader_epoch();
        let appended = self.with_log(|log| {
            let o = log.append(records, epoch, now_ms)?;
            Ok((o, log.log_end_offset()))
        });
        drop(role);
        let (outcome, leo) = appended?;
        if matches!(outcome, AppendOutcome::Appended { .. }) {
            self.publish_log_end(leo);
            if let DurabilityPolicy::Interval { .. } = self.policy {
                self.on_local_progress(leo);
            }
            self.wake_flusher();
        }
        Ok((outcome, epoch))
    }

    /// Appends batches fetched at `fetch_offset` from the leader at `leader_epoch` (offsets
    /// and epochs already stamped) and wakes the flusher. Returns the new log end offset.
    ///
    /// Refused with `StaleFetch`, writing nothing, unless this replica still follows at
    /// `leader_epoch` and its log still ends at `fetch_offset`: an answer that arrives after
    /// the replica moved to another leader, became the leader, or truncated would otherwise
    /// leave a gap or another leader's records in its log (Kafka's fetcher drops partition data
    /// whose fetch offset is no longer the fetch state's, and `processPartitionData` checks
    /// the log end). The role lock is held across the append, as `record_epoch_as_leader`
    /// does, so the role cannot change in between; a batch stamped with an epoch above the
    /// leader's is refused by the log.
    pub fn append_as_follower(
        &self,
        records: &[u8],
        fetch_offset: i64,
        leader_epoch: i32,
    ) -> Result<i64, PartitionError> {
        let role = self.role.lock();
        if !matches!(*role, Role::Follower { .. }) || self.leader_epoch() != leader_epoch {
            return Err(PartitionError::StaleFetch(self.tp.clone()));
        }
        let leo = self.with_log(|log| {
            if log.log_end_offset() != fetch_offset {
                return Ok(None);
            }
            log.append_from_leader(records, leader_epoch)?;
            Ok(Some(log.log_end_offset()))
        })?;
        drop(role);
        let leo = leo.ok_or_else(|| PartitionError::StaleFetch(self.tp.clone()))?;
        self.publish_log_end(leo);
        self.wake_flusher();
        Ok(leo)
    }

    /// Has this partition's appends made durable by `queue`'s shared flusher from now on
    /// instead of a flusher of its own (`PartitionManager::open`, before any append).
    pub(super) fn use_shared_flush(&self, queue: Arc<FlushQueue>) {
        let _ = self.shared_flush.set(queue);
    }

    /// Asks the flusher to look at this partition now: a failed sync to report, or a close.
    fn want_flush(&self) {
        match self.shared_flush.get() {
            Some(queue) => queue.push(self, true),
            None => self.flush_wanted.notify_one(),
        }
    }

    /// After an append or a truncation, something may wait for a sync: queues this partition
    /// for the shared flusher (whose round comes at once with fsync'd acks, at its next tick
    /// with the interval policy), or unparks its flusher thread if one lingers, else wakes its
    /// flusher task; a flusher of its own with the interval policy syncs on its timer.
    fn wake_flusher(&self) {
        if let Some(queue) = self.shared_flush.get() {
            queue.push(self, false);
            return;
        }
        if let DurabilityPolicy::Interval { .. } = self.policy {
            return;
        }
        match self.lingering_flusher.lock().as_ref() {
            Some(thread) => thread.unpark(),
            None => self.flush_wanted.notify_one(),
        }
    }

    fn publish_log_end(&self, leo: i64) {
        self.log_end.send_if_modified(|v| {
            if *v != leo {
                *v = leo;
                true
            } else {
                false
            }
        });
    }

    /// acks=all, as Kafka's `DelayedProduce`: waits until every offset below `offset` is
    /// committed (durable here, or written with the interval policy, on a single node; below
    /// the high watermark, so on every in-sync replica, as a cluster leader), or until this
    /// replica no longer leads at `epoch`, the epoch that appended them (a new epoch, or the
    /// partition closed): then `NotLeader`, as Kafka's `checkEnoughReplicasReachOffset`
    /// answers NOT_LEADER_OR_FOLLOWER, instead of waiting out the request's timeout.
    pub async fn wait_all_replicas(
        &self,
        offset: i64,
        epoch: i32,
        deadline: tokio::time::Instant,
    ) -> AckWait {
        // No lock is taken (`is_closed` reads an atomic): the predicate runs under the
        // watch's read lock.
        let moved = || self.leader_epoch() != epoch || self.is_closed();
        // With the interval policy a single copy has nothing to wait for; a replica that no
        // longer leads at `epoch` must still answer NOT_LEADER_OR_FOLLOWER (its records may
        // not be on the new leader), so that is checked first.
        let Some(mut rx) = self.ack_watch(true) else {
            return if moved() {
                AckWait::NotLeader
            } else {
                AckWait::Done
            };
        };
        // Checked after subscribing: a role change before it shows here, one after it wakes
        // the watch (`wake_long_polls`).
        if moved() {
            return AckWait::NotLeader;
        }
        let reached = tokio::time::timeout_at(deadline, rx.wait_for(|&hw| hw >= offset || moved()))
            .await
            .map(|r| r.map(|hw| *hw >= offset));
        match reached {
            Ok(Ok(true)) => AckWait::Done,
            Ok(_) => AckWait::NotLeader,
            Err(_) => AckWait::TimedOut,
        }
    }

    /// Waits until every offset below `offset` is durable on this replica only (acks=1).
    pub async fn wait_local_durable(&self, offset: i64, deadline: tokio::time::Instant) -> bool {
        Self::wait_until(self.ack_watch(false), offset, deadline).await
    }

    /// What an acknowledgement waits on (`None`: nothing, with the interval policy): a
    /// leader's high watermark when every in-sync replica must have the records
    /// (`all_replicas`), else the durable offset. The only copy waits on its high watermark
    /// either way (there it moves with the durable offset, just after it), so a fetch sent
    /// the moment the answer arrives finds the records, as with Kafka.
    fn ack_watch(&self, all_replicas: bool) -> Option<watch::Receiver<i64>> {
        match (&*self.role.lock(), self.policy) {
            (Role::Leader(_), _) if all_replicas => Some(self.high_watermark.subscribe()),
            (Role::Single, DurabilityPolicy::SyncOnAck) => Some(self.high_watermark.subscribe()),
            (_, DurabilityPolicy::SyncOnAck) => Some(self.durable.subscribe()),
            (_, DurabilityPolicy::Interval { .. }) => None,
        }
    }

    /// Waits until `watch` reaches `offset`; no watch means nothing to wait for.
    async fn wait_until(
        watch: Option<watch::Receiver<i64>>,
        offset: i64,
        deadline: tokio::time::Instant,
    ) -> bool {
        let Some(mut rx) = watch else {
            return true;
        };
        tokio::time::timeout_at(deadline, rx.wait_for(|&d| d >= offset))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The offset below which this replica's log is durable (or written, with Interval).
    fn local_committed(&self) -> i64 {
        match self.policy {
            DurabilityPolicy::SyncOnAck => *self.durable.borrow(),
            DurabilityPolicy::Interval { .. } => *self.log_end.borrow(),
        }
    }

    /// Moves the high watermark as the leader's state now allows (after a change to that
    /// state that no fetch or append follows at once: a joining follower dropped).
    pub fn refresh_high_watermark(&self) {
        self.on_local_progress(self.local_committed());
    }

    /// This replica's log made progress (durable or written up to `local`): move the high
    /// watermark as the role allows.
    fn on_local_progress(&self, local: i64) {
        let hw = {
            let mut role = self.role.lock();
            match &mut *role {
                Role::Single => Some(local),
                Role::Leader(state) => Some(state.high_watermark(local)),
                // A follower's high watermark comes from its leader (`set_follower_hw`).
                Role::Follower { .. } | Role::Offline => None,
            }
        };
        if let Some(hw) = hw {
            self.advance_high_watermark(hw);
        }
    }

    /// The log end offset as last published to `subscribe_log_end` receivers.
    pub fn published_log_end(&self) -> i64 {
        *self.log_end.borrow()
    }

    /// Subscribe to log end offset changes (follower fetches long-poll on it).
    pub fn subscribe_log_end(&self) -> watch::Receiver<i64> {
        self.log_end.subscribe()
    }

    /// Durable offset (what a follower reports as its fetch offset once fsynced).
    pub fn durable_offset(&self) -> i64 {
        self.local_committed()
    }

    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    /// A cluster leader whose high watermark has not yet reached the log end it had when
    /// elected (its epoch start offset): what is committed near the end of its log is not
    /// known yet, and Kafka answers offset lookups there OFFSET_NOT_AVAILABLE
    /// (`Partition.fetchOffsetForTimestamp`).
    pub fn high_watermark_behind_epoch_start(&self) -> bool {
        match &*self.role.lock() {
            Role::Leader(state) => state.epoch_start_offset > *self.high_watermark.borrow(),
            _ => false,
        }
    }

    pub fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    fn advance_high_watermark(&self, to: i64) {
        // Most calls (a follower fetch of an idle partition) change nothing: check under the
        // shared lock before taking the exclusive one.
        if to <= *self.high_watermark.borrow() {
            return;
        }
        self.high_watermark.send_if_modified(|hw| {
            if to > *hw {
                *hw = to;
                true
            } else {
                false
            }
        });
    }

    /// Called by the flusher once `target` is fsynced. The durable offset is
    /// published before the high watermark is recomputed, so a leader's follower fetch that
    /// takes the role lock after this one reads it (`record_follower_fetch`).
    pub(super) fn mark_durable(&self, target: &storage::FlushTarget) {
        // Refused after a failed fsync, and nothing marked after a truncation since the target
        // was taken (`Log::mark_target_flushed`). The durable offset is what the log counts as
        // flushed, published under the log lock so a truncation cannot come in between.
        let flushed = self.with_log(|log| {
            log.mark_target_flushed(target)?;
            let flushed = log.flushed_offset();
            self.advance_durable(flushed);
            Ok(flushed)
        });
        if let Ok(flushed) = flushed {
            if self.policy == DurabilityPolicy::SyncOnAck {
                self.on_local_progress(flushed);
            }
        }
    }

    /// Moves the durable offset up to `offset`; whether it moved.
    fn advance_durable(&self, offset: i64) -> bool {
        self.durable.send_if_modified(|d| {
            if offset > *d {
                *d = offset;
                true
            } else {
                false
            }
        })
    }

    /// `f` on the log, then what it made durable by itself noted: retention, a log start move
    /// and compaction may roll the active segment, and a roll fsyncs it, so the flusher then
    /// finds nothing to sync and would never move the durable offset over those records (an
    /// acknowledgement or a follower's next fetch waiting on them would wait until the next
    /// append, or time out).
    fn with_log_noting_rolls<T>(
        &self,
        f: impl FnOnce(&mut Log) -> Result<T, StorageError>,
    ) -> Result<T, PartitionError> {
        // Published under the log lock (see `truncate_to`); the high watermark after it, as
        // the role lock comes before the log's.
        let (out, flushed, moved) = self.with_log(|log| {
            let out = f(log)?;
            let flushed = log.flushed_offset();
            Ok((out, flushed, self.advance_durable(flushed)))
        })?;
        if moved && self.policy == DurabilityPolicy::SyncOnAck {
            self.on_local_progress(flushed);
        }
        Ok(out)
    }

    /// The file to fsync and the offset it covers, if anything is not yet durable.
    pub(super) fn pending_flush(&self) -> Option<storage::FlushTarget> {
        let guard = self.log.lock();
        let log = guard.as_ref()?;
        if log.flushed_offset() >= log.log_end_offset() {
            return None;
        }
        Some(log.flush_target())
    }

    /// Reads whole batches from `offset` below the high watermark.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<FetchRead, PartitionError> {
        self.read_below(offset, max_bytes, min_one_batch, false)
    }

    /// Reads whole batches from `offset`, below the high watermark, or below the log end for
    /// a follower (`to_log_end`).
    pub fn read_below(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        to_log_end: bool,
    ) -> Result<FetchRead, PartitionError> {
        let hw = self.high_watermark();
        self.with_log(|log| {
            let upper = if to_log_end { log.log_end_offset() } else { hw };
            let r = log.read(offset, upper, max_bytes, min_one_batch)?;
            Ok(FetchRead {
                records: r.records,
                high_watermark: hw,
                log_start_offset: log.log_start_offset(),
                log_end_offset: log.log_end_offset(),
            })
        })
    }

    /// As `read_below`, but answers of at least `MIN_FILE_REGION_BYTES` come as a file region
    /// for the connection writer to send from the file, and from one segment only (as Kafka's
    /// fetch reads).
    pub fn read_for_fetch(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        to_log_end: bool,
    ) -> Result<FetchRead<StoredRecords>, PartitionError> {
        let hw = self.high_watermark();
        // Under the lock only the batch headers are walked; small answers the walk has not
        // read already are read after it is released (stored bytes below the log end never
        // change, except by a truncation, which a short read then reports), so producers do
        // not wait on fetch I/O.
        let read = self.with_log(|log| {
            let upper = if to_log_end { log.log_end_offset() } else { hw };
            let r = log.read_region_inline(
                offset,
                upper,
                max_bytes,
                min_one_batch,
                MIN_FILE_REGION_BYTES - 1,
            )?;
            Ok(FetchRead {
                records: r.records,
                high_watermark: hw,
                log_start_offset: log.log_start_offset(),
                log_end_offset: log.log_end_offset(),
            })
        })?;
        match read.records {
            StoredRecords::File(ref region) if region.len < MIN_FILE_REGION_BYTES as u64 => {
                let records = StoredRecords::Bytes(region.read_to_bytes()?);
                Ok(FetchRead { records, ..read })
            }
            _ => Ok(read),
        }
    }

    pub fn log_start_offset(&self) -> Result<i64, PartitionError> {
        self.with_log(|log| Ok(log.log_start_offset()))
    }

    pub fn log_end_offset(&self) -> Result<i64, PartitionError> {
        self.with_log(|log| Ok(log.log_end_offset()))
    }

    /// The log start and end offsets, read together.
    pub fn log_offsets(&self) -> Result<(i64, i64), PartitionError> {
        self.with_log(|log| Ok((log.log_start_offset(), log.log_end_offset())))
    }

    pub fn offset_for_timestamp(
        &self,
        ts: i64,
    ) -> Result<Option<storage::TimestampOffset>, PartitionError> {
        self.with_log(|log| log.offset_for_timestamp(ts))
    }

    pub fn max_timestamp(&self) -> Result<Option<storage::TimestampOffset>, PartitionError> {
        self.with_log(|log| log.max_timestamp())
    }

    /// OffsetForLeaderEpoch as the leader: the largest epoch <= `epoch` and its end offset
    /// (`Log::end_offset_for_epoch`, with this replica's own epoch known from the moment it
    /// leads, as in Kafka). `None` means UNDEFINED (-1, -1).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Result<Option<(i32, i64)>, PartitionError> {
        let leader_epoch = self.leader_epoch();
        self.with_log(|log| {
            Ok(super::leader_epoch::end_offset_as_leader(
                epoch,
                log.end_offset_for_epoch(epoch),
                log.latest_epoch(),
                leader_epoch,
                log.log_end_offset(),
            ))
        })
    }

    /// The leader epoch that wrote `offset`, as Kafka's leader answers it in ListOffsets
    /// (`epochForOffset`, with this replica's own epoch known from the moment it leads); -1:
    /// none known.
    pub fn epoch_for_offset(&self, offset: i64) -> Result<i32, PartitionError> {
        let leader_epoch = self.leader_epoch();
        self.with_log(|log| {
            Ok(super::leader_epoch::epoch_for_offset_as_leader(
                offset,
                log.epoch_for_offset(offset),
                log.latest_epoch(),
                leader_epoch,
                log.log_end_offset(),
            ))
        })
    }

    pub fn set_config(&self, config: LogConfig) -> Result<(), PartitionError> {
        self.with_log(|log| {
            log.set_config(config);
            Ok(())
        })
    }

    /// Retention, deleting only segments below the high watermark (Kafka's
    /// `deletableSegments`): a leader keeps what a follower has yet to fetch.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize, PartitionError> {
        let high_watermark = self.high_watermark();
        self.with_log_noting_rolls(|log| log.apply_retention_below(now_ms, high_watermark))
    }

    /// Compacts the log if its cleanup policy is compact and it is dirty enough.
    pub fn compact(
        &self,
        now_ms: i64,
    ) -> Result<Option<storage::CompactionOutcome>, PartitionError> {
        self.with_log_noting_rolls(|log| log.compact(now_ms))
    }

    pub fn size_bytes(&self) -> Result<u64, PartitionError> {
        self.with_log(|log| Ok(log.size_bytes()))
    }

    /// Flushes and closes the log; later calls fail with `Closed`.
    pub fn close(&self) -> Result<(), PartitionError> {
        if let Some(log) = self.take_log() {
            log.close()?;
        }
        self.flush_wanted.notify_one();
        Ok(())
    }

    /// `close` without its fsyncs, for many partitions synced together
    /// (`Log::close_unsynced`): `None` if it was closed already.
    pub fn close_unsynced(&self) -> Result<Option<storage::UnsyncedClose>, PartitionError> {
        let closing = self.take_log().map(Log::close_unsynced).transpose()?;
        self.flush_wanted.notify_one();
        Ok(closing)
    }

    /// Takes the log out as the partition closes: no role any more, and whatever waits on it
    /// (long-polls, acks=all) is woken to see that.
    fn take_log(&self) -> Option<Log> {
        let log = self.log.lock().take();
        *self.role.lock() = Role::Offline;
        self.closed.store(true, Ordering::Release);
        self.wake_long_polls();
        log
    }

    /// Closes the log and removes its directory.
    pub fn delete(&self) -> Result<(), PartitionError> {
        if let Some(log) = self.take_log() {
            log.delete()?;
        }
        self.flush_wanted.notify_one();
        Ok(())
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
#[path = "replica_tests.rs"]
mod tests;
