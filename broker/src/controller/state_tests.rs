//! Tests of the metadata state machine and the control-loop decisions, driven without a
//! runtime.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::control::{
    expired_brokers, offline_leader_elections, on_broker_fenced, preferred_leader_elections,
    rules_upgrade,
};
use super::placement::assign_replicas;
use super::records::{
    Command, CommandError, CommandResult, ConfigOp, ElectionType, PartitionChange, PartitionRef,
};
use super::state::{
    ClusterState, PartitionState, NO_LEADER, RULES_VERSION, UNCLEAN_LEADER_ELECTION_ENABLE,
};

fn register(state: &mut ClusterState, id: i32) -> i64 {
    let cmd = Command::RegisterBroker {
        broker_id: id,
        host: "127.0.0.1".into(),
        port: 9000 + id as u16,
        replica_endpoint: None,
        rack: None,
        incarnation_id: Uuid::from_u128(id as u128 * 1000 + 1),
        rules_version: crate::controller::state::RULES_VERSION,
    };
    match state.apply(&cmd).unwrap() {
        CommandResult::BrokerRegistered { broker_epoch } => broker_epoch,
        other => panic!("{other:?}"),
    }
}

/// Broker `id`'s registration as incarnation `incarnation`, applying rules up to `rules`.
fn registration(id: i32, incarnation: u128, rules: u16) -> Command {
    Command::RegisterBroker {
        broker_id: id,
        host: "127.0.0.1".into(),
        port: 9000 + id as u16,
        replica_endpoint: None,
        rack: None,
        incarnation_id: Uuid::from_u128(incarnation),
        rules_version: rules,
    }
}

fn epoch(state: &ClusterState, id: i32) -> i64 {
    state.brokers[&id].broker_epoch
}

fn unfence(state: &mut ClusterState, id: i32) {
    let broker_epoch = epoch(state, id);
    state
        .apply(&Command::UnfenceBroker {
            broker_id: id,
            broker_epoch,
        })
        .unwrap();
}

fn fence(state: &mut ClusterState, id: i32) {
    let broker_epoch = epoch(state, id);
    state
        .apply(&Command::FenceBroker {
            broker_id: id,
            broker_epoch,
        })
        .unwrap();
}

/// Three unfenced brokers 1, 2, 3, under this code's controller rules.
fn three_brokers() -> ClusterState {
    let mut s = ClusterState::new();
    for id in 1..=3 {
        register(&mut s, id);
        unfence(&mut s, id);
    }
    let upgrade = rules_upgrade(&s).unwrap();
    s.apply(&upgrade).unwrap();
    assert_eq!(s.rules_version, RULES_VERSION);
    s
}

const TOPIC: Uuid = Uuid::from_u128(0xAB);

fn create(state: &mut ClusterState, assignments: Vec<Vec<i32>>) {
    create_with(state, assignments, BTreeMap::new());
}

fn create_with(
    state: &mut ClusterState,
    assignments: Vec<Vec<i32>>,
    configs: BTreeMap<String, String>,
) {
    state
        .apply(&Command::CreateTopic {
            name: "t".into(),
            topic_id: TOPIC,
            assignments,
            configs,
        })
        .unwrap();
}

fn p(partition: i32) -> PartitionRef {
    PartitionRef {
        topic_id: TOPIC,
        partition,
    }
}

fn part(state: &ClusterState, partition: i32) -> PartitionState {
    state.partition(&p(partition)).unwrap().clone()
}

fn alter(
    state: &mut ClusterState,
    partition: i32,
    leader: i32,
    new_isr: Vec<i32>,
) -> Result<CommandResult, CommandError> {
    let cur = part(state, partition);
    state.apply(&Command::AlterPartition {
        partition: p(partition),
        broker_id: leader,
        broker_epoch: epoch(state, leader),
        leader_epoch: cur.leader_epoch,
        partition_epoch: cur.partition_epoch,
        new_isr,
    })
}

/// Apply every command, asserting success, and return the results.
fn apply_all(state: &mut ClusterState, cmds: &[Command]) -> Vec<CommandResult> {
    cmds.iter().map(|c| state.apply(c).unwrap()).collect()
}

