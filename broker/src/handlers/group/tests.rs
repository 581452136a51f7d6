//! The group APIs on a node that does not coordinate a group (its `__consumer_offsets`
//! partition unloaded): each answers with Kafka's NOT_COORDINATOR shape for its version.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::clock::SystemClock;
use crate::config::{BrokerConfig, BrokerSettings};
use crate::handlers::util::topic_name;
use crate::handlers::Reply;
use crate::node::Node;

const NOT_COORDINATOR: i16 = 16;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

fn config(dir: &std::path::Path) -> BrokerConfig {
    let mut settings = BrokerSettings::default();
    settings.set("offsets.topic.num.partitions", "4").unwrap();
    BrokerConfig::for_tests(dir, settings)
}

async fn resolve(reply: Reply) -> ResponseKind {
    match reply {
        Reply::Now(kind) => *kind,
        Reply::Later(fut) => tokio::time::timeout(Duration::from_secs(5), fut)
            .await
            .unwrap(),
        Reply::WithFiles(_) => panic!("a Fetch answer, not a group API's"),
        Reply::Nothing | Reply::Close => panic!("no response"),
    }
}

fn gid(s: &str) -> GroupId {
    GroupId(StrBytes::from_string(s.to_string()))
}

/// A node with topic "t", where group "g" (committed offset 3) lost its coordinator and
/// group `owned` (in another partition) still has one.
async fn node_without_g(dir: &std::path::Path) -> (Arc<Node>, String) {
    let node = Node::start(config(dir), Arc::new(SystemClock)).unwrap();
    node.create_topic("t", 1, 1, Default::default(), false)
        .unwrap();
    let p = node.groups.partition_for("g");
    let owned = (0..)
        .map(|i| format!("owned-{i}"))
        .find(|g| node.groups.partition_for(g) != p)
        .unwrap();
    for group in ["g", owned.as_str()] {
        let r = commit(&node, group, 9).await;
        assert_eq!(r, vec![0]);
    }
    node.groups.unload_partition(p);
    (node, owned)
}

async fn commit(node: &Arc<Node>, group: &str, version: i16) -> Vec<i16> {
    let req = OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(3),
                ]),
        ]);
    let ResponseKind::OffsetCommit(r) =
        resolve(super::offset_commit::handle(node, req, version)).await
    else {
        panic!()
    };
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

