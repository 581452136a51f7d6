//! A Fetch response as the broker builds it (`FetchAnswer`), encoded in one pass straight into
//! frame chunks: the encoded fields around each partition's records, and the records as
//! storage read them (`Bytes`, not copied when large) or as a place the caller fills in (a
//! segment file region: `FrameChunk::External`). No codec structs are built: a librdkafka
//! Fetch names every partition its consumer reads, and building, sizing, encoding and
//! dropping the codec's structs for each cost more than the bytes they carry.
//!
//! The bytes are exactly what `kafka-protocol` encodes for the same response, at every
//! version 4-18 (the tests compare the two), and the same answers are refused: a field set that
//! the version cannot carry.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use uuid::Uuid;

use crate::response::EncodeError;

/// Record sets smaller than this are copied into the encoded bytes; a chunk of their own
/// would cost the writer more than the copy.
pub const MIN_ZERO_COPY_BYTES: usize = 1024;

/// One piece of an encoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameChunk {
    Bytes(Bytes),
    /// The records of `AnswerRecords::External` number `index`, which the caller sends.
    External(usize),
}

/// A Fetch response body.
#[derive(Clone, Debug, Default)]
pub struct FetchAnswer {
    pub throttle_time_ms: i32,
    pub error_code: i16,
    /// v7+ (KIP-227); must be 0 below.
    pub session_id: i32,
    pub topics: Vec<TopicAnswer>,
    /// v16+ (KIP-951): where the leaders named by `current_leader` are; ignored below.
    pub node_endpoints: Vec<Endpoint>,
}

#[derive(Clone, Debug)]
pub struct TopicAnswer {
    /// Sent up to v12.
    pub name: Arc<str>,
    /// Sent from v13.
    pub topic_id: Uuid,
    pub partitions: Vec<PartitionAnswer>,
}

#[derive(Clone, Debug)]
pub struct PartitionAnswer {
    pub partition_index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    /// v5+.
    pub log_start_offset: i64,
    /// `None` for read_uncommitted; for read_committed the aborted transactions whose data
    /// the records hold.
    pub aborted_transactions: Option<Vec<AbortedTransaction>>,
    /// v11+ (KIP-392); must be -1 below.
    pub preferred_read_replica: i32,
    pub records: Option<AnswerRecords>,
    /// v12+ tagged fields, sent unless (-1, -1): (epoch, end offset), (leader id, leader
    /// epoch), (end offset, epoch).
    pub diverging_epoch: (i32, i64),
    pub current_leader: (i32, i32),
    pub snapshot_id: (i64, i32),
}

