//! One member of a classic group: its identity, timeouts, supported protocols, assignment, and
//! the JoinGroup/SyncGroup request it has parked (by token), if any.

use bytes::Bytes;

#[derive(Debug, Clone)]
pub struct Member {
    pub member_id: String,
    /// KIP-345 static membership.
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// Token of the parked JoinGroup waiting for the join phase to end.
    pub awaiting_join: Option<u64>,
    /// Token of the parked SyncGroup waiting for the leader's assignment.
    pub awaiting_sync: Option<u64>,
    /// Joined in the current join phase and has not received a JoinGroup response yet: such
    /// members expire after the new-member join timeout rather than being kept alive.
    pub is_new: bool,
}

impl Member {
    /// The metadata the member sent for `protocol` (empty if it does not support it).
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Whether the member's protocols (names and metadata, in order) equal `protocols`.
    pub fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// The member's first choice among `candidates` (Kafka's `vote`).
    pub fn vote<'a>(&'a self, candidates: &[&str]) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .find(|name| candidates.contains(name))
    }

    pub fn is_static(&self) -> bool {
        self.group_instance_id.is_some()
    }
}
