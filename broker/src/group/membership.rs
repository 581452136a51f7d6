//! SyncGroup, Heartbeat and LeaveGroup, after Kafka's classic-group rules.

use std::collections::HashMap;

use protocol_shim::ErrorKind;

use super::api::{
    HeartbeatRequest, LeaveResponse, LeavingMember, ParkedReply, SyncRequest, SyncResponse,
};
use super::classic_group::ClassicGroup;
use super::coordinator::{Answer, GroupCoordinator};
use super::rebalance;
use super::state::GroupState;
use super::timers::TimerKey;

/// Kafka's `validateMember`: a given instance id must map to this member id.
pub(super) fn validate_member(
    g: &ClassicGroup,
    member_id: &str,
    instance_id: Option<&str>,
) -> Result<(), ErrorKind> {
    if let Some(instance) = instance_id {
        match g.static_member_id(instance) {
            None => return Err(ErrorKind::UnknownMemberId),
            Some(existing) if existing != member_id => return Err(ErrorKind::FencedInstanceId),
            Some(_) => {}
        }
    }
    if !g.has_member(member_id) {
        return Err(ErrorKind::UnknownMemberId);
    }
    Ok(())
}

impl GroupCoordinator {
    pub fn sync(&mut self, now_ms: i64, token: u64, req: SyncRequest) -> Answer<SyncResponse> {
        let fail = |e: ErrorKind| Answer::Now(SyncResponse::error(e));
        if req.group_id.is_empty() {
            return fail(ErrorKind::InvalidGroupId);
        }
        let Some((g, mut cx)) = self.split(&req.group_id, now_ms) else {
            return fail(ErrorKind::UnknownMemberId);
        };
        if g.is(GroupState::Dead) {
            return fail(ErrorKind::CoordinatorNotAvailable);
        }
        if let Err(e) = validate_member(g, &req.member_id, req.group_instance_id.as_deref()) {
            return fail(e);
        }
        if req.generation_id != g.generation_id {
            return fail(ErrorKind::IllegalGeneration);
        }
        if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| g.protocol_type.as_ref() != Some(t))
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|n| g.protocol_name.as_ref() != Some(n))
        {
            return fail(ErrorKind::InconsistentGroupProtocol);
        }
        match g.state {
            GroupState::Empty | GroupState::Dead => fail(ErrorKind::UnknownMemberId),
            GroupState::PreparingRebalance => fail(ErrorKind::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                if let Some(m) = g.members.get_mut(&req.member_id) {
                    if let Some(old) = m.awaiting_sync.replace(token) {
                        cx.reply(
                            old,
                            ParkedReply::Sync(SyncResponse::error(ErrorKind::RebalanceInProgress)),
                        );
                    }
                }
                remove_pending_sync(g, &req.member_id, cx.timers);
                if g.is_leader(&req.member_id) {
                    let assignments: HashMap<_, _> = req.assignments.into_iter().collect();
                    rebalance::set_and_propagate_assignment(g, assignments, &mut cx);
                    g.transition_to(GroupState::Stable, now_ms);
                    tracing::info!(group = %g.group_id, generation = g.generation_id, "group is stable");
                    cx.effects.records.push(rebalance::group_record(g));
                }
                Answer::Parked
            }
            GroupState::Stable => {
                remove_pending_sync(g, &req.member_id, cx.timers);
                rebalance::reschedule_heartbeat(g, &req.member_id, &mut cx);
                let assignment = g
                    .members
                    .get(&req.member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                Answer::Now(SyncResponse {
                    error: ErrorKind::None,
                    protocol_type: g.protocol_type.clone(),
                    protocol_name: g.protocol_name.clone(),
                    assignment,
                })
            }
        }
    }

    pub fn heartbeat(&mut self, now_ms: i64, req: HeartbeatRequest) -> ErrorKind {
        if req.group_id.is_empty() {
            return ErrorKind::InvalidGroupId;
        }
        let Some((g, mut cx)) = self.split(&req.group_id, now_ms) else {
            return ErrorKind::UnknownMemberId;
        };
        if g.is(GroupState::Dead) {
            return ErrorKind::CoordinatorNotAvailable;
        }
        if let Err(e) = validate_member(g, &req.member_id, req.group_instance_id.as_deref()) {
            return e;
        }
        if req.generation_id != g.generation_id {
            return ErrorKind::IllegalGeneration;
        }
        match g.state {
            GroupState::Empty | GroupState::Dead => ErrorKind::UnknownMemberId,
            GroupState::CompletingRebalance | GroupState::Stable => {
                rebalance::reschedule_heartbeat(g, &req.member_id, &mut cx);
                ErrorKind::None
            }
            GroupState::PreparingRebalance => {
                rebalance::reschedule_heartbeat(g, &req.member_id, &mut cx);
                ErrorKind::RebalanceInProgress
            }
        }
    }

    pub fn leave(
        &mut self,
        now_ms: i64,
        group_id: &str,
        members: Vec<LeavingMember>,
    ) -> LeaveResponse {
        let all = |error: ErrorKind, members: Vec<LeavingMember>| LeaveResponse {
            error,
            members: members
                .into_iter()
                .map(|m| (m.member_id, m.group_instance_id, error))
                .collect(),
        };
        if group_id.is_empty() {
            return all(ErrorKind::InvalidGroupId, members);
        }
        let Some((g, mut cx)) = self.split(group_id, now_ms) else {
            // Kafka's `GroupCoordinatorService.leaveGroup` for a group it does not know: no
            // group-level error, every member UNKNOWN_MEMBER_ID (the admin client's
            // removeMembersFromConsumerGroup reads them one by one).
            return LeaveResponse {
                error: ErrorKind::None,
                members: members
                    .into_iter()
                    .map(|m| (m.member_id, m.group_instance_id, ErrorKind::UnknownMemberId))
                    .collect(),
            };
        };
        if g.is(GroupState::Dead) {
            return all(ErrorKind::CoordinatorNotAvailable, members);
        }
        let mut results = Vec::with_capacity(members.len());
        for m in members {
            let instance = m.group_instance_id.as_deref();
            let error = if m.member_id.is_empty() {
                // v3+: a static member leaving by instance id only.
                match instance
                    .and_then(|i| g.static_member_id(i))
                    .map(str::to_string)
                {
                    Some(id) => {
                        rebalance::remove_member_and_update(g, &id, &mut cx);
                        ErrorKind::None
                    }
                    None => ErrorKind::UnknownMemberId,
                }
            } else if g.pending_join.contains(&m.member_id) {
                rebalance::remove_pending_member(g, &m.member_id, &mut cx);
                ErrorKind::None
            } else {
                match validate_member(g, &m.member_id, instance) {
                    Ok(()) => {
                        tracing::info!(group = %g.group_id, member = %m.member_id, "member left the group");
                        rebalance::remove_member_and_update(g, &m.member_id, &mut cx);
                        ErrorKind::None
                    }
                    Err(e) => e,
                }
            };
            results.push((m.member_id, m.group_instance_id, error));
        }
        LeaveResponse {
            error: ErrorKind::None,
            members: results,
        }
    }
}

/// The member has sent SyncGroup; the sync deadline is dropped once everybody has.
fn remove_pending_sync(g: &mut ClassicGroup, member_id: &str, timers: &mut super::timers::Timers) {
    g.pending_sync.remove(member_id);
    if g.pending_sync.is_empty() {
        timers.cancel(&TimerKey::Sync {
            group: g.group_id.clone(),
        });
    }
}
