//! JoinGroup: new, pending, known and static members, after Kafka's `classicGroupJoin`.
//!
//! An answer is given now for errors, MEMBER_ID_REQUIRED and members that can be told the
//! current generation; otherwise the request is parked until the join phase ends.

use protocol_shim::ErrorKind;

use super::api::{JoinRequest, JoinResponse, ParkedReply};
use super::classic_group::ClassicGroup;
use super::coordinator::{valid_group_id, Answer, GroupCoordinator, MAX_NAME_BYTES};
use super::member::Member;
use super::rebalance::{self, Ctx};
use super::state::GroupState;
use super::timers::TimerKey;

impl GroupCoordinator {
    pub fn join(&mut self, now_ms: i64, token: u64, req: JoinRequest) -> Answer<JoinResponse> {
        let fail = |e: ErrorKind, member_id: &str| Answer::Now(JoinResponse::error(e, member_id));
        if !valid_group_id(&req.group_id) {
            return fail(ErrorKind::InvalidGroupId, &req.member_id);
        }
        let too_long = |s: &str| s.len() > MAX_NAME_BYTES;
        if req.group_instance_id.as_deref().is_some_and(too_long)
            || too_long(&req.member_id)
            || too_long(&req.client_id)
            || too_long(&req.protocol_type)
            || req.protocols.iter().any(|(name, _)| too_long(name))
        {
            return fail(ErrorKind::InvalidRequest, &req.member_id);
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return fail(ErrorKind::InvalidSessionTimeout, &req.member_id);
        }
        let unknown_member = req.member_id.is_empty();
        let created = !self.groups.contains_key(&req.group_id);
        if created {
            if !unknown_member {
                return fail(ErrorKind::UnknownMemberId, &req.member_id);
            }
            self.groups.insert(
                req.group_id.clone(),
                ClassicGroup::new(&req.group_id, now_ms),
            );
        }
        let new_member_id = if unknown_member {
            let prefix = req
                .group_instance_id
                .clone()
                .unwrap_or_else(|| req.client_id.clone());
            Some(self.new_member_id(&prefix))
        } else {
            None
        };
        let group_id = req.group_id.clone();
        let answer = match self.split(&group_id, now_ms) {
            None => fail(ErrorKind::CoordinatorNotAvailable, &req.member_id),
            Some((g, mut cx)) => {
                if !accept_joining_member(g, &req.member_id, cx.config.max_group_size) {
                    // Kafka's `group.remove(memberId)`: a member refused here leaves, and a
                    // rebalance no longer waits for it. The answer names no member.
                    if g.pending_join.contains(&req.member_id) {
                        rebalance::remove_pending_member(g, &req.member_id, &mut cx);
                    } else {
                        rebalance::remove_member_and_update(g, &req.member_id, &mut cx);
                    }
                    fail(ErrorKind::GroupMaxSizeReached, "")
                } else {
                    match new_member_id {
                        Some(id) => join_new_member(g, &mut cx, token, req, id),
                        None => join_known_member(g, &mut cx, token, req),
                    }
                }
            }
        };
        // A group created by a join that failed at once holds nothing: forget it.
        if created {
            let empty = self.groups.get(&group_id).is_some_and(|g| {
                g.is(GroupState::Empty) && g.members.is_empty() && g.pending_join.is_empty()
            });
            if empty && !self.offsets.contains_key(&group_id) {
                self.groups.remove(&group_id);
            }
        }
        answer
    }
}

/// Kafka's `acceptJoiningMember`: enforces `group.max.size`.
fn accept_joining_member(g: &ClassicGroup, member_id: &str, max_size: usize) -> bool {
    match g.state {
        GroupState::Empty | GroupState::Dead => true,
        GroupState::PreparingRebalance => {
            g.members
                .get(member_id)
                .is_some_and(|m| m.awaiting_join.is_some())
                || g.num_awaiting_join() < max_size
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            g.has_member(member_id) || g.members.len() < max_size
        }
    }
}

