//! One topic-partition replica on this broker: its log, its role (the only copy on a single
//! node; leader or follower in a cluster, see `role`), and the offsets published from it.
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

use super::role::{FollowerFetch, LeaderState, Role};
use super::shared_flusher::FlushQueue;
use super::{DurabilityPolicy, TopicPartition};

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
    /// Opens (recovering) the log in `dir`.
    pub fn open(
        dir: &std::path::Path,
        tp: TopicPartition,
        topic_id: Uuid,
        config: LogConfig,
        policy: DurabilityPolicy,
        now_ms: i64,
    ) -> Result<Arc<Self>, PartitionError> {
        let log = Log::open(dir, config, now_ms)?;
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

    // ---- cluster roles -------------------------------------------------------------------

    /// Whether this replica takes writes and serves reads (the single copy, or the cluster
    /// leader). Asked for every partition of every produce and fetch, so it reads the role in
    /// place: a copy of a leader's role clones its follower bookkeeping.
    pub fn serves_reads(&self) -> bool {
        self.role.lock().serves_reads()
    }

    /// Whether this replica is the cluster leader.
    pub fn is_leader(&self) -> bool {
        matches!(*self.role.lock(), Role::Leader(_))
    }

    /// Whether this replica follows a leader.
    pub fn is_follower(&self) -> bool {
        matches!(*self.role.lock(), Role::Follower { .. })
    }

    /// Become the leader at `leader_epoch` with this ISR and replica set. Idempotent for the
    /// same epoch (only the ISR and partition epoch are refreshed then, keeping follower
    /// progress). Returns true when this is a new leadership (not the leader at this epoch
    /// before): the caller then records the epoch (`record_epoch_as_leader`).
    pub fn become_leader(
        &self,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
        replicas: Vec<i32>,
        my_id: i32,
        now_ms: i64,
    ) -> bool {
        let new_leadership = {
            let mut role = self.role.lock();
            let new_leadership = match &mut *role {
                Role::Leader(state) if self.leader_epoch() == leader_epoch => {
                    state.update_from_controller(partition_epoch, isr, replicas);
                    false
                }
                _ => {
                    tracing::info!(partition = %self.tp, leader_epoch, ?isr, "becoming leader");
                    let mut state = LeaderState::new(my_id, partition_epoch, isr, replicas, now_ms);
                    state.epoch_start_offset = *self.log_end.borrow();
                    *role = Role::Leader(state);
                    true
                }
            };
            self.leader_epoch.store(leader_epoch, Ordering::Release);
            new_leadership
        };
        if new_leadership {
            self.wake_long_polls();
        }
        let local = self.local_committed();
        self.on_local_progress(local);
        new_leadership
    }

    /// Follow `leader` at `leader_epoch` (or nobody, with `leader` < 0). Returns true if the
    /// role changed (the fetcher must then check for a divergent suffix before fetching).
    pub fn become_follower(&self, leader: i32, leader_epoch: i32) -> bool {
        let mut role = self.role.lock();
        let new = if leader < 0 {
            Role::Offline
        } else {
            Role::Follower { leader }
        };
        let changed = *role != new || self.leader_epoch() != leader_epoch;
        if changed {
            tracing::info!(partition = %self.tp, leader, leader_epoch, "becoming follower");
        }
        *role = new;
        self.leader_epoch.store(leader_epoch, Ordering::Release);
        drop(role);
        if changed {
            self.wake_long_polls();
        }
        changed
    }

    /// Wakes every fetch long-polling on this replica after a role or epoch change or when it
    /// closes, as Kafka completes its delayed fetches when a partition changes leadership or
    /// stops: each reads the partition again (its epoch moved, or it is closed) and answers
    /// NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH rather than waiting out `max_wait_ms`.
    fn wake_long_polls(&self) {
        self.high_watermark.send_modify(|_| {});
        self.log_end.send_modify(|_| {});
    }

    /// The ISR size as this leader counts it for `min.insync.replicas` (1 when not a cluster
    /// leader).
    pub fn isr_len(&self) -> usize {
        match &*self.role.lock() {
            Role::Leader(state) => state.isr().len(),
            _ => 1,
        }
    }

    /// The replica set's size as this leader knows it (1 when not a cluster leader): the cap
    /// on `min.insync.replicas` (Kafka's `Partition.effectiveMinIsr`).
    pub fn replica_count(&self) -> usize {
        match &*self.role.lock() {
            Role::Leader(state) => state.replicas().len().max(1),
            _ => 1,
        }
    }

    /// Kafka's under-replicated partition: this replica leads it and its ISR is smaller than
    /// its replica set.
    pub fn is_under_replicated(&self) -> bool {
        match &*self.role.lock() {
            Role::Leader(state) => state.isr().len() < state.replicas().len(),
            _ => false,
        }
    }

    /// In-sync replicas the leader still hears from (see `LeaderState::live_isr_len`); 1 when
    /// not a cluster leader.
    pub fn live_isr_len(&self, now_ms: i64, lag_max_ms: i64) -> usize {
        match &*self.role.lock() {
            Role::Leader(state) => state.live_isr_len(now_ms, lag_max_ms),
            _ => 1,
        }
    }

    /// A follower fetched from `fetch_offset` (= its durable log end): record its progress,
    /// move the high watermark. Returns the follower's state for ISR decisions. Refused when
    /// this replica is not the leader (or `follower` not a replica), and when the offset lies
    /// beyond this log's end: Kafka's leader answers that OFFSET_OUT_OF_RANGE without counting
    /// it as progress (`Partition.fetchRecords` reads before it updates the follower's state),
    /// so a follower holding some other log (a topic deleted and re-created under its name)
    /// cannot move the high watermark.
    pub fn record_follower_fetch(
        &self,
        follower: i32,
        fetch_offset: i64,
        log_start_offset: i64,
        now_ms: i64,
    ) -> Result<FollowerFetch, FollowerFetchRefused> {
        let leo = *self.log_end.borrow();
        let (hw, fetch) = {
            let mut role = self.role.lock();
            let Role::Leader(state) = &mut *role else {
                return Err(FollowerFetchRefused::NotLeader);
            };
            // The log's own end, not the published one: a follower reads up to the log's end,
            // which an append moves a moment before it publishes it. It only grows on a leader,
            // so a fetch offset above it was never served here. (The log lock is taken inside
            // the role lock, the order `record_epoch_as_leader` takes them in.)
            let log_end = self
                .log_end_offset()
                .map_err(|_| FollowerFetchRefused::NotLeader)?;
            if fetch_offset > log_end {
                return Err(FollowerFetchRefused::BeyondLogEnd);
            }
            let fetch = state
                .record_fetch(follower, fetch_offset, log_start_offset, leo, now_ms)
                .ok_or(FollowerFetchRefused::NotLeader)?;
            // Read under the role lock: the flusher publishes the durable offset before it
            // takes this lock, so one of the two always sees both new values (read outside,
            // a fetch between its two steps could leave the high watermark behind both).
            let local = self.local_committed();
            (state.high_watermark(local), fetch)
        };
        self.advance_high_watermark(hw);
        Ok(fetch)
    }

    /// As leader: run `f` on the leader state (ISR maintenance), then recompute the high
    /// watermark. `None` when not the leader.
    pub fn with_leader_state<T>(&self, f: impl FnOnce(&mut LeaderState) -> T) -> Option<T> {
        let (out, hw) = {
            let mut role = self.role.lock();
            let Role::Leader(state) = &mut *role else {
                return None;
            };
            let out = f(state);
            // Under the role lock, as in `record_follower_fetch`.
            let local = self.local_committed();
            (out, state.high_watermark(local))
        };
        self.advance_high_watermark(hw);
        Some(out)
    }

    /// As leader: the follower a consumer in `client_rack` should fetch from (KIP-392; see
    /// `LeaderState::preferred_read_replica`). `None` when not the leader.
    pub fn preferred_read_replica(
        &self,
        client_rack: &str,
        leader_rack: Option<&str>,
        fetch_offset: i64,
        rack_of: impl Fn(i32) -> Option<String>,
    ) -> Option<i32> {
        match &*self.role.lock() {
            Role::Leader(state) => {
                state.preferred_read_replica(client_rack, leader_rack, fetch_offset, rack_of)
            }
            _ => None,
        }
    }

    /// Right after `open`, in a cluster: the high watermark the replica had checkpointed
    /// (`hw_checkpoint`), kept within the log start and end, instead of the log end.
    pub fn start_high_watermark_at(&self, checkpointed: i64) -> Result<(), PartitionError> {
        let (start, end) = self.log_offsets()?;
        self.high_watermark
            .send_replace(checkpointed.clamp(start, end.max(start)));
        Ok(())
    }

    /// As follower of the leader at `leader_epoch`: the leader's high watermark arrived; ours
    /// is that, capped by our log end. Ignored once the replica moved to another epoch (an
    /// old leader's figure).
    pub fn set_follower_hw(&self, leader_hw: i64, leader_epoch: i32) {
        if self.leader_epoch() != leader_epoch {
            return;
        }
        let leo = *self.log_end.borrow();
        self.advance_high_watermark(leader_hw.min(leo));
    }

    /// As follower: the leader's log start offset arrived (its retention or DeleteRecords
    /// moved it); ours follows, up to our high watermark (Kafka's follower calls
    /// `maybeIncrementLogStartOffset(leaderLogStartOffset)`, which refuses a start above the
    /// high watermark). Without it, a follower elected leader would serve records the old
    /// leader had already deleted.
    pub fn follow_leader_log_start(&self, leader_log_start: i64) -> Result<(), PartitionError> {
        let to = leader_log_start.min(self.high_watermark());
        self.with_log_noting_rolls(|log| {
            if to > log.log_start_offset() {
                log.advance_log_start_offset(to)?;
            }
            Ok(())
        })
    }

    /// Empties this follower's log and restarts it at `offset`, its leader's log start, which
    /// is past our log end (Kafka's `truncateFullyAndStartAt`); every offset watch moves there.
    /// Only while this replica follows at `leader_epoch` (`StaleFetch` otherwise), as
    /// `truncate_to`.
    pub fn truncate_fully_and_start_at(
        &self,
        offset: i64,
        leader_epoch: i32,
    ) -> Result<(), PartitionError> {
        let role = self.role.lock();
        self.check_follows_at(&role, leader_epoch)?;
        self.with_log(|log| {
            log.truncate_fully_and_start_at(offset)?;
            self.log_end.send_replace(offset);
            self.durable.send_replace(offset);
            self.high_watermark.send_replace(offset);
            Ok(())
        })?;
        drop(role);
        Ok(())
    }

    /// `StaleFetch` unless `role` (this replica's, locked) follows at `leader_epoch`.
    fn check_follows_at(&self, role: &Role, leader_epoch: i32) -> Result<(), PartitionError> {
        if matches!(role, Role::Follower { .. }) && self.leader_epoch() == leader_epoch {
            Ok(())
        } else {
            Err(PartitionError::StaleFetch(self.tp.clone()))
        }
    }

    /// The latest leader epoch in this replica's log and the end offset the leader reports
    /// for it (for the follower's divergence check).
    pub fn latest_epoch(&self) -> Result<Option<i32>, PartitionError> {
        self.with_log(|log| Ok(log.latest_epoch()))
    }

    /// The largest epoch <= `epoch` in this replica's own epoch cache and its end offset (the
    /// follower's side of the divergence check).
    pub fn local_end_offset_for_epoch(
        &self,
        epoch: i32,
    ) -> Result<Option<(i32, i64)>, PartitionError> {
        self.with_log(|log| Ok(log.end_offset_for_epoch(epoch)))
    }

    /// Drops everything from `offset` on (a follower removing a divergent suffix, or an
    /// epoch entry at its log end that no batch of it followed); the high watermark and
    /// durable offset are cut to the new log end, under the log lock, so a concurrent roll
    /// noting its fsync cannot leave the durable offset past the end. Only while this replica
    /// follows at `leader_epoch`, checked under the role lock (`StaleFetch` otherwise): a
    /// divergence check answered for an epoch the replica has left (it may lead now, with
    /// records it acknowledged) must not cut its log (Kafka checks the fetch state under
    /// `partitionMapLock` before truncating).
    pub fn truncate_to(&self, offset: i64, leader_epoch: i32) -> Result<i64, PartitionError> {
        let role = self.role.lock();
        self.check_follows_at(&role, leader_epoch)?;
        let leo = self.with_log(|log| {
            log.truncate_to(offset)?;
            let leo = log.log_end_offset();
            self.log_end.send_replace(leo);
            self.durable.send_if_modified(|d| {
                if *d > leo {
                    *d = leo;
                    true
                } else {
                    false
                }
            });
            self.high_watermark.send_if_modified(|hw| {
                if *hw > leo {
                    *hw = leo;
                    true
                } else {
                    false
                }
            });
            Ok(leo)
        })?;
        drop(role);
        // A sync in flight when the log was truncated marks nothing (`Log::mark_target_flushed`),
        // so what is left below the new end may wait for one: the next round covers it.
        self.wake_flusher();
        Ok(leo)
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
#[allow(clippy::unwrap_used)]
mod tests {
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
        let stale =
            |r: Result<i64, PartitionError>| matches!(r, Err(PartitionError::StaleFetch(_)));
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
}
