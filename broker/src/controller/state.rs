//! The cluster metadata state machine: registered brokers and topics with their partitions'
//! replicas, ISR, leader and epochs.
//!
//! `ClusterState::apply` is pure and deterministic: every node applies the same commands in the
//! same (Raft log) order and ends with the same state. A refused command returns an error and
//! leaves the state untouched (all checks run before the first mutation).
//!
//! Invariants kept by every command:
//! - a partition's ISR is non-empty, a subset of its replicas, without duplicates;
//! - a partition's leader is -1 or a member of its ISR;
//! - every leader change bumps `leader_epoch`, and every change of leader or ISR bumps
//!   `partition_epoch`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::placement::BrokerPlacement;
use super::records::{
    Command, CommandError, CommandResult, ConfigOp, ElectionOutcome, ElectionType, PartitionChange,
    PartitionRef,
};

/// No leader (Kafka's -1).
pub const NO_LEADER: i32 = -1;

/// The topic config that allows electing an out-of-sync replica.
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";

/// Longest topic name Kafka accepts.
const MAX_TOPIC_NAME_LEN: usize = 249;

/// A Kafka endpoint other brokers connect to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub broker_id: i32,
    /// The client endpoint (`--advertised-listener`), returned in Metadata.
    pub host: String,
    pub port: u16,
    /// Where followers fetch from (`--inter-broker-advertised-listener`); `None`: the client
    /// endpoint (also what registrations written before this field existed load as).
    #[serde(default)]
    pub replica_endpoint: Option<Endpoint>,
    pub rack: Option<String>,
    /// Random per broker process start; a new one means the broker restarted.
    pub incarnation_id: Uuid,
    /// Assigned at registration; requests carrying an older epoch come from a previous
    /// incarnation and are refused.
    pub broker_epoch: i64,
    /// A fenced broker leads nothing and is not in any ISR it could be removed from.
    pub fenced: bool,
    /// The metadata offset at which this registration was applied: the broker is unfenced only
    /// once its heartbeat reports having applied the log up to here.
    #[serde(default)]
    pub registered_offset: u64,
    /// The newest controller rules the broker's code applies (0: older than the field).
    #[serde(default)]
    pub rules_version: u16,
}

impl BrokerRegistration {
    /// The endpoint followers fetch from: the inter-broker endpoint if the broker registered
    /// one, else its client endpoint.
    pub fn replica_endpoint(&self) -> Endpoint {
        self.replica_endpoint.clone().unwrap_or_else(|| Endpoint {
            host: self.host.clone(),
            port: self.port,
        })
    }

    /// Refuses a request that carries another epoch than this registration's: it comes from
    /// an earlier incarnation of the broker (or a later one the caller has not seen).
    pub fn check_epoch(&self, broker_epoch: i64) -> Result<(), CommandError> {
        if self.broker_epoch != broker_epoch {
            return Err(CommandError::StaleBrokerEpoch {
                broker_id: self.broker_id,
                given: broker_epoch,
                current: self.broker_epoch,
            });
        }
        Ok(())
    }
}

/// One partition's replication state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The assigned replicas; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// In-sync replicas, in replica order.
    pub isr: Vec<i32>,
    /// The leader, or `NO_LEADER`.
    pub leader: i32,
    /// Bumped on every leader change; stamped on batches and checked by fetchers.
    pub leader_epoch: i32,
    /// Bumped on every change of leader or ISR; AlterPartition must name the current one.
    pub partition_epoch: i32,
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicState {
    pub name: String,
    pub topic_id: Uuid,
    /// Topic-level config overrides.
    pub configs: BTreeMap<String, String>,
    /// Indexed by partition number.
    pub partitions: Vec<PartitionState>,
}

