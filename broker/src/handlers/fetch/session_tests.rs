//! Fetch sessions: what a round reads, in what order, and what an incremental answer keeps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::FetchRequest;
use uuid::Uuid;

use super::*;
use crate::handlers::fetch::node_with;
use crate::handlers::fetch::{FetchContext, PartitionRead, ReadRecords};
use crate::handlers::util::topic_name;
use bytes::Bytes;

/// A consumer's plan (not a follower's).
fn plan(node: &Node, request: &FetchRequest, version: i16) -> Result<FetchPlan, ErrorKind> {
    super::plan(node, request, version, false)
}

/// A Fetch naming `parts` (topic, partition, fetch offset) by name, or by id at v13+.
fn request(
    node: &Node,
    version: i16,
    session: (i32, i32),
    parts: &[(&str, i32, i64)],
    forgotten: &[(&str, i32)],
) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (name, partition, offset) in parts {
        let id = node.topics.get(name).map_or(Uuid::nil(), |t| t.id);
        if topics.last().is_none_or(|t| t.topic.0.as_str() != *name) {
            topics.push(
                FetchTopic::default()
                    .with_topic(topic_name(name))
                    .with_topic_id(if version >= 13 { id } else { Uuid::nil() }),
            );
        }
        if let Some(t) = topics.last_mut() {
            t.partitions.push(
                FetchPartition::default()
                    .with_partition(*partition)
                    .with_fetch_offset(*offset)
                    .with_partition_max_bytes(1 << 20),
            );
        }
    }
    let forgotten = forgotten
        .iter()
        .map(|(name, p)| {
            ForgottenTopic::default()
                .with_topic(topic_name(name))
                .with_topic_id(node.topics.get(name).map_or(Uuid::nil(), |t| t.id))
                .with_partitions(vec![*p])
        })
        .collect();
    FetchRequest::default()
        .with_session_id(session.0)
        .with_session_epoch(session.1)
        .with_topics(topics)
        .with_forgotten_topics_data(forgotten)
}

fn names(plan: &FetchPlan) -> Vec<(String, i32, i64)> {
    plan.wanted
        .iter()
        .map(|w| {
            (
                w.key.topic.as_deref().unwrap_or("?").to_string(),
                w.key.partition,
                w.fetch_offset,
            )
        })
        .collect()
}

/// A read that found no records and no error, at high watermark `hw` and log start 0.
fn quiet_read(hw: i64) -> PartitionRead {
    let mut read = PartitionRead::new();
    read.high_watermark = hw;
    read.log_start_offset = 0;
    read
}

#[tokio::test]
async fn a_round_that_changes_nothing_reads_the_sessions_list_without_copying_it() {
    let (_dir, node) = node_with(&[("a", 3), ("b", 1)]);
    let parts = [("a", 0, 0), ("a", 1, 0), ("a", 2, 0), ("b", 0, 0)];
    let full = plan(&node, &request(&node, 12, (0, 0), &parts, &[]), 12).unwrap();
    let id = full.response_session_id;
    assert!(id > 0 && !full.incremental);
    let first = plan(&node, &request(&node, 12, (id, 1), &[], &[]), 12).unwrap();
    let second = plan(&node, &request(&node, 12, (id, 2), &[], &[]), 12).unwrap();
    assert!(first.incremental && second.incremental);
    assert!(Arc::ptr_eq(&full.wanted, &first.wanted));
    assert!(Arc::ptr_eq(&first.wanted, &second.wanted));
    assert_eq!(names(&second).len(), 4);
}

