//! The follower's side of a replica fetch session (KIP-227), as Kafka's `FetchSessionHandler`:
//! the first round names every partition (epoch 0, which creates a session on the leader);
//! later rounds name only partitions that are new or changed since the leader last heard of
//! them (fetch offset, leader epoch, log start offset) and forget those no longer fetched,
//! and the leader answers only partitions with news. A session error or a lost connection
//! starts a new session with a full round.
//!
//! What the leader holds for each partition is stamped on the fetcher's own target (a
//! `Stamp`: this session's generation and what was sent), so a round compares each partition
//! with its stamp instead of looking it up here; this module keeps only the set of member
//! names, touched when partitions join or leave.

use std::collections::BTreeSet;

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

/// One partition of a round: its name, what to send, and its stamp from earlier rounds.
pub struct RoundEntry<'a> {
    pub tp: &'a TopicPartition,
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
    /// Partitions the leader's session should drop.
    pub forget: Vec<TopicPartition>,
    /// A full round (no session yet): it names every partition.
    full: bool,
}

/// A follower's session with one leader.
#[derive(Debug, Default)]
pub struct FollowerSession {
    /// 0: no session; the next round is full and asks for one.
    id: i32,
    next_epoch: i32,
    /// Bumped per session, so stamps of an earlier session never count.
    generation: u64,
    /// The partitions the leader's session holds.
    members: BTreeSet<TopicPartition>,
}

impl FollowerSession {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the session: the next round is full and creates a new one. The leader drops
    /// the old session once it has been idle long enough.
    pub fn reset(&mut self) {
        self.id = 0;
        self.next_epoch = 0;
        self.generation += 1;
        self.members.clear();
    }

    /// What the leader's session holds for a partition, if its stamp is of this session
    /// (asked only while one is open).
    fn current(&self, stamp: Option<Stamp>) -> Option<Sent> {
        stamp
            .filter(|s| s.generation == self.generation)
            .map(|s| s.sent)
    }

    /// The request for a round over `entries` (sorted by partition, each at most once).
    pub fn plan(&self, entries: &[RoundEntry<'_>]) -> RoundPlan {
        if self.id == 0 {
            return RoundPlan {
                session_id: 0,
                epoch: 0,
                include: (0..entries.len()).collect(),
                forget: Vec::new(),
                full: true,
            };
        }
        let mut include = Vec::new();
        let mut stamped = 0usize;
        for (i, e) in entries.iter().enumerate() {
            match self.current(e.stamp) {
                Some(sent) => {
                    stamped += 1;
                    if sent != e.sent {
                        include.push(i);
                    }
                }
                None => include.push(i),
            }
        }
        // Every member in this round carries a current stamp (forgetting clears it), so the
        // counts differ only when a member is missing from the round.
        let forget = if stamped == self.members.len() {
            Vec::new()
        } else {
            self.members
                .iter()
                .filter(|m| entries.binary_search_by(|e| e.tp.cmp(m)).is_err())
                .cloned()
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
            for tp in &plan.forget {
                self.members.remove(tp);
            }
        }
        let generation = self.generation;
        let stamps = plan
            .include
            .iter()
            .filter_map(|&i| entries.get(i))
            .map(|e| {
                if !self.members.contains(e.tp) {
                    self.members.insert(e.tp.clone());
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