impl TopicState {
    /// Whether an out-of-sync replica may become leader.
    pub fn unclean_leader_election(&self) -> bool {
        self.configs
            .get(UNCLEAN_LEADER_ELECTION_ENABLE)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// The whole cluster metadata, as replicated through the controller log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Registered brokers by id.
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicState>,
    /// Topic name by id (an index over `topics`).
    pub topic_names: BTreeMap<Uuid, String>,
    /// The epoch the next registration gets (monotonic, never reused).
    pub next_broker_epoch: i64,
    /// The cluster's id (Kafka's `cluster.id`): the first registered broker's incarnation id,
    /// so every node reports the same one without configuration.
    #[serde(default)]
    pub cluster_id: Option<Uuid>,
    /// Index of the last Raft log entry applied to this state (0 = none). Set by the Raft state
    /// machine, not by `apply`; brokers report it in heartbeats to show they caught up.
    pub metadata_offset: u64,
    /// The controller rules later commands are applied with (`RULES_VERSION`); 0 in a state
    /// from before `SetRulesVersion` existed.
    #[serde(default)]
    pub rules_version: u16,
}

/// The newest controller rules this code applies, set in the log by `SetRulesVersion` so that a
/// replayed log gives every node the same state whatever code wrote it:
/// - 0: a fence or a new incarnation's registration only marks the broker fenced (its
///   leaderships move by a later `ShrinkIsr`), and a fenced broker already in an ISR may stay
///   in it through `AlterPartition`;
/// - 1: a fence and a new incarnation's registration move the broker's leaderships and ISR
///   places in the same command (Kafka's `handleBrokerFenced`, the registration's shutdown
///   records), and every member of an `AlterPartition` ISR must be unfenced (Kafka's
///   `ineligibleReplicasForIsr`).
pub const RULES_VERSION: u16 = 1;

impl ClusterState {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// The topic with this id.
    pub fn topic_by_id(&self, topic_id: &Uuid) -> Option<&TopicState> {
        self.topic_names
            .get(topic_id)
            .and_then(|name| self.topics.get(name))
    }

    /// One partition.
    pub fn partition(&self, p: &PartitionRef) -> Option<&PartitionState> {
        let index = usize::try_from(p.partition).ok()?;
        self.topic_by_id(&p.topic_id)?.partitions.get(index)
    }

    /// Whether the broker is registered and not fenced.
    pub fn is_unfenced(&self, broker_id: i32) -> bool {
        self.brokers.get(&broker_id).is_some_and(|b| !b.fenced)
    }

    /// The unfenced brokers, as input for replica placement.
    pub fn placement_brokers(&self) -> Vec<BrokerPlacement> {
        self.brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| BrokerPlacement {
                broker_id: b.broker_id,
                rack: b.rack.clone(),
            })
            .collect()
    }

    /// Every partition, in (topic name, partition) order.
    pub fn partitions(&self) -> impl Iterator<Item = (&TopicState, PartitionRef, &PartitionState)> {
        self.topics.values().flat_map(|t| {
            t.partitions.iter().enumerate().map(move |(i, p)| {
                (
                    t,
                    PartitionRef {
                        topic_id: t.topic_id,
                        partition: i32::try_from(i).unwrap_or(i32::MAX),
                    },
                    p,
                )
            })
        })
    }

