//! FindCoordinator (key 10), v0-3 (one key) and v4+ (batched keys): this node coordinates
//! every group.
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

pub fn handle(
    node: &Arc<Node>,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let key_type = if version >= 1 { request.key_type } else { 0 };
    let host = str_bytes(node.config.advertised_host.clone());
    let port = node.config.advertised_port;
    let node_id = BrokerId(node.meta.node_id);
    let error = key_type_error(key_type);
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| match error {
                None => Coordinator::default()
                    .with_key(key)
                    .with_node_id(node_id)
                    .with_host(host.clone())
                    .with_port(port),
                Some((kind, message)) => Coordinator::default()
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
    match error {
        None => FindCoordinatorResponse::default()
            .with_node_id(node_id)
            .with_host(host)
            .with_port(port),
        Some((kind, message)) => FindCoordinatorResponse::default()
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
