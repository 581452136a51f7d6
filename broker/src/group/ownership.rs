//! Which groups this coordinator serves: those whose `__consumer_offsets` partition it has
//! loaded (Kafka's coordinator is per partition of that topic, and leadership of a partition
//! moves between brokers).
//!
//! Invariants: the coordinator holds groups, offsets and timers only of partitions that are
//! owned or being loaded; loading a partition first drops whatever it held of it, so a load
//! after an unload (or a second load) rebuilds the same state, never a duplicate; a load that
//! an unload or a newer load overtook changes nothing when it finishes.

use std::collections::{BTreeMap, BTreeSet};

use protocol_shim::ErrorKind;

use super::api::{JoinResponse, ParkedReply, SyncResponse};
use super::coordinator::{valid_group_id, valid_legacy_group_id, GroupCoordinator};
use super::partitioner::partition_for;
use super::rebalance::{self, Ctx};
use super::records::GroupRecord;

/// The `__consumer_offsets` partitions of this coordinator.
#[derive(Debug)]
pub struct Ownership {
    /// Partition count of `__consumer_offsets` (groups map to partitions by hash).
    num_partitions: i32,
    /// Loaded partitions: their groups are served.
    owned: BTreeSet<i32>,
    /// Partitions being loaded, by the id of the load in progress.
    loading: BTreeMap<i32, u64>,
    next_load_id: u64,
}

impl Ownership {
    /// One partition, owned: every group is served (a coordinator used on its own, in tests).
    pub fn everything() -> Self {
        Ownership {
            num_partitions: 1,
            owned: BTreeSet::from([0]),
            loading: BTreeMap::new(),
            next_load_id: 1,
        }
    }
}

impl GroupCoordinator {
    /// Sets the partition count of `__consumer_offsets`; no partition is owned afterwards.
    /// Call before loading any partition (the group-to-partition mapping depends on it).
    pub fn set_offsets_partitions(&mut self, num_partitions: i32) {
        let partitions: Vec<i32> = self.ownership.owned.iter().copied().collect();
        for p in partitions {
            self.unload_partition(p);
        }
        self.ownership.loading.clear();
        self.ownership.num_partitions = num_partitions.max(1);
    }

    /// The `__consumer_offsets` partition that holds `group_id`.
    pub fn partition_of(&self, group_id: &str) -> i32 {
        partition_for(group_id, self.ownership.num_partitions)
    }

    /// The loaded partitions, ascending.
    pub fn owned_partitions(&self) -> Vec<i32> {
        self.ownership.owned.iter().copied().collect()
    }

    pub fn owns_group(&self, group_id: &str) -> bool {
        self.ownership.owned.contains(&self.partition_of(group_id))
    }

    /// Whether a partition is being loaded.
    pub fn is_loading(&self, partition: i32) -> bool {
        self.ownership.loading.contains_key(&partition)
    }

    /// Whether any partition is being loaded (ListGroups then answers
    /// COORDINATOR_LOAD_IN_PROGRESS, as Kafka does while a coordinator loads).
    pub fn any_loading(&self) -> bool {
        !self.ownership.loading.is_empty()
    }

    /// The error a request for `group_id` gets here instead of being served:
    /// COORDINATOR_LOAD_IN_PROGRESS while its partition loads, NOT_COORDINATOR when another
    /// broker (or nobody) serves it. `None` for an invalid group id, whose own error
    /// (INVALID_GROUP_ID, GROUP_ID_NOT_FOUND) comes first in Kafka.
    pub fn group_error(&self, group_id: &str) -> Option<ErrorKind> {
        if !valid_group_id(group_id) {
            return None;
        }
        self.coordinator_error(group_id)
    }

    /// `group_error` for the APIs that accept the empty group id (`valid_legacy_group_id`).
    pub fn legacy_group_error(&self, group_id: &str) -> Option<ErrorKind> {
        if !valid_legacy_group_id(group_id) {
            return None;
        }
        self.coordinator_error(group_id)
    }

    fn coordinator_error(&self, group_id: &str) -> Option<ErrorKind> {
        let partition = self.partition_of(group_id);
        if self.ownership.owned.contains(&partition) {
            None
        } else if self.is_loading(partition) {
            Some(ErrorKind::CoordinatorLoadInProgress)
        } else {
            Some(ErrorKind::NotCoordinator)
        }
    }

