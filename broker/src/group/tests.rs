//! Unit tests of the group coordinator state machine, driven by a mock clock: every test
//! asserts on the answers, parked replies and records the coordinator emits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use bytes::Bytes;
use protocol_shim::ErrorKind;

use super::api::*;
use super::coordinator::{Answer, CoordinatorConfig, GroupCoordinator, MemberIds};
use super::records::GroupRecord;
use super::state::GroupState;

const G: &str = "g";
const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

/// The coordinator, a mock clock, and everything it emitted so far.
struct Harness {
    c: GroupCoordinator,
    now: i64,
    next_token: u64,
    replies: HashMap<u64, ParkedReply>,
    records: Vec<GroupRecord>,
}

fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        initial_rebalance_delay_ms: 0,
        ..CoordinatorConfig::default()
    }
}

impl Harness {
    fn new() -> Self {
        Self::with(config())
    }
    fn with(cfg: CoordinatorConfig) -> Self {
        Harness {
            c: GroupCoordinator::new(cfg, MemberIds::Sequential(0)),
            now: 1_000_000,
            next_token: 1,
            replies: HashMap::new(),
            records: Vec::new(),
        }
    }
    /// What the runtime does after a call: apply the records, collect the replies.
    fn drain(&mut self) {
        let e = self.c.take_effects();
        self.c.apply_persisted(&e.records, self.now);
        self.replies.extend(e.replies);
        self.records.extend(e.records);
    }
    fn advance(&mut self, ms: i64) {
        self.now += ms;
        self.c.expire(self.now);
        self.drain();
    }
    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }
    fn join(&mut self, req: JoinRequest) -> (u64, Answer<JoinResponse>) {
        let t = self.token();
        let a = self.c.join(self.now, t, req);
        self.drain();
        (t, a)
    }
    fn sync(&mut self, req: SyncRequest) -> (u64, Answer<SyncResponse>) {
        let t = self.token();
        let a = self.c.sync(self.now, t, req);
        self.drain();
        (t, a)
    }
    fn join_reply(&mut self, token: u64) -> JoinResponse {
        match self.replies.remove(&token) {
            Some(ParkedReply::Join(r)) => r,
            other => panic!("no join reply for {token}: {other:?}"),
        }
    }
    fn sync_reply(&mut self, token: u64) -> SyncResponse {
        match self.replies.remove(&token) {
            Some(ParkedReply::Sync(r)) => r,
            other => panic!("no sync reply for {token}: {other:?}"),
        }
    }
    fn heartbeat(&mut self, member: &str, generation: i32) -> ErrorKind {
        let e = self.c.heartbeat(
            self.now,
            HeartbeatRequest {
                group_id: G.into(),
                generation_id: generation,
                member_id: member.into(),
                group_instance_id: None,
            },
        );
        self.drain();
        e
    }
    fn state(&self) -> GroupState {
        self.c.group(G).map_or(GroupState::Dead, |g| g.state)
    }
    /// A dynamic member's full v4+ join: MEMBER_ID_REQUIRED, then the parked join.
    fn join_dynamic(&mut self, client: &str) -> (String, u64) {
        let (_, a) = self.join(join_req("", client, None, &["range"]));
        let Answer::Now(r) = a else {
            panic!("first join must answer now")
        };
        assert_eq!(r.error, ErrorKind::MemberIdRequired);
        let (t, a) = self.join(join_req(&r.member_id, client, None, &["range"]));
        assert_eq!(a, Answer::Parked);
        (r.member_id, t)
    }
}

fn join_req(member: &str, client: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        group_id: G.into(),
        member_id: member.into(),
        group_instance_id: instance.map(str::to_string),
        client_id: client.into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{client}-{p}"))))
            .collect(),
        require_known_member_id: instance.is_none(),
        supports_skip_assignment: false,
    }
}

fn sync_req(member: &str, generation: i32, assignments: &[(&str, &str)]) -> SyncRequest {
    SyncRequest {
        group_id: G.into(),
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
        protocol_type: Some("consumer".into()),
        protocol_name: None,
        assignments: assignments
            .iter()
            .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
            .collect(),
    }
}

fn commit_req(member: &str, generation: i32, offset: i64) -> CommitRequest {
    CommitRequest::one_partition(G, member, generation, offset, Some("m"))
}

/// One member joins and syncs; returns its member id.
fn stable_single(h: &mut Harness) -> String {
    let (m1, t1) = h.join_dynamic("c1");
    h.advance(0);
    let r = h.join_reply(t1);
    assert_eq!((r.error, r.generation_id), (ErrorKind::None, 1));
    let (st, a) = h.sync(sync_req(&m1, 1, &[(&m1, "a1")]));
    assert_eq!(a, Answer::Parked);
    assert_eq!(h.sync_reply(st).assignment, Bytes::from("a1"));
    assert_eq!(h.state(), GroupState::Stable);
    m1
}

#[test]
fn single_member_join_sync_and_group_record() {
    let mut h = Harness::new();
    let (m1, t1) = h.join_dynamic("c1");
    assert!(m1.starts_with("c1-"));
    // Initial delay 0: the join phase ends at the next timer tick.
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    h.advance(0);
    let r = h.join_reply(t1);
    assert_eq!(r.leader, m1);
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.members.len(), 1);
    assert_eq!(r.members[0].metadata, Bytes::from("meta-c1-range"));
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    let (st, _) = h.sync(sync_req(&m1, 1, &[(&m1, "a1")]));
    assert_eq!(h.sync_reply(st).assignment, Bytes::from("a1"));
    assert_eq!(h.state(), GroupState::Stable);
    let Some(GroupRecord::Group { value: Some(v), .. }) = h.records.last() else {
        panic!("no group record");
    };
    assert_eq!((v.generation, v.members.len()), (1, 1));
    assert_eq!(v.members[0].assignment, Bytes::from("a1"));
    assert_eq!(h.heartbeat(&m1, 1), ErrorKind::None);
}

