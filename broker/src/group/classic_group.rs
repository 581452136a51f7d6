//! A classic (JoinGroup/SyncGroup) group: its state, generation, chosen protocol, leader and
//! members, with the bookkeeping rules of Kafka's `ClassicGroup`.
//!
//! Invariants: `leader_id` names a member whenever there are members; `static_members` maps
//! each instance id to the member that holds it; a member id is never both pending and a member.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use super::member::Member;
use super::state::GroupState;

#[derive(Debug, Clone)]
pub struct ClassicGroup {
    pub group_id: String,
    pub state: GroupState,
    /// When the group entered its current state (GroupMetadataValue.currentStateTimestamp).
    pub state_timestamp_ms: Option<i64>,
    pub generation_id: i32,
    /// `None` for a "simple" group that only stores offsets.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// group.instance.id -> member id.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined.
    pub pending_join: BTreeSet<String>,
    /// Members that got their JoinGroup response but have not sent SyncGroup yet.
    pub pending_sync: BTreeSet<String>,
    /// A member joined during the initial delay, which extends it.
    pub new_member_added: bool,
    /// (current delay, delay still available) while the join phase is the initial one of an
    /// empty group (`group.initial.rebalance.delay.ms`).
    pub initial_delay: Option<(i64, i64)>,
}

impl ClassicGroup {
    pub fn new(group_id: &str, now_ms: i64) -> Self {
        ClassicGroup {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            state_timestamp_ms: Some(now_ms),
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_join: BTreeSet::new(),
            pending_sync: BTreeSet::new(),
            new_member_added: false,
            initial_delay: None,
        }
    }

    pub fn is(&self, state: GroupState) -> bool {
        self.state == state
    }

    /// Moves to `next`; an invalid transition is a coordinator bug, logged and still applied
    /// so the group cannot get stuck.
    pub fn transition_to(&mut self, next: GroupState, now_ms: i64) {
        if !self.state.can_transition_to(next) {
            tracing::error!(group = %self.group_id, from = ?self.state, to = ?next, "invalid group state transition");
        }
        self.state = next;
        self.state_timestamp_ms = Some(now_ms);
    }

    pub fn has_member(&self, member_id: &str) -> bool {
        self.members.contains_key(member_id)
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    pub fn static_member_id(&self, instance_id: &str) -> Option<&str> {
        self.static_members.get(instance_id).map(String::as_str)
    }

    /// A known static member whose instance id is now held by another member id.
    pub fn is_static_member_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id
            .and_then(|i| self.static_member_id(i))
            .is_some_and(|existing| existing != member_id)
    }

