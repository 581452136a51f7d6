//! LeaveGroup (key 13), v0-5: one member (v0-2) or a batch of members, static ones possibly
//! by instance id only (v3+). A group this node does not coordinate gets a group-level
//! NOT_COORDINATOR (or COORDINATOR_LOAD_IN_PROGRESS).

use std::sync::Arc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse, ResponseKind};
use protocol_shim::ErrorKind;

use super::{opt_string, string};
use crate::group::api::{LeaveResponse, LeavingMember};
use crate::group::Answer;
use crate::handlers::util::str_bytes;
use crate::handlers::Reply;
use crate::node::Node;

pub fn handle(node: &Arc<Node>, request: LeaveGroupRequest, version: i16) -> Reply {
    let group_id = request.group_id.0.to_string();
    let members = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| LeavingMember {
                member_id: string(&m.member_id),
                group_instance_id: opt_string(&m.group_instance_id),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: string(&request.member_id),
            group_instance_id: None,
        }]
    };
    let called = node.groups.call(node, |c, now, _| {
        Answer::Now(match c.group_error(&group_id) {
            Some(error) => LeaveResponse {
                error,
                members: Vec::new(),
            },
            None => c.leave(now, &group_id, members),
        })
    });
    Reply::Later(Box::pin(async move {
        let mut response = match called.answer {
            Answer::Now(r) => r,
            Answer::Parked => LeaveResponse {
                error: ErrorKind::UnknownServerError,
                members: Vec::new(),
            },
        };
        if let Err(e) = called.durable.await {
            response.error = e;
        }
        ResponseKind::LeaveGroup(encode(response, version))
    }))
}

fn encode(r: LeaveResponse, version: i16) -> LeaveGroupResponse {
    if version < 3 {
        let error = if r.error != ErrorKind::None {
            r.error
        } else {
            r.members.first().map_or(ErrorKind::None, |m| m.2)
        };
        return LeaveGroupResponse::default().with_error_code(error.code());
    }
    if r.error != ErrorKind::None {
        return LeaveGroupResponse::default().with_error_code(r.error.code());
    }
    LeaveGroupResponse::default().with_members(
        r.members
            .into_iter()
            .map(|(member_id, instance, error)| {
                MemberResponse::default()
                    .with_member_id(str_bytes(member_id))
                    .with_group_instance_id(instance.map(str_bytes))
                    .with_error_code(error.code())
            })
            .collect(),
    )
}
