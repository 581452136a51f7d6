//! Batched LeaveGroup (v3+, KIP-345) against a real broker process, over raw sockets: two
//! members of one group leave in a single request, an unknown member in the same batch gets
//! its own error, and the group is left empty.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use compat_tests::process::{SluiceOptions, SluiceProcess};
use compat_tests::unique_topic;
use compat_tests::wire::RawConnection;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::{
    DescribeGroupsRequest, GroupId, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
};
use kafka_protocol::protocol::StrBytes;

/// Kafka's error codes used below.
const UNKNOWN_MEMBER_ID: i16 = 25;
const MEMBER_ID_REQUIRED: i16 = 79;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn raw(broker: &SluiceProcess) -> RawConnection {
    RawConnection::connect_with_timeout(broker.bootstrap(), Duration::from_secs(30))
        .expect("connect")
}

/// ConsumerProtocolSubscription v0 for `topic`.
fn subscription(topic: &str) -> Bytes {
    let mut b = vec![0, 0, 0, 0, 0, 1];
    b.extend_from_slice(&u16::try_from(topic.len()).unwrap().to_be_bytes());
    b.extend_from_slice(topic.as_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(b)
}

fn join_request(group: &str, member: &StrBytes) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(member.clone())
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(subscription("t"))])
}

/// JoinGroup v5 the way a new member does it: MEMBER_ID_REQUIRED, then again with the id.
fn first_join(conn: &mut RawConnection, group: &str) -> StrBytes {
    let r = conn
        .call(&join_request(group, &StrBytes::default()), 5)
        .unwrap();
    assert_eq!(r.error_code, MEMBER_ID_REQUIRED, "{r:?}");
    r.member_id
}

/// Joins in a thread (the call parks until the rebalance completes).
fn join_in_thread(
    mut conn: RawConnection,
    group: &str,
    member: &StrBytes,
) -> std::thread::JoinHandle<(RawConnection, JoinGroupResponse)> {
    let request = join_request(group, member);
    std::thread::spawn(move || {
        let r = conn.call(&request, 5).unwrap();
        (conn, r)
    })
}

#[test]
fn batched_leave_group_removes_two_members_in_one_request() {
    let broker =
        SluiceProcess::start(SluiceOptions::new().set("group.initial.rebalance.delay.ms", "0"));
    let group = unique_topic("batched-leave");

    // Member 1 joins alone: generation 1.
    let mut c1 = raw(&broker);
    let m1 = first_join(&mut c1, &group);
    let (c1, r1) = join_in_thread(c1, &group, &m1).join().unwrap();
    assert_eq!((r1.error_code, r1.generation_id), (0, 1), "{r1:?}");

    // Member 2 joins, which starts a rebalance; member 1 rejoins; both get generation 2.
    let mut c2 = raw(&broker);
    let m2 = first_join(&mut c2, &group);
    let second = join_in_thread(c2, &group, &m2);
    std::thread::sleep(Duration::from_millis(300));
    let first = join_in_thread(c1, &group, &m1);
    let (_c1, r1) = first.join().unwrap();
    let (_c2, r2) = second.join().unwrap();
    assert_eq!((r1.error_code, r1.generation_id), (0, 2), "{r1:?}");
    assert_eq!((r2.error_code, r2.generation_id), (0, 2), "{r2:?}");

    let mut admin = raw(&broker);
    let describe = |admin: &mut RawConnection| {
        let d = admin
            .call(
                &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(&group))]),
                5,
            )
            .unwrap();
        let g = &d.groups[0];
        assert_eq!(g.error_code, 0, "{g:?}");
        (g.group_state.to_string(), g.members.len())
    };
    assert_eq!(describe(&mut admin).1, 2);

    // One LeaveGroup v5 for both members plus one the group never had.
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(&group)))
        .with_members(vec![
            MemberIdentity::default()
                .with_member_id(m1.clone())
                .with_reason(Some(s("batched test"))),
            MemberIdentity::default()
                .with_member_id(s("never-joined"))
                .with_reason(None),
            MemberIdentity::default()
                .with_member_id(m2.clone())
                .with_reason(None),
        ]);
    let r = admin.call(&leave, 5).unwrap();
    assert_eq!(r.error_code, 0, "{r:?}");
    let per_member: Vec<(String, i16)> = r
        .members
        .iter()
        .map(|m| (m.member_id.to_string(), m.error_code))
        .collect();
    assert_eq!(
        per_member,
        vec![
            (m1.to_string(), 0),
            ("never-joined".to_string(), UNKNOWN_MEMBER_ID),
            (m2.to_string(), 0),
        ]
    );
    assert_eq!(describe(&mut admin), ("Empty".to_string(), 0));

    // Leaving again (v3): both are unknown now, each says so.
    let again = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(&group)))
        .with_members(vec![
            MemberIdentity::default().with_member_id(m1.clone()),
            MemberIdentity::default().with_member_id(m2.clone()),
        ]);
    let r = admin.call(&again, 3).unwrap();
    assert_eq!(r.error_code, 0, "{r:?}");
    assert!(
        r.members.iter().all(|m| m.error_code == UNKNOWN_MEMBER_ID),
        "{r:?}"
    );
}
