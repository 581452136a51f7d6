//! Durability: acknowledged records survive `kill -9`, and a segment file cut
//! short (a torn write) recovers to the longest whole-batch prefix.
//!
//! The cut test copies a cleanly stopped data directory, truncates the last
//! `.log` segment of the partition at a chosen byte, starts a broker on the
//! copy, and expects exactly the batches wholly before the cut (computed by
//! parsing the batch headers in the original file) to be readable, with the
//! log end right after them and new appends continuing from there. Cut
//! points are partly fixed (interesting places) and partly random; the seed
//! is printed and can be replayed with `SLUICE_TEST_SEED`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use compat_tests::batch::parse_batch_headers;
use compat_tests::process::copy_dir;
use compat_tests::rdk::{self, ConsumedRecord};
use compat_tests::{unique_topic, SluiceOptions, SluiceProcess};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Offset;

/// Records produced; about 3 MB of values, so with 1 MiB segments the
/// partition has several segments.
const N: usize = 3_000;
/// Records sent between waits for delivery, which keeps batches small and many.
const GROUP: usize = 30;
const SEGMENT_BYTES: &str = "1048576";
const CONSUME_TIMEOUT: Duration = Duration::from_secs(60);

fn key(i: usize) -> String {
    format!("durable-key-{i:06}")
}

fn value(i: usize) -> Vec<u8> {
    // ~1 KB, different per record (a small LCG), so no two batches look alike.
    let mut x = (i as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut v = format!("durable-value-{i:06}-").into_bytes();
    while v.len() < 1000 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        v.push(b'a' + (x >> 59) as u8 % 26);
    }
    v
}

fn options() -> SluiceOptions {
    SluiceOptions::new().set("log.segment.bytes", SEGMENT_BYTES)
}

async fn produce(
    producer: &FutureProducer,
    topic: &str,
    range: std::ops::Range<usize>,
) -> Vec<i64> {
    let mut offsets = Vec::new();
    let indices: Vec<usize> = range.collect();
    for group in indices.chunks(GROUP) {
        let mut futures = Vec::new();
        for &i in group {
            let (k, v) = (key(i), value(i));
            match producer.send_result(FutureRecord::to(topic).partition(0).key(&k).payload(&v)) {
                Ok(f) => futures.push((i, f)),
                Err((e, _)) => panic!("cannot enqueue record {i}: {e}"),
            }
        }
        for (i, f) in futures {
            match f.await {
                Ok(Ok(d)) => offsets.push(d.offset),
                Ok(Err((e, _))) => panic!("record {i} not delivered: {e}"),
                Err(_) => panic!("record {i}: producer dropped"),
            }
        }
    }
    offsets
}

/// Reads `count` records from the beginning and checks each is record `offset`.
fn assert_prefix(consumer: &BaseConsumer, topic: &str, count: usize, context: &str) {
    let got: Vec<ConsumedRecord> = rdk::consume_partition(
        consumer,
        topic,
        0,
        Offset::Beginning,
        count,
        CONSUME_TIMEOUT,
    );
    assert_eq!(got.len(), count, "{context}: records read back");
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.offset, i as i64, "{context}: offset of record #{i}");
        assert_eq!(
            r.key.as_deref(),
            Some(key(i).as_bytes()),
            "{context}: key at {i}"
        );
        assert!(
            r.value.as_deref() == Some(value(i).as_slice()),
            "{context}: value at offset {i} differs"
        );
    }
}

fn watermarks(consumer: &BaseConsumer, topic: &str) -> (i64, i64) {
    consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("ListOffsets failed: {e}"))
}