/// The invariants of the module doc, over every partition.
fn check_invariants(state: &ClusterState) {
    for (_, r, p) in state.partitions() {
        assert!(!p.isr.is_empty(), "{r:?}: empty ISR");
        assert!(p.isr.iter().all(|i| p.replicas.contains(i)), "{r:?}");
        assert!(
            p.leader == NO_LEADER || p.isr.contains(&p.leader),
            "{r:?}: leader {} not in ISR {:?}",
            p.leader,
            p.isr
        );
    }
}

#[test]
fn registration_starts_fenced_and_is_idempotent_per_incarnation() {
    let mut s = ClusterState::new();
    let e1 = register(&mut s, 1);
    assert!(s.brokers[&1].fenced);
    assert_eq!(register(&mut s, 1), e1, "same incarnation keeps its epoch");
    unfence(&mut s, 1);
    assert!(!s.brokers[&1].fenced);

    // A restart (new incarnation) gets a new epoch and starts fenced again.
    let r = s
        .apply(&Command::RegisterBroker {
            broker_id: 1,
            host: "h".into(),
            port: 1,
            replica_endpoint: None,
            rack: Some("r".into()),
            incarnation_id: Uuid::from_u128(77),
            rules_version: crate::controller::state::RULES_VERSION,
        })
        .unwrap();
    assert_eq!(
        r,
        CommandResult::BrokerRegistered {
            broker_epoch: e1 + 1
        }
    );
    assert!(s.brokers[&1].fenced);

    // The old incarnation's epoch no longer unfences.
    assert_eq!(
        s.apply(&Command::UnfenceBroker {
            broker_id: 1,
            broker_epoch: e1
        }),
        Err(CommandError::StaleBrokerEpoch {
            broker_id: 1,
            given: e1,
            current: e1 + 1
        })
    );
    assert_eq!(
        s.apply(&Command::FenceBroker {
            broker_id: 9,
            broker_epoch: 0
        }),
        Err(CommandError::UnknownBroker(9))
    );
}

#[test]
fn fencing_twice_reports_no_change() {
    let mut s = three_brokers();
    let e = epoch(&s, 2);
    let cmd = Command::FenceBroker {
        broker_id: 2,
        broker_epoch: e,
    };
    assert_eq!(
        s.apply(&cmd).unwrap(),
        CommandResult::BrokerFencing {
            fenced: true,
            changed: true
        }
    );
    assert_eq!(
        s.apply(&cmd).unwrap(),
        CommandResult::BrokerFencing {
            fenced: true,
            changed: false
        }
    );
}

#[test]
fn create_topic_sets_isr_and_leader() {
    let mut s = three_brokers();
    fence(&mut s, 2);
    create(&mut s, vec![vec![1, 2, 3], vec![2, 3, 1]]);
    assert_eq!(
        part(&s, 0),
        PartitionState {
            replicas: vec![1, 2, 3],
            isr: vec![1, 3],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0
        }
    );
    // The preferred leader is fenced: the first unfenced replica leads.
    assert_eq!(part(&s, 1).leader, 3);
    assert_eq!(s.topic_by_id(&TOPIC).unwrap().name, "t");
    check_invariants(&s);
}

#[test]
fn create_topic_refusals_leave_state_unchanged() {
    let mut s = three_brokers();
    create(&mut s, vec![vec![1, 2]]);
    let before = s.clone();
    let cases: Vec<(Command, CommandError)> = vec![
        (
            Command::CreateTopic {
                name: "t".into(),
                topic_id: Uuid::from_u128(5),
                assignments: vec![vec![1]],
                configs: BTreeMap::new(),
            },
            CommandError::TopicAlreadyExists("t".into()),
        ),
        (
            Command::CreateTopic {
                name: "u".into(),
                topic_id: TOPIC,
                assignments: vec![vec![1]],
                configs: BTreeMap::new(),
            },
            CommandError::TopicIdInUse(TOPIC),
        ),
    ];
    for (cmd, err) in cases {
        assert_eq!(s.apply(&cmd), Err(err));
    }
    let invalid = [
        vec![],
        vec![vec![]],
        vec![vec![1, 1]],
        vec![vec![1, 9]],
        vec![vec![1, 2], vec![1]],
    ];
    for assignments in invalid {
        let r = s.apply(&Command::CreateTopic {
            name: "u".into(),
            topic_id: Uuid::from_u128(6),
            assignments: assignments.clone(),
            configs: BTreeMap::new(),
        });
        assert!(
            matches!(
                r,
                Err(CommandError::InvalidReplicaAssignment(_) | CommandError::InvalidPartitions(_))
            ),
            "{assignments:?}: {r:?}"
        );
    }
    assert_eq!(s, before);
    // Every broker fenced: no replica could lead.
    for id in 1..=3 {
        fence(&mut s, id);
    }
    let fenced = s.clone();
    let fenced_only = s.apply(&Command::CreateTopic {
        name: "u".into(),
        topic_id: Uuid::from_u128(6),
        assignments: vec![vec![1]],
        configs: BTreeMap::new(),
    });
    assert!(matches!(
        fenced_only,
        Err(CommandError::InvalidReplicaAssignment(_))
    ));
    assert_eq!(s, fenced);
}