#[test]
fn initial_delay_waits_and_extends_for_new_members() {
    let mut h = Harness::with(CoordinatorConfig {
        initial_rebalance_delay_ms: 3000,
        ..config()
    });
    let (_, t1) = h.join_dynamic("c1");
    h.advance(2000);
    let (_, t2) = h.join_dynamic("c2");
    h.advance(1000); // first delay over, but a member arrived: extended
    assert!(!h.replies.contains_key(&t1));
    h.advance(3000);
    let (r1, r2) = (h.join_reply(t1), h.join_reply(t2));
    assert_eq!(r1.generation_id, 1);
    assert_eq!(
        r1.members.len() + r2.members.len(),
        2,
        "only the leader gets members"
    );
}

/// The same for a group that went Empty after earlier generations (a redeploy): Kafka
/// extends the initial delay whenever the join phase started from Empty, not only for a new
/// group.
#[test]
fn initial_delay_extends_for_a_group_that_went_empty() {
    let mut h = Harness::with(CoordinatorConfig {
        initial_rebalance_delay_ms: 3000,
        ..config()
    });
    let (m0, t0) = h.join_dynamic("c0");
    h.advance(3000);
    assert_eq!(h.join_reply(t0).generation_id, 1);
    h.c.leave(
        h.now,
        G,
        vec![LeavingMember {
            member_id: m0,
            group_instance_id: None,
        }],
    );
    h.drain();
    assert_eq!(h.state(), GroupState::Empty);
    let (_, t1) = h.join_dynamic("c1");
    h.advance(2000);
    let (_, t2) = h.join_dynamic("c2");
    h.advance(1000); // first delay over, but a member arrived: extended
    assert!(!h.replies.contains_key(&t1), "the join phase ended early");
    h.advance(3000);
    let (r1, r2) = (h.join_reply(t1), h.join_reply(t2));
    assert_eq!((r1.generation_id, r2.generation_id), (3, 3));
    assert_eq!(r1.members.len() + r2.members.len(), 2);
}

#[test]
fn second_member_triggers_rebalance_and_both_get_assignments() {
    let mut h = Harness::new();
    let (m1, t1) = h.join_dynamic("c1");
    h.advance(0);
    h.join_reply(t1);
    let (st1, _) = h.sync(sync_req(&m1, 1, &[(&m1, "p0-5")]));
    h.sync_reply(st1);
    // m2 joins a Stable group: rebalance, m1 learns from its heartbeat.
    let (m2, t2) = h.join_dynamic("c2");
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat(&m1, 1), ErrorKind::RebalanceInProgress);
    let (t1b, a) = h.join(join_req(&m1, "c1", None, &["range"]));
    assert_eq!(a, Answer::Parked);
    // Everybody joined: done without waiting.
    let (r1, r2) = (h.join_reply(t1b), h.join_reply(t2));
    assert_eq!((r1.generation_id, r2.generation_id), (2, 2));
    assert_eq!(r1.leader, m1);
    assert_eq!(r1.members.len(), 2);
    assert!(r2.members.is_empty());
    // The follower's sync waits for the leader's.
    let (st2, a) = h.sync(sync_req(&m2, 2, &[]));
    assert_eq!(a, Answer::Parked);
    assert!(!h.replies.contains_key(&st2));
    let (st1, _) = h.sync(sync_req(&m1, 2, &[(&m1, "p0-2"), (&m2, "p3-5")]));
    assert_eq!(h.sync_reply(st1).assignment, Bytes::from("p0-2"));
    assert_eq!(h.sync_reply(st2).assignment, Bytes::from("p3-5"));
    assert_eq!(h.state(), GroupState::Stable);
    // Stale generation.
    assert_eq!(h.heartbeat(&m2, 1), ErrorKind::IllegalGeneration);
}

#[test]
fn session_timeout_removes_a_silent_member_and_rebalances() {
    let mut h = Harness::new();
    let (m1, t1) = h.join_dynamic("c1");
    let (m2, t2) = h.join_dynamic("c2");
    h.advance(0);
    let leader = h.join_reply(t1).leader;
    h.join_reply(t2);
    let (s1, _) = h.sync(sync_req(&leader, 1, &[]));
    h.sync_reply(s1);
    let follower = if leader == m1 { m2.clone() } else { m1.clone() };
    let (_, a) = h.sync(sync_req(&follower, 1, &[]));
    assert!(
        matches!(a, Answer::Now(r) if r.error == ErrorKind::None),
        "a Stable group answers at once"
    );
    // Only m1 keeps heartbeating.
    for _ in 0..2 {
        h.advance(4000);
        assert_eq!(h.heartbeat(&m1, 1), ErrorKind::None);
    }
    h.advance(4000);
    assert!(!h.c.group(G).unwrap().has_member(&m2));
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat(&m1, 1), ErrorKind::RebalanceInProgress);
    let (t, _) = h.join(join_req(&m1, "c1", None, &["range"]));
    let r = h.join_reply(t);
    assert_eq!(
        (r.generation_id, r.members.len(), r.leader.as_str()),
        (2, 1, m1.as_str())
    );
}

