//! Encoding a Fetch response without copying its record data.
//!
//! The codec would copy every partition's record batches into the response buffer. Instead,
//! large record sets are swapped for 16-byte markers, the (now small) response is encoded, and
//! the frame is returned as chunks: the encoded bytes around each marker, the real length
//! prefix, and the original record `Bytes` (still pointing at what storage read). The socket
//! writer sends the chunks with vectored writes. If anything does not look exactly as
//! expected, the response is encoded the ordinary way.
//!
//! Record sets the caller holds elsewhere (the broker's file regions, sent with `sendfile`)
//! are named by position and length only: their place in the frame becomes a
//! `FrameChunk::External` the caller fills in. This module never sees their bytes.

use std::hash::{BuildHasher, Hasher};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseKind};

use crate::response::{encode_response, EncodeError};

/// Record sets smaller than this are simply copied; chunking them would cost more.
pub const MIN_ZERO_COPY_BYTES: usize = 1024;

const MARKER_BYTES: usize = 16;

/// First version whose records use a compact (varint) length.
const FIRST_FLEXIBLE_VERSION: i16 = 12;

/// One piece of an encoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameChunk {
    Bytes(Bytes),
    /// The records of `ExternalRecords` number `index`, which the caller sends itself.
    External(usize),
}

/// A partition's records kept outside the response: `responses[topic].partitions[partition]`
/// has `len` bytes of records that the caller sends where `FrameChunk::External` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExternalRecords {
    pub topic: usize,
    pub partition: usize,
    pub len: usize,
}

/// What a marker stands for.
enum Taken {
    Bytes(Bytes),
    External { index: usize, len: usize },
}

impl Taken {
    fn len(&self) -> usize {
        match self {
            Taken::Bytes(b) => b.len(),
            Taken::External { len, .. } => *len,
        }
    }
}

/// Encodes a Fetch response as frame chunks (size prefix included) whose concatenation is
/// exactly what `encode_response` would produce.
pub fn encode_fetch_response(
    version: i16,
    correlation_id: i32,
    body: FetchResponse,
) -> Result<Vec<Bytes>, EncodeError> {
    encode_fetch_response_chunks(version, correlation_id, body, &[])?
        .into_iter()
        .map(|c| match c {
            FrameChunk::Bytes(b) => Ok(b),
            FrameChunk::External(_) => Err(external_error(version)),
        })
        .collect()
}

/// As `encode_fetch_response`, with `external` record sets left to the caller: the frame is
/// what `encode_response` would produce if each named partition held its external bytes.
/// The named partitions' own `records` are ignored.
pub fn encode_fetch_response_chunks(
    version: i16,
    correlation_id: i32,
    mut body: FetchResponse,
    external: &[ExternalRecords],
) -> Result<Vec<FrameChunk>, EncodeError> {
    let nonce = {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_i32(correlation_id);
        h.finish().to_be_bytes()
    };
    let mut taken: Vec<Taken> = Vec::new();
    for (ti, topic) in body.responses.iter_mut().enumerate() {
        for (pi, p) in topic.partitions.iter_mut().enumerate() {
            let outside = external
                .iter()
                .enumerate()
                .find(|(_, e)| e.topic == ti && e.partition == pi);
            let big = p
                .records
                .as_ref()
                .is_some_and(|r| r.len() >= MIN_ZERO_COPY_BYTES);
            if outside.is_none() && !big {
                continue;
            }
            let Ok(index) = u32::try_from(taken.len()) else {
                continue;
            };
            let previous = p.records.replace(marker(&nonce, index));
            match (outside, previous) {
                (Some((index, e)), _) => taken.push(Taken::External { index, len: e.len }),
                (None, Some(records)) => taken.push(Taken::Bytes(records)),
                (None, None) => {}
            }
        }
    }
    let placed = taken
        .iter()
        .filter(|t| matches!(t, Taken::External { .. }))
        .count();
    if placed != external.len() {
        // An external record set names a partition the response does not have (or twice).
        return Err(external_error(version));
    }
    if taken.is_empty() {
        return Ok(plain(version, correlation_id, body)?
            .into_iter()
            .map(FrameChunk::Bytes)
            .collect());
    }
    let encoded = encode_response(
        ApiKey::Fetch,
        version,
        correlation_id,
        &ResponseKind::Fetch(body.clone()),
    )?;
    if let Some(chunks) =
        split_at_markers(&encoded, &nonce, &taken, version >= FIRST_FLEXIBLE_VERSION)
    {
        return Ok(chunks);
    }
    if !external.is_empty() {
        // External bytes cannot be encoded inline here.
        return Err(external_error(version));
    }
    // Put the records back and encode normally.
    let mut it = taken.into_iter();
    for topic in &mut body.responses {
        for p in &mut topic.partitions {
            let is_marker = p
                .records
                .as_ref()
                .is_some_and(|r| r.len() == MARKER_BYTES && r.starts_with(&nonce));
            if is_marker {
                p.records = match it.next() {
                    Some(Taken::Bytes(b)) => Some(b),
                    _ => None,
                };
            }
        }
    }
    Ok(plain(version, correlation_id, body)?
        .into_iter()
        .map(FrameChunk::Bytes)
        .collect())
}

