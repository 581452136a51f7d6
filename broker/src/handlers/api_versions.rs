//! ApiVersions (key 18), served from the protocol shim's version table.

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use protocol_shim::apis::api_versions::api_versions_response;
use protocol_shim::ErrorKind;

pub fn handle(_request: &ApiVersionsRequest, _version: i16) -> ApiVersionsResponse {
    api_versions_response(ErrorKind::None)
}
