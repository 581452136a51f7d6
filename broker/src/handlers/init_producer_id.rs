//! InitProducerId (key 22) for idempotent producers: a fresh producer id with epoch 0 (also
//! for a producer that names its old id and epoch, as Kafka does without a transactional id).
//!
//! Transactional ids need the transaction coordinator, which is not built yet; such requests
//! get TRANSACTIONAL_ID_AUTHORIZATION_FAILED so clients fail fast with a clear error.

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use protocol_shim::ErrorKind;

use crate::node::Node;

pub fn handle(
    node: &Arc<Node>,
    request: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    let error = |kind: ErrorKind| {
        InitProducerIdResponse::default()
            .with_error_code(kind.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    // v3+ (KIP-360): a producer re-initialising names its id and epoch, both or neither;
    // Kafka's `handleInitProducerIdRequest` refuses one without the other.
    if (request.producer_id.0 == -1) != (request.producer_epoch == -1) {
        return error(ErrorKind::InvalidRequest);
    }
    if request.transactional_id.is_some() {
        return error(ErrorKind::TransactionalIdAuthorizationFailed);
    }
    match node.producer_ids.allocate() {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "cannot persist producer id block");
            error(ErrorKind::KafkaStorageError)
        }
    }
}
