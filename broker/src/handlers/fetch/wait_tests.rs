//! Fetch long-polls: when a waiting fetch answers, and what it reads again when it does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::BrokerId;
use storage::BatchBuilder;

use super::*;
use crate::handlers::util::topic_name;

/// A consumer's sessionless Fetch v12 of every partition of "t" from offset 0.
fn request(partitions: i32, max_wait_ms: i32, min_bytes: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(1 << 20)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name("t"))
            .with_partitions(
                (0..partitions)
                    .map(|p| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_current_leader_epoch(-1)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )])
}

/// Appends one record of `size` bytes to partition `p` and waits until a consumer may read it
/// (the flusher has synced it and moved the high watermark).
async fn append_visible(node: &Node, p: i32, size: usize) {
    let partition = node.partitions.get("t", p).unwrap();
    let mut hw = partition.subscribe_high_watermark();
    let batch = BatchBuilder::new()
        .record(None, Some(&vec![5u8; size][..]), 0)
        .build()
        .unwrap();
    partition.append(&batch, node.now_ms()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), hw.wait_for(|&hw| hw >= 1))
        .await
        .expect("high watermark moved")
        .unwrap();
}

/// Each partition's records length in the answer, in partition order.
fn record_lengths(out: Outgoing) -> Vec<usize> {
    assert!(out.files.is_empty(), "small answers come as bytes");
    out.answer
        .topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .map(|p| p.records.map_or(0, |r| r.len()))
        .collect()
}

/// The race a long-poll must not lose: a partition that changes after its read but before the
/// wait subscribes to it. The wait sees the value moved since the read and reads it again at
/// once instead of waiting for `max_wait_ms`.
#[tokio::test]
async fn a_change_between_a_partitions_read_and_the_wait_ends_the_wait() {
    let (_dir, node) = node_with(&[("t", 3)]);
    let ctx = FetchContext::new(&node, &request(3, 30_000, 1), 12).unwrap();
    let first = ctx.collect(true);
    assert_eq!((first.bytes, first.waits.len()), (0, 3));
    append_visible(&node, 1, 100).await;
    let out = tokio::time::timeout(Duration::from_secs(5), ctx.wait_for_bytes(first))
        .await
        .expect("answered on the change, not at max_wait_ms");
    let lengths = record_lengths(out);
    assert_eq!((lengths[0], lengths[2]), (0, 0), "{lengths:?}");
    assert!(lengths[1] > 100, "{lengths:?}");
}

/// `min_bytes` counts what every partition's reads hold: a change reads its partition again
/// and keeps the others' records, and the wait goes on until together they reach it.
#[tokio::test]
async fn a_wait_adds_up_the_partitions_that_changed_until_min_bytes() {
    let (_dir, node) = node_with(&[("t", 3)]);
    let reply = handle(&node, request(3, 30_000, 3_000), 12);
    let Reply::WithFiles(answer) = reply else {
        panic!("a fetch answer");
    };
    let answer = tokio::spawn(answer);
    append_visible(&node, 0, 2_000).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!answer.is_finished(), "answered under min_bytes");
    append_visible(&node, 2, 2_000).await;
    let out = tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .expect("answered once min_bytes were there")
        .unwrap();
    let lengths = record_lengths(out);
    assert!(lengths[0] > 2_000 && lengths[2] > 2_000, "{lengths:?}");
    assert_eq!(lengths[1], 0, "{lengths:?}");
}

/// As Kafka: a fetch that asks for no bytes is answered at once, whatever it may wait.
#[tokio::test]
async fn min_bytes_zero_answers_at_once() {
    let (_dir, node) = node_with(&[("t", 1)]);
    let Reply::WithFiles(answer) = handle(&node, request(1, 30_000, 0), 12) else {
        panic!("a fetch answer");
    };
    let out = tokio::time::timeout(Duration::from_secs(1), answer)
        .await
        .expect("no wait");
    assert_eq!(record_lengths(out), vec![0]);
}

/// A wait that meets nothing ends at `max_wait_ms` with a fresh read of every partition.
#[tokio::test]
async fn a_wait_without_changes_ends_at_max_wait() {
    let (_dir, node) = node_with(&[("t", 2)]);
    let Reply::WithFiles(answer) = handle(&node, request(2, 200, 1), 12) else {
        panic!("a fetch answer");
    };
    let started = std::time::Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(record_lengths(out), vec![0, 0]);
}

/// As Kafka completes its delayed fetches when a partition changes leadership: a long-poll on
/// a partition that stops leading answers at once with NOT_LEADER_OR_FOLLOWER instead of
/// waiting out `max_wait_ms`.
#[tokio::test]
async fn a_wait_ends_when_its_partition_loses_leadership() {
    let (_dir, node) = node_with(&[("t", 2)]);
    let Reply::WithFiles(answer) = handle(&node, request(2, 30_000, 1), 12) else {
        panic!("a fetch answer");
    };
    let answer = tokio::spawn(answer);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!answer.is_finished(), "answered with nothing to read");
    let partition = node.partitions.get("t", 1).unwrap();
    assert!(partition.become_follower(2, partition.leader_epoch() + 1));
    let out = tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .expect("answered on the leadership change, not at max_wait_ms")
        .unwrap();
    let codes: Vec<i16> = out
        .answer
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.error_code)
        .collect();
    assert_eq!(
        codes,
        vec![0, ErrorKind::NotLeaderOrFollower.code()],
        "only the partition that changed answers the error"
    );
}

/// As Kafka completes delayed fetches of a partition it stops hosting: a long-poll on a topic
/// that is deleted answers at once, with an error for it.
#[tokio::test]
async fn a_wait_ends_when_its_topic_is_deleted() {
    let (_dir, node) = node_with(&[("t", 1)]);
    let Reply::WithFiles(answer) = handle(&node, request(1, 30_000, 1), 12) else {
        panic!("a fetch answer");
    };
    let answer = tokio::spawn(answer);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!answer.is_finished(), "answered with nothing to read");
    node.delete_topic("t").unwrap();
    let out = tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .expect("answered on the deletion, not at max_wait_ms")
        .unwrap();
    let code = out.answer.topics[0].partitions[0].error_code;
    assert_ne!(code, 0, "no error for a deleted topic's partition");
}
