//! The commands of the controller's replicated log, their results and their errors.
//!
//! A `Command` is what the active controller proposes and what every node applies, in log
//! order, to its `ClusterState`. Anything non-deterministic (topic ids, replica placement, the
//! choice of which partitions to touch) is decided by the active controller *before* proposing
//! and carried in the command, so that `ClusterState::apply` is a pure function of (state,
//! command). Commands that act on a decision made from an older state carry the epochs that
//! decision was based on, so a stale command is refused instead of applied to a newer state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::state::Endpoint;

/// One partition of one topic, named by the topic's id so that a topic deleted and re-created
/// under the same name is never mistaken for the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionRef {
    /// The topic's id.
    pub topic_id: Uuid,
    /// The partition index within the topic.
    pub partition: i32,
}

/// Which leader an `ElectLeaders` command moves a partition to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionType {
    /// Move leadership to the first replica of the assignment when it is unfenced and in sync
    /// (Kafka's PREFERRED election; `auto.leader.rebalance.enable`).
    Preferred,
    /// Give a leader to partitions that have none or whose leader is fenced: the first in-sync,
    /// unfenced replica; an out-of-sync one only if the topic sets
    /// `unclean.leader.election.enable=true`.
    Offline,
}

/// A change to one topic config key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigOp {
    /// Set `key` to `value`.
    Set { key: String, value: String },
    /// Remove `key`, so the broker default applies again.
    Delete { key: String },
}

/// Everything that changes the cluster metadata. Applied by `ClusterState::apply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A broker process announces itself. A new `incarnation_id` (the process restarted) starts
    /// the broker fenced with a new broker epoch; the same incarnation is idempotent.
    RegisterBroker {
        broker_id: i32,
        /// The client endpoint (Metadata).
        host: String,
        port: u16,
        /// The inter-broker endpoint followers fetch from, if not the client endpoint.
        /// Absent in commands logged before it existed.
        #[serde(default)]
        replica_endpoint: Option<Endpoint>,
        rack: Option<String>,
        incarnation_id: Uuid,
        /// The newest controller rules the broker's code applies (`state::RULES_VERSION`).
        /// Absent (0) in commands logged before it existed.
        #[serde(default)]
        rules_version: u16,
    },
    /// The broker has caught up with the metadata log and may lead partitions again.
    UnfenceBroker { broker_id: i32, broker_epoch: i64 },
    /// The broker stopped heartbeating (or asked to leave): it may no longer lead or be in sync.
    FenceBroker { broker_id: i32, broker_epoch: i64 },
    /// Remove a fenced broker from the ISR of these partitions (never emptying an ISR) and move
    /// the leadership of those it led. Issued by the control loop after `FenceBroker`.
    ShrinkIsr {
        broker_id: i32,
        partitions: Vec<PartitionRef>,
    },
    /// Create a topic with the replica assignment chosen by the active controller.
    CreateTopic {
        name: String,
        topic_id: Uuid,
        /// `assignments[p]` is the replica list of partition `p`; its first entry is the
        /// preferred leader.
        assignments: Vec<Vec<i32>>,
        configs: BTreeMap<String, String>,
    },
    /// Delete a topic and all its partitions.
    DeleteTopic { topic_id: Uuid },
    /// Grow a topic to `total_count` partitions; `assignments` are the new partitions' replicas.
    CreatePartitions {
        topic_id: Uuid,
        total_count: i32,
        assignments: Vec<Vec<i32>>,
    },
    /// A partition leader proposes a new ISR. Refused when the leader's view is stale
    /// (FENCED_LEADER_EPOCH, INVALID_UPDATE_VERSION).
    AlterPartition {
        partition: PartitionRef,
        /// The broker sending the request; must be the current leader.
        broker_id: i32,
        /// The sender's registration epoch; a restarted broker's old requests are refused.
        broker_epoch: i64,
        /// The leader epoch the sender leads in.
        leader_epoch: i32,
        /// The partition epoch the sender's view is based on.
        partition_epoch: i32,
        new_isr: Vec<i32>,
    },
    /// Elect leaders for these partitions.
    ElectLeaders {
        election: ElectionType,
        partitions: Vec<PartitionRef>,
    },
    /// Change topic configs.
    AlterConfigs { topic_id: Uuid, ops: Vec<ConfigOp> },
    /// Apply the controller rules of `version` (`state::RULES_VERSION`) to every later
    /// command, as Kafka's `metadata.version` gates new record semantics: the log's earlier
    /// entries replay under the rules they were applied with. Proposed by the active controller
    /// once every registered broker's code applies them; refused otherwise.
    SetRulesVersion { version: u16 },
}

