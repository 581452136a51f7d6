//! In-process controller quorums on 127.0.0.1: election, replication of commands in one order,
//! failover, restart and catch-up (also through a snapshot), broker RPCs and the control loop.
//! Every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use uuid::Uuid;

use super::client::ControllerClient;
use super::placement::assign_replicas;
use super::records::{Command, CommandError, CommandResult, PartitionRef};
use super::state::ClusterState;
use super::transport::{ControllerReply, ControllerRpc};
use super::{Controller, ControllerConfig, ProposeError};

const WAIT: Duration = Duration::from_secs(15);

/// Poll `f` every 20 ms until it returns `Some`, or fail after `WAIT`.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config(id: i32, voters: &[(i32, SocketAddr)], dir: &Path) -> ControllerConfig {
    let mut c = ControllerConfig::new(id, voters.to_vec(), dir.join(format!("node-{id}")));
    c.snapshot_every_entries = 20;
    // Test brokers do not heartbeat: keep the control loop from changing the state under the
    // comparisons (the control loop has its own test).
    c.broker_session_timeout_ms = 3_600_000;
    c.auto_leader_rebalance = false;
    c
}

async fn start(id: i32, voters: &[(i32, SocketAddr)], dir: &Path) -> Controller {
    let addr = voters.iter().find(|(v, _)| *v == id).unwrap().1;
    // The port was free a moment ago (or belonged to a stopped node): rebinding may race with
    // the old socket's teardown, so retry briefly.
    let listener = eventually("bind", || async { TcpListener::bind(addr).await.ok() }).await;
    Controller::start_on(config(id, voters, dir), listener)
        .await
        .unwrap()
}

/// Three voters on free ports.
async fn cluster(dir: &Path) -> (Vec<(i32, SocketAddr)>, Vec<Controller>) {
    let mut listeners = Vec::new();
    for id in 1..=3 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listeners.push((id, l));
    }
    let voters: Vec<(i32, SocketAddr)> = listeners
        .iter()
        .map(|(id, l)| (*id, l.local_addr().unwrap()))
        .collect();
    let mut nodes = Vec::new();
    for (id, listener) in listeners {
        nodes.push(
            Controller::start_on(config(id, &voters, dir), listener)
                .await
                .unwrap(),
        );
    }
    (voters, nodes)
}

/// The leader all `nodes` agree on (and that considers itself leader).
async fn agreed_leader(nodes: &[&Controller]) -> i32 {
    eventually("an agreed leader", || async {
        let first = nodes.first()?.leader()?;
        let all_agree = nodes.iter().all(|n| n.leader() == Some(first));
        let leader_knows = nodes
            .iter()
            .find(|n| n.node_id() == first)
            .is_some_and(|n| n.is_leader());
        (all_agree && leader_knows).then_some(first)
    })
    .await
}

/// Wait until every node's applied state equals `expected` (ignoring `metadata_offset`, which
/// blank entries of new terms move).
async fn converge(nodes: &[&Controller], expected: &ClusterState) {
    let strip = |s: &ClusterState| ClusterState {
        metadata_offset: 0,
        ..s.clone()
    };
    let expected = strip(expected);
    eventually("states to converge", || async {
        nodes
            .iter()
            .all(|n| strip(&n.state().borrow()) == expected)
            .then_some(())
    })
    .await;
}

fn register(id: i32) -> Command {
    Command::RegisterBroker {
        broker_id: id,
        host: "127.0.0.1".into(),
        port: 9090 + id as u16,
        replica_endpoint: None,
        rack: None,
        incarnation_id: Uuid::from_u128(id as u128),
        // Rules 0: the control loop then proposes no SetRulesVersion under the comparisons.
        rules_version: 0,
    }
}

fn create_topic(state: &ClusterState, name: &str, n: u128) -> Command {
    let brokers = state.placement_brokers();
    let rf = brokers.len().min(3) as i16;
    Command::CreateTopic {
        name: name.into(),
        topic_id: Uuid::from_u128(0x1000 + n),
        assignments: assign_replicas(&brokers, 3, rf, n as usize, 0).unwrap(),
        configs: BTreeMap::new(),
    }
}

/// Node 7 as a quorum of its own, on `dir`.
async fn start_alone(dir: &Path) -> Controller {
    Controller::start(7, vec![], "127.0.0.1:0".parse().unwrap(), dir.to_owned())
        .await
        .unwrap()
}