#[tokio::test]
async fn rounds_add_alter_and_forget_partitions_keeping_the_order_they_were_added_in() {
    let (_dir, node) = node_with(&[("a", 3), ("b", 2)]);
    let full = plan(
        &node,
        &request(
            &node,
            12,
            (0, 0),
            &[("a", 0, 0), ("a", 1, 0), ("a", 2, 0)],
            &[],
        ),
        12,
    )
    .unwrap();
    let id = full.response_session_id;
    // Adds b-1 and alters a-1's offset.
    let round = plan(
        &node,
        &request(&node, 12, (id, 1), &[("a", 1, 7), ("b", 1, 3)], &[]),
        12,
    )
    .unwrap();
    assert!(!Arc::ptr_eq(&full.wanted, &round.wanted));
    assert_eq!(
        names(&round),
        vec![
            ("a".into(), 0, 0),
            ("a".into(), 1, 7),
            ("a".into(), 2, 0),
            ("b".into(), 1, 3)
        ]
    );
    // Forgets a-0 (and a partition the session never had).
    let round = plan(
        &node,
        &request(&node, 12, (id, 2), &[], &[("a", 0), ("b", 0)]),
        12,
    )
    .unwrap();
    assert_eq!(
        names(&round),
        vec![("a".into(), 1, 7), ("a".into(), 2, 0), ("b".into(), 1, 3)]
    );
    // A wrong epoch or an unknown session is refused.
    let unknown = if id == 1 { 2 } else { 1 };
    assert_eq!(
        plan(&node, &request(&node, 12, (id, 2), &[], &[]), 12).unwrap_err(),
        ErrorKind::InvalidFetchSessionEpoch
    );
    assert_eq!(
        plan(&node, &request(&node, 12, (unknown, 1), &[], &[]), 12).unwrap_err(),
        ErrorKind::FetchSessionIdNotFound
    );
    // A deleted topic leaves a session keyed by name (which could not tell it from a topic
    // re-created under its name).
    node.delete_topic("b").unwrap();
    let round = plan(&node, &request(&node, 12, (id, 3), &[], &[]), 12).unwrap();
    assert_eq!(names(&round), vec![("a".into(), 1, 7), ("a".into(), 2, 0)]);
    // A session created by names goes on by names only (Kafka's `usesTopicIds`).
    assert_eq!(
        plan(&node, &request(&node, 13, (id, 4), &[], &[]), 13).unwrap_err(),
        ErrorKind::FetchSessionTopicIdError
    );
}

/// A Fetch v13+ naming partitions by topic id, in session `session`, forgetting `forgotten`.
fn by_id(
    session: (i32, i32),
    parts: &[(Uuid, i32, i64)],
    forgotten: &[(Uuid, i32)],
) -> FetchRequest {
    FetchRequest::default()
        .with_session_id(session.0)
        .with_session_epoch(session.1)
        .with_topics(
            parts
                .iter()
                .map(|(id, p, offset)| {
                    FetchTopic::default()
                        .with_topic_id(*id)
                        .with_partitions(vec![FetchPartition::default()
                            .with_partition(*p)
                            .with_fetch_offset(*offset)
                            .with_partition_max_bytes(1 << 20)])
                })
                .collect(),
        )
        .with_forgotten_topics_data(
            forgotten
                .iter()
                .map(|(id, p)| {
                    ForgottenTopic::default()
                        .with_topic_id(*id)
                        .with_partitions(vec![*p])
                })
                .collect(),
        )
}

/// As Kafka's sessions keyed by `TopicIdPartition` (v13+): two ids no topic has are two
/// entries (the nil id too), and one gets its name once a topic has that id; a deleted topic's
/// partitions stay, answered UNKNOWN_TOPIC_OR_PARTITION and, once a topic of the same name is
/// created, INCONSISTENT_TOPIC_ID, until forgotten by their id, which no topic has any more;
/// and the session goes on by ids only.
#[tokio::test]
async fn v13_sessions_key_partitions_by_topic_id() {
    let (_dir, node) = node_with(&[("a", 1), ("b", 1)]);
    let a = node.topics.get("a").unwrap().id;
    let (x, y) = (Uuid::from_u128(0x78), Uuid::from_u128(0x79));
    let parts = [(a, 0, 0), (x, 0, 1), (y, 0, 2), (Uuid::nil(), 0, 3)];
    let full = plan(&node, &by_id((0, 0), &parts, &[]), 13).unwrap();
    let id = full.response_session_id;
    let round = plan(&node, &by_id((id, 1), &[], &[]), 13).unwrap();
    assert_eq!(
        names(&round),
        vec![
            ("a".into(), 0, 0),
            ("?".into(), 0, 1),
            ("?".into(), 0, 2),
            ("?".into(), 0, 3)
        ]
    );
    // The broker learns of x late (here: b takes x as its id).
    node.topics
        .update(|m| {
            m.get_mut("b").unwrap().id = x;
            true
        })
        .unwrap();
    let round = plan(&node, &by_id((id, 2), &[], &[]), 13).unwrap();
    assert_eq!(
        names(&round),
        vec![
            ("a".into(), 0, 0),
            ("b".into(), 0, 1),
            ("?".into(), 0, 2),
            ("?".into(), 0, 3)
        ]
    );
    // (b's partition was opened under b's first id, so only a's, y's and nil's answers are
    // read below.)
    let errors = |epoch: i32| -> Vec<ErrorKind> {
        let request = by_id((id, epoch), &[], &[]);
        let ctx = FetchContext::new(&node, &request, 13).unwrap();
        assert_eq!(names(&ctx.plan).len(), 4);
        let read = ctx.collect(false);
        [0, 2, 3].iter().map(|&i| read.entries[i].error).collect()
    };
    node.delete_topic("a").unwrap();
    assert_eq!(
        errors(3),
        vec![
            ErrorKind::UnknownTopicOrPartition,
            ErrorKind::UnknownTopicId,
            ErrorKind::UnknownTopicId
        ]
    );
    node.create_topic("a", 1, 1, Default::default(), false)
        .unwrap();
    assert_eq!(errors(4)[0], ErrorKind::InconsistentTopicId);
    assert_eq!(
        plan(&node, &by_id((id, 5), &[], &[]), 12).unwrap_err(),
        ErrorKind::FetchSessionTopicIdError
    );
    let round = plan(
        &node,
        &by_id((id, 5), &[], &[(a, 0), (y, 0), (Uuid::nil(), 0)]),
        13,
    )
    .unwrap();
    assert_eq!(names(&round), vec![("b".into(), 0, 1)]);
}

