//! Encoding a Fetch response without copying its record data.
//!
//! The codec would copy every partition's record batches into the response buffer. Instead,
//! large record sets are swapped for 16-byte markers, the (now small) response is encoded, and
//! the frame is returned as chunks: the encoded bytes around each marker, the real length
//! prefix, and the original record `Bytes` (still pointing at what storage read). The socket
//! writer sends the chunks with vectored writes. If anything does not look exactly as
//! expected, the response is encoded the ordinary way.

use std::hash::{BuildHasher, Hasher};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseKind};

use crate::response::{encode_response, EncodeError};

/// Record sets smaller than this are simply copied; chunking them would cost more.
pub const MIN_ZERO_COPY_BYTES: usize = 1024;

const MARKER_BYTES: usize = 16;

/// First version whose records use a compact (varint) length.
const FIRST_FLEXIBLE_VERSION: i16 = 12;

/// Encodes a Fetch response as frame chunks (size prefix included) whose concatenation is
/// exactly what `encode_response` would produce.
pub fn encode_fetch_response(
    version: i16,
    correlation_id: i32,
    mut body: FetchResponse,
) -> Result<Vec<Bytes>, EncodeError> {
    let nonce = {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_i32(correlation_id);
        h.finish().to_be_bytes()
    };
    let mut taken: Vec<Bytes> = Vec::new();
    for topic in &mut body.responses {
        for p in &mut topic.partitions {
            let big = p
                .records
                .as_ref()
                .is_some_and(|r| r.len() >= MIN_ZERO_COPY_BYTES);
            if !big {
                continue;
            }
            let Ok(index) = u32::try_from(taken.len()) else {
                continue;
            };
            if let Some(records) = p.records.replace(marker(&nonce, index)) {
                taken.push(records);
            }
        }
    }
    if taken.is_empty() {
        return plain(version, correlation_id, body);
    }
    let encoded = encode_response(
        ApiKey::Fetch,
        version,
        correlation_id,
        &ResponseKind::Fetch(body.clone()),
    )?;
    match split_at_markers(&encoded, &nonce, &taken, version >= FIRST_FLEXIBLE_VERSION) {
        Some(chunks) => Ok(chunks),
        None => {
            // Put the records back and encode normally.
            let mut it = taken.into_iter();
            for topic in &mut body.responses {
                for p in &mut topic.partitions {
                    let is_marker = p
                        .records
                        .as_ref()
                        .is_some_and(|r| r.len() == MARKER_BYTES && r.starts_with(&nonce));
                    if is_marker {
                        p.records = it.next();
                    }
                }
            }
            plain(version, correlation_id, body)
        }
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
    taken: &[Bytes],
    flexible: bool,
) -> Option<Vec<Bytes>> {
    let marker_prefix = length_prefix(MARKER_BYTES, flexible)?;
    let mut chunks = Vec::with_capacity(taken.len() * 3 + 2);
    // The size prefix changes; it is rebuilt at the end.
    let mut pos = 4usize;
    chunks.push(Bytes::new());
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
        chunks.push(before);
        chunks.push(prefix);
        chunks.push(records.clone());
        pos = found + MARKER_BYTES;
    }
    let rest = encoded.slice(pos..);
    total += rest.len();
    chunks.push(rest);
    let size = i32::try_from(total).ok()?;
    if let Some(first) = chunks.first_mut() {
        *first = Bytes::copy_from_slice(&size.to_be_bytes());
    }
    chunks.retain(|c| !c.is_empty());
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

    #[test]
    fn varint_prefixes() {
        assert_eq!(&length_prefix(16, true).unwrap()[..], &[17]);
        assert_eq!(&length_prefix(200, true).unwrap()[..], &[0xc9, 0x01]);
        assert_eq!(&length_prefix(16, false).unwrap()[..], &[0, 0, 0, 16]);
    }
}
