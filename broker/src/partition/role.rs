//! The role of a partition replica and, for a cluster leader, the replication bookkeeping:
//! each follower's log end offset and when it was last caught up, the ISR, and the high
//! watermark derived from them.
//!
//! Pure (no clock, no I/O): callers pass `now_ms` and the leader's own log end, so the rules
//! can be tested directly and driven by a simulator later.
//!
//! Invariants:
//! - the high watermark is the minimum of the leader's own committed offset and the log end
//!   offset of every follower in the ISR the leader uses for it (the "maximal ISR": the
//!   committed ISR plus any follower whose addition was proposed, so an acknowledgement never
//!   skips a replica the controller might elect);
//! - a follower proposed for removal keeps counting until the controller's new ISR arrives;
//! - a follower outside the ISR that is caught up (its last fetch reached the leader's log end
//!   as of its previous fetch: "joining") holds the high watermark back too, as Kafka's
//!   `maybeIncrementLeaderHW` does for `shouldWaitForReplicaToJoinIsr`: otherwise, with
//!   producers writing, the high watermark of an ISR of the leader alone runs ahead of every
//!   follower round trip and no follower ever reaches it to join. A joiner stops holding it
//!   when a fetch finds it behind, when the controller's ISR drops it, or once it has not
//!   fetched for the lag limit (`clear_silent_joiners`).

use std::collections::BTreeMap;

/// What a replica of a partition is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The only copy (single-node broker): takes writes, high watermark = durable offset.
    Single,
    /// The cluster leader.
    Leader(LeaderState),
    /// A follower replicating from `leader`.
    Follower { leader: i32 },
    /// No leader known (or the partition is closing): neither reads nor writes.
    Offline,
}

impl Role {
    /// Whether produce requests may append here.
    pub fn accepts_writes(&self) -> bool {
        matches!(self, Role::Single | Role::Leader(_))
    }

    /// Whether consumers may read here.
    pub fn serves_reads(&self) -> bool {
        self.accepts_writes()
    }
}

/// A follower as seen by the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end offset (its last fetch offset); -1 until it fetched.
    pub log_end_offset: i64,
    /// The follower's log start offset as its last fetch said (-1: unknown).
    pub log_start_offset: i64,
    /// When the follower last was fully caught up with the leader's log end.
    pub last_caught_up_ms: i64,
    /// Leader log end offset at the follower's previous fetch, and that fetch's time (Kafka's
    /// rule: fetching from at least the previous fetch's leader log end means the follower was
    /// caught up at the previous fetch).
    last_fetch_leader_leo: i64,
    last_fetch_ms: i64,
    /// Outside the ISR and caught up at its last fetch: counted for the high watermark.
    joining: bool,
}

/// What a follower fetch told the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerFetch {
    /// The follower is not in the ISR but has caught up to the high watermark: propose to add
    /// it.
    pub should_join_isr: bool,
}

/// The leader's replication state of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderState {
    my_id: i32,
    /// The partition epoch the ISR below was committed at (AlterPartition must name it).
    partition_epoch: i32,
    /// The committed ISR, as the controller last published it.
    isr: Vec<i32>,
    /// Followers proposed for addition and not yet in the committed ISR.
    pending_additions: Vec<i32>,
    /// Whether an AlterPartition is in flight (one at a time, as Kafka does).
    pub alter_in_flight: bool,
    replicas: Vec<i32>,
    followers: BTreeMap<i32, FollowerProgress>,
    /// The offset at which this leadership started; a follower joins the ISR only once it
    /// reached it (it then holds every batch of the current epoch it is judged on).
    pub epoch_start_offset: i64,
    /// The current high watermark (maintained by the caller through `high_watermark`).
    last_hw: i64,
    /// Replicas the controller holds fenced (or shutting down): never joining, as Kafka's
    /// `isReplicaIsrEligible` keeps them from holding the high watermark.
    ineligible: Vec<i32>,
}

