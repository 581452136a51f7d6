//! Throughput load generator for the benchmark (`compat-tests/bench/run.sh`),
//! on librdkafka through the `rdkafka` crate. Used where
//! `rdkafka_performance` cannot do the job (realistic compressible payloads,
//! reading many partitions, consumer groups) and for the CI smoke, which
//! must not need librdkafka's own configure/make build.
//!
//! ```text
//! load_gen create-topic --bootstrap B --topic T --partitions P [--replication-factor R] [--min-insync-replicas M]
//!          [--configs k=v,k=v]
//! load_gen delete-topic --bootstrap B --topic T[,T...]
//! load_gen produce --bootstrap B --topic T --count N --size S
//!          [--payload json|random] [--compression none|lz4|zstd|...]
//!          [--acks all] [--linger-ms 5] [--rate MSGS_PER_S] [--set k=v ...] [--max-s 300]
//! load_gen consume --bootstrap B --topic T --partitions P --count N
//!          [--group G] [--set k=v ...] [--max-s 300]
//! ```
//!
//! `--rate` paces `produce` to that many messages per second (default: as fast as the
//! client goes). Each prints one JSON object on stdout. `consume` without `--group` assigns
//! every partition from the earliest offset (no group APIs); with `--group`
//! it subscribes as a member of that consumer group.

#[path = "bench_support/mod.rs"]
mod bench_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bench_support::{json_f64, json_str, mb, payload_pool, Args, BenchResult, PayloadKind};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

/// Payloads in the pool (cycled in order): more than one batch holds.
const POOL_SIZE: usize = 8192;

fn main() {
    let result = Args::parse().and_then(|args| match args.command() {
        Some("create-topic") => create_topic(&args),
        Some("produce") => produce(&args),
        Some("delete-topic") => delete_topics(&args),
        Some("consume") => consume(&args),
        other => Err(format!(
            "unknown command {other:?}: create-topic, delete-topic, produce or consume"
        )),
    });
    if let Err(e) = result {
        eprintln!("load_gen: {e}");
        std::process::exit(1);
    }
}

/// Client settings every mode shares, then the `--set` overrides.
fn client_config(args: &Args) -> BenchResult<ClientConfig> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", args.required("bootstrap")?)
        .set("client.id", "sluice-bench-load-gen")
        .set("broker.address.family", "v4");
    for (k, v) in args.sets() {
        config.set(k, v);
    }
    Ok(config)
}

/// An admin client, a runtime to wait on its answers, and the options every request uses.
fn admin_client(
    args: &Args,
) -> BenchResult<(
    AdminClient<DefaultClientContext>,
    tokio::runtime::Runtime,
    AdminOptions,
)> {
    let admin: AdminClient<DefaultClientContext> = client_config(args)?
        .create()
        .map_err(|e| format!("admin client: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
    Ok((admin, runtime, options))
}

fn create_topic(args: &Args) -> BenchResult<()> {
    let topic = args.required("topic")?;
    let partitions: i32 = args.get("partitions", 3)?;
    let replication: i32 = args.get("replication-factor", 1)?;
    let min_isr: String = args.get("min-insync-replicas", String::new())?;
    let min_isr = Some(min_isr).filter(|v| !v.is_empty());
    let (admin, runtime, options) = admin_client(args)?;
    let mut new_topic = NewTopic::new(&topic, partitions, TopicReplication::Fixed(replication));
    if let Some(v) = min_isr.as_deref() {
        new_topic = new_topic.set("min.insync.replicas", v);
    }
    let configs: String = args.get("configs", String::new())?;
    for pair in configs.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("--configs: {pair:?} is not k=v"))?;
        new_topic = new_topic.set(k, v);
    }
    let results = runtime
        .block_on(admin.create_topics([&new_topic], &options))
        .map_err(|e| format!("CreateTopics {topic}: {e}"))?;
    for r in results {
        r.map_err(|(name, code)| format!("CreateTopics {name}: {code:?}"))?;
    }
    println!(
        "{{\"topic\":{},\"partitions\":{partitions}}}",
        json_str(&topic)
    );
    Ok(())
}

/// Deletes the topics named in `--topic` (comma-separated) and waits for the answer: the
/// benchmark frees a finished scenario's log (and its page cache) before the next one.
fn delete_topics(args: &Args) -> BenchResult<()> {
    let names = args.required("topic")?;
    let topics: Vec<&str> = names.split(',').filter(|t| !t.is_empty()).collect();
    let (admin, runtime, options) = admin_client(args)?;
    let results = runtime
        .block_on(admin.delete_topics(&topics, &options))
        .map_err(|e| format!("DeleteTopics {names}: {e}"))?;
    for r in results {
        r.map_err(|(name, code)| format!("DeleteTopics {name}: {code:?}"))?;
    }
    println!("{{\"deleted\":{}}}", topics.len());
    Ok(())
}

