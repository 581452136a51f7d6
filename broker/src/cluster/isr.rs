//! The leader side of ISR maintenance: followers not caught up for
//! `replica.lag.time.max.ms` are proposed for removal, followers that caught up to the high
//! watermark are proposed for addition, each as an AlterPartition command to the active
//! controller (one in flight per partition). The new ISR takes effect when the controller's
//! metadata arrives through the reconciler.
//!
//! A proposed addition counts towards the high watermark at once (KIP-497's maximal ISR) and
//! keeps counting until the controller's answer settles it, as Kafka's
//! `handleAlterPartitionError` does: only a refusal that means the change was not made and
//! will not be (an ineligible replica, an invalid ISR, an unknown partition) drops it; a
//! refusal of a stale proposal (partition or leader epoch moved, not the leader any more)
//! waits for the new metadata, which replaces it; an unanswered one is sent again until it is
//! answered or the metadata moved. Dropping it on a stale refusal could let the high watermark
//! pass a replica that the controller's ISR already holds, and that could be elected.

use std::sync::Arc;
use std::time::Duration;

use super::{ClusterRuntime, ProposalError};
use crate::controller::records::{Command, CommandError, PartitionRef};
use crate::node::Node;
use crate::partition::Partition;

/// Runs until shutdown: checks every leader partition for lagging followers.
pub async fn run(node: Arc<Node>, rt: Arc<ClusterRuntime>) {
    let lag_ms = rt.settings.replica_lag_time_max_ms;
    let period = Duration::from_millis(u64::try_from(lag_ms / 4).unwrap_or(250).clamp(50, 2_000));
    loop {
        tokio::select! {
            () = node.shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        if !rt.is_unfenced() {
            continue;
        }
        let now = node.now_ms();
        for p in node.partitions.all() {
            let mut refresh = false;
            let proposal = p
                .with_leader_state(|s| {
                    if s.clear_silent_joiners(now, lag_ms) {
                        refresh = true;
                    }
                    if s.alter_in_flight {
                        return None;
                    }
                    let lagging = s.lagging_followers(now, lag_ms);
                    if lagging.is_empty() {
                        return None;
                    }
                    let isr = s.isr_without(&lagging);
                    if isr.is_empty() {
                        return None;
                    }
                    tracing::info!(partition = %p.tp, ?lagging, new_isr = ?isr, "shrinking ISR");
                    s.alter_in_flight = true;
                    Some((isr, s.partition_epoch()))
                })
                .flatten();
            if refresh {
                p.refresh_high_watermark();
            }
            if let Some((isr, partition_epoch)) = proposal {
                tokio::spawn(propose_isr(
                    Arc::clone(&rt),
                    Arc::clone(&p),
                    isr,
                    partition_epoch,
                ));
            }
        }
    }
}

/// A follower caught up: propose adding it to the ISR (counted for the high watermark at
/// once, so no acknowledgement can skip it).
pub fn expand(rt: &Arc<ClusterRuntime>, partition: &Arc<Partition>, follower: i32) {
    let proposal = partition
        .with_leader_state(|s| {
            if s.alter_in_flight {
                return None;
            }
            s.propose_addition(follower);
            Some((s.isr_with(follower), s.partition_epoch()))
        })
        .flatten();
    if let Some((isr, partition_epoch)) = proposal {
        tracing::info!(partition = %partition.tp, follower, new_isr = ?isr, "expanding ISR");
        tokio::spawn(propose_isr(
            Arc::clone(rt),
            Arc::clone(partition),
            isr,
            partition_epoch,
        ));
    }
}

/// A refusal because the proposal was made on metadata that has since moved: the new
/// metadata settles it (Kafka keeps the pending ISR on INVALID_UPDATE_VERSION and
/// FENCED_LEADER_EPOCH). Other refusals mean the change was not made and will not be.
fn is_stale(e: &CommandError) -> bool {
    matches!(
        e,
        CommandError::InvalidUpdateVersion { .. }
            | CommandError::FencedLeaderEpoch { .. }
            | CommandError::NotLeader { .. }
            | CommandError::StaleBrokerEpoch { .. }
    )
}

/// How long an unanswered AlterPartition waits before it is sent again (for as long as the
/// leadership and partition epoch it was made on stand, as Kafka retries: giving up could drop
/// a proposal the controller applied).
const RETRY_BACKOFF: Duration = Duration::from_millis(500);

async fn propose_isr(
    rt: Arc<ClusterRuntime>,
    partition: Arc<Partition>,
    new_isr: Vec<i32>,
    partition_epoch: i32,
) {
    let leader_epoch = partition.leader_epoch();
    let cmd = Command::AlterPartition {
        partition: PartitionRef {
            topic_id: partition.topic_id,
            partition: partition.tp.partition,
        },
        broker_id: rt.node_id,
        broker_epoch: rt.broker_epoch(),
        leader_epoch,
        partition_epoch,
        new_isr,
    };
    let result = loop {
        match rt.propose(cmd.clone()).await {
            Err(ProposalError::Unavailable(e)) => {
                tracing::debug!(partition = %partition.tp, error = %e, "AlterPartition unanswered; sending it again");
                tokio::time::sleep(RETRY_BACKOFF).await;
                // Still this leadership, and no new metadata settled the proposal meanwhile.
                let current = partition
                    .with_leader_state(|s| {
                        s.alter_in_flight && s.partition_epoch() == partition_epoch
                    })
                    .unwrap_or(false);
                if !current || partition.leader_epoch() != leader_epoch || rt.is_stopping() {
                    return;
                }
            }
            other => break other,
        }
    };
    match result {
        Ok(_) => {
            // The new ISR arrives with the metadata (the reconciler then clears the in-flight
            // flag by the new partition epoch); if the ISR was already the proposed one, the
            // epoch does not move, so clear the flag here once our metadata caught up.
            let topic = partition.tp.topic.clone();
            let index = partition.tp.partition;
            rt.wait_for_state(Duration::from_secs(5), |s| {
                s.topics
                    .get(&topic)
                    .and_then(|t| {
                        t.partitions
                            .get(usize::try_from(index).unwrap_or(usize::MAX))
                    })
                    .is_some_and(|p| p.partition_epoch != partition_epoch)
            })
            .await;
            partition.with_leader_state(|s| s.alter_in_flight = false);
        }
        Err(ProposalError::Refused(e)) if is_stale(&e) => {
            // Stale: the metadata that made it so replaces the proposal when it arrives
            // (`update_from_controller`); until then the proposed ISR keeps counting.
            tracing::info!(partition = %partition.tp, error = %e, "AlterPartition stale; waiting for metadata");
        }
        Err(e) => {
            tracing::info!(partition = %partition.tp, error = %e, "AlterPartition not applied");
            partition.with_leader_state(|s| s.proposal_failed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stale_refusals_keep_the_proposed_isr() {
        for stale in [
            CommandError::InvalidUpdateVersion {
                given: 1,
                current: 2,
            },
            CommandError::FencedLeaderEpoch {
                given: 1,
                current: 2,
            },
            CommandError::NotLeader {
                broker_id: 1,
                leader: 2,
            },
            CommandError::StaleBrokerEpoch {
                broker_id: 1,
                given: 1,
                current: 2,
            },
        ] {
            assert!(is_stale(&stale), "{stale:?}");
        }
        for last in [
            CommandError::IneligibleReplica(3),
            CommandError::InvalidIsr("x".into()),
            CommandError::UnknownBroker(1),
        ] {
            assert!(!is_stale(&last), "{last:?}");
        }
    }
}
