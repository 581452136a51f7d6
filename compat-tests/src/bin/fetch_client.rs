//! A lean Kafka consumer for the benchmark's consume scenarios: the broker's
//! serving rate measured with a client that does only what every consumer
//! must (no librdkafka, whose per-message work on one thread per broker sets
//! the read rate on two shared cores).
//!
//! Like librdkafka it keeps one Fetch (v11, sessionless) in flight on one
//! connection and asks for `--partition-max-bytes` per partition (librdkafka's
//! `fetch.message.max.bytes` default, 1 MiB) and `--max-bytes` in all
//! (`fetch.max.bytes`, 50 MiB). Each response is read into one of two reused
//! buffers. The reading thread walks only the batch headers (for the next
//! offsets) and sends the next Fetch at once; a second thread parses the
//! response meanwhile: every batch's CRC-32C is checked and every record is
//! walked to its key, value and headers (the bytes are not copied out), as
//! librdkafka's application thread takes the messages its broker thread
//! queued. `--serial` parses on the reading thread before the next Fetch
//! instead. Compressed batches are counted from their header without being
//! decompressed (so their values add nothing to `bytes` and `mb_per_s`;
//! `batch_bytes` counts them); control batches are skipped. Single broker only: every
//! partition is fetched from `--bootstrap`.
//!
//! `fetch_client --bootstrap B --topic T --partitions P --count N
//! [--partition-max-bytes 1048576] [--max-bytes 52428800] [--max-wait-ms 500]
//! [--max-s 300] [--serial]` prints one JSON object; `read_s` is the reading
//! thread's time in reads of responses, `parse_s` the parser's time in CRCs
//! and record walks; `fetches` counts the Fetch requests.

#[path = "bench_support/mod.rs"]
mod bench_support;

use std::io::Read;
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bench_support::{json_f64, mb, Args, BenchResult};
use compat_tests::wire::{self, encode_body, FetchLimits, RawConnection};
use kafka_protocol::messages::FetchRequest;

/// Fetch v11: the last version that names topics (v13 uses topic ids) and the
/// last before flexible encoding, so the response parses with fixed-width
/// lengths.
const FETCH_VERSION: i16 = 11;
/// Fetch's API key.
const FETCH_KEY: i16 = 1;
/// The largest response frame accepted (Fetch's `max_bytes` plus headroom).
const MAX_FRAME_SLACK: usize = 1 << 20;

fn main() {
    if let Err(e) = run() {
        eprintln!("fetch_client: {e}");
        std::process::exit(1);
    }
}