#[test]
fn rebalance_timeout_drops_members_that_do_not_rejoin() {
    let mut h = Harness::new();
    let (m1, t1) = h.join_dynamic("c1");
    let (m2, t2) = h.join_dynamic("c2");
    h.advance(0);
    h.join_reply(t1);
    h.join_reply(t2);
    // m1 rejoins (as if its metadata changed); m2 keeps quiet but heartbeats.
    let (t1b, _) = h.join(join_req(&m1, "c1", None, &["range", "roundrobin"]));
    for _ in 0..5 {
        h.advance(5000);
        assert_eq!(h.heartbeat(&m2, 1), ErrorKind::RebalanceInProgress);
    }
    h.advance(5000);
    let r = h.join_reply(t1b);
    assert_eq!((r.generation_id, r.members.len()), (2, 1));
    assert!(!h.c.group(G).unwrap().has_member(&m2));
}

#[test]
fn members_that_never_sync_are_removed() {
    let mut h = Harness::new();
    let (m1, t1) = h.join_dynamic("c1");
    let (_m2, t2) = h.join_dynamic("c2");
    h.advance(0);
    let leader = h.join_reply(t1).leader;
    h.join_reply(t2);
    let (s, _) = h.sync(sync_req(&leader, 1, &[]));
    h.sync_reply(s);
    for _ in 0..6 {
        h.advance(5000);
        h.heartbeat(&leader, 1);
    }
    let g = h.c.group(G).unwrap();
    assert_eq!(g.members.len(), 1);
    assert!(g.has_member(&leader) || g.has_member(&m1));
    assert_eq!(h.state(), GroupState::PreparingRebalance);
}

#[test]
fn leave_rebalances_and_last_leave_empties_the_group() {
    let mut h = Harness::new();
    let m1 = stable_single(&mut h);
    let before = h.c.group(G).unwrap().generation_id;
    let r = h.c.leave(
        h.now,
        G,
        vec![LeavingMember {
            member_id: m1.clone(),
            group_instance_id: None,
        }],
    );
    h.drain();
    assert_eq!(r.members, vec![(m1.clone(), None, ErrorKind::None)]);
    assert_eq!(h.state(), GroupState::Empty);
    assert_eq!(h.c.group(G).unwrap().generation_id, before + 1);
    assert!(
        matches!(h.records.last(), Some(GroupRecord::Group { value: Some(v), .. }) if v.members.is_empty())
    );
    let again = h.c.leave(
        h.now,
        G,
        vec![LeavingMember {
            member_id: m1,
            group_instance_id: None,
        }],
    );
    assert_eq!(again.members[0].2, ErrorKind::UnknownMemberId);
    // A group nobody knows: no group-level error, each member UNKNOWN_MEMBER_ID (Kafka).
    let missing = h.c.leave(
        h.now,
        "nope",
        vec![LeavingMember {
            member_id: "m".into(),
            group_instance_id: Some("i".into()),
        }],
    );
    assert_eq!(missing.error, ErrorKind::None);
    assert_eq!(
        missing.members,
        vec![("m".into(), Some("i".into()), ErrorKind::UnknownMemberId)]
    );
}

#[test]
fn protocol_rules_and_request_errors() {
    let mut h = Harness::new();
    let (_, a) = h.join(join_req("", "c1", None, &[]));
    assert_eq!(
        a,
        Answer::Now(JoinResponse::error(
            ErrorKind::InconsistentGroupProtocol,
            ""
        ))
    );
    assert!(
        h.c.group(G).is_none(),
        "a failed first join leaves no group behind"
    );
    let mut bad = join_req("", "c1", None, &["range"]);
    bad.session_timeout_ms = 10;
    assert!(matches!(h.join(bad).1, Answer::Now(r) if r.error == ErrorKind::InvalidSessionTimeout));
    let mut bad = join_req("", "c1", None, &["range"]);
    bad.session_timeout_ms = 1_800_001;
    assert!(matches!(h.join(bad).1, Answer::Now(r) if r.error == ErrorKind::InvalidSessionTimeout));
    let mut bad = join_req("", "c1", None, &["range"]);
    bad.group_id.clear();
    assert!(matches!(h.join(bad).1, Answer::Now(r) if r.error == ErrorKind::InvalidGroupId));
    assert!(
        matches!(h.join(join_req("ghost", "c1", None, &["range"])).1, Answer::Now(r) if r.error == ErrorKind::UnknownMemberId)
    );

    // Common protocol chosen; a member with no common protocol is refused.
    let (t1, _) = {
        let (_, a) = h.join(join_req("", "c1", None, &["sticky", "range"]));
        let Answer::Now(r) = a else { panic!() };
        h.join(join_req(&r.member_id, "c1", None, &["sticky", "range"]))
    };
    let (_, a) = h.join(join_req("", "c2", None, &["roundrobin"]));
    assert!(matches!(a, Answer::Now(r) if r.error == ErrorKind::InconsistentGroupProtocol));
    let (_, a) = h.join(join_req("", "c2", None, &["range"]));
    let Answer::Now(r) = a else { panic!() };
    let (t2, _) = h.join(join_req(&r.member_id, "c2", None, &["range"]));
    h.advance(0);
    assert_eq!(h.join_reply(t1).protocol_name.as_deref(), Some("range"));
    assert_eq!(h.join_reply(t2).protocol_name.as_deref(), Some("range"));
    // Sync with the wrong protocol name.
    let mut s = sync_req(&r.member_id, 1, &[]);
    s.protocol_name = Some("sticky".into());
    assert!(
        matches!(h.sync(s).1, Answer::Now(r) if r.error == ErrorKind::InconsistentGroupProtocol)
    );
    assert!(
        matches!(h.sync(sync_req("ghost", 1, &[])).1, Answer::Now(r) if r.error == ErrorKind::UnknownMemberId)
    );
    assert!(
        matches!(h.sync(sync_req(&r.member_id, 7, &[])).1, Answer::Now(r) if r.error == ErrorKind::IllegalGeneration)
    );
}

