//! Parsing of the records section of a v2 batch (after decompression).
//!
//! Record: length varint, attributes i8, timestampDelta varlong, offsetDelta varint, keyLength
//! varint (-1 = null), key, valueLength varint, value, headersCount varint, then headers
//! (keyLength varint, key, valueLength varint, value).
//!
//! Invariant: parsing borrows from the input, never reads past it, and allocates at most in
//! proportion to the input length (counts from the wire are never trusted for capacity).

use crate::batch::varint::{read_varint, read_varlong};
use crate::error::StorageError;

/// One record, borrowed from the records section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
}

/// Iterates the records of a records section; yields at most `count` items, then checks that
/// nothing is left over.
pub struct RecordIter<'a> {
    data: &'a [u8],
    pos: usize,
    remaining: i32,
    done: bool,
}

impl<'a> RecordIter<'a> {
    pub fn new(data: &'a [u8], count: i32) -> Self {
        RecordIter {
            data,
            pos: 0,
            remaining: count,
            done: false,
        }
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.remaining <= 0 {
            self.done = true;
            if self.pos != self.data.len() {
                return Some(Err(StorageError::corrupt(format!(
                    "{} bytes after the last record",
                    self.data.len() - self.pos
                ))));
            }
            return None;
        }
        self.remaining -= 1;
        let result = record_body(self.data, &mut self.pos).and_then(parse_record);
        if result.is_err() {
            self.done = true;
        }
        Some(result)
    }
}

/// Reads one record's length varint and returns its body, advancing `pos` past it.
pub fn record_body<'a>(data: &'a [u8], pos: &mut usize) -> Result<&'a [u8], StorageError> {
    let length = read_varint(data, pos)?;
    let length = usize::try_from(length)
        .map_err(|_| StorageError::corrupt(format!("negative record length {length}")))?;
    let end = pos
        .checked_add(length)
        .ok_or_else(|| StorageError::corrupt("record length overflows"))?;
    let body = data
        .get(*pos..end)
        .ok_or_else(|| StorageError::corrupt("record extends past the batch"))?;
    *pos = end;
    Ok(body)
}

/// Checks that exactly `count` length-prefixed records fill `data`, reading of each body only
/// its timestamp delta (after the attributes byte): the smallest and largest, or (0, 0) for no
/// records.
pub fn walk_record_timestamps(data: &[u8], count: i32) -> Result<(i64, i64), StorageError> {
    let mut pos = 0usize;
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for _ in 0..count {
        let body = record_body(data, &mut pos)?;
        let mut at = 1usize;
        let delta = read_varlong(body, &mut at)?;
        min = min.min(delta);
        max = max.max(delta);
    }
    if pos != data.len() {
        return Err(StorageError::corrupt(format!(
            "{} bytes after the declared {count} records",
            data.len() - pos
        )));
    }
    Ok(if count > 0 { (min, max) } else { (0, 0) })
}

fn bytes_field<'a>(body: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, StorageError> {
    let length = read_varint(body, pos)?;
    if length < 0 {
        return Ok(None);
    }
    let end = pos
        .checked_add(length as usize)
        .ok_or_else(|| StorageError::corrupt("field length overflows"))?;
    let field = body
        .get(*pos..end)
        .ok_or_else(|| StorageError::corrupt("field extends past the record"))?;
    *pos = end;
    Ok(Some(field))
}

fn parse_record(body: &[u8]) -> Result<RecordView<'_>, StorageError> {
    let mut pos = 0usize;
    let attributes = body
        .first()
        .map(|b| i8::from_be_bytes([*b]))
        .ok_or_else(|| StorageError::corrupt("empty record"))?;
    pos += 1;
    let timestamp_delta = read_varlong(body, &mut pos)?;
    let offset_delta = read_varint(body, &mut pos)?;
    let key = bytes_field(body, &mut pos)?;
    let value = bytes_field(body, &mut pos)?;
    let headers_count = read_varint(body, &mut pos)?;
    let headers_count = usize::try_from(headers_count)
        .map_err(|_| StorageError::corrupt("negative header count"))?;
    let mut headers = Vec::with_capacity(headers_count.min(body.len()));
    for _ in 0..headers_count {
        let header_key =
            bytes_field(body, &mut pos)?.ok_or_else(|| StorageError::corrupt("null header key"))?;
        let header_value = bytes_field(body, &mut pos)?;
        headers.push((header_key, header_value));
    }
    if pos != body.len() {
        return Err(StorageError::corrupt(
            "record length does not match its fields",
        ));
    }
    Ok(RecordView {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
    })
}
