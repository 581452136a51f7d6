//! ListGroups (key 16), v0-5, with the states filter (v4+) and types filter (v5+): the groups
//! this node coordinates; COORDINATOR_LOAD_IN_PROGRESS while a partition of them loads.

use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use protocol_shim::ErrorKind;

use super::string;
use crate::group::admin::CLASSIC_GROUP_TYPE;
use crate::handlers::util::str_bytes;
use crate::node::Node;

pub fn handle(node: &Arc<Node>, request: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let states: Vec<String> = if version >= 4 {
        request.states_filter.iter().map(string).collect()
    } else {
        Vec::new()
    };
    let types: Vec<String> = if version >= 5 {
        request.types_filter.iter().map(string).collect()
    } else {
        Vec::new()
    };
    let listed = node.groups.read(|c| {
        if c.any_loading() {
            Err(ErrorKind::CoordinatorLoadInProgress)
        } else {
            Ok(c.list_groups(&states, &types))
        }
    });
    let groups = match listed {
        Ok(groups) => groups,
        Err(kind) => return ListGroupsResponse::default().with_error_code(kind.code()),
    };
    ListGroupsResponse::default().with_groups(
        groups
            .into_iter()
            .map(|g| {
                ListedGroup::default()
                    .with_group_id(GroupId(str_bytes(g.group_id)))
                    .with_protocol_type(str_bytes(g.protocol_type))
                    .with_group_state(str_bytes(g.state))
                    .with_group_type(str_bytes(CLASSIC_GROUP_TYPE))
            })
            .collect(),
    )
}
