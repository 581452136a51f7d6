//! Fixed-rate latency generator for the benchmark (`compat-tests/bench/run.sh`),
//! on librdkafka through the `rdkafka` crate.
//!
//! Produces `--rate` messages per second of `--size` bytes for
//! `--duration-s` seconds with `--acks` (default all), and measures for
//! every message:
//! - produce-ack latency: from the moment the message was *due* (its slot in
//!   the fixed schedule, so a stalled sender counts against the broker, with
//!   no coordinated omission) to its delivery report;
//! - end-to-end latency: from the same moment to its arrival at a consumer
//!   in this process reading the topic (the due time travels in the payload).
//!
//! Messages due in the first `--warmup-s` seconds are not counted
//! (connection set-up, metadata). Prints one JSON object with p50/p99/p99.9
//! in microseconds.
//!
//! ```text
//! latency_gen --bootstrap B --topic T [--partitions 3] [--rate 10000]
//!     [--duration-s 20] [--size 100] [--acks all] [--linger-ms 0]
//!     [--warmup-s 1] [--set k=v ...]
//! ```
//! The topic should exist (with `--partitions` partitions) and be empty.

#[path = "bench_support/mod.rs"]
mod bench_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bench_support::{sleep_until_due, Args, BenchResult, LatencyRun};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

fn main() {
    if let Err(e) = run() {
        eprintln!("latency_gen: {e}");
        std::process::exit(1);
    }
}

/// Collects produce-ack latencies from delivery reports.
struct AckRecorder {
    /// Time zero of the schedule; opaque values are nanoseconds after it.
    start: Instant,
    /// Messages due before this many ns after `start` are warm-up.
    warmup_ns: u64,
    /// Produce-ack latencies (ns) of counted messages.
    latencies: Mutex<Vec<u64>>,
    acked: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for AckRecorder {}

impl ProducerContext for AckRecorder {
    /// When the message was due, in ns after `start`.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, due_ns: usize) {
        let now_ns = self.start.elapsed().as_nanos() as u64;
        match result {
            Ok(_) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
                let due_ns = due_ns as u64;
                if due_ns >= self.warmup_ns {
                    self.latencies
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(now_ns.saturating_sub(due_ns));
                }
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

fn base_config(args: &Args) -> BenchResult<ClientConfig> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", args.required("bootstrap")?)
        .set("client.id", "sluice-bench-latency-gen")
        .set("broker.address.family", "v4");
    Ok(config)
}

fn run() -> BenchResult<()> {
    let args = Args::parse()?;
    let topic = args.required("topic")?;
    let partitions: i32 = args.get("partitions", 3)?;
    let rate: f64 = args.get("rate", 10_000.0)?;
    let duration_s: f64 = args.get("duration-s", 20.0)?;
    let size: usize = args.get::<usize>("size", 100)?.max(16);
    let warmup_s: f64 = args.get("warmup-s", 1.0)?;
    if rate <= 0.0 || duration_s <= 0.0 {
        return Err("--rate and --duration-s must be positive".to_owned());
    }
    let total = (rate * duration_s).round() as u64;
    let interval_ns = 1e9 / rate;

    // Sleep precisely: the default 50 µs timer slack is half of the 100 µs
    // gap between messages at 10,000 msg/s.
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }

    let start = Instant::now();
    let recorder = AckRecorder {
        start,
        warmup_ns: (warmup_s * 1e9) as u64,
        latencies: Mutex::new(Vec::with_capacity(total as usize)),
        acked: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_error: Mutex::new(None),
    };
    let mut pconfig = base_config(&args)?;
    pconfig
        .set("acks", args.get("acks", "all".to_owned())?)
        // librdkafka's default linger (5 ms) is a throughput setting; a
        // latency test sends each message as soon as possible.
        .set("linger.ms", args.get("linger-ms", "0".to_owned())?)
        .set("message.timeout.ms", "30000");
    for (k, v) in args.sets() {
        pconfig.set(k, v);
    }
    let producer: ThreadedProducer<AckRecorder> = pconfig
        .create_with_context(recorder)
        .map_err(|e| format!("producer: {e}"))?;

