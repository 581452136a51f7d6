//! librdkafka (the `rdkafka` crate) clients configured for tests.
//!
//! Shared by the rdkafka and durability tests: short timeouts so a broker bug
//! fails fast, manual assignment (group consumers live in the
//! consumer_groups tests), and helpers that read a partition into plain `Vec`s
//! for comparison.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// How long admin operations may take.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// One record as read back: offset, key, value, timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// Offset in the partition.
    pub offset: i64,
    /// Key bytes, if any.
    pub key: Option<Vec<u8>>,
    /// Value bytes, if any.
    pub value: Option<Vec<u8>>,
    /// Record timestamp (ms), if any.
    pub timestamp: Option<i64>,
}

/// Base config every client shares.
fn base_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "sluice-compat-rdkafka")
        .set("socket.timeout.ms", "10000")
        .set("message.timeout.ms", "30000")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("broker.address.family", "v4");
    config
}

/// An acks=all producer with idempotence on, plus any `extra` settings.
pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut config = base_config(bootstrap);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    match config.create() {
        Ok(p) => p,
        Err(e) => panic!("cannot create an rdkafka producer: {e}"),
    }
}

/// A consumer without a group (manual assignment only).
pub fn consumer(bootstrap: &str) -> BaseConsumer {
    let mut config = base_config(bootstrap);
    config
        // librdkafka's assign() needs a group.id ("Local: Unknown group"
        // without one). It is never used for group APIs: no subscribe, no
        // commits, and offsets are never stored.
        .set("group.id", "sluice-compat-unused")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "error")
        .set("fetch.wait.max.ms", "100");
    match config.create() {
        Ok(c) => c,
        Err(e) => panic!("cannot create an rdkafka consumer: {e}"),
    }
}

/// An admin client.
pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    match base_config(bootstrap).create() {
        Ok(a) => a,
        Err(e) => panic!("cannot create an rdkafka admin client: {e}"),
    }
}

/// Admin options with our timeouts.
pub fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(ADMIN_TIMEOUT))
        .operation_timeout(Some(ADMIN_TIMEOUT))
}

/// Creates a topic (replication factor 1) and panics unless it succeeds.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin = admin(bootstrap);
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        new_topic = new_topic.set(k, v);
    }
    let results = match admin.create_topics([&new_topic], &admin_options()).await {
        Ok(r) => r,
        Err(e) => panic!("CreateTopics {topic} failed: {e}"),
    };
    for r in results {
        if let Err((name, code)) = r {
            panic!("CreateTopics {name} returned {code:?}");
        }
    }
}

/// Assigns `topic`/`partition` from `from` and reads until `count` records
/// arrived or `timeout` passed; returns what arrived.
pub fn consume_partition(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    from: Offset,
    count: usize,
    timeout: Duration,
) -> Vec<ConsumedRecord> {
    let mut tpl = TopicPartitionList::new();
    if let Err(e) = tpl.add_partition_offset(topic, partition, from) {
        panic!("cannot build an assignment: {e}");
    }
    if let Err(e) = consumer.assign(&tpl) {
        panic!("assign({topic}/{partition} from {from:?}) failed: {e}");
    }
    poll_records(consumer, count, timeout)
}

/// Polls an already-assigned consumer until `count` records arrived or
/// `timeout` passed. A consumer error fails the test.
pub fn poll_records(
    consumer: &BaseConsumer,
    count: usize,
    timeout: Duration,
) -> Vec<ConsumedRecord> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(count.min(100_000));
    while out.len() < count && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => out.push(ConsumedRecord {
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                timestamp: m.timestamp().to_millis(),
            }),
            Some(Err(e)) => panic!("consumer error after {} records: {e}", out.len()),
        }
    }
    out
}

/// Polls for `duration` and returns whatever arrives (used to prove that
/// nothing arrives).
pub fn poll_for(consumer: &BaseConsumer, duration: Duration) -> Vec<ConsumedRecord> {
    poll_records(consumer, usize::MAX, duration)
}
