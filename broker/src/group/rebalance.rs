//! The rebalance rules shared by the coordinator's operations, after Kafka's
//! `GroupMetadataManager` for classic groups: starting a rebalance, ending the join phase
//! (new generation, protocol choice, JoinGroup responses), propagating the leader's
//! assignment, removing members, and the session, join and sync deadlines.

use std::collections::HashMap;

use bytes::Bytes;
use protocol_shim::ErrorKind;

use super::api::{JoinResponse, JoinedMember, ParkedReply, SyncResponse};
use super::classic_group::ClassicGroup;
use super::coordinator::{CoordinatorConfig, Effects};
use super::records::{GroupMetadataValue, GroupRecord, MemberMetadataValue};
use super::state::GroupState;
use super::timers::{TimerKey, Timers};

/// What group-level rules need besides the group.
pub struct Ctx<'a> {
    pub timers: &'a mut Timers,
    pub effects: &'a mut Effects,
    pub config: &'a CoordinatorConfig,
    pub now_ms: i64,
}

impl Ctx<'_> {
    pub fn reply(&mut self, token: u64, reply: ParkedReply) {
        self.effects.replies.push((token, reply));
    }
}

fn heartbeat_key(g: &ClassicGroup, member: &str) -> TimerKey {
    TimerKey::Heartbeat {
        group: g.group_id.clone(),
        member: member.to_string(),
    }
}

fn join_key(g: &ClassicGroup) -> TimerKey {
    TimerKey::Join {
        group: g.group_id.clone(),
    }
}

fn sync_key(g: &ClassicGroup) -> TimerKey {
    TimerKey::Sync {
        group: g.group_id.clone(),
    }
}

/// Restarts a member's session timer (the new-member join timeout for new members).
pub fn reschedule_heartbeat(g: &ClassicGroup, member_id: &str, cx: &mut Ctx) {
    let Some(m) = g.members.get(member_id) else {
        return;
    };
    let timeout_ms = if m.is_new {
        cx.config.new_member_join_timeout_ms
    } else {
        i64::from(m.session_timeout_ms)
    };
    cx.timers.schedule(
        heartbeat_key(g, member_id),
        cx.now_ms.saturating_add(timeout_ms),
    );
}

/// The GroupMetadata record of the group as it is now.
pub fn group_record(g: &ClassicGroup) -> GroupRecord {
    let protocol = g.protocol_name.clone();
    let members = g
        .members
        .values()
        .map(|m| MemberMetadataValue {
            member_id: m.member_id.clone(),
            group_instance_id: m.group_instance_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            session_timeout_ms: m.session_timeout_ms,
            subscription: protocol
                .as_deref()
                .map(|p| m.metadata(p))
                .unwrap_or_default(),
            assignment: m.assignment.clone(),
        })
        .collect();
    GroupRecord::Group {
        group: g.group_id.clone(),
        value: Some(GroupMetadataValue {
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            generation: g.generation_id,
            protocol,
            leader: g.leader_id.clone(),
            current_state_timestamp_ms: g.state_timestamp_ms.unwrap_or(-1),
            members,
        }),
    }
}

/// The JoinGroup response of `member_id` for the current generation.
pub fn current_join_response(g: &ClassicGroup, member_id: &str) -> JoinResponse {
    let members = if g.is_leader(member_id) {
        let protocol = g.protocol_name.as_deref().unwrap_or_default();
        g.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(protocol),
            })
            .collect()
    } else {
        Vec::new()
    };
    JoinResponse {
        error: ErrorKind::None,
        generation_id: g.generation_id,
        protocol_type: g.protocol_type.clone(),
        protocol_name: g.protocol_name.clone(),
        leader: g.leader_id.clone().unwrap_or_default(),
        member_id: member_id.to_string(),
        members,
        skip_assignment: false,
    }
}

/// Starts a rebalance if the state allows one, else tries to end a join phase in progress.
pub fn maybe_prepare_rebalance_or_complete_join(g: &mut ClassicGroup, cx: &mut Ctx) {
    if g.state.can_rebalance() {
        prepare_rebalance(g, cx);
    } else if g.is(GroupState::PreparingRebalance) {
        try_complete_join(g, cx);
    }
}