#[tokio::test]
async fn topic_ids_resolve_to_one_shared_name_per_topic_and_unknown_ids_to_none() {
    let (_dir, node) = node_with(&[("a", 3)]);
    let full = plan(
        &node,
        &request(
            &node,
            13,
            (0, -1),
            &[("a", 0, 0), ("a", 1, 0), ("a", 2, 0)],
            &[],
        ),
        13,
    )
    .unwrap();
    let topics: Vec<_> = full.wanted.iter().map(|w| w.key.topic.clone()).collect();
    let first = topics[0].clone().expect("a's name");
    assert_eq!(&*first, "a");
    for t in &topics {
        assert!(Arc::ptr_eq(&first, t.as_ref().expect("a's name")));
    }
    let unknown = FetchRequest::default()
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic_id(Uuid::from_u128(42))
            .with_partitions(vec![FetchPartition::default()])]);
    let plan = plan(&node, &unknown, 13).unwrap();
    assert_eq!(plan.wanted.len(), 1);
    assert_eq!(plan.wanted[0].key.topic, None);
    assert_eq!(plan.wanted[0].key.topic_id, Uuid::from_u128(42));
}

#[tokio::test]
async fn an_incremental_answer_keeps_only_partitions_that_changed_in_any_order() {
    let (_dir, node) = node_with(&[("a", 3)]);
    let parts = [("a", 0, 0), ("a", 1, 0), ("a", 2, 0)];
    let full = plan(&node, &request(&node, 12, (0, 0), &parts, &[]), 12).unwrap();
    let entries = |hw: [i64; 3]| hw.iter().map(|&hw| quiet_read(hw)).collect::<Vec<_>>();
    // The full answer keeps everything and records what it sent.
    let kept = node
        .fetch_sessions
        .filter_response(&full, entries([0, 0, 0]), false);
    assert_eq!(kept.len(), 3);
    let id = full.response_session_id;
    let round = plan(&node, &request(&node, 12, (id, 1), &[], &[]), 12).unwrap();
    let kept = node
        .fetch_sessions
        .filter_response(&round, entries([0, 5, 0]), false);
    let kept: Vec<usize> = kept.iter().map(|(i, _)| *i).collect();
    assert_eq!(kept, vec![1]);
    // Records, an error or a new log start offset are news too; an unchanged partition is not.
    let round = plan(&node, &request(&node, 12, (id, 2), &[], &[]), 12).unwrap();
    let mut e = entries([0, 5, 0]);
    e[0].records = ReadRecords::Bytes(Bytes::from_static(b"x"));
    e[2].error = ErrorKind::NotLeaderOrFollower;
    let kept = node.fetch_sessions.filter_response(&round, e, false);
    let kept: Vec<usize> = kept.iter().map(|(i, _)| *i).collect();
    assert_eq!(kept, vec![0, 2]);
    // Partition 2's error has cleared: it is sent again although its high watermark is the
    // one it had before the error (Kafka forgets the high watermark on an error).
    let round = plan(&node, &request(&node, 12, (id, 3), &[], &[]), 12).unwrap();
    let mut e = entries([0, 5, 0]);
    e[1].log_start_offset = 3;
    let kept = node.fetch_sessions.filter_response(&round, e, false);
    assert_eq!(kept.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1, 2]);
    // A preferred read replica is news every time (the client must be told to move).
    let round = plan(&node, &request(&node, 12, (id, 4), &[], &[]), 12).unwrap();
    let mut e = entries([0, 5, 0]);
    e[1].log_start_offset = 3;
    e[0].preferred_read_replica = 2;
    let kept = node.fetch_sessions.filter_response(&round, e, false);
    assert_eq!(kept.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0]);
}