#[tokio::test]
async fn every_group_api_answers_not_coordinator_for_an_unowned_group() {
    let dir = tempfile::tempdir().unwrap();
    let (node, owned) = node_without_g(dir.path()).await;
    let peer: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();

    for version in [0, 9] {
        let req = JoinGroupRequest::default()
            .with_group_id(gid("g"))
            .with_member_id(StrBytes::from_static_str("m"))
            .with_session_timeout_ms(10_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"));
        let reply = super::join_group::handle(&node, req, version, "c", peer);
        let ResponseKind::JoinGroup(r) = resolve(reply).await else {
            panic!()
        };
        assert_eq!(
            (r.error_code, r.generation_id, r.member_id.as_str()),
            (NOT_COORDINATOR, -1, "m")
        );
    }
    for version in [0, 5] {
        let req = SyncGroupRequest::default()
            .with_group_id(gid("g"))
            .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
            .with_protocol_name(Some(StrBytes::from_static_str("range")));
        let ResponseKind::SyncGroup(r) =
            resolve(super::sync_group::handle(&node, req, version)).await
        else {
            panic!()
        };
        assert_eq!(r.error_code, NOT_COORDINATOR);
    }
    let r = super::heartbeat::handle(
        &node,
        HeartbeatRequest::default().with_group_id(gid("g")),
        4,
    );
    assert_eq!(r.error_code, NOT_COORDINATOR);
    for version in [0, 5] {
        let req = LeaveGroupRequest::default()
            .with_group_id(gid("g"))
            .with_member_id(StrBytes::from_static_str("m"))
            .with_members(vec![leave_group_request::MemberIdentity::default()
                .with_member_id(StrBytes::from_static_str("m"))]);
        let ResponseKind::LeaveGroup(r) =
            resolve(super::leave_group::handle(&node, req, version)).await
        else {
            panic!()
        };
        assert_eq!((r.error_code, r.members.len()), (NOT_COORDINATOR, 0));
    }

    // OffsetCommit: every partition; an unknown topic keeps its own error.
    assert_eq!(commit(&node, "g", 9).await, vec![NOT_COORDINATOR]);
    let req = OffsetCommitRequest::default()
        .with_group_id(gid("g"))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic_name("missing"))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default(),
                ]),
        ]);
    let ResponseKind::OffsetCommit(r) = resolve(super::offset_commit::handle(&node, req, 2)).await
    else {
        panic!()
    };
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        UNKNOWN_TOPIC_OR_PARTITION
    );

    // OffsetFetch: partition errors (v1), top-level error (v2-7), per group (v8+).
    let topics = Some(vec![
        offset_fetch_request::OffsetFetchRequestTopic::default()
            .with_name(topic_name("t"))
            .with_partition_indexes(vec![0]),
    ]);
    let req = OffsetFetchRequest::default()
        .with_group_id(gid("g"))
        .with_topics(topics.clone());
    let r = super::offset_fetch::handle(&node, req, 1);
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.committed_offset), (NOT_COORDINATOR, -1));
    let req = OffsetFetchRequest::default()
        .with_group_id(gid("g"))
        .with_topics(topics);
    let r = super::offset_fetch::handle(&node, req, 7);
    assert_eq!((r.error_code, r.topics.len()), (NOT_COORDINATOR, 0));
    let req = OffsetFetchRequest::default().with_groups(vec![
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(gid("g"))
            .with_topics(None),
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(gid(&owned))
            .with_topics(None),
    ]);
    let r = super::offset_fetch::handle(&node, req, 9);
    assert_eq!(r.groups[0].error_code, NOT_COORDINATOR);
    assert_eq!(r.groups[1].error_code, 0);
    assert_eq!(r.groups[1].topics[0].partitions[0].committed_offset, 3);

    for version in [0, 6] {
        let req = DescribeGroupsRequest::default().with_groups(vec![gid("g"), gid(&owned)]);
        let r = super::describe_groups::handle(&node, req, version);
        assert_eq!(
            (r.groups[0].error_code, r.groups[0].group_state.as_str()),
            (NOT_COORDINATOR, "")
        );
        assert!(r.groups[0].error_message.is_none());
        assert_eq!(
            (r.groups[1].error_code, r.groups[1].group_state.as_str()),
            (0, "Empty")
        );
    }
    let ResponseKind::OffsetDelete(r) = resolve(super::offset_delete::handle(
        &node,
        OffsetDeleteRequest::default().with_group_id(gid("g")),
        0,
    ))
    .await
    else {
        panic!()
    };
    assert_eq!(r.error_code, NOT_COORDINATOR);

    // ListGroups shows only the groups this node coordinates.
    let r = super::list_groups::handle(&node, ListGroupsRequest::default(), 5);
    let listed: Vec<&str> = r.groups.iter().map(|g| g.group_id.0.as_str()).collect();
    assert_eq!((r.error_code, listed), (0, vec![owned.as_str()]));

    let ResponseKind::DeleteGroups(r) = resolve(super::delete_groups::handle(
        &node,
        DeleteGroupsRequest::default().with_groups_names(vec![gid("g"), gid(&owned)]),
        2,
    ))
    .await
    else {
        panic!()
    };
    let codes: Vec<i16> = r.results.iter().map(|g| g.error_code).collect();
    assert_eq!(codes, vec![NOT_COORDINATOR, 0]);

    // FindCoordinator asks the node, which on a single node names itself for every group.
    let req = FindCoordinatorRequest::default()
        .with_coordinator_keys(vec![StrBytes::from_static_str("g")]);
    let r = super::find_coordinator::handle(&node, req, 4);
    let c = &r.coordinators[0];
    assert_eq!((c.error_code, c.node_id.0, c.port), (0, 1, 9092));

    // Loaded again: "g" is served with its offsets.
    let p = node.groups.partition_for("g");
    node.groups.load_partition(&node, p).unwrap();
    let req = OffsetFetchRequest::default().with_groups(vec![
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(gid("g"))
            .with_topics(None),
    ]);
    let r = super::offset_fetch::handle(&node, req, 9);
    assert_eq!(r.groups[0].error_code, 0);
    assert_eq!(r.groups[0].topics[0].partitions[0].committed_offset, 3);

    node.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    node.close_partitions();
}

/// While the group's partition loads, Heartbeat answers no error (Kafka's "blindly respond")
/// and the other group APIs COORDINATOR_LOAD_IN_PROGRESS.
#[tokio::test]
async fn heartbeat_while_the_group_loads_gets_no_error() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = node_without_g(dir.path()).await;
    node.groups
        .begin_loading_for_tests(node.groups.partition_for("g"));
    let r = super::heartbeat::handle(
        &node,
        HeartbeatRequest::default()
            .with_group_id(gid("g"))
            .with_member_id(StrBytes::from_static_str("m")),
        4,
    );
    assert_eq!(r.error_code, 0);
    let req = SyncGroupRequest::default().with_group_id(gid("g"));
    let ResponseKind::SyncGroup(r) = resolve(super::sync_group::handle(&node, req, 4)).await else {
        panic!()
    };
    assert_eq!(r.error_code, 14, "COORDINATOR_LOAD_IN_PROGRESS");
}

