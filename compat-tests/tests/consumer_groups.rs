//! Consumer groups end to end: librdkafka group consumers (through the `rdkafka` crate) and
//! raw protocol requests against a real `sluice` process. Covers partition ownership and
//! rebalances (members joining, leaving, going silent), committed offsets surviving a
//! broker crash, cooperative-sticky and static membership, the admin APIs, every advertised
//! version of the group APIs, and the errors Kafka gives for bad input. The Python clients'
//! group consumers run from `compat-tests/python/groups_*.py`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use compat_tests::{
    rdk, require, unique_topic, workspace_root, RawConnection, SluiceOptions, SluiceProcess,
};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};

const PARTITIONS: i32 = 6;
const SESSION_TIMEOUT_MS: &str = "6000";
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Helpers

fn start_broker() -> SluiceProcess {
    SluiceProcess::start(SluiceOptions::new().set("group.initial.rebalance.delay.ms", "0"))
}

/// What a consumer's rebalance callbacks saw: partitions per assign/revoke event.
#[derive(Default)]
struct Events {
    assigned: Mutex<Vec<Vec<i32>>>,
    revoked: Mutex<Vec<Vec<i32>>>,
}

struct Recording(Arc<Events>);

impl ClientContext for Recording {}

impl ConsumerContext for Recording {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let parts =
            |tpl: &TopicPartitionList| tpl.elements().iter().map(|e| e.partition()).collect();
        match rebalance {
            Rebalance::Assign(tpl) => self.0.assigned.lock().unwrap().push(parts(tpl)),
            Rebalance::Revoke(tpl) => self.0.revoked.lock().unwrap().push(parts(tpl)),
            Rebalance::Error(_) => {}
        }
    }
}

struct Member {
    consumer: BaseConsumer<Recording>,
    events: Arc<Events>,
}

impl Member {
    fn assigned(&self) -> BTreeSet<i32> {
        self.consumer
            .assignment()
            .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default()
    }
}

fn member(bootstrap: &str, group: &str, topic: &str, extra: &[(&str, &str)]) -> Member {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", SESSION_TIMEOUT_MS)
        .set("heartbeat.interval.ms", "500")
        .set("fetch.wait.max.ms", "100")
        .set("topic.metadata.refresh.interval.ms", "1000");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let events = Arc::new(Events::default());
    let consumer: BaseConsumer<Recording> = config
        .create_with_context(Recording(Arc::clone(&events)))
        .expect("group consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    Member { consumer, events }
}

/// Polls every member round-robin for `duration`; returns (member, partition, offset).
fn poll_all(members: &[&Member], duration: Duration) -> Vec<(usize, i32, i64)> {
    let mut out = Vec::new();
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        for (i, m) in members.iter().enumerate() {
            if let Some(Ok(msg)) = m.consumer.poll(Duration::from_millis(20)) {
                out.push((i, msg.partition(), msg.offset()));
            }
        }
    }
    out
}

/// Polls until `done` holds (checked between rounds), panicking after `WAIT`.
fn poll_until(
    members: &[&Member],
    what: &str,
    mut done: impl FnMut(&[(usize, i32, i64)]) -> bool,
) -> Vec<(usize, i32, i64)> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        seen.extend(poll_all(members, Duration::from_millis(100)));
        if done(&seen) {
            return seen;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
    }
}

/// Every partition owned by exactly one of `members` (and all of them own something).
fn assignment_is_a_partition(members: &[&Member]) -> bool {
    let sets: Vec<BTreeSet<i32>> = members.iter().map(|m| m.assigned()).collect();
    let total: usize = sets.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
    sets.iter().all(|s| !s.is_empty()) && total == PARTITIONS as usize && union.len() == total
}

async fn produce(producer: &FutureProducer, topic: &str, range: std::ops::Range<usize>) {
    let mut futures = Vec::new();
    for i in range {
        let payload = format!("v{i}");
        let partition = i32::try_from(i).unwrap() % PARTITIONS;
        futures.push(
            producer
                .send_result(
                    FutureRecord::<(), _>::to(topic)
                        .partition(partition)
                        .payload(&payload),
                )
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        );
    }
    for f in futures {
        f.await.expect("delivery").expect("delivered");
    }
}

