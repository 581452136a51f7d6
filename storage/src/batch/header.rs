//! Zero-copy view of the 61-byte header of a v2 record batch (Kafka's `DefaultRecordBatch`), and
//! the in-place writers used to stamp offsets, epochs and LogAppendTime.
//!
//! Layout (big-endian): baseOffset i64 @0, batchLength i32 @8 (bytes after this field),
//! partitionLeaderEpoch i32 @12, magic i8 @16, crc u32 @17 (CRC32C of bytes @21..end),
//! attributes i16 @21, lastOffsetDelta i32 @23, baseTimestamp i64 @27, maxTimestamp i64 @35,
//! producerId i64 @43, producerEpoch i16 @51, baseSequence i32 @53, recordsCount i32 @57.
//!
//! Invariant: a `BatchHeader` only exists for a slice of at least `HEADER_BYTES` bytes with magic 2
//! and a batchLength that covers at least the header, so every accessor is total.

use crate::batch::compression::Compression;
use crate::config::TimestampType;
use crate::error::StorageError;

/// Size of the v2 batch header.
pub const HEADER_BYTES: usize = 61;
/// baseOffset + batchLength: the bytes not counted by batchLength.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The only message format this crate stores.
pub const MAGIC_V2: i8 = 2;

pub(crate) const BASE_OFFSET_AT: usize = 0;
pub(crate) const BATCH_LENGTH_AT: usize = 8;
pub(crate) const PARTITION_LEADER_EPOCH_AT: usize = 12;
pub(crate) const MAGIC_AT: usize = 16;
pub(crate) const CRC_AT: usize = 17;
pub(crate) const ATTRIBUTES_AT: usize = 21;
pub(crate) const LAST_OFFSET_DELTA_AT: usize = 23;
pub(crate) const BASE_TIMESTAMP_AT: usize = 27;
pub(crate) const MAX_TIMESTAMP_AT: usize = 35;
pub(crate) const PRODUCER_ID_AT: usize = 43;
pub(crate) const PRODUCER_EPOCH_AT: usize = 51;
pub(crate) const BASE_SEQUENCE_AT: usize = 53;
pub(crate) const RECORDS_COUNT_AT: usize = 57;

pub(crate) const COMPRESSION_MASK: i16 = 0x07;
pub(crate) const TIMESTAMP_TYPE_BIT: i16 = 0x08;
pub(crate) const TRANSACTIONAL_BIT: i16 = 0x10;
pub(crate) const CONTROL_BIT: i16 = 0x20;
/// KIP-534: baseTimestamp holds the delete horizon of the batch's tombstones (set by the cleaner).
pub(crate) const DELETE_HORIZON_BIT: i16 = 0x40;

/// Read-only view of a batch header; the slice may extend to the end of the batch (or beyond).
#[derive(Clone, Copy, Debug)]
pub struct BatchHeader<'a> {
    bytes: &'a [u8],
}

