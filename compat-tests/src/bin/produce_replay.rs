//! Replays pre-built Produce requests at a fixed pace, for the benchmark's
//! compressed-produce comparison: what compression costs the broker per wire
//! byte, with nothing else different.
//!
//! A librdkafka producer that compresses is busy compressing, so its requests
//! come at another size and pace than an uncompressed producer's, and on two
//! shared cores its own CPU use slows the broker too. Here every request is
//! built before the clock starts (`--distinct` different ones, cycled): one
//! v2 batch per partition of 1 KiB JSON-like records (the bench's `json`
//! payload), compressed with `--compression` and sized so the request is about
//! `--request-bytes` on the wire whatever the codec. They are sent on one
//! connection at `--rate` requests per second with at most `--depth` awaiting
//! their acks=all answer (Produce v7, the first version zstd may use), and
//! every answer must cover every partition, without error. Two runs with the same
//! size, count and rate then differ only in the bytes inside the batches.
//!
//! ```text
//! produce_replay --bootstrap B --topic T [--partitions 3] [--compression none|lz4|zstd]
//!     [--request-bytes 393216] [--requests 500] [--rate 100] [--depth 5] [--distinct 8]
//!     [--max-s 120]
//! ```
//! Prints one JSON object: requests, records, wire_bytes (request frames),
//! seconds, req_per_s, mb_per_s (wire), records_per_request.

#[path = "bench_support/mod.rs"]
mod bench_support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use bench_support::{json_f64, json_str, mb, payload_pool, Args, BenchResult, PayloadKind};
use bytes::Bytes;
use compat_tests::wire::{
    check_produce_answer, encode_body, encode_request_header, topic_name, RawConnection,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::protocol::Request;
use storage::{BatchBuilder, Compression};

/// Produce v7: non-flexible, and the first version a zstd batch may be sent with.
const PRODUCE_VERSION: i16 = 7;
/// Bytes of each record's value (the bench's 1 KiB messages).
const RECORD_BYTES: usize = 1024;
/// Distinct payloads to draw records from (more than a batch holds).
const POOL_SIZE: usize = 4096;
/// Sizing passes: each rescales the record count by target / size reached.
const SIZING_PASSES: usize = 4;

fn main() {
    if let Err(e) = run() {
        eprintln!("produce_replay: {e}");
        std::process::exit(1);
    }
}

fn codec(name: &str) -> BenchResult<Compression> {
    match name {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "snappy" => Ok(Compression::Snappy),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        other => Err(format!("unknown compression {other}")),
    }
}

fn run() -> BenchResult<()> {
    let args = Args::parse()?;
    let bootstrap = args.required("bootstrap")?;
    let topic = args.required("topic")?;
    let partitions: i32 = args.get("partitions", 3)?;
    let codec_name = args.get("compression", "none".to_owned())?;
    let compression = codec(&codec_name)?;
    let request_bytes: usize = args.get("request-bytes", 384 * 1024)?;
    let requests: u64 = args.get("requests", 500)?;
    let rate: f64 = args.get("rate", 100.0)?;
    let depth: usize = args.get("depth", 5)?;
    let distinct: usize = args.get("distinct", 8)?;
    let max = Duration::from_secs_f64(args.get("max-s", 120.0)?);
    if partitions < 1 || depth < 1 || distinct < 1 || requests < 1 {
        return Err("--partitions, --depth, --distinct and --requests must be >= 1".into());
    }
    let partition_count = usize::try_from(partitions).map_err(|_| "--partitions")?;
    let batch_target = request_bytes / partition_count;

    let pool = payload_pool(PayloadKind::Json, RECORD_BYTES, POOL_SIZE, 42);
    // Records carry the time they were built (old timestamps would make the segments due for
    // time retention at once).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| format!("clock: {e}"))?
        .as_millis();
    let now_ms = i64::try_from(now_ms).map_err(|_| "clock out of range")?;
    let mut next_payload = 0usize;
    let mut bodies = Vec::with_capacity(distinct);
    let mut records_per_body = Vec::with_capacity(distinct);
    for _ in 0..distinct {
        let mut data = Vec::with_capacity(partition_count);
        let mut records = 0u64;
        for p in 0..partitions {
            let (batch, n) =
                sized_batch(compression, &pool, &mut next_payload, batch_target, now_ms)?;
            records += n as u64;
            data.push(
                PartitionProduceData::default()
                    .with_index(p)
                    .with_records(Some(Bytes::from(batch))),
            );
        }
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(&topic))
                .with_partition_data(data)]);
        bodies.push(encode_body(&request, PRODUCE_VERSION));
        records_per_body.push(records);
    }

    let mut sender = RawConnection::connect(bootstrap.as_str())
        .map_err(|e| format!("connect {bootstrap}: {e}"))?;
    let mut receiver = sender
        .try_clone()
        .map_err(|e| format!("clone socket: {e}"))?;
    // `depth` permits: the sender takes one before each request, the reader gives it back
    // after the answer, so at most `depth` await theirs. The sent ids go to the reader.
    let (permit_tx, permits) = mpsc::sync_channel::<()>(depth);
    for _ in 0..depth {
        permit_tx.send(()).map_err(|_| "permit channel closed")?;
    }
    let (slots, slot_rx) = mpsc::channel::<i32>();
    let reader = std::thread::spawn(move || -> BenchResult<u64> {
        let mut answered = 0u64;
        while let Ok(correlation_id) = slot_rx.recv() {
            let frame = receiver
                .read_frame()
                .map_err(|e| format!("read answer: {e}"))?
                .ok_or("the broker closed the connection")?;
            check_produce_answer(frame, PRODUCE_VERSION, correlation_id, partition_count)
                .map_err(|e| format!("answer {correlation_id}: {e}"))?;
            answered += 1;
            // The sender may have stopped; then nobody needs the permit.
            let _ = permit_tx.send(());
        }
        Ok(answered)
    });

    let header_bytes = encode_request_header(ProduceRequest::KEY, PRODUCE_VERSION, 0).len();
    let start = Instant::now();
    let interval = if rate > 0.0 {
        Duration::from_secs_f64(1.0 / rate)
    } else {
        Duration::ZERO
    };
    let mut wire_bytes = 0u64;
    let mut records = 0u64;
    let mut send_error = None;
    for i in 0..requests {
        if start.elapsed() > max {
            send_error = Some(format!("sent {i} of {requests} requests in {max:?}"));
            break;
        }
        let due = interval.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        if permits.recv().is_err() {
            break; // the reader stopped: its error is reported below
        }
        let slot = usize::try_from(i % distinct as u64).unwrap_or(0);
        let (Some(body), Some(n)) = (bodies.get(slot), records_per_body.get(slot)) else {
            break;
        };
        let correlation_id = match sender.send_request(ProduceRequest::KEY, PRODUCE_VERSION, body) {
            Ok(id) => id,
            Err(e) => {
                send_error = Some(format!("send: {e}"));
                break;
            }
        };
        wire_bytes += (4 + header_bytes + body.len()) as u64;
        records += n;
        if slots.send(correlation_id).is_err() {
            break;
        }
    }
    drop(slots);
    let answered = reader.join().map_err(|_| "reader thread panicked")?;
    let seconds = start.elapsed().as_secs_f64();
    if let Some(e) = send_error {
        return Err(e);
    }
    let answered = answered?;
    if answered != requests {
        return Err(format!("{answered} of {requests} requests answered"));
    }
    println!(
        "{{\"compression\":{},\"requests\":{requests},\"records\":{records},\"wire_bytes\":{wire_bytes},\"seconds\":{},\"req_per_s\":{},\"mb_per_s\":{},\"records_per_request\":{}}}",
        json_str(&codec_name),
        json_f64(seconds),
        json_f64(requests as f64 / seconds),
        json_f64(mb(wire_bytes) / seconds),
        json_f64(records as f64 / requests as f64)
    );
    Ok(())
}