#[tokio::test]
async fn an_answer_in_a_changed_order_is_matched_to_the_session_by_key() {
    let (_dir, node) = node_with(&[("a", 3)]);
    let parts = [("a", 0, 0), ("a", 1, 0), ("a", 2, 0)];
    let full = plan(&node, &request(&node, 12, (0, 0), &parts, &[]), 12).unwrap();
    let id = full.response_session_id;
    let quiet = |n: usize| (0..n).map(|_| quiet_read(0)).collect::<Vec<_>>();
    node.fetch_sessions.filter_response(&full, quiet(3), false);
    // Forgetting a-0 shifts the session: its list is a-1, a-2; a-2's high watermark moved.
    let round = plan(&node, &request(&node, 12, (id, 1), &[], &[("a", 0)]), 12).unwrap();
    let mut e = quiet(2);
    e[1].high_watermark = 7;
    let kept = node.fetch_sessions.filter_response(&round, e, false);
    let kept: Vec<i32> = kept
        .iter()
        .map(|(i, _)| round.wanted[*i].key.partition)
        .collect();
    assert_eq!(kept, vec![2]);
}

#[test]
fn a_borrowed_session_key_hashes_and_compares_as_the_owned_one() {
    let state = RandomState::new();
    for (name, partition) in [("", 0), ("orders", 7), ("é-topic", i32::MAX), ("x", -1)] {
        let owned = SessionKey::Name(Arc::from(name), partition);
        let borrowed = SessionKeyRef::Name(name, partition);
        assert_eq!(state.hash_one(&owned), state.hash_one(&borrowed));
        assert!(borrowed.equivalent(&owned));
        assert!(!SessionKeyRef::Name(name, partition.wrapping_add(1)).equivalent(&owned));
        assert!(!SessionKeyRef::Name("other", partition).equivalent(&owned));
        let id = Uuid::from_u128(u128::from(name.len() as u32) + 1);
        let owned_id = SessionKey::Id(id, partition);
        let borrowed_id = SessionKeyRef::Id(id, partition);
        assert_eq!(state.hash_one(&owned_id), state.hash_one(&borrowed_id));
        assert!(borrowed_id.equivalent(&owned_id));
        assert!(!borrowed_id.equivalent(&owned));
        assert!(!borrowed.equivalent(&owned_id));
        assert!(!SessionKeyRef::Id(Uuid::nil(), partition).equivalent(&owned_id));
    }
}

#[tokio::test]
async fn a_round_that_alters_a_partition_changes_the_list_in_place_and_never_under_a_reader() {
    let (_dir, node) = node_with(&[("a", 3)]);
    let parts = [("a", 0, 0), ("a", 1, 0), ("a", 2, 0)];
    let full = plan(&node, &request(&node, 12, (0, 0), &parts, &[]), 12).unwrap();
    let id = full.response_session_id;
    // `full` still reads the list: the round gets its own copy and `full` keeps its offsets.
    let round = plan(&node, &request(&node, 12, (id, 1), &[("a", 1, 9)], &[]), 12).unwrap();
    assert_eq!(names(&full)[1], ("a".into(), 1, 0));
    assert_eq!(
        names(&round),
        vec![("a".into(), 0, 0), ("a".into(), 1, 9), ("a".into(), 2, 0)]
    );
    // With no reader left, the next alteration lands in the session's own list.
    drop(full);
    let before = Arc::as_ptr(&round.wanted);
    drop(round);
    let round = plan(&node, &request(&node, 12, (id, 2), &[("a", 2, 4)], &[]), 12).unwrap();
    assert_eq!(Arc::as_ptr(&round.wanted), before);
    assert_eq!(
        names(&round),
        vec![("a".into(), 0, 0), ("a".into(), 1, 9), ("a".into(), 2, 4)]
    );
    // An unchanged round then shares that list.
    let same = plan(&node, &request(&node, 12, (id, 3), &[], &[]), 12).unwrap();
    assert!(Arc::ptr_eq(&round.wanted, &same.wanted));
}

