//! Topic administration in a cluster: CreateTopics, DeleteTopics, CreatePartitions and
//! Metadata auto-creation become commands to the active controller, with the replica
//! assignment chosen here (Kafka's placement, random start) unless the client gave one.
//! Each call returns once this broker's own metadata shows the change, so a client's next
//! Metadata request to this broker sees it.

use std::collections::BTreeSet;
use std::time::Duration;

use protocol_shim::ErrorKind;
use rand::Rng;

use super::{ClusterRuntime, ProposalError};
use crate::config::TopicConfigs;
use crate::controller::placement::{assign_replicas, PlacementError};
use crate::controller::records::{Command, CommandError};
use crate::metadata::{colliding_topic, validate_topic_name, TopicMeta};
use crate::node::{Node, TopicOpError};

/// How long an admin call waits for this broker's metadata to show its change.
const LOCAL_APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The Kafka error for a refused or failed proposal.
pub fn proposal_error(e: ProposalError) -> TopicOpError {
    match e {
        ProposalError::Unavailable(m) => TopicOpError::new(ErrorKind::RequestTimedOut, m),
        ProposalError::Refused(c) => {
            let kind = match &c {
                CommandError::TopicAlreadyExists(_) | CommandError::TopicIdInUse(_) => {
                    ErrorKind::TopicAlreadyExists
                }
                CommandError::InvalidTopic(_) => ErrorKind::InvalidTopic,
                CommandError::UnknownTopicId(_) => ErrorKind::UnknownTopicId,
                CommandError::UnknownPartition { .. } => ErrorKind::UnknownTopicOrPartition,
                CommandError::InvalidReplicaAssignment(_) => ErrorKind::InvalidReplicaAssignment,
                CommandError::InvalidPartitions(_) => ErrorKind::InvalidPartitions,
                CommandError::InvalidConfig(_) => ErrorKind::InvalidConfig,
                _ => ErrorKind::UnknownServerError,
            };
            TopicOpError::new(kind, c.to_string())
        }
    }
}

fn placement_error(e: PlacementError) -> TopicOpError {
    match e {
        PlacementError::InvalidReplicationFactor {
            replication_factor,
            available_brokers,
        } => TopicOpError::new(
            ErrorKind::InvalidReplicationFactor,
            format!("Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only {available_brokers} broker(s) are registered."),
        ),
        PlacementError::InvalidPartitionCount(n) => TopicOpError::new(
            ErrorKind::InvalidPartitions,
            format!("Number of partitions must be larger than 0, got {n}."),
        ),
        other => TopicOpError::new(ErrorKind::InvalidReplicaAssignment, other.to_string()),
    }
}

impl ClusterRuntime {
    /// Checks client-given assignments: every broker registered, no duplicates, one
    /// replication factor.
    fn check_assignments(&self, assignments: &[Vec<i32>]) -> Result<(), TopicOpError> {
        let state = self.state();
        let bad = |m: String| TopicOpError::new(ErrorKind::InvalidReplicaAssignment, m);
        let rf = assignments.first().map_or(0, Vec::len);
        for a in assignments {
            if a.is_empty() || a.len() != rf {
                return Err(bad(
                    "All partitions must have the same, non-zero number of replicas.".into(),
                ));
            }
            let distinct: BTreeSet<i32> = a.iter().copied().collect();
            if distinct.len() != a.len() {
                return Err(bad(format!(
                    "Duplicate brokers in replica assignment {a:?}."
                )));
            }
            if let Some(unknown) = a.iter().find(|b| !state.brokers.contains_key(b)) {
                return Err(bad(format!(
                    "Unknown broker {unknown} in replica assignment {a:?}."
                )));
            }
        }
        Ok(())
    }

    /// Replica assignments for `count` partitions from `first` with `rf` replicas each.
    fn place(&self, count: i32, rf: i16, first: i32) -> Result<Vec<Vec<i32>>, TopicOpError> {
        let brokers = self.state().placement_brokers();
        let start = rand::thread_rng().gen_range(0..brokers.len().max(1));
        assign_replicas(&brokers, count, rf, start, first).map_err(placement_error)
    }