impl<'a> BatchHeader<'a> {
    /// Parses the header at the start of `bytes`. Does not require the whole batch to be present
    /// and does not check the CRC (see [`BatchHeader::compute_crc`]).
    pub fn parse(bytes: &'a [u8]) -> Result<BatchHeader<'a>, StorageError> {
        let magic = bytes
            .get(MAGIC_AT)
            .map(|b| i8::from_be_bytes([*b]))
            .ok_or_else(|| StorageError::corrupt("batch shorter than its magic byte"))?;
        if magic != MAGIC_V2 {
            return Err(StorageError::UnsupportedMagic(magic));
        }
        if bytes.len() < HEADER_BYTES {
            return Err(StorageError::corrupt(format!(
                "batch of {} bytes is shorter than the {HEADER_BYTES}-byte header",
                bytes.len()
            )));
        }
        let header = BatchHeader { bytes };
        let min_length = (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
        if header.batch_length() < min_length {
            return Err(StorageError::corrupt(format!(
                "batchLength {} is below the header size",
                header.batch_length()
            )));
        }
        Ok(header)
    }

    fn field<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.bytes.get(at..at + N) {
            out.copy_from_slice(src);
        }
        out
    }

    pub fn base_offset(&self) -> i64 {
        i64::from_be_bytes(self.field(BASE_OFFSET_AT))
    }
    pub fn batch_length(&self) -> i32 {
        i32::from_be_bytes(self.field(BATCH_LENGTH_AT))
    }
    pub fn partition_leader_epoch(&self) -> i32 {
        i32::from_be_bytes(self.field(PARTITION_LEADER_EPOCH_AT))
    }
    pub fn magic(&self) -> i8 {
        i8::from_be_bytes(self.field(MAGIC_AT))
    }
    pub fn crc(&self) -> u32 {
        u32::from_be_bytes(self.field(CRC_AT))
    }
    pub fn attributes(&self) -> i16 {
        i16::from_be_bytes(self.field(ATTRIBUTES_AT))
    }
    /// The codec id (attribute bits 0-2); ids 5..=7 are an error.
    pub fn compression(&self) -> Result<Compression, StorageError> {
        let id = (self.attributes() & COMPRESSION_MASK) as u8;
        Compression::from_id(id)
            .ok_or_else(|| StorageError::corrupt(format!("unknown compression codec {id}")))
    }
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes() & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & TRANSACTIONAL_BIT != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL_BIT != 0
    }
    /// The cleaner stored a delete horizon in baseTimestamp (KIP-534).
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes() & DELETE_HORIZON_BIT != 0
    }
    /// When the batch's tombstones may be removed, if a cleaner set it.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        self.has_delete_horizon().then(|| self.base_timestamp())
    }
    pub fn last_offset_delta(&self) -> i32 {
        i32::from_be_bytes(self.field(LAST_OFFSET_DELTA_AT))
    }
    pub fn base_timestamp(&self) -> i64 {
        i64::from_be_bytes(self.field(BASE_TIMESTAMP_AT))
    }
    pub fn max_timestamp(&self) -> i64 {
        i64::from_be_bytes(self.field(MAX_TIMESTAMP_AT))
    }
    pub fn producer_id(&self) -> i64 {
        i64::from_be_bytes(self.field(PRODUCER_ID_AT))
    }
    pub fn producer_epoch(&self) -> i16 {
        i16::from_be_bytes(self.field(PRODUCER_EPOCH_AT))
    }
    pub fn base_sequence(&self) -> i32 {
        i32::from_be_bytes(self.field(BASE_SEQUENCE_AT))
    }
    pub fn records_count(&self) -> i32 {
        i32::from_be_bytes(self.field(RECORDS_COUNT_AT))
    }
    /// The offset of the last record: baseOffset + lastOffsetDelta (saturating on nonsense).
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .saturating_add(i64::from(self.last_offset_delta()))
    }
    /// The sequence of the last record, wrapping at `i32::MAX` like Kafka.
    pub fn last_sequence(&self) -> i32 {
        crate::producer_state::add_sequence(self.base_sequence(), self.last_offset_delta())
    }
    /// Size of the whole batch: batchLength + 12.
    pub fn total_size(&self) -> usize {
        usize::try_from(self.batch_length())
            .unwrap_or(0)
            .saturating_add(LOG_OVERHEAD_BYTES)
    }
    /// The whole batch, if the viewed slice holds it.
    pub fn batch_bytes(&self) -> Option<&'a [u8]> {
        self.bytes.get(..self.total_size())
    }
    /// The records section (possibly compressed), if the viewed slice holds the whole batch.
    pub fn records_bytes(&self) -> Option<&'a [u8]> {
        self.bytes.get(HEADER_BYTES..self.total_size())
    }
    /// CRC32C over attributes..end of batch; fails if the slice does not hold the whole batch.
    pub fn compute_crc(&self) -> Result<u32, StorageError> {
        let covered = self
            .bytes
            .get(ATTRIBUTES_AT..self.total_size())
            .ok_or_else(|| {
                StorageError::corrupt(format!(
                    "batch truncated: {} of {} bytes",
                    self.bytes.len(),
                    self.total_size()
                ))
            })?;
        Ok(crc32c::crc32c(covered))
    }
    /// Checks the stored CRC against the computed one.
    pub fn verify_crc(&self) -> Result<(), StorageError> {
        let computed = self.compute_crc()?;
        if computed != self.crc() {
            return Err(StorageError::corrupt(format!(
                "crc mismatch: stored {:#010x}, computed {computed:#010x}",
                self.crc()
            )));
        }
        Ok(())
    }
}