#[test]
fn group_max_size_is_enforced() {
    let mut h = Harness::with(CoordinatorConfig {
        max_group_size: 1,
        ..config()
    });
    stable_single(&mut h);
    let (_, a) = h.join(join_req("", "c2", None, &["range"]));
    let Answer::Now(r) = a else { panic!() };
    let (_, a) = h.join(join_req(&r.member_id, "c2", None, &["range"]));
    assert!(matches!(a, Answer::Now(r) if r.error == ErrorKind::GroupMaxSizeReached));
}

/// Kafka's `group.remove(memberId)` on GROUP_MAX_SIZE_REACHED: a member refused at a rejoin
/// (the group filled up with others while it was away) leaves the group at once, answered
/// with no member id, so the rebalance does not wait for it until its timeout.
#[test]
fn a_member_refused_for_group_max_size_leaves_and_the_rebalance_goes_on() {
    let mut h = Harness::with(CoordinatorConfig {
        max_group_size: 2,
        ..config()
    });
    let (m1, t1) = h.join_dynamic("c1");
    let (m2, t2) = h.join_dynamic("c2");
    h.advance(0);
    assert_eq!(h.join_reply(t1).generation_id, 1);
    h.join_reply(t2);
    let (s2, _) = h.sync(sync_req(&m2, 1, &[]));
    let (s1, _) = h.sync(sync_req(&m1, 1, &[(&m1, "a1"), (&m2, "a2")]));
    h.sync_reply(s1);
    h.sync_reply(s2);
    assert_eq!(h.state(), GroupState::Stable);
    let (t1, a) = h.join(join_req(&m1, "c1", None, &["range"]));
    assert_eq!(a, Answer::Parked);
    let (m3, t3) = h.join_dynamic("c3");
    let (_, a) = h.join(join_req(&m2, "c2", None, &["range"]));
    let Answer::Now(refused) = a else {
        panic!("refused at once")
    };
    assert_eq!(
        (refused.error, refused.member_id.as_str()),
        (ErrorKind::GroupMaxSizeReached, "")
    );
    h.advance(0);
    let r = h.join_reply(t1);
    assert_eq!((r.error, r.generation_id), (ErrorKind::None, 2));
    let mut members: Vec<_> = r.members.iter().map(|m| m.member_id.clone()).collect();
    members.sort();
    assert_eq!(members, vec![m1, m3]);
    h.join_reply(t3);
    assert_eq!(h.heartbeat(&m2, 2), ErrorKind::UnknownMemberId);
}

/// The same for an id still pending (MEMBER_ID_REQUIRED): refused at its second join, it is
/// forgotten, so the join phase does not wait for it.
#[test]
fn a_pending_member_refused_for_group_max_size_is_forgotten() {
    let mut h = Harness::with(CoordinatorConfig {
        max_group_size: 2,
        ..config()
    });
    let m1 = stable_single(&mut h);
    let (_, a) = h.join(join_req("", "c2", None, &["range"]));
    let Answer::Now(r2) = a else { panic!() };
    let (_, a) = h.join(join_req("", "c3", None, &["range"]));
    let Answer::Now(r3) = a else { panic!() };
    assert_eq!(r3.error, ErrorKind::MemberIdRequired);
    let (t2, _) = h.join(join_req(&r2.member_id, "c2", None, &["range"]));
    let (t1, _) = h.join(join_req(&m1, "c1", None, &["range"]));
    let (_, a) = h.join(join_req(&r3.member_id, "c3", None, &["range"]));
    assert!(matches!(a, Answer::Now(r) if r.error == ErrorKind::GroupMaxSizeReached));
    h.advance(0);
    let r = h.join_reply(t1);
    assert_eq!(
        (r.error, r.generation_id, r.members.len()),
        (ErrorKind::None, 2, 2)
    );
    h.join_reply(t2);
}

