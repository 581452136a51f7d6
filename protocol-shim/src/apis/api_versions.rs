//! ApiVersions (key 18): the advertised version table, and Kafka's fallback for a request at
//! a version we do not know: a v0-encoded body with UNSUPPORTED_VERSION and the range of
//! ApiVersions alone (KIP-511, `ApiVersionsRequest.getErrorResponse`), so the client can retry
//! at a version both sides support.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseKind};

use crate::error::ErrorKind;
use crate::response::{encode_response, EncodeError};
use crate::versions::SUPPORTED_APIS;

/// The ApiVersions response body listing every supported API.
pub fn api_versions_response(error: ErrorKind) -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error.code())
        .with_api_keys(api_keys)
}

/// The whole frame answering an ApiVersions request at an unsupported version: header v0 and
/// a v0 body, as Kafka sends it.
pub fn unsupported_version_frame(correlation_id: i32) -> Result<Bytes, EncodeError> {
    let mut body = api_versions_response(ErrorKind::UnsupportedVersion);
    body.api_keys
        .retain(|k| k.api_key == ApiKey::ApiVersions as i16);
    encode_response(
        ApiKey::ApiVersions,
        0,
        correlation_id,
        &ResponseKind::ApiVersions(body),
    )
}

/// Serialises just the (version, api list) pairs; used by tests to compare tables.
pub fn table_bytes() -> Bytes {
    let mut b = BytesMut::new();
    for &(key, min, max) in SUPPORTED_APIS {
        b.put_i16(key as i16);
        b.put_i16(min);
        b.put_i16(max);
    }
    b.freeze()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::protocol::Decodable;

    #[test]
    fn fallback_is_v0_with_error_and_ranges() {
        let mut frame = unsupported_version_frame(7).unwrap();
        let size = frame.get_i32();
        assert_eq!(size as usize, frame.len());
        assert_eq!(frame.get_i32(), 7); // header v0: correlation id only
        let body = ApiVersionsResponse::decode(&mut frame, 0).unwrap();
        assert_eq!(body.error_code, 35);
        assert_eq!(body.api_keys.len(), 1, "ApiVersions' own range only");
        assert!(body
            .api_keys
            .iter()
            .any(|k| k.api_key == 18 && k.min_version == 0 && k.max_version == 4));
        assert_eq!(frame.remaining(), 0);
        assert_eq!(table_bytes().len(), SUPPORTED_APIS.len() * 6);
    }
}