fn write_field(batch: &mut [u8], at: usize, value: &[u8]) -> Result<(), StorageError> {
    let dst = batch
        .get_mut(at..at + value.len())
        .ok_or_else(|| StorageError::corrupt("batch shorter than its header"))?;
    dst.copy_from_slice(value);
    Ok(())
}

/// Stamps baseOffset (not covered by the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> Result<(), StorageError> {
    write_field(batch, BASE_OFFSET_AT, &base_offset.to_be_bytes())
}

/// Stamps partitionLeaderEpoch (not covered by the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> Result<(), StorageError> {
    write_field(batch, PARTITION_LEADER_EPOCH_AT, &epoch.to_be_bytes())
}

/// Recomputes and stores the CRC of a whole batch.
pub fn reset_crc(batch: &mut [u8]) -> Result<(), StorageError> {
    let crc = BatchHeader::parse(batch)?.compute_crc()?;
    write_field(batch, CRC_AT, &crc.to_be_bytes())
}

/// Marks the batch LogAppendTime with `now_ms` as max timestamp and recomputes the CRC.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) -> Result<(), StorageError> {
    let attributes = BatchHeader::parse(batch)?.attributes() | TIMESTAMP_TYPE_BIT;
    write_field(batch, ATTRIBUTES_AT, &attributes.to_be_bytes())?;
    write_field(batch, MAX_TIMESTAMP_AT, &now_ms.to_be_bytes())?;
    reset_crc(batch)
}

/// Marks a batch LogAppendTime with `now_ms` as max timestamp when its header and the rest of
/// its bytes are held apart: only `header` (the first `HEADER_BYTES`) is modified, and the CRC is
/// computed over the patched header bytes after the CRC field continued over `rest`, so the
/// producer's record bytes are neither copied nor changed.
pub fn stamp_log_append_time(
    header: &mut [u8; HEADER_BYTES],
    rest: &[u8],
    now_ms: i64,
) -> Result<(), StorageError> {
    let attributes = BatchHeader::parse(header)?.attributes() | TIMESTAMP_TYPE_BIT;
    write_field(header, ATTRIBUTES_AT, &attributes.to_be_bytes())?;
    write_field(header, MAX_TIMESTAMP_AT, &now_ms.to_be_bytes())?;
    reset_split_crc(header, rest)
}

/// Recomputes the CRC of a batch held as its header and the rest of its bytes: over the header
/// after the CRC field, continued over `rest`.
fn reset_split_crc(header: &mut [u8; HEADER_BYTES], rest: &[u8]) -> Result<(), StorageError> {
    let covered = header
        .get(ATTRIBUTES_AT..)
        .ok_or_else(|| StorageError::corrupt("batch shorter than its header"))?;
    let crc = crc32c::crc32c_append(crc32c::crc32c(covered), rest);
    write_field(header, CRC_AT, &crc.to_be_bytes())
}