#[test]
fn static_member_restart_keeps_assignment_without_rebalance() {
    let mut h = Harness::new();
    let (t1, a) = h.join(join_req("", "c1", Some("i1"), &["range"]));
    assert_eq!(a, Answer::Parked, "static members skip MEMBER_ID_REQUIRED");
    h.advance(0);
    let r = h.join_reply(t1);
    let old = r.member_id.clone();
    assert!(old.starts_with("i1-"));
    let (s, _) = h.sync(SyncRequest {
        group_instance_id: Some("i1".into()),
        ..sync_req(&old, 1, &[(&old, "mine")])
    });
    h.sync_reply(s);
    // The process restarts: unknown member id, same instance id, within the session (from
    // another client id and host, which the member keeps from its first join, as Kafka's
    // `replaceStaticMember`).
    h.advance(3000);
    let (_, a) = h.join(JoinRequest {
        client_host: "/127.0.0.9".into(),
        ..join_req("", "c1-restarted", Some("i1"), &["range"])
    });
    let Answer::Now(r) = a else {
        panic!("no rebalance expected")
    };
    let member = &h.c.group(G).expect("the group").members[&r.member_id];
    assert_eq!(
        (member.client_id.as_str(), member.client_host.as_str()),
        ("c1", "/127.0.0.1")
    );
    assert_eq!((r.error, r.generation_id), (ErrorKind::None, 1));
    assert_ne!(r.member_id, old);
    assert_eq!(
        r.leader, old,
        "the old leader id is returned so no reassignment happens"
    );
    assert_eq!(h.state(), GroupState::Stable);
    let (_, a) = h.sync(SyncRequest {
        group_instance_id: Some("i1".into()),
        ..sync_req(&r.member_id, 1, &[])
    });
    assert!(matches!(a, Answer::Now(s) if s.assignment == "mine"));
    // The old incarnation is fenced.
    let e = h.c.heartbeat(
        h.now,
        HeartbeatRequest {
            group_id: G.into(),
            generation_id: 1,
            member_id: old.clone(),
            group_instance_id: Some("i1".into()),
        },
    );
    assert_eq!(e, ErrorKind::FencedInstanceId);
    let (_, a) = h.join(join_req(&old, "c1", Some("i1"), &["range"]));
    assert!(matches!(a, Answer::Now(r) if r.error == ErrorKind::FencedInstanceId));
}

/// From JoinGroup v9 (KIP-814) a static leader that restarts is told it leads (the leader id
/// is its new member id), gets the members, and is told to skip the assignment; a follower's
/// restart gets neither. Kafka's `updateStaticMemberThenRebalanceOrCompleteJoin`.
#[test]
fn static_leader_restart_at_v9_is_told_it_leads_and_to_skip_the_assignment() {
    let mut h = Harness::new();
    let v9 = |client: &str, instance: &str| JoinRequest {
        supports_skip_assignment: true,
        ..join_req("", client, Some(instance), &["range"])
    };
    let (t1, _) = h.join(v9("c1", "i1"));
    let (t2, _) = h.join(v9("c2", "i2"));
    h.advance(0);
    let (r1, r2) = (h.join_reply(t1), h.join_reply(t2));
    let (leader, follower) = if r1.leader == r1.member_id {
        (r1, r2)
    } else {
        (r2, r1)
    };
    let leader_instance = if leader.member_id.starts_with("i1-") {
        "i1"
    } else {
        "i2"
    };
    let follower_instance = if leader_instance == "i1" { "i2" } else { "i1" };
    for r in [&leader, &follower] {
        let (s, _) = h.sync(sync_req(&r.member_id, 1, &[]));
        let _ = s;
    }
    assert_eq!(h.state(), GroupState::Stable);
    // The leader's process restarts.
    let (_, a) = h.join(v9("c1", leader_instance));
    let Answer::Now(r) = a else {
        panic!("no rebalance expected")
    };
    assert_eq!((r.error, r.generation_id), (ErrorKind::None, 1));
    assert_ne!(r.member_id, leader.member_id);
    assert_eq!(r.leader, r.member_id, "told it leads");
    assert!(r.skip_assignment);
    let mut members: Vec<&str> = r.members.iter().map(|m| m.member_id.as_str()).collect();
    members.sort_unstable();
    let mut want = vec![r.member_id.as_str(), follower.member_id.as_str()];
    want.sort_unstable();
    assert_eq!(members, want);
    // The follower's restart: the leader's id, no members, nothing to skip.
    let (_, a) = h.join(v9("c2", follower_instance));
    let Answer::Now(f) = a else {
        panic!("no rebalance expected")
    };
    assert_eq!(f.leader, r.member_id);
    assert!(!f.skip_assignment && f.members.is_empty());
    assert_eq!(h.state(), GroupState::Stable);
}

#[test]
fn static_member_that_does_not_return_expires_after_its_session() {
    let mut h = Harness::new();
    let (t1, _) = h.join(join_req("", "c1", Some("i1"), &["range"]));
    let (t2, _) = h.join(join_req("", "c2", Some("i2"), &["range"]));
    h.advance(0);
    let (r1, r2) = (h.join_reply(t1), h.join_reply(t2));
    for r in [&r1, &r2] {
        let (s, _) = h.sync(SyncRequest {
            group_instance_id: None,
            ..sync_req(&r.member_id, 1, &[])
        });
        let _ = s;
    }
    // i2 stops; i1 keeps heartbeating.
    for _ in 0..4 {
        h.advance(3000);
        h.heartbeat(&r1.member_id, 1);
    }
    assert!(!h.c.group(G).unwrap().has_member(&r2.member_id));
}