/// Counts delivery reports.
#[derive(Default)]
struct DeliveryCounter {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

fn produce(args: &Args) -> BenchResult<()> {
    let topic = args.required("topic")?;
    let count: u64 = args.get("count", 100_000)?;
    let size: usize = args.get("size", 1024)?;
    let kind: PayloadKind = args.get("payload", PayloadKind::Json)?;
    let compression = args.get("compression", "none".to_owned())?;
    let max = Duration::from_secs_f64(args.get("max-s", 300.0)?);
    let rate: f64 = args.get("rate", 0.0)?;
    let mut config = client_config(args)?;
    config
        .set("acks", args.get("acks", "all".to_owned())?)
        .set("linger.ms", args.get("linger-ms", "5".to_owned())?)
        .set("compression.codec", &compression)
        .set("message.timeout.ms", "120000");
    // `--set` wins over the defaults above.
    for (k, v) in args.sets() {
        config.set(k, v);
    }
    let producer: BaseProducer<DeliveryCounter> = config
        .create_with_context(DeliveryCounter::default())
        .map_err(|e| format!("producer: {e}"))?;
    let pool = payload_pool(kind, size, POOL_SIZE, 42);

    let start = Instant::now();
    let mut timed_out = false;
    'messages: for i in 0..count {
        if rate > 0.0 {
            // Message i is due i/rate seconds after the start; serve callbacks until then.
            let due = Duration::from_secs_f64(i as f64 / rate);
            while let Some(wait) = due.checked_sub(start.elapsed()) {
                producer.poll(wait.min(Duration::from_millis(5)));
            }
        }
        let payload = pool.get(i as usize % pool.len()).ok_or("empty pool")?;
        let mut record = BaseRecord::<(), [u8], ()>::to(&topic).payload(payload.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(5));
                    if start.elapsed() > max {
                        timed_out = true;
                        break 'messages;
                    }
                }
                Err((e, _)) => return Err(format!("produce message {i}: {e}")),
            }
        }
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    let remaining = max
        .saturating_sub(start.elapsed())
        .max(Duration::from_secs(1));
    let flushed = producer.flush(remaining).is_ok();
    let elapsed = start.elapsed().as_secs_f64();
    let ctx = producer.context();
    let delivered = ctx.delivered.load(Ordering::Relaxed);
    let failed = ctx.failed.load(Ordering::Relaxed);
    let first_error = ctx
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_default();
    let bytes = delivered * size as u64;
    println!(
        "{{\"mode\":\"produce\",\"topic\":{},\"count\":{count},\"size\":{size},\"payload\":\"{:?}\",\
         \"compression\":{},\"delivered\":{delivered},\"failed\":{failed},\"first_error\":{},\
         \"complete\":{},\"seconds\":{},\"msgs_per_s\":{},\"payload_bytes\":{bytes},\"mb_per_s\":{}}}",
        json_str(&topic),
        kind,
        json_str(&compression),
        json_str(&first_error),
        flushed && !timed_out && delivered == count,
        json_f64(elapsed),
        json_f64(delivered as f64 / elapsed),
        json_f64(mb(bytes) / elapsed)
    );
    if failed > 0 || delivered < count {
        return Err(format!(
            "{delivered} of {count} delivered, {failed} failed (first error: {first_error})"
        ));
    }
    Ok(())
}

fn consume(args: &Args) -> BenchResult<()> {
    let topic = args.required("topic")?;
    let partitions: i32 = args.get("partitions", 3)?;
    let count: u64 = args.get("count", 100_000)?;
    let max = Duration::from_secs_f64(args.get("max-s", 300.0)?);
    let group = args.get("group", String::new())?;
    let mut config = client_config(args)?;
    config
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest");
    if group.is_empty() {
        // assign() needs a group.id in librdkafka; no group API is used.
        config.set("group.id", "sluice-bench-unused");
    } else {
        config.set("group.id", &group);
    }
    for (k, v) in args.sets() {
        config.set(k, v);
    }
    let consumer: BaseConsumer = config.create().map_err(|e| format!("consumer: {e}"))?;
    let start = Instant::now();
    if group.is_empty() {
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .map_err(|e| format!("assignment: {e}"))?;
        }
        consumer.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
    } else {
        consumer
            .subscribe(&[&topic])
            .map_err(|e| format!("subscribe: {e}"))?;
    }
    let mut msgs = 0u64;
    let mut bytes = 0u64;
    let mut first: Option<Instant> = None;
    while msgs < count && start.elapsed() < max {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                msgs += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(e)) => return Err(format!("consumer error after {msgs} messages: {e}")),
        }
    }
    let end = Instant::now();
    let total = end.duration_since(start).as_secs_f64();
    // Throughput counts from the first message, as rdkafka_performance does:
    // group join and the first fetch's set-up are not read speed.
    let reading = first
        .map(|f| end.duration_since(f).as_secs_f64())
        .unwrap_or(total)
        .max(1e-9);
    println!(
        "{{\"mode\":\"consume\",\"topic\":{},\"group\":{},\"count\":{count},\"msgs\":{msgs},\
         \"bytes\":{bytes},\"complete\":{},\"seconds\":{},\"seconds_total\":{},\
         \"msgs_per_s\":{},\"mb_per_s\":{}}}",
        json_str(&topic),
        json_str(&group),
        msgs >= count,
        json_f64(reading),
        json_f64(total),
        json_f64(msgs as f64 / reading),
        json_f64(mb(bytes) / reading)
    );
    if msgs < count {
        return Err(format!("read {msgs} of {count} messages within {max:?}"));
    }
    Ok(())
}
