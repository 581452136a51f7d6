//! Every API Sluice advertises, at every version it advertises: a real request gets a response
//! that decodes at that version with the expected error code, on one live connection. An
//! advertised API without a case here fails the test, so the table and this matrix move
//! together.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use compat_tests::process::{SluiceOptions, SluiceProcess};
use compat_tests::wire::{self, topic_name, RawConnection};
use compat_tests::{now_ms, unique_topic};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

struct Ctx {
    conn: RawConnection,
    topic: String,
    topic_id: Uuid,
    batch: Bytes,
}

fn expect_code(what: &str, code: i16, want: i16) -> Result<(), String> {
    if code == want {
        Ok(())
    } else {
        Err(format!("{what}: error code {code}, want {want}"))
    }
}

fn check(api: ApiKey, version: i16, ctx: &mut Ctx) -> Result<(), String> {
    let t = ctx.topic.clone();
    let by_id = |v: i16, min: i16| v >= min;
    let err = |what: &str, code: i16| {
        if code == 0 {
            Ok(())
        } else {
            Err(format!("{what}: error code {code}"))
        }
    };
    let c = &mut ctx.conn;
    let e = |x: std::io::Error| x.to_string();
    match api {
        ApiKey::ApiVersions => {
            let r = c.call(&named_api_versions(), version).map_err(e)?;
            err("ApiVersions", r.error_code)?;
            // From v3 the client's software name must be one Kafka accepts.
            let unnamed = c.call(&ApiVersionsRequest::default(), version).map_err(e)?;
            expect_code(
                "ApiVersions without a software name",
                unnamed.error_code,
                if version >= 3 { 42 } else { 0 },
            )
        }
        ApiKey::Metadata => {
            let topics = vec![MetadataRequestTopic::default().with_name(Some(topic_name(&t)))];
            let r = c
                .call(
                    &MetadataRequest::default().with_topics(Some(topics)),
                    version,
                )
                .map_err(e)?;
            let topic = r.topics.first().ok_or("no topic")?;
            if by_id(version, 10) && topic.topic_id != ctx.topic_id {
                return Err("wrong topic id".into());
            }
            err("Metadata", topic.error_code)
        }
        ApiKey::Produce => {
            let mut td = TopicProduceData::default().with_partition_data(vec![
                PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(ctx.batch.clone())),
            ]);
            if by_id(version, 13) {
                td.topic_id = ctx.topic_id;
            } else {
                td.name = topic_name(&t);
            }
            let req = ProduceRequest::default()
                .with_transactional_id(None)
                .with_acks(-1)
                .with_timeout_ms(10_000)
                .with_topic_data(vec![td]);
            let r = c.call(&req, version).map_err(e)?;
            let p = r
                .responses
                .first()
                .and_then(|t| t.partition_responses.first())
                .ok_or("no partition")?;
            err("Produce", p.error_code)
        }
        ApiKey::Fetch => {
            let mut ft = FetchTopic::default().with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)]);
            if by_id(version, 13) {
                ft.topic_id = ctx.topic_id;
            } else {
                ft.topic = topic_name(&t);
            }
            let mut req = FetchRequest::default()
                .with_max_wait_ms(0)
                .with_min_bytes(0)
                .with_max_bytes(1 << 20)
                .with_topics(vec![ft]);
            if version >= 15 {
                req.replica_state.replica_id = BrokerId(-1);
            } else {
                req.replica_id = BrokerId(-1);
            }
            if version >= 7 {
                req.session_epoch = -1;
            }
            let r = c.call(&req, version).map_err(e)?;
            err("Fetch", r.error_code)?;
            let p = r
                .responses
                .first()
                .and_then(|t| t.partitions.first())
                .ok_or("no partition")?;
            err("Fetch partition", p.error_code)?;
            if p.records.as_ref().is_none_or(|r| r.is_empty()) {
                return Err("Fetch returned no records".into());
            }
            Ok(())
        }
        ApiKey::ListOffsets => {
            let r = c
                .call(&wire::list_offsets_request(&t, -1), version)
                .map_err(e)?;
            let p = &r
                .topics
                .first()
                .ok_or("no topic")?
                .partitions
                .first()
                .ok_or("no partition")?;
            err("ListOffsets", p.error_code)?;
            if p.offset < 1 {
                return Err(format!("latest offset {}", p.offset));
            }
            Ok(())
        }
        ApiKey::CreateTopics => {
            let name = format!("{t}-ct{version}");
            let req = CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(topic_name(&name))
                    .with_num_partitions(1)
                    .with_replication_factor(1)]);
            let r = c.call(&req, version).map_err(e)?;
            err(
                "CreateTopics",
                r.topics.first().ok_or("no topic")?.error_code,
            )
        }
        ApiKey::DeleteTopics => {
            let name = format!("{t}-dt{version}");
            let create = CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(topic_name(&name))
                    .with_num_partitions(1)
                    .with_replication_factor(1)]);
            let created = c.call(&create, 4).map_err(e)?;
            err("CreateTopics for delete", created.topics[0].error_code)?;
            let req = if version >= 6 {
                DeleteTopicsRequest::default().with_topics(vec![
                    DeleteTopicState::default().with_name(Some(topic_name(&name)))
                ])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![topic_name(&name)])
            }
            .with_timeout_ms(5000);
            let r = c.call(&req, version).map_err(e)?;
            err(
                "DeleteTopics",
                r.responses.first().ok_or("no topic")?.error_code,
            )
        }
        ApiKey::CreatePartitions => {
            let current = 1 + i32::from(version) + 1;
            let req = CreatePartitionsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(topic_name(&format!("{t}-cp")))
                    .with_count(current)
                    .with_assignments(None)]);
            let r = c.call(&req, version).map_err(e)?;
            err(
                "CreatePartitions",
                r.results.first().ok_or("no result")?.error_code,
            )
        }
        ApiKey::DescribeConfigs => {
            let req = DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_string(t.clone()))
                    .with_configuration_keys(None),
            ]);
            let r = c.call(&req, version).map_err(e)?;
            let res = r.results.first().ok_or("no result")?;
            err("DescribeConfigs", res.error_code)?;
            if !res
                .configs
                .iter()
                .any(|c| c.name.as_str() == "retention.ms")
            {
                return Err("no retention.ms".into());
            }
            Ok(())
        }
        ApiKey::DescribeCluster => {
            let r = c
                .call(&DescribeClusterRequest::default(), version)
                .map_err(e)?;
            err("DescribeCluster", r.error_code)?;
            if r.brokers.len() != 1 {
                return Err(format!("{} brokers", r.brokers.len()));
            }
            Ok(())
        }
        ApiKey::InitProducerId => {
            let req = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(1000);
            let r = c.call(&req, version).map_err(e)?;
            err("InitProducerId", r.error_code)
        }
        ApiKey::OffsetForLeaderEpoch => {
            // Every batch here was written in leader epoch 0, so epoch 0 ends at the log end
            // offset and any later epoch is UNDEFINED (-1, -1), as Kafka's endOffsetFor. A
            // topic without records answers as a fresh Kafka leader: epoch 0 ends at 0.
            let leo = latest_offset(c, &t).map_err(e)?;
            let part = |p: i32, current: i32, epoch: i32| {
                offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                    .with_partition(p)
                    .with_current_leader_epoch(current)
                    .with_leader_epoch(epoch)
            };
            let topics = vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(topic_name(&t))
                    .with_partitions(vec![
                        part(0, 0, 0),
                        part(0, -1, 5),
                        part(0, 1, 0),
                        part(7, -1, 0),
                    ]),
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(topic_name(&format!("{t}-cp")))
                    .with_partitions(vec![part(0, 0, 0)]),
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(topic_name(&format!("{t}-none")))
                    .with_partitions(vec![part(0, -1, 0)]),
            ];
            let req = OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(topics);
            let r = c.call(&req, version).map_err(e)?;
            let got: Vec<(i16, i32, i64)> = r
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .map(|p| (p.error_code, p.leader_epoch, p.end_offset))
                .collect();
            let want = vec![
                (0, 0, leo),
                (0, -1, -1),
                (75, -1, -1), // UNKNOWN_LEADER_EPOCH
                (3, -1, -1),  // UNKNOWN_TOPIC_OR_PARTITION
                (0, 0, 0),
                (3, -1, -1),
            ];
            if got != want {
                return Err(format!("OffsetForLeaderEpoch: got {got:?}, want {want:?}"));
            }
            Ok(())
        }
        // Consumer groups: the membership APIs on an unknown group (fast error paths; the
        // full flows at every version are in consumer_groups.rs).
        ApiKey::FindCoordinator => {
            let req = if version >= 4 {
                FindCoordinatorRequest::default()
                    .with_coordinator_keys(vec![StrBytes::from_static_str("matrix-group")])
            } else {
                FindCoordinatorRequest::default()
                    .with_key(StrBytes::from_static_str("matrix-group"))
            };
            let r = c.call(&req, version).map_err(e)?;
            let code = r
                .coordinators
                .first()
                .map_or(r.error_code, |c| c.error_code);
            err("FindCoordinator", code)
        }
        ApiKey::JoinGroup => {
            let req = JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("matrix-group")))
                .with_session_timeout_ms(1)
                .with_protocol_type(StrBytes::from_static_str("consumer"));
            let r = c.call(&req, version).map_err(e)?;
            expect_code("JoinGroup", r.error_code, 26)
        }
        ApiKey::SyncGroup => {
            // v5+ must name the protocol type and name (else INCONSISTENT_GROUP_PROTOCOL).
            let req = SyncGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("matrix-group")))
                .with_protocol_type((version >= 5).then(|| StrBytes::from_static_str("consumer")))
                .with_protocol_name((version >= 5).then(|| StrBytes::from_static_str("range")));
            let r = c.call(&req, version).map_err(e)?;
            expect_code("SyncGroup", r.error_code, 25)
        }
        ApiKey::Heartbeat => {
            let req = HeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("matrix-group")));
            let r = c.call(&req, version).map_err(e)?;
            expect_code("Heartbeat", r.error_code, 25)
        }
        ApiKey::LeaveGroup => {
            // An unknown group: UNKNOWN_MEMBER_ID, at the top before v3 and per member from v3
            // (no group-level error there, as Kafka).
            let member = StrBytes::from_static_str("m");
            let req = LeaveGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("matrix-group")))
                .with_member_id(if version < 3 {
                    member.clone()
                } else {
                    StrBytes::default()
                })
                .with_members(if version >= 3 {
                    vec![leave_group_request::MemberIdentity::default().with_member_id(member)]
                } else {
                    Vec::new()
                });
            let r = c.call(&req, version).map_err(e)?;
            if version < 3 {
                expect_code("LeaveGroup", r.error_code, 25)
            } else {
                expect_code("LeaveGroup", r.error_code, 0)?;
                let member_error = r.members.first().map_or(-1, |m| m.error_code);
                expect_code("LeaveGroup member", member_error, 25)
            }
        }
        ApiKey::OffsetCommit => {
            let req = OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("matrix-simple")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(topic_name(&t))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default(),
                        ]),
                ]);
            let r = c.call(&req, version).map_err(e)?;
            err("OffsetCommit", r.topics[0].partitions[0].error_code)
        }
        ApiKey::OffsetFetch => {
            let req = if version >= 8 {
                OffsetFetchRequest::default().with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(GroupId(StrBytes::from_static_str("matrix-simple"))),
                ])
            } else {
                OffsetFetchRequest::default()
                    .with_group_id(GroupId(StrBytes::from_static_str("matrix-simple")))
                    .with_topics(Some(vec![]))
            };
            let r = c.call(&req, version).map_err(e)?;
            let code = r.groups.first().map_or(r.error_code, |g| g.error_code);
            err("OffsetFetch", code)
        }
        ApiKey::ListGroups => {
            let r = c.call(&ListGroupsRequest::default(), version).map_err(e)?;
            err("ListGroups", r.error_code)
        }
        ApiKey::DescribeGroups => {
            let req = DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(StrBytes::from_static_str("matrix-none"))]);
            let r = c.call(&req, version).map_err(e)?;
            expect_code(
                "DescribeGroups",
                r.groups[0].error_code,
                if version >= 6 { 69 } else { 0 },
            )
        }
        ApiKey::DeleteGroups => {
            let req = DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(StrBytes::from_static_str("matrix-none"))]);
            let r = c.call(&req, version).map_err(e)?;
            expect_code("DeleteGroups", r.results[0].error_code, 69)
        }
        ApiKey::OffsetDelete => {
            let req = OffsetDeleteRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("matrix-none")));
            let r = c.call(&req, version).map_err(e)?;
            expect_code("OffsetDelete", r.error_code, 69)
        }
        other => Err(format!(
            "{other:?} is advertised but has no case in the API matrix"
        )),
    }
}

