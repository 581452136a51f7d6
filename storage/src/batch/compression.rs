//! Batch compression codecs and bounded decompression.
//!
//! Invariant: decompression never allocates more than `max_bytes` (+ a small read buffer) no
//! matter what the input claims; exceeding the limit is `DecompressionLimit`, malformed input is
//! `CorruptBatch`. Snappy accepts both raw snappy blocks and xerial snappy-java framing.

use std::io::{Read, Write};

use crate::error::StorageError;

/// Codec of a batch (attribute bits 0-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// snappy-java's stream magic; followed by 8 bytes of version info, then length-prefixed blocks.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_BYTES: usize = 16;

impl Compression {
    /// All codecs, for tests and iteration.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    pub fn from_id(id: u8) -> Option<Compression> {
        match id {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }

    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

fn read_bounded<R: Read>(
    codec: Compression,
    reader: R,
    max_bytes: usize,
) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::new();
    let limit = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    reader.take(limit).read_to_end(&mut out).map_err(|e| {
        StorageError::corrupt(format!("{} decompression failed: {e}", codec.name()))
    })?;
    if out.len() > max_bytes {
        return Err(StorageError::DecompressionLimit { max_bytes });
    }
    Ok(out)
}

fn snappy_block(block: &[u8], out: &mut Vec<u8>, max_bytes: usize) -> Result<(), StorageError> {
    let len = snap::raw::decompress_len(block)
        .map_err(|e| StorageError::corrupt(format!("snappy decompression failed: {e}")))?;
    if out.len().saturating_add(len) > max_bytes {
        return Err(StorageError::DecompressionLimit { max_bytes });
    }
    let start = out.len();
    out.resize(start + len, 0);
    let dst = out.get_mut(start..).unwrap_or_default();
    snap::raw::Decoder::new()
        .decompress(block, dst)
        .map_err(|e| StorageError::corrupt(format!("snappy decompression failed: {e}")))?;
    Ok(())
}

fn snappy_decompress(data: &[u8], max_bytes: usize) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::new();
    if data.get(..XERIAL_MAGIC.len()) != Some(&XERIAL_MAGIC[..]) {
        snappy_block(data, &mut out, max_bytes)?;
        return Ok(out);
    }
    let mut pos = XERIAL_HEADER_BYTES;
    if data.len() < pos {
        return Err(StorageError::corrupt("truncated xerial snappy header"));
    }
    while pos < data.len() {
        let len_bytes: [u8; 4] = data
            .get(pos..pos + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| StorageError::corrupt("truncated xerial snappy block length"))?;
        let len = usize::try_from(i32::from_be_bytes(len_bytes))
            .map_err(|_| StorageError::corrupt("negative xerial snappy block length"))?;
        let start = pos + 4;
        let end = start
            .checked_add(len)
            .ok_or_else(|| StorageError::corrupt("xerial block length overflows"))?;
        let block = data
            .get(start..end)
            .ok_or_else(|| StorageError::corrupt("truncated xerial snappy block"))?;
        snappy_block(block, &mut out, max_bytes)?;
        pos = end;
    }
    Ok(out)
}

/// Decompresses the records section of a batch, refusing to produce more than `max_bytes`.
pub fn decompress(
    codec: Compression,
    data: &[u8],
    max_bytes: usize,
) -> Result<Vec<u8>, StorageError> {
    match codec {
        Compression::None => {
            if data.len() > max_bytes {
                return Err(StorageError::DecompressionLimit { max_bytes });
            }
            Ok(data.to_vec())
        }
        Compression::Gzip => {
            read_bounded(codec, flate2::read::MultiGzDecoder::new(data), max_bytes)
        }
        Compression::Snappy => snappy_decompress(data, max_bytes),
        Compression::Lz4 => {
            read_bounded(codec, lz4_flex::frame::FrameDecoder::new(data), max_bytes)
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(data)
                .map_err(|e| StorageError::corrupt(format!("zstd decompression failed: {e}")))?;
            read_bounded(codec, decoder, max_bytes)
        }
    }
}

/// Compresses a records section the way Kafka clients do (snappy: raw block, like librdkafka).
pub fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, StorageError> {
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data)?;
            Ok(encoder.finish()?)
        }
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(data)
            .map_err(|e| StorageError::corrupt(format!("snappy compression failed: {e}"))),
        Compression::Lz4 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            encoder.write_all(data)?;
            encoder
                .finish()
                .map_err(|e| StorageError::corrupt(format!("lz4 compression failed: {e}")))
        }
        Compression::Zstd => Ok(zstd::stream::encode_all(data, 3)?),
    }
}

/// Compresses with snappy-java's xerial framing (what the Java client sends), in 32 KiB blocks.
pub fn compress_snappy_xerial(data: &[u8]) -> Result<Vec<u8>, StorageError> {
    let mut out = XERIAL_MAGIC.to_vec();
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    for chunk in data.chunks(32 * 1024) {
        let block = snap::raw::Encoder::new()
            .compress_vec(chunk)
            .map_err(|e| StorageError::corrupt(format!("snappy compression failed: {e}")))?;
        let len = i32::try_from(block.len())
            .map_err(|_| StorageError::corrupt("snappy block too large"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&block);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn round_trips_every_codec() {
        let data = sample();
        for codec in Compression::ALL {
            let packed = compress(codec, &data).unwrap();
            assert_eq!(
                decompress(codec, &packed, data.len()).unwrap(),
                data,
                "{codec:?}"
            );
        }
        let xerial = compress_snappy_xerial(&data).unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &xerial, data.len()).unwrap(),
            data
        );
    }

    #[test]
    fn limit_is_enforced_for_every_codec() {
        let data = vec![0u8; 1 << 20];
        for codec in Compression::ALL {
            let packed = compress(codec, &data).unwrap();
            let err = decompress(codec, &packed, 1000).unwrap_err();
            assert!(
                matches!(err, StorageError::DecompressionLimit { max_bytes: 1000 }),
                "{codec:?}"
            );
        }
        let xerial = compress_snappy_xerial(&data).unwrap();
        assert!(matches!(
            decompress(Compression::Snappy, &xerial, 1000),
            Err(StorageError::DecompressionLimit { .. })
        ));
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let garbage = [0xffu8, 0x00, 0x13, 0x37, 0x42, 0x99, 0x01, 0x02];
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            assert!(decompress(codec, &garbage, 1 << 20).is_err(), "{codec:?}");
        }
        let mut xerial = XERIAL_MAGIC.to_vec();
        xerial.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff, 1]);
        assert!(decompress(Compression::Snappy, &xerial, 1 << 20).is_err());
    }
}