fn join_new_member(
    g: &mut ClassicGroup,
    cx: &mut Ctx,
    token: u64,
    req: JoinRequest,
    new_member_id: String,
) -> Answer<JoinResponse> {
    if g.is(GroupState::Dead) {
        return Answer::Now(JoinResponse::error(ErrorKind::CoordinatorNotAvailable, ""));
    }
    if !g.supports_protocols(&req.protocol_type, &req.protocols) {
        return Answer::Now(JoinResponse::error(
            ErrorKind::InconsistentGroupProtocol,
            "",
        ));
    }
    if let Some(instance) = req.group_instance_id.clone() {
        if let Some(old) = g.static_member_id(&instance).map(str::to_string) {
            return update_static_member_and_rebalance(
                g,
                cx,
                token,
                req,
                &instance,
                &old,
                new_member_id,
            );
        }
        return add_member_and_rebalance(g, cx, token, req, new_member_id);
    }
    if req.require_known_member_id {
        g.pending_join.insert(new_member_id.clone());
        cx.timers.schedule(
            TimerKey::PendingMember {
                group: g.group_id.clone(),
                member: new_member_id.clone(),
            },
            cx.now_ms.saturating_add(i64::from(req.session_timeout_ms)),
        );
        return Answer::Now(JoinResponse::error(
            ErrorKind::MemberIdRequired,
            new_member_id,
        ));
    }
    add_member_and_rebalance(g, cx, token, req, new_member_id)
}

fn join_known_member(
    g: &mut ClassicGroup,
    cx: &mut Ctx,
    token: u64,
    req: JoinRequest,
) -> Answer<JoinResponse> {
    let member_id = req.member_id.clone();
    let fail = |e: ErrorKind| Answer::Now(JoinResponse::error(e, &member_id));
    if g.is(GroupState::Dead) {
        return fail(ErrorKind::CoordinatorNotAvailable);
    }
    if !g.supports_protocols(&req.protocol_type, &req.protocols) {
        return fail(ErrorKind::InconsistentGroupProtocol);
    }
    if g.pending_join.contains(&member_id) {
        if req.group_instance_id.is_some() {
            // Pending members are never static.
            return fail(ErrorKind::UnknownMemberId);
        }
        cx.timers.cancel(&TimerKey::PendingMember {
            group: g.group_id.clone(),
            member: member_id.clone(),
        });
        return add_member_and_rebalance(g, cx, token, req, member_id.clone());
    }
    let instance = req.group_instance_id.as_deref();
    if g.is_static_member_fenced(instance, &member_id) {
        return fail(ErrorKind::FencedInstanceId);
    }
    if !g.has_member(&member_id) || instance.is_some_and(|i| g.static_member_id(i).is_none()) {
        return fail(ErrorKind::UnknownMemberId);
    }
    let matches = g
        .members
        .get(&member_id)
        .is_some_and(|m| m.matches(&req.protocols));
    match g.state {
        GroupState::PreparingRebalance => update_member_and_rebalance(g, cx, token, req),
        GroupState::CompletingRebalance => {
            if matches {
                // It probably missed its JoinGroup response: give it the current generation.
                Answer::Now(rebalance::current_join_response(g, &member_id))
            } else {
                update_member_and_rebalance(g, cx, token, req)
            }
        }
        GroupState::Stable => {
            if g.is_leader(&member_id) || !matches {
                // A leader rejoining asks for a new assignment (e.g. topic metadata changed).
                update_member_and_rebalance(g, cx, token, req)
            } else {
                let mut response = rebalance::current_join_response(g, &member_id);
                response.members.clear();
                Answer::Now(response)
            }
        }
        GroupState::Empty | GroupState::Dead => fail(ErrorKind::UnknownMemberId),
    }
}

fn add_member_and_rebalance(
    g: &mut ClassicGroup,
    cx: &mut Ctx,
    token: u64,
    req: JoinRequest,
    member_id: String,
) -> Answer<JoinResponse> {
    // A join phase that started from Empty (any generation, as Kafka's `previousState() ==
    // EMPTY`: a redeployed fleet rejoining a group that went empty too) waits out
    // `group.initial.rebalance.delay.ms` again for each newcomer, up to the rebalance timeout.
    if g.is(GroupState::PreparingRebalance) && g.initial_delay.is_some() {
        g.new_member_added = true;
    }
    g.add(Member {
        member_id: member_id.clone(),
        group_instance_id: req.group_instance_id,
        client_id: req.client_id,
        client_host: req.client_host,
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        session_timeout_ms: req.session_timeout_ms,
        protocol_type: req.protocol_type,
        protocols: req.protocols,
        assignment: Default::default(),
        awaiting_join: Some(token),
        awaiting_sync: None,
        is_new: true,
    });
    rebalance::reschedule_heartbeat(g, &member_id, cx);
    rebalance::maybe_prepare_rebalance_or_complete_join(g, cx);
    Answer::Parked
}