    /// Apply one command. Deterministic; on error the state is unchanged.
    pub fn apply(&mut self, cmd: &Command) -> Result<CommandResult, CommandError> {
        match cmd {
            Command::RegisterBroker {
                broker_id,
                host,
                port,
                replica_endpoint,
                rack,
                incarnation_id,
                rules_version,
            } => self.register_broker(BrokerRegistration {
                broker_id: *broker_id,
                host: host.clone(),
                port: *port,
                replica_endpoint: replica_endpoint.clone(),
                rack: rack.clone(),
                incarnation_id: *incarnation_id,
                broker_epoch: 0,
                fenced: true,
                registered_offset: 0,
                rules_version: *rules_version,
            }),
            Command::UnfenceBroker {
                broker_id,
                broker_epoch,
            } => self.set_fenced(*broker_id, *broker_epoch, false),
            Command::FenceBroker {
                broker_id,
                broker_epoch,
            } => self.set_fenced(*broker_id, *broker_epoch, true),
            Command::ShrinkIsr {
                broker_id,
                partitions,
            } => self.shrink_isr(*broker_id, partitions),
            Command::CreateTopic {
                name,
                topic_id,
                assignments,
                configs,
            } => self.create_topic(name, *topic_id, assignments, configs),
            Command::DeleteTopic { topic_id } => self.delete_topic(topic_id),
            Command::CreatePartitions {
                topic_id,
                total_count,
                assignments,
            } => self.create_partitions(topic_id, *total_count, assignments),
            Command::AlterPartition {
                partition,
                broker_id,
                broker_epoch,
                leader_epoch,
                partition_epoch,
                new_isr,
            } => self.alter_partition(
                partition,
                *broker_id,
                *broker_epoch,
                *leader_epoch,
                *partition_epoch,
                new_isr,
            ),
            Command::ElectLeaders {
                election,
                partitions,
            } => Ok(self.elect_leaders(*election, partitions)),
            Command::AlterConfigs { topic_id, ops } => self.alter_configs(topic_id, ops),
            Command::SetRulesVersion { version } => self.set_rules_version(*version),
        }
    }

    fn set_rules_version(&mut self, version: u16) -> Result<CommandResult, CommandError> {
        let refuse =
            |reason: String| Err(CommandError::UnsupportedRulesVersion { version, reason });
        if version > RULES_VERSION {
            return refuse(format!("this code applies rules up to {RULES_VERSION}"));
        }
        if let Some(b) = self.brokers.values().find(|b| b.rules_version < version) {
            return refuse(format!(
                "broker {} applies rules up to {}",
                b.broker_id, b.rules_version
            ));
        }
        self.rules_version = self.rules_version.max(version);
        Ok(CommandResult::RulesVersion(self.rules_version))
    }

    /// Registers `announced` (its epoch, fencing and offset are assigned here).
    fn register_broker(
        &mut self,
        mut announced: BrokerRegistration,
    ) -> Result<CommandResult, CommandError> {
        let broker_id = announced.broker_id;
        if broker_id < 0 {
            return Err(CommandError::UnknownBroker(broker_id));
        }
        let restarted = self.brokers.contains_key(&broker_id);
        if let Some(existing) = self.brokers.get_mut(&broker_id) {
            if existing.incarnation_id == announced.incarnation_id {
                // A retried registration of the same process: keep its epoch, refresh the
                // endpoint (it cannot change within one process, but a retry must not fail).
                existing.host = announced.host;
                existing.port = announced.port;
                existing.replica_endpoint = announced.replica_endpoint;
                existing.rack = announced.rack;
                existing.rules_version = announced.rules_version;
                return Ok(CommandResult::BrokerRegistered {
                    broker_epoch: existing.broker_epoch,
                });
            }
        }
        let broker_epoch = self.next_broker_epoch;
        self.next_broker_epoch += 1;
        if self.cluster_id.is_none() {
            self.cluster_id = Some(announced.incarnation_id);
        }
        // A new incarnation starts fenced: it must catch up with the metadata log before it
        // leads anything. Under rules 1 a restarted broker's old leaderships and ISR places go
        // in the same command (Kafka's registration adds its shutdown records), so it cannot
        // come back leading at the epoch it had, with a log that may have lost its unflushed
        // tail, before the control loop moved them.
        announced.broker_epoch = broker_epoch;
        announced.fenced = true;
        announced.registered_offset = self.metadata_offset;
        self.brokers.insert(broker_id, announced);
        if restarted && self.rules_version >= 1 {
            self.move_off(broker_id);
        }
        Ok(CommandResult::BrokerRegistered { broker_epoch })
    }

