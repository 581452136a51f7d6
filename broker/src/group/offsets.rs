//! Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete, expiry, and applying offset
//! records once they are in the log.
//!
//! Commits, deletions and expiry produce records only; offsets appear or disappear, and groups
//! deleted by a tombstone go, when the runtime calls `apply_persisted` after appending them,
//! so a failed append never leaves a phantom commit nor loses a group whose tombstones
//! were not written.

use std::collections::BTreeMap;

use protocol_shim::ErrorKind;

use super::api::{
    CommitRequest, CommitResponse, FetchedGroup, FetchedOffset, OffsetDeleteResponse,
    OffsetDeleteTopics,
};
use super::classic_group::ClassicGroup;
use super::coordinator::{valid_legacy_group_id, GroupCoordinator};
use super::membership::validate_member;
use super::rebalance;
use super::records::{GroupRecord, OffsetValue, MAX_STRING_BYTES};
use super::state::GroupState;

/// Kafka's `ClassicGroup.validateOffsetCommit`.
fn validate_offset_commit(g: &ClassicGroup, req: &CommitRequest) -> Result<(), ErrorKind> {
    if g.is(GroupState::Dead) {
        return Err(ErrorKind::CoordinatorNotAvailable);
    }
    if req.generation_id < 0 && g.is(GroupState::Empty) {
        // Admin clients and consumers that assign partitions themselves.
        return Ok(());
    }
    if req.generation_id >= 0 || !req.member_id.is_empty() || req.group_instance_id.is_some() {
        validate_member(g, &req.member_id, req.group_instance_id.as_deref())?;
        if req.generation_id != g.generation_id {
            return Err(ErrorKind::IllegalGeneration);
        }
    } else if !g.is(GroupState::Empty) {
        return Err(ErrorKind::UnknownMemberId);
    }
    if g.is(GroupState::CompletingRebalance) {
        return Err(ErrorKind::RebalanceInProgress);
    }
    Ok(())
}

impl GroupCoordinator {
    /// OffsetCommit: validates, then emits one record per accepted partition.
    pub fn commit_offsets(&mut self, now_ms: i64, req: CommitRequest) -> CommitResponse {
        if !valid_legacy_group_id(&req.group_id) {
            return req.answer_all(ErrorKind::InvalidGroupId);
        }
        match self.groups.get(&req.group_id) {
            None if req.generation_id < 0 => {
                // A "simple" group: offsets only, no membership.
                self.groups.insert(
                    req.group_id.clone(),
                    ClassicGroup::new(&req.group_id, now_ms),
                );
            }
            None => {
                let e = if req.version >= 9 {
                    ErrorKind::GroupIdNotFound
                } else {
                    ErrorKind::IllegalGeneration
                };
                return req.answer_all(e);
            }
            Some(g) => {
                if let Err(e) = validate_offset_commit(g, &req) {
                    return req.answer_all(e);
                }
            }
        }
        if let Some((g, mut cx)) = self.split(&req.group_id, now_ms) {
            // Commits keep a member's session alive in Stable and PreparingRebalance.
            if (g.is(GroupState::Stable) || g.is(GroupState::PreparingRebalance))
                && g.has_member(&req.member_id)
            {
                rebalance::reschedule_heartbeat(g, &req.member_id, &mut cx);
            }
        }
        let max_metadata = self.config.offset_metadata_max_bytes;
        let expire_timestamp_ms = req.retention_ms.map(|r| now_ms.saturating_add(r));
        let mut response = Vec::with_capacity(req.topics.len());
        for topic in req.topics {
            let mut parts = Vec::with_capacity(topic.partitions.len());
            for p in topic.partitions {
                let metadata = p.metadata.unwrap_or_default();
                let error = if let Some(e) = p.error {
                    e
                } else if metadata.encode_utf16().count() > max_metadata
                    || metadata.len() > MAX_STRING_BYTES
                {
                    // Kafka compares `String.length()`: UTF-16 code units, not bytes. And the
                    // record stores the metadata's UTF-8 bytes with an i16 length: longer is
                    // refused here too (Kafka fails the whole write then), never stored cut.
                    ErrorKind::OffsetMetadataTooLarge
                } else {
                    self.effects.records.push(GroupRecord::Offset {
                        group: req.group_id.clone(),
                        topic: topic.name.clone(),
                        partition: p.partition,
                        value: Some(OffsetValue {
                            offset: p.offset,
                            leader_epoch: p.leader_epoch,
                            metadata,
                            commit_timestamp_ms: now_ms,
                            expire_timestamp_ms,
                        }),
                    });
                    ErrorKind::None
                };
                parts.push((p.partition, error));
            }
            response.push((topic.name, parts));
        }
        response
    }

