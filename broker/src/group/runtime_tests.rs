//! Tests of `GroupRuntime` on a real node in a temporary directory: commits are durable
//! before they are acknowledged, parked JoinGroups are answered, and a restarted node loads
//! groups and offsets back from `__consumer_offsets`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol_shim::ErrorKind;

use super::api::{
    CommitPartition, CommitRequest, CommitTopic, JoinRequest, ParkedReply, SyncRequest,
};
use super::coordinator::Answer;
use crate::clock::SystemClock;
use crate::config::{BrokerConfig, BrokerSettings};
use crate::metadata::CONSUMER_OFFSETS_TOPIC;
use crate::node::Node;

fn config(dir: &std::path::Path) -> BrokerConfig {
    let mut settings = BrokerSettings::default();
    settings.set("offsets.topic.num.partitions", "3").unwrap();
    settings
        .set("group.initial.rebalance.delay.ms", "0")
        .unwrap();
    BrokerConfig::for_tests(dir, settings)
}

/// A simple commit (no member, generation -1) of group "g" at `offset` on t-0.
fn simple_commit(offset: i64) -> CommitRequest {
    CommitRequest::one_partition("g", "", -1, offset, None)
}

async fn stop(node: Arc<Node>) {
    node.shutdown.cancel();
    // Let the timer task see the cancellation and release its handle on the node.
    tokio::time::sleep(Duration::from_millis(50)).await;
    node.close_partitions();
}

#[tokio::test]
async fn commits_and_groups_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path()), Arc::new(SystemClock)).unwrap();
    assert_eq!(
        node.topics
            .get("__consumer_offsets")
            .map(|t| (t.partitions, t.internal)),
        Some((3, true))
    );
    node.create_topic("t", 2, 1, Default::default(), false)
        .unwrap();

    // A one-member group: join (parked, answered by the timer task), sync, commit.
    let join = JoinRequest {
        group_id: "g".into(),
        member_id: String::new(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "h".into(),
        session_timeout_ms: 30_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"m"))],
        require_known_member_id: false,
        supports_skip_assignment: false,
    };
    let called = node
        .groups
        .call(&node, |c, now, token| c.join(now, token, join));
    assert_eq!(called.answer, Answer::Parked);
    let reply = tokio::time::timeout(Duration::from_secs(5), called.parked.unwrap())
        .await
        .unwrap()
        .unwrap();
    let ParkedReply::Join(joined) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!((joined.error, joined.generation_id), (ErrorKind::None, 1));
    let member = joined.member_id.clone();
    let sync = SyncRequest {
        group_id: "g".into(),
        generation_id: 1,
        member_id: member.clone(),
        group_instance_id: None,
        protocol_type: None,
        protocol_name: None,
        assignments: vec![(member.clone(), Bytes::from_static(b"all"))],
    };
    let called = node
        .groups
        .call(&node, |c, now, token| c.sync(now, token, sync));
    let Ok(ParkedReply::Sync(synced)) = called.parked.unwrap().await else {
        panic!()
    };
    assert_eq!(synced.assignment, Bytes::from_static(b"all"));
    let commit = CommitRequest {
        group_id: "g".into(),
        generation_id: 1,
        member_id: member.clone(),
        group_instance_id: None,
        retention_ms: None,
        topics: vec![CommitTopic {
            name: "t".into(),
            partitions: vec![CommitPartition {
                partition: 1,
                offset: 77,
                leader_epoch: 0,
                metadata: None,
                error: None,
            }],
        }],
        version: 8,
    };
    let called = node.groups.call(&node, |c, now, _| {
        Answer::Now(c.commit_offsets(now, commit))
    });
    assert_eq!(called.durable.await, Ok(()));
    let p = node.groups.partition_for("g");
    let log = node.partitions.get("__consumer_offsets", p).unwrap();
    assert!(
        log.high_watermark() >= 2,
        "group and offset records are in the log"
    );
    stop(node).await;

    let node = Node::start(config(dir.path()), Arc::new(SystemClock)).unwrap();
    let fetched = node.groups.read(|c| c.fetch_offsets("g", None));
    assert_eq!(
        fetched.topics,
        vec![(
            "t".to_string(),
            vec![super::api::FetchedOffset {
                partition: 1,
                offset: 77,
                leader_epoch: 0,
                metadata: String::new(),
            }]
        )]
    );
    let (state, assignment) = node.groups.read(|c| {
        let g = c.group("g").unwrap();
        (g.state, g.members[&member].assignment.clone())
    });
    assert_eq!(
        (state, assignment),
        (super::GroupState::Stable, Bytes::from_static(b"all"))
    );
    // The lag gauge: committed 77 on an empty partition is no lag (never negative); an
    // offset on a partition this node does not host is left out.
    let mut committed = node.groups.read(|c| c.all_committed());
    assert_eq!(
        committed,
        vec![crate::metrics::CommittedOffset {
            group: "g".into(),
            topic: "t".into(),
            partition: 1,
            offset: 77,
        }]
    );
    committed.push(crate::metrics::CommittedOffset {
        group: "g".into(),
        topic: "gone".into(),
        partition: 0,
        offset: 3,
    });
    let text = node.metrics.render(&node.partitions, &committed);
    assert!(
        text.contains("sluice_consumer_group_lag{group=\"g\",topic=\"t\",partition=\"1\"} 0\n"),
        "{text}"
    );
    assert!(!text.contains("topic=\"gone\""), "{text}");
    stop(node).await;
}

