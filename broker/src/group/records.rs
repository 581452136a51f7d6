//! The records the group coordinator keeps in `__consumer_offsets`, in Apache Kafka's on-disk
//! formats so Kafka's own tools can read them:
//!
//! - key version 0/1 `OffsetCommitKey` (group, topic, partition) with an `OffsetCommitValue`
//!   (written as version 3: offset, leader epoch, metadata, commit timestamp; version 1 when
//!   the commit carries an explicit expire timestamp);
//! - key version 2 `GroupMetadataKey` (group) with a `GroupMetadataValue` (written as version 3).
//!
//! A record with a null value is a tombstone. Decoding accepts every value version Kafka 4
//! defines (0-4, version 4 being the first flexible one) and never panics on bad input; keys of
//! other versions (records of the new consumer protocol) decode to `None` and are skipped.

use bytes::Bytes;

/// A decoded or to-be-written `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRecord {
    /// A committed offset, or its deletion (`value: None`).
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<OffsetValue>,
    },
    /// A group's membership and assignment, or its deletion (`value: None`).
    Group {
        group: String,
        value: Option<GroupMetadataValue>,
    },
}

/// `OffsetCommitValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    /// -1 when unknown.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Set only by OffsetCommit v2-v4 with an explicit retention time.
    pub expire_timestamp_ms: Option<i64>,
}

/// `GroupMetadataValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// -1 when unknown (value versions below 2).
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberMetadataValue>,
}

/// `GroupMetadataValue.MemberMetadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadataValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A record that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed __consumer_offsets record: {0}")]
pub struct RecordFormatError(pub String);

/// A record that cannot be encoded: a field is longer than Kafka's format can say. Callers
/// check lengths first (group ids and names against `MAX_NAME_BYTES`, commit metadata against
/// `MAX_STRING_BYTES`), so this is a bug caught before anything is written, never a record
/// stored cut short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode __consumer_offsets record: {field} is {len} bytes, the limit is {max}")]
pub struct RecordEncodeError {
    pub field: &'static str,
    pub len: usize,
    pub max: usize,
}

/// The longest string Kafka's record format stores (an i16 length), in bytes.
pub const MAX_STRING_BYTES: usize = i16::MAX as usize;

const OFFSET_VALUE_VERSION: i16 = 3;
const OFFSET_VALUE_VERSION_WITH_EXPIRY: i16 = 1;
const GROUP_VALUE_VERSION: i16 = 3;

impl GroupRecord {
    /// The group the record belongs to (decides the `__consumer_offsets` partition).
    pub fn group_id(&self) -> &str {
        match self {
            GroupRecord::Offset { group, .. } | GroupRecord::Group { group, .. } => group,
        }
    }

    /// Encodes the record's key and value (`None` for a tombstone); fails, rather than cut
    /// a field, if one is too long for the format.
    pub fn encode(&self) -> Result<(Vec<u8>, Option<Vec<u8>>), RecordEncodeError> {
        match self {
            GroupRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                let mut key = Vec::new();
                put_i16(&mut key, 1);
                put_str(&mut key, "group", group)?;
                put_str(&mut key, "topic", topic)?;
                put_i32(&mut key, *partition);
                Ok((key, value.as_ref().map(encode_offset_value).transpose()?))
            }
            GroupRecord::Group { group, value } => {
                let mut key = Vec::new();
                put_i16(&mut key, 2);
                put_str(&mut key, "group", group)?;
                Ok((key, value.as_ref().map(encode_group_value).transpose()?))
            }
        }
    }

    /// Decodes a record; `Ok(None)` for key versions this coordinator does not own.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<Self>, RecordFormatError> {
        let mut k = Reader::new(key, false);
        let version = k.i16()?;
        match version {
            0 | 1 => {
                let group = k.string()?;
                let topic = k.string()?;
                let partition = k.i32()?;
                let value = value.map(decode_offset_value).transpose()?;
                Ok(Some(GroupRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                }))
            }
            2 => {
                let group = k.string()?;
                let value = value.map(decode_group_value).transpose()?;
                Ok(Some(GroupRecord::Group { group, value }))
            }
            _ => Ok(None),
        }
    }
}

fn encode_offset_value(v: &OffsetValue) -> Result<Vec<u8>, RecordEncodeError> {
    let mut out = Vec::new();
    match v.expire_timestamp_ms {
        Some(expire) => {
            put_i16(&mut out, OFFSET_VALUE_VERSION_WITH_EXPIRY);
            put_i64(&mut out, v.offset);
            put_str(&mut out, "metadata", &v.metadata)?;
            put_i64(&mut out, v.commit_timestamp_ms);
            put_i64(&mut out, expire);
        }
        None => {
            put_i16(&mut out, OFFSET_VALUE_VERSION);
            put_i64(&mut out, v.offset);
            put_i32(&mut out, v.leader_epoch);
            put_str(&mut out, "metadata", &v.metadata)?;
            put_i64(&mut out, v.commit_timestamp_ms);
        }
    }
    Ok(out)
}