#[test]
fn offset_commit_validation_and_fetch() {
    let mut h = Harness::new();
    // A "simple" group: generation -1, no members.
    let r = h.c.commit_offsets(h.now, commit_req("", -1, 5));
    h.drain();
    assert_eq!(r, vec![("t".to_string(), vec![(0, ErrorKind::None)])]);
    let f = h.c.fetch_offsets(G, Some(vec![("t".into(), vec![0, 1])]));
    assert_eq!(f.topics[0].1[0].offset, 5);
    assert_eq!(f.topics[0].1[0].metadata, "m");
    assert_eq!(f.topics[0].1[1].offset, -1);
    assert_eq!(h.c.fetch_offsets(G, None).topics.len(), 1);
    // Unknown group with a generation: ILLEGAL_GENERATION (v<9) / GROUP_ID_NOT_FOUND (v9).
    let mut req = commit_req("m", 3, 1);
    req.group_id = "other".into();
    assert_eq!(
        h.c.commit_offsets(h.now, req.clone())[0].1[0].1,
        ErrorKind::IllegalGeneration
    );
    req.version = 9;
    assert_eq!(
        h.c.commit_offsets(h.now, req)[0].1[0].1,
        ErrorKind::GroupIdNotFound
    );
    // A group with a member: unknown member, stale generation, unknown topic, big metadata.
    let mut h = Harness::new();
    let m1 = stable_single(&mut h);
    assert_eq!(
        h.c.commit_offsets(h.now, commit_req("ghost", 1, 1))[0].1[0].1,
        ErrorKind::UnknownMemberId
    );
    assert_eq!(
        h.c.commit_offsets(h.now, commit_req(&m1, 0, 1))[0].1[0].1,
        ErrorKind::IllegalGeneration
    );
    assert_eq!(
        h.c.commit_offsets(h.now, commit_req("", -1, 1))[0].1[0].1,
        ErrorKind::UnknownMemberId
    );
    let mut req = commit_req(&m1, 1, 1);
    req.topics[0].partitions[0].error = Some(ErrorKind::UnknownTopicOrPartition);
    assert_eq!(
        h.c.commit_offsets(h.now, req)[0].1[0].1,
        ErrorKind::UnknownTopicOrPartition
    );
    let mut req = commit_req(&m1, 1, 1);
    req.topics[0].partitions[0].metadata = Some("x".repeat(5000));
    assert_eq!(
        h.c.commit_offsets(h.now, req)[0].1[0].1,
        ErrorKind::OffsetMetadataTooLarge
    );
    h.drain();
    assert!(
        h.records
            .iter()
            .all(|r| !matches!(r, GroupRecord::Offset { .. })),
        "nothing committed"
    );
    // The limit counts UTF-16 code units as Kafka's `String.length()`: 3,000 "é" are 6,000
    // bytes but 3,000 units, within 4,096.
    let mut req = commit_req(&m1, 1, 1);
    req.topics[0].partitions[0].metadata = Some("é".repeat(3000));
    assert_eq!(h.c.commit_offsets(h.now, req)[0].1[0].1, ErrorKind::None);
    assert_eq!(
        h.c.commit_offsets(h.now, commit_req(&m1, 1, 9))[0].1[0].1,
        ErrorKind::None
    );
    // Not visible until the runtime applies the persisted record.
    assert_eq!(h.c.fetch_offsets(G, None).topics.len(), 0);
    h.drain();
    assert_eq!(h.c.fetch_offsets(G, None).topics[0].1[0].offset, 9);
}

#[test]
fn commit_during_completing_rebalance_is_refused() {
    let mut h = Harness::new();
    let (m1, t1) = h.join_dynamic("c1");
    h.advance(0);
    h.join_reply(t1);
    assert_eq!(
        h.c.commit_offsets(h.now, commit_req(&m1, 1, 1))[0].1[0].1,
        ErrorKind::RebalanceInProgress
    );
}

#[test]
fn offsets_of_an_empty_group_expire_and_the_group_is_deleted() {
    let mut h = Harness::with(CoordinatorConfig {
        offsets_retention_ms: 60_000,
        ..config()
    });
    let m1 = stable_single(&mut h);
    h.c.commit_offsets(h.now, commit_req(&m1, 1, 3));
    h.drain();
    // Offsets of a group with members never expire.
    h.now += 120_000;
    h.heartbeat(&m1, 1);
    h.c.expire_offsets(h.now);
    h.drain();
    assert!(h.c.committed(G).is_some());
    h.c.leave(
        h.now,
        G,
        vec![LeavingMember {
            member_id: m1,
            group_instance_id: None,
        }],
    );
    h.drain();
    h.now += 59_000;
    h.c.expire_offsets(h.now);
    h.drain();
    assert!(h.c.committed(G).is_some());
    h.now += 1_000;
    h.c.expire_offsets(h.now);
    h.drain();
    assert!(h.c.committed(G).is_none());
    assert!(h.c.group(G).is_none());
    assert!(matches!(
        h.records.last(),
        Some(GroupRecord::Group { value: None, .. })
    ));
}

#[test]
fn replaying_the_records_restores_offsets_and_the_stable_group() {
    let mut h = Harness::new();
    let m1 = stable_single(&mut h);
    h.c.commit_offsets(h.now, commit_req(&m1, 1, 42));
    h.drain();
    let mut loaded = GroupCoordinator::new(config(), MemberIds::Sequential(100));
    for r in h.records.clone() {
        let (k, v) = r.encode().unwrap();
        let decoded = GroupRecord::decode(&k, v.as_deref()).unwrap().unwrap();
        loaded.replay(decoded, h.now);
    }
    loaded.finish_loading(h.now);
    assert_eq!(loaded.fetch_offsets(G, None).topics[0].1[0].offset, 42);
    let g = loaded.group(G).unwrap();
    assert_eq!((g.state, g.generation_id), (GroupState::Stable, 1));
    assert_eq!(g.members[&m1].assignment, Bytes::from("a1"));
    let e = loaded.heartbeat(
        h.now,
        HeartbeatRequest {
            group_id: G.into(),
            generation_id: 1,
            member_id: m1.clone(),
            group_instance_id: None,
        },
    );
    assert_eq!(e, ErrorKind::None);
    // A member that never comes back after the restart expires; the group empties.
    loaded.expire(h.now + i64::from(SESSION_MS));
    let g = loaded.group(G).unwrap();
    assert_eq!((g.state, g.generation_id), (GroupState::Empty, 2));
}

