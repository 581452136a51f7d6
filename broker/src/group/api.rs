//! Version-free requests and responses of the group coordinator. Handlers translate the wire
//! messages of every version into these and back; the coordinator never sees wire types.

use bytes::Bytes;
use protocol_shim::ErrorKind;

/// JoinGroup.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    /// Already defaulted to the session timeout for v0 (which has no such field).
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+ without an instance id: an unknown member first gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
    /// JoinGroup v9+ (KIP-814): a static leader that rejoins a Stable group is told it leads,
    /// with the members, and to skip the assignment.
    pub supports_skip_assignment: bool,
}

/// One member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub error: ErrorKind,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Non-empty only for the leader.
    pub members: Vec<JoinedMember>,
    /// v9+: the leader keeps the current assignment (a static leader's rejoin, KIP-814).
    pub skip_assignment: bool,
}

impl JoinResponse {
    pub fn error(error: ErrorKind, member_id: impl Into<String>) -> Self {
        JoinResponse {
            error,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.into(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

/// SyncGroup.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// v5+ only: checked against the group's when present.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// (member id, assignment); only the leader's is used.
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub error: ErrorKind,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    pub fn error(error: ErrorKind) -> Self {
        SyncResponse {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A response that was parked and is delivered later, to the request that parked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParkedReply {
    Join(JoinResponse),
    Sync(SyncResponse),
}

impl ParkedReply {
    /// The same reply turned into an error (its records could not be made durable).
    pub fn into_error(self, error: ErrorKind) -> Self {
        match self {
            ParkedReply::Join(j) => ParkedReply::Join(JoinResponse::error(error, j.member_id)),
            ParkedReply::Sync(_) => ParkedReply::Sync(SyncResponse::error(error)),
        }
    }
}

/// Heartbeat.
#[derive(Debug, Clone)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// One leaving member (LeaveGroup v0-2 has exactly one, with no instance id).
#[derive(Debug, Clone)]
pub struct LeavingMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveResponse {
    /// Group-level error (all members failed).
    pub error: ErrorKind,
    /// Per member, in request order.
    pub members: Vec<(String, Option<String>, ErrorKind)>,
}

/// OffsetCommit.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// From v2-v4 `retention_time_ms`; `None` for the broker default (-1 on the wire).
    pub retention_ms: Option<i64>,
    /// The handler's answer to "does this topic-partition exist", kept in request order.
    pub topics: Vec<CommitTopic>,
    /// OffsetCommit v9+: GROUP_ID_NOT_FOUND instead of ILLEGAL_GENERATION for a missing group.
    pub version: i16,
}

impl CommitRequest {
    /// For tests: a v8 commit by `member` at `generation` of `offset` on partition 0 of topic
    /// "t", with `metadata`.
    #[cfg(test)]
    pub(crate) fn one_partition(
        group: &str,
        member: &str,
        generation: i32,
        offset: i64,
        metadata: Option<&str>,
    ) -> Self {
        CommitRequest {
            group_id: group.into(),
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: None,
            retention_ms: None,
            topics: vec![CommitTopic {
                name: "t".into(),
                partitions: vec![CommitPartition {
                    partition: 0,
                    offset,
                    leader_epoch: 0,
                    metadata: metadata.map(str::to_string),
                    error: None,
                }],
            }],
            version: 8,
        }
    }

    /// The answer that gives every partition `kind`, except those the handler found missing,
    /// which keep their own error (Kafka answers unknown topics before asking the group).
    pub fn answer_all(&self, kind: ErrorKind) -> CommitResponse {
        self.topics
            .iter()
            .map(|t| {
                let parts = t
                    .partitions
                    .iter()
                    .map(|p| (p.partition, p.error.unwrap_or(kind)))
                    .collect();
                (t.name.clone(), parts)
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct CommitTopic {
    pub name: String,
    pub partitions: Vec<CommitPartition>,
}

#[derive(Debug, Clone)]
pub struct CommitPartition {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    /// Set by the handler when the topic-partition does not exist.
    pub error: Option<ErrorKind>,
}

/// Per topic, per partition (index, error) in request order.
pub type CommitResponse = Vec<(String, Vec<(i32, ErrorKind)>)>;

/// One committed offset as OffsetFetch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    pub partition: i32,
    /// -1 when nothing is committed.
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// OffsetFetch result of one group: per topic, its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedGroup {
    pub error: ErrorKind,
    pub topics: Vec<(String, Vec<FetchedOffset>)>,
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup {
    pub group_id: String,
    pub error: ErrorKind,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol_data: String,
    pub members: Vec<DescribedMember>,
}

impl DescribedGroup {
    /// Kafka's `getErrorDescribedGroupList` entry: the id and the error, every other field empty.
    pub fn error(group_id: &str, error: ErrorKind) -> Self {
        DescribedGroup {
            group_id: group_id.to_string(),
            error,
            state: "",
            protocol_type: String::new(),
            protocol_data: String::new(),
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// OffsetDelete request: per topic, (partition, the handler's "does it exist" error).
pub type OffsetDeleteTopics = Vec<(String, Vec<(i32, Option<ErrorKind>)>)>;

/// OffsetDelete: group-level error and per topic (partition, error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetDeleteResponse {
    pub error: ErrorKind,
    pub topics: Vec<(String, Vec<(i32, ErrorKind)>)>,
}