fn run() -> BenchResult<()> {
    let args = Args::parse()?;
    let bootstrap = args.required("bootstrap")?;
    let topic = args.required("topic")?;
    let partitions: i32 = args.get("partitions", 1)?;
    let count: u64 = args.get("count", 0)?;
    let limits = FetchLimits {
        max_wait_ms: args.get("max-wait-ms", 500)?,
        min_bytes: 1,
        max_bytes: args.get("max-bytes", 52_428_800)?,
        partition_max_bytes: args.get("partition-max-bytes", 1_048_576)?,
    };
    let max = Duration::from_secs_f64(args.get("max-s", 300.0)?);
    let serial = args.flag("serial");
    let frame_limit = usize::try_from(limits.max_bytes).map_err(|_| "--max-bytes must be >= 0")?
        + MAX_FRAME_SLACK;

    // TCP_NODELAY; every request goes out in one write with its length prefix, as librdkafka
    // and the Java client send theirs (the prefix written on its own, a segment of its own,
    // cost this client 4x the receive CPU and 40 % of the read rate).
    let mut conn = RawConnection::connect_with_timeout(bootstrap.as_str(), Duration::from_secs(30))
        .map_err(|e| format!("connect {bootstrap}: {e}"))?;

    let mut offsets = vec![0i64; usize::try_from(partitions).map_err(|_| "--partitions")?];
    let (to_parser, received) = mpsc::sync_channel::<Received>(1);
    let (give_back, free_buffers) = mpsc::channel::<Vec<u8>>();
    for _ in 0..BUFFERS {
        give_back
            .send(Vec::new())
            .map_err(|_| "buffer pool closed")?;
    }
    let start = Instant::now();
    // Serial: the reading thread parses and gives the buffers back itself.
    let (parser, serial_pool) = if serial {
        (None, Some(give_back))
    } else {
        let parser = std::thread::spawn(move || parse_all(received, give_back));
        (Some(parser), None)
    };
    let mut serial_parse = Parsed::default();
    let mut read_s = 0.0;
    // Records the batch headers read so far hold from the fetched offsets.
    let mut promised = 0u64;
    let mut fetches = 0u64;
    while promised < count {
        if start.elapsed() > max {
            return Err(format!("read {promised} of {count} records in {max:?}"));
        }
        // No free buffer: the parser stopped on an error, which its join reports.
        let Ok(mut buf) = free_buffers.recv() else {
            break;
        };
        let body = encode_body(&fetch_request(&topic, &offsets, limits), FETCH_VERSION);
        let reading = Instant::now();
        let correlation_id = conn
            .send_request(FETCH_KEY, FETCH_VERSION, &body)
            .map_err(|e| format!("send fetch: {e}"))?;
        fetches += 1;
        let len = read_frame(conn.stream(), &mut buf, frame_limit)?;
        read_s += reading.elapsed().as_secs_f64();
        let fetched_from = offsets.clone();
        for p in parse_fetch_response(&buf[..len], correlation_id)? {
            if p.error_code != 0 {
                return Err(format!("partition {} error {}", p.partition, p.error_code));
            }
            let slot = usize::try_from(p.partition)
                .ok()
                .and_then(|i| offsets.get_mut(i))
                .ok_or_else(|| format!("unexpected partition {}", p.partition))?;
            let (next, records) = next_offset_from_headers(p.records, *slot)?;
            *slot = next;
            promised += records;
        }
        let response = Received {
            buf,
            len,
            correlation_id,
            fetched_from,
        };
        if let Some(pool) = &serial_pool {
            serial_parse.parse(&response)?;
            pool.send(response.buf).map_err(|_| "buffer pool closed")?;
        } else if to_parser.send(response).is_err() {
            // The parser hung up: it stopped on an error, which its join reports.
            break;
        }
    }
    drop(to_parser);
    let parsed = match parser {
        Some(parser) => parser
            .join()
            .map_err(|_| "parser thread panicked".to_owned())??,
        None => serial_parse,
    };
    let totals = &parsed.totals;
    if totals.records < count {
        return Err(format!(
            "parsed {} of {count} records (the batch headers promised {promised})",
            totals.records
        ));
    }
    let seconds = parsed
        .done
        .unwrap_or_else(Instant::now)
        .duration_since(start)
        .as_secs_f64();
    println!(
        "{{\"msgs\":{},\"bytes\":{},\"batch_bytes\":{},\"batches\":{},\"seconds\":{},\"msgs_per_s\":{},\"mb_per_s\":{},\"read_s\":{},\"parse_s\":{},\"fetches\":{},\"pipelined\":{}}}",
        totals.records,
        totals.value_bytes,
        totals.batch_bytes,
        totals.batches,
        json_f64(seconds),
        json_f64(totals.records as f64 / seconds),
        json_f64(mb(totals.value_bytes) / seconds),
        json_f64(read_s),
        json_f64(parsed.parse_s),
        fetches,
        !serial
    );
    Ok(())
}

/// Buffers a response can be read into: one being read while the other is parsed.
const BUFFERS: usize = 2;

/// One Fetch response as read, for the parser.
struct Received {
    buf: Vec<u8>,
    len: usize,
    correlation_id: i32,
    /// The offset each partition was fetched from (records before it are skipped).
    fetched_from: Vec<i64>,
}

/// What the parser found.
#[derive(Default)]
struct Parsed {
    totals: Totals,
    /// When the last response was parsed.
    done: Option<Instant>,
    /// Time spent checking CRCs and walking records.
    parse_s: f64,
}

impl Parsed {
    /// Checks and counts every batch and record of one response.
    fn parse(&mut self, response: &Received) -> BenchResult<()> {
        let started = Instant::now();
        for p in parse_fetch_response(&response.buf[..response.len], response.correlation_id)? {
            let from = usize::try_from(p.partition)
                .ok()
                .and_then(|i| response.fetched_from.get(i))
                .ok_or_else(|| format!("unexpected partition {}", p.partition))?;
            walk_batches(p.records, *from, &mut self.totals)?;
        }
        let now = Instant::now();
        self.parse_s += now.duration_since(started).as_secs_f64();
        self.done = Some(now);
        Ok(())
    }
}