#[tokio::test]
async fn unload_and_load_a_partition_on_a_live_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.settings
        .set("group.initial.rebalance.delay.ms", "60000")
        .unwrap();
    let node = Node::start(cfg, Arc::new(SystemClock)).unwrap();
    node.create_topic("t", 1, 1, Default::default(), false)
        .unwrap();
    let p = node.groups.partition_for("g");
    assert!(node.groups.owns_group("g"));
    let commit = simple_commit;
    let req = commit(5);
    let called = node
        .groups
        .call(&node, |c, now, _| Answer::Now(c.commit_offsets(now, req)));
    assert_eq!(called.durable.await, Ok(()));

    // A member parked in the join phase of another group of the same partition.
    let other = (0..)
        .map(|i| format!("other-{i}"))
        .find(|g| node.groups.partition_for(g) == p)
        .unwrap();
    let join = JoinRequest {
        group_id: other.clone(),
        member_id: String::new(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "h".into(),
        session_timeout_ms: 30_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"m"))],
        require_known_member_id: false,
        supports_skip_assignment: false,
    };
    // The initial rebalance delay (a minute here) keeps the join parked until the unload.
    let called = node
        .groups
        .call(&node, |c, now, token| c.join(now, token, join));
    assert_eq!(called.answer, Answer::Parked);
    node.groups.unload_partition(p);
    let reply = tokio::time::timeout(Duration::from_secs(5), called.parked.unwrap())
        .await
        .unwrap()
        .unwrap();
    let ParkedReply::Join(j) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(j.error, ErrorKind::NotCoordinator);

    assert!(!node.groups.owns_group("g"));
    assert_eq!(
        node.groups.group_error("g"),
        Some(ErrorKind::NotCoordinator)
    );
    assert!(node.groups.read(|c| c.committed("g").is_none()));
    assert!(node.groups.read(|c| c.group(&other).is_none()));

    // Loading it back replays the commit; loading twice changes nothing.
    node.groups.load_partition(&node, p).unwrap();
    node.groups.load_partition(&node, p).unwrap();
    assert!(node.groups.owns_group("g"));
    let offset = node.groups.read(|c| {
        c.fetch_offsets("g", None)
            .topics
            .first()
            .map(|(_, parts)| parts.iter().map(|o| o.offset).collect::<Vec<_>>())
    });
    assert_eq!(offset, Some(vec![5]));
    stop(node).await;
}

