//! kcat (librdkafka's command-line client): metadata listing, and a keyed
//! produce/consume round trip for every compression codec.
//!
//! Partitioning is librdkafka's default (`consistent_random`: CRC-32 of the
//! key modulo the partition count), so the test computes which partition each
//! record must land in and compares every partition byte for byte, in order,
//! with offsets 0.. contiguous. The producer is idempotent so retries cannot
//! reorder. Without kcat the test is skipped, except in CI (`CI=true`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use compat_tests::kcat::{find_kcat, run_kcat};
use compat_tests::{require, unique_topic, SluiceOptions, SluiceProcess};
use kafka_protocol::records::IEEE;

const PARTITIONS: u32 = 3;
const N: usize = 10_000;
const KCAT_TIMEOUT: Duration = Duration::from_secs(120);

fn kcat_or_skip() -> Option<PathBuf> {
    let kcat = find_kcat();
    require(kcat.is_some(), "kcat").then_some(kcat).flatten()
}

fn broker() -> SluiceProcess {
    SluiceProcess::start(
        SluiceOptions::new()
            .set("num.partitions", &PARTITIONS.to_string())
            .set("auto.create.topics.enable", "true"),
    )
}

/// Which partition librdkafka's default partitioner picks for a non-empty key.
fn partition_of(key: &str) -> u32 {
    IEEE.checksum(key.as_bytes()) % PARTITIONS
}

fn record(codec: &str, i: usize) -> (String, String) {
    // No ':' (the key delimiter), '|' (the output separator) or newlines.
    let key = format!("key-{i:05}");
    let filler = "abcdefghij".repeat(i % 23);
    (key, format!("{codec}-value-{i:05}-{filler}-end"))
}

fn produce_and_consume(codec: &str) {
    let Some(kcat) = kcat_or_skip() else { return };
    let broker = broker();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic(&format!("kcat-{codec}"));
    let records: Vec<(String, String)> = (0..N).map(|i| record(codec, i)).collect();
    let input: String = records.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();

    let mut args = vec![
        "-b",
        &bootstrap,
        "-t",
        &topic,
        "-P",
        "-K:",
        "-X",
        "enable.idempotence=true",
        "-X",
        "acks=all",
        "-X",
        "message.timeout.ms=60000",
    ];
    if codec != "none" {
        args.extend(["-z", codec]);
    }
    let out = run_kcat(&kcat, &args, input.as_bytes(), KCAT_TIMEOUT);
    assert!(
        out.success() && !out.stderr.contains("ERROR"),
        "kcat -P -z {codec} failed (exit {:?}):\n{}\nbroker log:\n{}",
        out.code,
        out.stderr,
        broker.log_tail()
    );

    let out = run_kcat(
        &kcat,
        &[
            "-b",
            &bootstrap,
            "-t",
            &topic,
            "-C",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%p|%o|%k|%s\n",
        ],
        b"",
        KCAT_TIMEOUT,
    );
    assert!(
        out.success(),
        "kcat -C after -z {codec} failed (exit {:?}):\n{}",
        out.code,
        out.stderr
    );

    let mut expected: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (k, v) in &records {
        let partition = partition_of(k);
        let list = expected.entry(partition).or_default();
        let offset = list.len();
        list.push(format!("{partition}|{offset}|{k}|{v}"));
    }
    let stdout = String::from_utf8(out.stdout).expect("kcat output is UTF-8");
    let mut got: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for line in stdout.lines() {
        let partition: u32 = line
            .split('|')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unparsable kcat line {line:?}"));
        got.entry(partition).or_default().push(line.to_owned());
    }
    let total: usize = got.values().map(Vec::len).sum();
    assert_eq!(total, N, "-z {codec}: records consumed");
    for partition in 0..PARTITIONS {
        let want = expected.remove(&partition).unwrap_or_default();
        let have = got.remove(&partition).unwrap_or_default();
        assert_eq!(
            have.len(),
            want.len(),
            "-z {codec}: partition {partition} record count"
        );
        if let Some(i) = (0..want.len()).find(|&i| want[i] != have[i]) {
            panic!(
                "-z {codec}: partition {partition} differs first at index {i}:\n  want {}\n  got  {}",
                want[i], have[i]
            );
        }
    }
    assert!(
        got.is_empty(),
        "records in unexpected partitions: {:?}",
        got.keys()
    );
}

#[test]
fn kcat_roundtrip_uncompressed() {
    produce_and_consume("none");
}

#[test]
fn kcat_roundtrip_gzip() {
    produce_and_consume("gzip");
}

#[test]
fn kcat_roundtrip_snappy() {
    produce_and_consume("snappy");
}

#[test]
fn kcat_roundtrip_lz4() {
    produce_and_consume("lz4");
}

#[test]
fn kcat_roundtrip_zstd() {
    produce_and_consume("zstd");
}

#[test]
fn kcat_lists_broker_and_topics() {
    let Some(kcat) = kcat_or_skip() else { return };
    let broker = broker();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("kcat-list");
    // Produce one record: the topic is auto-created with num.partitions=3.
    let out = run_kcat(
        &kcat,
        &["-b", &bootstrap, "-t", &topic, "-P"],
        b"hello\n",
        KCAT_TIMEOUT,
    );
    assert!(out.success(), "kcat -P failed:\n{}", out.stderr);

    let out = run_kcat(&kcat, &["-b", &bootstrap, "-L"], b"", KCAT_TIMEOUT);
    assert!(out.success(), "kcat -L failed:\n{}", out.stderr);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains(" 1 brokers:"), "broker count:\n{listing}");
    assert!(
        listing.contains(&format!("broker 1 at {bootstrap}")),
        "broker 1 at {bootstrap}:\n{listing}"
    );
    assert!(
        listing.contains(&format!("topic \"{topic}\" with {PARTITIONS} partitions:")),
        "topic {topic}:\n{listing}"
    );
    for p in 0..PARTITIONS {
        assert!(
            listing.contains(&format!("partition {p}, leader 1, replicas: 1, isrs: 1")),
            "partition {p} line:\n{listing}"
        );
    }

    // -L for one topic lists just that topic.
    let out = run_kcat(
        &kcat,
        &["-b", &bootstrap, "-L", "-t", &topic],
        b"",
        KCAT_TIMEOUT,
    );
    assert!(out.success(), "kcat -L -t failed:\n{}", out.stderr);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("1 topics:"), "{listing}");
}
