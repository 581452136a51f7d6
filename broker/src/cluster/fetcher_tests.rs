//! The replica fetcher's requests: partitions named by topic id at the version it sends, and
//! its answers' topic ids read back as the round's names; the divergence check's rounds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use kafka_protocol::protocol::Encodable;

use super::*;

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition {
        topic: topic.to_string(),
        partition,
    }
}

fn entry(tp: &TopicPartition, topic_id: Uuid, fetch_offset: i64) -> RoundEntry<'_> {
    RoundEntry {
        tp,
        topic_id,
        sent: Sent {
            fetch_offset,
            leader_epoch: 2,
            log_start_offset: 0,
        },
        stamp: None,
    }
}

fn settings() -> ClusterSettings {
    ClusterSettings {
        heartbeat_interval_ms: 500,
        session_timeout_ms: 5_000,
        replica_lag_time_max_ms: 30_000,
        replica_fetch_max_bytes: 1 << 20,
        replica_fetch_response_max_bytes: 10 << 20,
        replica_fetch_wait_max_ms: 500,
        replica_fetch_backoff_ms: 1_000,
        offsets_topic_replication_factor: 3,
    }
}

#[test]
fn a_round_names_topics_by_id_and_forgets_a_re_created_topic_under_its_old_id() {
    let (a0, a1, b0) = (tp("a", 0), tp("a", 1), tp("b", 0));
    let (a, b, a_new) = (Uuid::from_u128(9), Uuid::from_u128(4), Uuid::from_u128(7));
    let mut session = FollowerSession::new();
    let first = vec![entry(&a0, a, 5), entry(&a1, a, 6), entry(&b0, b, 7)];
    let plan = session.plan(&first);
    let request = round_request(&plan, &first, 3, &settings());
    let named: Vec<(Uuid, Vec<i32>)> = request
        .topics
        .iter()
        .map(|t| {
            (
                t.topic_id,
                t.partitions.iter().map(|p| p.partition).collect(),
            )
        })
        .collect();
    assert_eq!(named, vec![(a, vec![0, 1]), (b, vec![0])]);
    assert!(request.topics.iter().all(|t| t.topic.0.is_empty()));
    let mut buf = BytesMut::new();
    request
        .encode(&mut buf, FETCH_VERSION)
        .expect("encodes at the followers' version");
    let stamps = session.complete(&plan, &first, 11).expect("session opened");

    // "a" was re-created: its partitions come back under a new id, without stamps.
    let mut again = vec![entry(&a0, a_new, 0), entry(&a1, a_new, 0), entry(&b0, b, 7)];
    again[2].stamp = stamps.get(2).copied();
    let plan = session.plan(&again);
    let request = round_request(&plan, &again, 3, &settings());
    assert_eq!(request.session_id, 11);
    let named: Vec<Uuid> = request.topics.iter().map(|t| t.topic_id).collect();
    assert_eq!(named, vec![a_new]);
    let forgotten: Vec<(Uuid, Vec<i32>)> = request
        .forgotten_topics_data
        .iter()
        .map(|t| (t.topic_id, t.partitions.clone()))
        .collect();
    assert_eq!(forgotten, vec![(a, vec![0, 1])]);
    request
        .encode(&mut BytesMut::new(), FETCH_VERSION)
        .expect("encodes at the followers' version");
}

#[test]
fn answer_topic_ids_map_to_the_round_names() {
    let (a0, a1, b0, c0) = (tp("a", 0), tp("a", 1), tp("b", 0), tp("c", 0));
    let round = vec![
        entry(&a0, Uuid::from_u128(9), 0),
        entry(&a1, Uuid::from_u128(9), 0),
        entry(&b0, Uuid::from_u128(4), 0),
        entry(&c0, Uuid::from_u128(6), 0),
    ];
    let names = names_by_id(&round);
    assert_eq!(
        names,
        vec![
            (Uuid::from_u128(4), "b"),
            (Uuid::from_u128(6), "c"),
            (Uuid::from_u128(9), "a")
        ]
    );
}

/// Kafka's `getOffsetTruncationState`, round by round. Follower epochs 1:[0,10) 3:[10,20),
/// leader 1:[0,8) 2:[8,15): asked about 3, the leader answers (2, 15); we lack epoch 2, so we
/// cut to where our epoch 1 ends (10) and ask again; asked about 1 it answers (1, 8): cut to 8,
/// settled. (A single round stopping at 10 would keep epoch-1 records where the leader has
/// epoch-2 ones.)
#[test]
fn divergence_is_settled_over_rounds_until_an_epoch_is_shared() {
    let first = divergence_step((2, 15), Some(Some((1, 10))), 20, 5);
    assert_eq!(
        first,
        DivergenceStep {
            truncate_to: 10,
            settled: false
        }
    );
    let second = divergence_step((1, 8), Some(Some((1, 10))), 10, 5);
    assert_eq!(
        second,
        DivergenceStep {
            truncate_to: 8,
            settled: true
        }
    );
    // Our latest epoch is the leader's: cut where it ends on the leader (or nothing).
    assert_eq!(
        divergence_step((3, 25), Some(Some((3, 20))), 20, 5),
        DivergenceStep {
            truncate_to: 20,
            settled: true
        }
    );
    // The leader knows no epoch that old: keep what is below our high watermark.
    assert_eq!(
        divergence_step((-1, -1), None, 20, 5),
        DivergenceStep {
            truncate_to: 5,
            settled: true
        }
    );
    // Our log starts after the leader's epoch: its end of that epoch bounds us, not 0.
    assert_eq!(
        divergence_step((2, 15), Some(None), 20, 5),
        DivergenceStep {
            truncate_to: 15,
            settled: true
        }
    );
}
