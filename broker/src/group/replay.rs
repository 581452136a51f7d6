//! Loading: rebuilding groups and offsets from `__consumer_offsets` records at start-up.
//!
//! A group record with members comes back Stable with its last assignment, and every member
//! gets a fresh session timeout from `finish_loading`, so consumers that keep heartbeating
//! across a broker restart carry on without a rebalance.

use bytes::Bytes;

use super::classic_group::ClassicGroup;
use super::coordinator::GroupCoordinator;
use super::member::Member;
use super::records::GroupRecord;
use super::state::GroupState;

impl GroupCoordinator {
    /// Applies one record read from the log (later records win; tombstones delete).
    pub fn replay(&mut self, record: GroupRecord, now_ms: i64) {
        match record {
            GroupRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => self.apply_offset(&group, &topic, partition, value, now_ms),
            GroupRecord::Group { group, value: None } => {
                self.groups.remove(&group);
            }
            GroupRecord::Group {
                group,
                value: Some(v),
            } => {
                let mut g = ClassicGroup::new(&group, now_ms);
                g.generation_id = v.generation;
                g.protocol_type = Some(v.protocol_type).filter(|t| !t.is_empty());
                g.protocol_name = v.protocol.clone();
                g.state_timestamp_ms = Some(v.current_state_timestamp_ms).filter(|&t| t >= 0);
                for m in v.members {
                    let protocols: Vec<(String, Bytes)> = v
                        .protocol
                        .iter()
                        .map(|p| (p.clone(), m.subscription.clone()))
                        .collect();
                    g.add(Member {
                        member_id: m.member_id,
                        group_instance_id: m.group_instance_id,
                        client_id: m.client_id,
                        client_host: m.client_host,
                        rebalance_timeout_ms: m.rebalance_timeout_ms,
                        session_timeout_ms: m.session_timeout_ms,
                        protocol_type: g.protocol_type.clone().unwrap_or_default(),
                        protocols,
                        assignment: m.assignment,
                        awaiting_join: None,
                        awaiting_sync: None,
                        is_new: false,
                    });
                }
                if v.leader.as_ref().is_some_and(|l| g.has_member(l)) {
                    g.leader_id = v.leader;
                }
                g.state = if g.members.is_empty() {
                    GroupState::Empty
                } else {
                    GroupState::Stable
                };
                // Offsets replayed before the group record stay attached by group id.
                self.groups.insert(group, g);
            }
        }
    }

    /// Called once every record is replayed: starts the session timers of loaded members.
    /// (`finish_loading_partition` does the same for the groups of one partition.)
    pub fn finish_loading(&mut self, now_ms: i64) {
        self.start_session_timers(now_ms, |_| true);
    }
}