/// Each (partition, offset) exactly once.
fn assert_exactly_once(seen: &[(usize, i32, i64)], expected: usize) {
    let mut count: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for &(_, p, o) in seen {
        *count.entry((p, o)).or_default() += 1;
    }
    let dupes: Vec<_> = count.iter().filter(|(_, &n)| n > 1).collect();
    assert!(dupes.is_empty(), "records read twice: {dupes:?}");
    assert_eq!(count.len(), expected, "distinct records read");
}

async fn setup(broker: &SluiceProcess) -> (String, FutureProducer) {
    let topic = unique_topic("groups");
    rdk::create_topic(&broker.bootstrap(), &topic, PARTITIONS, &[]).await;
    (topic, rdk::producer(&broker.bootstrap(), &[]))
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// ConsumerProtocolSubscription v0 for `topic` (what Java and librdkafka send).
fn subscription(topic: &str) -> Bytes {
    let mut b = vec![0, 0, 0, 0, 0, 1];
    b.extend_from_slice(&u16::try_from(topic.len()).unwrap().to_be_bytes());
    b.extend_from_slice(topic.as_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(b)
}

fn join_request(group: &str, member: &str, topic: &str, session_ms: i32) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(subscription(topic))])
}

fn raw(broker: &SluiceProcess) -> RawConnection {
    RawConnection::connect_with_timeout(broker.bootstrap(), Duration::from_secs(60))
        .expect("connect")
}