#[test]
fn delete_and_recreate_topic() {
    let mut s = three_brokers();
    create(&mut s, vec![vec![1]]);
    assert_eq!(
        s.apply(&Command::DeleteTopic { topic_id: TOPIC }).unwrap(),
        CommandResult::TopicDeleted { name: "t".into() }
    );
    assert!(s.topics.is_empty() && s.topic_names.is_empty());
    assert_eq!(
        s.apply(&Command::DeleteTopic { topic_id: TOPIC }),
        Err(CommandError::UnknownTopicId(TOPIC))
    );
    create(&mut s, vec![vec![2]]);
    assert_eq!(part(&s, 0).leader, 2);
}

#[test]
fn create_partitions() {
    let mut s = three_brokers();
    create(&mut s, vec![vec![1, 2]]);
    let grow = |total_count, assignments| Command::CreatePartitions {
        topic_id: TOPIC,
        total_count,
        assignments,
    };
    assert!(matches!(
        s.apply(&grow(1, vec![])),
        Err(CommandError::InvalidPartitions(_))
    ));
    assert!(matches!(
        s.apply(&grow(3, vec![vec![2, 3]])),
        Err(CommandError::InvalidReplicaAssignment(_))
    ));
    assert!(matches!(
        s.apply(&grow(2, vec![vec![3]])),
        Err(CommandError::InvalidReplicaAssignment(_))
    ));
    assert_eq!(
        s.apply(&grow(3, vec![vec![2, 3], vec![3, 1]])).unwrap(),
        CommandResult::PartitionsCreated { total_count: 3 }
    );
    assert_eq!(part(&s, 2).leader, 3);
    check_invariants(&s);
}

#[test]
fn alter_partition_shrinks_and_expands_isr() {
    let mut s = three_brokers();
    create(&mut s, vec![vec![1, 2, 3]]);
    let r = alter(&mut s, 0, 1, vec![1, 3]).unwrap();
    assert_eq!(
        r,
        CommandResult::PartitionAltered(PartitionChange {
            partition: p(0),
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 1,
            isr: vec![1, 3]
        })
    );
    // Expand, given out of order: stored in replica order.
    alter(&mut s, 0, 1, vec![3, 2, 1]).unwrap();
    assert_eq!(part(&s, 0).isr, vec![1, 2, 3]);
    assert_eq!(part(&s, 0).partition_epoch, 2);
    // Proposing the current ISR changes nothing.
    alter(&mut s, 0, 1, vec![1, 2, 3]).unwrap();
    assert_eq!(part(&s, 0).partition_epoch, 2);
    assert_eq!(
        part(&s, 0).leader_epoch,
        0,
        "ISR changes keep the leader epoch"
    );
}