fn decode_offset_value(bytes: &[u8]) -> Result<OffsetValue, RecordFormatError> {
    let version = Reader::new(bytes, false).i16()?;
    if !(0..=4).contains(&version) {
        return Err(RecordFormatError(format!(
            "unknown OffsetCommitValue version {version}"
        )));
    }
    let mut r = Reader::new(bytes.get(2..).unwrap_or_default(), version >= 4);
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string()?;
    let commit_timestamp_ms = r.i64()?;
    let expire_timestamp_ms = if version == 1 {
        // Kafka's `ofSentinel`: only -1 means "none".
        Some(r.i64()?).filter(|&t| t != -1)
    } else {
        None
    };
    r.tagged_fields()?;
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
        expire_timestamp_ms,
    })
}

fn encode_group_value(v: &GroupMetadataValue) -> Result<Vec<u8>, RecordEncodeError> {
    let mut out = Vec::new();
    put_i16(&mut out, GROUP_VALUE_VERSION);
    put_str(&mut out, "protocol type", &v.protocol_type)?;
    put_i32(&mut out, v.generation);
    put_opt_str(&mut out, "protocol", v.protocol.as_deref())?;
    put_opt_str(&mut out, "leader", v.leader.as_deref())?;
    put_i64(&mut out, v.current_state_timestamp_ms);
    put_i32(&mut out, i32_len("members", v.members.len())?);
    for m in &v.members {
        put_str(&mut out, "member id", &m.member_id)?;
        put_opt_str(
            &mut out,
            "group instance id",
            m.group_instance_id.as_deref(),
        )?;
        put_str(&mut out, "client id", &m.client_id)?;
        put_str(&mut out, "client host", &m.client_host)?;
        put_i32(&mut out, m.rebalance_timeout_ms);
        put_i32(&mut out, m.session_timeout_ms);
        put_bytes(&mut out, "subscription", &m.subscription)?;
        put_bytes(&mut out, "assignment", &m.assignment)?;
    }
    Ok(out)
}

