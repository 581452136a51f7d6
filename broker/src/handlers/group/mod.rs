//! Consumer-group APIs, one file per API: each translates its wire versions to the
//! version-free types of `crate::group::api`, runs the coordinator through
//! `node.groups` (`GroupRuntime`), and answers only once the records it wrote are durable.

pub mod delete_groups;
pub mod describe_groups;
pub mod find_coordinator;
pub mod heartbeat;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod sync_group;

#[cfg(test)]
mod tests;

use kafka_protocol::protocol::StrBytes;

use crate::node::Node;
use protocol_shim::ErrorKind;

pub(crate) fn string(s: &StrBytes) -> String {
    s.as_str().to_string()
}

pub(crate) fn opt_string(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(string)
}

/// UNKNOWN_TOPIC_OR_PARTITION unless `topic` exists and has `partition`.
pub(crate) fn partition_error(node: &Node, topic: &str, partition: i32) -> Option<ErrorKind> {
    match node.topics.get(topic) {
        Some(meta) if partition >= 0 && partition < meta.partitions => None,
        _ => Some(ErrorKind::UnknownTopicOrPartition),
    }
}