#[test]
fn alter_partition_refuses_stale_or_invalid_requests() {
    let mut s = three_brokers();
    create(&mut s, vec![vec![1, 2, 3]]);
    alter(&mut s, 0, 1, vec![1, 2]).unwrap();
    let cur = part(&s, 0);
    let base = |leader: i32, s: &ClusterState| Command::AlterPartition {
        partition: p(0),
        broker_id: leader,
        broker_epoch: epoch(s, leader),
        leader_epoch: cur.leader_epoch,
        partition_epoch: cur.partition_epoch,
        new_isr: vec![1, 2, 3],
    };
    let before = s.clone();
    let with = |f: &dyn Fn(&mut Command)| {
        let mut c = base(1, &s);
        f(&mut c);
        c
    };
    let set_le = |v| {
        move |c: &mut Command| {
            if let Command::AlterPartition { leader_epoch, .. } = c {
                *leader_epoch = v
            }
        }
    };
    let set_pe = |v| {
        move |c: &mut Command| {
            if let Command::AlterPartition {
                partition_epoch, ..
            } = c
            {
                *partition_epoch = v
            }
        }
    };
    let set_isr = |v: Vec<i32>| {
        move |c: &mut Command| {
            if let Command::AlterPartition { new_isr, .. } = c {
                *new_isr = v.clone()
            }
        }
    };
    let set_be = |v| {
        move |c: &mut Command| {
            if let Command::AlterPartition { broker_epoch, .. } = c {
                *broker_epoch = v
            }
        }
    };
    let cases: Vec<(Command, CommandError)> = vec![
        (
            with(&set_le(cur.leader_epoch - 1)),
            CommandError::FencedLeaderEpoch {
                given: -1,
                current: 0,
            },
        ),
        (
            with(&set_pe(0)),
            CommandError::InvalidUpdateVersion {
                given: 0,
                current: 1,
            },
        ),
        (
            with(&set_isr(vec![])),
            CommandError::InvalidIsr("the ISR must not be empty".into()),
        ),
        (
            with(&set_isr(vec![2, 3])),
            CommandError::InvalidIsr("the ISR must contain the leader".into()),
        ),
        (
            with(&set_isr(vec![1, 1])),
            CommandError::InvalidIsr("a replica is listed twice".into()),
        ),
        (
            with(&set_isr(vec![1, 4])),
            CommandError::InvalidIsr("broker 4 is not a replica".into()),
        ),
        (
            with(&set_be(99)),
            CommandError::StaleBrokerEpoch {
                broker_id: 1,
                given: 99,
                current: epoch(&s, 1),
            },
        ),
        (
            base(2, &s),
            CommandError::NotLeader {
                broker_id: 2,
                leader: 1,
            },
        ),
    ];
    for (cmd, err) in cases {
        assert_eq!(s.apply(&cmd), Err(err), "{cmd:?}");
    }
    assert_eq!(s, before);
    // A fenced broker cannot join the ISR.
    fence(&mut s, 3);
    assert_eq!(
        alter(&mut s, 0, 1, vec![1, 2, 3]),
        Err(CommandError::IneligibleReplica(3))
    );
    // Nor stay in it: fencing took it out, and a leader naming it again is refused.
    fence(&mut s, 2);
    assert_eq!(part(&s, 0).isr, vec![1]);
    assert_eq!(
        alter(&mut s, 0, 1, vec![1, 2]),
        Err(CommandError::IneligibleReplica(2))
    );
}

#[test]
fn fencing_the_leader_moves_leadership_and_shrinks_isr() {
    let mut s = three_brokers();
    create(&mut s, vec![vec![1, 2, 3], vec![2, 1, 3], vec![3, 2, 1]]);
    // The control loop's decision as it stood before the fence was applied.
    let cmds = vec![Command::ShrinkIsr {
        broker_id: 1,
        partitions: vec![p(0), p(1), p(2)],
    }];
    // The fence moves them in the same command (Kafka's `handleBrokerFenced`).
    fence(&mut s, 1);
    assert!(on_broker_fenced(&s, 1).is_empty());
    assert_eq!(
        part(&s, 0),
        PartitionState {
            replicas: vec![1, 2, 3],
            isr: vec![2, 3],
            leader: 2,
            leader_epoch: 1,
            partition_epoch: 1
        }
    );
    assert_eq!(part(&s, 1).leader, 2);
    assert_eq!(part(&s, 1).leader_epoch, 0, "not led by 1: epoch unchanged");
    assert_eq!(part(&s, 1).isr, vec![2, 3]);
    assert_eq!(part(&s, 1).partition_epoch, 1);
    check_invariants(&s);
    // A control-loop ShrinkIsr decided before the fence is harmless after it.
    apply_all(&mut s, &cmds);
    assert_eq!(part(&s, 0).partition_epoch, 1);
}

#[test]
fn shrink_isr_is_refused_once_the_broker_is_back() {
    let mut s = three_brokers();
    create(&mut s, vec![vec![1, 2]]);
    let cmd = Command::ShrinkIsr {
        broker_id: 1,
        partitions: vec![p(0)],
    };
    fence(&mut s, 1);
    unfence(&mut s, 1);
    assert_eq!(s.apply(&cmd), Err(CommandError::BrokerNotFenced(1)));
}

