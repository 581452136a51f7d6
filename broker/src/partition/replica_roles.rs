//! A replica's cluster roles: becoming leader or follower, the leader's view of its followers
//! (their fetches, the ISR, the high watermark they allow) and a follower's truncations to its
//! leader's log. Part of `replica` (the fields and helpers it uses are that module's).

use std::sync::atomic::Ordering;

use super::{FollowerFetchRefused, Partition, PartitionError};
use crate::partition::role::{FollowerFetch, LeaderState, Role};

impl Partition {
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
    pub(super) fn wake_long_polls(&self) {
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
}
