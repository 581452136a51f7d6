//! The follower's side of a replica fetch session (KIP-227), as Kafka's `FetchSessionHandler`:
//! the first round names every partition (epoch 0, which creates a session on the leader);
//! later rounds name only partitions that are new or changed since the leader last heard of
//! them (fetch offset, leader epoch, log start offset) and forget those no longer fetched,
//! and the leader answers only partitions with news. A session error or a lost connection
//! starts a new session with a full round, which names the old session so the leader closes
//! it at once (Kafka's `nextCloseExistingAttemptNew`) instead of holding it until it idles
//! out.
//!
//! Partitions are fetched by topic id (Fetch v13+), so the leader's session holds each under
//! its id: a topic deleted and re-created under the same name is a new member, and the old
//! one is forgotten under the id it was sent with (Kafka's handler does the same when a
//! partition's id changes).
//!
//! What the leader holds for each partition is stamped on the fetcher's own target (a
//! `Stamp`: this session's generation and what was sent), so a round compares each partition
//! with its stamp instead of looking it up here; this module keeps only the members' names
//! and ids, touched when partitions join or leave.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::partition::TopicPartition;

/// What a follower sends for one partition, and what the leader's session then holds for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub fetch_offset: i64,
    pub leader_epoch: i32,
    pub log_start_offset: i64,
}

/// What the leader's session holds for a partition, as of the session `generation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    generation: u64,
    sent: Sent,
}

/// One partition of a round: its name and topic id, what to send, and its stamp from earlier
/// rounds.
pub struct RoundEntry<'a> {
    pub tp: &'a TopicPartition,
    pub topic_id: Uuid,
    pub sent: Sent,
    pub stamp: Option<Stamp>,
}

/// What one round's request carries.
#[derive(Debug, PartialEq, Eq)]
pub struct RoundPlan {
    pub session_id: i32,
    pub epoch: i32,
    /// Indexes into the round's entries of the partitions to name.
    pub include: Vec<usize>,
    /// Partitions the leader's session should drop, with the topic id it holds them under.
    pub forget: Vec<(TopicPartition, Uuid)>,
    /// A full round (no session yet): it names every partition.
    full: bool,
}

/// A follower's session with one leader.
#[derive(Debug, Default)]
pub struct FollowerSession {
    /// 0: no session; the next round is full and asks for one.
    id: i32,
    /// The session given up by `reset`, which the next full round asks the leader to close.
    closing: i32,
    next_epoch: i32,
    /// Bumped per session, so stamps of an earlier session never count.
    generation: u64,
    /// The partitions the leader's session holds, with the topic id each was sent with.
    members: BTreeMap<TopicPartition, Uuid>,
}

impl FollowerSession {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the session: the next round is full, creates a new one and names this one for
    /// the leader to close.
    pub fn reset(&mut self) {
        if self.id != 0 {
            self.closing = self.id;
        }
        self.id = 0;
        self.next_epoch = 0;
        self.generation += 1;
        self.members.clear();
    }

    /// What the leader's session holds for an entry's partition, if its stamp is of this
    /// session and the partition is held under the entry's topic id (asked only while a
    /// session is open).
    fn current(&self, e: &RoundEntry<'_>) -> Option<Sent> {
        e.stamp
            .filter(|s| s.generation == self.generation)
            .filter(|_| self.members.get(e.tp) == Some(&e.topic_id))
            .map(|s| s.sent)
    }

    /// The request for a round over `entries` (sorted by partition, each at most once).
    pub fn plan(&self, entries: &[RoundEntry<'_>]) -> RoundPlan {
        if self.id == 0 {
            return RoundPlan {
                session_id: self.closing,
                epoch: 0,
                include: (0..entries.len()).collect(),
                forget: Vec::new(),
                full: true,
            };
        }
        let mut include = Vec::new();
        let mut stamped = 0usize;
        for (i, e) in entries.iter().enumerate() {
            match self.current(e) {
                Some(sent) => {
                    stamped += 1;
                    if sent != e.sent {
                        include.push(i);
                    }
                }
                None => include.push(i),
            }
        }
        // Every member in this round under its id carries a current stamp (forgetting clears
        // it), so the counts differ only when a member is missing from the round or the round
        // names its partition under another topic id (the topic was re-created).
        let forget = if stamped == self.members.len() {
            Vec::new()
        } else {
            self.members
                .iter()
                .filter(|&(m, id)| {
                    entries
                        .binary_search_by(|e| e.tp.cmp(m))
                        .ok()
                        .and_then(|i| entries.get(i))
                        .is_none_or(|e| e.topic_id != *id)
                })
                .map(|(m, id)| (m.clone(), *id))
                .collect()
        };
        RoundPlan {
            session_id: self.id,
            epoch: self.next_epoch,
            include,
            forget,
            full: false,
        }
    }

    /// Records the leader's answer to `plan` (no top-level error). Returns the stamp for each
    /// partition the plan named (in `plan.include` order), or `None` when there is no session
    /// (the leader would not open one), so nothing is stamped.
    pub fn complete(
        &mut self,
        plan: &RoundPlan,
        entries: &[RoundEntry<'_>],
        response_session_id: i32,
    ) -> Option<Vec<Stamp>> {
        if plan.full {
            // The leader closed the session the round named, whether or not it opened one.
            self.closing = 0;
            if response_session_id == 0 {
                return None;
            }
            self.reset();
            self.id = response_session_id;
            self.next_epoch = 1;
        } else {
            self.next_epoch = if self.next_epoch == i32::MAX {
                1
            } else {
                self.next_epoch + 1
            };
            for (tp, id) in &plan.forget {
                if self.members.get(tp) == Some(id) {
                    self.members.remove(tp);
                }
            }
        }
        let generation = self.generation;
        let stamps = plan
            .include
            .iter()
            .filter_map(|&i| entries.get(i))
            .map(|e| {
                match self.members.get_mut(e.tp) {
                    Some(id) => *id = e.topic_id,
                    None => {
                        self.members.insert(e.tp.clone(), e.topic_id);
                    }
                }
                Stamp {
                    generation,
                    sent: e.sent,
                }
            })
            .collect();
        Some(stamps)
    }
}

#[cfg(test)]
#[path = "fetch_session_tests.rs"]
mod tests;