#[tokio::test]
async fn incremental_rounds_reuse_the_partitions_found_until_one_is_opened_or_removed() {
    let (_dir, node) = node_with(&[("a", 2)]);
    let parts = [("a", 0, 0), ("a", 1, 0), ("b", 0, 0)];
    let full = plan(&node, &request(&node, 12, (0, 0), &parts, &[]), 12).unwrap();
    assert!(full.found.is_none());
    let id = full.response_session_id;
    let first = plan(&node, &request(&node, 12, (id, 1), &[], &[]), 12).unwrap();
    let found = first.found.clone().unwrap();
    let partition_of = |w: &Weak<Partition>| w.upgrade().map(|p| p.tp.to_string());
    assert_eq!(
        found.iter().map(partition_of).collect::<Vec<_>>(),
        vec![Some("a-0".to_string()), Some("a-1".to_string()), None]
    );
    // Altering an offset keeps the same partitions: nothing is looked up again.
    let second = plan(&node, &request(&node, 12, (id, 2), &[("a", 1, 5)], &[]), 12).unwrap();
    assert!(Arc::ptr_eq(&found, second.found.as_ref().unwrap()));
    // Opening b-0 changes the manager's generation: the next round finds it.
    node.create_topic("b", 1, 1, Default::default(), false)
        .unwrap();
    let third = plan(&node, &request(&node, 12, (id, 3), &[], &[]), 12).unwrap();
    let again = third.found.unwrap();
    assert!(!Arc::ptr_eq(&found, &again));
    assert_eq!(partition_of(&again[2]), Some("b-0".to_string()));
    // Forgetting a partition builds the list again, in the session's new order.
    let fourth = plan(&node, &request(&node, 12, (id, 4), &[], &[("a", 0)]), 12).unwrap();
    assert_eq!(
        fourth
            .found
            .unwrap()
            .iter()
            .map(partition_of)
            .collect::<Vec<_>>(),
        vec![Some("a-1".to_string()), Some("b-0".to_string())]
    );
}

/// When an answer's budget may have cut a partition short, the partitions that sent records
/// move to the back of the session (keeping their order), so the next round reads the others
/// first; the round's lists (`wanted`, the partitions found) move with them.
#[tokio::test]
async fn a_budget_limited_round_moves_the_partitions_that_sent_records_to_the_back() {
    let (_dir, node) = node_with(&[("a", 4)]);
    let parts = [("a", 0, 0), ("a", 1, 0), ("a", 2, 0), ("a", 3, 0)];
    let full = plan(&node, &request(&node, 12, (0, 0), &parts, &[]), 12).unwrap();
    let id = full.response_session_id;
    let with_records = |which: &[usize]| {
        (0..4)
            .map(|i| {
                let mut r = quiet_read(0);
                if which.contains(&i) {
                    r.records = ReadRecords::Bytes(Bytes::from_static(b"x"));
                }
                r
            })
            .collect::<Vec<_>>()
    };
    // Not limited: the order stays.
    node.fetch_sessions
        .filter_response(&full, with_records(&[0, 1]), false);
    let round = plan(&node, &request(&node, 12, (id, 1), &[], &[]), 12).unwrap();
    let order = |p: &FetchPlan| names(p).iter().map(|n| n.1).collect::<Vec<_>>();
    assert_eq!(order(&round), vec![0, 1, 2, 3]);
    // Limited: 0 and 1 sent records and go to the back.
    node.fetch_sessions
        .filter_response(&round, with_records(&[0, 1]), true);
    let round = plan(&node, &request(&node, 12, (id, 2), &[], &[]), 12).unwrap();
    assert_eq!(order(&round), vec![2, 3, 0, 1]);
    let found = round
        .found
        .as_ref()
        .expect("the session's partitions, reordered");
    let found: Vec<i32> = found
        .iter()
        .map(|f| f.upgrade().expect("open").tp.partition)
        .collect();
    assert_eq!(found, vec![2, 3, 0, 1]);
    // Next: 2 (now first) sent records.
    node.fetch_sessions
        .filter_response(&round, with_records(&[0]), true);
    let round = plan(&node, &request(&node, 12, (id, 3), &[], &[]), 12).unwrap();
    assert_eq!(order(&round), vec![3, 0, 1, 2]);
}