#[test]
fn list_describe_and_delete_groups() {
    let mut h = Harness::new();
    let m1 = stable_single(&mut h);
    h.c.commit_offsets(h.now, commit_req(&m1, 1, 1));
    h.drain();
    let listed = h.c.list_groups(&[], &[]);
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].state, listed[0].protocol_type.as_str()),
        ("Stable", "consumer")
    );
    assert!(h.c.list_groups(&["empty".into()], &[]).is_empty());
    assert_eq!(
        h.c.list_groups(&["STABLE".into()], &["Classic".into()])
            .len(),
        1
    );
    assert!(h.c.list_groups(&[], &["consumer".into()]).is_empty());
    let d = h.c.describe_group(G, true);
    assert_eq!(
        (d.state, d.protocol_data.as_str(), d.members.len()),
        ("Stable", "range", 1)
    );
    assert_eq!(d.members[0].assignment, Bytes::from("a1"));
    assert_eq!(h.c.describe_group("nope", false).state, "Dead");
    assert_eq!(
        h.c.describe_group("nope", true).error,
        ErrorKind::GroupIdNotFound
    );
    assert_eq!(h.c.delete_group(G), ErrorKind::NonEmptyGroup);
    assert_eq!(h.c.delete_group("nope"), ErrorKind::GroupIdNotFound);
    h.c.leave(
        h.now,
        G,
        vec![LeavingMember {
            member_id: m1,
            group_instance_id: None,
        }],
    );
    h.drain();
    h.records.clear();
    assert_eq!(h.c.delete_group(G), ErrorKind::None);
    h.drain();
    assert_eq!(
        h.records.len(),
        2,
        "an offset tombstone and a group tombstone"
    );
    assert!(h.c.committed(G).is_none());
    assert!(h.c.list_groups(&[], &[]).is_empty());
}

#[test]
fn offset_delete_respects_subscriptions() {
    let mut h = Harness::new();
    // Subscription metadata naming topic "t" (ConsumerProtocolSubscription v0).
    let mut meta = vec![0, 0, 0, 0, 0, 1, 0, 1];
    meta.push(b't');
    let mut req = join_req("", "c1", None, &["range"]);
    req.protocols = vec![("range".into(), Bytes::from(meta.clone()))];
    let (_, a) = h.join(req.clone());
    let Answer::Now(r) = a else { panic!() };
    req.member_id = r.member_id.clone();
    let (t, _) = h.join(req);
    h.advance(0);
    h.join_reply(t);
    let (s, _) = h.sync(sync_req(&r.member_id, 1, &[]));
    h.sync_reply(s);
    let out = h.c.delete_offsets(
        G,
        vec![("t".into(), vec![(0, None)]), ("u".into(), vec![(0, None)])],
    );
    assert_eq!(out.error, ErrorKind::None);
    assert_eq!(out.topics[0].1[0].1, ErrorKind::GroupSubscribedToTopic);
    assert_eq!(out.topics[1].1[0].1, ErrorKind::None);
    assert_eq!(
        h.c.delete_offsets("nope", vec![]).error,
        ErrorKind::GroupIdNotFound
    );
}

#[test]
fn pending_member_that_never_rejoins_is_forgotten() {
    let mut h = Harness::new();
    let m1 = stable_single(&mut h);
    let (_, a) = h.join(join_req("", "c2", None, &["range"]));
    let Answer::Now(r) = a else { panic!() };
    assert_eq!(r.error, ErrorKind::MemberIdRequired);
    assert!(h.c.group(G).unwrap().pending_join.contains(&r.member_id));
    for _ in 0..2 {
        h.advance(i64::from(SESSION_MS) / 2);
        assert_eq!(h.heartbeat(&m1, 1), ErrorKind::None);
    }
    assert!(h.c.group(G).unwrap().pending_join.is_empty());
    assert_eq!(
        h.heartbeat(&m1, 1),
        ErrorKind::None,
        "no rebalance for a pending member"
    );
}

/// A simple commit (generation -1, no member) of `group` at `offset` on `topic`-`partition`.
fn simple_commit(group: &str, topic: &str, partition: i32, offset: i64) -> CommitRequest {
    let mut req = CommitRequest::one_partition(group, "", -1, offset, None);
    req.topics[0].name = topic.into();
    req.topics[0].partitions[0].partition = partition;
    req
}

fn fetched(h: &Harness, group: &str, topic: &str, partition: i32) -> i64 {
    h.c.fetch_offsets(group, Some(vec![(topic.into(), vec![partition])]))
        .topics[0]
        .1[0]
        .offset
}

