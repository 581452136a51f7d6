//! Validation of batches: Kafka's produce-path rules (`validate_produce`) and the integrity check
//! used for follower appends and recovery (`check_stored_batch`).
//!
//! Invariant: a batch that passes `validate_produce` is exactly one well-formed v2 batch whose
//! bytes can be written as they are once offsets (and maybe LogAppendTime) are stamped.

use crate::batch::compression::Compression;
use crate::batch::header::{BatchHeader, MAGIC_AT};
use crate::batch::records::walk_record_timestamps;
use crate::error::StorageError;

/// Validates the `records` bytes of one produce request for one partition.
pub fn validate_produce(
    records: &[u8],
    max_message_bytes: u32,
) -> Result<BatchHeader<'_>, StorageError> {
    validate_produce_with_span(records, max_message_bytes).map(|(header, _)| header)
}

/// `validate_produce`, also giving an uncompressed batch's smallest and largest record
/// timestamp delta, read in the same walk over its records (`None` for a compressed batch).
pub fn validate_produce_with_span(
    records: &[u8],
    max_message_bytes: u32,
) -> Result<(BatchHeader<'_>, Option<(i64, i64)>), StorageError> {
    if records.is_empty() {
        return Err(StorageError::invalid("produce payload holds no batch"));
    }
    if records.len() <= MAGIC_AT {
        return Err(StorageError::corrupt(
            "produce payload shorter than a batch header",
        ));
    }
    // Kafka's `ProduceRequest.validateRecords`: anything but a v2 batch is INVALID_RECORD.
    let header = BatchHeader::parse(records).map_err(|e| match e {
        StorageError::UnsupportedMagic(magic) => StorageError::invalid(format!(
            "produce requests may only contain record batches with magic version 2, not {magic}"
        )),
        other => other,
    })?;
    let size = records.len();
    if size > usize::try_from(max_message_bytes).unwrap_or(usize::MAX) {
        return Err(StorageError::MessageTooLarge {
            size,
            max: max_message_bytes,
        });
    }
    let total = header.total_size();
    if total > size {
        return Err(StorageError::corrupt(format!(
            "batchLength says {total} bytes, payload has {size}"
        )));
    }
    if total < size {
        return Err(StorageError::invalid(format!(
            "payload holds {} bytes after the first batch (one batch per partition allowed)",
            size - total
        )));
    }
    header.verify_crc()?;
    let codec = header.compression()?;
    if header.is_control() {
        return Err(StorageError::invalid("control batches cannot be produced"));
    }
    let count = header.records_count();
    if count < 1 {
        return Err(StorageError::invalid(format!("recordsCount {count} < 1")));
    }
    if i64::from(header.last_offset_delta()) + 1 != i64::from(count) {
        // Kafka's `LogValidator.validateBatch` ("Inconsistent batch offset range"): INVALID_RECORD.
        return Err(StorageError::invalid(format!(
            "lastOffsetDelta {} does not match recordsCount {count}",
            header.last_offset_delta()
        )));
    }
    if header.producer_id() >= 0 && (header.producer_epoch() < 0 || header.base_sequence() < 0) {
        return Err(StorageError::invalid(
            "idempotent batch with a negative epoch or sequence",
        ));
    }
    let span = if codec == Compression::None {
        let data = header.records_bytes().unwrap_or_default();
        Some(walk_record_timestamps(data, count)?)
    } else {
        None
    };
    Ok((header, span))
}