/// A broker restarted before its session ran out (so never fenced) registers a new
/// incarnation: its leaderships and ISR places move in that same command, so it cannot lead
/// again at its old epoch with a log that may have lost its unflushed tail.
#[test]
fn a_restarted_broker_gives_up_its_leaderships_when_it_registers() {
    let mut s = three_brokers();
    create(&mut s, vec![vec![1, 2, 3], vec![2, 1, 3]]);
    let r = s.apply(&registration(1, 4242, RULES_VERSION)).unwrap();
    assert!(matches!(r, CommandResult::BrokerRegistered { .. }));
    assert!(s.brokers[&1].fenced);
    let led = part(&s, 0);
    assert_eq!((led.leader, led.leader_epoch), (2, 1));
    assert_eq!(led.isr, vec![2, 3]);
    assert_eq!(part(&s, 1).isr, vec![2, 3]);
    assert_eq!(part(&s, 1).leader_epoch, 0, "not led by 1");
    check_invariants(&s);
    // Once caught up it is unfenced and rejoins as a follower: the preferred election (not
    // this registration) may later give it back its leadership, at a new epoch.
    unfence(&mut s, 1);
    assert_eq!(part(&s, 0).leader, 2);
}

#[test]
fn last_isr_member_fenced_leaves_partition_offline_until_it_returns() {
    let mut s = three_brokers();
    create(&mut s, vec![vec![1, 2]]);
    alter(&mut s, 0, 1, vec![1]).unwrap();
    fence(&mut s, 1);
    let cmds = on_broker_fenced(&s, 1);
    apply_all(&mut s, &cmds);
    let offline = part(&s, 0);
    assert_eq!(offline.leader, NO_LEADER);
    assert_eq!(offline.isr, vec![1], "the last ISR member is kept");
    assert_eq!(offline.leader_epoch, 1);
    check_invariants(&s);
    // Broker 2 is out of sync and unclean election is off: nothing to elect.
    assert!(offline_leader_elections(&s).is_empty());
    let r = s
        .apply(&Command::ElectLeaders {
            election: ElectionType::Offline,
            partitions: vec![p(0)],
        })
        .unwrap();
    let CommandResult::LeadersElected(outcomes) = r else {
        panic!()
    };
    assert_eq!(
        outcomes[0].result,
        Err(CommandError::EligibleLeadersNotAvailable)
    );
    // Broker 1 comes back (same incarnation): it leads again with a new epoch.
    unfence(&mut s, 1);
    let cmds = offline_leader_elections(&s);
    assert_eq!(
        cmds,
        vec![Command::ElectLeaders {
            election: ElectionType::Offline,
            partitions: vec![p(0)]
        }]
    );
    apply_all(&mut s, &cmds);
    assert_eq!(part(&s, 0).leader, 1);
    assert_eq!(part(&s, 0).leader_epoch, 2);
    check_invariants(&s);
}

#[test]
fn unclean_election_only_when_the_topic_allows_it() {
    let mut s = three_brokers();
    let configs = BTreeMap::from([(UNCLEAN_LEADER_ELECTION_ENABLE.to_owned(), "true".to_owned())]);
    create_with(&mut s, vec![vec![1, 2, 3]], configs);
    alter(&mut s, 0, 1, vec![1]).unwrap();
    fence(&mut s, 1);
    let cmds = on_broker_fenced(&s, 1);
    apply_all(&mut s, &cmds);
    let after = part(&s, 0);
    assert_eq!(after.leader, 2, "unclean: first unfenced replica");
    assert_eq!(after.isr, vec![2]);
    assert_eq!(after.leader_epoch, 1);
    check_invariants(&s);

    // Turn it off again: the next leader loss leaves the partition offline.
    s.apply(&Command::AlterConfigs {
        topic_id: TOPIC,
        ops: vec![ConfigOp::Delete {
            key: UNCLEAN_LEADER_ELECTION_ENABLE.into(),
        }],
    })
    .unwrap();
    fence(&mut s, 2);
    let cmds = on_broker_fenced(&s, 2);
    apply_all(&mut s, &cmds);
    assert_eq!(part(&s, 0).leader, NO_LEADER);
    assert!(offline_leader_elections(&s).is_empty());
}

