//! A lean fixed-rate latency client for the benchmark's latency scenario: the
//! broker's produce-ack and end-to-end latency measured with a client that
//! does only what the scenario needs (no librdkafka, whose producer and
//! consumer threads hand every message on several times and, on two shared
//! cores, queue for the CPU with the broker).
//!
//! Like `latency_gen` it sends `--rate` messages per second of `--size` bytes
//! for `--duration-s` seconds, each in its own Produce request (v7, acks=all;
//! librdkafka with linger 0 sends about one message per request at this rate,
//! too), to the partitions in turn, on one connection without waiting for
//! answers; a second thread reads the answers in order. A consumer on a second
//! connection long-polls every partition (Fetch v11, `max_wait_ms` 500,
//! `min_bytes` 1, as `latency_gen` sets librdkafka). Both latencies run from
//! the message's due time in the fixed schedule (so a stalled sender counts
//! against the broker), which travels in the first 8 bytes of its value.
//! Messages due in the first `--warmup-s` seconds are not counted.
//!
//! ```text
//! latency_lean --bootstrap B --topic T [--partitions 3] [--rate 10000]
//!     [--duration-s 20] [--size 100] [--warmup-s 1]
//! ```
//! The topic should exist and be empty. Prints one JSON object shaped like
//! `latency_gen`'s.

