//! Record batches (v2, "magic 2") for raw-socket tests and segment checks.
//!
//! Building: [`build_batch`] encodes uncompressed key/value records with
//! `kafka-protocol`'s encoder, so the CRC is right; tests then corrupt the
//! bytes on purpose. Reading: [`parse_batch_headers`] walks the fixed
//! 61-byte headers of a segment file or a fetch response without decoding
//! records, which is all the durability tests need to know which offsets a
//! file holds. Layout (from Kafka's `DefaultRecordBatch`): baseOffset i64 @0,
//! batchLength i32 @8 (bytes after this field), partitionLeaderEpoch i32 @12,
//! magic i8 @16, crc u32 @17 (CRC-32C of bytes 21..), attributes i16 @21,
//! lastOffsetDelta i32 @23, then timestamps, producer fields, record count.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};

/// Size of the fixed v2 batch header.
pub const BATCH_HEADER_BYTES: usize = 61;

/// Bytes before the `batchLength` field's coverage begins (baseOffset + batchLength).
pub const BATCH_LENGTH_PREFIX_BYTES: usize = 12;

/// Builds one uncompressed v2 batch of `(key, value)` records with base
/// offset 0 and the given first timestamp (one millisecond apart).
pub fn build_batch(records: &[(&[u8], &[u8])], first_timestamp_ms: i64) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever `offset - sequence`
            // changes; this keeps all records in one batch whose base
            // sequence is NO_SEQUENCE (-1), i.e. a non-idempotent batch.
            sequence: NO_SEQUENCE + i as i32,
            timestamp: first_timestamp_ms + i as i64,
            key: Some(Bytes::copy_from_slice(key)),
            value: Some(Bytes::copy_from_slice(value)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    if let Err(e) = RecordBatchEncoder::encode(&mut buf, records.iter(), &options) {
        panic!("cannot encode a record batch: {e}");
    }
    buf.freeze()
}

/// Decodes every record in `data` (fetch response record bytes) as
/// `(offset, key, value)`. Only for data the test itself produced,
/// uncompressed.
pub fn decode_records(data: &Bytes) -> Vec<(i64, Option<Bytes>, Option<Bytes>)> {
    let mut out = Vec::new();
    // A fetch response may end with a partial batch; the parser skips it.
    for header in parse_batch_headers(data) {
        let mut one = data.slice(header.position..header.end());
        match RecordBatchDecoder::decode(&mut one) {
            Ok(set) => out.extend(set.records.into_iter().map(|r| (r.offset, r.key, r.value))),
            Err(e) => panic!("cannot decode a fetched batch: {e}"),
        }
    }
    out
}

/// The header facts of one batch found in a byte buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Byte position of the batch in the buffer.
    pub position: usize,
    /// Whole batch size in bytes (batchLength + 12).
    pub size: usize,
    /// First offset of the batch.
    pub base_offset: i64,
    /// Last offset of the batch (baseOffset + lastOffsetDelta).
    pub last_offset: i64,
}

impl BatchHeader {
    /// Byte position just past this batch.
    pub fn end(&self) -> usize {
        self.position + self.size
    }
}

/// Reads a big-endian integer field; `None` if the buffer is too short.
fn be_bytes<const N: usize>(data: &[u8], at: usize) -> Option<[u8; N]> {
    data.get(at..at + N)?.try_into().ok()
}

/// Walks the batches in `data` and returns the header facts of every batch
/// that is wholly inside it. Stops at the first partial or nonsensical batch.
pub fn parse_batch_headers(data: &[u8]) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut position = 0usize;
    while let Some(base) = be_bytes::<8>(data, position).map(i64::from_be_bytes) {
        let Some(length) = be_bytes::<4>(data, position + 8).map(i32::from_be_bytes) else {
            break;
        };
        let Some(delta) = be_bytes::<4>(data, position + 23).map(i32::from_be_bytes) else {
            break;
        };
        let Ok(length) = usize::try_from(length) else {
            break;
        };
        let size = length + BATCH_LENGTH_PREFIX_BYTES;
        if size < BATCH_HEADER_BYTES || position + size > data.len() {
            break;
        }
        out.push(BatchHeader {
            position,
            size,
            base_offset: base,
            last_offset: base + i64::from(delta),
        });
        position += size;
    }
    out
}
