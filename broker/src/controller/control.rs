//! The active controller's control-loop decisions, as pure functions of the state (and
//! `now_ms`): which commands to propose when a broker is fenced or unfenced, when heartbeats
//! expire, and to restore preferred leaders.
//!
//! The decisions are only proposals: each command is checked again when applied (a fenced
//! broker must still be fenced for `ShrinkIsr`, an election re-reads the partition), so acting
//! on a state that changed meanwhile is harmless.

use std::collections::HashMap;

use super::records::{Command, ElectionType, PartitionRef};
use super::state::{ClusterState, NO_LEADER, RULES_VERSION};

/// At most this many partitions go into one command, to bound entry size.
pub const MAX_PARTITIONS_PER_COMMAND: usize = 1000;

/// After `broker_id` was fenced: remove it from every ISR it is in and move the leadership of
/// the partitions it leads (one `ShrinkIsr` per `MAX_PARTITIONS_PER_COMMAND` partitions).
pub fn on_broker_fenced(state: &ClusterState, broker_id: i32) -> Vec<Command> {
    state
        .held_by(broker_id)
        .chunks(MAX_PARTITIONS_PER_COMMAND)
        .map(|chunk| Command::ShrinkIsr {
            broker_id,
            partitions: chunk.to_vec(),
        })
        .collect()
}

/// `SetRulesVersion` to this code's `RULES_VERSION` once every registered broker's code
/// applies it (a broker still running older code holds it back, as Kafka's `metadata.version`
/// waits for every node's supported range).
pub fn rules_upgrade(state: &ClusterState) -> Option<Command> {
    (state.rules_version < RULES_VERSION
        && !state.brokers.is_empty()
        && state
            .brokers
            .values()
            .all(|b| b.rules_version >= RULES_VERSION))
    .then_some(Command::SetRulesVersion {
        version: RULES_VERSION,
    })
}

/// Partitions without a usable leader (none, or a fenced one) that could get one now: some
/// replica in the ISR is unfenced, or the topic allows an unclean election and some replica is
/// unfenced. Run after a broker is unfenced.
pub fn offline_leader_elections(state: &ClusterState) -> Vec<Command> {
    let candidates: Vec<PartitionRef> = state
        .partitions()
        .filter(|(topic, _, p)| {
            let leaderless = p.leader == NO_LEADER || !state.is_unfenced(p.leader);
            let pool: &[i32] = if topic.unclean_leader_election() {
                &p.replicas
            } else {
                &p.isr
            };
            leaderless && pool.iter().any(|&r| state.is_unfenced(r))
        })
        .map(|(_, r, _)| r)
        .collect();
    elections(ElectionType::Offline, &candidates)
}

/// Partitions whose preferred (first) replica is unfenced and in sync but not leading
/// (`auto.leader.rebalance.enable`).
pub fn preferred_leader_elections(state: &ClusterState) -> Vec<Command> {
    let candidates: Vec<PartitionRef> = state
        .partitions()
        .filter(|(_, _, p)| {
            p.replicas.first().is_some_and(|&preferred| {
                p.leader != preferred && p.isr.contains(&preferred) && state.is_unfenced(preferred)
            })
        })
        .map(|(_, r, _)| r)
        .collect();
    elections(ElectionType::Preferred, &candidates)
}

/// Unfenced brokers whose last heartbeat (`last_heartbeat_ms`, kept by the active controller in
/// memory) is older than `session_timeout_ms`, as `FenceBroker` commands. A broker without an
/// entry is not fenced: the caller seeds every broker with the time it became active
/// controller, so brokers get a full session after a failover.
pub fn expired_brokers(
    state: &ClusterState,
    last_heartbeat_ms: &HashMap<i32, u64>,
    now_ms: u64,
    session_timeout_ms: u64,
) -> Vec<Command> {
    state
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .filter(|b| {
            last_heartbeat_ms
                .get(&b.broker_id)
                .is_some_and(|&seen| now_ms.saturating_sub(seen) > session_timeout_ms)
        })
        .map(|b| Command::FenceBroker {
            broker_id: b.broker_id,
            broker_epoch: b.broker_epoch,
        })
        .collect()
}

fn elections(election: ElectionType, partitions: &[PartitionRef]) -> Vec<Command> {
    partitions
        .chunks(MAX_PARTITIONS_PER_COMMAND)
        .map(|chunk| Command::ElectLeaders {
            election,
            partitions: chunk.to_vec(),
        })
        .collect()
}