#[path = "bench_support/mod.rs"]
mod bench_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bench_support::{sleep_until_due, Args, BenchResult, LatencyRun};
use bytes::Bytes;
use compat_tests::batch::parse_batch_headers;
use compat_tests::wire::{
    check_produce_answer, encode_body, fetch_request, topic_name, FetchLimits, RawConnection,
    FETCH_VERSION,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{FetchRequest, ProduceRequest};
use kafka_protocol::protocol::Request;
use kafka_protocol::records::RecordBatchDecoder;
use storage::BatchBuilder;

/// Produce v7: non-flexible, as librdkafka 2.x would pick below v9 on older brokers; any
/// version takes the same path in the broker.
const PRODUCE_VERSION: i16 = 7;
/// How long the consumer keeps reading after the last message was sent.
const DRAIN: Duration = Duration::from_secs(10);

fn main() {
    if let Err(e) = run() {
        eprintln!("latency_lean: {e}");
        std::process::exit(1);
    }
}

fn run() -> BenchResult<()> {
    let args = Args::parse()?;
    let bootstrap = args.required("bootstrap")?;
    let topic = args.required("topic")?;
    let partitions: i32 = args.get("partitions", 3)?;
    let rate: f64 = args.get("rate", 10_000.0)?;
    let duration_s: f64 = args.get("duration-s", 20.0)?;
    let size: usize = args.get("size", 100)?;
    let warmup_s: f64 = args.get("warmup-s", 1.0)?;
    if partitions < 1 || rate <= 0.0 || duration_s <= 0.0 || size < 16 {
        return Err("--partitions >= 1, --rate > 0, --duration-s > 0, --size >= 16".into());
    }
    let total = (rate * duration_s) as u64;
    let interval_ns = 1e9 / rate;
    let warmup_ns = (warmup_s * 1e9) as u64;

    let mut producer =
        RawConnection::connect(bootstrap.as_str()).map_err(|e| format!("connect: {e}"))?;
    let mut answers = producer
        .try_clone()
        .map_err(|e| format!("clone socket: {e}"))?;
    let mut consumer =
        RawConnection::connect(bootstrap.as_str()).map_err(|e| format!("connect: {e}"))?;
    let start = Instant::now();

    // Answers come in request order: the sender passes (correlation id, due time) along.
    let (sent_tx, sent_rx) = mpsc::channel::<(i32, u64)>();
    let ack_thread = std::thread::spawn(move || -> BenchResult<(Vec<u64>, u64)> {
        let mut latencies = Vec::with_capacity(total as usize);
        let mut acked = 0u64;
        while let Ok((correlation_id, due_ns)) = sent_rx.recv() {
            let frame = answers
                .read_frame()
                .map_err(|e| format!("read answer: {e}"))?
                .ok_or("the broker closed the producer connection")?;
            let now_ns = start.elapsed().as_nanos() as u64;
            // One partition per request.
            check_produce_answer(frame, PRODUCE_VERSION, correlation_id, 1)
                .map_err(|e| format!("answer {correlation_id}: {e}"))?;
            acked += 1;
            if due_ns >= warmup_ns {
                latencies.push(now_ns.saturating_sub(due_ns));
            }
        }
        Ok((latencies, acked))
    });

    let producing_done = Arc::new(AtomicBool::new(false));
    let consumer_thread = {
        let producing_done = Arc::clone(&producing_done);
        let topic = topic.clone();
        std::thread::spawn(move || -> BenchResult<(Vec<u64>, u64)> {
            let mut offsets: Vec<(i32, i64)> = (0..partitions).map(|p| (p, 0)).collect();
            let limits = FetchLimits {
                max_wait_ms: 500,
                min_bytes: 1,
                max_bytes: 52_428_800,
                partition_max_bytes: 1_048_576,
            };
            let mut e2e = Vec::with_capacity(total as usize);
            let mut consumed = 0u64;
            let mut drain_deadline: Option<Instant> = None;
            while consumed < total {
                if producing_done.load(Ordering::Relaxed)
                    && Instant::now()
                        > *drain_deadline.get_or_insert_with(|| Instant::now() + DRAIN)
                {
                    break;
                }
                let request: FetchRequest = fetch_request(&topic, &offsets, limits);
                let response = consumer
                    .call(&request, FETCH_VERSION)
                    .map_err(|e| format!("fetch: {e}"))?;
                let now_ns = start.elapsed().as_nanos() as u64;
                if response.error_code != 0 {
                    return Err(format!("Fetch error {}", response.error_code));
                }
                for p in response.responses.iter().flat_map(|t| &t.partitions) {
                    if p.error_code != 0 {
                        return Err(format!(
                            "partition {} error {}",
                            p.partition_index, p.error_code
                        ));
                    }
                    let Some(slot) = offsets.iter_mut().find(|(i, _)| *i == p.partition_index)
                    else {
                        return Err(format!("unexpected partition {}", p.partition_index));
                    };
                    let Some(records) = &p.records else { continue };
                    for (offset, value) in decode_values(records)? {
                        if offset < slot.1 {
                            continue;
                        }
                        slot.1 = offset + 1;
                        consumed += 1;
                        let due = value
                            .as_ref()
                            .and_then(|v| v.get(..8))
                            .and_then(|b| <[u8; 8]>::try_from(b).ok())
                            .map(u64::from_le_bytes);
                        if let Some(due_ns) = due.filter(|&d| d >= warmup_ns) {
                            e2e.push(now_ns.saturating_sub(due_ns));
                        }
                    }
                }
            }
            Ok((e2e, consumed))
        })
    };

    // The fixed schedule: message i is due at start + i * interval.
    let name = topic_name(&topic);
    let mut value = vec![b'x'; size];
    let mut sent = 0u64;
    let mut send_error = None;
    for i in 0..total {
        let due_ns = sleep_until_due(start, i, interval_ns);
        value[..8].copy_from_slice(&due_ns.to_le_bytes());
        value[8..16].copy_from_slice(&i.to_le_bytes());
        let timestamp_ms = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0),
        )
        .unwrap_or(0);
        let batch = BatchBuilder::new()
            .record(None, Some(&value), timestamp_ms)
            .build()
            .map_err(|e| format!("build batch: {e}"))?;
        let partition = i32::try_from(i % partitions as u64).unwrap_or(0);
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name.clone())
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(Bytes::from(batch)))])]);
        let body = encode_body(&request, PRODUCE_VERSION);
        match producer.send_request(ProduceRequest::KEY, PRODUCE_VERSION, &body) {
            Ok(correlation_id) => {
                if sent_tx.send((correlation_id, due_ns)).is_err() {
                    send_error = Some("the answer reader stopped".to_owned());
                    break;
                }
            }
            Err(e) => {
                send_error = Some(format!("send message {i}: {e}"));
                break;
            }
        }
        sent += 1;
    }
    let send_elapsed = start.elapsed().as_secs_f64();
    drop(sent_tx);
    let acks = ack_thread
        .join()
        .map_err(|_| "answer thread panicked".to_owned())?;
    producing_done.store(true, Ordering::Relaxed);
    let consumed = consumer_thread
        .join()
        .map_err(|_| "consumer thread panicked".to_owned())?;
    let (ack_latencies, acked, ack_error) = match acks {
        Ok((l, n)) => (l, n, None),
        Err(e) => (Vec::new(), 0, Some(e)),
    };
    let (e2e, consumed, consume_error) = match consumed {
        Ok((l, n)) => (l, n, None),
        Err(e) => (Vec::new(), 0, Some(e)),
    };
    LatencyRun {
        client: "latency_lean",
        topic: &topic,
        rate,
        duration_s,
        size,
        warmup_s,
        total,
        sent,
        acked,
        failed: 0,
        consumed,
        send_elapsed_s: send_elapsed,
        first_error: send_error.or(ack_error).or(consume_error),
        acks_ns: ack_latencies,
        e2e_ns: e2e,
    }
    .finish()
}

/// Every record of a fetch response's record bytes as (offset, value); a trailing partial
/// batch is skipped, an undecodable one is an error.
fn decode_values(data: &Bytes) -> BenchResult<Vec<(i64, Option<Bytes>)>> {
    let mut out = Vec::new();
    for header in parse_batch_headers(data) {
        let mut one = data.slice(header.position..header.end());
        let set = RecordBatchDecoder::decode(&mut one)
            .map_err(|e| format!("batch at {}: {e}", header.base_offset))?;
        out.extend(set.records.into_iter().map(|r| (r.offset, r.value)));
    }
    Ok(out)
}
