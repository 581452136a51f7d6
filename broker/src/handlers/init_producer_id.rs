//! InitProducerId (key 22) for idempotent producers: a fresh producer id with epoch 0.
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
