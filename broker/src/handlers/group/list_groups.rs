//! ListGroups (key 16), v0-5, with the states filter (v4+) and types filter (v5+).

use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

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
    let groups = node.groups.read(|c| c.list_groups(&states, &types));
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
