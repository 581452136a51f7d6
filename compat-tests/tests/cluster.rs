//! A three-node cluster of real `sluice` processes (controller + broker each) driven by
//! librdkafka: replication, leader failover under an idempotent acks=all load, a paused
//! follower leaving and rejoining the ISR, the active controller's death, losing two of
//! three nodes, follower fetch sessions as topics come and go, and CreateTopics' checks
//! through the controller. The figures (acknowledged-but-lost, failover and ISR times) are printed for
//! the README's reliability section.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use compat_tests::cluster::{PartitionInfo, TestCluster};
use compat_tests::load::{numbered_load, Acked};
use compat_tests::rdk;
use compat_tests::unique_topic;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::Offset;

async fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    rf: i32,
    configs: &[(&str, &str)],
) {
    let admin = rdk::admin(bootstrap);
    let mut t = NewTopic::new(topic, partitions, TopicReplication::Fixed(rf));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let results = admin
        .create_topics([&t], &rdk::admin_options())
        .await
        .unwrap();
    for r in results {
        if let Err((name, code)) = r {
            panic!("CreateTopics {name}: {code:?}");
        }
    }
}

/// A new one-partition topic with three replicas and `min.insync.replicas=2` on `cluster`,
/// once all three are in its ISR: the topic's name and its partition as Metadata shows it.
async fn one_partition_on_three(cluster: &TestCluster, prefix: &str) -> (String, PartitionInfo) {
    let topic = unique_topic(prefix);
    create_topic(
        &cluster.bootstrap(),
        &topic,
        1,
        3,
        &[("min.insync.replicas", "2")],
    )
    .await;
    cluster.wait_for_partitions(&topic, Duration::from_secs(30), "full ISR", |ps| {
        ps.len() == 1 && ps.first().is_some_and(|p| p.isr.len() == 3)
    });
    // A fresh client's Metadata can time out (3 s) on a loaded machine: asked again.
    let deadline = Instant::now() + Duration::from_secs(30);
    let part = loop {
        if let Some(p) = TestCluster::partitions(&cluster.metadata_client(), &topic)
            .and_then(|ps| ps.first().cloned())
        {
            break p;
        }
        assert!(Instant::now() < deadline, "no metadata for {topic}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    (topic, part)
}

/// Waits until the high watermark of `topic`/`partition` reaches `at_least`, then reads every
/// record below it; values as strings.
fn read_partition(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    at_least: i64,
) -> Vec<(i64, String)> {
    let consumer = rdk::consumer(bootstrap);
    let deadline = Instant::now() + Duration::from_secs(60);
    let high = loop {
        let high = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .map(|(_, h)| h)
            .unwrap_or(-1);
        if high >= at_least || Instant::now() > deadline {
            break high;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if high == 0 {
        return Vec::new();
    }
    let records = rdk::consume_partition(
        &consumer,
        topic,
        partition,
        Offset::Beginning,
        usize::try_from(high).unwrap(),
        Duration::from_secs(60),
    );
    records
        .into_iter()
        .map(|r| {
            (
                r.offset,
                String::from_utf8(r.value.unwrap_or_default()).unwrap(),
            )
        })
        .collect()
}

/// The concatenated `.log` segments of one partition directory.
fn log_bytes(dir: &Path) -> Vec<u8> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    names.sort();
    names
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Produces `value` to `topic`/`partition` and returns when it was acknowledged.
async fn send_to(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    value: String,
    timeout: Duration,
) -> Result<Instant, KafkaError> {
    producer
        .send(
            FutureRecord::<(), _>::to(topic)
                .partition(partition)
                .payload(&value),
            Timeout::After(timeout),
        )
        .await
        .map(|_| Instant::now())
        .map_err(|(e, _)| e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_under_load_loses_no_acknowledged_record() {
    const PARTITIONS: i32 = 6;
    const KILLS: usize = 4;
    let mut cluster = TestCluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    let topic = unique_topic("failover");
    create_topic(
        &bootstrap,
        &topic,
        PARTITIONS,
        3,
        &[("min.insync.replicas", "2")],
    )
    .await;
    cluster.wait_for_partitions(&topic, Duration::from_secs(30), "full ISR", |ps| {
        ps.len() == 6 && ps.iter().all(|p| p.isr.len() == 3)
    });

    let producer: FutureProducer = rdk::producer(
        &bootstrap,
        &[("message.timeout.ms", "60000"), ("linger.ms", "2")],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::new(Mutex::new(Vec::new()));
    let load = {
        let (producer, stop, acked, topic) = (
            producer.clone(),
            Arc::clone(&stop),
            Arc::clone(&acked),
            topic.clone(),
        );
        tokio::spawn(async move {
            numbered_load(&producer, &topic, PARTITIONS, 60, &stop, &acked).await
        })
    };

    let client = cluster.metadata_client();
    let mut kills: Vec<(Instant, i32)> = Vec::new();
    for round in 0..KILLS {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let partition = i32::try_from(round).unwrap() % PARTITIONS;
        let parts = TestCluster::partitions_listed(&client, &topic);
        let leader = parts[usize::try_from(partition).unwrap()].leader;
        assert!(leader > 0, "partition {partition} has no leader: {parts:?}");
        eprintln!("round {round}: kill -9 node {leader}, leader of partition {partition}");
        cluster.node(leader).kill9();
        kills.push((Instant::now(), partition));
        tokio::time::sleep(Duration::from_secs(5)).await;
        cluster.node(leader).restart();
        cluster.wait_for_partitions(&topic, Duration::from_secs(60), "ISR full again", |ps| {
            ps.iter().all(|p| p.isr.len() == 3)
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let (sent, failed) = load.await.unwrap();
    producer
        .flush(Timeout::After(Duration::from_secs(30)))
        .unwrap();
    let acked = acked.lock().unwrap().clone();
    eprintln!("sent {sent}, acknowledged {}, failed {failed}", acked.len());
    assert!(
        acked.len() > 1000,
        "too few records acknowledged: {}",
        acked.len()
    );

    // Failover time: from a kill until the partition acknowledges a record again (the dead
    // leader cannot; anything acknowledged after it died was written by its successor).
    let mut failovers: Vec<Duration> = kills
        .iter()
        .filter_map(|(t, p)| {
            acked
                .iter()
                .filter(|a| a.partition == *p && a.at > *t + Duration::from_millis(20))
                .map(|a| a.at.duration_since(*t))
                .min()
        })
        .collect();
    failovers.sort();
    assert_eq!(
        failovers.len(),
        KILLS,
        "a partition never accepted writes again after its leader died"
    );

    cluster.wait_for_partitions(
        &topic,
        Duration::from_secs(60),
        "ISR full at the end",
        |ps| ps.iter().all(|p| p.isr.len() == 3),
    );
    let mut lost = 0usize;
    let mut total = 0usize;
    for p in 0..PARTITIONS {
        let want = i64::try_from(acked.iter().filter(|a| a.partition == p).count()).unwrap();
        let records = read_partition(&bootstrap, &topic, p, want);
        total += records.len();
        let seqs: Vec<u64> = records.iter().map(|(_, v)| v.parse().unwrap()).collect();
        let unique: HashSet<u64> = seqs.iter().copied().collect();
        assert_eq!(
            unique.len(),
            seqs.len(),
            "partition {p} holds a record twice"
        );
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "partition {p} is out of order"
        );
        lost += acked
            .iter()
            .filter(|a| a.partition == p && !unique.contains(&a.seq))
            .count();
    }
    eprintln!(
        "FIGURES failover: acknowledged {} lost {lost}; failover time p50 {:?} max {:?} over {KILLS} leader kills; {total} records stored",
        acked.len(),
        percentile(&failovers, 0.5),
        failovers.last().copied().unwrap_or_default()
    );
    assert_eq!(lost, 0, "acknowledged records were lost");

    // Every replica holds the same log.
    let dirs: Vec<_> = cluster
        .nodes
        .iter()
        .map(|n| n.data_dir().to_path_buf())
        .collect();
    for node in &mut cluster.nodes {
        assert!(node.terminate().success());
    }
    for p in 0..PARTITIONS {
        let logs: Vec<Vec<u8>> = dirs
            .iter()
            .map(|d| log_bytes(&d.join(format!("{topic}-{p}"))))
            .collect();
        assert!(!logs[0].is_empty());
        assert!(
            logs.iter().all(|l| *l == logs[0]),
            "replicas of partition {p} differ"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_follower_leaves_and_rejoins_the_isr() {
    // The session timeout is longer than the lag limit, so the follower leaves the ISR through
    // the leader's lag check (AlterPartition), not through fencing.
    let mut cluster = TestCluster::start(
        3,
        &[
            ("broker.session.timeout.ms", "15000"),
            ("replica.lag.time.max.ms", "3000"),
        ],
    );
    let bootstrap = cluster.bootstrap();
    let (topic, part) = one_partition_on_three(&cluster, "paused").await;
    let follower = *part.replicas.iter().find(|r| **r != part.leader).unwrap();
    let producer = rdk::producer(&bootstrap, &[("message.timeout.ms", "30000")]);
    let send = |i: u64| send_to(&producer, &topic, 0, i.to_string(), Duration::from_secs(30));
    for i in 0..100 {
        send(i).await.unwrap();
    }
    cluster.node(follower).pause();
    let shrink = cluster.wait_for_partitions(&topic, Duration::from_secs(30), "ISR shrink", |ps| {
        ps.first()
            .is_some_and(|p| !p.isr.contains(&follower) && p.isr.len() == 2)
    });
    // acks=all goes on: the ISR (leader + the other follower) still meets min.insync.replicas.
    for i in 100..200 {
        send(i).await.unwrap();
    }
    let under = "sluice_under_replicated_partitions";
    // This partition, and the leader's __consumer_offsets partitions the paused node follows.
    let during = cluster.metric(part.leader, under);
    assert!(
        during.is_some_and(|v| v >= 1.0),
        "{under} on the leader: {during:?}"
    );
    cluster.node(follower).resume();
    let expand = cluster.wait_for_partitions(&topic, Duration::from_secs(60), "ISR expand", |ps| {
        ps.first().is_some_and(|p| p.isr.contains(&follower))
    });
    // The leader learns the ISR from the controller a moment after Metadata shows it, and the
    // offsets partitions rejoin on their own schedule.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while cluster.metric(part.leader, under) != Some(0.0) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        cluster.metric(part.leader, under),
        Some(0.0),
        "{under} after the rejoin"
    );
    for i in 200..300 {
        send(i).await.unwrap();
    }
    eprintln!(
        "FIGURES isr: follower {follower} left the ISR {shrink:?} after SIGSTOP (replica.lag.time.max.ms=3000, broker.session.timeout.ms=15000); rejoined {expand:?} after SIGCONT"
    );
    let records = read_partition(&bootstrap, &topic, 0, 300);
    let values: Vec<u64> = records.iter().map(|(_, v)| v.parse().unwrap()).collect();
    assert_eq!(values, (0..300).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_active_controller_elects_another() {
    // Preferred leaders are restored every 2 s here (Kafka's default: 300 s).
    let mut cluster = TestCluster::start(3, &[("leader.imbalance.check.interval.seconds", "2")]);
    let controller = cluster
        .active_controller()
        .expect("no node is the active controller");
    let active: Vec<Option<f64>> = (1..=3)
        .map(|id| cluster.metric(id, "sluice_active_controller_count"))
        .collect();
    assert_eq!(
        active.iter().filter(|v| **v == Some(1.0)).count(),
        1,
        "exactly one active controller: {active:?}"
    );
    // Metadata names a live broker as the controller, as Kafka's KRaft brokers do.
    let named = {
        use kafka_protocol::messages::MetadataRequest;
        let addr = cluster.node(2).bootstrap();
        let mut conn = compat_tests::wire::RawConnection::connect(addr.as_str()).unwrap();
        let r = conn
            .call(
                &MetadataRequest::default().with_topics(Some(Vec::new())),
                12,
            )
            .unwrap();
        assert!(r.brokers.iter().any(|b| b.node_id == r.controller_id));
        r.controller_id.0
    };
    assert_eq!(
        named, controller,
        "the active controller is live, so it is named"
    );
    let bootstrap = cluster.bootstrap();
    let before = unique_topic("before");
    create_topic(&bootstrap, &before, 3, 3, &[]).await;
    cluster.node(controller).kill9();
    let killed_at = Instant::now();
    let survivor = (1..=3).find(|id| *id != controller).unwrap();
    let new_controller = loop {
        if let Some(c) = cluster.active_controller().filter(|c| *c != controller) {
            break c;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "no new controller"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("FIGURES controller: node {new_controller} took over {:?} after node {controller} was killed", killed_at.elapsed());
    // Metadata changes keep working: a new topic, and leaders moved off the dead node.
    let live: String = cluster
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| i32::try_from(*i + 1).unwrap() != controller)
        .map(|(_, n)| n.bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    let after = unique_topic("after");
    create_topic(&live, &after, 3, 2, &[]).await;
    cluster.wait_for_partitions(&before, Duration::from_secs(30), "leaders moved", |ps| {
        ps.iter().all(|p| p.leader > 0 && p.leader != controller)
    });
    // DescribeCluster lists the dead (fenced) node only when asked to (v2's
    // include_fenced_brokers, KIP-1073), flagged; v1 never does.
    let survivor_addr = cluster.node(survivor).bootstrap();
    let listed = |version: i16, include_fenced: bool| -> Vec<(i32, bool)> {
        use kafka_protocol::messages::DescribeClusterRequest;
        let mut conn = compat_tests::wire::RawConnection::connect(survivor_addr.as_str()).unwrap();
        let r = conn
            .call(
                &DescribeClusterRequest::default().with_include_fenced_brokers(include_fenced),
                version,
            )
            .unwrap();
        assert_eq!(r.error_code, 0, "{r:?}");
        let mut brokers: Vec<(i32, bool)> = r
            .brokers
            .iter()
            .map(|b| (b.broker_id.0, b.is_fenced))
            .collect();
        brokers.sort_unstable();
        brokers
    };
    let fenced_seen_at = Instant::now();
    while !listed(2, true).contains(&(controller, true)) {
        assert!(
            fenced_seen_at.elapsed() < Duration::from_secs(30),
            "the killed node never listed as fenced: {:?}",
            listed(2, true)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let alive: Vec<(i32, bool)> = (1..=3)
        .filter(|id| *id != controller)
        .map(|id| (id, false))
        .collect();
    assert_eq!(listed(2, false), alive);
    assert_eq!(listed(1, false), alive);
    let producer = rdk::producer(&live, &[]);
    for t in [&before, &after] {
        for p in 0..3 {
            send_to(&producer, t, p, "x".into(), Duration::from_secs(30))
                .await
                .unwrap();
        }
    }
    cluster.node(controller).restart();
    cluster.wait_for_partitions(
        &before,
        Duration::from_secs(60),
        "old controller back in ISR",
        |ps| ps.iter().all(|p| p.isr.contains(&controller)),
    );
    // auto.leader.rebalance.enable: leadership goes back to each partition's preferred replica.
    let back = cluster.wait_for_partitions(
        &before,
        Duration::from_secs(60),
        "preferred leaders restored",
        |ps| ps.iter().all(|p| p.replicas.first() == Some(&p.leader)),
    );
    eprintln!("FIGURES preferred leaders restored {back:?} after the node was back in the ISR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_two_of_three_refuses_acks_all_and_keeps_acks_one() {
    let mut cluster = TestCluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    let (topic, part) = one_partition_on_three(&cluster, "minisr").await;
    let leader = part.leader;
    let acks_all = rdk::producer(&bootstrap, &[("message.timeout.ms", "10000")]);
    for i in 0..50 {
        send_to(&acks_all, &topic, 0, i.to_string(), Duration::from_secs(10))
            .await
            .unwrap();
    }
    let followers: Vec<i32> = (1..=3).filter(|id| *id != leader).collect();
    for f in &followers {
        cluster.node(*f).kill9();
    }
    // The leader stops counting the silent followers as in sync after replica.lag.time.max.ms.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let leader_addr = cluster.node(leader).bootstrap();
    let strict = rdk::producer(
        &leader_addr,
        &[
            ("message.timeout.ms", "5000"),
            ("enable.idempotence", "false"),
            ("retries", "0"),
        ],
    );
    let refused = send_to(
        &strict,
        &topic,
        0,
        "refused".into(),
        Duration::from_secs(10),
    )
    .await;
    match refused {
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicas)) => {}
        other => {
            panic!("acks=all with one live replica must get NOT_ENOUGH_REPLICAS, got {other:?}")
        }
    }
    let acks_one = rdk::producer(
        &leader_addr,
        &[
            ("acks", "1"),
            ("enable.idempotence", "false"),
            ("message.timeout.ms", "10000"),
        ],
    );
    for i in 50..60 {
        send_to(&acks_one, &topic, 0, i.to_string(), Duration::from_secs(10))
            .await
            .unwrap();
    }
    for f in &followers {
        cluster.node(*f).restart();
    }
    cluster.wait_for_partitions(&topic, Duration::from_secs(60), "ISR full again", |ps| {
        ps.first().is_some_and(|p| p.isr.len() == 3)
    });
    let values: Vec<u64> = read_partition(&bootstrap, &topic, 0, 60)
        .iter()
        .map(|(_, v)| v.parse().unwrap())
        .collect();
    assert_eq!(
        values,
        (0..60).collect::<Vec<u64>>(),
        "acknowledged records lost or reordered"
    );
}

/// The `__consumer_offsets` partition of a group, as Kafka computes it (Java's
/// `String.hashCode`, made non-negative, modulo the partition count).
fn offsets_partition(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    (h & 0x7fff_ffff) % partitions
}

fn group_consumer(bootstrap: &str, group: &str) -> rdkafka::consumer::BaseConsumer {
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("broker.address.family", "v4");
    config.create().unwrap()
}

fn poll_values(
    consumer: &rdkafka::consumer::BaseConsumer,
    want: usize,
    timeout: Duration,
) -> Vec<u64> {
    use rdkafka::Message;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(
                std::str::from_utf8(m.payload().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap(),
            ),
            Some(Err(e)) => eprintln!("consumer error (retried): {e}"),
            None => {}
        }
    }
    out
}

/// Commits the consumer's positions, or `explicit` offsets when given, retrying while the
/// coordinator moves.
fn commit_with_retry(
    consumer: &rdkafka::consumer::BaseConsumer,
    explicit: Option<&rdkafka::TopicPartitionList>,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let result = match explicit {
            Some(tpl) => consumer.commit(tpl, rdkafka::consumer::CommitMode::Sync),
            None => consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync),
        };
        match result {
            Ok(()) => return,
            Err(e) => {
                assert!(Instant::now() < deadline, "commit kept failing: {e}");
                eprintln!("commit failed (retrying): {e}");
                // Keep the group session alive while the coordinator moves.
                let _ = consumer.poll(Duration::from_millis(200));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_group_survives_coordinator_failover() {
    let mut cluster = TestCluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    let topic = unique_topic("grouped");
    create_topic(&bootstrap, &topic, 6, 3, &[("min.insync.replicas", "2")]).await;
    let offsets = cluster.wait_for_partitions(
        "__consumer_offsets",
        Duration::from_secs(60),
        "offsets topic",
        |ps| ps.len() == 50 && ps.iter().all(|p| p.leader > 0 && p.isr.len() == 3),
    );
    eprintln!("__consumer_offsets ready after {offsets:?}");
    let producer = rdk::producer(&bootstrap, &[]);
    let produce = |range: std::ops::Range<u64>| {
        let producer = producer.clone();
        let topic = topic.clone();
        async move {
            for i in range {
                let v = i.to_string();
                let p = i32::try_from(i % 6).unwrap();
                send_to(&producer, &topic, p, v, Duration::from_secs(30))
                    .await
                    .unwrap();
            }
        }
    };
    produce(0..600).await;

    let group = unique_topic("failover-group");
    let client = cluster.metadata_client();
    let parts = TestCluster::partitions_listed(&client, "__consumer_offsets");
    let coordinator = parts[usize::try_from(offsets_partition(&group, 50)).unwrap()].leader;

    let a = group_consumer(&bootstrap, &group);
    a.subscribe(&[topic.as_str()]).unwrap();
    // At least once: after the failover some records may come again; count distinct ones.
    let mut seen: HashSet<u64> = poll_values(&a, 300, Duration::from_secs(60))
        .into_iter()
        .collect();
    assert!(
        seen.len() >= 300,
        "only {} records before the failover",
        seen.len()
    );
    commit_with_retry(&a, None);
    eprintln!("killing node {coordinator}, the group's coordinator");
    cluster.node(coordinator).kill9();
    let killed = Instant::now();
    while seen.len() < 600 && killed.elapsed() < Duration::from_secs(90) {
        seen.extend(poll_values(&a, 600 - seen.len(), Duration::from_secs(5)));
    }
    // A rebalance after the failover may have reset positions of partitions consumed
    // before it (at-least-once); commit the end of every partition explicitly.
    let mut ends = rdkafka::TopicPartitionList::new();
    for p in 0..6 {
        ends.add_partition_offset(&topic, p, rdkafka::Offset::Offset(100))
            .unwrap();
    }
    commit_with_retry(&a, Some(&ends));
    eprintln!(
        "FIGURES groups: consumed and committed all 600 across the coordinator failover in {:?}",
        killed.elapsed()
    );
    assert_eq!(
        seen,
        (0..600).collect::<HashSet<u64>>(),
        "records missing before/after the failover"
    );
    drop(a);

    // A new member resumes exactly at the committed offsets.
    produce(600..700).await;
    let b = group_consumer(&bootstrap, &group);
    b.subscribe(&[topic.as_str()]).unwrap();
    let mut rest = poll_values(&b, 100, Duration::from_secs(60));
    rest.extend(poll_values(&b, usize::MAX, Duration::from_secs(2)));
    rest.sort_unstable();
    assert_eq!(
        rest,
        (600..700).collect::<Vec<u64>>(),
        "the new member did not resume at the committed offsets"
    );
    cluster.node(coordinator).restart();
}

/// KIP-951: a produce to a broker that does not lead the partition is refused with
/// NOT_LEADER_OR_FOLLOWER and names the current leader and its endpoint (Produce v10+).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_leader_names_the_leader() {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::ProduceRequest;
    let mut cluster = TestCluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    let topic = unique_topic("kip951");
    create_topic(&bootstrap, &topic, 1, 1, &[]).await;
    let client = cluster.metadata_client();
    cluster.wait_for_partitions(&topic, Duration::from_secs(30), "a leader", |ps| {
        ps.first().is_some_and(|p| p.leader > 0)
    });
    let leader = TestCluster::partitions_listed(&client, &topic)[0].leader;
    let other = (1..=3).find(|id| *id != leader).unwrap();
    let leader_port = i32::from(cluster.node(leader).port());
    let addr = cluster.node(other).bootstrap();
    let mut conn = compat_tests::RawConnection::connect(addr.as_str()).unwrap();
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(compat_tests::wire::topic_name(&topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(compat_tests::batch::build_batch(
                    &[(b"k", b"v")],
                    0,
                )))])]);
    let response = conn.call(&request, 11).unwrap();
    let p = &response.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 6, "NOT_LEADER_OR_FOLLOWER expected");
    assert_eq!(p.current_leader.leader_id.0, leader);
    assert!(p.current_leader.leader_epoch >= 0);
    let endpoint = response
        .node_endpoints
        .iter()
        .find(|e| e.node_id.0 == leader)
        .expect("the leader's endpoint");
    assert_eq!(endpoint.port, leader_port);
}

/// CreateTopics through the controller checks as Kafka's `ReplicationControlManager` does: a
/// bad config value first, then a replication factor of 0 or below -1, then such a partition
/// count, with Kafka's messages; a dry run answers a fresh topic id and creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_checks_in_kafkas_order_through_the_controller() {
    let cluster = TestCluster::start(3, &[]);
    let mut conn =
        compat_tests::RawConnection::connect(cluster.bootstrap().split(',').next().unwrap())
            .unwrap();
    let topic = unique_topic("counts");
    let mut answer = |partitions: i32, rf: i16, configs: &[(&str, Option<&str>)], dry_run: bool| {
        let mut request = compat_tests::wire::create_topics_request(&topic, partitions, configs);
        request.topics[0].replication_factor = rf;
        request.validate_only = dry_run;
        let response = conn.call(&request, 7).unwrap();
        let t = &response.topics[0];
        (
            t.error_code,
            t.error_message.as_ref().map(|m| m.to_string()),
            t.topic_id,
        )
    };
    let (code, _, _) = answer(0, 0, &[("retention.ms", Some("soon"))], false);
    assert_eq!(code, 40, "INVALID_CONFIG before the counts");
    let (code, message, _) = answer(0, 0, &[], false);
    assert_eq!(
        (code, message.as_deref()),
        (
            38,
            Some("Replication factor must be larger than 0, or -1 to use the default value.")
        )
    );
    let (code, message, _) = answer(-2, 3, &[], false);
    assert_eq!(
        (code, message.as_deref()),
        (
            37,
            Some("Number of partitions was set to an invalid non-positive value.")
        )
    );
    let (code, _, id) = answer(2, 3, &[], true);
    assert_eq!(code, 0, "a valid dry run");
    assert!(!id.is_nil(), "a dry run answers a fresh topic id");
    let client = cluster.metadata_client();
    assert!(
        TestCluster::partitions(&client, &topic).is_none_or(|ps| ps.is_empty()),
        "the dry run created {topic}"
    );
}

/// A broker-only node (not a controller voter) joins as a Raft learner, gets replicas, leads
/// partitions and serves clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_only_node_joins_and_serves() {
    let mut cluster = TestCluster::start_mixed(3, 1, &[]);
    let bootstrap = cluster.bootstrap();
    let topic = unique_topic("fourth");
    create_topic(&bootstrap, &topic, 4, 2, &[]).await;
    cluster.wait_for_partitions(
        &topic,
        Duration::from_secs(30),
        "node 4 leads and follows",
        |ps| ps.iter().any(|p| p.leader == 4) && ps.iter().all(|p| p.isr.len() == 2),
    );
    let only4 = cluster.node(4).bootstrap();
    let producer = rdk::producer(&only4, &[]);
    for p in 0..4 {
        send_to(&producer, &topic, p, "x".into(), Duration::from_secs(30))
            .await
            .unwrap();
    }
    for p in 0..4 {
        assert_eq!(read_partition(&bootstrap, &topic, p, 1).len(), 1);
    }

    // CreatePartitions with validate_only checks manual assignments as a real run does
    // (Kafka runs the whole creation for it): their number and replication factor.
    {
        use kafka_protocol::messages::create_partitions_request::{
            CreatePartitionsAssignment, CreatePartitionsTopic,
        };
        use kafka_protocol::messages::{BrokerId, CreatePartitionsRequest};
        let mut conn =
            compat_tests::wire::RawConnection::connect(cluster.node(1).bootstrap().as_str())
                .unwrap();
        let mut try_grow = |count: i32, assignments: Vec<Vec<i32>>| {
            let assignments = assignments
                .into_iter()
                .map(|a| {
                    CreatePartitionsAssignment::default()
                        .with_broker_ids(a.into_iter().map(BrokerId).collect())
                })
                .collect();
            let r = conn
                .call(
                    &CreatePartitionsRequest::default()
                        .with_topics(vec![CreatePartitionsTopic::default()
                            .with_name(compat_tests::wire::topic_name(&topic))
                            .with_count(count)
                            .with_assignments(Some(assignments))])
                        .with_timeout_ms(10_000)
                        .with_validate_only(true),
                    3,
                )
                .unwrap();
            let t = &r.results[0];
            (
                t.error_code,
                t.error_message.as_ref().map(|m| m.to_string()),
            )
        };
        assert_eq!(
            try_grow(6, vec![vec![1, 2]]),
            (
                39,
                Some("Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified.".into())
            )
        );
        assert_eq!(
            try_grow(5, vec![vec![1]]),
            (
                39,
                Some("The manual partition assignment includes a partition with 1 replica(s), but this is not consistent with previous partitions, which have 2 replica(s).".into())
            )
        );
        assert_eq!(try_grow(5, vec![vec![1, 2]]).0, 0, "a valid dry run");
        // A count past one request's bound (10,000 partitions added) is refused whole, on a
        // cluster node as on a single one (POLICY_VIOLATION), and nothing is placed.
        let r = conn
            .call(
                &CreatePartitionsRequest::default()
                    .with_topics(vec![CreatePartitionsTopic::default()
                        .with_name(compat_tests::wire::topic_name(&topic))
                        .with_count(1 << 20)
                        .with_assignments(None)])
                    .with_timeout_ms(10_000),
                3,
            )
            .unwrap();
        assert_eq!(r.results[0].error_code, 44, "{r:?}");
        assert_eq!(
            TestCluster::partitions(&cluster.metadata_client(), &topic)
                .unwrap()
                .len(),
            4,
            "a dry run or a refused request changed the topic"
        );
    }

    // CreatePartitions places the new partitions' replicas (same replication factor).
    let admin = rdk::admin(&bootstrap);
    let grow = rdkafka::admin::NewPartitions::new(&topic, 6);
    for r in admin
        .create_partitions([&grow], &rdk::admin_options())
        .await
        .unwrap()
    {
        r.unwrap();
    }
    cluster.wait_for_partitions(
        &topic,
        Duration::from_secs(30),
        "6 partitions with 2 replicas",
        |ps| ps.len() == 6 && ps.iter().all(|p| p.replicas.len() == 2 && p.leader > 0),
    );

    // CreateTopics with an explicit replica assignment is honoured.
    let assigned = unique_topic("assigned");
    let assignment: &[&[i32]] = &[&[4, 1], &[2, 4], &[3, 2]];
    let new_topic = NewTopic::new(&assigned, 3, TopicReplication::Variable(assignment));
    for r in admin
        .create_topics([&new_topic], &rdk::admin_options())
        .await
        .unwrap()
    {
        r.unwrap();
    }
    cluster.wait_for_partitions(
        &assigned,
        Duration::from_secs(30),
        "the requested assignment",
        |ps| {
            ps.len() == 3
                && ps
                    .iter()
                    .zip(assignment)
                    .all(|(p, want)| p.replicas == *want && p.leader == want[0])
        },
    );
}

/// KIP-392: a follower serves a consumer's Fetch v11+ (client metadata) up to the high
/// watermark the leader sent it; an older Fetch to it gets NOT_LEADER_OR_FOLLOWER.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_serves_consumer_fetches_v11() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::FetchRequest;
    let mut cluster = TestCluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    let topic = unique_topic("fff");
    create_topic(&bootstrap, &topic, 1, 3, &[]).await;
    cluster.wait_for_partitions(&topic, Duration::from_secs(30), "3 in sync", |ps| {
        ps[0].leader > 0 && ps[0].isr.len() == 3
    });
    let producer = rdk::producer(&bootstrap, &[("acks", "all")]);
    for i in 0..3 {
        send_to(
            &producer,
            &topic,
            0,
            format!("v{i}"),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    }
    let client = cluster.metadata_client();
    let leader = TestCluster::partitions_listed(&client, &topic)[0].leader;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let addr = cluster.node(follower).bootstrap();
    let mut conn = compat_tests::RawConnection::connect(addr.as_str()).unwrap();
    let request = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(compat_tests::wire::topic_name(&topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_current_leader_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(1 << 20)])]);
    let old = conn.call(&request, 10).unwrap();
    assert_eq!(
        old.responses[0].partitions[0].error_code, 6,
        "Fetch v10 to a follower: NOT_LEADER_OR_FOLLOWER"
    );
    // The follower learns the high watermark with its next fetch from the leader.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = conn.call(&request, 11).unwrap();
        let p = &response.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "Fetch v11 from the follower");
        assert_eq!(p.preferred_read_replica.0, -1);
        if p.high_watermark == 3 && p.records.as_ref().is_some_and(|r| !r.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the follower did not serve the records: {p:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Controlled shutdown: SIGTERM to a partition leader hands its leaderships over before it
/// exits, so producers move on at once instead of after `broker.session.timeout.ms` (15 s
/// here), and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_leadership_over_before_exiting() {
    let mut cluster = TestCluster::start(3, &[("broker.session.timeout.ms", "15000")]);
    let bootstrap = cluster.bootstrap();
    let (topic, part) = one_partition_on_three(&cluster, "controlled").await;
    let leader = part.leader;
    let producer = rdk::producer(&bootstrap, &[("message.timeout.ms", "30000")]);
    let send = |i: u64| send_to(&producer, &topic, 0, i.to_string(), Duration::from_secs(30));
    for i in 0..100 {
        send(i).await.unwrap();
    }
    let stopping = Instant::now();
    let status = cluster.node(leader).terminate();
    assert!(status.success(), "the leader did not exit 0 on SIGTERM");
    let stopped_in = stopping.elapsed();
    let acked = send(100).await.unwrap();
    let resumed = acked.duration_since(stopping);
    eprintln!(
        "FIGURES controlled shutdown: leader exited {stopped_in:?} after SIGTERM; the partition acknowledged again {resumed:?} after SIGTERM (session timeout 15 s)"
    );
    assert!(
        resumed < Duration::from_secs(10),
        "produce resumed only after {resumed:?}: leaderships were not handed over"
    );
    for i in 101..150 {
        send(i).await.unwrap();
    }
    cluster.node(leader).restart();
    let values: Vec<u64> = read_partition(&bootstrap, &topic, 0, 150)
        .iter()
        .map(|(_, v)| v.parse().unwrap())
        .collect();
    assert_eq!(values, (0..150).collect::<Vec<u64>>());
}

/// The leader epoch entries of a log's `leader-epoch-checkpoint` (version, count, then one
/// "epoch start_offset" line each); empty if it cannot be read yet.
fn epoch_entries(partition_dir: &Path) -> Vec<(i32, i64)> {
    let text =
        std::fs::read_to_string(partition_dir.join("leader-epoch-checkpoint")).unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (epoch, offset) = l.split_once(' ')?;
            Some((epoch.parse().ok()?, offset.parse().ok()?))
        })
        .collect()
}

/// A replica that becomes the leader records its leader epoch in its log's checkpoint, as
/// starting at its log end, without waiting for a produce of that epoch (Kafka's
/// `Partition.makeLeader`), so the first produce after an election does not rewrite it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_records_its_epoch_before_any_produce() {
    let mut cluster = TestCluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    let (topic, part) = one_partition_on_three(&cluster, "epoch").await;
    let leader = part.leader;
    let client = cluster.metadata_client();
    let producer = rdk::producer(&bootstrap, &[("message.timeout.ms", "30000")]);
    for i in 0..10 {
        send_to(&producer, &topic, 0, i.to_string(), Duration::from_secs(30))
            .await
            .unwrap();
    }
    // Hand the leadership over (controlled shutdown); no produce after it.
    assert!(cluster.node(leader).terminate().success());
    // Its high watermarks went to the checkpoint on the way out, for its next start.
    let checkpoint = std::fs::read_to_string(
        cluster
            .node(leader)
            .data_dir()
            .join("replication-offset-checkpoint"),
    )
    .unwrap();
    assert!(
        checkpoint.lines().any(|l| l == format!("{topic} 0 10")),
        "{checkpoint}"
    );
    cluster.wait_for_partitions(&topic, Duration::from_secs(30), "a new leader", |ps| {
        ps.first()
            .is_some_and(|p| p.leader >= 0 && p.leader != leader)
    });
    let new_leader = TestCluster::partitions_listed(&client, &topic)[0].leader;
    // ListOffsets (latest) on the new leader never answers a stale high watermark: while its
    // high watermark is below the log end it was elected at, OFFSET_NOT_AVAILABLE (78, Kafka's
    // answer; the client retries), then the end, 10.
    let new_leader_addr = cluster.node(new_leader).bootstrap();
    let mut conn = compat_tests::wire::RawConnection::connect(new_leader_addr.as_str()).unwrap();
    let asked_at = Instant::now();
    loop {
        let r = conn
            .call(&compat_tests::wire::list_offsets_request(&topic, -1), 5)
            .unwrap();
        let p = &r.topics[0].partitions[0];
        match (p.error_code, p.offset) {
            (0, 10) => break,
            // Not applied its leadership yet (the metadata came from another node), or
            // not sure of its high watermark yet.
            (6 | 78, _) => {}
            other => panic!("the new leader answered latest = {other:?}, not 10 or 78"),
        }
        assert!(asked_at.elapsed() < Duration::from_secs(10), "never 10");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = cluster
        .node(new_leader)
        .data_dir()
        .join(format!("{topic}-0"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let entries = loop {
        let entries = epoch_entries(&dir);
        if entries.last().is_some_and(|&(epoch, _)| epoch > 0) || Instant::now() > deadline {
            break entries;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        entries.first(),
        Some(&(0, 0)),
        "the first leader's epoch, from its batches"
    );
    let last = entries.last().copied();
    assert!(
        last.is_some_and(|(epoch, offset)| epoch > 0 && offset == 10),
        "the new leader's epoch, starting at its log end (10): {entries:?}"
    );
}

/// Replica fetch sessions (KIP-227): after their first round, followers name only the
/// partitions that changed. A new topic's partitions join each follower's session, a deleted
/// topic's leave it, and replication of the rest goes on at once: acks=all sends are answered
/// in milliseconds (median under 500 ms, each under 5 s; a follower whose session missed a
/// change would hold the high watermark until the ISR changed, about a second per send
/// here), and every replica stays in the ISR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_keep_replicating_as_topics_join_and_leave_their_sessions() {
    /// Sends `value` acks=all and returns how long its answer took (under 5 s).
    async fn timed_send(
        producer: &FutureProducer,
        topic: &str,
        partition: i32,
        value: String,
    ) -> Duration {
        let what = format!("{topic}-{partition} {value}");
        let sent = Instant::now();
        let acked = send_to(producer, topic, partition, value, Duration::from_secs(10))
            .await
            .unwrap();
        let took = acked.duration_since(sent);
        assert!(took < Duration::from_secs(5), "{what} took {took:?}");
        took
    }

    // No auto-creation: the producer's metadata refreshes would re-create the deleted topic
    // (as on Kafka) before the test does.
    let cluster = TestCluster::start(3, &[("auto.create.topics.enable", "false")]);
    let bootstrap = cluster.bootstrap();
    let full_isr = |ps: &[PartitionInfo]| ps.len() == 3 && ps.iter().all(|p| p.isr.len() == 3);
    let first = unique_topic("sess-a");
    create_topic(&bootstrap, &first, 3, 3, &[("min.insync.replicas", "2")]).await;
    cluster.wait_for_partitions(&first, Duration::from_secs(30), "full ISR", full_isr);
    // A send fails after 10 s, and must be answered within 5.
    let producer = rdk::producer(
        &bootstrap,
        &[("acks", "all"), ("message.timeout.ms", "10000")],
    );
    let mut took = Vec::new();
    for p in 0..3 {
        took.push(timed_send(&producer, &first, p, format!("a{p}")).await);
    }
    // A second topic joins the sessions the first one opened.
    let second = unique_topic("sess-b");
    create_topic(&bootstrap, &second, 3, 3, &[("min.insync.replicas", "2")]).await;
    cluster.wait_for_partitions(&second, Duration::from_secs(30), "full ISR", full_isr);
    for round in 0..3 {
        for p in 0..3 {
            took.push(timed_send(&producer, &second, p, format!("b{round}")).await);
            took.push(timed_send(&producer, &first, p, format!("a{round}")).await);
        }
    }
    // The first topic leaves them.
    let admin = rdk::admin(&bootstrap);
    let deleted = admin
        .delete_topics(&[&first], &rdk::admin_options())
        .await
        .unwrap();
    assert_eq!(deleted, vec![Ok(first.clone())]);
    let client = cluster.metadata_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    // All topics' metadata.
    while client
        .fetch_metadata(None, Duration::from_secs(3))
        .map_or(true, |m| m.topics().iter().any(|t| t.name() == first))
    {
        assert!(Instant::now() < deadline, "{first} still listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for round in 3..8 {
        for p in 0..3 {
            took.push(timed_send(&producer, &second, p, format!("b{round}")).await);
        }
    }
    took.sort();
    let median = took[took.len() / 2];
    assert!(
        median < Duration::from_millis(500),
        "median acks=all send {median:?}; all: {took:?}"
    );
    let parts = TestCluster::partitions_listed(&client, &second);
    assert!(full_isr(&parts), "every replica in sync: {parts:?}");
    let values = read_partition(&bootstrap, &second, 0, 8);
    assert_eq!(
        values,
        (0..8).map(|r| (r, format!("b{r}"))).collect::<Vec<_>>(),
        "partition 0 of {second}"
    );

    // The first topic's name is taken again by a new topic (a new id): followers fetch it by
    // its id, from its own offset 0, and it holds only its own records.
    create_topic(&bootstrap, &first, 3, 3, &[("min.insync.replicas", "3")]).await;
    cluster.wait_for_partitions(&first, Duration::from_secs(30), "full ISR", full_isr);
    for p in 0..3 {
        timed_send(&producer, &first, p, format!("new{p}")).await;
    }
    for p in 0..3 {
        timed_send(&producer, &second, p, "b8".to_string()).await;
    }
    let parts = TestCluster::partitions_listed(&client, &first);
    assert!(
        full_isr(&parts),
        "the new topic's replicas in sync: {parts:?}"
    );
    for p in 0..3 {
        assert_eq!(
            read_partition(&bootstrap, &first, p, 1),
            vec![(0, format!("new{p}"))],
            "partition {p} of the re-created {first}"
        );
    }
}

/// A follower whose log ends below its leader's log start (paused while the leader's
/// retention deleted segments it had not fetched, as a replica down longer than the
/// retention time, or a new one, finds) is answered OFFSET_OUT_OF_RANGE, asks the leader's log
/// start and restarts its own log there (Kafka's `truncateFullyAndStartAt`), catches up and
/// rejoins the ISR. Before, it fetched the same offset forever and never rejoined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_leaders_log_start_restarts_there_and_rejoins() {
    let mut cluster = TestCluster::start(
        3,
        &[
            ("broker.session.timeout.ms", "30000"),
            ("replica.lag.time.max.ms", "3000"),
            ("log.retention.check.interval.ms", "300"),
        ],
    );
    let bootstrap = cluster.bootstrap();
    let topic = unique_topic("behind");
    create_topic(
        &bootstrap,
        &topic,
        1,
        3,
        &[
            ("min.insync.replicas", "2"),
            ("segment.ms", "200"),
            ("retention.ms", "2000"),
        ],
    )
    .await;
    cluster.wait_for_partitions(&topic, Duration::from_secs(30), "full ISR", |ps| {
        ps.first().is_some_and(|p| p.isr.len() == 3)
    });
    let part = TestCluster::partitions(&cluster.metadata_client(), &topic).unwrap()[0].clone();
    let follower = *part.replicas.iter().find(|r| **r != part.leader).unwrap();
    let producer = rdk::producer(&bootstrap, &[("message.timeout.ms", "30000")]);
    let send = |i: u64| send_to(&producer, &topic, 0, i.to_string(), Duration::from_secs(30));
    for i in 0..50 {
        send(i).await.unwrap();
    }
    cluster.node(follower).pause();
    cluster.wait_for_partitions(&topic, Duration::from_secs(30), "ISR shrink", |ps| {
        ps.first().is_some_and(|p| !p.isr.contains(&follower))
    });
    // Produce until the leader's retention has moved its log start past the follower's end.
    let consumer = rdk::consumer(&bootstrap);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next = 50;
    let leader_start = loop {
        send(next).await.unwrap();
        next += 1;
        let (low, _) = consumer
            .fetch_watermarks(&topic, 0, Duration::from_secs(10))
            .unwrap();
        if low > 50 {
            break low;
        }
        assert!(
            Instant::now() < deadline,
            "the leader's log start never passed 50 (at {low})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    cluster.node(follower).resume();
    let rejoined =
        cluster.wait_for_partitions(&topic, Duration::from_secs(60), "ISR expand", |ps| {
            ps.first().is_some_and(|p| p.isr.contains(&follower))
        });
    eprintln!(
        "FIGURES behind: follower {follower} rejoined {rejoined:?} after SIGCONT, its log restarted at or after the leader's start {leader_start}"
    );
    // The ISR goes on taking acks=all sends with the follower in it; everything from the
    // leader's log start on reads back in order.
    for i in next..next + 20 {
        send(i).await.unwrap();
    }
    // The follower's log start reaches the leader's: it restarted there, or (when an answer
    // the leader sent before the pause carried it past the leader's start first) it follows
    // the leader's log start as its high watermark allows.
    let dir = cluster.node(follower).data_dir().join(format!("{topic}-0"));
    let follower_start = || -> i64 {
        std::fs::read_to_string(dir.join("log_start_offset"))
            .map(|s| s.trim().parse().unwrap())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while follower_start() < leader_start && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        follower_start() >= leader_start,
        "the follower's log start {}, the leader's {leader_start}",
        follower_start()
    );
    let (low, high) = consumer
        .fetch_watermarks(&topic, 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(high, i64::try_from(next + 20).unwrap());
    let read = rdk::consume_partition(
        &consumer,
        &topic,
        0,
        Offset::Offset(low),
        usize::try_from(high - low).unwrap(),
        Duration::from_secs(60),
    );
    let values: Vec<u64> = read
        .iter()
        .map(|r| {
            String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
                .parse()
                .unwrap()
        })
        .collect();
    let first = u64::try_from(low).unwrap();
    assert_eq!(values, (first..next + 20).collect::<Vec<u64>>());
}

/// A follower that left the ISR rejoins an ISR of the leader alone while producers keep
/// writing (200 sends in flight). The leader's high watermark (its own durable offset, with
/// the ISR just itself) waits for a caught-up follower outside the ISR, as Kafka's
/// `maybeIncrementLeaderHW` does for `shouldWaitForReplicaToJoinIsr` (`LeaderState` unit
/// tests show the starvation this prevents; with a real client's bursts the follower also
/// found gaps to join in before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_rejoins_an_isr_of_one_under_steady_writes() {
    let mut cluster = TestCluster::start(
        3,
        &[
            ("broker.session.timeout.ms", "30000"),
            ("replica.lag.time.max.ms", "3000"),
        ],
    );
    let bootstrap = cluster.bootstrap();
    let topic = unique_topic("rejoin");
    create_topic(&bootstrap, &topic, 1, 2, &[]).await;
    cluster.wait_for_partitions(&topic, Duration::from_secs(30), "full ISR", |ps| {
        ps.first().is_some_and(|p| p.isr.len() == 2)
    });
    let part = TestCluster::partitions(&cluster.metadata_client(), &topic).unwrap()[0].clone();
    let follower = *part.replicas.iter().find(|r| **r != part.leader).unwrap();
    cluster.node(follower).pause();
    cluster.wait_for_partitions(&topic, Duration::from_secs(30), "ISR shrink", |ps| {
        ps.first().is_some_and(|p| p.isr == vec![part.leader])
    });
    // Steady writes from four concurrent senders until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let producer = rdk::producer(
        &bootstrap,
        &[
            ("acks", "1"),
            ("enable.idempotence", "false"),
            ("linger.ms", "0"),
            ("message.timeout.ms", "30000"),
        ],
    );
    let mut senders = Vec::new();
    for s in 0..4 {
        let (producer, topic, stop, acked) = (
            producer.clone(),
            topic.clone(),
            Arc::clone(&stop),
            Arc::clone(&acked),
        );
        senders.push(tokio::spawn(async move {
            // 50 sends in flight per sender, so produce requests keep arriving at the
            // leader during every round trip of the follower.
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut sends = Vec::with_capacity(50);
                for n in i..i + 50 {
                    let value = format!("{s}-{n}");
                    let record = FutureRecord::<(), _>::to(&topic)
                        .partition(0)
                        .payload(&value);
                    sends.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
                }
                for sent in sends {
                    sent.await.unwrap().map_err(|(e, _)| e).unwrap();
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                i += 50;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.node(follower).resume();
    let at_resume = acked.load(Ordering::Relaxed);
    let rejoined = cluster.wait_for_partitions(
        &topic,
        Duration::from_secs(30),
        "ISR expand under writes",
        |ps| ps.first().is_some_and(|p| p.isr.contains(&follower)),
    );
    let during = acked.load(Ordering::Relaxed) - at_resume;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    eprintln!(
        "FIGURES rejoin: follower {follower} rejoined an ISR of the leader alone {rejoined:?} after SIGCONT while {during} records were acknowledged"
    );
    assert!(
        at_resume > 1_000,
        "steady writes when the follower came back: {at_resume} in the second before"
    );
}
