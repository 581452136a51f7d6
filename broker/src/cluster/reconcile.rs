//! Applies the controller's metadata to this broker: the local topic list (`meta/topics.json`
//! mirrors the cluster's topics), the partitions this broker holds a replica of (opened,
//! or deleted when no longer assigned here), and each replica's role (leader, or follower
//! handed to the fetcher of its leader).
//!
//! Runs on every applied metadata change, but only once the controller has unfenced this
//! broker (see `crate::cluster`), and serially, so roles change in metadata order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::ClusterRuntime;
use crate::config::log_config_for;
use crate::controller::records::Command;
use crate::controller::state::ClusterState;
use crate::metadata::{TopicMeta, CONSUMER_OFFSETS_TOPIC};
use crate::node::Node;
use crate::partition::{Partition, TopicPartition};

/// Runs until shutdown.
pub async fn run(node: Arc<Node>, rt: Arc<ClusterRuntime>) {
    let mut unfenced = rt.subscribe_unfenced();
    tokio::select! {
        () = node.shutdown.cancelled() => return,
        r = unfenced.wait_for(|u| *u) => if r.is_err() { return },
    }
    tracing::info!("unfenced by the controller; taking up partitions");
    let mut state_rx = rt.subscribe_state();
    let mut offsets_topic_asked_ms: Option<i64> = None;
    loop {
        let state = Arc::clone(&state_rx.borrow_and_update());
        apply_off_runtime(&node, &rt, Arc::clone(&state)).await;
        maybe_create_offsets_topic(&node, &rt, &state, &mut offsets_topic_asked_ms);
        tokio::select! {
            () = node.shutdown.cancelled() => return,
            r = state_rx.changed() => if r.is_err() { return },
            // Re-check now and then (the offsets topic waits for enough brokers).
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The local topic list for a metadata state.
fn topic_metas(state: &ClusterState) -> BTreeMap<String, TopicMeta> {
    state
        .topics
        .values()
        .map(|t| {
            (
                t.name.clone(),
                TopicMeta {
                    name: t.name.clone(),
                    id: t.topic_id,
                    partitions: i32::try_from(t.partitions.len()).unwrap_or(i32::MAX),
                    configs: t.configs.clone(),
                    internal: t.name == CONSUMER_OFFSETS_TOPIC,
                },
            )
        })
        .collect()
}

/// Runs one pass on the blocking pool and waits for it, so passes stay serial. A pass
/// creates, opens or deletes partition files and persists the topic list (fsyncs): a topic
/// of 1,000 partitions takes over a second to open, which inline would stall the runtime
/// worker under this task and every connection queued on it (single-node CreateTopics does
/// the same work off the runtime, `node::topic_op_off_runtime`).
async fn apply_off_runtime(node: &Arc<Node>, rt: &Arc<ClusterRuntime>, state: Arc<ClusterState>) {
    let (node, rt) = (Arc::clone(node), Arc::clone(rt));
    if let Err(e) = tokio::task::spawn_blocking(move || apply(&node, &rt, &state)).await {
        tracing::error!(error = %e, "metadata pass failed");
    }
}

/// One pass: topics, partitions, roles. Blocking file I/O: run only through
/// `apply_off_runtime`.
fn apply(node: &Arc<Node>, rt: &ClusterRuntime, state: &ClusterState) {
    let me = rt.node_id;
    let now = node.now_ms();
    let desired_topics = topic_metas(state);
    let current: BTreeMap<String, TopicMeta> = node
        .topics
        .all()
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    if current != desired_topics {
        let removed: Vec<String> = current
            .keys()
            .filter(|n| !desired_topics.contains_key(*n))
            .cloned()
            .collect();
        let to_store = desired_topics.clone();
        if let Err(e) = node.topics.update(|m| {
            *m = to_store;
            true
        }) {
            tracing::error!(error = %e, "cannot persist the topic list");
        }
        for name in removed {
            node.fetch_sessions.forget_named_topic(&name);
        }
    }

    // The partitions with a replica here.
    let mine: Vec<_> = state
        .partitions()
        .filter(|(_, _, p)| p.replicas.contains(&me))
        .map(|(topic, pref, p)| {
            let tp = TopicPartition {
                topic: topic.name.clone(),
                partition: pref.partition,
            };
            (topic, p, tp)
        })
        .collect();
    let wanted: BTreeSet<TopicPartition> = mine.iter().map(|(_, _, tp)| tp.clone()).collect();
    let mut to_open = Vec::new();
    for (topic, _, tp) in &mine {
        match node.partitions.get(&tp.topic, tp.partition) {
            Some(existing) if existing.topic_id == topic.topic_id => {}
            existing => {
                if let Some(old) = existing {
                    // Same name, another topic (deleted and created again).
                    remove_partition(node, rt, &old.tp);
                }
                let cfg = log_config_for(&topic.configs, &node.config.settings);
                to_open.push((tp.clone(), topic.topic_id, cfg));
            }
        }
    }
    // New directories are synced together (`PartitionManager::open_many`); none serves until
    // its role below is set.
    let prepare = |p: &Partition| {
        p.become_follower(-1, p.leader_epoch());
        Ok(())
    };
    for opened in node.partitions.open_many(to_open, now, prepare) {
        if let Err((tp, e)) = opened {
            tracing::error!(partition = %tp, error = %e, "cannot open partition");
        }
    }

    for (topic, p, tp) in mine {
        let partition = match node.partitions.get(&tp.topic, tp.partition) {
            Some(open) if open.topic_id == topic.topic_id => open,
            // It failed to open (logged above).
            _ => continue,
        };
        let was_leader = partition.is_leader();
        if p.leader == me {
            rt.fetchers.remove(&tp);
            let new_leadership = partition.become_leader(
                p.leader_epoch,
                p.partition_epoch,
                p.isr.clone(),
                p.replicas.clone(),
                me,
                now,
            );
            if new_leadership {
                record_epoch(&partition, p.leader_epoch);
            }
            let fenced: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|&r| r != me && !state.is_unfenced(r))
                .collect();
            partition.with_leader_state(|s| s.set_ineligible(fenced));
            partition.refresh_high_watermark();
            if !was_leader && tp.topic == CONSUMER_OFFSETS_TOPIC {
                node.on_offsets_leadership(tp.partition, true);
            }
        } else {
            let changed = partition.become_follower(p.leader, p.leader_epoch);
            if p.leader >= 0 {
                rt.fetchers.follow(
                    node,
                    rt,
                    p.leader,
                    Arc::clone(&partition),
                    p.leader_epoch,
                    changed,
                );
            } else {
                rt.fetchers.remove(&tp);
            }
            if was_leader && tp.topic == CONSUMER_OFFSETS_TOPIC {
                node.on_offsets_leadership(tp.partition, false);
            }
        }
    }
    for p in node.partitions.all() {
        if !wanted.contains(&p.tp) {
            remove_partition(node, rt, &p.tp);
        }
    }
}

/// Records a new leader's epoch in its log's checkpoint (Kafka's `Partition.makeLeader`) on
/// a blocking thread of its own: a file rewrite with two fsyncs per partition, which would
/// otherwise hold up the rest of the pass (every other role it changes) for each leadership
/// an election moves, or land on the first produce after it. Until it is written, and if it
/// fails (the first append then records it), OffsetForLeaderEpoch answers as if it were
/// (`partition::leader_epoch`).
fn record_epoch(partition: &Arc<Partition>, leader_epoch: i32) {
    let partition = Arc::clone(partition);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = partition.record_epoch_as_leader(leader_epoch) {
            tracing::warn!(partition = %partition.tp, leader_epoch, error = %e,
                "could not record the leader epoch; the first append records it");
        }
    });
}