    /// OffsetFetch of one group: the requested partitions (-1 when nothing is committed), or
    /// everything committed when `topics` is `None`.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> FetchedGroup {
        let offsets = self.offsets.get(group_id);
        let fetched = |p: i32, v: Option<&OffsetValue>| match v {
            Some(v) => FetchedOffset {
                partition: p,
                offset: v.offset,
                leader_epoch: v.leader_epoch,
                metadata: v.metadata.clone(),
            },
            None => FetchedOffset {
                partition: p,
                offset: -1,
                leader_epoch: -1,
                metadata: String::new(),
            },
        };
        let topics = match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(t, parts)| {
                    let parts = parts
                        .into_iter()
                        .map(|p| fetched(p, offsets.and_then(|o| o.get(&(t.clone(), p)))))
                        .collect();
                    (t, parts)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<FetchedOffset>> = BTreeMap::new();
                for ((t, p), v) in offsets.into_iter().flatten() {
                    by_topic
                        .entry(t.clone())
                        .or_default()
                        .push(fetched(*p, Some(v)));
                }
                by_topic.into_iter().collect()
            }
        };
        FetchedGroup {
            error: ErrorKind::None,
            topics,
        }
    }

    /// OffsetDelete: tombstones for partitions the group is not subscribed to.
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        topics: OffsetDeleteTopics,
    ) -> OffsetDeleteResponse {
        let fail = |error| OffsetDeleteResponse {
            error,
            topics: Vec::new(),
        };
        if group_id.is_empty() {
            return fail(ErrorKind::InvalidGroupId);
        }
        let Some(g) = self.groups.get(group_id) else {
            return fail(ErrorKind::GroupIdNotFound);
        };
        match g.state {
            GroupState::Dead => return fail(ErrorKind::GroupIdNotFound),
            GroupState::Stable
            | GroupState::PreparingRebalance
            | GroupState::CompletingRebalance
                if g.protocol_type.as_deref() != Some("consumer") =>
            {
                return fail(ErrorKind::NonEmptyGroup)
            }
            _ => {}
        }
        let offsets = self.offsets.get(group_id);
        let mut out = Vec::with_capacity(topics.len());
        for (topic, parts) in topics {
            let subscribed = g.is_subscribed_to(&topic);
            let mut results = Vec::with_capacity(parts.len());
            for (p, pre) in parts {
                let error = if let Some(e) = pre {
                    e
                } else if subscribed {
                    ErrorKind::GroupSubscribedToTopic
                } else {
                    if offsets.is_some_and(|o| o.contains_key(&(topic.clone(), p))) {
                        self.effects.records.push(GroupRecord::Offset {
                            group: group_id.to_string(),
                            topic: topic.clone(),
                            partition: p,
                            value: None,
                        });
                    }
                    ErrorKind::None
                };
                results.push((p, error));
            }
            out.push((topic, results));
        }
        OffsetDeleteResponse {
            error: ErrorKind::None,
            topics: out,
        }
    }

    /// A topic was deleted (Kafka's `OffsetMetadataManager.onPartitionsDeleted`, for all its
    /// partitions): a tombstone for every offset a group served here committed on it. Returns
    /// how many.
    pub fn on_topics_deleted(&mut self, topics: &[String]) -> usize {
        let mut tombstones = Vec::new();
        for (group, offsets) in &self.offsets {
            if !self.owns_group(group) {
                continue;
            }
            for (topic, partition) in offsets.keys() {
                if topics.contains(topic) {
                    tombstones.push(GroupRecord::Offset {
                        group: group.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        value: None,
                    });
                }
            }
        }
        let count = tombstones.len();
        self.effects.records.extend(tombstones);
        count
    }

    /// Applies records that are now in the log: offsets appear or disappear, and a group
    /// tombstone (DeleteGroups, expiry) removes its group. The other group records are
    /// already reflected in memory and are ignored.
    pub fn apply_persisted(&mut self, records: &[GroupRecord], now_ms: i64) {
        for r in records {
            match r {
                GroupRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                } => self.apply_offset(group, topic, *partition, value.clone(), now_ms),
                GroupRecord::Group { group, value: None } => self.remove_group(group),
                GroupRecord::Group { value: Some(_), .. } => {}
            }
        }
    }

    pub(super) fn apply_offset(
        &mut self,
        group: &str,
        topic: &str,
        partition: i32,
        value: Option<OffsetValue>,
        now_ms: i64,
    ) {
        match value {
            Some(v) => {
                self.groups
                    .entry(group.to_string())
                    .or_insert_with(|| ClassicGroup::new(group, now_ms));
                self.offsets
                    .entry(group.to_string())
                    .or_default()
                    .insert((topic.to_string(), partition), v);
            }
            None => {
                if let Some(o) = self.offsets.get_mut(group) {
                    o.remove(&(topic.to_string(), partition));
                    if o.is_empty() {
                        self.offsets.remove(group);
                    }
                }
            }
        }
    }

    /// Offset expiry (`offsets.retention.minutes`), after Kafka's `offsetExpirationCondition`:
    /// offsets of an empty group expire once the group has been empty that long; offsets of
    /// a simple group, or of topics a stable consumer group no longer subscribes to, once
    /// they are that old. An empty group left with no offsets is deleted (once the tombstones
    /// are written).
    pub fn expire_offsets(&mut self, now_ms: i64) {
        let retention = self.config.offsets_retention_ms;
        let mut deleted_groups = Vec::new();
        for (group_id, g) in &self.groups {
            let offsets = self.offsets.get(group_id);
            let mut remaining = offsets.map_or(0, BTreeMap::len);
            for ((topic, p), v) in offsets.into_iter().flatten() {
                let base = match (&g.protocol_type, g.state) {
                    (None, _) => Some(v.commit_timestamp_ms),
                    (Some(_), GroupState::Empty) => {
                        Some(g.state_timestamp_ms.unwrap_or(v.commit_timestamp_ms))
                    }
                    (Some(t), GroupState::Stable)
                        if t == "consumer"
                            && g.subscribed_topics().is_some_and(|s| !s.contains(topic)) =>
                    {
                        Some(v.commit_timestamp_ms)
                    }
                    _ => None,
                };
                let expired = match (v.expire_timestamp_ms, base) {
                    (Some(expire), Some(_)) => now_ms >= expire,
                    (None, Some(base)) => now_ms.saturating_sub(base) >= retention,
                    (_, None) => false,
                };
                if expired {
                    remaining -= 1;
                    self.effects.records.push(GroupRecord::Offset {
                        group: group_id.clone(),
                        topic: topic.clone(),
                        partition: *p,
                        value: None,
                    });
                }
            }
            if remaining == 0 && g.is(GroupState::Empty) && g.pending_join.is_empty() {
                deleted_groups.push(group_id.clone());
            }
        }
        for group_id in deleted_groups {
            tracing::info!(group = %group_id, "deleting empty group with no offsets left");
            self.effects.records.push(GroupRecord::Group {
                group: group_id,
                value: None,
            });
        }
    }
}
