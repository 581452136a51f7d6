//! DescribeGroups (key 15), v0-6. An unknown group is reported "Dead" (v0-5) or with
//! GROUP_ID_NOT_FOUND (v6+), as Kafka does. A group this node does not coordinate gets
//! NOT_COORDINATOR (or COORDINATOR_LOAD_IN_PROGRESS) with every other field empty.

use std::sync::Arc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
use kafka_protocol::protocol::StrBytes;

use crate::handlers::util::{str_bytes, OPERATIONS_NOT_REQUESTED};
use crate::node::Node;

/// READ, DELETE and DESCRIBE: all a group ACL can grant (no ACLs yet, so all are allowed).
const GROUP_AUTHORIZED_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

pub fn handle(
    node: &Arc<Node>,
    request: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let operations = if version >= 3 && request.include_authorized_operations {
        GROUP_AUTHORIZED_OPERATIONS
    } else {
        OPERATIONS_NOT_REQUESTED
    };
    let described = node.groups.read(|c| {
        request
            .groups
            .iter()
            .map(|id| match c.legacy_group_error(id.0.as_str()) {
                Some(kind) => crate::group::api::DescribedGroup::error(id.0.as_str(), kind),
                None => c.describe_group(id.0.as_str(), version >= 6),
            })
            .collect::<Vec<_>>()
    });
    DescribeGroupsResponse::default().with_groups(
        described
            .into_iter()
            .map(|g| {
                let message = (version >= 6
                    && g.error == protocol_shim::ErrorKind::GroupIdNotFound)
                    .then(|| StrBytes::from_string(format!("Group {} not found.", g.group_id)));
                DescribedGroup::default()
                    .with_error_code(g.error.code())
                    .with_error_message(message)
                    .with_group_id(GroupId(str_bytes(g.group_id)))
                    .with_group_state(str_bytes(g.state))
                    .with_protocol_type(str_bytes(g.protocol_type))
                    .with_protocol_data(str_bytes(g.protocol_data))
                    .with_authorized_operations(operations)
                    .with_members(
                        g.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(str_bytes(m.member_id))
                                    .with_group_instance_id(if version >= 4 {
                                        m.group_instance_id.map(str_bytes)
                                    } else {
                                        None
                                    })
                                    .with_client_id(str_bytes(m.client_id))
                                    .with_client_host(str_bytes(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