    fn set_fenced(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
        fenced: bool,
    ) -> Result<CommandResult, CommandError> {
        let broker = self
            .brokers
            .get_mut(&broker_id)
            .ok_or(CommandError::UnknownBroker(broker_id))?;
        broker.check_epoch(broker_epoch)?;
        let changed = broker.fenced != fenced;
        broker.fenced = fenced;
        if fenced && changed && self.rules_version >= 1 {
            // With the fence, as Kafka's `handleBrokerFenced` writes them in one batch: an
            // unfencing heartbeat cannot slip in before the leaderships moved.
            self.move_off(broker_id);
        }
        Ok(CommandResult::BrokerFencing { fenced, changed })
    }

    /// Takes fenced `broker_id` out of every ISR it shares with others and moves the
    /// leadership of the partitions it leads (what `ShrinkIsr` does for them all).
    fn move_off(&mut self, broker_id: i32) -> Vec<PartitionChange> {
        let affected = self.held_by(broker_id);
        self.shrink_partitions(broker_id, &affected)
    }

    /// The partitions `broker_id` leads or shares an ISR in: what fencing it changes.
    pub fn held_by(&self, broker_id: i32) -> Vec<PartitionRef> {
        self.partitions()
            .filter(|(_, _, p)| {
                p.leader == broker_id || (p.isr.len() > 1 && p.isr.contains(&broker_id))
            })
            .map(|(_, r, _)| r)
            .collect()
    }

    fn shrink_isr(
        &mut self,
        broker_id: i32,
        partitions: &[PartitionRef],
    ) -> Result<CommandResult, CommandError> {
        // Refuse a decision made while the broker was fenced if it has been unfenced since.
        let broker = self
            .brokers
            .get(&broker_id)
            .ok_or(CommandError::UnknownBroker(broker_id))?;
        if !broker.fenced {
            return Err(CommandError::BrokerNotFenced(broker_id));
        }
        Ok(CommandResult::PartitionsChanged(
            self.shrink_partitions(broker_id, partitions),
        ))
    }

    /// Removes fenced `broker_id` from the ISRs of `partitions` (never emptying one) and elects
    /// another leader where it led.
    fn shrink_partitions(
        &mut self,
        broker_id: i32,
        partitions: &[PartitionRef],
    ) -> Vec<PartitionChange> {
        let mut changes = Vec::new();
        for p in partitions {
            let Some((topic, index)) = self.locate(p) else {
                // Deleted since the decision: nothing to do for it.
                continue;
            };
            let unclean = topic.unclean_leader_election();
            let Some(current) = topic.partitions.get(index) else {
                continue;
            };
            let mut next = current.clone();
            if next.isr.len() > 1 {
                next.isr.retain(|&r| r != broker_id);
            }
            if next.leader == broker_id {
                next.leader = self.choose_leader(&next, unclean).unwrap_or(NO_LEADER);
                if next.leader != NO_LEADER && !next.isr.contains(&next.leader) {
                    // Unclean election: the new leader's log is the truth from now on.
                    next.isr = vec![next.leader];
                }
            }
            if let Some(change) = self.commit_partition(p, index, next) {
                changes.push(change);
            }
        }
        changes
    }

    fn create_topic(
        &mut self,
        name: &str,
        topic_id: Uuid,
        assignments: &[Vec<i32>],
        configs: &BTreeMap<String, String>,
    ) -> Result<CommandResult, CommandError> {
        if name.is_empty() || name.len() > MAX_TOPIC_NAME_LEN {
            return Err(CommandError::InvalidTopic(format!(
                "name length must be 1..={MAX_TOPIC_NAME_LEN}"
            )));
        }
        if self.topics.contains_key(name) {
            return Err(CommandError::TopicAlreadyExists(name.to_owned()));
        }
        if topic_id.is_nil() || self.topic_names.contains_key(&topic_id) {
            return Err(CommandError::TopicIdInUse(topic_id));
        }
        if assignments.is_empty() {
            return Err(CommandError::InvalidPartitions(
                "a topic needs at least one partition".into(),
            ));
        }
        if i32::try_from(assignments.len()).is_err() {
            return Err(CommandError::InvalidPartitions(
                "too many partitions".into(),
            ));
        }
        let partitions = self.new_partitions(assignments, None)?;
        self.topic_names.insert(topic_id, name.to_owned());
        self.topics.insert(
            name.to_owned(),
            TopicState {
                name: name.to_owned(),
                topic_id,
                configs: configs.clone(),
                partitions,
            },
        );
        Ok(CommandResult::TopicCreated { topic_id })
    }