/// The parser thread: parses every response it is sent, giving each buffer back.
fn parse_all(
    received: mpsc::Receiver<Received>,
    give_back: mpsc::Sender<Vec<u8>>,
) -> BenchResult<Parsed> {
    let mut parsed = Parsed::default();
    for response in received {
        parsed.parse(&response)?;
        // The reader may have finished and dropped its end; nothing is lost.
        let _ = give_back.send(response.buf);
    }
    Ok(parsed)
}

/// A Fetch of every partition from its next offset.
fn fetch_request(topic: &str, offsets: &[i64], limits: FetchLimits) -> FetchRequest {
    let partitions: Vec<(i32, i64)> = offsets
        .iter()
        .enumerate()
        .map(|(i, &offset)| (i32::try_from(i).unwrap_or(i32::MAX), offset))
        .collect();
    wire::fetch_request(topic, &partitions, limits)
}

/// Reads one length-prefixed frame into `buf` (grown, never shrunk or
/// re-zeroed) and returns its length.
fn read_frame(conn: &mut TcpStream, buf: &mut Vec<u8>, limit: usize) -> BenchResult<usize> {
    let mut len = [0u8; 4];
    conn.read_exact(&mut len)
        .map_err(|e| format!("read frame length: {e}"))?;
    let len = usize::try_from(i32::from_be_bytes(len))
        .ok()
        .filter(|&l| l <= limit)
        .ok_or_else(|| format!("response frame length {len:?} out of range"))?;
    if buf.len() < len {
        buf.resize(len, 0);
    }
    conn.read_exact(&mut buf[..len])
        .map_err(|e| format!("read frame: {e}"))?;
    Ok(len)
}

/// What was read so far.
#[derive(Default, Debug, PartialEq)]
struct Totals {
    records: u64,
    value_bytes: u64,
    batch_bytes: u64,
    batches: u64,
}

/// One partition of a Fetch response, borrowing its records from the frame.
#[derive(Debug)]
struct PartitionRecords<'a> {
    partition: i32,
    error_code: i16,
    records: &'a [u8],
}

/// A cursor over big-endian fields, failing on truncation.
struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> BenchResult<&'a [u8]> {
        if self.buf.len() < n {
            return Err(format!(
                "truncated: wanted {n} bytes, {} left",
                self.buf.len()
            ));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn i16(&mut self) -> BenchResult<i16> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> BenchResult<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self) -> BenchResult<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    /// An array or bytes length: -1 (null) reads as 0.
    fn len(&mut self) -> BenchResult<usize> {
        let n = self.i32()?;
        if n < -1 {
            return Err(format!("negative length {n}"));
        }
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// A zig-zag varint (records use them for lengths and deltas).
    fn varint(&mut self) -> BenchResult<i64> {
        let mut raw = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            raw |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err("varint longer than 10 bytes".to_owned())
    }

    /// A varint length of key, value or header; -1 (null) reads as 0.
    fn var_len(&mut self) -> BenchResult<usize> {
        let n = self.varint()?;
        if n < -1 {
            return Err(format!("negative record field length {n}"));
        }
        usize::try_from(n.max(0)).map_err(|_| format!("record field length {n}"))
    }
}

/// Parses a Fetch v11 response frame (response header v0 included).
fn parse_fetch_response(
    frame: &[u8],
    correlation_id: i32,
) -> BenchResult<Vec<PartitionRecords<'_>>> {
    let mut c = Cursor { buf: frame };
    let got = c.i32()?;
    if got != correlation_id {
        return Err(format!("correlation id {got}, expected {correlation_id}"));
    }
    let _throttle_time_ms = c.i32()?;
    let error_code = c.i16()?;
    if error_code != 0 {
        return Err(format!("Fetch error {error_code}"));
    }
    let _session_id = c.i32()?;
    let mut out = Vec::new();
    for _ in 0..c.len()? {
        let name_len = usize::try_from(c.i16()?).map_err(|_| "null topic name")?;
        c.take(name_len)?;
        for _ in 0..c.len()? {
            let partition = c.i32()?;
            let error_code = c.i16()?;
            let _high_watermark = c.i64()?;
            let _last_stable_offset = c.i64()?;
            let _log_start_offset = c.i64()?;
            for _ in 0..c.len()? {
                c.take(16)?; // producer_id, first_offset
            }
            let _preferred_read_replica = c.i32()?;
            let records_len = c.len()?;
            let records = c.take(records_len)?;
            out.push(PartitionRecords {
                partition,
                error_code,
                records,
            });
        }
    }
    Ok(out)
}