/// Clears a producer's LogAppendTime mark from a batch a CreateTime log takes (Kafka's
/// `setMaxTimestamp(CREATE_TIME, ..)`), keeping its max timestamp; only `header` changes and
/// the CRC is computed over it and `rest` as in `stamp_log_append_time`.
pub fn stamp_create_time(header: &mut [u8; HEADER_BYTES], rest: &[u8]) -> Result<(), StorageError> {
    let attributes = BatchHeader::parse(header)?.attributes() & !TIMESTAMP_TYPE_BIT;
    write_field(header, ATTRIBUTES_AT, &attributes.to_be_bytes())?;
    reset_split_crc(header, rest)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::batch::builder::BatchBuilder;

    #[test]
    fn parses_every_field() {
        let mut batch = BatchBuilder::new()
            .producer(42, 3, 7)
            .record(Some(b"k"), Some(b"v"), 1_000)
            .record(None, Some(b"w"), 1_500)
            .build()
            .unwrap();
        set_base_offset(&mut batch, 100).unwrap();
        set_partition_leader_epoch(&mut batch, 9).unwrap();
        let h = BatchHeader::parse(&batch).unwrap();
        assert_eq!(h.base_offset(), 100);
        assert_eq!(h.partition_leader_epoch(), 9);
        assert_eq!(h.magic(), 2);
        assert_eq!(h.total_size(), batch.len());
        assert_eq!(h.batch_length() as usize, batch.len() - 12);
        assert_eq!(h.last_offset_delta(), 1);
        assert_eq!(h.last_offset(), 101);
        assert_eq!(h.base_timestamp(), 1_000);
        assert_eq!(h.max_timestamp(), 1_500);
        assert_eq!(h.producer_id(), 42);
        assert_eq!(h.producer_epoch(), 3);
        assert_eq!(h.base_sequence(), 7);
        assert_eq!(h.last_sequence(), 8);
        assert_eq!(h.records_count(), 2);
        assert_eq!(h.compression().unwrap(), Compression::None);
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        assert!(!h.is_transactional());
        assert!(!h.is_control());
        // Stamping offsets and epochs keeps the CRC valid.
        h.verify_crc().unwrap();
    }

    #[test]
    fn rejects_short_and_foreign_input() {
        assert!(matches!(
            BatchHeader::parse(&[0u8; 10]),
            Err(StorageError::CorruptBatch(_))
        ));
        let mut v1 = vec![0u8; 70];
        v1[MAGIC_AT] = 1;
        assert!(matches!(
            BatchHeader::parse(&v1),
            Err(StorageError::UnsupportedMagic(1))
        ));
        let mut short = vec![0u8; 70];
        short[MAGIC_AT] = 2;
        assert!(matches!(
            BatchHeader::parse(&short[..40]),
            Err(StorageError::CorruptBatch(_))
        ));
        // batchLength 0 is below the header size.
        assert!(matches!(
            BatchHeader::parse(&short),
            Err(StorageError::CorruptBatch(_))
        ));
    }

    #[test]
    fn flipped_byte_fails_crc() {
        let batch = BatchBuilder::new()
            .record(Some(b"key"), Some(b"value"), 5)
            .build()
            .unwrap();
        for at in ATTRIBUTES_AT..batch.len() {
            let mut bad = batch.clone();
            bad[at] ^= 0x01;
            let h = BatchHeader::parse(&bad).unwrap();
            assert!(h.verify_crc().is_err(), "flip at {at} not detected");
        }
    }

    #[test]
    fn log_append_time_restamp_keeps_crc_valid() {
        let mut batch = BatchBuilder::new()
            .record(None, Some(b"v"), 5)
            .build()
            .unwrap();
        set_log_append_time(&mut batch, 99_999).unwrap();
        let h = BatchHeader::parse(&batch).unwrap();
        assert_eq!(h.max_timestamp(), 99_999);
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        h.verify_crc().unwrap();
    }

    #[test]
    fn split_log_append_time_stamp_equals_whole_batch_stamp() {
        for codec in Compression::ALL {
            for records in [1usize, 2, 40] {
                let mut builder = BatchBuilder::new().compression(codec);
                for i in 0..records {
                    builder = builder.record(Some(b"k"), Some(&[i as u8; 300]), 5 + i as i64);
                }
                let mut whole = builder.build().unwrap();
                let (head, rest) = whole.split_at(HEADER_BYTES);
                let mut header: [u8; HEADER_BYTES] = head.try_into().unwrap();
                let rest = rest.to_vec();
                stamp_log_append_time(&mut header, &rest, 77_777).unwrap();
                set_log_append_time(&mut whole, 77_777).unwrap();
                assert_eq!(&header[..], &whole[..HEADER_BYTES], "{codec:?} x{records}");
                assert_eq!(&rest[..], &whole[HEADER_BYTES..], "records untouched");
                BatchHeader::parse(&whole).unwrap().verify_crc().unwrap();
            }
        }
    }
}