/// As Kafka fails a coordinator's pending writes when its offsets partition moves: a commit
/// waiting for the partition's followers is answered NOT_COORDINATOR as soon as the partition
/// stops leading, not at the commit timeout.
#[tokio::test]
async fn a_commit_waiting_for_followers_ends_when_the_offsets_partition_moves() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path()), Arc::new(SystemClock)).unwrap();
    node.create_topic("t", 1, 1, Default::default(), false)
        .unwrap();
    let offsets = node
        .partitions
        .get("__consumer_offsets", node.groups.partition_for("g"))
        .unwrap();
    // Leader with a follower (2) in the ISR that never fetches: the high watermark stays.
    assert!(offsets.become_leader(1, 1, vec![1, 2], vec![1, 2], 1, 0));
    let commit = simple_commit(5);
    let called = node.groups.call(&node, |c, now, _| {
        Answer::Now(c.commit_offsets(now, commit))
    });
    let durable = tokio::spawn(called.durable);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!durable.is_finished(), "durable without its follower");
    assert!(offsets.become_follower(2, 2));
    let result = tokio::time::timeout(Duration::from_secs(3), durable)
        .await
        .expect("answered on the move, not at the commit timeout")
        .unwrap();
    assert_eq!(result, Err(ErrorKind::NotCoordinator));
}

/// The committed offset of `group` on `topic`-`partition` (-1 for none), as OffsetFetch
/// reports it.
fn committed(node: &Node, group: &str, topic: &str, partition: i32) -> i64 {
    node.groups.read(|c| {
        c.fetch_offsets(group, Some(vec![(topic.into(), vec![partition])]))
            .topics[0]
            .1[0]
            .offset
    })
}

async fn commit_on(node: &Node, group: &str, topic: &str, partition: i32, offset: i64) {
    let mut req = CommitRequest::one_partition(group, "", -1, offset, None);
    req.topics[0].name = topic.into();
    req.topics[0].partitions[0].partition = partition;
    let called = node
        .groups
        .call(node, |c, now, _| Answer::Now(c.commit_offsets(now, req)));
    let Answer::Now(answer) = &called.answer else {
        panic!("a commit is answered now")
    };
    assert_eq!(answer[0].1[0].1, ErrorKind::None);
    assert_eq!(called.durable.await, Ok(()));
}

#[tokio::test]
async fn deleting_a_topic_deletes_its_committed_offsets_durably() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path()), Arc::new(SystemClock)).unwrap();
    for topic in ["t", "u"] {
        node.create_topic(topic, 2, 1, Default::default(), false)
            .unwrap();
    }
    // Two groups, in different `__consumer_offsets` partitions.
    let other = (0..)
        .map(|i| format!("other-{i}"))
        .find(|g| node.groups.partition_for(g) != node.groups.partition_for("g"))
        .unwrap();
    commit_on(&node, "g", "t", 0, 10).await;
    commit_on(&node, "g", "t", 1, 11).await;
    commit_on(&node, "g", "u", 0, 12).await;
    commit_on(&node, &other, "t", 1, 21).await;

    // DeleteTopics on a single node.
    node.delete_topic("t").unwrap();
    assert_eq!(committed(&node, "g", "t", 0), -1);
    assert_eq!(committed(&node, "g", "t", 1), -1);
    assert_eq!(committed(&node, &other, "t", 1), -1);
    assert_eq!(committed(&node, "g", "u", 0), 12);
    // Created again: its consumers start with no committed offset.
    node.create_topic("t", 2, 1, Default::default(), false)
        .unwrap();
    assert_eq!(committed(&node, "g", "t", 0), -1);
    commit_on(&node, "g", "t", 0, 3).await;

    // A cluster broker learns of deletions from the controller's metadata and rewrites its
    // topic list (`cluster::reconcile`); a deletion and a re-creation can arrive in one
    // update, leaving the name with another id.
    node.topics
        .update(|m| {
            m.get_mut("t").unwrap().id = uuid::Uuid::new_v4();
            true
        })
        .unwrap();
    assert_eq!(committed(&node, "g", "t", 0), -1);

    // The tombstones are in the log: a reload, and a restart, agree.
    let p = node.groups.partition_for("g");
    node.groups.load_partition(&node, p).unwrap();
    assert_eq!(committed(&node, "g", "t", 0), -1);
    assert_eq!(committed(&node, "g", "u", 0), 12);
    // Let the durability tasks of the tombstones finish before the restart.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop(node).await;
    let node = Node::start(config(dir.path()), Arc::new(SystemClock)).unwrap();
    for (group, partition) in [("g", 0), ("g", 1), (other.as_str(), 1)] {
        assert_eq!(
            committed(&node, group, "t", partition),
            -1,
            "{group} t-{partition}"
        );
    }
    assert_eq!(committed(&node, "g", "u", 0), 12);
    stop(node).await;
}

