//! Decoding one whole request frame into the request header and a typed body.
//!
//! The preamble is read first so that the outcome is always one of: a decoded request, an
//! unknown API, an unsupported version (with the correlation id to answer ApiVersions with),
//! or a malformed frame. The codec is only run on versions in `versions::SUPPORTED_APIS`.
//! The frame size was already bounded by `frame::FrameDecoder`, and the codec reserves at most
//! one array element per byte left in the frame (the vendored kafka-protocol's fix, see
//! `protocol-shim/vendor/README.md`), so a forged array count cannot make it allocate more.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use crate::header::RequestPreamble;
use crate::versions::supported_range;

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub version: i16,
    pub body: RequestKind,
    /// Size of the frame on the wire, for metrics and limits.
    pub frame_bytes: usize,
}

/// Why a frame is not a request Sluice can serve.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {0} bytes is shorter than a request header")]
    TooShort(usize),
    #[error("unknown api key {}", .0.api_key)]
    UnknownApi(RequestPreamble),
    #[error("unsupported version {} of api key {}", .0.api_version, .0.api_key)]
    UnsupportedVersion(RequestPreamble),
    #[error("malformed request (api key {}, version {}): {reason}", .preamble.api_key, .preamble.api_version)]
    Malformed {
        preamble: RequestPreamble,
        reason: String,
    },
}

/// Decodes a frame (without its size prefix).
pub fn decode_request(frame: Bytes) -> Result<Request, DecodeError> {
    let frame_bytes = frame.len();
    let preamble = RequestPreamble::parse(&frame).ok_or(DecodeError::TooShort(frame_bytes))?;
    let api_key =
        ApiKey::try_from(preamble.api_key).map_err(|()| DecodeError::UnknownApi(preamble))?;
    let Some((min, max)) = supported_range(preamble.api_key) else {
        return Err(DecodeError::UnknownApi(preamble));
    };
    if preamble.api_version < min || preamble.api_version > max {
        return Err(DecodeError::UnsupportedVersion(preamble));
    }
    let version = preamble.api_version;
    let mut buf = frame;
    let malformed = |reason: String| DecodeError::Malformed { preamble, reason };
    let header = RequestHeader::decode(&mut buf, api_key.request_header_version(version))
        .map_err(|e| malformed(e.to_string()))?;
    let body =
        RequestKind::decode(api_key, &mut buf, version).map_err(|e| malformed(e.to_string()))?;
    // Trailing bytes are ignored, as Kafka ignores them: librdkafka 2.x pads the topic count
    // of an all-topics Metadata v9+ request with three zero bytes it never finalizes.
    Ok(Request {
        header,
        api_key,
        version,
        body,
        frame_bytes,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn frame<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_supported_request() {
        let req = decode_request(frame(ApiKey::Metadata, 12, &MetadataRequest::default())).unwrap();
        assert_eq!(req.api_key, ApiKey::Metadata);
        assert_eq!(req.header.correlation_id, 42);
        assert!(matches!(req.body, RequestKind::Metadata(_)));
    }

    #[test]
    fn unsupported_and_unknown() {
        let f = frame(ApiKey::ApiVersions, 4, &ApiVersionsRequest::default());
        let mut raw = f.to_vec();
        raw[3] = 99; // version 99
        match decode_request(Bytes::from(raw)) {
            Err(DecodeError::UnsupportedVersion(p)) => assert_eq!(p.correlation_id, 42),
            other => panic!("{other:?}"),
        }
        let raw = vec![0x27, 0x0f, 0, 0, 0, 0, 0, 1];
        assert!(matches!(
            decode_request(Bytes::from(raw)),
            Err(DecodeError::UnknownApi(_))
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 3])),
            Err(DecodeError::TooShort(2))
        ));
    }

    #[test]
    fn truncated_body_is_malformed() {
        let f = frame(ApiKey::Metadata, 12, &MetadataRequest::default());
        let cut = f.slice(..f.len() - 1);
        assert!(matches!(
            decode_request(cut),
            Err(DecodeError::Malformed { .. })
        ));
    }
}

/// Array counts far beyond the frame: decoding fails as malformed, without reserving room for
/// the count (the published kafka-protocol 0.18 asked the allocator for ~150 GB here, and the
/// process aborted).
#[cfg(test)]
mod forged_counts {
    use super::*;

    #[test]
    fn a_huge_array_count_is_malformed_not_an_allocation() {
        // Metadata v0: header v1 (key 3, version 0, correlation id, null client id), then the
        // topic array's INT32 count 2^31 - 1 and nothing more.
        let mut v0 = vec![0u8, 3, 0, 0, 0, 0, 0, 7, 0xff, 0xff];
        v0.extend_from_slice(&i32::MAX.to_be_bytes());
        // Metadata v12: header v2 (no tagged fields), then a compact array of 2^32 - 2.
        let v12 = vec![
            0u8, 3, 0, 12, 0, 0, 0, 8, 0xff, 0xff, 0, 0xff, 0xff, 0xff, 0xff, 0x0f,
        ];
        for frame in [v0, v12] {
            assert!(matches!(
                decode_request(Bytes::from(frame)),
                Err(DecodeError::Malformed { .. })
            ));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod captured {
    use super::*;

    /// Metadata v13 as librdkafka 2.12 sends it (all topics, with 3 padding bytes after the
    /// null topic count), captured on the wire.
    #[test]
    fn librdkafka_metadata_v13() {
        let hex = "0003000d00000003000772646b61666b610000000000010000";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let r = decode_request(Bytes::from(bytes)).unwrap();
        match r.body {
            RequestKind::Metadata(m) => assert!(m.topics.is_none(), "all topics"),
            other => panic!("{other:?}"),
        }
    }
}