// ---------------------------------------------------------------------------------------
// Membership and rebalances

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_split_partitions_and_a_leaving_member_hands_its_share_over() {
    let broker = start_broker();
    let (topic, producer) = setup(&broker).await;
    let group = unique_topic("g3");
    let b = broker.bootstrap();
    let (m1, m2, m3) = (
        member(&b, &group, &topic, &[]),
        member(&b, &group, &topic, &[]),
        member(&b, &group, &topic, &[]),
    );
    poll_until(&[&m1, &m2, &m3], "three disjoint assignments", |_| {
        assignment_is_a_partition(&[&m1, &m2, &m3])
    });
    produce(&producer, &topic, 0..600).await;
    let seen = poll_until(&[&m1, &m2, &m3], "600 records", |s| s.len() >= 600);
    let seen = [seen, poll_all(&[&m1, &m2, &m3], Duration::from_secs(1))].concat();
    assert_exactly_once(&seen, 600);
    // Each record came from the member that owns its partition.
    for (i, m) in [&m1, &m2, &m3].iter().enumerate() {
        let owned = m.assigned();
        assert!(seen
            .iter()
            .filter(|r| r.0 == i)
            .all(|r| owned.contains(&r.1)));
    }
    for m in [&m1, &m2, &m3] {
        m.consumer
            .commit_consumer_state(CommitMode::Sync)
            .expect("commit");
    }
    let gone = m3.assigned();
    drop(m3); // close(): LeaveGroup
    poll_until(&[&m1, &m2], "two members own everything", |_| {
        assignment_is_a_partition(&[&m1, &m2])
    });
    let moved: BTreeSet<i32> = m1.assigned().union(&m2.assigned()).copied().collect();
    assert!(gone.is_subset(&moved));
    produce(&producer, &topic, 600..1200).await;
    let seen = poll_until(&[&m1, &m2], "600 more records", |s| s.len() >= 600);
    let seen = [seen, poll_all(&[&m1, &m2], Duration::from_secs(1))].concat();
    assert_exactly_once(&seen, 600);
    assert!(
        seen.iter().all(|&(_, _, o)| o >= 100),
        "moved partitions resumed at the commits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_member_loses_its_partitions_after_the_session_timeout() {
    let broker = start_broker();
    let (topic, _producer) = setup(&broker).await;
    let group = unique_topic("gsilent");
    let m1 = member(&broker.bootstrap(), &group, &topic, &[]);
    poll_until(&[&m1], "m1 owns everything", |_| {
        m1.assigned().len() == PARTITIONS as usize
    });
    // A raw member joins (JoinGroup parks until m1 rejoins, so it runs on a thread), syncs,
    // then never heartbeats again.
    let (g, t, addr) = (group.clone(), topic.clone(), broker.bootstrap());
    let zombie = std::thread::spawn(move || {
        let mut c = RawConnection::connect_with_timeout(addr, Duration::from_secs(60)).unwrap();
        let r = c.call(&join_request(&g, "", &t, 6000), 5).unwrap();
        assert_eq!(r.error_code, 79, "MEMBER_ID_REQUIRED");
        let id = r.member_id.to_string();
        let r = c.call(&join_request(&g, &id, &t, 6000), 5).unwrap();
        assert_eq!(r.error_code, 0);
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s(&g)))
            .with_generation_id(r.generation_id)
            .with_member_id(s(&id));
        let r = c.call(&sync, 3).unwrap();
        assert_eq!(r.error_code, 0);
        assert!(!r.assignment.is_empty(), "the zombie got partitions");
        Instant::now()
    });
    poll_until(&[&m1], "the zombie takes a share", |_| {
        zombie.is_finished() && m1.assigned().len() < PARTITIONS as usize
    });
    let silent_since = zombie.join().unwrap();
    poll_until(&[&m1], "m1 owns everything again", |_| {
        m1.assigned().len() == PARTITIONS as usize
    });
    assert!(
        silent_since.elapsed() >= Duration::from_millis(5500),
        "moved only after the session timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_revokes_only_what_moves() {
    let broker = start_broker();
    let (topic, _producer) = setup(&broker).await;
    let group = unique_topic("gcoop");
    let b = broker.bootstrap();
    let coop = [("partition.assignment.strategy", "cooperative-sticky")];
    let m1 = member(&b, &group, &topic, &coop);
    poll_until(&[&m1], "m1 owns everything", |_| {
        m1.assigned().len() == PARTITIONS as usize
    });
    let m2 = member(&b, &group, &topic, &coop);
    poll_until(&[&m1, &m2], "a split", |_| {
        assignment_is_a_partition(&[&m1, &m2])
    });
    let revoked: Vec<i32> = m1
        .events
        .revoked
        .lock()
        .unwrap()
        .iter()
        .flatten()
        .copied()
        .collect();
    assert_eq!(
        revoked.len(),
        3,
        "m1 gave up exactly the 3 partitions that moved: {revoked:?}"
    );
    assert!(revoked.iter().all(|p| m2.assigned().contains(p)));
    assert_eq!(
        m2.events.revoked.lock().unwrap().iter().flatten().count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_restarting_within_its_session_causes_no_rebalance() {
    let broker = start_broker();
    let (topic, _producer) = setup(&broker).await;
    let group = unique_topic("gstatic");
    let b = broker.bootstrap();
    let m1 = member(&b, &group, &topic, &[("group.instance.id", "one")]);
    let m2 = member(&b, &group, &topic, &[("group.instance.id", "two")]);
    poll_until(&[&m1, &m2], "a split", |_| {
        assignment_is_a_partition(&[&m1, &m2])
    });
    // Let any start-up rebalance settle, then count m2's rebalances from here.
    poll_all(&[&m1, &m2], Duration::from_secs(2));
    let before = (
        m2.events.assigned.lock().unwrap().len(),
        m2.events.revoked.lock().unwrap().len(),
    );
    let owned = m1.assigned();
    drop(m1); // a static member does not send LeaveGroup on close
    let m1 = member(&b, &group, &topic, &[("group.instance.id", "one")]);
    poll_until(&[&m1, &m2], "m1 back with its partitions", |_| {
        m1.assigned() == owned
    });
    poll_all(&[&m1, &m2], Duration::from_secs(2));
    let after = (
        m2.events.assigned.lock().unwrap().len(),
        m2.events.revoked.lock().unwrap().len(),
    );
    assert_eq!(before, after, "m2 saw no rebalance");
    // A second process with the same instance id fences the first one's member id.
    let mut c = raw(&broker);
    let hb = HeartbeatRequest::default()
        .with_group_id(GroupId(s(&group)))
        .with_generation_id(1)
        .with_member_id(s("one-stale-id"))
        .with_group_instance_id(Some(s("one")));
    assert_eq!(c.call(&hb, 4).unwrap().error_code, 82, "FENCED_INSTANCE_ID");
}

// ---------------------------------------------------------------------------------------
// Offsets

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_broker_crash_and_the_group_resumes_there() {
    let mut broker = start_broker();
    let (topic, producer) = setup(&broker).await;
    let group = unique_topic("gcrash");
    produce(&producer, &topic, 0..600).await;
    drop(producer);
    let m1 = member(&broker.bootstrap(), &group, &topic, &[]);
    let first = poll_until(&[&m1], "300 records", |s| s.len() >= 300);
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for &(_, p, o) in &first {
        next.insert(p, o + 1);
    }
    let mut tpl = TopicPartitionList::new();
    for (&p, &o) in &next {
        tpl.add_partition_offset(&topic, p, Offset::Offset(o))
            .unwrap();
    }
    m1.consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(m1);
    broker.kill9(); // an acknowledged commit must already be durable
    broker.restart();
    let m2 = member(&broker.bootstrap(), &group, &topic, &[]);
    let committed = m2
        .consumer
        .committed_offsets(
            {
                let mut t = TopicPartitionList::new();
                for p in 0..PARTITIONS {
                    t.add_partition(&topic, p);
                }
                t
            },
            Duration::from_secs(10),
        )
        .unwrap();
    for e in committed.elements() {
        let want = next
            .get(&e.partition())
            .map_or(Offset::Invalid, |&o| Offset::Offset(o));
        assert_eq!(
            e.offset(),
            want,
            "committed offset of partition {}",
            e.partition()
        );
    }
    let expect = 600 - first.len();
    let second = poll_until(&[&m2], "the rest", |s| s.len() >= expect);
    let second = [second, poll_all(&[&m2], Duration::from_secs(1))].concat();
    assert_exactly_once(&second, expect);
    for &(_, p, o) in &second {
        assert!(
            o >= next.get(&p).copied().unwrap_or(0),
            "partition {p} offset {o} was already committed"
        );
    }
}

/// As Kafka's `onPartitionsDeleted`: deleting a topic deletes every offset committed on it,
/// so the consumers of a topic created again under the name do not resume at the old
/// topic's offsets; a restart (the groups reloaded from `__consumer_offsets`) agrees.
#[test]
fn deleting_a_topic_deletes_its_committed_offsets() {
    use compat_tests::wire::{create_topic, topic_name};
    let mut broker = start_broker();
    let mut c = raw(&broker);
    let (topic, kept, group) = (
        unique_topic("gdel"),
        unique_topic("gkept"),
        unique_topic("gdel-group"),
    );
    for t in [&topic, &kept] {
        assert_eq!(create_topic(&mut c, t, 2).unwrap(), 0, "CreateTopics {t}");
    }
    let partition = |p: i32, offset: i64| {
        OffsetCommitRequestPartition::default()
            .with_partition_index(p)
            .with_committed_offset(offset)
    };
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(&group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(topic_name(&topic))
                .with_partitions(vec![partition(0, 10), partition(1, 11)]),
            OffsetCommitRequestTopic::default()
                .with_name(topic_name(&kept))
                .with_partitions(vec![partition(0, 12)]),
        ]);
    let r = c.call(&commit, 8).unwrap();
    for t in &r.topics {
        for p in &t.partitions {
            assert_eq!(
                p.error_code,
                0,
                "OffsetCommit {}-{}",
                t.name.as_str(),
                p.partition_index
            );
        }
    }
    let fetch = |c: &mut RawConnection| {
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(topic_name(&topic))
                    .with_partition_indexes(vec![0, 1]),
                OffsetFetchRequestTopic::default()
                    .with_name(topic_name(&kept))
                    .with_partition_indexes(vec![0]),
            ]));
        let r = c.call(&req, 7).unwrap();
        assert_eq!(r.error_code, 0, "OffsetFetch");
        r.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.committed_offset))
            .collect::<Vec<_>>()
    };
    assert_eq!(fetch(&mut c), vec![10, 11, 12]);

    let deleted = c
        .call(
            &DeleteTopicsRequest::default()
                .with_topic_names(vec![topic_name(&topic)])
                .with_timeout_ms(10_000),
            5,
        )
        .unwrap();
    assert_eq!(deleted.responses[0].error_code, 0, "DeleteTopics");
    assert_eq!(fetch(&mut c), vec![-1, -1, 12], "after the deletion");
    assert_eq!(
        create_topic(&mut c, &topic, 2).unwrap(),
        0,
        "CreateTopics again"
    );
    assert_eq!(
        fetch(&mut c),
        vec![-1, -1, 12],
        "on the topic created again"
    );

    broker.restart();
    let mut c = raw(&broker);
    assert_eq!(fetch(&mut c), vec![-1, -1, 12], "after a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_lists_describes_reports_lag_and_deletes_groups() {
    let broker = start_broker();
    let (topic, producer) = setup(&broker).await;
    let group = unique_topic("gadmin");
    produce(&producer, &topic, 0..60).await;
    let m1 = member(&broker.bootstrap(), &group, &topic, &[]);
    poll_until(&[&m1], "60 records", |s| s.len() >= 60);
    // Commit 5 of the 10 records of every partition: lag 5 each.
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(&topic, p, Offset::Offset(5))
            .unwrap();
    }
    m1.consumer.commit(&tpl, CommitMode::Sync).unwrap();
    let list = m1
        .consumer
        .fetch_group_list(Some(&group), Duration::from_secs(10))
        .unwrap();
    let info = list
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .expect("group listed");
    assert_eq!(
        (info.state(), info.protocol_type(), info.protocol()),
        ("Stable", "consumer", "range")
    );
    assert_eq!(info.members().len(), 1);
    assert_eq!(info.members()[0].client_host(), "/127.0.0.1");
    assert!(info.members()[0]
        .assignment()
        .is_some_and(|a| !a.is_empty()));
    let mut all = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        all.add_partition(&topic, p);
    }
    let committed = m1
        .consumer
        .committed_offsets(all, Duration::from_secs(10))
        .unwrap();
    let mut lag = 0;
    for e in committed.elements() {
        let (_, high) = m1
            .consumer
            .fetch_watermarks(&topic, e.partition(), Duration::from_secs(10))
            .unwrap();
        lag += high - e.offset().to_raw().unwrap();
    }
    assert_eq!(lag, 30);
    let admin = rdk::admin(&broker.bootstrap());
    let r = admin
        .delete_groups(&[&group], &rdk::admin_options())
        .await
        .unwrap();
    assert!(
        r[0].is_err(),
        "a group with members cannot be deleted: {r:?}"
    );
    drop(m1);
    let r = admin
        .delete_groups(&[&group], &rdk::admin_options())
        .await
        .unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    let r = admin
        .delete_groups(&[&group], &rdk::admin_options())
        .await
        .unwrap();
    assert!(r[0].is_err(), "deleted twice: {r:?}");
    let consumer = rdk::consumer(&broker.bootstrap());
    let list = consumer
        .fetch_group_list(None, Duration::from_secs(10))
        .unwrap();
    assert!(list.groups().iter().all(|g| g.name() != group));
}

