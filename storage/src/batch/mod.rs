//! Record batches in Kafka's v2 format: the zero-copy header view, validation, record parsing,
//! bounded (de)compression, and a builder.
//!
//! Invariant: stored batches are kept byte-for-byte as produced, except for the fields the broker
//! stamps (baseOffset, partitionLeaderEpoch, and for LogAppendTime attributes/maxTimestamp + CRC).

pub mod builder;
pub mod compression;
pub mod header;
pub mod record_rules;
pub mod records;
pub mod validate;
pub mod varint;

pub use builder::BatchBuilder;
pub use compression::{compress, decompress, Compression};
pub use header::{BatchHeader, HEADER_BYTES, LOG_OVERHEAD_BYTES, MAGIC_V2};
pub use records::{RecordIter, RecordView};
pub use validate::{check_stored_batch, validate_produce};