    pub fn num_awaiting_join(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.awaiting_join.is_some())
            .count()
    }

    pub fn has_all_members_joined(&self) -> bool {
        self.members.len() == self.num_awaiting_join() && self.pending_join.is_empty()
    }

    /// The largest rebalance timeout of the members.
    pub fn rebalance_timeout_ms(&self) -> i32 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    fn supported_count(&self, protocol: &str) -> usize {
        self.members
            .values()
            .filter(|m| m.protocols.iter().any(|(n, _)| n == protocol))
            .count()
    }

    /// Kafka's `supportsProtocols`: an empty group takes any non-empty type and list; otherwise
    /// the type must match and one of the protocols must be supported by every member.
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.is(GroupState::Empty) {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|(name, _)| self.supported_count(name) == self.members.len())
    }

    /// The protocol every member supports that most members prefer (ties: the leader's
    /// preference, then the name, so the choice is deterministic).
    pub fn select_protocol(&self) -> Option<String> {
        let mut candidates: Vec<&str> = Vec::new();
        for m in self.members.values() {
            for (name, _) in &m.protocols {
                if !candidates.contains(&name.as_str())
                    && self.supported_count(name) == self.members.len()
                {
                    candidates.push(name);
                }
            }
        }
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(v) = m.vote(&candidates) {
                *votes.entry(v).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        let leader_choice = self
            .leader_id
            .as_deref()
            .and_then(|l| self.members.get(l))
            .and_then(|l| l.vote(&candidates))
            .filter(|v| votes.get(v) == Some(&best));
        leader_choice
            .or_else(|| votes.iter().find(|(_, &n)| n == best).map(|(p, _)| *p))
            .map(str::to_string)
    }

    /// Adds a member (Kafka's `add`): the first member fixes the protocol type and leads.
    pub fn add(&mut self, member: Member) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        if let Some(instance) = &member.group_instance_id {
            self.static_members
                .insert(instance.clone(), member.member_id.clone());
        }
        self.pending_join.remove(&member.member_id);
        self.members.insert(member.member_id.clone(), member);
    }

    /// Removes a member (Kafka's `remove`); a removed leader is replaced by another member. A
    /// pending id is forgotten too, member or not.
    pub fn remove(&mut self, member_id: &str) -> Option<Member> {
        self.pending_join.remove(member_id);
        self.pending_sync.remove(member_id);
        let removed = self.members.remove(member_id)?;
        if let Some(instance) = &removed.group_instance_id {
            if self.static_member_id(instance) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        Some(removed)
    }

    /// Static member rejoining with a new member id: moves everything to the new id. Returns
    /// the old member (with its parked requests, which the caller fences).
    pub fn replace_static_member(
        &mut self,
        instance_id: &str,
        old_member_id: &str,
        new_member_id: &str,
    ) -> Option<Member> {
        let old = self.members.remove(old_member_id)?;
        let mut new = old.clone();
        new.member_id = new_member_id.to_string();
        new.awaiting_join = None;
        new.awaiting_sync = None;
        new.is_new = false;
        self.members.insert(new_member_id.to_string(), new);
        if self.is_leader(old_member_id) {
            self.leader_id = Some(new_member_id.to_string());
        }
        if self.pending_sync.remove(old_member_id) {
            self.pending_sync.insert(new_member_id.to_string());
        }
        self.static_members
            .insert(instance_id.to_string(), new_member_id.to_string());
        Some(old)
    }

    /// Kafka's `maybeElectNewJoinedLeader`: keep a leader that rejoined, else pick a member
    /// that did; false when nobody rejoined.
    pub fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader_id.clone() else {
            return false;
        };
        if self
            .members
            .get(&leader)
            .is_some_and(|m| m.awaiting_join.is_some())
        {
            return true;
        }
        match self
            .members
            .values()
            .find(|m| m.awaiting_join.is_some())
            .map(|m| m.member_id.clone())
        {
            Some(new_leader) => {
                self.leader_id = Some(new_leader);
                true
            }
            None => false,
        }
    }

    /// Topics the members subscribe to, if the group speaks the consumer protocol and every
    /// subscription parses (ConsumerProtocolSubscription v0 prefix: version, topics).
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            topics.extend(parse_subscription_topics(&m.metadata(protocol))?);
        }
        Some(topics)
    }

    /// Kafka's `isSubscribedToTopic`: unknown subscriptions count as subscribed for consumer
    /// groups.
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        if self.members.is_empty() {
            return false;
        }
        match self.subscribed_topics() {
            Some(t) => t.contains(topic),
            None => self.protocol_type.as_deref() == Some("consumer"),
        }
    }
}

/// The topic list at the start of a ConsumerProtocolSubscription (any version).
pub fn parse_subscription_topics(metadata: &Bytes) -> Option<Vec<String>> {
    let data: &[u8] = metadata;
    let count_bytes: [u8; 4] = data.get(2..6)?.try_into().ok()?;
    let count = i32::from_be_bytes(count_bytes);
    let mut pos = 6usize;
    let mut topics = Vec::new();
    for _ in 0..count.max(0) {
        let len_bytes: [u8; 2] = data.get(pos..pos + 2)?.try_into().ok()?;
        let len = usize::try_from(i16::from_be_bytes(len_bytes)).ok()?;
        pos += 2;
        let name = data.get(pos..pos.checked_add(len)?)?;
        topics.push(String::from_utf8(name.to_vec()).ok()?);
        pos += len;
    }
    Some(topics)
}