/// SyncGroup v5 must carry its protocol type and name: without either Kafka refuses it with
/// INCONSISTENT_GROUP_PROTOCOL before looking at the group, owned here or not.
#[tokio::test]
async fn sync_group_v5_without_protocol_type_or_name_is_inconsistent() {
    let dir = tempfile::tempdir().unwrap();
    let (node, owned) = node_without_g(dir.path()).await;
    for group in ["g", owned.as_str()] {
        for (protocol_type, protocol_name) in [(None, Some("range")), (Some("consumer"), None)] {
            let req = SyncGroupRequest::default()
                .with_group_id(gid(group))
                .with_protocol_type(protocol_type.map(StrBytes::from_static_str))
                .with_protocol_name(protocol_name.map(StrBytes::from_static_str));
            let ResponseKind::SyncGroup(r) =
                resolve(super::sync_group::handle(&node, req, 5)).await
            else {
                panic!()
            };
            assert_eq!(
                r.error_code, 23,
                "{group} {protocol_type:?} {protocol_name:?}"
            );
        }
    }
}

/// A commit whose every topic is unknown stores nothing and is answered without the
/// coordinator (Kafka's `handleOffsetCommitRequest`): no group appears for it.
#[tokio::test]
async fn a_commit_of_only_unknown_topics_creates_no_group() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = node_without_g(dir.path()).await;
    let group = (0..)
        .map(|i| format!("fresh-{i}"))
        .find(|g| node.groups.owns_group(g))
        .unwrap();
    let req = OffsetCommitRequest::default()
        .with_group_id(gid(&group))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic_name("missing"))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default(),
                ]),
        ]);
    let ResponseKind::OffsetCommit(r) = resolve(super::offset_commit::handle(&node, req, 8)).await
    else {
        panic!()
    };
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    assert!(
        node.groups.read(|c| c.group(&group).is_none()),
        "a group was created by a commit that stored nothing"
    );
}

/// OffsetCommit v2-4's `retention_time_ms`: as Kafka's `expireTimestampMs`, only -1 means
/// "the broker's retention"; any other value, negative too, is an explicit expiry.
#[tokio::test]
async fn every_retention_time_but_minus_one_is_explicit() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path()), Arc::new(SystemClock)).unwrap();
    node.create_topic("t", 1, 1, Default::default(), false)
        .unwrap();
    let cases = [
        ("r-default", 2, -1),
        ("r-negative", 2, -2),
        ("r-long", 4, 3_600_000),
        ("r-v5", 5, -2),
    ];
    let before = node.now_ms();
    for (group, version, retention) in cases {
        let req = OffsetCommitRequest::default()
            .with_group_id(gid(group))
            .with_generation_id_or_member_epoch(-1)
            .with_retention_time_ms(retention)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(topic_name("t"))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(7),
                    ]),
            ]);
        let ResponseKind::OffsetCommit(r) =
            resolve(super::offset_commit::handle(&node, req, version)).await
        else {
            panic!()
        };
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "{group}");
    }
    let after = node.now_ms();
    let expiry = |group: &str| {
        node.groups.read(|c| {
            c.committed(group)
                .and_then(|o| o.get(&("t".to_string(), 0)))
                .map(|v| v.expire_timestamp_ms)
        })
    };
    assert_eq!(expiry("r-default"), Some(None));
    assert_eq!(expiry("r-v5"), Some(None), "v5+ has no retention field");
    let negative = expiry("r-negative").flatten().unwrap();
    assert!((before - 2..=after - 2).contains(&negative), "{negative}");
    let long = expiry("r-long").flatten().unwrap();
    assert!((before + 3_600_000..=after + 3_600_000).contains(&long));

    // The next expiry check removes the offset committed with a negative retention only.
    let called = node.groups.call(&node, |c, now, _| {
        c.expire_offsets(now);
        crate::group::Answer::Now(())
    });
    assert_eq!(called.durable.await, Ok(()));
    assert_eq!(expiry("r-negative"), None);
    for group in ["r-default", "r-long", "r-v5"] {
        assert!(expiry(group).is_some(), "{group}");
    }
}
