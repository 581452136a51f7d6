//! Log compaction end to end: a real sluice with small segments, a short `segment.ms` and a fast
//! retention check compacts a `cleanup.policy=compact` topic; librdkafka reading from the
//! beginning sees only the latest record of every key (tombstones included, kept for
//! `delete.retention.ms`) at the offsets they were produced at.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use compat_tests::rdk::{self, ConsumedRecord};
use compat_tests::{unique_topic, SluiceOptions, SluiceProcess};
use rdkafka::producer::FutureRecord;
use rdkafka::Offset;

const KEYS: usize = 20;
const ROUNDS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_topic_keeps_the_latest_record_per_key_at_its_offset() {
    let broker =
        SluiceProcess::start(SluiceOptions::new().set("log.retention.check.interval.ms", "200"));
    let topic = unique_topic("compacted");
    rdk::create_topic(
        &broker.bootstrap(),
        &topic,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "2048"),
            ("segment.ms", "300"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "3600000"),
        ],
    )
    .await;
    let producer = rdk::producer(&broker.bootstrap(), &[("linger.ms", "2")]);
    // (offset, value) of the latest record of each key; None = tombstone.
    let mut latest: BTreeMap<String, (i64, Option<String>)> = BTreeMap::new();
    let mut produced = 0usize;
    for round in 0..ROUNDS {
        for k in 0..KEYS {
            let key = format!("key-{k:02}");
            // The last round deletes every fifth key.
            let value = (round + 1 < ROUNDS || k % 5 != 0).then(|| format!("{key}-round-{round}"));
            let mut record = FutureRecord::<String, String>::to(&topic)
                .partition(0)
                .key(&key);
            if let Some(v) = &value {
                record = record.payload(v);
            }
            let delivery = producer
                .send(record, Duration::from_secs(30))
                .await
                .unwrap_or_else(|(e, _)| panic!("record {produced} not delivered: {e}"));
            assert_eq!(delivery.offset, produced as i64);
            latest.insert(key, (delivery.offset, value));
            produced += 1;
        }
    }
    let expected: Vec<ConsumedRecord> = {
        let mut v: Vec<_> = latest
            .iter()
            .map(|(key, (offset, value))| ConsumedRecord {
                offset: *offset,
                key: Some(key.as_bytes().to_vec()),
                value: value.as_ref().map(|v| v.as_bytes().to_vec()),
                timestamp: None,
            })
            .collect();
        v.sort_by_key(|r| r.offset);
        v
    };
    // segment.ms rolls the active segment at a retention check, and the next check compacts it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while Instant::now() < deadline {
        let consumer = rdk::consumer(&broker.bootstrap());
        got = rdk::consume_partition(
            &consumer,
            &topic,
            0,
            Offset::Beginning,
            usize::MAX,
            Duration::from_secs(3),
        );
        for r in &mut got {
            r.timestamp = None;
        }
        if got == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        got,
        expected,
        "after compaction; broker log:\n{}",
        broker.log_tail()
    );
    let consumer = rdk::consumer(&broker.bootstrap());
    let (low, high) = rdkafka::consumer::Consumer::fetch_watermarks(
        &consumer,
        &topic,
        0,
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(
        (low, high),
        (0, produced as i64),
        "offsets are not renumbered"
    );
    // Reading from an offset whose record was compacted away starts at the next kept one.
    let second = expected[1].offset;
    let from_gap = rdk::consume_partition(
        &consumer,
        &topic,
        0,
        Offset::Offset(expected[0].offset + 1),
        1,
        Duration::from_secs(10),
    );
    assert_eq!(from_gap.first().map(|r| r.offset), Some(second));
}