    /// Starts loading `partition`: drops what the coordinator held of it (answering its parked
    /// requests NOT_COORDINATOR) and marks it loading. Returns the id to finish the load with.
    pub fn begin_loading(&mut self, partition: i32) -> u64 {
        self.unload_partition(partition);
        let id = self.ownership.next_load_id;
        self.ownership.next_load_id += 1;
        self.ownership.loading.insert(partition, id);
        id
    }

    /// Replays the partition's records (in log order; records of groups that map elsewhere
    /// are ignored), starts the session timers of its loaded members and marks it owned.
    /// Returns false, changing nothing, if the load was overtaken by an unload or a newer load.
    pub fn finish_loading_partition(
        &mut self,
        partition: i32,
        load_id: u64,
        records: impl IntoIterator<Item = GroupRecord>,
        now_ms: i64,
    ) -> bool {
        if self.ownership.loading.get(&partition) != Some(&load_id) {
            return false;
        }
        for record in records {
            if self.partition_of(record.group_id()) == partition {
                self.replay(record, now_ms);
            }
        }
        let num_partitions = self.ownership.num_partitions;
        self.start_session_timers(now_ms, |g| partition_for(g, num_partitions) == partition);
        self.ownership.loading.remove(&partition);
        self.ownership.owned.insert(partition);
        true
    }

    /// Gives up load `load_id` of `partition` (its log could not be read): the partition is
    /// neither loading nor owned. Changes nothing if another load or an unload overtook it.
    pub fn cancel_loading(&mut self, partition: i32, load_id: u64) {
        if self.ownership.loading.get(&partition) == Some(&load_id) {
            self.ownership.loading.remove(&partition);
        }
    }

    /// `begin_loading` and `finish_loading_partition` at once.
    pub fn load_partition(
        &mut self,
        partition: i32,
        records: impl IntoIterator<Item = GroupRecord>,
        now_ms: i64,
    ) {
        let id = self.begin_loading(partition);
        self.finish_loading_partition(partition, id, records, now_ms);
    }

    /// Stops serving `partition`: removes its groups, their offsets and timers, and answers
    /// their parked JoinGroup/SyncGroup requests NOT_COORDINATOR (in `Effects::replies`), so
    /// the clients look for the new coordinator.
    pub fn unload_partition(&mut self, partition: i32) {
        let num_partitions = self.ownership.num_partitions;
        let in_partition = |g: &str| partition_for(g, num_partitions) == partition;
        let groups: Vec<String> = self
            .groups
            .keys()
            .filter(|g| in_partition(g))
            .cloned()
            .collect();
        for group_id in groups {
            if let Some(group) = self.groups.remove(&group_id) {
                for m in group.members.values() {
                    if let Some(token) = m.awaiting_join {
                        let reply = JoinResponse::error(ErrorKind::NotCoordinator, &m.member_id);
                        self.effects.replies.push((token, ParkedReply::Join(reply)));
                    }
                    if let Some(token) = m.awaiting_sync {
                        let reply = SyncResponse::error(ErrorKind::NotCoordinator);
                        self.effects.replies.push((token, ParkedReply::Sync(reply)));
                    }
                }
            }
            self.timers.cancel_group(&group_id);
        }
        self.offsets.retain(|g, _| !in_partition(g));
        self.ownership.owned.remove(&partition);
        self.ownership.loading.remove(&partition);
    }