#[test]
fn preferred_leader_is_restored() {
    let mut s = three_brokers();
    create(&mut s, vec![vec![1, 2, 3], vec![2, 3, 1]]);
    fence(&mut s, 1);
    let cmds = on_broker_fenced(&s, 1);
    apply_all(&mut s, &cmds);
    assert!(preferred_leader_elections(&s).is_empty(), "1 is fenced");
    unfence(&mut s, 1);
    assert!(
        preferred_leader_elections(&s).is_empty(),
        "1 is not in sync"
    );
    // The leader (2) adds 1 back to the ISR once it caught up.
    alter(&mut s, 0, 2, vec![1, 2, 3]).unwrap();
    let cmds = preferred_leader_elections(&s);
    assert_eq!(
        cmds,
        vec![Command::ElectLeaders {
            election: ElectionType::Preferred,
            partitions: vec![p(0)]
        }]
    );
    let results = apply_all(&mut s, &cmds);
    let CommandResult::LeadersElected(outcomes) = &results[0] else {
        panic!()
    };
    let change = outcomes[0].result.clone().unwrap();
    assert_eq!((change.leader, change.leader_epoch), (1, 2));
    assert!(preferred_leader_elections(&s).is_empty());
    // Electing again is "not needed", and changes nothing.
    let before = s.clone();
    let again = s.apply(&cmds[0]).unwrap();
    let CommandResult::LeadersElected(outcomes) = again else {
        panic!()
    };
    assert_eq!(outcomes[0].result, Err(CommandError::ElectionNotNeeded));
    assert_eq!(s, before);
}

#[test]
fn elections_on_unknown_partitions_report_per_partition() {
    let mut s = three_brokers();
    create(&mut s, vec![vec![1]]);
    let r = s
        .apply(&Command::ElectLeaders {
            election: ElectionType::Preferred,
            partitions: vec![p(5)],
        })
        .unwrap();
    let CommandResult::LeadersElected(outcomes) = r else {
        panic!()
    };
    assert_eq!(
        outcomes[0].result,
        Err(CommandError::UnknownPartition {
            topic_id: TOPIC,
            partition: 5
        })
    );
}

#[test]
fn alter_configs_sets_and_deletes() {
    let mut s = three_brokers();
    create(&mut s, vec![vec![1]]);
    s.apply(&Command::AlterConfigs {
        topic_id: TOPIC,
        ops: vec![
            ConfigOp::Set {
                key: "retention.ms".into(),
                value: "10".into(),
            },
            ConfigOp::Set {
                key: "cleanup.policy".into(),
                value: "delete".into(),
            },
            ConfigOp::Delete {
                key: "cleanup.policy".into(),
            },
        ],
    })
    .unwrap();
    assert_eq!(
        s.topics["t"].configs,
        BTreeMap::from([("retention.ms".to_owned(), "10".to_owned())])
    );
    assert_eq!(
        s.apply(&Command::AlterConfigs {
            topic_id: Uuid::from_u128(1),
            ops: vec![]
        }),
        Err(CommandError::UnknownTopicId(Uuid::from_u128(1)))
    );
}

#[test]
fn heartbeat_expiry_fences_only_stale_unfenced_brokers() {
    let mut s = three_brokers();
    fence(&mut s, 3);
    let seen = HashMap::from([(1, 1_000), (2, 9_500), (3, 0)]);
    assert_eq!(
        expired_brokers(&s, &seen, 10_000, 5_000),
        vec![Command::FenceBroker {
            broker_id: 1,
            broker_epoch: epoch(&s, 1)
        }]
    );
    assert!(expired_brokers(&s, &HashMap::new(), 10_000, 5_000).is_empty());
}

#[test]
fn state_round_trips_through_json() {
    let mut s = three_brokers();
    create(&mut s, vec![vec![1, 2], vec![2, 3]]);
    s.metadata_offset = 42;
    let json = serde_json::to_vec(&s).unwrap();
    let back: ClusterState = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, s);
}

