//! InitProducerId (key 22) for idempotent producers: a fresh producer id with epoch 0 (also
//! for a producer that names its old id and epoch, as Kafka does without a transactional id).
//!
//! Transactional ids need the transaction coordinator, which is not built yet; such requests
//! get TRANSACTIONAL_ID_AUTHORIZATION_FAILED so clients fail fast with a clear error. An empty
//! transactional id is INVALID_REQUEST, as Kafka's `TransactionCoordinator` answers it.

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
    match request.transactional_id.as_ref().map(|t| t.as_str()) {
        Some("") => return error(ErrorKind::InvalidRequest),
        Some(_) => return error(ErrorKind::TransactionalIdAuthorizationFailed),
        None => {}
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kafka_protocol::messages::TransactionalId;

    use super::*;

    #[tokio::test]
    async fn ids_are_fresh_and_transactional_ids_are_refused() {
        let (_dir, node) = crate::handlers::fetch::node_with(&[]);
        let ask = |txn: Option<&str>, id: i64, epoch: i16| {
            let request = InitProducerIdRequest::default()
                .with_transactional_id(txn.map(|t| TransactionalId(t.to_string().into())))
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch);
            let r = handle(&node, request, 4);
            (r.error_code, r.producer_id.0, r.producer_epoch)
        };
        let (code, first, epoch) = ask(None, -1, -1);
        assert_eq!((code, epoch), (0, 0));
        // KIP-360: a producer naming its id and epoch gets a fresh id without a
        // transactional id.
        let (code, second, _) = ask(None, first, 0);
        assert_eq!(code, 0);
        assert_ne!(first, second);
        assert_eq!(ask(None, first, -1).0, ErrorKind::InvalidRequest.code());
        assert_eq!(ask(Some(""), -1, -1).0, ErrorKind::InvalidRequest.code());
        assert_eq!(
            ask(Some("t"), -1, -1).0,
            ErrorKind::TransactionalIdAuthorizationFailed.code()
        );
    }
}
