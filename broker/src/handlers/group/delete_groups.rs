//! DeleteGroups (key 42), v0-2: deletes empty groups and their committed offsets. Groups this
//! node does not coordinate get NOT_COORDINATOR (or COORDINATOR_LOAD_IN_PROGRESS).

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, ResponseKind};
use protocol_shim::ErrorKind;

use crate::group::Answer;
use crate::handlers::Reply;
use crate::node::Node;

pub fn handle(node: &Arc<Node>, request: DeleteGroupsRequest, _version: i16) -> Reply {
    let called = node.groups.call(node, |c, _, _| {
        Answer::Now(
            request
                .groups_names
                .into_iter()
                .map(|id| {
                    let error = c
                        .legacy_group_error(id.0.as_str())
                        .unwrap_or_else(|| c.delete_group(id.0.as_str()));
                    (id, error)
                })
                .collect::<Vec<_>>(),
        )
    });
    Reply::Later(Box::pin(async move {
        let results = match called.answer {
            Answer::Now(r) => r,
            Answer::Parked => Vec::new(),
        };
        let failure = called.durable.await.err();
        ResponseKind::DeleteGroups(
            DeleteGroupsResponse::default().with_results(
                results
                    .into_iter()
                    .map(|(id, error)| {
                        let error = match (error, failure) {
                            (ErrorKind::None, Some(f)) => f,
                            (e, _) => e,
                        };
                        DeletableGroupResult::default()
                            .with_group_id(id)
                            .with_error_code(error.code())
                    })
                    .collect(),
            ),
        )
    }))
}