// ---------------------------------------------------------------------------------------
// Raw protocol: every version, and bad input

#[test]
fn every_group_api_version_answers() {
    let broker = start_broker();
    let mut c = raw(&broker);
    for v in 0..=6 {
        let r = c
            .call(
                &FindCoordinatorRequest::default()
                    .with_key(if v < 4 { s("g") } else { StrBytes::default() })
                    .with_coordinator_keys(if v >= 4 { vec![s("g"), s("h")] } else { vec![] }),
                v,
            )
            .unwrap();
        if v >= 4 {
            assert_eq!(r.coordinators.len(), 2);
            assert!(r
                .coordinators
                .iter()
                .all(|c| c.error_code == 0 && c.port == i32::from(broker.port())));
        } else {
            assert_eq!((r.error_code, r.port), (0, i32::from(broker.port())));
        }
    }
    // A simple group (generation -1) commits at every version and reads back at every one.
    for v in 2..=9 {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s("simple")))
            .with_generation_id_or_member_epoch(-1)
            .with_retention_time_ms(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("__consumer_offsets")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(100 + i64::from(v))
                    .with_committed_metadata(Some(s("meta")))])]);
        let r = c.call(&req, v).unwrap();
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "OffsetCommit v{v}");
    }
    for v in 1..=9 {
        let r = if v >= 8 {
            let req = OffsetFetchRequest::default().with_groups(vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("simple")))
                    .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                        .with_name(TopicName(s("__consumer_offsets")))
                        .with_partition_indexes(vec![0])])),
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("other")))
                    .with_topics(None),
            ]);
            let r = c.call(&req, v).unwrap();
            assert_eq!(r.groups.len(), 2);
            assert!(r.groups[1].topics.is_empty());
            r.groups[0].topics[0].partitions[0].committed_offset
        } else {
            let req = OffsetFetchRequest::default()
                .with_group_id(GroupId(s("simple")))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s("__consumer_offsets")))
                    .with_partition_indexes(vec![0])]));
            c.call(&req, v).unwrap().topics[0].partitions[0].committed_offset
        };
        assert_eq!(r, 109, "OffsetFetch v{v}");
    }
    // The membership APIs at every version, on a group whose member leaves at the end.
    for v in 0..=9i16 {
        let group = format!("vgroup-{v}");
        let mut join = join_request(&group, "", "t", 10_000);
        let mut r = c.call(&join, v).unwrap();
        if v >= 4 {
            assert_eq!(r.error_code, 79, "JoinGroup v{v}");
            join = join.with_member_id(r.member_id.clone());
            r = c.call(&join, v).unwrap();
        }
        assert_eq!((r.error_code, r.generation_id), (0, 1), "JoinGroup v{v}");
        assert_eq!(r.leader, r.member_id);
        let member = r.member_id.clone();
        let sv = v.min(5);
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id(1)
            .with_member_id(member.clone())
            .with_protocol_type(if sv >= 5 { Some(s("consumer")) } else { None })
            .with_protocol_name(if sv >= 5 { Some(s("range")) } else { None })
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(member.clone())
                .with_assignment(Bytes::from_static(b"x"))]);
        let r = c.call(&sync, sv).unwrap();
        assert_eq!(
            (r.error_code, r.assignment.as_ref()),
            (0, &b"x"[..]),
            "SyncGroup v{sv}"
        );
        let hb = HeartbeatRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id(1)
            .with_member_id(member.clone());
        assert_eq!(
            c.call(&hb, v.min(4)).unwrap().error_code,
            0,
            "Heartbeat v{}",
            v.min(4)
        );
        let dv = v.min(6);
        let d = c
            .call(
                &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(&group))]),
                dv,
            )
            .unwrap();
        assert_eq!(
            d.groups[0].group_state.as_str(),
            "Stable",
            "DescribeGroups v{dv}"
        );
        assert_eq!(d.groups[0].members.len(), 1);
        let lv = v.min(5);
        let leave = if lv >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_members(vec![
                    MemberIdentity::default().with_member_id(member.clone())
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_member_id(member.clone())
        };
        let r = c.call(&leave, lv).unwrap();
        assert_eq!(r.error_code, 0, "LeaveGroup v{lv}");
        if lv >= 3 {
            assert_eq!(r.members[0].error_code, 0);
        }
    }
    for v in 0..=5 {
        let r = c.call(&ListGroupsRequest::default(), v).unwrap();
        assert!(
            r.groups.iter().any(|g| g.group_id.as_str() == "vgroup-0"),
            "ListGroups v{v}"
        );
    }
    let r = c
        .call(
            &ListGroupsRequest::default().with_states_filter(vec![s("stable")]),
            4,
        )
        .unwrap();
    assert!(r.groups.is_empty(), "every group is empty now");
    let r = c
        .call(
            &ListGroupsRequest::default().with_types_filter(vec![s("consumer")]),
            5,
        )
        .unwrap();
    assert!(r.groups.is_empty(), "only classic groups exist");
    let r = c
        .call(
            &OffsetDeleteRequest::default()
                .with_group_id(GroupId(s("simple")))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(TopicName(s("__consumer_offsets")))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(0),
                        ]),
                ]),
            0,
        )
        .unwrap();
    assert_eq!((r.error_code, r.topics[0].partitions[0].error_code), (0, 0));
    for v in 0..=2 {
        let r = c
            .call(
                &DeleteGroupsRequest::default().with_groups_names(vec![
                    GroupId(s(&format!("vgroup-{v}"))),
                    GroupId(s("never")),
                ]),
                v,
            )
            .unwrap();
        assert_eq!(
            (r.results[0].error_code, r.results[1].error_code),
            (0, 69),
            "DeleteGroups v{v}"
        );
    }
}