/// One batch of JSON records, as near `target` bytes as a few rescalings of the record count
/// get (compression ratios vary from batch to batch); returns it and its record count.
fn sized_batch(
    compression: Compression,
    pool: &[Vec<u8>],
    next: &mut usize,
    target: usize,
    timestamp_ms: i64,
) -> BenchResult<(Vec<u8>, usize)> {
    let mut count = (target / RECORD_BYTES).max(1);
    let first = *next;
    let mut batch = Vec::new();
    let mut built = 0usize;
    for _ in 0..SIZING_PASSES {
        let mut builder = BatchBuilder::new().compression(compression);
        for i in 0..count {
            let value = pool
                .get((first + i) % pool.len())
                .ok_or("empty payload pool")?;
            builder = builder.record(None, Some(value), timestamp_ms);
        }
        batch = builder.build().map_err(|e| format!("build batch: {e}"))?;
        built = count;
        let scaled = (count as f64 * target as f64 / batch.len().max(1) as f64).round() as usize;
        if scaled.max(1) == count {
            break;
        }
        count = scaled.max(1);
    }
    *next = first + built;
    Ok((batch, built))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_valid_and_near_the_target_size_for_every_codec() {
        let pool = payload_pool(PayloadKind::Json, RECORD_BYTES, 512, 7);
        for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let mut next = 0;
            let target = 128 * 1024;
            let (batch, count) = sized_batch(codec, &pool, &mut next, target, 0).unwrap();
            let header = storage::batch::validate_produce(&batch, 1 << 20).unwrap();
            assert_eq!(header.records_count(), i32::try_from(count).unwrap());
            assert_eq!(
                next, count,
                "the next batch starts after this one's records"
            );
            let off = batch.len().abs_diff(target) as f64 / target as f64;
            assert!(
                off < 0.05,
                "{codec:?}: {} bytes for a {target} target",
                batch.len()
            );
            if codec != Compression::None {
                assert!(
                    count > target / RECORD_BYTES,
                    "{codec:?} packs more records"
                );
            }
        }
    }
}