fn remove_partition(node: &Arc<Node>, rt: &ClusterRuntime, tp: &TopicPartition) {
    rt.fetchers.remove(tp);
    if let Some(p) = node.partitions.remove(tp) {
        if p.is_leader() && tp.topic == CONSUMER_OFFSETS_TOPIC {
            node.on_offsets_leadership(tp.partition, false);
        }
        tracing::info!(partition = %tp, "removing replica (no longer assigned here)");
        if let Err(e) = p.delete() {
            tracing::error!(partition = %tp, error = %e, "cannot delete partition directory");
        }
    }
}

/// Creates `__consumer_offsets` once enough brokers are up (its replication factor is
/// `offsets.topic.replication.factor`, capped by the number of voters), at most every 5 s.
fn maybe_create_offsets_topic(
    node: &Arc<Node>,
    rt: &Arc<ClusterRuntime>,
    state: &ClusterState,
    asked_ms: &mut Option<i64>,
) {
    if state.topics.contains_key(CONSUMER_OFFSETS_TOPIC) {
        return;
    }
    let now = node.now_ms();
    if asked_ms.is_some_and(|t| now.saturating_sub(t) < 5_000) {
        return;
    }
    let want_rf = usize::try_from(rt.settings.offsets_topic_replication_factor)
        .unwrap_or(1)
        .min(rt.voters().len())
        .max(1);
    let brokers = state.placement_brokers();
    if brokers.len() < want_rf {
        return;
    }
    *asked_ms = Some(now);
    let partitions = node
        .config
        .settings
        .i32("offsets.topic.num.partitions")
        .max(1);
    let start = rand::thread_rng().gen_range(0..brokers.len().max(1));
    let Ok(assignments) = crate::controller::placement::assign_replicas(
        &brokers,
        partitions,
        i16::try_from(want_rf).unwrap_or(1),
        start,
        0,
    ) else {
        return;
    };
    let configs = crate::group::runtime::offsets_topic_configs(&node.config.settings);
    let cmd = Command::CreateTopic {
        name: CONSUMER_OFFSETS_TOPIC.to_string(),
        topic_id: uuid::Uuid::new_v4(),
        assignments,
        configs,
    };
    let rt = Arc::clone(rt);
    tokio::spawn(async move {
        match rt.propose(cmd).await {
            Ok(_) => tracing::info!(partitions, rf = want_rf, "created __consumer_offsets"),
            Err(e) => tracing::debug!(error = %e, "creating __consumer_offsets"),
        }
    });
}