/// A deterministic pseudo-random walk over commands: two replicas applying the same sequence
/// end equal, and the invariants hold after every step.
#[test]
fn random_walk_keeps_invariants_and_determinism() {
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut a = ClusterState::new();
    let mut log = Vec::new();
    for id in 1..=4 {
        log.push(Command::RegisterBroker {
            broker_id: id,
            host: "h".into(),
            port: 1,
            replica_endpoint: None,
            rack: None,
            incarnation_id: Uuid::from_u128(id as u128),
            rules_version: crate::controller::state::RULES_VERSION,
        });
    }
    for cmd in &log {
        a.apply(cmd).unwrap();
    }
    let mut topics: Vec<Uuid> = Vec::new();
    for step in 0..3_000u64 {
        let broker = next(4) as i32 + 1;
        let cmd = match next(8) {
            0 => Command::UnfenceBroker {
                broker_id: broker,
                broker_epoch: a.brokers[&broker].broker_epoch,
            },
            1 => Command::FenceBroker {
                broker_id: broker,
                broker_epoch: a.brokers[&broker].broker_epoch,
            },
            2 => {
                let placement = a.placement_brokers();
                let Ok(assignments) = assign_replicas(
                    &placement,
                    3,
                    placement.len().min(3) as i16,
                    step as usize,
                    0,
                ) else {
                    continue;
                };
                let topic_id = Uuid::from_u128(u128::from(step) + 1000);
                topics.push(topic_id);
                Command::CreateTopic {
                    name: format!("t{step}"),
                    topic_id,
                    assignments,
                    configs: BTreeMap::from([(
                        UNCLEAN_LEADER_ELECTION_ENABLE.to_owned(),
                        (step % 2 == 0).to_string(),
                    )]),
                }
            }
            3 if !topics.is_empty() && next(5) == 0 => {
                let topic_id = topics.remove(next(topics.len() as u64) as usize);
                Command::DeleteTopic { topic_id }
            }
            4 | 5 if !topics.is_empty() => {
                let topic_id = topics[next(topics.len() as u64) as usize];
                let partition = PartitionRef {
                    topic_id,
                    partition: next(3) as i32,
                };
                let cur = a.partition(&partition).unwrap().clone();
                if cur.leader == NO_LEADER {
                    continue;
                }
                let mut new_isr: Vec<i32> = cur
                    .replicas
                    .iter()
                    .copied()
                    .filter(|_| next(2) == 0)
                    .collect();
                new_isr.push(cur.leader);
                new_isr.sort_unstable();
                new_isr.dedup();
                Command::AlterPartition {
                    partition,
                    broker_id: cur.leader,
                    broker_epoch: a.brokers[&cur.leader].broker_epoch,
                    leader_epoch: cur.leader_epoch,
                    partition_epoch: cur.partition_epoch,
                    new_isr,
                }
            }
            6 => {
                let mut cmds = on_broker_fenced(&a, broker);
                cmds.extend(offline_leader_elections(&a));
                cmds.extend(preferred_leader_elections(&a));
                let Some(cmd) = cmds.into_iter().next() else {
                    continue;
                };
                cmd
            }
            _ => {
                let fenced: Vec<i32> = a
                    .brokers
                    .values()
                    .filter(|b| b.fenced)
                    .map(|b| b.broker_id)
                    .collect();
                let Some(&b) = fenced.first() else { continue };
                let Some(cmd) = on_broker_fenced(&a, b).into_iter().next() else {
                    continue;
                };
                cmd
            }
        };
        let before_epochs: Vec<(i32, i32)> = a
            .partitions()
            .map(|(_, _, p)| (p.leader_epoch, p.partition_epoch))
            .collect();
        let _ = a.apply(&cmd);
        log.push(cmd);
        check_invariants(&a);
        // Epochs never go backwards for surviving partitions (same iteration order when no
        // topic was created or deleted).
        let after: Vec<(i32, i32)> = a
            .partitions()
            .map(|(_, _, p)| (p.leader_epoch, p.partition_epoch))
            .collect();
        if after.len() == before_epochs.len() {
            for (b, c) in before_epochs.iter().zip(&after) {
                assert!(c.0 >= b.0 && c.1 >= b.1);
            }
        }
    }
    let mut b = ClusterState::new();
    for cmd in &log {
        let _ = b.apply(cmd);
    }
    assert_eq!(a, b);
}

#[test]
fn replica_endpoint_is_registered_and_defaults_to_the_client_endpoint() {
    use super::state::Endpoint;
    let mut s = ClusterState::new();
    let inter = Endpoint {
        host: "sluice-1".into(),
        port: 9093,
    };
    let cmd = |replica_endpoint: Option<Endpoint>| Command::RegisterBroker {
        broker_id: 1,
        host: "localhost".into(),
        port: 19092,
        replica_endpoint,
        rack: None,
        incarnation_id: Uuid::from_u128(5),
        rules_version: crate::controller::state::RULES_VERSION,
    };
    s.apply(&cmd(Some(inter.clone()))).unwrap();
    let b = &s.brokers[&1];
    assert_eq!((b.host.as_str(), b.port), ("localhost", 19092));
    assert_eq!(b.replica_endpoint(), inter);
    assert_eq!(b.replica_endpoint().to_string(), "sluice-1:9093");

    // A retried registration of the same incarnation refreshes it.
    s.apply(&cmd(None)).unwrap();
    let b = &s.brokers[&1];
    assert_eq!(b.replica_endpoint, None);
    assert_eq!(b.replica_endpoint().to_string(), "localhost:19092");
}