    // The end-to-end consumer: every partition from the beginning, long
    // polling (the broker answers as soon as a record is durable).
    let mut cconfig = base_config(&args)?;
    cconfig
        .set("group.id", "sluice-bench-latency-unused")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "500")
        .set("fetch.min.bytes", "1");
    let consumer: BaseConsumer = cconfig.create().map_err(|e| format!("consumer: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)
            .map_err(|e| format!("assignment: {e}"))?;
    }
    consumer.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
    let producing_done = Arc::new(AtomicBool::new(false));
    let warmup_ns = (warmup_s * 1e9) as u64;
    let consumer_thread = {
        let producing_done = Arc::clone(&producing_done);
        std::thread::spawn(move || -> (Vec<u64>, u64, Option<String>) {
            let mut e2e = Vec::with_capacity(total as usize);
            let mut consumed = 0u64;
            let mut drain_deadline: Option<Instant> = None;
            while consumed < total {
                if producing_done.load(Ordering::Relaxed) {
                    let deadline = *drain_deadline
                        .get_or_insert_with(|| Instant::now() + Duration::from_secs(10));
                    if Instant::now() > deadline {
                        break;
                    }
                }
                match consumer.poll(Duration::from_millis(50)) {
                    None => {}
                    Some(Ok(m)) => {
                        let now_ns = start.elapsed().as_nanos() as u64;
                        consumed += 1;
                        let due = m
                            .payload()
                            .and_then(|p| p.get(..8))
                            .and_then(|b| <[u8; 8]>::try_from(b).ok())
                            .map(u64::from_le_bytes);
                        if let Some(due_ns) = due {
                            if due_ns >= warmup_ns {
                                e2e.push(now_ns.saturating_sub(due_ns));
                            }
                        }
                    }
                    Some(Err(e)) => return (e2e, consumed, Some(e.to_string())),
                }
            }
            (e2e, consumed, None)
        })
    };

    // The fixed schedule: message i is due at start + i * interval.
    let mut payload = vec![b'x'; size];
    let mut sent = 0u64;
    let mut send_error: Option<String> = None;
    'schedule: for i in 0..total {
        let due_ns = sleep_until_due(start, i, interval_ns);
        payload[..8].copy_from_slice(&due_ns.to_le_bytes());
        payload[8..16].copy_from_slice(&i.to_le_bytes());
        let mut record = BaseRecord::<(), [u8], usize>::with_opaque_to(&topic, due_ns as usize)
            .payload(payload.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err((e, _)) => {
                    send_error = Some(format!("send message {i}: {e}"));
                    break 'schedule;
                }
            }
        }
        sent += 1;
    }
    let send_elapsed = start.elapsed().as_secs_f64();
    let _ = producer.flush(Duration::from_secs(30));
    producing_done.store(true, Ordering::Relaxed);
    let (e2e, consumed, consume_error) = consumer_thread
        .join()
        .map_err(|_| "consumer thread panicked".to_owned())?;

    let ctx = producer.context();
    let acked = ctx.acked.load(Ordering::Relaxed);
    let failed = ctx.failed.load(Ordering::Relaxed);
    let acks = std::mem::take(&mut *ctx.latencies.lock().unwrap_or_else(|p| p.into_inner()));
    let first_error = ctx
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .or(send_error)
        .or(consume_error);
    LatencyRun {
        client: "latency_gen",
        topic: &topic,
        rate,
        duration_s,
        size,
        warmup_s,
        total,
        sent,
        acked,
        failed,
        consumed,
        send_elapsed_s: send_elapsed,
        first_error,
        acks_ns: acks,
        e2e_ns: e2e,
    }
    .finish()
}
