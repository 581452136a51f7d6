//! FindCoordinator (key 10), v0-3 (one key) and v4+ (batched keys): a group's coordinator is
//! the leader of its `__consumer_offsets` partition (`Node::coordinator_endpoint`);
//! COORDINATOR_NOT_AVAILABLE while that partition has none.
//!
//! Transaction coordinators (key type 1) are not built yet: such keys get
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, the same fatal, non-retriable answer InitProducerId
//! gives transactional ids, so transactional clients fail fast instead of retrying forever.
//! Other key types (share groups) get INVALID_REQUEST, as from Kafka without share groups.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use protocol_shim::ErrorKind;

use crate::handlers::util::str_bytes;
use crate::node::Node;

const GROUP_KEY_TYPE: i8 = 0;
const TRANSACTION_KEY_TYPE: i8 = 1;

/// (error, message) for a key type this node cannot serve.
fn key_type_error(key_type: i8) -> Option<(ErrorKind, &'static str)> {
    match key_type {
        GROUP_KEY_TYPE => None,
        TRANSACTION_KEY_TYPE => Some((
            ErrorKind::TransactionalIdAuthorizationFailed,
            "Transactions are not supported by Sluice yet.",
        )),
        _ => Some((
            ErrorKind::InvalidRequest,
            "Unsupported coordinator key type.",
        )),
    }
}

/// Kafka's `Errors.COORDINATOR_NOT_AVAILABLE.message()`.
const NOT_AVAILABLE_MESSAGE: &str = "The coordinator is not available.";

/// The coordinator of group `key`: the leader of its `__consumer_offsets` partition, as
/// (node id, host, port), or the error to answer.
fn locate(
    node: &Node,
    key: &str,
    key_type: i8,
) -> Result<(i32, String, i32), (ErrorKind, &'static str)> {
    if let Some(error) = key_type_error(key_type) {
        return Err(error);
    }
    let partition = node.groups.partition_for(key);
    node.coordinator_endpoint(partition)
        .ok_or((ErrorKind::CoordinatorNotAvailable, NOT_AVAILABLE_MESSAGE))
}

pub fn handle(
    node: &Arc<Node>,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let key_type = if version >= 1 { request.key_type } else { 0 };
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| match locate(node, key.as_str(), key_type) {
                Ok((node_id, host, port)) => Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(node_id))
                    .with_host(str_bytes(host))
                    .with_port(port),
                Err((kind, message)) => Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(-1))
                    .with_host(StrBytes::default())
                    .with_port(-1)
                    .with_error_code(kind.code())
                    .with_error_message(Some(StrBytes::from_static_str(message))),
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match locate(node, request.key.as_str(), key_type) {
        Ok((node_id, host, port)) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(node_id))
            .with_host(str_bytes(host))
            .with_port(port),
        Err((kind, message)) => FindCoordinatorResponse::default()
            .with_error_code(kind.code())
            .with_error_message(if version >= 1 {
                Some(StrBytes::from_static_str(message))
            } else {
                None
            })
            .with_node_id(BrokerId(-1))
            .with_host(StrBytes::default())
            .with_port(-1),
    }
}