/// As Kafka's map of a Fetch's partitions: one named twice is read once, in its first place,
/// from the offset its last mention asks, by name before v13 and by topic id from v13; a
/// session then holds it once.
#[tokio::test]
async fn a_partition_named_twice_is_read_once_in_its_first_place_for_its_last_offset() {
    let (_dir, node) = node_with(&[("a", 2), ("b", 1)]);
    let parts = [
        ("a", 0, 0),
        ("b", 0, 3),
        ("a", 1, 0),
        ("a", 0, 5),
        ("a", 0, 9),
    ];
    for (version, epoch) in [(4, -1), (12, -1), (12, 0), (13, 0)] {
        let round = plan(
            &node,
            &request(&node, version, (0, epoch), &parts, &[]),
            version,
        );
        let round = round.unwrap();
        assert_eq!(
            names(&round),
            vec![("a".into(), 0, 9), ("b".into(), 0, 3), ("a".into(), 1, 0)],
            "v{version}"
        );
        if epoch == 0 {
            let id = round.response_session_id;
            let next = plan(&node, &request(&node, version, (id, 1), &[], &[]), version);
            assert_eq!(names(&next.unwrap()).len(), 3, "v{version} session");
        }
    }
}

#[tokio::test]
async fn a_full_cache_gives_a_followers_or_a_larger_session_the_place_of_the_smallest_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = crate::config::BrokerSettings::default();
    settings
        .set("max.incremental.fetch.session.cache.slots", "2")
        .unwrap();
    let node = Node::start(
        crate::config::BrokerConfig::for_tests(dir.path(), settings),
        Arc::new(crate::clock::SystemClock),
    )
    .unwrap();
    node.create_topic("a", 4, 1, Default::default(), false)
        .unwrap();
    let parts: Vec<(&str, i32, i64)> = (0..4).map(|p| ("a", p, 0)).collect();
    let t0 = std::time::Instant::now();
    let at = |s: u64| t0 + std::time::Duration::from_secs(s);
    // A new session over the first `n` partitions of "a" at `secs`; its id, 0 if none was made.
    let open = |n: usize, follower: bool, secs: u64| {
        let full = request(&node, 12, (0, 0), &parts[..n], &[]);
        plan_at(&node, &full, 12, follower, at(secs))
            .unwrap()
            .response_session_id
    };
    // The incremental round `epoch` of session `id` at `secs`.
    let round = |id: i32, epoch: i32, secs: u64| {
        plan_at(
            &node,
            &request(&node, 12, (id, epoch), &[], &[]),
            12,
            false,
            at(secs),
        )
    };
    let one = open(1, false, 0);
    let two = open(2, false, 0);
    assert!(one > 0 && two > 0 && one != two);
    // Full, and neither was created two minutes ago: nothing is evicted, even for a follower.
    assert_eq!(open(4, true, 100), 0);
    assert!(round(one, 1, 100).is_ok() && round(two, 1, 100).is_ok());
    // Later: a consumer no larger than the smallest gets no session...
    assert_eq!(open(1, false, 130), 0);
    // ... a larger one takes the smallest one's place.
    let three = open(3, false, 130);
    assert!(three > 0);
    assert_eq!(
        round(one, 2, 131).unwrap_err(),
        ErrorKind::FetchSessionIdNotFound
    );
    // A follower's is worth more than any consumer's, of any size.
    let follower = open(1, true, 131);
    assert!(follower > 0);
    assert_eq!(
        round(two, 2, 131).unwrap_err(),
        ErrorKind::FetchSessionIdNotFound
    );
    // The consumer's session (3 partitions) goes before a follower's for a larger follower.
    assert!(round(three, 1, 200).is_ok() && round(follower, 1, 200).is_ok());
    assert_eq!(open(3, false, 260), 0);
    let bigger = open(2, true, 260);
    assert!(bigger > 0);
    assert_eq!(
        round(three, 2, 260).unwrap_err(),
        ErrorKind::FetchSessionIdNotFound
    );
    // Only followers' sessions left: no consumer takes their place, a larger follower's does.
    assert!(round(follower, 2, 300).is_ok() && round(bigger, 1, 300).is_ok());
    assert_eq!(open(4, false, 300), 0);
    assert_eq!(open(1, true, 300), 0, "no follower's session is smaller");
    let biggest = open(4, true, 300);
    assert!(biggest > 0);
    assert_eq!(
        round(follower, 3, 300).unwrap_err(),
        ErrorKind::FetchSessionIdNotFound
    );
    assert!(round(bigger, 2, 300).is_ok());
}
