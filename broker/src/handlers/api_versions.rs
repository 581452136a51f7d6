//! ApiVersions (key 18), served from the protocol shim's version table. From v3 the client
//! names its software (KIP-511); a name or version Kafka would not accept gets Kafka's
//! INVALID_REQUEST with no API list.

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use protocol_shim::apis::api_versions::api_versions_response;
use protocol_shim::ErrorKind;

pub fn handle(request: &ApiVersionsRequest, version: i16) -> ApiVersionsResponse {
    if version >= 3
        && !(valid_client_software(&request.client_software_name)
            && valid_client_software(&request.client_software_version))
    {
        return ApiVersionsResponse::default().with_error_code(ErrorKind::InvalidRequest.code());
    }
    api_versions_response(ErrorKind::None)
}

/// Kafka's `ApiVersionsRequest.isValid` pattern for both fields:
/// `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
fn valid_client_software(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::StrBytes;

    fn request(name: &str, version: &str) -> ApiVersionsRequest {
        ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_string(name.to_string()))
            .with_client_software_version(StrBytes::from_string(version.to_string()))
    }

    #[test]
    fn client_software_is_checked_from_v3_as_kafka_does() {
        for (name, version) in [
            ("librdkafka", "2.12.1"),
            ("apache-kafka-java", "4.0.0"),
            ("confluent-kafka-python", "2.16.0-rdkafka-2.12.1"),
            ("a", "1"),
        ] {
            let r = handle(&request(name, version), 3);
            assert_eq!(r.error_code, 0, "{name} {version}");
            assert!(!r.api_keys.is_empty());
        }
        for (name, version) in [
            ("", "1.0"),
            ("client", ""),
            ("bad name", "1.0"),
            ("-lead", "1.0"),
            ("client", "1.0-"),
            ("client", "1.0+build"),
        ] {
            let r = handle(&request(name, version), 4);
            assert_eq!(r.error_code, 42, "{name:?} {version:?}");
            assert!(r.api_keys.is_empty());
            // Before v3 the fields do not exist and nothing is checked.
            assert_eq!(handle(&request(name, version), 2).error_code, 0);
        }
    }
}