impl LeaderState {
    pub fn new(
        my_id: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
        replicas: Vec<i32>,
        now_ms: i64,
    ) -> Self {
        let followers = replicas
            .iter()
            .filter(|&&r| r != my_id)
            .map(|&r| {
                (
                    r,
                    FollowerProgress {
                        log_end_offset: -1,
                        log_start_offset: -1,
                        // A new leader gives every follower a full lag period to show up.
                        last_caught_up_ms: now_ms,
                        last_fetch_leader_leo: -1,
                        last_fetch_ms: now_ms,
                        joining: false,
                    },
                )
            })
            .collect();
        LeaderState {
            my_id,
            partition_epoch,
            isr,
            pending_additions: Vec::new(),
            alter_in_flight: false,
            replicas,
            followers,
            epoch_start_offset: -1,
            last_hw: -1,
            ineligible: Vec::new(),
        }
    }

    /// The controller published a new ISR / partition epoch for the same leadership.
    pub fn update_from_controller(
        &mut self,
        partition_epoch: i32,
        isr: Vec<i32>,
        replicas: Vec<i32>,
    ) {
        if partition_epoch != self.partition_epoch {
            // A new committed state: any proposal made on the old one is applied or refused.
            self.alter_in_flight = false;
            self.pending_additions.clear();
        }
        self.partition_epoch = partition_epoch;
        self.pending_additions.retain(|r| !isr.contains(r));
        // A follower the controller took out of the ISR (the leader's lag check, or fencing)
        // holds the high watermark again only after a caught-up fetch.
        for (r, f) in self.followers.iter_mut() {
            if self.isr.contains(r) && !isr.contains(r) {
                f.joining = false;
            }
        }
        self.isr = isr;
        // A replica added by reassignment gets a lag period from the latest fetch seen.
        let latest_fetch_ms = self
            .followers
            .values()
            .map(|f| f.last_fetch_ms)
            .max()
            .unwrap_or(0);
        for &r in &replicas {
            if r != self.my_id {
                self.followers.entry(r).or_insert(FollowerProgress {
                    log_end_offset: -1,
                    log_start_offset: -1,
                    last_caught_up_ms: latest_fetch_ms,
                    last_fetch_leader_leo: -1,
                    last_fetch_ms: latest_fetch_ms,
                    joining: false,
                });
            }
        }
        self.followers.retain(|r, _| replicas.contains(r));
        self.replicas = replicas;
    }

    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }

    /// The committed ISR.
    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    pub fn replicas(&self) -> &[i32] {
        &self.replicas
    }

    pub fn follower(&self, id: i32) -> Option<&FollowerProgress> {
        self.followers.get(&id)
    }

    /// The ISR used for the high watermark: committed plus proposed additions.
    fn maximal_isr(&self) -> impl Iterator<Item = i32> + '_ {
        self.isr
            .iter()
            .copied()
            .chain(self.pending_additions.iter().copied())
    }

    /// The high watermark given the leader's own committed offset `local`: the minimum over
    /// the maximal ISR and the joining followers.
    pub fn high_watermark(&mut self, local: i64) -> i64 {
        let mut hw = local;
        for r in self.maximal_isr() {
            if r == self.my_id {
                continue;
            }
            let leo = self.followers.get(&r).map_or(-1, |f| f.log_end_offset);
            hw = hw.min(leo);
        }
        for f in self.followers.values().filter(|f| f.joining) {
            hw = hw.min(f.log_end_offset);
        }
        if hw > self.last_hw {
            self.last_hw = hw;
        }
        hw
    }

    /// Record a follower fetch from `fetch_offset` (its log starting at `log_start_offset`)
    /// while the leader's log ends at `leader_leo`. `None` for a broker that is not a replica.
    pub fn record_fetch(
        &mut self,
        follower: i32,
        fetch_offset: i64,
        log_start_offset: i64,
        leader_leo: i64,
        now_ms: i64,
    ) -> Option<FollowerFetch> {
        let in_isr = self.isr.contains(&follower) || self.pending_additions.contains(&follower);
        let f = self.followers.get_mut(&follower)?;
        let caught_up = if fetch_offset >= leader_leo {
            f.last_caught_up_ms = now_ms;
            true
        } else if fetch_offset >= f.last_fetch_leader_leo && f.last_fetch_leader_leo >= 0 {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
            true
        } else {
            false
        };
        f.last_fetch_leader_leo = leader_leo;
        f.last_fetch_ms = now_ms;
        f.log_end_offset = fetch_offset;
        f.log_start_offset = log_start_offset;
        f.joining = !in_isr && caught_up && !self.ineligible.contains(&follower);
        let hw = self.last_hw.max(0);
        // A fenced replica is not proposed (Kafka's `canAddReplicaToIsr` checks
        // `isReplicaIsrEligible` before asking): the controller would refuse it, once per fetch.
        let should_join_isr = !in_isr
            && !self.alter_in_flight
            && !self.ineligible.contains(&follower)
            && fetch_offset >= hw
            && fetch_offset >= self.epoch_start_offset;
        Some(FollowerFetch { should_join_isr })
    }

    /// KIP-392, Kafka's `RackAwareReplicaSelector`: the replica a consumer in `client_rack`
    /// should fetch from at `fetch_offset`, if not this leader. Candidates are the in-sync
    /// followers that hold `fetch_offset` (already written, not yet deleted by retention:
    /// Kafka's `findPreferredReadReplica`; `rack_of` gives a broker's rack); among
    /// those in the client's rack the one with the highest log end wins (ties: the most
    /// recently caught up). `None` (read here) when the client names no rack, when the leader
    /// is in it, or when no candidate is.
    pub fn preferred_read_replica(
        &self,
        client_rack: &str,
        leader_rack: Option<&str>,
        fetch_offset: i64,
        rack_of: impl Fn(i32) -> Option<String>,
    ) -> Option<i32> {
        if client_rack.is_empty() || leader_rack == Some(client_rack) {
            return None;
        }
        self.isr
            .iter()
            .filter(|&&r| r != self.my_id)
            .filter_map(|&r| self.followers.get(&r).map(|f| (r, f)))
            .filter(|(_, f)| f.log_start_offset <= fetch_offset && f.log_end_offset >= fetch_offset)
            .filter(|(r, _)| rack_of(*r).as_deref() == Some(client_rack))
            .max_by_key(|(_, f)| (f.log_end_offset, f.last_caught_up_ms))
            .map(|(r, _)| r)
    }

    /// Followers in the ISR not caught up for longer than `lag_max_ms`.
    pub fn lagging_followers(&self, now_ms: i64, lag_max_ms: i64) -> Vec<i32> {
        self.isr
            .iter()
            .copied()
            .filter(|&r| r != self.my_id)
            .filter(|r| {
                self.followers
                    .get(r)
                    .is_none_or(|f| now_ms.saturating_sub(f.last_caught_up_ms) > lag_max_ms)
            })
            .collect()
    }

    /// The replicas the controller holds fenced now (from every applied metadata change):
    /// they stop holding the high watermark at once and do not join until unfenced.
    pub fn set_ineligible(&mut self, fenced: Vec<i32>) {
        for r in &fenced {
            if let Some(f) = self.followers.get_mut(r) {
                f.joining = false;
            }
        }
        self.ineligible = fenced;
    }

    /// Followers outside the ISR that have not fetched for longer than `lag_max_ms` stop
    /// holding the high watermark (a joiner that died).
    /// Returns whether one stopped.
    pub fn clear_silent_joiners(&mut self, now_ms: i64, lag_max_ms: i64) -> bool {
        let mut cleared = false;
        for f in self.followers.values_mut() {
            if f.joining && now_ms.saturating_sub(f.last_fetch_ms) > lag_max_ms {
                f.joining = false;
                cleared = true;
            }
        }
        cleared
    }

    /// ISR members the leader still hears from: itself and every ISR follower caught up within
    /// `lag_max_ms`. Used for `min.insync.replicas` so that acks=all is refused when the
    /// followers went silent, even if the controller could not shrink the ISR (no quorum).
    pub fn live_isr_len(&self, now_ms: i64, lag_max_ms: i64) -> usize {
        let lagging = self.lagging_followers(now_ms, lag_max_ms);
        self.isr.iter().filter(|r| !lagging.contains(r)).count()
    }

    /// Note a proposed addition (counted for the high watermark at once).
    pub fn propose_addition(&mut self, follower: i32) {
        if !self.pending_additions.contains(&follower) {
            self.pending_additions.push(follower);
        }
        self.alter_in_flight = true;
    }

    /// A proposal failed: forget it (a pending addition no longer counts).
    pub fn proposal_failed(&mut self) {
        self.alter_in_flight = false;
        self.pending_additions.clear();
    }

    /// The ISR to propose with `follower` added, in replica order.
    pub fn isr_with(&self, follower: i32) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| *r == follower || self.isr.contains(r))
            .collect()
    }

    /// The ISR to propose without `removed`.
    pub fn isr_without(&self, removed: &[i32]) -> Vec<i32> {
        self.isr
            .iter()
            .copied()
            .filter(|r| !removed.contains(r))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn leader() -> LeaderState {
        let mut s = LeaderState::new(1, 0, vec![1, 2, 3], vec![1, 2, 3], 0);
        s.epoch_start_offset = 0;
        s
    }

    #[test]
    fn high_watermark_is_the_minimum_over_the_isr() {
        let mut s = leader();
        assert_eq!(s.high_watermark(10), -1, "followers have not fetched yet");
        s.record_fetch(2, 10, 0, 10, 5);
        assert_eq!(s.high_watermark(10), -1);
        s.record_fetch(3, 7, 0, 10, 5);
        assert_eq!(s.high_watermark(10), 7);
        assert_eq!(
            s.high_watermark(6),
            6,
            "the leader's own durable offset bounds it"
        );
    }

    #[test]
    fn a_follower_outside_the_isr_does_not_hold_back_the_high_watermark() {
        let mut s = LeaderState::new(1, 0, vec![1, 2], vec![1, 2, 3], 0);
        s.record_fetch(2, 10, 0, 10, 5);
        assert_eq!(s.high_watermark(10), 10);
        let f = s.record_fetch(3, 4, 0, 10, 6).unwrap();
        assert!(!f.should_join_isr, "behind the high watermark");
        let f = s.record_fetch(3, 10, 0, 10, 7).unwrap();
        assert!(f.should_join_isr);
        s.propose_addition(3);
        assert_eq!(s.isr_with(3), vec![1, 2, 3]);
        s.record_fetch(3, 9, 0, 12, 8);
        assert_eq!(s.high_watermark(12), 9, "a proposed member counts at once");
        s.update_from_controller(1, vec![1, 2, 3], vec![1, 2, 3]);
        assert!(!s.alter_in_flight);
        assert_eq!(s.isr(), &[1, 2, 3]);
    }

    /// With an ISR of the leader alone and producers writing, the high watermark (the
    /// leader's own durable offset) moves on during every follower round trip. A follower
    /// keeping up (fetching from the leader's end as of its previous fetch) holds it back,
    /// reaches it and joins; before, it never did while writes went on.
    #[test]
    fn a_caught_up_follower_reaches_a_moving_high_watermark_and_joins() {
        let mut s = LeaderState::new(1, 0, vec![1], vec![1, 2], 0);
        s.epoch_start_offset = 0;
        let mut leader_end = 100;
        let mut follower_at = 50;
        let mut joined_at = None;
        for step in 0..20 {
            let hw = s.high_watermark(leader_end);
            let fetch = s.record_fetch(2, follower_at, 0, leader_end, step).unwrap();
            if fetch.should_join_isr {
                joined_at = Some(step);
                break;
            }
            s.high_watermark(leader_end);
            // The follower gets everything up to the leader's end; 10 more records land
            // during its round trip.
            follower_at = leader_end;
            leader_end += 10;
            assert!(hw <= leader_end);
        }
        assert!(joined_at.is_some_and(|s| s <= 3), "joined at {joined_at:?}");
    }

    /// A joiner stops holding the high watermark when it falls behind, when it stops
    /// fetching for the lag limit, or when the controller's ISR drops it.
    #[test]
    fn a_joiner_stops_holding_the_high_watermark() {
        let mut s = LeaderState::new(1, 0, vec![1], vec![1, 2], 0);
        s.record_fetch(2, 10, 0, 10, 0);
        assert_eq!(s.high_watermark(20), 10, "caught up: held at its offset");
        s.record_fetch(2, 8, 0, 30, 10);
        assert_eq!(
            s.high_watermark(30),
            30,
            "behind the previous fetch's end: not held"
        );
        s.record_fetch(2, 30, 0, 30, 20);
        assert_eq!(s.high_watermark(40), 30);
        s.clear_silent_joiners(20 + 1_000, 1_000);
        assert_eq!(s.high_watermark(40), 30, "silent for exactly the lag limit");
        s.clear_silent_joiners(20 + 1_001, 1_000);
        assert_eq!(s.high_watermark(40), 40, "silent for longer");
        // Fenced: no hold, even caught up, until the controller unfences it.
        s.record_fetch(2, 40, 0, 40, 1_500);
        assert_eq!(s.high_watermark(45), 40);
        s.set_ineligible(vec![2]);
        assert_eq!(s.high_watermark(45), 45);
        let fetch = s.record_fetch(2, 45, 0, 45, 1_600).unwrap();
        assert!(!fetch.should_join_isr, "not proposed while fenced");
        assert_eq!(s.high_watermark(50), 50);
        s.set_ineligible(vec![]);
        // Joined, then dropped by the controller: no hold until a caught-up fetch.
        s.record_fetch(2, 40, 0, 40, 2_000);
        s.update_from_controller(1, vec![1, 2], vec![1, 2]);
        s.update_from_controller(2, vec![1], vec![1, 2]);
        assert_eq!(s.high_watermark(50), 50);
    }

    #[test]
    fn lag_uses_the_last_caught_up_time() {
        let mut s = leader();
        s.record_fetch(2, 10, 0, 10, 1_000);
        s.record_fetch(3, 5, 0, 10, 1_000);
        assert_eq!(s.lagging_followers(20_000, 30_000), Vec::<i32>::new());
        // 3 fetches from the previous fetch's leader end: caught up as of that fetch.
        s.record_fetch(3, 10, 0, 20, 25_000);
        assert_eq!(s.follower(3).unwrap().last_caught_up_ms, 1_000);
        s.record_fetch(2, 20, 0, 20, 40_000);
        assert_eq!(s.lagging_followers(40_000, 30_000), vec![3]);
        assert_eq!(s.live_isr_len(40_000, 30_000), 2);
        assert_eq!(s.isr_without(&[3]), vec![1, 2]);
    }

    #[test]
    fn rack_aware_selection_picks_an_in_sync_follower_in_the_clients_rack() {
        let mut s = leader();
        let rack = |id: i32| Some(format!("RACK{id}"));
        s.record_fetch(2, 10, 0, 10, 5);
        s.record_fetch(3, 10, 0, 10, 5);
        assert_eq!(
            s.preferred_read_replica("RACK3", Some("RACK1"), 10, rack),
            Some(3)
        );
        assert_eq!(
            s.preferred_read_replica("RACK1", Some("RACK1"), 0, rack),
            None,
            "leader's rack"
        );
        assert_eq!(
            s.preferred_read_replica("", Some("RACK1"), 0, rack),
            None,
            "no client rack"
        );
        assert_eq!(
            s.preferred_read_replica("RACK9", Some("RACK1"), 0, rack),
            None,
            "no such rack"
        );
        assert_eq!(
            s.preferred_read_replica("RACK3", Some("RACK1"), 11, rack),
            None,
            "the follower does not hold the offset yet"
        );
        s.update_from_controller(1, vec![1, 2], vec![1, 2, 3]);
        assert_eq!(
            s.preferred_read_replica("RACK3", Some("RACK1"), 10, rack),
            None,
            "out of the ISR"
        );
        // Two followers in the rack: the one further ahead.
        let same = |_: i32| Some("R".to_string());
        let mut s = leader();
        s.record_fetch(2, 8, 0, 10, 5);
        s.record_fetch(3, 10, 0, 10, 5);
        assert_eq!(s.preferred_read_replica("R", None, 5, same), Some(3));
        // The one further ahead no longer holds the offset (retention moved its log start).
        s.record_fetch(3, 10, 6, 10, 6);
        assert_eq!(s.preferred_read_replica("R", None, 5, same), Some(2));
        assert_eq!(s.preferred_read_replica("R", None, 9, same), Some(3));
    }

    #[test]
    fn unknown_followers_are_ignored() {
        let mut s = leader();
        assert!(s.record_fetch(9, 10, 0, 10, 1).is_none());
    }
}
