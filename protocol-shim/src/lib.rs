//! Sluice's Kafka wire protocol shim: bytes in, bytes out.
//!
//! This crate owns framing (`frame`), the request preamble and header (`header`), the one
//! table of API versions Sluice advertises (`versions`), decoding a whole request frame into
//! `kafka-protocol`'s message types (`request`), encoding responses (`response`), the
//! ApiVersions API (`apis::api_versions`), Fetch responses encoded straight from the broker's
//! answer without copying their records (`fetch_answer`), and the single mapping from broker
//! error kinds to Kafka error codes (`error`). It never touches files or sockets.

pub mod apis;
pub mod error;
pub mod fetch_answer;
pub mod frame;
pub mod header;
pub mod request;
pub mod response;
pub mod versions;

pub use error::ErrorKind;
pub use frame::{FrameDecoder, FrameError};
pub use header::RequestPreamble;
pub use request::{decode_request, DecodeError, Request};
pub use response::encode_response;
pub use versions::{supported_range, SUPPORTED_APIS};

/// Re-export of the codec crate so the broker uses exactly the same version.
pub use kafka_protocol;
