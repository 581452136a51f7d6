//! Keyed deadlines of the group coordinator (session expiry, rebalance and sync timeouts).
//!
//! Pure: the coordinator schedules and cancels keys with absolute `deadline_ms`; the runtime
//! asks for `next_deadline` and calls the coordinator's `expire(now_ms)` when it passes.
//! Invariant: a key has at most one deadline; scheduling it again replaces the old one.

use std::collections::{BTreeSet, HashMap};

/// What a deadline is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKey {
    /// A member's session (or, for a new member, its join) timeout.
    Heartbeat { group: String, member: String },
    /// A member that got MEMBER_ID_REQUIRED and has not joined again yet.
    PendingMember { group: String, member: String },
    /// The end of the join phase (initial delay or rebalance timeout).
    Join { group: String },
    /// Members that have not sent SyncGroup by the rebalance timeout.
    Sync { group: String },
}

#[derive(Debug, Default)]
pub struct Timers {
    /// Deadlines in order; `u64` breaks ties by scheduling order.
    queue: BTreeSet<(i64, u64, TimerKey)>,
    by_key: HashMap<TimerKey, (i64, u64)>,
    seq: u64,
}

impl Timers {
    pub fn schedule(&mut self, key: TimerKey, deadline_ms: i64) {
        self.cancel(&key);
        self.seq += 1;
        self.queue.insert((deadline_ms, self.seq, key.clone()));
        self.by_key.insert(key, (deadline_ms, self.seq));
    }

    pub fn cancel(&mut self, key: &TimerKey) {
        if let Some((deadline, seq)) = self.by_key.remove(key) {
            self.queue.remove(&(deadline, seq, key.clone()));
        }
    }

    /// Cancels every timer of a group (it was deleted).
    pub fn cancel_group(&mut self, group: &str) {
        let keys: Vec<TimerKey> = self
            .by_key
            .keys()
            .filter(|k| match k {
                TimerKey::Heartbeat { group: g, .. }
                | TimerKey::PendingMember { group: g, .. }
                | TimerKey::Join { group: g }
                | TimerKey::Sync { group: g } => g == group,
            })
            .cloned()
            .collect();
        for k in keys {
            self.cancel(&k);
        }
    }

    pub fn deadline(&self, key: &TimerKey) -> Option<i64> {
        self.by_key.get(key).map(|&(d, _)| d)
    }

    pub fn next_deadline(&self) -> Option<i64> {
        self.queue.first().map(|(d, _, _)| *d)
    }

    /// Removes and returns the first key due at `now_ms`, if any.
    pub fn pop_due(&mut self, now_ms: i64) -> Option<TimerKey> {
        let first = self.queue.first()?;
        if first.0 > now_ms {
            return None;
        }
        let (_, _, key) = self.queue.pop_first()?;
        self.by_key.remove(&key);
        Some(key)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(g: &str) -> TimerKey {
        TimerKey::Join { group: g.into() }
    }

    #[test]
    fn reschedule_replaces_and_pop_is_in_deadline_order() {
        let mut t = Timers::default();
        t.schedule(join("a"), 100);
        t.schedule(join("b"), 50);
        t.schedule(join("a"), 30);
        assert_eq!(t.len(), 2);
        assert_eq!(t.next_deadline(), Some(30));
        assert_eq!(t.pop_due(10), None);
        assert_eq!(t.pop_due(60), Some(join("a")));
        assert_eq!(t.pop_due(60), Some(join("b")));
        assert_eq!(t.pop_due(1000), None);
        assert!(t.is_empty());
    }

    #[test]
    fn cancel_group_removes_only_that_group() {
        let mut t = Timers::default();
        t.schedule(join("a"), 1);
        t.schedule(
            TimerKey::Heartbeat {
                group: "a".into(),
                member: "m".into(),
            },
            2,
        );
        t.schedule(join("b"), 3);
        t.cancel_group("a");
        assert_eq!(t.len(), 1);
        assert_eq!(t.deadline(&join("b")), Some(3));
    }
}