/// As Kafka 4.x "for backwards compatibility": OffsetCommit, OffsetFetch, DescribeGroups
/// and DeleteGroups take the empty group id (a consumer without a group id committing its
/// offsets), while JoinGroup and OffsetDelete refuse it INVALID_GROUP_ID.
#[test]
fn the_empty_group_id_commits_fetches_describes_and_deletes() {
    let broker = start_broker();
    let mut c = raw(&broker);
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("__consumer_offsets")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(42)])]);
    let r = c.call(&commit, 8).unwrap();
    assert_eq!(r.topics[0].partitions[0].error_code, 0, "OffsetCommit");
    let fetch = |c: &mut RawConnection| {
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s("")))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("__consumer_offsets")))
                .with_partition_indexes(vec![0])]));
        let r = c.call(&req, 7).unwrap();
        (r.error_code, r.topics[0].partitions[0].committed_offset)
    };
    assert_eq!(fetch(&mut c), (0, 42), "OffsetFetch");
    let described = c
        .call(
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(""))]),
            5,
        )
        .unwrap();
    assert_eq!(
        (
            described.groups[0].error_code,
            described.groups[0].group_state.as_str()
        ),
        (0, "Empty"),
        "DescribeGroups"
    );
    assert_eq!(
        c.call(&join_request("", "", "t", 10_000), 5)
            .unwrap()
            .error_code,
        24,
        "JoinGroup: INVALID_GROUP_ID"
    );
    let offset_delete = c
        .call(
            &OffsetDeleteRequest::default()
                .with_group_id(GroupId(s("")))
                .with_topics(vec![]),
            0,
        )
        .unwrap();
    assert_eq!(
        offset_delete.error_code, 24,
        "OffsetDelete: INVALID_GROUP_ID"
    );
    let deleted = c
        .call(
            &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(""))]),
            2,
        )
        .unwrap();
    assert_eq!(deleted.results[0].error_code, 0, "DeleteGroups");
    assert_eq!(
        fetch(&mut c),
        (0, -1),
        "the deleted group's offsets are gone"
    );
}