/// The partition-0 log end offset of `topic` (ListOffsets latest; acks=all produces made the
/// high watermark reach it).
fn latest_offset(c: &mut RawConnection, topic: &str) -> std::io::Result<i64> {
    let r = c.call(&wire::list_offsets_request(topic, -1), 5)?;
    Ok(r.topics
        .first()
        .and_then(|t| t.partitions.first())
        .map_or(-1, |p| p.offset))
}

#[test]
fn every_advertised_api_at_every_advertised_version() {
    let broker = SluiceProcess::start(SluiceOptions::new());
    let mut conn = RawConnection::connect(broker.bootstrap()).unwrap();
    conn.set_read_timeout(Duration::from_secs(20)).unwrap();
    let topic = unique_topic("matrix");
    assert_eq!(
        compat_tests::wire::create_topic(&mut conn, &topic, 1).unwrap(),
        0
    );
    assert_eq!(
        compat_tests::wire::create_topic(&mut conn, &format!("{topic}-cp"), 1).unwrap(),
        0
    );
    let md = conn
        .call(
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(&topic)))
            ])),
            12,
        )
        .unwrap();
    let batch = compat_tests::batch::build_batch(&[(b"k", b"v")], now_ms());
    let mut ctx = Ctx {
        conn,
        topic: topic.clone(),
        topic_id: md.topics[0].topic_id,
        batch: batch.clone(),
    };
    // A first record so fetches at every version have something to return.
    compat_tests::wire::produce(&mut ctx.conn, &topic, 0, batch).unwrap();
    let versions = ctx.conn.call(&named_api_versions(), 3).unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    for api in &versions.api_keys {
        let key = ApiKey::try_from(api.api_key).unwrap();
        for version in api.min_version..=api.max_version {
            checked += 1;
            if let Err(why) = check(key, version, &mut ctx) {
                failures.push(format!("{key:?} v{version}: {why}"));
                // A closed connection would fail everything after it: reconnect.
                ctx.conn = RawConnection::connect(broker.bootstrap()).unwrap();
                ctx.conn.set_read_timeout(Duration::from_secs(20)).unwrap();
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} failed:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        broker.log_tail()
    );
    assert!(checked > 80, "only {checked} api versions checked");
}

/// An ApiVersions request naming its client as KIP-511 asks (v3+).
fn named_api_versions() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("sluice-api-matrix"))
        .with_client_software_version(StrBytes::from_static_str("1.0"))
}
