//! JoinGroup (key 11), v0-9. The response is parked until the group's join phase ends (or
//! given at once for errors, MEMBER_ID_REQUIRED and members told the current generation).
//! A group this node does not coordinate gets NOT_COORDINATOR (COORDINATOR_LOAD_IN_PROGRESS
//! while its `__consumer_offsets` partition loads).

use std::sync::Arc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, ResponseKind};
use protocol_shim::ErrorKind;

use super::{opt_string, string};
use crate::group::api::{JoinRequest, JoinResponse, ParkedReply};
use crate::group::Answer;
use crate::handlers::util::str_bytes;
use crate::handlers::Reply;
use crate::node::Node;

pub fn handle(
    node: &Arc<Node>,
    request: JoinGroupRequest,
    version: i16,
    client_id: &str,
    peer: std::net::SocketAddr,
) -> Reply {
    let group_instance_id = if version >= 5 {
        opt_string(&request.group_instance_id)
    } else {
        None
    };
    let member_id = string(&request.member_id);
    let req = JoinRequest {
        group_id: request.group_id.0.to_string(),
        member_id: member_id.clone(),
        require_known_member_id: version >= 4 && group_instance_id.is_none(),
        supports_skip_assignment: version >= 9,
        group_instance_id,
        client_id: client_id.to_string(),
        // Kafka reports the member's host as InetAddress.toString(): "/1.2.3.4".
        client_host: format!("/{}", peer.ip()),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: string(&request.protocol_type),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (string(&p.name), p.metadata))
            .collect(),
    };
    let called = node
        .groups
        .call(node, |c, now, token| match c.group_error(&req.group_id) {
            Some(kind) => Answer::Now(JoinResponse::error(kind, req.member_id)),
            None => c.join(now, token, req),
        });
    Reply::Later(Box::pin(async move {
        let response = match (called.answer, called.parked) {
            (Answer::Now(r), _) => match called.durable.await {
                Ok(()) => r,
                Err(e) => JoinResponse::error(e, r.member_id),
            },
            (Answer::Parked, Some(rx)) => match rx.await {
                Ok(ParkedReply::Join(r)) => r,
                _ => JoinResponse::error(ErrorKind::CoordinatorNotAvailable, member_id),
            },
            (Answer::Parked, None) => {
                JoinResponse::error(ErrorKind::CoordinatorNotAvailable, member_id)
            }
        };
        ResponseKind::JoinGroup(encode(response, version))
    }))
}

fn encode(r: JoinResponse, version: i16) -> JoinGroupResponse {
    // Before v7 the protocol name is not nullable; Kafka sends "" instead of null.
    let protocol_name = match r.protocol_name {
        None if version < 7 => Some(String::new()),
        other => other,
    };
    JoinGroupResponse::default()
        .with_error_code(r.error.code())
        .with_generation_id(r.generation_id)
        .with_protocol_type(r.protocol_type.map(str_bytes))
        .with_protocol_name(protocol_name.map(str_bytes))
        .with_leader(str_bytes(r.leader))
        .with_skip_assignment(version >= 9 && r.skip_assignment)
        .with_member_id(str_bytes(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(m.member_id))
                        .with_group_instance_id(if version >= 5 {
                            m.group_instance_id.map(str_bytes)
                        } else {
                            None
                        })
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}