/// Kafka's `prepareRebalance`: members awaiting sync must rejoin; the join phase lasts the
/// initial delay for an empty group, else at most the rebalance timeout.
pub fn prepare_rebalance(g: &mut ClassicGroup, cx: &mut Ctx) {
    if g.is(GroupState::CompletingRebalance) {
        reset_and_propagate_assignment_error(g, ErrorKind::RebalanceInProgress, cx);
    }
    cx.timers.cancel(&sync_key(g));
    let rebalance_timeout_ms = i64::from(g.rebalance_timeout_ms());
    if g.is(GroupState::Empty) {
        let delay = cx.config.initial_rebalance_delay_ms.max(0);
        let remaining = (rebalance_timeout_ms - delay).max(0);
        g.initial_delay = Some((delay, remaining));
        g.new_member_added = false;
        cx.timers
            .schedule(join_key(g), cx.now_ms.saturating_add(delay));
    } else {
        g.initial_delay = None;
        cx.timers
            .schedule(join_key(g), cx.now_ms.saturating_add(rebalance_timeout_ms));
    }
    g.transition_to(GroupState::PreparingRebalance, cx.now_ms);
    tracing::info!(group = %g.group_id, generation = g.generation_id, members = g.members.len(), "preparing to rebalance group");
    try_complete_join(g, cx);
}

/// Ends the join phase early once every member has joined (never during the initial delay).
pub fn try_complete_join(g: &mut ClassicGroup, cx: &mut Ctx) {
    if g.is(GroupState::PreparingRebalance)
        && g.initial_delay.is_none()
        && g.has_all_members_joined()
    {
        complete_join(g, cx);
    }
}

/// The join deadline passed: extend the initial delay if members keep arriving, else end the
/// join phase.
pub fn on_join_deadline(g: &mut ClassicGroup, cx: &mut Ctx) {
    if !g.is(GroupState::PreparingRebalance) {
        return;
    }
    if let Some((delay, remaining)) = g.initial_delay {
        if g.new_member_added && remaining != 0 {
            g.new_member_added = false;
            let next_delay = cx.config.initial_rebalance_delay_ms.max(0).min(remaining);
            let next_remaining = (remaining - delay).max(0);
            g.initial_delay = Some((next_delay, next_remaining));
            cx.timers
                .schedule(join_key(g), cx.now_ms.saturating_add(next_delay));
            return;
        }
    }
    complete_join(g, cx);
}

/// Kafka's `completeClassicGroupJoin`: drop dynamic members that did not rejoin, start the
/// next generation and answer every parked JoinGroup (the leader gets all members).
pub fn complete_join(g: &mut ClassicGroup, cx: &mut Ctx) {
    cx.timers.cancel(&join_key(g));
    g.initial_delay = None;
    let not_rejoined: Vec<String> = g
        .members
        .values()
        .filter(|m| m.awaiting_join.is_none() && !m.is_static())
        .map(|m| m.member_id.clone())
        .collect();
    for id in not_rejoined {
        tracing::info!(group = %g.group_id, member = %id, "removing member that did not rejoin");
        g.remove(&id);
        cx.timers.cancel(&heartbeat_key(g, &id));
    }
    if g.is(GroupState::Dead) {
        return;
    }
    if !g.maybe_elect_new_joined_leader() && !g.members.is_empty() {
        // Nobody rejoined: wait another rebalance timeout for session expiry to clear them.
        let timeout = i64::from(g.rebalance_timeout_ms());
        cx.timers
            .schedule(join_key(g), cx.now_ms.saturating_add(timeout));
        return;
    }
    g.generation_id = g.generation_id.wrapping_add(1);
    g.pending_sync.clear();
    if g.members.is_empty() {
        g.protocol_name = None;
        g.transition_to(GroupState::Empty, cx.now_ms);
        tracing::info!(group = %g.group_id, generation = g.generation_id, "group is empty");
        cx.effects.records.push(group_record(g));
        return;
    }
    g.protocol_name = g.select_protocol();
    g.transition_to(GroupState::CompletingRebalance, cx.now_ms);
    tracing::info!(group = %g.group_id, generation = g.generation_id, protocol = ?g.protocol_name, members = g.members.len(), "join phase complete");
    let ids: Vec<String> = g.members.keys().cloned().collect();
    for id in ids {
        let response = current_join_response(g, &id);
        if let Some(m) = g.members.get_mut(&id) {
            if let Some(token) = m.awaiting_join.take() {
                cx.reply(token, ParkedReply::Join(response));
            }
            m.is_new = false;
        }
        g.pending_sync.insert(id.clone());
        reschedule_heartbeat(g, &id, cx);
    }
    let timeout = i64::from(g.rebalance_timeout_ms());
    cx.timers
        .schedule(sync_key(g), cx.now_ms.saturating_add(timeout));
}

