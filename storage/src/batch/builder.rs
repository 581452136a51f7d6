//! `BatchBuilder`: builds valid v2 batches, for tests here and in the broker.
//!
//! Invariant: `build()` output passes `validate_produce` (unless control/transactional flags or
//! odd producer fields were chosen on purpose) and carries a correct CRC. Base offset is 0.

use crate::batch::compression::{compress, Compression};
use crate::batch::header::{reset_crc, HEADER_BYTES, LOG_OVERHEAD_BYTES, MAGIC_V2};
use crate::batch::varint::write_varlong;
use crate::config::TimestampType;
use crate::error::StorageError;

/// One record to put into a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuilderRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp_ms: i64,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Builds one v2 batch.
#[derive(Clone, Debug)]
pub struct BatchBuilder {
    records: Vec<BuilderRecord>,
    compression: Compression,
    xerial_snappy: bool,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    base_offset: i64,
    transactional: bool,
    control: bool,
    timestamp_type: TimestampType,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            write_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        None => write_varlong(out, -1),
    }
}

impl BatchBuilder {
    /// An empty, uncompressed, non-idempotent batch (producerId -1).
    pub fn new() -> Self {
        BatchBuilder {
            records: Vec::new(),
            compression: Compression::None,
            xerial_snappy: false,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            base_offset: 0,
            transactional: false,
            control: false,
            timestamp_type: TimestampType::CreateTime,
        }
    }
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }
    /// Use snappy-java's xerial framing instead of a raw snappy block.
    pub fn xerial_snappy(mut self, xerial: bool) -> Self {
        self.xerial_snappy = xerial;
        self
    }
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }
    pub fn base_offset(mut self, base_offset: i64) -> Self {
        self.base_offset = base_offset;
        self
    }
    pub fn transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }
    pub fn control(mut self, control: bool) -> Self {
        self.control = control;
        self
    }
    pub fn timestamp_type(mut self, timestamp_type: TimestampType) -> Self {
        self.timestamp_type = timestamp_type;
        self
    }
    pub fn record(self, key: Option<&[u8]>, value: Option<&[u8]>, timestamp_ms: i64) -> Self {
        self.record_with_headers(key, value, timestamp_ms, &[])
    }
    pub fn record_with_headers(
        mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp_ms: i64,
        headers: &[(&[u8], Option<&[u8]>)],
    ) -> Self {
        self.records.push(BuilderRecord {
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            timestamp_ms,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                .collect(),
        });
        self
    }

    /// Encodes the batch. Fails only on an empty batch or a codec error.
    pub fn build(&self) -> Result<Vec<u8>, StorageError> {
        let first = self
            .records
            .first()
            .ok_or_else(|| StorageError::invalid("a batch needs at least one record"))?;
        let base_timestamp = first.timestamp_ms;
        let max_timestamp = self
            .records
            .iter()
            .map(|r| r.timestamp_ms)
            .max()
            .unwrap_or(base_timestamp);
        let mut records = Vec::new();
        let mut body = Vec::new();
        for (i, record) in self.records.iter().enumerate() {
            body.clear();
            body.push(0u8);
            write_varlong(&mut body, record.timestamp_ms.wrapping_sub(base_timestamp));
            write_varlong(&mut body, i as i64);
            put_bytes(&mut body, record.key.as_deref());
            put_bytes(&mut body, record.value.as_deref());
            write_varlong(&mut body, record.headers.len() as i64);
            for (k, v) in &record.headers {
                put_bytes(&mut body, Some(k));
                put_bytes(&mut body, v.as_deref());
            }
            write_varlong(&mut records, body.len() as i64);
            records.extend_from_slice(&body);
        }
        let records = if self.compression == Compression::Snappy && self.xerial_snappy {
            crate::batch::compression::compress_snappy_xerial(&records)?
        } else {
            compress(self.compression, &records)?
        };
        let total = HEADER_BYTES + records.len();
        let batch_length = i32::try_from(total - LOG_OVERHEAD_BYTES)
            .map_err(|_| StorageError::invalid("batch too large"))?;
        let count = i32::try_from(self.records.len())
            .map_err(|_| StorageError::invalid("too many records"))?;
        let mut attributes = i16::from(self.compression.id());
        if self.timestamp_type == TimestampType::LogAppendTime {
            attributes |= 0x08;
        }
        if self.transactional {
            attributes |= 0x10;
        }
        if self.control {
            attributes |= 0x20;
        }
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&self.base_offset.to_be_bytes());
        out.extend_from_slice(&batch_length.to_be_bytes());
        out.extend_from_slice(&(-1i32).to_be_bytes());
        out.extend_from_slice(&MAGIC_V2.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&attributes.to_be_bytes());
        out.extend_from_slice(&(count - 1).to_be_bytes());
        out.extend_from_slice(&base_timestamp.to_be_bytes());
        out.extend_from_slice(&max_timestamp.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&records);
        reset_crc(&mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::batch::header::BatchHeader;
    use crate::batch::records::RecordIter;

    #[test]
    fn records_round_trip_through_every_codec() {
        for codec in Compression::ALL {
            let batch = BatchBuilder::new()
                .compression(codec)
                .record_with_headers(
                    Some(b"k1"),
                    None,
                    100,
                    &[(b"h1", Some(b"v1")), (b"h1", None)],
                )
                .record(None, Some(b"value"), 90)
                .build()
                .unwrap();
            let h = BatchHeader::parse(&batch).unwrap();
            h.verify_crc().unwrap();
            assert_eq!(
                (h.base_timestamp(), h.max_timestamp(), h.records_count()),
                (100, 100, 2)
            );
            let data =
                crate::batch::decompress(codec, h.records_bytes().unwrap(), 1 << 20).unwrap();
            let records: Vec<_> = RecordIter::new(&data, 2).collect::<Result<_, _>>().unwrap();
            assert_eq!(records[0].key, Some(&b"k1"[..]));
            assert_eq!(records[0].value, None);
            assert_eq!(
                records[0].headers,
                vec![(&b"h1"[..], Some(&b"v1"[..])), (&b"h1"[..], None)]
            );
            assert_eq!(
                (records[1].offset_delta, records[1].timestamp_delta),
                (1, -10)
            );
            assert_eq!(records[1].value, Some(&b"value"[..]));
            // A wrong count is detected.
            assert!(RecordIter::new(&data, 1).any(|r| r.is_err()));
            assert!(RecordIter::new(&data, 3).any(|r| r.is_err()));
        }
        assert!(BatchBuilder::new().build().is_err());
    }
}