/// The header fields of one v2 record batch that both walks use.
struct BatchHeader<'a> {
    base_offset: i64,
    attributes: i16,
    /// One past the batch's last offset.
    end: i64,
    count: i32,
    /// The whole batch, from its base offset on.
    bytes: &'a [u8],
}

/// Size of a v2 batch header, from the base offset to the record count.
const BATCH_HEADER_BYTES: usize = 61;

/// Takes the next whole batch off the front of `records`; `None` at the end or before a
/// trailing partial batch (fetched again next time).
fn next_batch<'a>(records: &mut &'a [u8]) -> BenchResult<Option<BatchHeader<'a>>> {
    if records.len() < 12 {
        return Ok(None);
    }
    let mut c = Cursor { buf: records };
    let base_offset = c.i64()?;
    let batch_len = c.len()?;
    let Some(bytes) = records.get(..12 + batch_len) else {
        return Ok(None);
    };
    *records = &records[12 + batch_len..];
    if bytes.len() < BATCH_HEADER_BYTES || bytes[16] != 2 {
        return Err(format!("batch at {base_offset}: not a v2 batch"));
    }
    let mut h = Cursor { buf: &bytes[21..] };
    let attributes = h.i16()?;
    let last_offset_delta = h.i32()?;
    h.take(8 + 8 + 8 + 2 + 4)?; // timestamps, producer id/epoch, base sequence
    let count = h.i32()?;
    let end = base_offset
        .checked_add(i64::from(last_offset_delta) + 1)
        .ok_or_else(|| format!("batch at {base_offset}: offsets overflow"))?;
    Ok(Some(BatchHeader {
        base_offset,
        attributes,
        end,
        count,
        bytes,
    }))
}

/// Walks the batches of one partition's records from `next_offset`: checks
/// each batch's CRC-32C, walks every record of an uncompressed batch to its
/// key, value and headers, skips records before `next_offset` and stops at a
/// trailing partial batch. Returns the next offset to fetch.
fn walk_batches(mut records: &[u8], mut next_offset: i64, totals: &mut Totals) -> BenchResult<i64> {
    while let Some(batch) = next_batch(&mut records)? {
        let base_offset = batch.base_offset;
        let bytes = batch.bytes;
        let crc = u32::from_be_bytes([bytes[17], bytes[18], bytes[19], bytes[20]]);
        if crc32c::crc32c(&bytes[21..]) != crc {
            return Err(format!("batch at {base_offset}: CRC-32C mismatch"));
        }
        totals.batches += 1;
        totals.batch_bytes += bytes.len() as u64;
        let control = batch.attributes & 0x20 != 0;
        if batch.end <= next_offset || control {
            next_offset = next_offset.max(batch.end);
            continue;
        }
        if batch.attributes & 0x07 != 0 {
            // Compressed: a real client would decompress; counted from the header.
            totals.records += u64::try_from(batch.count).unwrap_or(0);
        } else {
            let mut r = Cursor {
                buf: &bytes[BATCH_HEADER_BYTES..],
            };
            for _ in 0..batch.count {
                let len = usize::try_from(r.varint()?).map_err(|_| "negative record length")?;
                let mut rec = Cursor { buf: r.take(len)? };
                rec.take(1)?; // attributes
                rec.varint()?; // timestamp delta
                let offset = base_offset
                    .checked_add(rec.varint()?)
                    .ok_or_else(|| format!("batch at {base_offset}: record offset overflows"))?;
                let key_len = rec.var_len()?;
                rec.take(key_len)?;
                let value_len = rec.var_len()?;
                rec.take(value_len)?;
                for _ in 0..rec.varint()? {
                    let k = rec.var_len()?;
                    rec.take(k)?;
                    let v = rec.var_len()?;
                    rec.take(v)?;
                }
                if offset >= next_offset {
                    totals.records += 1;
                    totals.value_bytes += value_len as u64;
                }
            }
        }
        next_offset = batch.end;
    }
    Ok(next_offset)
}