impl PartitionAnswer {
    /// A partition with no records, no error and every optional field unset.
    pub fn new(partition_index: i32) -> Self {
        Self {
            partition_index,
            error_code: 0,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            aborted_transactions: None,
            preferred_read_replica: -1,
            records: None,
            diverging_epoch: (-1, -1),
            current_leader: (-1, -1),
            snapshot_id: (-1, -1),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTransaction {
    pub producer_id: i64,
    pub first_offset: i64,
}

/// A partition's records in the answer.
#[derive(Clone, Debug)]
pub enum AnswerRecords {
    Bytes(Bytes),
    /// `len` bytes the caller sends where `FrameChunk::External(index)` says.
    External {
        index: usize,
        len: usize,
    },
}

impl AnswerRecords {
    pub fn len(&self) -> usize {
        match self {
            AnswerRecords::Bytes(b) => b.len(),
            AnswerRecords::External { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A broker's address in `node_endpoints`.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

const FIRST_VERSION: i16 = 4;
const LAST_VERSION: i16 = 18;
/// First version with compact lengths and tagged fields.
const FIRST_FLEXIBLE_VERSION: i16 = 12;

/// Encodes `answer` as the response to Fetch `version` / `correlation_id`, size prefix
/// included, as chunks whose concatenation (with the external records filled in) is the frame.
pub fn encode_fetch_answer(
    version: i16,
    correlation_id: i32,
    answer: &FetchAnswer,
) -> Result<Vec<FrameChunk>, EncodeError> {
    if !(FIRST_VERSION..=LAST_VERSION).contains(&version) {
        return Err(error(version, "unsupported version"));
    }
    if version < 7 && answer.session_id != 0 {
        return Err(error(version, "a session id needs v7"));
    }
    let flexible = version >= FIRST_FLEXIBLE_VERSION;
    let partitions: usize = answer.topics.iter().map(|t| t.partitions.len()).sum();
    let mut w = Writer::new(version, 64 + 32 * answer.topics.len() + 64 * partitions);
    w.buf.put_i32(0); // the size, set by `finish`
    w.buf.put_i32(correlation_id);
    if ApiKey::Fetch.response_header_version(version) >= 1 {
        w.buf.put_u8(0); // the header's tagged fields
    }
    w.buf.put_i32(answer.throttle_time_ms);
    if version >= 7 {
        w.buf.put_i16(answer.error_code);
        w.buf.put_i32(answer.session_id);
    }
    w.array_len(Some(answer.topics.len()))?;
    for topic in &answer.topics {
        if version <= 12 {
            w.string(&topic.name)?;
        }
        if version >= 13 {
            w.buf.put_slice(topic.topic_id.as_bytes());
        }
        w.array_len(Some(topic.partitions.len()))?;
        for p in &topic.partitions {
            w.partition(p)?;
        }
        if flexible {
            w.buf.put_u8(0);
        }
    }
    if flexible {
        if version >= 16 && !answer.node_endpoints.is_empty() {
            w.uvarint(1);
            // Tag 0, node_endpoints. A tagged field is preceded by its size: encode the
            // endpoints apart first.
            w.uvarint(0);
            let mut e = Writer::new(version, 32 * answer.node_endpoints.len());
            e.array_len(Some(answer.node_endpoints.len()))?;
            for endpoint in &answer.node_endpoints {
                e.buf.put_i32(endpoint.node_id);
                e.string(&endpoint.host)?;
                e.buf.put_i32(endpoint.port);
                match &endpoint.rack {
                    Some(rack) => e.string(rack)?,
                    None => e.uvarint(0),
                }
                e.buf.put_u8(0);
            }
            let size =
                u32::try_from(e.buf.len()).map_err(|_| error(version, "endpoints too large"))?;
            w.uvarint(size);
            w.buf.put_slice(&e.buf);
        } else {
            w.buf.put_u8(0);
        }
    }
    w.finish()
}

fn error(version: i16, reason: &str) -> EncodeError {
    EncodeError {
        api_key: ApiKey::Fetch,
        version,
        reason: reason.to_string(),
    }
}

/// Writes the frame, cutting it into chunks around records sent as they are.
struct Writer {
    version: i16,
    flexible: bool,
    buf: BytesMut,
    /// The first piece, whose size prefix `finish` sets.
    head: Option<BytesMut>,
    chunks: Vec<FrameChunk>,
    total: usize,
}

impl Writer {
    fn new(version: i16, capacity: usize) -> Self {
        Self {
            version,
            flexible: version >= FIRST_FLEXIBLE_VERSION,
            buf: BytesMut::with_capacity(capacity),
            head: None,
            // The head's place.
            chunks: vec![FrameChunk::Bytes(Bytes::new())],
            total: 0,
        }
    }

    fn uvarint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.buf.put_u8((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.buf.put_u8(v as u8);
    }

    /// An array's (or nullable array's) length.
    fn array_len(&mut self, len: Option<usize>) -> Result<(), EncodeError> {
        let version = self.version;
        let too_long = move || error(version, "array too long");
        if self.flexible {
            let v = match len {
                None => 0,
                Some(n) => u32::try_from(n)
                    .ok()
                    .and_then(|n| n.checked_add(1))
                    .ok_or_else(too_long)?,
            };
            self.uvarint(v);
        } else {
            let v = match len {
                None => -1,
                Some(n) => i32::try_from(n).map_err(|_| too_long())?,
            };
            self.buf.put_i32(v);
        }
        Ok(())
    }

    fn string(&mut self, s: &str) -> Result<(), EncodeError> {
        if self.flexible {
            self.array_len(Some(s.len()))?;
        } else {
            let len = i16::try_from(s.len()).map_err(|_| error(self.version, "string too long"))?;
            self.buf.put_i16(len);
        }
        self.buf.put_slice(s.as_bytes());
        Ok(())
    }

    fn partition(&mut self, p: &PartitionAnswer) -> Result<(), EncodeError> {
        let version = self.version;
        // The fixed-size fields in one write (one capacity check instead of five).
        let mut fixed = [0u8; 30];
        fixed[0..4].copy_from_slice(&p.partition_index.to_be_bytes());
        fixed[4..6].copy_from_slice(&p.error_code.to_be_bytes());
        fixed[6..14].copy_from_slice(&p.high_watermark.to_be_bytes());
        fixed[14..22].copy_from_slice(&p.last_stable_offset.to_be_bytes());
        fixed[22..30].copy_from_slice(&p.log_start_offset.to_be_bytes());
        self.buf
            .put_slice(&fixed[..if version >= 5 { 30 } else { 22 }]);
        self.array_len(p.aborted_transactions.as_ref().map(Vec::len))?;
        for t in p.aborted_transactions.iter().flatten() {
            self.buf.put_i64(t.producer_id);
            self.buf.put_i64(t.first_offset);
            if self.flexible {
                self.buf.put_u8(0);
            }
        }
        if version >= 11 {
            self.buf.put_i32(p.preferred_read_replica);
        } else if p.preferred_read_replica != -1 {
            return Err(error(version, "a preferred read replica needs v11"));
        }
        self.records(p.records.as_ref())?;
        if self.flexible {
            let diverging = p.diverging_epoch != (-1, -1);
            let leader = p.current_leader != (-1, -1);
            let snapshot = p.snapshot_id != (-1, -1);
            self.uvarint(u32::from(diverging) + u32::from(leader) + u32::from(snapshot));
            if diverging {
                self.buf.put_slice(&[0, 13]); // tag 0, 13 bytes
                self.buf.put_i32(p.diverging_epoch.0);
                self.buf.put_i64(p.diverging_epoch.1);
                self.buf.put_u8(0);
            }
            if leader {
                self.buf.put_slice(&[1, 9]); // tag 1, 9 bytes
                self.buf.put_i32(p.current_leader.0);
                self.buf.put_i32(p.current_leader.1);
                self.buf.put_u8(0);
            }
            if snapshot {
                self.buf.put_slice(&[2, 13]); // tag 2, 13 bytes
                self.buf.put_i64(p.snapshot_id.0);
                self.buf.put_i32(p.snapshot_id.1);
                self.buf.put_u8(0);
            }
        }
        Ok(())
    }

    /// Nullable bytes: the length, then the records, in the buffer or as a chunk of their own.
    fn records(&mut self, records: Option<&AnswerRecords>) -> Result<(), EncodeError> {
        let Some(records) = records else {
            self.array_len(None)?;
            return Ok(());
        };
        self.array_len(Some(records.len()))?;
        match records {
            AnswerRecords::Bytes(b) if b.len() < MIN_ZERO_COPY_BYTES => self.buf.put_slice(b),
            AnswerRecords::Bytes(b) => {
                self.cut();
                self.total += b.len();
                self.chunks.push(FrameChunk::Bytes(b.clone()));
            }
            AnswerRecords::External { index, len } => {
                self.cut();
                self.total += len;
                self.chunks.push(FrameChunk::External(*index));
            }
        }
        Ok(())
    }

    /// Ends the current piece of encoded bytes.
    fn cut(&mut self) {
        let piece = self.buf.split();
        self.total += piece.len();
        if self.head.is_none() {
            self.head = Some(piece);
        } else if !piece.is_empty() {
            self.chunks.push(FrameChunk::Bytes(piece.freeze()));
        }
    }

    fn finish(mut self) -> Result<Vec<FrameChunk>, EncodeError> {
        self.cut();
        let size = self
            .total
            .checked_sub(4)
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| error(self.version, "response too large"))?;
        let mut head = self.head.take().unwrap_or_default();
        if let Some(prefix) = head.get_mut(..4) {
            prefix.copy_from_slice(&size.to_be_bytes());
        }
        if let Some(first) = self.chunks.first_mut() {
            *first = FrameChunk::Bytes(head.freeze());
        }
        Ok(self.chunks)
    }
}

#[cfg(test)]
#[path = "fetch_answer_tests.rs"]
mod tests;