impl Command {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::RegisterBroker { .. } => "RegisterBroker",
            Command::UnfenceBroker { .. } => "UnfenceBroker",
            Command::FenceBroker { .. } => "FenceBroker",
            Command::ShrinkIsr { .. } => "ShrinkIsr",
            Command::CreateTopic { .. } => "CreateTopic",
            Command::DeleteTopic { .. } => "DeleteTopic",
            Command::CreatePartitions { .. } => "CreatePartitions",
            Command::AlterPartition { .. } => "AlterPartition",
            Command::ElectLeaders { .. } => "ElectLeaders",
            Command::AlterConfigs { .. } => "AlterConfigs",
            Command::SetRulesVersion { .. } => "SetRulesVersion",
        }
    }
}

/// The leadership and ISR of one partition after a change, as returned to the requester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChange {
    pub partition: PartitionRef,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// The outcome of one partition in an `ElectLeaders` command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionOutcome {
    pub partition: PartitionRef,
    /// The new state, or why this partition was not changed.
    pub result: Result<PartitionChange, CommandError>,
}

/// What a successfully applied command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// A log entry without a command (Raft's blank and membership entries).
    Nothing,
    /// The broker is registered under this epoch.
    BrokerRegistered {
        broker_epoch: i64,
    },
    /// Fencing state of the broker after the command; `changed` is false for a repeat.
    BrokerFencing {
        fenced: bool,
        changed: bool,
    },
    /// The partitions whose ISR or leader changed.
    PartitionsChanged(Vec<PartitionChange>),
    /// The controller rules version in force after `SetRulesVersion`.
    RulesVersion(u16),
    TopicCreated {
        topic_id: Uuid,
    },
    TopicDeleted {
        name: String,
    },
    PartitionsCreated {
        total_count: i32,
    },
    /// The partition after an `AlterPartition` (unchanged if the ISR was already the proposed
    /// one).
    PartitionAltered(PartitionChange),
    /// One outcome per partition of an `ElectLeaders`.
    LeadersElected(Vec<ElectionOutcome>),
    ConfigsAltered,
}

/// Why a command was refused. Applying a refused command leaves the state unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CommandError {
    #[error("broker {0} is not registered")]
    UnknownBroker(i32),
    #[error("broker {broker_id} epoch {given} is stale (current {current})")]
    StaleBrokerEpoch {
        broker_id: i32,
        given: i64,
        current: i64,
    },
    #[error("broker {0} is not fenced")]
    BrokerNotFenced(i32),
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    #[error("topic id {0} is already in use")]
    TopicIdInUse(Uuid),
    #[error("invalid topic: {0}")]
    InvalidTopic(String),
    #[error("unknown topic id {0}")]
    UnknownTopicId(Uuid),
    #[error("unknown partition {partition} of topic {topic_id}")]
    UnknownPartition { topic_id: Uuid, partition: i32 },
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    #[error("leader epoch {given} is not the current {current}")]
    FencedLeaderEpoch { given: i32, current: i32 },
    #[error("partition epoch {given} is not the current {current}")]
    InvalidUpdateVersion { given: i32, current: i32 },
    #[error("broker {broker_id} is not the leader (leader is {leader})")]
    NotLeader { broker_id: i32, leader: i32 },
    #[error("invalid ISR: {0}")]
    InvalidIsr(String),
    #[error("broker {0} is fenced or unknown and cannot join the ISR")]
    IneligibleReplica(i32),
    #[error("preferred leader is not available")]
    PreferredLeaderNotAvailable,
    #[error("no eligible leader")]
    EligibleLeadersNotAvailable,
    #[error("election not needed")]
    ElectionNotNeeded,
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("controller rules version {version} cannot apply: {reason}")]
    UnsupportedRulesVersion { version: u16, reason: String },
}