/// `(base offset, path)` of every `.log` segment of a partition, sorted.
fn segments(partition_dir: &Path) -> Vec<(i64, PathBuf)> {
    let mut out: Vec<(i64, PathBuf)> = std::fs::read_dir(partition_dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", partition_dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("log"))
        .filter_map(|p| {
            let stem = p.file_stem()?.to_str()?;
            (stem.len() == 20)
                .then(|| stem.parse::<i64>().ok())
                .flatten()
                .map(|base| (base, p.clone()))
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill9_and_torn_tail_recovers() {
    let mut broker = SluiceProcess::start(options());
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("durable");
    rdk::create_topic(&bootstrap, &topic, 1, &[]).await;
    let producer = rdk::producer(&bootstrap, &[("linger.ms", "1")]);
    let offsets = produce(&producer, &topic, 0..N).await;
    assert_eq!(
        offsets,
        (0..N as i64).collect::<Vec<_>>(),
        "delivered offsets"
    );
    drop(producer);

    // kill -9, restart on the same data dir: every acknowledged record is there.
    broker.kill9();
    broker.restart();
    let consumer = rdk::consumer(&broker.bootstrap());
    assert_eq!(
        watermarks(&consumer, &topic),
        (0, N as i64),
        "after kill -9"
    );
    assert_prefix(&consumer, &topic, N, "after kill -9");
    drop(consumer);

    // A clean stop exits 0 and leaves the original for the cut tests.
    let status = broker.terminate();
    assert!(
        status.success(),
        "SIGTERM exit status {status}; log:\n{}",
        broker.log_tail()
    );
    let original = broker.data_dir().to_path_buf();
    let partition_dir = original.join(format!("{topic}-0"));
    let segs = segments(&partition_dir);
    assert!(
        segs.len() >= 2,
        "expected several segments with log.segment.bytes={SEGMENT_BYTES}, found {segs:?}"
    );
    let (last_base, last_path) = segs.last().cloned().unwrap();
    let file_name = last_path.file_name().unwrap().to_owned();
    let bytes = std::fs::read(&last_path).unwrap();
    let batches = parse_batch_headers(&bytes);
    assert!(
        !batches.is_empty(),
        "no batches parsed in {}",
        last_path.display()
    );
    assert_eq!(
        batches.last().map(|b| b.end()),
        Some(bytes.len()),
        "the last segment is not a whole number of batches"
    );
    assert_eq!(
        batches[0].base_offset, last_base,
        "first batch vs file name"
    );
    assert_eq!(batches.last().map(|b| b.last_offset), Some(N as i64 - 1));

    // Cut points: interesting fixed ones plus random ones.
    let seed: u64 = std::env::var("SLUICE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("durability cut seed: {seed} (replay with SLUICE_TEST_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let mid = &batches[batches.len() / 2];
    let mut cuts = vec![
        0,                           // empty last segment
        mid.position,                // exactly at a batch boundary
        mid.position + 7,            // inside a batch header
        mid.position + mid.size / 2, // inside the records
        bytes.len() - 1,             // last batch missing one byte
    ];
    for _ in 0..3 {
        cuts.push(rng.gen_range(1..bytes.len()));
    }

    for cut in cuts {
        let context = format!(
            "cut of {} at byte {cut} of {}",
            file_name.to_string_lossy(),
            bytes.len()
        );
        let expected_end = batches
            .iter()
            .take_while(|b| b.end() <= cut)
            .last()
            .map_or(last_base, |b| b.last_offset + 1);
        let copy = tempfile::Builder::new()
            .prefix("sluice-cut-")
            .tempdir()
            .unwrap();
        copy_dir(&original, copy.path()).unwrap();
        let cut_path = copy.path().join(format!("{topic}-0")).join(&file_name);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&cut_path)
            .unwrap();
        file.set_len(cut as u64).unwrap();
        drop(file);

        let cut_broker = SluiceProcess::start(options().data_dir(copy.path()));
        let consumer = rdk::consumer(&cut_broker.bootstrap());
        assert_eq!(
            watermarks(&consumer, &topic),
            (0, expected_end),
            "{context}: watermarks (expected the log to end after the last whole batch)"
        );
        assert_prefix(&consumer, &topic, expected_end as usize, &context);
        // Appends continue right after the recovered prefix.
        let producer = rdk::producer(&cut_broker.bootstrap(), &[]);
        let i = expected_end as usize;
        let (k, v) = (key(i), value(i));
        let delivery = producer
            .send(
                FutureRecord::to(&topic).partition(0).key(&k).payload(&v),
                Duration::from_secs(5),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("{context}: produce after recovery failed: {e}"));
        assert_eq!(
            delivery.offset, expected_end,
            "{context}: offset of the next append"
        );
        assert_prefix(&consumer, &topic, expected_end as usize + 1, &context);
        drop(cut_broker);
    }
}

/// Builds `shims/fail_fsync.c` into `dir` with the system C compiler (`cc`); returns the
/// library's path.
fn build_fail_fsync_shim(dir: &Path) -> PathBuf {
    let source = compat_tests::workspace_root().join("compat-tests/shims/fail_fsync.c");
    let library = dir.join("libfail_fsync.so");
    let out = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&library)
        .arg(&source)
        .arg("-ldl")
        .output()
        .unwrap_or_else(|e| panic!("cannot run cc (the test suite installs build-essential): {e}"));
    assert!(
        out.status.success(),
        "cc {} failed:\n{}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    library
}

/// Waits up to 20 s for `process` to exit after `what`, then checks that it halted: exit code
/// 1 and a log naming the reason (every one of `log_says`).
fn assert_halts(process: &mut SluiceProcess, what: &str, log_says: &[&str]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while process.is_running() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !process.is_running(),
        "the broker still runs after {what}; log:\n{}",
        process.log_tail()
    );
    let status = process.terminate();
    let log = process.log_tail();
    assert_eq!(status.code(), Some(1), "exit status {status}; log:\n{log}");
    assert!(
        log_says.iter().all(|s| log.contains(s)),
        "no reason given in the log:\n{log}"
    );
}

/// A failed fdatasync halts the broker (exit code 1, no clean shutdown) without
/// acknowledging the records it covered, and after a restart every acknowledged record is
/// there. The failure comes from an LD_PRELOAD library whose fdatasync fails with EIO while a
/// trigger file exists; the pages stay cached, so only the broker's reaction is tested: a
/// retried fsync would now succeed, which is exactly what a broker must not trust.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_halts_the_broker_before_acknowledging_what_it_covered() {
    const ACKED: usize = 200;
    let work = tempfile::tempdir().unwrap();
    let shim = build_fail_fsync_shim(work.path());
    let trigger = work.path().join("fail-fsync");
    let mut broker = SluiceProcess::start(
        SluiceOptions::new()
            .env("LD_PRELOAD", shim.to_str().unwrap())
            .env("FAIL_FSYNC_IF_EXISTS", trigger.to_str().unwrap()),
    );
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("fsync-fails");
    rdk::create_topic(&bootstrap, &topic, 1, &[]).await;
    let producer = rdk::producer(
        &bootstrap,
        &[("linger.ms", "1"), ("message.timeout.ms", "5000")],
    );
    let offsets = produce(&producer, &topic, 0..ACKED).await;
    assert_eq!(offsets, (0..ACKED as i64).collect::<Vec<_>>());

    std::fs::write(&trigger, b"").unwrap();
    let (k, v) = (key(ACKED), value(ACKED));
    let delivery = producer
        .send(
            FutureRecord::to(&topic).partition(0).key(&k).payload(&v),
            Duration::from_secs(1),
        )
        .await;
    assert!(
        delivery.is_err(),
        "a record whose fsync failed was acknowledged: {delivery:?}"
    );
    drop(producer);

    assert_halts(&mut broker, "a failed fsync", &["halting: an fsync"]);

    std::fs::remove_file(&trigger).unwrap();
    broker.restart();
    let consumer = rdk::consumer(&broker.bootstrap());
    let (low, high) = watermarks(&consumer, &topic);
    assert_eq!(low, 0);
    // The unacknowledged record may or may not be there (its pages did reach the disk here).
    assert!(
        high == ACKED as i64 || high == ACKED as i64 + 1,
        "log end {high} after the restart"
    );
    assert_prefix(
        &consumer,
        &topic,
        ACKED,
        "after a failed fsync and a restart",
    );
}

/// With the shared flush, partitions that append while a sync runs are covered together by
/// one syncfs in the next round, and a failed syncfs halts the broker without acknowledging a
/// record of any partition it covered. The library above holds the first round's fdatasync
/// (partition 0's record) for a second; records to partitions 1 and 2, sent meanwhile, wait
/// for the next round, whose syncfs fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_syncfs_halts_the_broker_before_acknowledging_any_partition_it_covered() {
    let work = tempfile::tempdir().unwrap();
    let shim = build_fail_fsync_shim(work.path());
    let (fail, slow) = (work.path().join("fail"), work.path().join("slow"));
    let failed_calls = work.path().join("failed-calls");
    let mut broker = SluiceProcess::start(
        SluiceOptions::new()
            .env("LD_PRELOAD", shim.to_str().unwrap())
            .env("FAIL_FSYNC_IF_EXISTS", fail.to_str().unwrap())
            .env("SLOW_FSYNC_IF_EXISTS", slow.to_str().unwrap())
            .env("FAIL_FSYNC_LOG", failed_calls.to_str().unwrap()),
    );
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("syncfs-fails");
    rdk::create_topic(&bootstrap, &topic, 3, &[]).await;
    let producer = rdk::producer(
        &bootstrap,
        &[("linger.ms", "5"), ("message.timeout.ms", "5000")],
    );
    let send = |partition: i32, i: usize| {
        let (k, v) = (key(i), value(i));
        let record = FutureRecord::to(&topic)
            .partition(partition)
            .key(&k)
            .payload(&v);
        match producer.send_result(record) {
            Ok(delivery) => delivery,
            Err((e, _)) => panic!("cannot queue a record for partition {partition}: {e}"),
        }
    };
    for partition in 0..3 {
        let delivery = send(partition, 0).await;
        assert!(
            matches!(&delivery, Ok(Ok(d)) if d.offset == 0),
            "{delivery:?}"
        );
    }

    std::fs::write(&slow, b"").unwrap();
    let _held = send(0, 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(&fail, b"").unwrap();
    let covered = [send(1, 1), send(2, 1)];
    assert_halts(&mut broker, "a failed syncfs", &["halting: an fsync"]);
    let calls = std::fs::read_to_string(&failed_calls).unwrap_or_default();
    assert_eq!(
        calls.lines().next(),
        Some("syncfs"),
        "the failed round was not one syncfs of partitions 1 and 2 (failed calls: {calls:?})"
    );
    for (partition, delivery) in (1..).zip(covered) {
        let delivery = delivery.await;
        assert!(
            !matches!(delivery, Ok(Ok(_))),
            "partition {partition}: a record the failed syncfs covered was acknowledged: \
             {delivery:?}"
        );
    }
    drop(producer);

    std::fs::remove_file(&fail).unwrap();
    std::fs::remove_file(&slow).unwrap();
    broker.restart();
    let consumer = rdk::consumer(&broker.bootstrap());
    for partition in 0..3 {
        let (low, high) = consumer
            .fetch_watermarks(&topic, partition, Duration::from_secs(10))
            .unwrap();
        assert_eq!(low, 0, "partition {partition}");
        // The acknowledged record is there; the others may be (their pages reached the disk).
        assert!(
            (1..=2).contains(&high),
            "partition {partition}: log end {high}"
        );
    }
}

/// In a cluster, a failed fsync of the controller's Raft log halts the node as a failed
/// partition fsync does: the metadata change it covered is not made, the node exits with
/// code 1 and says why, and after a restart it serves what it had. A one-voter cluster node
/// under the LD_PRELOAD library above; the trigger is set while no partition is being
/// written, so the next fsync is the controller's, for the topic created next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_controller_log_fsync_halts_a_cluster_node() {
    let work = tempfile::tempdir().unwrap();
    let shim = build_fail_fsync_shim(work.path());
    let trigger = work.path().join("fail-fsync");
    let controller = format!("127.0.0.1:{}", compat_tests::ports::free_port());
    let mut node = SluiceProcess::start(
        SluiceOptions::new()
            .node_id(1)
            .arg("--controller-listen")
            .arg(&controller)
            .arg("--controller-voters")
            .arg(&format!("1@{controller}"))
            .env("LD_PRELOAD", shim.to_str().unwrap())
            .env("FAIL_FSYNC_IF_EXISTS", trigger.to_str().unwrap()),
    );
    let bootstrap = node.bootstrap();
    let before = unique_topic("before-raft-fsync-fails");
    let after = unique_topic("after-raft-fsync-fails");
    let producer = rdk::producer(&bootstrap, &[("linger.ms", "1")]);
    // The node takes topics once it has registered with its controller: retry until then.
    let admin = rdk::admin(&bootstrap);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let new_topic = NewTopic::new(&before, 1, TopicReplication::Fixed(1));
        let created = admin
            .create_topics([&new_topic], &rdk::admin_options())
            .await;
        match created.as_deref() {
            Ok([Ok(_)]) | Ok([Err((_, RDKafkaErrorCode::TopicAlreadyExists))]) => break,
            other => assert!(
                std::time::Instant::now() < deadline,
                "CreateTopics never succeeded: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let offsets = produce(&producer, &before, 0..10).await;
    assert_eq!(offsets, (0..10).collect::<Vec<_>>());
    drop(producer);

    std::fs::write(&trigger, b"").unwrap();
    let created = admin
        .create_topics(
            [&NewTopic::new(&after, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new()
                .request_timeout(Some(Duration::from_secs(5)))
                .operation_timeout(Some(Duration::from_secs(3))),
        )
        .await;
    assert!(
        !matches!(created.as_deref(), Ok([Ok(_)])),
        "a topic whose controller log fsync failed was created: {created:?}"
    );
    drop(admin);

    assert_halts(
        &mut node,
        "its controller log fsync failed",
        &["halting", "controller"],
    );

    std::fs::remove_file(&trigger).unwrap();
    node.restart();
    let consumer = rdk::consumer(&node.bootstrap());
    assert_prefix(
        &consumer,
        &before,
        10,
        "after a failed controller fsync and a restart",
    );
}