/// External records that cannot be placed (a caller bug, never client input).
fn external_error(version: i16) -> EncodeError {
    EncodeError {
        api_key: ApiKey::Fetch,
        version,
        reason: "external records do not match the response".to_string(),
    }
}

fn plain(
    version: i16,
    correlation_id: i32,
    body: FetchResponse,
) -> Result<Vec<Bytes>, EncodeError> {
    Ok(vec![encode_response(
        ApiKey::Fetch,
        version,
        correlation_id,
        &ResponseKind::Fetch(body),
    )?])
}

fn marker(nonce: &[u8; 8], index: u32) -> Bytes {
    let mut m = BytesMut::with_capacity(MARKER_BYTES);
    m.put_slice(nonce);
    m.put_u32(index);
    m.put_u32(!index);
    m.freeze()
}

/// The encoded length prefix of a records field of `len` bytes.
fn length_prefix(len: usize, flexible: bool) -> Option<Bytes> {
    let mut b = BytesMut::with_capacity(5);
    if flexible {
        let mut v = u32::try_from(len).ok()?.checked_add(1)?;
        while v >= 0x80 {
            b.put_u8((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        b.put_u8(v as u8);
    } else {
        b.put_i32(i32::try_from(len).ok()?);
    }
    Some(b.freeze())
}

fn split_at_markers(
    encoded: &Bytes,
    nonce: &[u8; 8],
    taken: &[Taken],
    flexible: bool,
) -> Option<Vec<FrameChunk>> {
    let marker_prefix = length_prefix(MARKER_BYTES, flexible)?;
    let mut chunks = Vec::with_capacity(taken.len() * 3 + 2);
    // The size prefix changes; it is rebuilt at the end.
    let mut pos = 4usize;
    chunks.push(FrameChunk::Bytes(Bytes::new()));
    let mut total = 0usize;
    for (i, records) in taken.iter().enumerate() {
        let m = marker(nonce, u32::try_from(i).ok()?);
        let found = pos + find(encoded.get(pos..)?, &m)?;
        let prefix_start = found.checked_sub(marker_prefix.len())?;
        if prefix_start < pos || encoded.get(prefix_start..found)? != &marker_prefix[..] {
            return None;
        }
        let before = encoded.slice(pos..prefix_start);
        let prefix = length_prefix(records.len(), flexible)?;
        total += before.len() + prefix.len() + records.len();
        chunks.push(FrameChunk::Bytes(before));
        chunks.push(FrameChunk::Bytes(prefix));
        chunks.push(match records {
            Taken::Bytes(b) => FrameChunk::Bytes(b.clone()),
            Taken::External { index, .. } => FrameChunk::External(*index),
        });
        pos = found + MARKER_BYTES;
    }
    let rest = encoded.slice(pos..);
    total += rest.len();
    chunks.push(FrameChunk::Bytes(rest));
    let size = i32::try_from(total).ok()?;
    if let Some(first) = chunks.first_mut() {
        *first = FrameChunk::Bytes(Bytes::copy_from_slice(&size.to_be_bytes()));
    }
    chunks.retain(|c| !matches!(c, FrameChunk::Bytes(b) if b.is_empty()));
    Some(chunks)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;
    use proptest::prelude::*;

    fn response(sizes: &[usize], version: i16) -> FetchResponse {
        let partitions = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(n as i64)
                    .with_records(Some(Bytes::from(
                        (0..n).map(|b| (b * 31 + i) as u8).collect::<Vec<u8>>(),
                    )))
            })
            .collect();
        let mut topic = FetchableTopicResponse::default().with_partitions(partitions);
        if version >= 13 {
            topic.topic_id = uuid::Uuid::from_u128(7);
        } else {
            topic.topic = TopicName(StrBytes::from_static_str("t"));
        }
        FetchResponse::default().with_responses(vec![topic])
    }

    fn concat(chunks: &[Bytes]) -> Vec<u8> {
        chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }

    proptest! {
        #[test]
        fn chunks_equal_the_plain_encoding(
            version in 4i16..=18,
            sizes in proptest::collection::vec(prop_oneof![0usize..64, 1000usize..300_000], 0..6),
        ) {
            let body = response(&sizes, version);
            let plain = encode_response(ApiKey::Fetch, version, 9, &ResponseKind::Fetch(body.clone())).unwrap();
            let chunks = encode_fetch_response(version, 9, body).unwrap();
            prop_assert_eq!(concat(&chunks), plain.to_vec());
        }
    }

    #[test]
    fn large_records_are_not_copied() {
        let body = response(&[50_000, 10, 70_000], 16);
        let originals: Vec<*const u8> = body.responses[0]
            .partitions
            .iter()
            .map(|p| p.records.as_ref().unwrap().as_ptr())
            .collect();
        let chunks = encode_fetch_response(16, 1, body).unwrap();
        let ptrs: Vec<*const u8> = chunks.iter().map(|c| c.as_ptr()).collect();
        assert!(ptrs.contains(&originals[0]));
        assert!(ptrs.contains(&originals[2]));
        assert!(!ptrs.contains(&originals[1]), "small records are copied");
    }

    proptest! {
        #[test]
        fn external_records_fill_in_to_the_plain_encoding(
            version in 4i16..=18,
            sizes in proptest::collection::vec(prop_oneof![0usize..64, 1000usize..300_000], 1..6),
            outside in proptest::collection::vec(any::<bool>(), 6),
        ) {
            let body = response(&sizes, version);
            let plain = encode_response(ApiKey::Fetch, version, 9, &ResponseKind::Fetch(body.clone())).unwrap();
            let mut external = Vec::new();
            let mut held = Vec::new();
            let mut stripped = body.clone();
            for (pi, p) in stripped.responses[0].partitions.iter_mut().enumerate() {
                if outside[pi] {
                    let records = p.records.take().unwrap();
                    external.push(ExternalRecords { topic: 0, partition: pi, len: records.len() });
                    held.push(records);
                }
            }
            let chunks = encode_fetch_response_chunks(version, 9, stripped, &external).unwrap();
            let mut bytes = Vec::new();
            for c in &chunks {
                match c {
                    FrameChunk::Bytes(b) => bytes.extend_from_slice(b),
                    FrameChunk::External(i) => bytes.extend_from_slice(&held[*i]),
                }
            }
            prop_assert_eq!(bytes, plain.to_vec());
        }
    }

    #[test]
    fn external_records_for_a_missing_partition_are_an_error() {
        let body = response(&[10], 16);
        let external = [ExternalRecords {
            topic: 0,
            partition: 5,
            len: 100,
        }];
        assert!(encode_fetch_response_chunks(16, 1, body, &external).is_err());
    }

    #[test]
    fn varint_prefixes() {
        assert_eq!(&length_prefix(16, true).unwrap()[..], &[17]);
        assert_eq!(&length_prefix(200, true).unwrap()[..], &[0xc9, 0x01]);
        assert_eq!(&length_prefix(16, false).unwrap()[..], &[0, 0, 0, 16]);
    }
}