#[test]
fn a_deleted_topic_loses_the_offsets_of_every_group_once_the_tombstones_are_written() {
    let mut h = Harness::new();
    for (group, topic, partition, offset) in [
        ("g1", "t", 0, 10),
        ("g1", "t", 1, 11),
        ("g1", "u", 0, 12),
        ("g2", "t", 1, 21),
    ] {
        h.c.commit_offsets(h.now, simple_commit(group, topic, partition, offset));
        h.drain();
    }
    h.records.clear();
    assert_eq!(h.c.on_topics_deleted(&["t".into(), "gone".into()]), 3);
    // Nothing changes before the tombstones are in the log.
    let effects = h.c.take_effects();
    assert_eq!(fetched(&h, "g1", "t", 0), 10);
    let mut tombstones: Vec<(String, String, i32)> = effects
        .records
        .iter()
        .map(|r| match r {
            GroupRecord::Offset {
                group,
                topic,
                partition,
                value: None,
            } => (group.clone(), topic.clone(), *partition),
            other => panic!("not an offset tombstone: {other:?}"),
        })
        .collect();
    tombstones.sort();
    assert_eq!(
        tombstones,
        vec![
            ("g1".into(), "t".into(), 0),
            ("g1".into(), "t".into(), 1),
            ("g2".into(), "t".into(), 1),
        ]
    );
    h.c.apply_persisted(&effects.records, h.now);
    assert_eq!(fetched(&h, "g1", "t", 0), -1);
    assert_eq!(fetched(&h, "g1", "t", 1), -1);
    assert_eq!(fetched(&h, "g2", "t", 1), -1);
    assert_eq!(fetched(&h, "g1", "u", 0), 12, "other topics keep theirs");
    // The groups themselves stay (Kafka deletes offsets only; expiry removes empty groups).
    assert!(h.c.group("g2").is_some());
    assert_eq!(h.c.on_topics_deleted(&["t".into()]), 0);
}

#[test]
fn a_deleted_group_stays_until_its_tombstones_are_written() {
    let mut h = Harness::new();
    h.c.commit_offsets(h.now, simple_commit(G, "t", 0, 5));
    h.drain();
    assert_eq!(h.c.delete_group(G), ErrorKind::None);
    // The append failed: the effects are dropped, never applied. A retry finds the group.
    let failed = h.c.take_effects();
    assert_eq!(failed.records.len(), 2);
    assert!(h.c.group(G).is_some());
    assert_eq!(fetched(&h, G, "t", 0), 5);
    assert_eq!(h.c.delete_group(G), ErrorKind::None);
    h.drain();
    assert!(h.c.group(G).is_none());
    assert_eq!(fetched(&h, G, "t", 0), -1);
    assert_eq!(h.c.delete_group(G), ErrorKind::GroupIdNotFound);
}

#[test]
fn an_expired_group_stays_until_its_tombstones_are_written() {
    let mut h = Harness::with(CoordinatorConfig {
        offsets_retention_ms: 60_000,
        ..config()
    });
    h.c.commit_offsets(h.now, simple_commit(G, "t", 0, 5));
    h.drain();
    h.now += 60_000;
    h.c.expire_offsets(h.now);
    let failed = h.c.take_effects();
    assert!(matches!(
        failed.records.last(),
        Some(GroupRecord::Group { value: None, .. })
    ));
    assert!(h.c.group(G).is_some());
    assert_eq!(fetched(&h, G, "t", 0), 5);
    h.c.expire_offsets(h.now);
    h.drain();
    assert!(h.c.group(G).is_none());
    assert!(h.c.committed(G).is_none());
}

#[test]
fn metadata_too_long_for_the_record_in_utf8_bytes_is_refused_per_partition() {
    // A limit above what the record's i16 length can hold: the UTF-16 count (Kafka's) lets
    // these through, their UTF-8 bytes do not fit.
    let mut h = Harness::with(CoordinatorConfig {
        offset_metadata_max_bytes: 40_000,
        ..config()
    });
    let fits = "é".repeat(16_383) + "a"; // 32,767 bytes
    let mut req = simple_commit(G, "t", 0, 1);
    let template = req.topics[0].partitions[0].clone();
    req.topics[0].partitions = [
        Some(fits.clone()),
        Some("é".repeat(16_384)), // 16,384 UTF-16 units, 32,768 bytes
        Some("😀".repeat(8_192)), // 16,384 UTF-16 units, 32,768 bytes
        Some("a".repeat(32_768)),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, metadata)| CommitPartition {
        partition: i32::try_from(i).unwrap(),
        metadata,
        ..template.clone()
    })
    .collect();
    let answer = h.c.commit_offsets(h.now, req);
    let errors: Vec<ErrorKind> = answer[0].1.iter().map(|(_, e)| *e).collect();
    assert_eq!(
        errors,
        vec![
            ErrorKind::None,
            ErrorKind::OffsetMetadataTooLarge,
            ErrorKind::OffsetMetadataTooLarge,
            ErrorKind::OffsetMetadataTooLarge,
        ]
    );
    h.drain();
    assert_eq!(
        h.records.len(),
        1,
        "only the partition that fits is written"
    );
    let (key, value) = h.records[0].encode().unwrap();
    let decoded = GroupRecord::decode(&key, value.as_deref())
        .unwrap()
        .unwrap();
    assert_eq!(decoded, h.records[0]);
    let stored = h.c.fetch_offsets(G, None);
    assert_eq!(stored.topics[0].1.len(), 1);
    assert_eq!(stored.topics[0].1[0].metadata, fits, "stored whole");

    // The default limit (4096) counts UTF-16 units, as Kafka: 4096 'é' (8192 bytes) pass.
    let mut h = Harness::new();
    let ok = CommitRequest::one_partition(G, "", -1, 1, Some(&"é".repeat(4096)));
    assert_eq!(h.c.commit_offsets(h.now, ok)[0].1[0].1, ErrorKind::None);
    let too_long = CommitRequest::one_partition(G, "", -1, 1, Some(&"😀".repeat(2049)));
    assert_eq!(
        h.c.commit_offsets(h.now, too_long)[0].1[0].1,
        ErrorKind::OffsetMetadataTooLarge
    );
}