#[test]
fn bad_input_gets_kafkas_errors() {
    let broker = start_broker();
    let mut c = raw(&broker);
    // FindCoordinator: transactions are not served; unknown key types are invalid.
    let r = c
        .call(
            &FindCoordinatorRequest::default()
                .with_key(s("tx"))
                .with_key_type(1),
            3,
        )
        .unwrap();
    assert_eq!(r.error_code, 53);
    let r = c
        .call(
            &FindCoordinatorRequest::default()
                .with_key_type(7)
                .with_coordinator_keys(vec![s("x")]),
            4,
        )
        .unwrap();
    assert_eq!(r.coordinators[0].error_code, 42);
    // JoinGroup.
    let no_protocols = join_request("bad", "", "t", 10_000).with_protocols(vec![]);
    assert_eq!(
        c.call(&no_protocols, 5).unwrap().error_code,
        23,
        "INCONSISTENT_GROUP_PROTOCOL"
    );
    assert_eq!(
        c.call(&join_request("bad", "", "t", 1000), 5)
            .unwrap()
            .error_code,
        26,
        "INVALID_SESSION_TIMEOUT"
    );
    assert_eq!(
        c.call(&join_request("bad", "", "t", 1_800_001), 5)
            .unwrap()
            .error_code,
        26
    );
    assert_eq!(
        c.call(&join_request("", "", "t", 10_000), 5)
            .unwrap()
            .error_code,
        24,
        "INVALID_GROUP_ID"
    );
    assert_eq!(
        c.call(&join_request("bad", "nobody", "t", 10_000), 5)
            .unwrap()
            .error_code,
        25,
        "UNKNOWN_MEMBER_ID"
    );
    // A stable one-member group to be wrong about.
    let r = c.call(&join_request("g", "", "t", 10_000), 5).unwrap();
    let join = join_request("g", r.member_id.as_str(), "t", 10_000);
    let r = c.call(&join, 5).unwrap();
    let member = r.member_id.clone();
    let sync = |generation: i32, member: &StrBytes| {
        SyncGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(generation)
            .with_member_id(member.clone())
    };
    assert_eq!(
        c.call(&sync(7, &member), 3).unwrap().error_code,
        22,
        "ILLEGAL_GENERATION"
    );
    assert_eq!(c.call(&sync(1, &s("ghost")), 3).unwrap().error_code, 25);
    assert_eq!(c.call(&sync(1, &member), 3).unwrap().error_code, 0);
    let other = JoinGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_session_timeout_ms(10_000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default().with_name(s("roundrobin"))
        ]);
    assert_eq!(
        c.call(&other, 3).unwrap().error_code,
        23,
        "no protocol in common"
    );
    let hb = |generation: i32, member: &StrBytes| {
        HeartbeatRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(generation)
            .with_member_id(member.clone())
    };
    assert_eq!(c.call(&hb(1, &s("ghost")), 2).unwrap().error_code, 25);
    assert_eq!(c.call(&hb(0, &member), 2).unwrap().error_code, 22);
    // OffsetCommit: unknown member, stale generation, unknown topic, unknown group.
    let commit = |group: &str, generation: i32, member: &StrBytes, topic: &str| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(member.clone())
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default().with_committed_offset(1)
                ])])
    };
    let code = |r: OffsetCommitResponse| r.topics[0].partitions[0].error_code;
    assert_eq!(
        code(
            c.call(&commit("g", 1, &s("ghost"), "__consumer_offsets"), 8)
                .unwrap()
        ),
        25
    );
    assert_eq!(
        code(
            c.call(&commit("g", 0, &member, "__consumer_offsets"), 8)
                .unwrap()
        ),
        22
    );
    assert_eq!(
        code(
            c.call(&commit("g", 1, &member, "no-such-topic"), 8)
                .unwrap()
        ),
        3
    );
    assert_eq!(
        code(
            c.call(&commit("g", 1, &member, "__consumer_offsets"), 8)
                .unwrap()
        ),
        0
    );
    assert_eq!(
        code(
            c.call(&commit("nogroup", 3, &member, "__consumer_offsets"), 8)
                .unwrap()
        ),
        22
    );
    assert_eq!(
        code(
            c.call(&commit("nogroup", 3, &member, "__consumer_offsets"), 9)
                .unwrap()
        ),
        69
    );
    // A heartbeat during a rebalance gets REBALANCE_IN_PROGRESS; DeleteGroups refuses a
    // group with members; DescribeGroups v6 reports unknown groups.
    let mut c2 = raw(&broker);
    let newcomer = join_request("g", "", "t", 10_000);
    let r = c2.call(&newcomer, 5).unwrap();
    let newcomer = newcomer.with_member_id(r.member_id);
    let waiter = std::thread::spawn(move || c2.call(&newcomer, 5).unwrap().error_code);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = c.call(&hb(1, &member), 2).unwrap().error_code;
        if e == 27 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no REBALANCE_IN_PROGRESS (last {e})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = c
        .call(
            &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
            2,
        )
        .unwrap();
    assert_eq!(r.results[0].error_code, 68, "NON_EMPTY_GROUP");
    let r = c
        .call(
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("unknown"))]),
            6,
        )
        .unwrap();
    assert_eq!(r.groups[0].error_code, 69);
    // The old member rejoins, completing the rebalance for both.
    assert_eq!(c.call(&join, 5).unwrap().error_code, 0);
    assert_eq!(waiter.join().unwrap(), 0);
}

