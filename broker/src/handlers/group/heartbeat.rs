//! Heartbeat (key 12), v0-4: keeps a member's session alive; REBALANCE_IN_PROGRESS tells it
//! to rejoin. NOT_COORDINATOR for a group this node does not coordinate; while the group's
//! partition is still loading, no error (as Kafka).

use std::sync::Arc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use protocol_shim::ErrorKind;

use super::{opt_string, string};
use crate::group::api;
use crate::group::Answer;
use crate::node::Node;

pub fn handle(node: &Arc<Node>, request: HeartbeatRequest, version: i16) -> HeartbeatResponse {
    let req = api::HeartbeatRequest {
        group_id: request.group_id.0.to_string(),
        generation_id: request.generation_id,
        member_id: string(&request.member_id),
        group_instance_id: if version >= 3 {
            opt_string(&request.group_instance_id)
        } else {
            None
        },
    };
    let called = node.groups.call(node, |c, now, _| {
        Answer::Now(match c.group_error(&req.group_id) {
            // The group's partition is still loading: answer as if all were well, as Kafka's
            // `GroupCoordinatorService.heartbeat` does ("blindly respond"); the member learns
            // of any change at its next heartbeat.
            Some(ErrorKind::CoordinatorLoadInProgress) => ErrorKind::None,
            Some(kind) => kind,
            None => c.heartbeat(now, req),
        })
    });
    let error = match called.answer {
        Answer::Now(e) => e,
        Answer::Parked => ErrorKind::UnknownServerError,
    };
    HeartbeatResponse::default().with_error_code(error.code())
}