/// Members that have not sent SyncGroup by the rebalance timeout are removed.
pub fn on_sync_deadline(g: &mut ClassicGroup, cx: &mut Ctx) {
    if !(g.is(GroupState::CompletingRebalance) || g.is(GroupState::Stable)) {
        return;
    }
    if g.pending_sync.is_empty() {
        return;
    }
    let pending: Vec<String> = g.pending_sync.iter().cloned().collect();
    for id in pending {
        tracing::info!(group = %g.group_id, member = %id, "removing member that did not sync");
        g.remove(&id);
        cx.timers.cancel(&heartbeat_key(g, &id));
    }
    prepare_rebalance(g, cx);
}

/// Clears every assignment and fails parked SyncGroups with `error`.
pub fn reset_and_propagate_assignment_error(g: &mut ClassicGroup, error: ErrorKind, cx: &mut Ctx) {
    for m in g.members.values_mut() {
        m.assignment = Bytes::new();
        if let Some(token) = m.awaiting_sync.take() {
            cx.reply(token, ParkedReply::Sync(SyncResponse::error(error)));
        }
    }
}

/// Stores the leader's assignment (empty for members it left out) and answers every parked
/// SyncGroup.
pub fn set_and_propagate_assignment(
    g: &mut ClassicGroup,
    mut assignments: HashMap<String, Bytes>,
    cx: &mut Ctx,
) {
    let ids: Vec<String> = g.members.keys().cloned().collect();
    for id in ids {
        let assignment = assignments.remove(&id).unwrap_or_default();
        let (protocol_type, protocol_name) = (g.protocol_type.clone(), g.protocol_name.clone());
        let Some(m) = g.members.get_mut(&id) else {
            continue;
        };
        m.assignment = assignment.clone();
        if let Some(token) = m.awaiting_sync.take() {
            cx.reply(
                token,
                ParkedReply::Sync(SyncResponse {
                    error: ErrorKind::None,
                    protocol_type,
                    protocol_name,
                    assignment,
                }),
            );
            reschedule_heartbeat(g, &id, cx);
        }
    }
}

/// Removes a member (left, fenced or expired), failing its parked requests, and rebalances.
pub fn remove_member_and_update(g: &mut ClassicGroup, member_id: &str, cx: &mut Ctx) {
    if let Some(m) = g.members.get_mut(member_id) {
        if let Some(token) = m.awaiting_join.take() {
            cx.reply(
                token,
                ParkedReply::Join(JoinResponse::error(ErrorKind::UnknownMemberId, member_id)),
            );
        }
        if let Some(token) = m.awaiting_sync.take() {
            cx.reply(
                token,
                ParkedReply::Sync(SyncResponse::error(ErrorKind::UnknownMemberId)),
            );
        }
    }
    if g.remove(member_id).is_none() {
        return;
    }
    cx.timers.cancel(&heartbeat_key(g, member_id));
    match g.state {
        GroupState::Stable | GroupState::CompletingRebalance => {
            maybe_prepare_rebalance_or_complete_join(g, cx)
        }
        GroupState::PreparingRebalance => try_complete_join(g, cx),
        GroupState::Empty | GroupState::Dead => {}
    }
}

/// A pending member (MEMBER_ID_REQUIRED) left or never came back.
pub fn remove_pending_member(g: &mut ClassicGroup, member_id: &str, cx: &mut Ctx) {
    if g.pending_join.remove(member_id) {
        cx.timers.cancel(&TimerKey::PendingMember {
            group: g.group_id.clone(),
            member: member_id.to_string(),
        });
        try_complete_join(g, cx);
    }
}

/// A member's session deadline passed. Members in the middle of a rebalance (parked JoinGroup
/// or SyncGroup) are kept alive, except new members, whose join timeout this is.
pub fn on_session_expired(g: &mut ClassicGroup, member_id: &str, cx: &mut Ctx) {
    let Some(m) = g.members.get(member_id) else {
        return;
    };
    if !m.is_new && (m.awaiting_join.is_some() || m.awaiting_sync.is_some()) {
        return;
    }
    tracing::info!(group = %g.group_id, member = %member_id, "member session expired");
    remove_member_and_update(g, member_id, cx);
}