/// Walks only the batch headers of one partition's records from `next_offset`, as the
/// reading thread must before its next Fetch: returns the next offset to fetch and how many
/// records the whole batches hold from `next_offset` on (control batches hold none). The CRCs
/// and the records are left to `walk_batches`, which must come to the same offset.
fn next_offset_from_headers(mut records: &[u8], mut next_offset: i64) -> BenchResult<(i64, u64)> {
    let mut promised = 0u64;
    while let Some(batch) = next_batch(&mut records)? {
        if batch.end <= next_offset {
            continue;
        }
        if batch.attributes & 0x20 == 0 {
            let count = u64::try_from(batch.count).unwrap_or(0);
            promised += if batch.base_offset >= next_offset {
                count
            } else {
                // Fetched from inside the batch: the offsets left in it.
                u64::try_from(batch.end - next_offset)
                    .unwrap_or(0)
                    .min(count)
            };
        }
        next_offset = batch.end;
    }
    Ok((next_offset, promised))
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use compat_tests::batch::build_batch;
    use compat_tests::wire::topic_name;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::protocol::Encodable;

    /// A Fetch v11 response frame as kafka-protocol encodes it, with one
    /// partition holding `records`.
    fn response_frame(records: Vec<u8>) -> Vec<u8> {
        let response =
            FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                .with_topic(topic_name("t"))
                .with_partitions(vec![PartitionData::default()
                    .with_partition_index(2)
                    .with_high_watermark(10)
                    .with_records(Some(records.into()))])]);
        let mut buf = BytesMut::new();
        buf.put_i32(7);
        response
            .encode(&mut buf, FETCH_VERSION)
            .expect("encode a fetch response");
        buf.to_vec()
    }

    fn two_batches() -> Vec<u8> {
        let first = build_batch(&[(b"k0", b"value-0"), (b"k1", b"value-11")], 1000);
        let mut second = build_batch(&[(b"k2", b"v2")], 2000).to_vec();
        second[..8].copy_from_slice(&2i64.to_be_bytes()); // base offset 2 (outside the CRC)
        [first.to_vec(), second].concat()
    }

    #[test]
    fn parses_what_kafka_protocol_encodes_and_counts_every_record() {
        let frame = response_frame(two_batches());
        let parts = parse_fetch_response(&frame, 7).expect("parse");
        assert_eq!(parts.len(), 1);
        assert_eq!((parts[0].partition, parts[0].error_code), (2, 0));
        let mut totals = Totals::default();
        let next = walk_batches(parts[0].records, 0, &mut totals).expect("walk");
        assert_eq!(next, 3);
        assert_eq!(totals.records, 3);
        assert_eq!(totals.value_bytes, 7 + 8 + 2);
        assert_eq!(totals.batches, 2);
    }

    #[test]
    fn skips_records_before_the_fetch_offset_and_stops_at_a_partial_batch() {
        let records = two_batches();
        let mut totals = Totals::default();
        // From offset 1 and with the last byte of the second batch cut off.
        let next = walk_batches(&records[..records.len() - 1], 1, &mut totals).expect("walk");
        assert_eq!(next, 2);
        assert_eq!((totals.records, totals.value_bytes), (1, 8));
    }

    #[test]
    fn the_header_walk_comes_to_the_offset_and_count_the_full_walk_does() {
        let records = two_batches();
        for (cut, from) in [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2)] {
            let records = &records[..records.len() - cut];
            let mut totals = Totals::default();
            let walked = walk_batches(records, from, &mut totals).expect("walk");
            let (next, promised) = next_offset_from_headers(records, from).expect("headers");
            assert_eq!(
                (next, promised),
                (walked, totals.records),
                "cut {cut}, from {from}"
            );
        }
    }

    #[test]
    fn rejects_a_corrupt_batch_and_a_wrong_correlation_id() {
        let mut records = two_batches();
        let last = records.len() - 1;
        records[last] ^= 0xff;
        let err = walk_batches(&records, 0, &mut Totals::default()).expect_err("corrupt batch");
        assert!(err.contains("CRC-32C"), "{err}");
        let frame = response_frame(two_batches());
        assert!(parse_fetch_response(&frame, 8).is_err());
        assert!(parse_fetch_response(&frame[..frame.len() - 1], 7).is_err());
    }
}