    /// Gives every member of the groups `select` picks a fresh session timeout (loaded members
    /// that keep heartbeating carry on without a rebalance).
    pub(super) fn start_session_timers(&mut self, now_ms: i64, select: impl Fn(&str) -> bool) {
        let Self {
            groups,
            timers,
            effects,
            config,
            ..
        } = self;
        let mut cx = Ctx {
            timers,
            effects,
            config,
            now_ms,
        };
        for g in groups.values().filter(|g| select(&g.group_id)) {
            for id in g.members.keys() {
                rebalance::reschedule_heartbeat(g, id, &mut cx);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use bytes::Bytes;

    use super::*;
    use crate::group::api::{CommitRequest, JoinRequest, SyncRequest};
    use crate::group::coordinator::{Answer, CoordinatorConfig, MemberIds};
    use crate::group::state::GroupState;

    const PARTITIONS: i32 = 3;
    const NOW: i64 = 1_000_000;

    fn config() -> CoordinatorConfig {
        CoordinatorConfig {
            initial_rebalance_delay_ms: 0,
            ..CoordinatorConfig::default()
        }
    }

    /// A group id in each partition: `ids[p]` maps to partition `p`.
    fn group_ids() -> Vec<String> {
        (0..PARTITIONS)
            .map(|p| {
                (0..)
                    .map(|i| format!("group-{i}"))
                    .find(|g| partition_for(g, PARTITIONS) == p)
                    .unwrap()
            })
            .collect()
    }

    fn commit(c: &mut GroupCoordinator, group: &str, member: &str, generation: i32, offset: i64) {
        let req = CommitRequest::one_partition(group, member, generation, offset, None);
        c.commit_offsets(NOW, req);
    }

    fn join_req(group: &str, member: &str) -> JoinRequest {
        JoinRequest {
            group_id: group.into(),
            member_id: member.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            require_known_member_id: true,
            supports_skip_assignment: false,
        }
    }

    /// Joins a dynamic member (MEMBER_ID_REQUIRED, then parked with `token`).
    fn park_join(c: &mut GroupCoordinator, group: &str, token: u64) -> String {
        let Answer::Now(first) = c.join(NOW, token, join_req(group, "")) else {
            panic!("first join answers now")
        };
        assert_eq!(first.error, ErrorKind::MemberIdRequired);
        assert_eq!(
            c.join(NOW, token, join_req(group, &first.member_id)),
            Answer::Parked
        );
        first.member_id
    }

    /// Applies what a call emitted, as the runtime does; returns the records.
    fn drain(c: &mut GroupCoordinator, log: &mut Vec<GroupRecord>) {
        let e = c.take_effects();
        c.apply_persisted(&e.records, NOW);
        log.extend(e.records);
    }

    /// The log a coordinator serving everything wrote: offsets 10+p for the group of each
    /// partition `p`, and a stable one-member group in partition 0.
    fn written_log() -> (Vec<String>, String, Vec<GroupRecord>) {
        let ids = group_ids();
        let mut w = GroupCoordinator::new(config(), MemberIds::Sequential(0));
        let mut log = Vec::new();
        let member = park_join(&mut w, &ids[0], 1);
        drain(&mut w, &mut log);
        w.expire(NOW);
        drain(&mut w, &mut log);
        let sync = SyncRequest {
            group_id: ids[0].clone(),
            generation_id: 1,
            member_id: member.clone(),
            group_instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol_name: None,
            assignments: vec![(member.clone(), Bytes::from_static(b"a"))],
        };
        w.sync(NOW, 2, sync);
        drain(&mut w, &mut log);
        assert_eq!(w.group(&ids[0]).unwrap().state, GroupState::Stable);
        commit(&mut w, &ids[0], &member, 1, 10);
        drain(&mut w, &mut log);
        for (p, id) in ids.iter().enumerate().skip(1) {
            commit(&mut w, id, "", -1, 10 + p as i64);
            drain(&mut w, &mut log);
        }
        (ids, member, log)
    }

    fn coordinator() -> GroupCoordinator {
        let mut c = GroupCoordinator::new(config(), MemberIds::Sequential(100));
        c.set_offsets_partitions(PARTITIONS);
        c
    }

    fn offset(c: &GroupCoordinator, group: &str) -> Option<i64> {
        c.committed(group)
            .and_then(|o| o.get(&("t".to_string(), 0)))
            .map(|v| v.offset)
    }

    #[test]
    fn a_coordinator_serves_only_loaded_partitions() {
        let (ids, _, log) = written_log();
        let mut c = coordinator();
        assert!(c.owned_partitions().is_empty());
        assert_eq!(c.group_error(&ids[1]), Some(ErrorKind::NotCoordinator));
        c.load_partition(1, log.clone(), NOW);
        assert_eq!(c.owned_partitions(), vec![1]);
        assert!(c.owns_group(&ids[1]) && !c.owns_group(&ids[0]));
        assert_eq!(c.group_error(&ids[1]), None);
        assert_eq!(c.group_error(&ids[2]), Some(ErrorKind::NotCoordinator));
        // An invalid group id gets its own error from the operation, not NOT_COORDINATOR.
        assert_eq!(c.group_error(""), None);
        assert_eq!(offset(&c, &ids[1]), Some(11));
        assert_eq!(offset(&c, &ids[0]), None);
        assert!(c.group(&ids[0]).is_none());
        let listed: Vec<String> = c
            .list_groups(&[], &[])
            .into_iter()
            .map(|g| g.group_id)
            .collect();
        assert_eq!(listed, vec![ids[1].clone()]);
        assert!(c.next_deadline().is_none(), "no member, no timer");
    }

    #[test]
    fn unload_drops_only_that_partitions_groups_and_timers() {
        let (ids, member, log) = written_log();
        let mut c = coordinator();
        for p in 0..PARTITIONS {
            c.load_partition(p, log.clone(), NOW);
        }
        assert_eq!(c.owned_partitions(), vec![0, 1, 2]);
        let g0 = c.group(&ids[0]).unwrap();
        assert_eq!(g0.state, GroupState::Stable);
        assert!(g0.has_member(&member));
        assert_eq!(c.timers.len(), 1, "the loaded member's session");
        c.unload_partition(0);
        assert!(c.take_effects().is_empty(), "nothing was parked");
        assert!(c.group(&ids[0]).is_none());
        assert_eq!(offset(&c, &ids[0]), None);
        assert!(c.timers.is_empty());
        assert_eq!(c.group_error(&ids[0]), Some(ErrorKind::NotCoordinator));
        assert_eq!(offset(&c, &ids[1]), Some(11));
        assert_eq!(offset(&c, &ids[2]), Some(12));
        assert_eq!(c.owned_partitions(), vec![1, 2]);
    }

    #[test]
    fn reload_restores_committed_offsets_without_duplicates() {
        let (ids, member, log) = written_log();
        let mut c = coordinator();
        c.load_partition(0, log.clone(), NOW);
        let before = (
            c.committed(&ids[0]).cloned(),
            c.group(&ids[0])
                .map(|g| (g.state, g.generation_id, g.members.len())),
            c.timers.len(),
        );
        c.unload_partition(0);
        c.load_partition(0, log.clone(), NOW);
        // A second load without an unload rebuilds the same state too.
        c.load_partition(0, log.clone(), NOW);
        let after = (
            c.committed(&ids[0]).cloned(),
            c.group(&ids[0])
                .map(|g| (g.state, g.generation_id, g.members.len())),
            c.timers.len(),
        );
        assert_eq!(before, after);
        assert_eq!(offset(&c, &ids[0]), Some(10));
        assert_eq!(c.groups.len(), 1, "only the loaded partition's group");
        // The reloaded member carries on without a rebalance.
        let e = c.heartbeat(
            NOW,
            crate::group::api::HeartbeatRequest {
                group_id: ids[0].clone(),
                generation_id: 1,
                member_id: member,
                group_instance_id: None,
            },
        );
        assert_eq!(e, ErrorKind::None);
    }

    #[test]
    fn unload_answers_parked_joins_not_coordinator() {
        let ids = group_ids();
        let mut c = coordinator();
        c.load_partition(2, Vec::new(), NOW);
        let member = park_join(&mut c, &ids[2], 7);
        c.take_effects();
        c.unload_partition(2);
        let replies = c.take_effects().replies;
        assert_eq!(
            replies,
            vec![(
                7,
                ParkedReply::Join(JoinResponse::error(ErrorKind::NotCoordinator, member))
            )]
        );
        assert!(c.group(&ids[2]).is_none());
        assert!(c.next_deadline().is_none());
    }

    #[test]
    fn loading_is_reported_and_an_overtaken_load_changes_nothing() {
        let (ids, _, log) = written_log();
        let mut c = coordinator();
        let first = c.begin_loading(1);
        assert_eq!(
            c.group_error(&ids[1]),
            Some(ErrorKind::CoordinatorLoadInProgress)
        );
        assert!(c.any_loading());
        c.unload_partition(1);
        assert!(!c.finish_loading_partition(1, first, log.clone(), NOW));
        assert_eq!(c.group_error(&ids[1]), Some(ErrorKind::NotCoordinator));
        assert_eq!(offset(&c, &ids[1]), None);
        let failed = c.begin_loading(1);
        c.cancel_loading(1, failed);
        assert_eq!(c.group_error(&ids[1]), Some(ErrorKind::NotCoordinator));
        let older = c.begin_loading(1);
        let newer = c.begin_loading(1);
        assert!(!c.finish_loading_partition(1, older, log.clone(), NOW));
        assert!(c.finish_loading_partition(1, newer, log, NOW));
        assert_eq!(offset(&c, &ids[1]), Some(11));
        assert!(!c.any_loading());
    }
}