    /// Validate assignments and build the initial partition states: ISR = unfenced replicas,
    /// leader = the first of them. `replication_factor` is the one every assignment must have
    /// (that of the first one if `None`).
    fn new_partitions(
        &self,
        assignments: &[Vec<i32>],
        replication_factor: Option<usize>,
    ) -> Result<Vec<PartitionState>, CommandError> {
        let rf = replication_factor
            .or_else(|| assignments.first().map(Vec::len))
            .unwrap_or(0);
        let mut out = Vec::with_capacity(assignments.len());
        for (i, replicas) in assignments.iter().enumerate() {
            if replicas.is_empty() {
                return Err(CommandError::InvalidReplicaAssignment(format!(
                    "partition {i} has no replicas"
                )));
            }
            if replicas.len() != rf {
                return Err(CommandError::InvalidReplicaAssignment(format!(
                    "partition {i} has {} replicas, expected {rf}",
                    replicas.len()
                )));
            }
            let distinct: BTreeSet<i32> = replicas.iter().copied().collect();
            if distinct.len() != replicas.len() {
                return Err(CommandError::InvalidReplicaAssignment(format!(
                    "partition {i} lists a broker twice"
                )));
            }
            if let Some(unknown) = replicas.iter().find(|r| !self.brokers.contains_key(r)) {
                return Err(CommandError::InvalidReplicaAssignment(format!(
                    "partition {i} names unregistered broker {unknown}"
                )));
            }
            let isr: Vec<i32> = replicas
                .iter()
                .copied()
                .filter(|&r| self.is_unfenced(r))
                .collect();
            let Some(&leader) = isr.first() else {
                return Err(CommandError::InvalidReplicaAssignment(format!(
                    "all replicas of partition {i} are fenced"
                )));
            };
            out.push(PartitionState {
                replicas: replicas.clone(),
                isr,
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
            });
        }
        Ok(out)
    }

    fn delete_topic(&mut self, topic_id: &Uuid) -> Result<CommandResult, CommandError> {
        let name = self
            .topic_names
            .remove(topic_id)
            .ok_or(CommandError::UnknownTopicId(*topic_id))?;
        self.topics.remove(&name);
        Ok(CommandResult::TopicDeleted { name })
    }

    fn create_partitions(
        &mut self,
        topic_id: &Uuid,
        total_count: i32,
        assignments: &[Vec<i32>],
    ) -> Result<CommandResult, CommandError> {
        let topic = self
            .topic_by_id(topic_id)
            .ok_or(CommandError::UnknownTopicId(*topic_id))?;
        let current = topic.partitions.len();
        let total = usize::try_from(total_count).unwrap_or(0);
        if total <= current {
            return Err(CommandError::InvalidPartitions(format!(
                "topic has {current} partitions; the new count {total_count} must be larger"
            )));
        }
        if current + assignments.len() != total {
            return Err(CommandError::InvalidReplicaAssignment(format!(
                "{} assignments for {} new partitions",
                assignments.len(),
                total - current
            )));
        }
        let rf = topic.partitions.first().map(|p| p.replicas.len());
        let mut new = self.new_partitions(assignments, rf)?;
        let name = topic.name.clone();
        if let Some(topic) = self.topics.get_mut(&name) {
            topic.partitions.append(&mut new);
        }
        Ok(CommandResult::PartitionsCreated { total_count })
    }

