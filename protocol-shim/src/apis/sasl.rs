//! SaslHandshake (key 17) and SaslAuthenticate (key 36) on a listener without SASL: not
//! advertised, but answered as Kafka's `KafkaApis` answers them there, ILLEGAL_SASL_STATE,
//! so a client configured for SASL fails with an error that names the mismatch instead of
//! reconnecting forever to a connection that closes.

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::error::ErrorKind;
use crate::header::RequestPreamble;
use crate::response::encode_response;

/// The whole frame answering a SASL request on a listener without SASL, if the request is one
/// at a version the codec knows (anything else closes the connection, as any unknown API).
pub fn refusal_frame(preamble: &RequestPreamble) -> Option<Bytes> {
    let key = ApiKey::try_from(preamble.api_key).ok()?;
    let versions = key.valid_versions();
    if preamble.api_version < versions.min || preamble.api_version > versions.max {
        return None;
    }
    let body = match key {
        ApiKey::SaslHandshake => ResponseKind::SaslHandshake(
            SaslHandshakeResponse::default().with_error_code(ErrorKind::IllegalSaslState.code()),
        ),
        ApiKey::SaslAuthenticate => ResponseKind::SaslAuthenticate(
            SaslAuthenticateResponse::default()
                .with_error_code(ErrorKind::IllegalSaslState.code())
                .with_error_message(Some(StrBytes::from_static_str(
                    "SaslAuthenticate request received after successful authentication",
                ))),
        ),
        _ => return None,
    };
    encode_response(key, preamble.api_version, preamble.correlation_id, &body).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::protocol::Decodable;

    #[test]
    fn sasl_requests_get_illegal_sasl_state_and_others_nothing() {
        let handshake = RequestPreamble {
            api_key: 17,
            api_version: 1,
            correlation_id: 5,
        };
        let mut frame = refusal_frame(&handshake).unwrap();
        assert_eq!(frame.get_i32() as usize, frame.len());
        assert_eq!(frame.get_i32(), 5, "correlation id, header v0");
        let body = SaslHandshakeResponse::decode(&mut frame, 1).unwrap();
        assert_eq!(body.error_code, 34);
        let authenticate = RequestPreamble {
            api_key: 36,
            api_version: 2,
            correlation_id: 6,
        };
        assert!(refusal_frame(&authenticate).is_some());
        for (api_key, api_version) in [(17, 9), (36, 7), (0, 9), (99, 0)] {
            let p = RequestPreamble {
                api_key,
                api_version,
                correlation_id: 1,
            };
            assert!(refusal_frame(&p).is_none(), "{api_key} v{api_version}");
        }
    }
}