    async fn wait_local(&self, node: &Node, done: impl Fn(&Node) -> bool) {
        let deadline = tokio::time::Instant::now() + LOCAL_APPLY_TIMEOUT;
        while !done(node) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Creates (or with `validate_only`, checks) a topic. Returns its id (a fresh one that names
    /// nothing when only validated, as Kafka's controller answers), partition count,
    /// replication factor and configs.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_topic(
        &self,
        node: &Node,
        name: &str,
        num_partitions: i32,
        replication_factor: i16,
        configs: TopicConfigs,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(uuid::Uuid, i32, i16, TopicConfigs), TopicOpError> {
        validate_topic_name(name).map_err(|m| TopicOpError::new(ErrorKind::InvalidTopic, m))?;
        {
            let state = self.state();
            if state.topics.contains_key(name) {
                return Err(TopicOpError::new(
                    ErrorKind::TopicAlreadyExists,
                    format!("Topic '{name}' already exists."),
                ));
            }
            if let Some(existing) = colliding_topic(name, state.topics.keys().map(String::as_str)) {
                return Err(TopicOpError::new(
                    ErrorKind::InvalidTopic,
                    format!("Topic '{name}' collides with existing topic: {existing}"),
                ));
            }
        }
        crate::node::check_topic_configs(&configs)?;
        let assignments = match assignments {
            Some(a) => {
                self.check_assignments(&a)?;
                a
            }
            None => {
                let (partitions, rf) =
                    node.requested_topic_counts(num_partitions, replication_factor)?;
                self.place(partitions, rf, 0)?
            }
        };
        let partitions = i32::try_from(assignments.len()).unwrap_or(i32::MAX);
        let rf = i16::try_from(assignments.first().map_or(0, Vec::len)).unwrap_or(i16::MAX);
        if validate_only {
            // Kafka's controller answers a dry run with a fresh id that names nothing.
            return Ok((uuid::Uuid::new_v4(), partitions, rf, configs));
        }
        let topic_id = uuid::Uuid::new_v4();
        self.propose(Command::CreateTopic {
            name: name.to_string(),
            topic_id,
            assignments,
            configs: configs.clone(),
        })
        .await
        .map_err(proposal_error)?;
        self.wait_local(node, |n| {
            n.topics.get(name).is_some_and(|t| t.id == topic_id)
        })
        .await;
        tracing::info!(
            topic = name,
            partitions,
            replication_factor = rf,
            "created topic"
        );
        Ok((topic_id, partitions, rf, configs))
    }

    /// Deletes a topic through the controller.
    pub async fn delete_topic(&self, node: &Node, name: &str) -> Result<TopicMeta, TopicOpError> {
        let meta = node.deletable_topic(name)?;
        self.propose(Command::DeleteTopic { topic_id: meta.id })
            .await
            .map_err(proposal_error)?;
        self.wait_local(node, |n| n.topics.get(name).is_none_or(|t| t.id != meta.id))
            .await;
        tracing::info!(topic = name, "deleted topic");
        Ok(meta)
    }

    /// Grows a topic to `count` partitions, by at most `budget` partitions
    /// (`node::partitions_within_budget`); how many it added (or, validating only, would add).
    pub async fn create_partitions(
        &self,
        node: &Node,
        name: &str,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
        budget: u64,
    ) -> Result<u64, TopicOpError> {
        let state = self.state();
        let Some(topic) = state.topics.get(name) else {
            return Err(TopicOpError::new(
                ErrorKind::UnknownTopicOrPartition,
                "This server does not host this topic-partition.",
            ));
        };
        let current = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        crate::node::check_partition_increase(
            name,
            current,
            count,
            assignments.as_ref().map(Vec::len),
        )?;
        let existing_rf = topic.partitions.first().map_or(1, |p| p.replicas.len());
        let rf = i16::try_from(existing_rf).unwrap_or(1);
        // All checked before a validate_only answer, as Kafka runs the whole creation for it.
        if let Some(a) = &assignments {
            self.check_assignments(a)?;
            if let Some(other) = a.iter().map(Vec::len).find(|n| *n != existing_rf) {
                return Err(TopicOpError::new(
                    ErrorKind::InvalidReplicaAssignment,
                    format!(
                        "The manual partition assignment includes a partition with {other} replica(s), but this is not consistent with previous partitions, which have {existing_rf} replica(s)."
                    ),
                ));
            }
        }
        // After the manual assignments' checks and before placing, which builds a list as long
        // as the partitions added.
        let added = crate::node::partitions_within_budget(current, count, budget)?;
        let assignments = match assignments {
            Some(a) => a,
            None => self.place(count - current, rf, current)?,
        };
        if validate_only {
            return Ok(added);
        }
        let topic_id = topic.topic_id;
        self.propose(Command::CreatePartitions {
            topic_id,
            total_count: count,
            assignments,
        })
        .await
        .map_err(proposal_error)?;
        self.wait_local(node, |n| {
            n.topics.get(name).is_some_and(|t| t.partitions >= count)
        })
        .await;
        Ok(added)
    }
}