    fn alter_partition(
        &mut self,
        p: &PartitionRef,
        broker_id: i32,
        broker_epoch: i64,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: &[i32],
    ) -> Result<CommandResult, CommandError> {
        let (topic, index) = self.locate(p).ok_or(CommandError::UnknownPartition {
            topic_id: p.topic_id,
            partition: p.partition,
        })?;
        let current = topic
            .partitions
            .get(index)
            .ok_or(CommandError::UnknownPartition {
                topic_id: p.topic_id,
                partition: p.partition,
            })?;
        let broker = self
            .brokers
            .get(&broker_id)
            .ok_or(CommandError::UnknownBroker(broker_id))?;
        broker.check_epoch(broker_epoch)?;
        // Kafka's order: a leader from an older epoch is fenced before anything else is looked
        // at, then the sender must be the leader, then its view must be the current one.
        if leader_epoch != current.leader_epoch {
            return Err(CommandError::FencedLeaderEpoch {
                given: leader_epoch,
                current: current.leader_epoch,
            });
        }
        if current.leader != broker_id {
            return Err(CommandError::NotLeader {
                broker_id,
                leader: current.leader,
            });
        }
        if partition_epoch != current.partition_epoch {
            return Err(CommandError::InvalidUpdateVersion {
                given: partition_epoch,
                current: current.partition_epoch,
            });
        }
        if new_isr.is_empty() {
            return Err(CommandError::InvalidIsr("the ISR must not be empty".into()));
        }
        if !new_isr.contains(&broker_id) {
            return Err(CommandError::InvalidIsr(
                "the ISR must contain the leader".into(),
            ));
        }
        let distinct: BTreeSet<i32> = new_isr.iter().copied().collect();
        if distinct.len() != new_isr.len() {
            return Err(CommandError::InvalidIsr("a replica is listed twice".into()));
        }
        if let Some(r) = new_isr.iter().find(|r| !current.replicas.contains(r)) {
            return Err(CommandError::InvalidIsr(format!(
                "broker {r} is not a replica"
            )));
        }
        // Rules 1: every member must be unfenced (Kafka's `ineligibleReplicasForIsr`): fencing
        // a broker already took it out of the ISRs it shared, so a leader naming it again is
        // stale. Rules 0: only joining members (one already in may stay).
        let strict = self.rules_version >= 1;
        if let Some(&r) = new_isr
            .iter()
            .find(|&&r| (strict || !current.isr.contains(&r)) && !self.is_unfenced(r))
        {
            return Err(CommandError::IneligibleReplica(r));
        }
        // Keep the ISR in replica order so equal sets compare equal.
        let isr: Vec<i32> = current
            .replicas
            .iter()
            .copied()
            .filter(|r| distinct.contains(r))
            .collect();
        let mut next = current.clone();
        next.isr = isr;
        let change = match self.commit_partition(p, index, next) {
            Some(change) => change,
            None => self.change_of(p).ok_or(CommandError::UnknownPartition {
                topic_id: p.topic_id,
                partition: p.partition,
            })?,
        };
        Ok(CommandResult::PartitionAltered(change))
    }

    fn elect_leaders(
        &mut self,
        election: ElectionType,
        partitions: &[PartitionRef],
    ) -> CommandResult {
        let mut outcomes = Vec::with_capacity(partitions.len());
        for p in partitions {
            let result = self.elect_one(election, p);
            outcomes.push(ElectionOutcome {
                partition: *p,
                result,
            });
        }
        CommandResult::LeadersElected(outcomes)
    }

    fn elect_one(
        &mut self,
        election: ElectionType,
        p: &PartitionRef,
    ) -> Result<PartitionChange, CommandError> {
        let unknown = CommandError::UnknownPartition {
            topic_id: p.topic_id,
            partition: p.partition,
        };
        let (topic, index) = self.locate(p).ok_or(unknown.clone())?;
        let unclean = topic.unclean_leader_election();
        let current = topic.partitions.get(index).ok_or(unknown)?;
        let mut next = current.clone();
        match election {
            ElectionType::Preferred => {
                let preferred = *current
                    .replicas
                    .first()
                    .ok_or(CommandError::PreferredLeaderNotAvailable)?;
                if current.leader == preferred {
                    return Err(CommandError::ElectionNotNeeded);
                }
                if !self.is_unfenced(preferred) || !current.isr.contains(&preferred) {
                    return Err(CommandError::PreferredLeaderNotAvailable);
                }
                next.leader = preferred;
            }
            ElectionType::Offline => {
                if current.leader != NO_LEADER && self.is_unfenced(current.leader) {
                    return Err(CommandError::ElectionNotNeeded);
                }
                let leader = self
                    .choose_leader(current, unclean)
                    .ok_or(CommandError::EligibleLeadersNotAvailable)?;
                next.leader = leader;
                if !next.isr.contains(&leader) {
                    next.isr = vec![leader];
                }
            }
        }
        self.commit_partition(p, index, next)
            .ok_or(CommandError::ElectionNotNeeded)
    }