fn decode_group_value(bytes: &[u8]) -> Result<GroupMetadataValue, RecordFormatError> {
    let version = Reader::new(bytes, false).i16()?;
    if !(0..=4).contains(&version) {
        return Err(RecordFormatError(format!(
            "unknown GroupMetadataValue version {version}"
        )));
    }
    let mut r = Reader::new(bytes.get(2..).unwrap_or_default(), version >= 4);
    let protocol_type = r.string()?;
    let generation = r.i32()?;
    let protocol = r.opt_string()?;
    let leader = r.opt_string()?;
    let current_state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    let count = r.array_len()?;
    let mut members = Vec::with_capacity(count.min(r.remaining()));
    for _ in 0..count {
        let member_id = r.string()?;
        let group_instance_id = if version >= 3 { r.opt_string()? } else { None };
        let client_id = r.string()?;
        let client_host = r.string()?;
        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
        let session_timeout_ms = r.i32()?;
        let subscription = Bytes::copy_from_slice(r.bytes()?);
        let assignment = Bytes::copy_from_slice(r.bytes()?);
        r.tagged_fields()?;
        members.push(MemberMetadataValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms: if rebalance_timeout_ms < 0 {
                session_timeout_ms
            } else {
                rebalance_timeout_ms
            },
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    r.tagged_fields()?;
    Ok(GroupMetadataValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

fn put_i16(out: &mut Vec<u8>, v: i16) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}
/// A Kafka string: an i16 length and at most `MAX_STRING_BYTES` bytes. A longer one is an
/// error, never cut.
fn put_str(out: &mut Vec<u8>, field: &'static str, s: &str) -> Result<(), RecordEncodeError> {
    let len = i16::try_from(s.len()).map_err(|_| RecordEncodeError {
        field,
        len: s.len(),
        max: MAX_STRING_BYTES,
    })?;
    put_i16(out, len);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}
fn put_opt_str(
    out: &mut Vec<u8>,
    field: &'static str,
    s: Option<&str>,
) -> Result<(), RecordEncodeError> {
    match s {
        Some(s) => put_str(out, field, s),
        None => {
            put_i16(out, -1);
            Ok(())
        }
    }
}
fn i32_len(field: &'static str, len: usize) -> Result<i32, RecordEncodeError> {
    i32::try_from(len).map_err(|_| RecordEncodeError {
        field,
        len,
        max: i32::MAX as usize,
    })
}
fn put_bytes(out: &mut Vec<u8>, field: &'static str, b: &[u8]) -> Result<(), RecordEncodeError> {
    put_i32(out, i32_len(field, b.len())?);
    out.extend_from_slice(b);
    Ok(())
}

/// A bounds-checked reader of Kafka's struct encoding, classic or flexible (compact lengths
/// and tagged fields).
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    flexible: bool,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], flexible: bool) -> Self {
        Reader {
            data,
            pos: 0,
            flexible,
        }
    }
    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordFormatError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| RecordFormatError("length overflows".into()))?;
        let s = self
            .data
            .get(self.pos..end)
            .ok_or_else(|| RecordFormatError("truncated".into()))?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordFormatError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn i16(&mut self) -> Result<i16, RecordFormatError> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, RecordFormatError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, RecordFormatError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    fn uvarint(&mut self) -> Result<u32, RecordFormatError> {
        let mut value = 0u32;
        for i in 0..5 {
            let [b] = self.array::<1>()?;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordFormatError("varint too long".into()))
    }
    /// A length: `None` for null.
    fn length(&mut self, wide: bool) -> Result<Option<usize>, RecordFormatError> {
        if self.flexible {
            let n = self.uvarint()?;
            return Ok(n.checked_sub(1).map(|n| n as usize));
        }
        let n = if wide {
            self.i32()?
        } else {
            i32::from(self.i16()?)
        };
        Ok(usize::try_from(n).ok())
    }
    fn opt_string(&mut self) -> Result<Option<String>, RecordFormatError> {
        match self.length(false)? {
            None => Ok(None),
            Some(n) => {
                let s = self.take(n)?;
                String::from_utf8(s.to_vec())
                    .map(Some)
                    .map_err(|_| RecordFormatError("string is not UTF-8".into()))
            }
        }
    }
    fn string(&mut self) -> Result<String, RecordFormatError> {
        self.opt_string()?
            .ok_or_else(|| RecordFormatError("null string".into()))
    }
    fn bytes(&mut self) -> Result<&'a [u8], RecordFormatError> {
        match self.length(true)? {
            None => Ok(&[]),
            Some(n) => self.take(n),
        }
    }
    fn array_len(&mut self) -> Result<usize, RecordFormatError> {
        Ok(self.length(true)?.unwrap_or(0))
    }
    /// Skips a tagged-field section (flexible versions only).
    fn tagged_fields(&mut self) -> Result<(), RecordFormatError> {
        if !self.flexible {
            return Ok(());
        }
        let count = self.uvarint()?;
        for _ in 0..count {
            let _tag = self.uvarint()?;
            let size = self.uvarint()?;
            self.take(size as usize)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn offset_record(value: Option<OffsetValue>) -> GroupRecord {
        GroupRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 7,
            value,
        }
    }

    #[test]
    fn offset_key_matches_kafka_bytes() {
        let (key, value) = offset_record(None).encode().unwrap();
        // version 1, "g", "t", partition 7
        assert_eq!(key, vec![0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 7]);
        assert_eq!(value, None);
    }

    #[test]
    fn offset_value_v3_matches_kafka_bytes_and_round_trips() {
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 5,
            metadata: "m".into(),
            commit_timestamp_ms: 1000,
            expire_timestamp_ms: None,
        };
        let (key, value) = offset_record(Some(v.clone())).encode().unwrap();
        let value = value.unwrap();
        let mut expected = vec![0, 3];
        expected.extend_from_slice(&42i64.to_be_bytes());
        expected.extend_from_slice(&5i32.to_be_bytes());
        expected.extend_from_slice(&[0, 1, b'm']);
        expected.extend_from_slice(&1000i64.to_be_bytes());
        assert_eq!(value, expected);
        assert_eq!(
            GroupRecord::decode(&key, Some(&value)).unwrap(),
            Some(offset_record(Some(v.clone())))
        );
        let with_expiry = OffsetValue {
            leader_epoch: -1,
            expire_timestamp_ms: Some(5000),
            ..v
        };
        let (key, value) = offset_record(Some(with_expiry.clone())).encode().unwrap();
        assert_eq!(
            GroupRecord::decode(&key, value.as_deref()).unwrap(),
            Some(offset_record(Some(with_expiry)))
        );
    }

    #[test]
    fn group_value_round_trips() {
        let rec = GroupRecord::Group {
            group: "grp".into(),
            value: Some(GroupMetadataValue {
                protocol_type: "consumer".into(),
                generation: 3,
                protocol: Some("range".into()),
                leader: Some("m1".into()),
                current_state_timestamp_ms: 77,
                members: vec![MemberMetadataValue {
                    member_id: "m1".into(),
                    group_instance_id: Some("i1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300_000,
                    session_timeout_ms: 45_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                }],
            }),
        };
        let (key, value) = rec.encode().unwrap();
        assert_eq!(&key[..2], &[0, 2]);
        assert_eq!(
            GroupRecord::decode(&key, value.as_deref()).unwrap(),
            Some(rec)
        );
    }

    #[test]
    fn flexible_v4_offset_value_decodes() {
        // version 4: offset, leaderEpoch, compact string metadata, commitTimestamp, tags.
        let mut v = vec![0, 4];
        v.extend_from_slice(&9i64.to_be_bytes());
        v.extend_from_slice(&(-1i32).to_be_bytes());
        v.extend_from_slice(&[3, b'h', b'i']);
        v.extend_from_slice(&12i64.to_be_bytes());
        v.push(0);
        let (key, _) = offset_record(None).encode().unwrap();
        let Some(GroupRecord::Offset { value: Some(o), .. }) =
            GroupRecord::decode(&key, Some(&v)).unwrap()
        else {
            panic!("not an offset record");
        };
        assert_eq!(
            (o.offset, o.metadata.as_str(), o.commit_timestamp_ms),
            (9, "hi", 12)
        );
    }

    fn with_metadata(metadata: String) -> GroupRecord {
        offset_record(Some(OffsetValue {
            offset: 1,
            leader_epoch: -1,
            metadata,
            commit_timestamp_ms: 1,
            expire_timestamp_ms: None,
        }))
    }

    #[test]
    fn strings_too_long_for_an_i16_length_are_refused_not_cut() {
        // 'é' is two bytes in UTF-8: 16,383 of them (32,766 bytes) fit, whole.
        let fits = with_metadata("é".repeat(16_383) + "a");
        let (key, value) = fits.encode().unwrap();
        assert_eq!(
            GroupRecord::decode(&key, value.as_deref()).unwrap(),
            Some(fits)
        );
        // One more 'é' (32,768 bytes), or 8,192 four-byte '😀': an error, never a record cut
        // in the middle of a character.
        for metadata in ["é".repeat(16_384), "😀".repeat(8_192)] {
            assert_eq!(
                with_metadata(metadata).encode(),
                Err(RecordEncodeError {
                    field: "metadata",
                    len: 32_768,
                    max: MAX_STRING_BYTES,
                })
            );
        }
        let long_group = GroupRecord::Group {
            group: "g".repeat(MAX_STRING_BYTES + 1),
            value: None,
        };
        assert_eq!(long_group.encode().map_err(|e| e.field), Err("group"));
    }

    #[test]
    fn only_minus_one_means_no_expire_timestamp() {
        // Kafka's `ofSentinel`: any other value, negative or not, is an explicit timestamp.
        let (key, value) = offset_record(Some(OffsetValue {
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 10,
            expire_timestamp_ms: Some(-2),
        }))
        .encode()
        .unwrap();
        let mut value = value.unwrap();
        let Some(GroupRecord::Offset { value: Some(v), .. }) =
            GroupRecord::decode(&key, Some(&value)).unwrap()
        else {
            panic!("not an offset record");
        };
        assert_eq!(v.expire_timestamp_ms, Some(-2));
        // The same record with the sentinel: no expire timestamp.
        let at = value.len() - 8;
        value[at..].copy_from_slice(&(-1i64).to_be_bytes());
        let Some(GroupRecord::Offset { value: Some(v), .. }) =
            GroupRecord::decode(&key, Some(&value)).unwrap()
        else {
            panic!("not an offset record");
        };
        assert_eq!(v.expire_timestamp_ms, None);
    }

    #[test]
    fn garbage_never_panics() {
        assert!(GroupRecord::decode(&[], None).is_err());
        assert_eq!(GroupRecord::decode(&[0, 9, 1, 2], None).unwrap(), None);
        let (key, value) = offset_record(Some(OffsetValue {
            offset: 1,
            leader_epoch: 1,
            metadata: String::new(),
            commit_timestamp_ms: 1,
            expire_timestamp_ms: None,
        }))
        .encode()
        .unwrap();
        let value = value.unwrap();
        for cut in 0..value.len() {
            assert!(GroupRecord::decode(&key, Some(&value[..cut])).is_err());
        }
        for cut in 0..key.len() {
            let _ = GroupRecord::decode(&key[..cut], None);
        }
        assert!(GroupRecord::decode(&[0, 2, 0x7f, 0x7f], None).is_err());
    }
}
