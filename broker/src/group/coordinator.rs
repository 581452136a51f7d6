//! `GroupCoordinator`: the pure state machine of all groups and committed offsets on this
//! broker. No tokio, no I/O: every call takes `now_ms`, answers now or parks the request (by
//! token), and leaves its side effects in `Effects` — replies to parked requests and records
//! to append to `__consumer_offsets` — plus keyed deadlines in `Timers`.
//!
//! Contract with the runtime: after every call, take the effects, append the records, call
//! `apply_persisted` with them once appended (that is when committed offsets become visible,
//! and deleted offsets and groups go), and send the replies (and any answer given now) only
//! once the records are durable. Call `expire(now_ms)` whenever `next_deadline()` has passed.
//!
//! The operations live in sibling files: `join.rs`, `membership.rs` (sync, heartbeat, leave),
//! `offsets.rs`, `admin.rs` (list, describe, delete), `replay.rs` (loading); the rebalance
//! rules they share are in `rebalance.rs`.

use std::collections::{BTreeMap, HashMap};

use super::api::ParkedReply;
use super::classic_group::ClassicGroup;
use super::ownership::Ownership;
use super::rebalance::{self, Ctx};
use super::records::{GroupRecord, OffsetValue};
use super::timers::{TimerKey, Timers};

/// Kafka's `group.*` and `offsets.*` settings the coordinator obeys.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub initial_rebalance_delay_ms: i64,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub max_group_size: usize,
    pub offsets_retention_ms: i64,
    pub offset_metadata_max_bytes: usize,
    /// How long a new member may wait in the join phase (Kafka: 5 minutes, not configurable).
    pub new_member_join_timeout_ms: i64,
}

impl Default for CoordinatorConfig {
    /// Kafka's defaults.
    fn default() -> Self {
        CoordinatorConfig {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            max_group_size: i32::MAX as usize,
            offsets_retention_ms: 7 * 24 * 3_600_000,
            offset_metadata_max_bytes: 4096,
            new_member_join_timeout_ms: 300_000,
        }
    }
}

/// An answer given now, or "parked": delivered later through `Effects::replies`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    Now(T),
    Parked,
}

/// Side effects of coordinator calls, drained by the runtime.
#[derive(Debug, Default)]
pub struct Effects {
    /// Replies to parked requests, by the token they parked with.
    pub replies: Vec<(u64, ParkedReply)>,
    /// Records to append to `__consumer_offsets`, in order.
    pub records: Vec<GroupRecord>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.replies.is_empty() && self.records.is_empty()
    }
}

/// How member ids are made: random UUIDs in production, a counter in tests.
#[derive(Debug)]
pub enum MemberIds {
    Random,
    Sequential(u64),
}

/// Longest name (group id, instance id, protocol) the coordinator accepts: Kafka's record
/// format stores strings with an i16 length, and member ids add a 37-byte suffix.
pub const MAX_NAME_BYTES: usize = 32_000;

/// Whether a group id can be stored (non-empty and short enough).
pub fn valid_group_id(group_id: &str) -> bool {
    !group_id.is_empty() && group_id.len() <= MAX_NAME_BYTES
}

/// Whether OffsetCommit, OffsetFetch, DescribeGroups and DeleteGroups may name this group id:
/// as `valid_group_id`, but the empty id too (Kafka accepts it there "for backwards
/// compatibility": a consumer without a group id committing offsets).
pub fn valid_legacy_group_id(group_id: &str) -> bool {
    group_id.len() <= MAX_NAME_BYTES
}

/// Committed offsets of one group by (topic, partition).
pub type GroupOffsets = BTreeMap<(String, i32), OffsetValue>;