    fn alter_configs(
        &mut self,
        topic_id: &Uuid,
        ops: &[ConfigOp],
    ) -> Result<CommandResult, CommandError> {
        for op in ops {
            let key = match op {
                ConfigOp::Set { key, .. } | ConfigOp::Delete { key } => key,
            };
            if key.is_empty() {
                return Err(CommandError::InvalidConfig("empty config name".into()));
            }
        }
        let name = self
            .topic_names
            .get(topic_id)
            .ok_or(CommandError::UnknownTopicId(*topic_id))?
            .clone();
        let topic = self
            .topics
            .get_mut(&name)
            .ok_or(CommandError::UnknownTopicId(*topic_id))?;
        for op in ops {
            match op {
                ConfigOp::Set { key, value } => {
                    topic.configs.insert(key.clone(), value.clone());
                }
                ConfigOp::Delete { key } => {
                    topic.configs.remove(key);
                }
            }
        }
        Ok(CommandResult::ConfigsAltered)
    }

    /// The topic and partition index of `p`, if both exist.
    fn locate(&self, p: &PartitionRef) -> Option<(&TopicState, usize)> {
        let topic = self.topic_by_id(&p.topic_id)?;
        let index = usize::try_from(p.partition).ok()?;
        (index < topic.partitions.len()).then_some((topic, index))
    }

    /// The leader an election picks: the first replica (in assignment order) that is in the ISR
    /// and unfenced; failing that, if `unclean`, the first unfenced replica.
    fn choose_leader(&self, partition: &PartitionState, unclean: bool) -> Option<i32> {
        let eligible = |r: &&i32| self.is_unfenced(**r);
        partition
            .replicas
            .iter()
            .filter(|r| partition.isr.contains(r))
            .find(eligible)
            .or_else(|| {
                unclean
                    .then(|| partition.replicas.iter().find(eligible))
                    .flatten()
            })
            .copied()
    }

    /// Store `next` as the new state of partition `index`, bumping epochs. Returns `None` (and
    /// changes nothing) if neither leader nor ISR differ.
    fn commit_partition(
        &mut self,
        p: &PartitionRef,
        index: usize,
        mut next: PartitionState,
    ) -> Option<PartitionChange> {
        let name = self.topic_names.get(&p.topic_id)?.clone();
        let slot = self.topics.get_mut(&name)?.partitions.get_mut(index)?;
        if slot.leader == next.leader && slot.isr == next.isr {
            return None;
        }
        if slot.leader != next.leader {
            next.leader_epoch = slot.leader_epoch.saturating_add(1);
        }
        next.partition_epoch = slot.partition_epoch.saturating_add(1);
        *slot = next;
        Some(PartitionChange {
            partition: *p,
            leader: slot.leader,
            leader_epoch: slot.leader_epoch,
            partition_epoch: slot.partition_epoch,
            isr: slot.isr.clone(),
        })
    }

    /// The current leadership of `p` as a `PartitionChange`.
    fn change_of(&self, p: &PartitionRef) -> Option<PartitionChange> {
        let s = self.partition(p)?;
        Some(PartitionChange {
            partition: *p,
            leader: s.leader,
            leader_epoch: s.leader_epoch,
            partition_epoch: s.partition_epoch,
            isr: s.isr.clone(),
        })
    }
}