/// Checks what recovery and followers can check cheaply: whole, magic 2, sane length, CRC, codec.
pub fn check_stored_batch(bytes: &[u8]) -> Result<BatchHeader<'_>, StorageError> {
    let header = BatchHeader::parse(bytes)?;
    if header.total_size() > bytes.len() {
        return Err(StorageError::corrupt("batch truncated"));
    }
    header.verify_crc()?;
    header.compression()?;
    if header.last_offset_delta() < 0 {
        return Err(StorageError::corrupt("negative lastOffsetDelta"));
    }
    Ok(header)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::batch::builder::BatchBuilder;
    use crate::batch::header::{
        reset_crc, ATTRIBUTES_AT, HEADER_BYTES, LAST_OFFSET_DELTA_AT, RECORDS_COUNT_AT,
    };

    fn batch() -> Vec<u8> {
        BatchBuilder::new()
            .record(Some(b"a"), Some(b"1"), 10)
            .record(Some(b"b"), Some(b"2"), 11)
            .build()
            .unwrap()
    }

    fn put(batch: &mut [u8], at: usize, bytes: &[u8]) {
        batch[at..at + bytes.len()].copy_from_slice(bytes);
        reset_crc(batch).unwrap();
    }

    #[test]
    fn accepts_valid_batches_of_every_codec() {
        for codec in Compression::ALL {
            let b = BatchBuilder::new()
                .compression(codec)
                .record(None, Some(b"x"), 1)
                .build()
                .unwrap();
            validate_produce(&b, 1 << 20).unwrap();
        }
    }

    #[test]
    fn rejects_empty_and_multiple_batches() {
        assert!(matches!(
            validate_produce(&[], 1000),
            Err(StorageError::InvalidRecord(_))
        ));
        let mut two = batch();
        two.extend_from_slice(&batch());
        assert!(matches!(
            validate_produce(&two, 1 << 20),
            Err(StorageError::InvalidRecord(_))
        ));
        let mut trailing = batch();
        trailing.push(0);
        assert!(matches!(
            validate_produce(&trailing, 1 << 20),
            Err(StorageError::InvalidRecord(_))
        ));
    }

    #[test]
    fn rejects_truncation_and_bad_length() {
        let b = batch();
        assert!(matches!(
            validate_produce(&b[..b.len() - 1], 1 << 20),
            Err(StorageError::CorruptBatch(_))
        ));
        assert!(matches!(
            validate_produce(&b[..10], 1 << 20),
            Err(StorageError::CorruptBatch(_))
        ));
        let mut bad = b.clone();
        bad[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            validate_produce(&bad, 1 << 20),
            Err(StorageError::CorruptBatch(_))
        ));
    }

    #[test]
    fn rejects_other_magic() {
        let mut b = batch();
        b[MAGIC_AT] = 1;
        assert!(matches!(
            validate_produce(&b, 1 << 20),
            Err(StorageError::InvalidRecord(_))
        ));
    }

    #[test]
    fn rejects_crc_mismatch() {
        let mut b = batch();
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(matches!(
            validate_produce(&b, 1 << 20),
            Err(StorageError::CorruptBatch(_))
        ));
    }

    #[test]
    fn rejects_unknown_codec() {
        let mut b = batch();
        put(&mut b, ATTRIBUTES_AT, &5i16.to_be_bytes());
        assert!(matches!(
            validate_produce(&b, 1 << 20),
            Err(StorageError::CorruptBatch(_))
        ));
    }

    #[test]
    fn rejects_bad_counts() {
        let mut zero = batch();
        put(&mut zero, RECORDS_COUNT_AT, &0i32.to_be_bytes());
        assert!(matches!(
            validate_produce(&zero, 1 << 20),
            Err(StorageError::InvalidRecord(_))
        ));
        let mut mismatch = batch();
        put(&mut mismatch, LAST_OFFSET_DELTA_AT, &5i32.to_be_bytes());
        assert!(matches!(
            validate_produce(&mismatch, 1 << 20),
            Err(StorageError::InvalidRecord(_))
        ));
        // Count and delta agree with each other but not with the records present.
        let mut walk = batch();
        put(&mut walk, LAST_OFFSET_DELTA_AT, &2i32.to_be_bytes());
        put(&mut walk, RECORDS_COUNT_AT, &3i32.to_be_bytes());
        assert!(matches!(
            validate_produce(&walk, 1 << 20),
            Err(StorageError::CorruptBatch(_))
        ));
        let mut fewer = batch();
        put(&mut fewer, LAST_OFFSET_DELTA_AT, &0i32.to_be_bytes());
        put(&mut fewer, RECORDS_COUNT_AT, &1i32.to_be_bytes());
        assert!(matches!(
            validate_produce(&fewer, 1 << 20),
            Err(StorageError::CorruptBatch(_))
        ));
    }

    #[test]
    fn rejects_control_batches() {
        let b = BatchBuilder::new()
            .control(true)
            .record(None, None, 1)
            .build()
            .unwrap();
        assert!(matches!(
            validate_produce(&b, 1 << 20),
            Err(StorageError::InvalidRecord(_))
        ));
    }

    #[test]
    fn rejects_too_large() {
        let b = batch();
        let err = validate_produce(&b, (b.len() - 1) as u32).unwrap_err();
        assert!(matches!(err, StorageError::MessageTooLarge { .. }));
        validate_produce(&b, b.len() as u32).unwrap();
    }

    #[test]
    fn stored_check_accepts_and_rejects() {
        let b = batch();
        check_stored_batch(&b).unwrap();
        let mut bad = b.clone();
        bad[HEADER_BYTES + 2] ^= 1;
        assert!(check_stored_batch(&bad).is_err());
        assert!(check_stored_batch(&b[..b.len() - 3]).is_err());
    }
}