// ---------------------------------------------------------------------------------------
// Python clients

fn run_python(script: &str) {
    let python = workspace_root().join(".venv").join("bin").join("python");
    if !require(
        python.is_file(),
        &format!("{} (the test venv)", python.display()),
    ) {
        return;
    }
    let broker = start_broker();
    let topic = unique_topic(script.trim_end_matches(".py"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(rdk::create_topic(&broker.bootstrap(), &topic, 3, &[]));
    let path = workspace_root()
        .join("compat-tests")
        .join("python")
        .join(script);
    let mut child = Command::new(&python)
        .arg(&path)
        .args([
            "--bootstrap",
            &broker.bootstrap(),
            "--topic",
            &topic,
            "--group",
            &unique_topic("pygroup"),
        ])
        .args(["--partitions", "3", "--count", "600"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{script} did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        status.success(),
        "{script} failed:\n{out}\n{err}\nbroker log:\n{}",
        broker.log_tail()
    );
    eprintln!("{}", out.trim());
}

#[test]
fn confluent_kafka_group_commits_and_resumes() {
    run_python("groups_confluent_kafka.py");
}

#[test]
fn kafka_python_group_commits_and_resumes() {
    run_python("groups_kafka_python.py");
}

#[test]
fn aiokafka_group_commits_and_resumes() {
    run_python("groups_aiokafka.py");
}

#[test]
fn shutdown_does_not_wait_for_a_parked_join() {
    // A long initial delay keeps the JoinGroup parked.
    let mut broker = SluiceProcess::start(
        SluiceOptions::new().set("group.initial.rebalance.delay.ms", "120000"),
    );
    let addr = broker.bootstrap();
    let joiner = std::thread::spawn(move || {
        let mut c = RawConnection::connect_with_timeout(addr, Duration::from_secs(60)).unwrap();
        let r = c.call(&join_request("parked", "", "t", 10_000), 5).unwrap();
        let join = join_request("parked", r.member_id.as_str(), "t", 10_000);
        c.call(&join, 5).map(|r| r.error_code).ok()
    });
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    assert!(broker.terminate().success());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown waited for the rebalance"
    );
    let answer = joiner.join().unwrap();
    assert!(
        matches!(answer, None | Some(15)),
        "parked join answered {answer:?}"
    );
}