fn update_member_and_rebalance(
    g: &mut ClassicGroup,
    cx: &mut Ctx,
    token: u64,
    req: JoinRequest,
) -> Answer<JoinResponse> {
    if let Some(m) = g.members.get_mut(&req.member_id) {
        if let Some(old) = m.awaiting_join.replace(token) {
            // A retried JoinGroup replaces the one parked before; that one rejoins.
            cx.reply(
                old,
                ParkedReply::Join(JoinResponse::error(
                    ErrorKind::RebalanceInProgress,
                    &req.member_id,
                )),
            );
        }
        m.protocols = req.protocols;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.session_timeout_ms = req.session_timeout_ms;
    }
    rebalance::maybe_prepare_rebalance_or_complete_join(g, cx);
    Answer::Parked
}

/// KIP-345: a static member came back with a new member id. Its old id is fenced; a Stable
/// group whose protocol would not change keeps its assignment with no rebalance.
fn update_static_member_and_rebalance(
    g: &mut ClassicGroup,
    cx: &mut Ctx,
    token: u64,
    req: JoinRequest,
    instance: &str,
    old_member_id: &str,
    new_member_id: String,
) -> Answer<JoinResponse> {
    let current_leader = g.leader_id.clone().unwrap_or_default();
    let Some(old) = g.replace_static_member(instance, old_member_id, &new_member_id) else {
        return Answer::Now(JoinResponse::error(ErrorKind::UnknownMemberId, ""));
    };
    if let Some(t) = old.awaiting_join {
        cx.reply(
            t,
            ParkedReply::Join(JoinResponse::error(
                ErrorKind::FencedInstanceId,
                old_member_id,
            )),
        );
    }
    if let Some(t) = old.awaiting_sync {
        cx.reply(
            t,
            ParkedReply::Sync(super::api::SyncResponse::error(ErrorKind::FencedInstanceId)),
        );
    }
    cx.timers.cancel(&TimerKey::Heartbeat {
        group: g.group_id.clone(),
        member: old_member_id.to_string(),
    });
    if let Some(m) = g.members.get_mut(&new_member_id) {
        m.protocols = req.protocols;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.session_timeout_ms = req.session_timeout_ms;
        // As Kafka's `replaceStaticMember`, the client id and host stay the first join's.
    }
    rebalance::reschedule_heartbeat(g, &new_member_id, cx);
    match g.state {
        GroupState::Stable if g.select_protocol() == g.protocol_name => {
            tracing::info!(group = %g.group_id, instance, member = %new_member_id, "static member rejoined; no rebalance");
            cx.effects.records.push(rebalance::group_record(g));
            if req.supports_skip_assignment {
                // v9+ (KIP-814): a returning leader is told it leads, with the members (so it
                // watches their subscriptions again), and to keep the current assignment.
                let mut response = rebalance::current_join_response(g, &new_member_id);
                response.skip_assignment = g.is_leader(&new_member_id);
                return Answer::Now(response);
            }
            // Before v9 the old leader id is returned so a returning leader does not reassign
            // a Stable group (its assignment would not be propagated).
            Answer::Now(JoinResponse {
                error: ErrorKind::None,
                generation_id: g.generation_id,
                protocol_type: g.protocol_type.clone(),
                protocol_name: g.protocol_name.clone(),
                leader: current_leader,
                member_id: new_member_id,
                members: Vec::new(),
                skip_assignment: false,
            })
        }
        _ => {
            if let Some(m) = g.members.get_mut(&new_member_id) {
                m.awaiting_join = Some(token);
            }
            rebalance::maybe_prepare_rebalance_or_complete_join(g, cx);
            Answer::Parked
        }
    }
}