#[derive(Debug)]
pub struct GroupCoordinator {
    pub(super) config: CoordinatorConfig,
    pub(super) groups: HashMap<String, ClassicGroup>,
    pub(super) offsets: HashMap<String, GroupOffsets>,
    pub(super) timers: Timers,
    pub(super) effects: Effects,
    pub(super) member_ids: MemberIds,
    /// The `__consumer_offsets` partitions served (see `ownership.rs`).
    pub(super) ownership: Ownership,
}

impl GroupCoordinator {
    /// A coordinator that serves every group (one `__consumer_offsets` partition, owned);
    /// `set_offsets_partitions` then `load_partition` make it serve only loaded partitions.
    pub fn new(config: CoordinatorConfig, member_ids: MemberIds) -> Self {
        GroupCoordinator {
            config,
            groups: HashMap::new(),
            offsets: HashMap::new(),
            timers: Timers::default(),
            effects: Effects::default(),
            member_ids,
            ownership: Ownership::everything(),
        }
    }

    pub fn take_effects(&mut self) -> Effects {
        std::mem::take(&mut self.effects)
    }

    pub fn next_deadline(&self) -> Option<i64> {
        self.timers.next_deadline()
    }

    pub fn group(&self, group_id: &str) -> Option<&ClassicGroup> {
        self.groups.get(group_id)
    }

    pub fn committed(&self, group_id: &str) -> Option<&GroupOffsets> {
        self.offsets.get(group_id)
    }

    /// Every committed offset of every group this coordinator serves (for the lag metric).
    pub fn all_committed(&self) -> Vec<crate::metrics::CommittedOffset> {
        self.offsets
            .iter()
            .flat_map(|(group, offsets)| {
                offsets
                    .iter()
                    .map(|((topic, partition), v)| crate::metrics::CommittedOffset {
                        group: group.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        offset: v.offset,
                    })
            })
            .collect()
    }

    /// A new member id: `<client id or instance id>-<uuid>`, as Kafka makes them.
    pub(super) fn new_member_id(&mut self, prefix: &str) -> String {
        let suffix = match &mut self.member_ids {
            MemberIds::Random => uuid::Uuid::new_v4().to_string(),
            MemberIds::Sequential(n) => {
                *n += 1;
                n.to_string()
            }
        };
        format!("{prefix}-{suffix}")
    }

    /// Forgets a group whose tombstone is written, and its timers.
    pub(super) fn remove_group(&mut self, group_id: &str) {
        if self.groups.remove(group_id).is_some() {
            self.timers.cancel_group(group_id);
            tracing::debug!(group = group_id, "group deleted");
        }
    }

    /// The group and everything group-level rules need, borrowed separately.
    pub(super) fn split(
        &mut self,
        group_id: &str,
        now_ms: i64,
    ) -> Option<(&mut ClassicGroup, Ctx<'_>)> {
        let group = self.groups.get_mut(group_id)?;
        Some((
            group,
            Ctx {
                timers: &mut self.timers,
                effects: &mut self.effects,
                config: &self.config,
                now_ms,
            },
        ))
    }

    /// Handles every deadline that has passed.
    pub fn expire(&mut self, now_ms: i64) {
        while let Some(key) = self.timers.pop_due(now_ms) {
            match key {
                TimerKey::Heartbeat { group, member } => {
                    if let Some((g, mut cx)) = self.split(&group, now_ms) {
                        rebalance::on_session_expired(g, &member, &mut cx);
                    }
                }
                TimerKey::PendingMember { group, member } => {
                    if let Some((g, mut cx)) = self.split(&group, now_ms) {
                        rebalance::remove_pending_member(g, &member, &mut cx);
                    }
                }
                TimerKey::Join { group } => {
                    if let Some((g, mut cx)) = self.split(&group, now_ms) {
                        rebalance::on_join_deadline(g, &mut cx);
                    }
                }
                TimerKey::Sync { group } => {
                    if let Some((g, mut cx)) = self.split(&group, now_ms) {
                        rebalance::on_sync_deadline(g, &mut cx);
                    }
                }
            }
        }
    }
}
