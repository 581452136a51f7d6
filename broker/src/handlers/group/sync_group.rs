//! SyncGroup (key 14), v0-5. Followers' responses are parked until the leader sends the
//! assignment; every response waits until the group record is durable. NOT_COORDINATOR (or
//! COORDINATOR_LOAD_IN_PROGRESS) for a group this node does not coordinate; from v5 a request
//! without its protocol type and name is INCONSISTENT_GROUP_PROTOCOL.

use std::sync::Arc;

use kafka_protocol::messages::{ResponseKind, SyncGroupRequest, SyncGroupResponse};
use protocol_shim::ErrorKind;

use super::{opt_string, string};
use crate::group::api::{ParkedReply, SyncRequest, SyncResponse};
use crate::group::Answer;
use crate::handlers::util::str_bytes;
use crate::handlers::Reply;
use crate::node::Node;

pub fn handle(node: &Arc<Node>, request: SyncGroupRequest, version: i16) -> Reply {
    if version >= 5 && (request.protocol_type.is_none() || request.protocol_name.is_none()) {
        // From v5 both are mandatory: Kafka's `handleSyncGroupRequest` refuses the request
        // before it asks any coordinator.
        let refused = SyncResponse::error(ErrorKind::InconsistentGroupProtocol);
        return Reply::Now(Box::new(ResponseKind::SyncGroup(encode(refused, version))));
    }
    let req = SyncRequest {
        group_id: request.group_id.0.to_string(),
        generation_id: request.generation_id,
        member_id: string(&request.member_id),
        group_instance_id: if version >= 3 {
            opt_string(&request.group_instance_id)
        } else {
            None
        },
        protocol_type: if version >= 5 {
            opt_string(&request.protocol_type)
        } else {
            None
        },
        protocol_name: if version >= 5 {
            opt_string(&request.protocol_name)
        } else {
            None
        },
        assignments: request
            .assignments
            .into_iter()
            .map(|a| (string(&a.member_id), a.assignment))
            .collect(),
    };
    let called = node
        .groups
        .call(node, |c, now, token| match c.group_error(&req.group_id) {
            Some(kind) => Answer::Now(SyncResponse::error(kind)),
            None => c.sync(now, token, req),
        });
    Reply::Later(Box::pin(async move {
        let response = match (called.answer, called.parked) {
            (Answer::Now(r), _) => match called.durable.await {
                Ok(()) => r,
                Err(e) => SyncResponse::error(e),
            },
            (Answer::Parked, Some(rx)) => match rx.await {
                Ok(ParkedReply::Sync(r)) => r,
                _ => SyncResponse::error(ErrorKind::CoordinatorNotAvailable),
            },
            (Answer::Parked, None) => SyncResponse::error(ErrorKind::CoordinatorNotAvailable),
        };
        ResponseKind::SyncGroup(encode(response, version))
    }))
}

fn encode(r: SyncResponse, version: i16) -> SyncGroupResponse {
    let (protocol_type, protocol_name) = if version >= 5 {
        (
            r.protocol_type.map(str_bytes),
            r.protocol_name.map(str_bytes),
        )
    } else {
        (None, None)
    };
    SyncGroupResponse::default()
        .with_error_code(r.error.code())
        .with_protocol_type(protocol_type)
        .with_protocol_name(protocol_name)
        .with_assignment(r.assignment)
}