#[test]
fn registrations_logged_before_replica_endpoints_still_load() {
    // A command and a registration as serialized before the field existed.
    let old_command = r#"{"RegisterBroker":{"broker_id":2,"host":"h","port":9,"rack":null,
        "incarnation_id":"00000000-0000-0000-0000-000000000002"}}"#;
    let cmd: Command = serde_json::from_str(old_command).unwrap();
    let Command::RegisterBroker {
        replica_endpoint, ..
    } = &cmd
    else {
        panic!("{cmd:?}")
    };
    assert_eq!(*replica_endpoint, None);
    let old_rpc = r#"{"RegisterBroker":{"broker_id":2,"host":"h","port":9,"rack":null,
        "incarnation_id":"00000000-0000-0000-0000-000000000002"}}"#;
    let rpc: super::transport::ControllerRpc = serde_json::from_str(old_rpc).unwrap();
    assert!(matches!(
        rpc,
        super::transport::ControllerRpc::RegisterBroker {
            replica_endpoint: None,
            ..
        }
    ));

    let mut s = ClusterState::new();
    s.apply(&cmd).unwrap();
    let mut json: serde_json::Value = serde_json::to_value(&s).unwrap();
    let broker = json["brokers"]["2"].as_object_mut().unwrap();
    assert!(broker.remove("replica_endpoint").is_some());
    let back: ClusterState = serde_json::from_value(json).unwrap();
    assert_eq!(back, s);
    assert_eq!(back.brokers[&2].replica_endpoint().to_string(), "h:9");
}

/// A log written under rules 0 replays under rules 0 (a fence only marks the broker; a later
/// ShrinkIsr moves its leaderships), and the rules move to this code's only by a
/// `SetRulesVersion`, once every registered broker applies them.
#[test]
fn controller_rules_change_only_by_the_log_and_once_every_broker_applies_them() {
    let mut s = ClusterState::new();
    for id in 1..=3 {
        let old = if id == 3 { 0 } else { RULES_VERSION };
        s.apply(&registration(id, id as u128 * 1000 + 1, old))
            .unwrap();
        unfence(&mut s, id);
    }
    create(&mut s, vec![vec![1, 2, 3]]);
    // Broker 3 runs older code: no upgrade, and one proposed anyway is refused.
    assert_eq!(rules_upgrade(&s), None);
    let upgrade = Command::SetRulesVersion {
        version: RULES_VERSION,
    };
    assert!(matches!(
        s.apply(&upgrade),
        Err(CommandError::UnsupportedRulesVersion { .. })
    ));
    assert!(matches!(
        s.apply(&Command::SetRulesVersion {
            version: RULES_VERSION + 1
        }),
        Err(CommandError::UnsupportedRulesVersion { .. })
    ));
    // Rules 0: the fence alone moves nothing; the control loop's ShrinkIsr does.
    fence(&mut s, 1);
    assert_eq!(part(&s, 0).leader, 1);
    let shrink = on_broker_fenced(&s, 1);
    apply_all(&mut s, &shrink);
    assert_eq!(part(&s, 0).leader, 2);
    unfence(&mut s, 1);
    // Broker 3 restarts on new code: the controller upgrades the rules.
    s.apply(&registration(3, 3_999, RULES_VERSION)).unwrap();
    assert_eq!(rules_upgrade(&s), Some(upgrade.clone()));
    assert_eq!(
        s.apply(&upgrade).unwrap(),
        CommandResult::RulesVersion(RULES_VERSION)
    );
    assert_eq!(rules_upgrade(&s), None);
    // Rules 1: the fence moves the leadership itself (to 3, the other ISR member).
    unfence(&mut s, 3);
    fence(&mut s, 2);
    assert_eq!(part(&s, 0).leader, 3);
    assert_eq!(part(&s, 0).isr, vec![3]);
    check_invariants(&s);
}