/// DeleteGroups whose tombstones cannot be appended (the offsets partition stopped leading):
/// the group and its offsets stay, so the client's retry deletes them, and a reload agrees.
#[tokio::test]
async fn a_group_deletion_that_cannot_be_written_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path()), Arc::new(SystemClock)).unwrap();
    node.create_topic("t", 1, 1, Default::default(), false)
        .unwrap();
    commit_on(&node, "g", "t", 0, 5).await;
    let p = node.groups.partition_for("g");
    let offsets = node.partitions.get("__consumer_offsets", p).unwrap();
    let delete = |node: &Node| {
        node.groups
            .call(node, |c, _, _| Answer::Now(c.delete_group("g")))
    };
    let expire = |node: &Node| {
        node.groups.call(node, |c, now, _| {
            // Far enough ahead that every offset of the simple group expires.
            c.expire_offsets(now + 30 * 24 * 3_600_000);
            Answer::Now(())
        })
    };

    assert!(offsets.become_follower(2, 2));
    let called = delete(&node);
    assert_eq!(called.answer, Answer::Now(ErrorKind::None));
    assert_eq!(called.durable.await, Err(ErrorKind::NotCoordinator));
    assert!(node.groups.read(|c| c.group("g").is_some()));
    assert_eq!(committed(&node, "g", "t", 0), 5);
    // Expiry whose tombstones cannot be written keeps them too.
    assert!(expire(&node).durable.await.is_err());
    assert!(node.groups.read(|c| c.group("g").is_some()));
    assert_eq!(committed(&node, "g", "t", 0), 5);

    // Leading again: the retry deletes the group, and the log says so.
    assert!(offsets.become_leader(3, 3, vec![1], vec![1], 1, node.now_ms()));
    let called = delete(&node);
    assert_eq!(called.answer, Answer::Now(ErrorKind::None));
    assert_eq!(called.durable.await, Ok(()));
    assert!(node.groups.read(|c| c.group("g").is_none()));
    node.groups.load_partition(&node, p).unwrap();
    assert!(node.groups.read(|c| c.group("g").is_none()));
    assert_eq!(committed(&node, "g", "t", 0), -1);
    stop(node).await;
}

/// `__consumer_offsets` is created as Kafka creates it: compacted, 100 MiB segments
/// (`offsets.topic.segment.bytes`), the producer's compression.
#[tokio::test]
async fn the_offsets_topic_is_created_with_kafkas_configs() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path()), Arc::new(SystemClock)).unwrap();
    let topic = node.topics.get(CONSUMER_OFFSETS_TOPIC).unwrap();
    let get = |k: &str| topic.configs.get(k).map(String::as_str);
    assert_eq!(get("cleanup.policy"), Some("compact"));
    assert_eq!(get("segment.bytes"), Some("104857600"));
    assert_eq!(get("compression.type"), Some("producer"));
    stop(node).await;
}