/// Register and unfence brokers 1..=3 through `node`.
async fn brokers_up(node: &Controller) {
    for id in 1..=3 {
        let r = node.propose(register(id)).await.unwrap();
        let CommandResult::BrokerRegistered { broker_epoch } = r else {
            panic!("{r:?}")
        };
        node.propose(Command::UnfenceBroker {
            broker_id: id,
            broker_epoch,
        })
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_is_its_own_quorum_and_recovers_from_its_dir() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_alone(dir.path()).await;
    assert_eq!(agreed_leader(&[&node]).await, 7);
    for i in 0..30 {
        node.propose(register(100 + i)).await.unwrap();
    }
    let before = node.state().borrow().clone();
    assert_eq!(before.brokers.len(), 30);
    node.shutdown().await.unwrap();

    // Restart from the same directory: with the default snapshot policy (1000 entries) the
    // state comes back from the log alone, re-applied once the node is leader again.
    let node = start_alone(dir.path()).await;
    agreed_leader(&[&node]).await;
    converge(&[&node], &before).await;
    node.shutdown().await.unwrap();
}

/// More than 10,000 partitions in one proposal are refused before they reach the log, whoever
/// proposes them (the brokers' handlers refuse such requests first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_of_too_many_partitions_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_alone(dir.path()).await;
    agreed_leader(&[&node]).await;
    brokers_up(&node).await;
    let topic_id = Uuid::from_u128(0xb16);
    let topic = |partitions: usize| Command::CreateTopic {
        name: "big".into(),
        topic_id,
        assignments: vec![vec![1]; partitions],
        configs: BTreeMap::new(),
    };
    let last = node.raft_metrics().borrow().last_log_index;
    match node.propose(topic(10_001)).await {
        Err(ProposeError::Refused(CommandError::InvalidPartitions(m))) => {
            assert_eq!(m, "Excessively large number of partitions per request.");
        }
        other => panic!("{other:?}"),
    }
    let grow = Command::CreatePartitions {
        topic_id,
        total_count: 1 << 20,
        assignments: vec![vec![1]; (1 << 20) - 1],
    };
    assert!(matches!(
        node.propose(grow).await,
        Err(ProposeError::Refused(CommandError::InvalidPartitions(_)))
    ));
    assert_eq!(
        node.raft_metrics().borrow().last_log_index,
        last,
        "a refused proposal reached the log"
    );
    assert!(node.state().borrow().topics.is_empty());
    // At the bound it is a topic like any other.
    node.propose(topic(10_000)).await.unwrap();
    assert_eq!(node.state().borrow().topics["big"].partitions.len(), 10_000);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_replicate_fail_over_and_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let (voters, mut nodes) = cluster(dir.path()).await;
    let leader_id = agreed_leader(&nodes.iter().collect::<Vec<_>>()).await;
    let li = nodes.iter().position(|n| n.node_id() == leader_id).unwrap();

    // A follower refuses and names the leader.
    let follower = nodes.iter().find(|n| n.node_id() != leader_id).unwrap();
    match follower.propose(register(9)).await {
        Err(ProposeError::NotController {
            leader: Some((id, addr)),
        }) => {
            assert_eq!(id, leader_id);
            assert_eq!(addr, voters[li].1.to_string());
        }
        other => panic!("{other:?}"),
    }

    // Commands applied on the leader reach every node, in the same order: the states are
    // equal, including results that depend on order (broker epochs, topic creation).
    brokers_up(&nodes[li]).await;
    for n in 0..5u128 {
        let cmd = create_topic(&nodes[li].state().borrow(), &format!("t{n}"), n);
        nodes[li].propose(cmd).await.unwrap();
    }
    let dup = create_topic(&nodes[li].state().borrow(), "t0", 99);
    assert!(matches!(
        nodes[li].propose(dup).await,
        Err(ProposeError::Refused(_))
    ));
    let expected = nodes[li].state().borrow().clone();
    converge(&nodes.iter().collect::<Vec<_>>(), &expected).await;

    // Stop the leader: the other two elect a new one and keep accepting commands.
    let old = nodes.remove(li);
    let old_last_index = old.raft_metrics().borrow().last_log_index.unwrap_or(0);
    old.shutdown().await.unwrap();
    let rest: Vec<&Controller> = nodes.iter().collect();
    let new_leader = agreed_leader(&rest).await;
    assert_ne!(new_leader, leader_id);
    let ni = nodes
        .iter()
        .position(|n| n.node_id() == new_leader)
        .unwrap();
    // Enough commands that the new leader snapshots and purges past what the stopped node has,
    // so it catches up through InstallSnapshot.
    for n in 5..50u128 {
        let cmd = create_topic(&nodes[ni].state().borrow(), &format!("t{n}"), n);
        nodes[ni].propose(cmd).await.unwrap();
    }
    let expected = nodes[ni].state().borrow().clone();
    assert_eq!(expected.topics.len(), 50);
    eventually(
        "the new leader to purge past the stopped node's log",
        || async {
            let purged = nodes[ni].raft_metrics().borrow().purged;
            purged
                .is_some_and(|p| p.index > old_last_index)
                .then_some(())
        },
    )
    .await;

    // Restart the old leader from its directory: it rejoins and catches up.
    nodes.push(start(leader_id, &voters, dir.path()).await);
    converge(&nodes.iter().collect::<Vec<_>>(), &expected).await;
    let all: Vec<&Controller> = nodes.iter().collect();
    agreed_leader(&all).await;

    // And the cluster still takes commands after the rejoin.
    let leader = agreed_leader(&all).await;
    let l = nodes.iter().find(|n| n.node_id() == leader).unwrap();
    let cmd = create_topic(&l.state().borrow(), "after-rejoin", 1000);
    l.propose(cmd).await.unwrap();
    let expected = l.state().borrow().clone();
    converge(&all, &expected).await;

    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_rpcs_are_redirected_to_the_leader_and_heartbeats_unfence() {
    let dir = tempfile::tempdir().unwrap();
    let (voters, nodes) = cluster(dir.path()).await;
    let leader_id = agreed_leader(&nodes.iter().collect::<Vec<_>>()).await;
    // Start the client at a follower so it must follow NOT_CONTROLLER.
    let mut ordered: Vec<(i32, String)> =
        voters.iter().map(|(id, a)| (*id, a.to_string())).collect();
    ordered.sort_by_key(|(id, _)| *id == leader_id);
    let mut client = ControllerClient::new(ordered);

    let reply = client
        .call(ControllerRpc::RegisterBroker {
            broker_id: 4,
            host: "h".into(),
            port: 1,
            replica_endpoint: None,
            rack: None,
            incarnation_id: Uuid::from_u128(4),
            // Rules 0: the control loop then proposes no SetRulesVersion under the comparisons.
            rules_version: 0,
        })
        .await
        .unwrap();
    let ControllerReply::Applied(Ok(CommandResult::BrokerRegistered { broker_epoch })) = reply
    else {
        panic!("{reply:?}")
    };
    assert_eq!(client.leader(), Some(leader_id));
    // The reply came after the leader applied the registration.
    let leader = nodes.iter().find(|n| n.node_id() == leader_id).unwrap();
    let registered_offset = leader.state().borrow().brokers[&4].registered_offset;
    assert!(registered_offset > 0);

    // A heartbeat from a broker that has not applied its registration keeps it fenced ...
    let hb = |metadata_offset| ControllerRpc::Heartbeat {
        broker_id: 4,
        broker_epoch,
        metadata_offset,
    };
    let reply = client.call(hb(registered_offset - 1)).await.unwrap();
    assert_eq!(reply, ControllerReply::Heartbeat { fenced: true });
    // ... one that has, unfences it.
    let reply = client.call(hb(registered_offset)).await.unwrap();
    assert_eq!(reply, ControllerReply::Heartbeat { fenced: false });
    eventually("unfenced everywhere", || async {
        nodes
            .iter()
            .all(|n| n.state().borrow().is_unfenced(4))
            .then_some(())
    })
    .await;
    // A stale epoch is refused.
    let reply = client
        .call(ControllerRpc::Heartbeat {
            broker_id: 4,
            broker_epoch: broker_epoch + 1,
            metadata_offset: u64::MAX,
        })
        .await
        .unwrap();
    assert!(matches!(reply, ControllerReply::Applied(Err(_))));

    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_loop_fences_silent_brokers_and_moves_leadership() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = ControllerConfig::new(1, vec![], dir.path().to_owned());
    cfg.broker_session_timeout_ms = 1_000;
    cfg.control_interval_ms = 50;
    let node = Arc::new(Controller::start_on(cfg, listener).await.unwrap());
    agreed_leader(&[&node]).await;
    brokers_up(&node).await;
    let cmd = create_topic(&node.state().borrow(), "t", 0);
    node.propose(cmd).await.unwrap();
    let topic_id = node.state().borrow().topics["t"].topic_id;

    // Brokers 2 and 3 keep heartbeating; broker 1 goes silent.
    let beating = {
        let node = Arc::clone(&node);
        tokio::spawn(async move {
            loop {
                for id in [2, 3] {
                    let epoch = node.state().borrow().brokers[&id].broker_epoch;
                    let _ = node
                        .handle_rpc(ControllerRpc::Heartbeat {
                            broker_id: id,
                            broker_epoch: epoch,
                            metadata_offset: u64::MAX,
                        })
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    eventually("broker 1 fenced and leaderless of everything", || async {
        let s = node.state().borrow().clone();
        let fenced = !s.is_unfenced(1);
        let led_or_in_isr = (0..3).any(|p| {
            let part = s
                .partition(&PartitionRef {
                    topic_id,
                    partition: p,
                })
                .unwrap();
            part.leader == 1 || part.isr.contains(&1)
        });
        (fenced && !led_or_in_isr).then_some(())
    })
    .await;
    let s = node.state().borrow().clone();
    for p in 0..3 {
        let part = s
            .partition(&PartitionRef {
                topic_id,
                partition: p,
            })
            .unwrap();
        assert!([2, 3].contains(&part.leader), "{part:?}");
    }
    assert!(s.is_unfenced(2) && s.is_unfenced(3));
    beating.abort();
    let _ = beating.await;
    let node = Arc::try_unwrap(node).ok().expect("sole owner");
    node.shutdown().await.unwrap();
}
