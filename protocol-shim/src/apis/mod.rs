//! APIs answered entirely within the protocol layer.

pub mod api_versions;
pub mod sasl;
