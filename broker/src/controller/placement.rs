//! Replica placement for new topics and partitions: Kafka's round-robin assignment, rack-aware
//! when the brokers have racks.
//!
//! Pure and deterministic for a given `start_index` (Kafka draws it at random; the active
//! controller does too, before proposing, and the chosen assignment travels in the command).
//! Leaders (the first replica) are spread evenly over the brokers; followers are shifted so that
//! the replicas of a broker's partitions are spread too; with racks, brokers are interleaved by
//! rack and each partition's replicas cover as many racks as possible.

use std::collections::{BTreeMap, BTreeSet};

/// A broker that may receive replicas (the caller passes only unfenced brokers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerPlacement {
    pub broker_id: i32,
    pub rack: Option<String>,
}

/// Why no assignment could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("number of partitions must be larger than 0, got {0}")]
    InvalidPartitionCount(i32),
    #[error("replication factor {replication_factor} is not in 1..={available_brokers} (available brokers)")]
    InvalidReplicationFactor {
        replication_factor: i16,
        available_brokers: usize,
    },
    #[error("some brokers have a rack and some do not")]
    InconsistentRacks,
    #[error("broker {0} is listed twice")]
    DuplicateBroker(i32),
    #[error("the rack-aware assignment found no replica (bug)")]
    NoCandidate,
}

/// Assign `replication_factor` replicas to each of `partitions` partitions numbered from
/// `start_partition` (non-zero when adding partitions to a topic). `start_index` picks the first
/// partition's leader; any value is accepted (it is taken modulo the broker count).
pub fn assign_replicas(
    brokers: &[BrokerPlacement],
    partitions: i32,
    replication_factor: i16,
    start_index: usize,
    start_partition: i32,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    if partitions <= 0 {
        return Err(PlacementError::InvalidPartitionCount(partitions));
    }
    let rf = usize::try_from(replication_factor).unwrap_or(0);
    if rf == 0 || rf > brokers.len() {
        return Err(PlacementError::InvalidReplicationFactor {
            replication_factor,
            available_brokers: brokers.len(),
        });
    }
    let mut seen = BTreeSet::new();
    for b in brokers {
        if !seen.insert(b.broker_id) {
            return Err(PlacementError::DuplicateBroker(b.broker_id));
        }
    }
    let with_rack = brokers.iter().filter(|b| b.rack.is_some()).count();
    let count = usize::try_from(partitions).unwrap_or(0);
    let first_partition = usize::try_from(start_partition).unwrap_or(0);
    if with_rack == 0 {
        let mut ids: Vec<i32> = brokers.iter().map(|b| b.broker_id).collect();
        ids.sort_unstable();
        Ok(rack_unaware(&ids, count, rf, start_index, first_partition))
    } else if with_rack == brokers.len() {
        rack_aware(brokers, count, rf, start_index, first_partition)
    } else {
        Err(PlacementError::InconsistentRacks)
    }
}

/// Index of the `replica`-th follower for a partition led by `first`: a shift in
/// `1..n` so that a follower is never the leader.
fn replica_index(first: usize, second_replica_shift: usize, replica: usize, n: usize) -> usize {
    let shift = 1 + (second_replica_shift + replica) % (n - 1);
    (first + shift) % n
}

fn rack_unaware(
    ids: &[i32],
    count: usize,
    rf: usize,
    start_index: usize,
    first_partition: usize,
) -> Vec<Vec<i32>> {
    let n = ids.len();
    let start = start_index % n;
    let mut shift = start;
    let mut out = Vec::with_capacity(count);
    for partition in first_partition..first_partition + count {
        if partition > 0 && partition % n == 0 {
            shift += 1;
        }
        let first = (partition + start) % n;
        let mut replicas = Vec::with_capacity(rf);
        replicas.extend(ids.get(first).copied());
        for j in 0..rf - 1 {
            replicas.extend(ids.get(replica_index(first, shift, j, n)).copied());
        }
        out.push(replicas);
    }
    out
}

/// Brokers interleaved by rack: racks sorted, brokers sorted within a rack, one from each rack
/// in turn (Kafka's `getRackAlternatedBrokerList`).
fn rack_alternated(brokers: &[BrokerPlacement]) -> Vec<(i32, String)> {
    let mut by_rack: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for b in brokers {
        by_rack
            .entry(b.rack.clone().unwrap_or_default())
            .or_default()
            .push(b.broker_id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let mut iters: Vec<(String, std::vec::IntoIter<i32>)> = by_rack
        .into_iter()
        .map(|(rack, ids)| (rack, ids.into_iter()))
        .collect();
    let mut out = Vec::with_capacity(brokers.len());
    while out.len() < brokers.len() {
        for (rack, ids) in iters.iter_mut() {
            if let Some(id) = ids.next() {
                out.push((id, rack.clone()));
            }
        }
    }
    out
}

fn rack_aware(
    brokers: &[BrokerPlacement],
    count: usize,
    rf: usize,
    start_index: usize,
    first_partition: usize,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    let arranged = rack_alternated(brokers);
    let n = arranged.len();
    let rack_count = arranged
        .iter()
        .map(|(_, rack)| rack)
        .collect::<BTreeSet<_>>()
        .len();
    let start = start_index % n;
    let mut shift = start;
    let mut out = Vec::with_capacity(count);
    for partition in first_partition..first_partition + count {
        if partition > 0 && partition % n == 0 {
            shift += 1;
        }
        let first = (partition + start) % n;
        let (leader, leader_rack) = arranged.get(first).ok_or(PlacementError::NoCandidate)?;
        let mut replicas = vec![*leader];
        let mut racks: BTreeSet<&str> = BTreeSet::from([leader_rack.as_str()]);
        let mut used: BTreeSet<i32> = BTreeSet::from([*leader]);
        let mut k = 0;
        // Every n-1 consecutive k visit every other broker once, so rf*n steps always suffice.
        let max_steps = rf * n + n;
        for _ in 0..rf - 1 {
            loop {
                if k > max_steps {
                    return Err(PlacementError::NoCandidate);
                }
                let (broker, rack) = arranged
                    .get(replica_index(first, shift * rack_count, k, n))
                    .ok_or(PlacementError::NoCandidate)?;
                k += 1;
                let rack_ok = !racks.contains(rack.as_str()) || racks.len() == rack_count;
                let broker_ok = !used.contains(broker) || used.len() == n;
                if rack_ok && broker_ok {
                    replicas.push(*broker);
                    racks.insert(rack.as_str());
                    used.insert(*broker);
                    break;
                }
            }
        }
        out.push(replicas);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use super::*;

    fn plain(ids: &[i32]) -> Vec<BrokerPlacement> {
        ids.iter()
            .map(|&broker_id| BrokerPlacement {
                broker_id,
                rack: None,
            })
            .collect()
    }

    fn racked(list: &[(i32, &str)]) -> Vec<BrokerPlacement> {
        list.iter()
            .map(|&(broker_id, rack)| BrokerPlacement {
                broker_id,
                rack: Some(rack.to_owned()),
            })
            .collect()
    }

    #[test]
    fn rack_unaware_matches_kafka() {
        // Kafka's AdminUtils test: 5 brokers, 10 partitions, rf 3, fixed start index 0.
        let got = assign_replicas(&plain(&[0, 1, 2, 3, 4]), 10, 3, 0, 0).unwrap();
        let expected: Vec<Vec<i32>> = vec![
            vec![0, 1, 2],
            vec![1, 2, 3],
            vec![2, 3, 4],
            vec![3, 4, 0],
            vec![4, 0, 1],
            vec![0, 2, 3],
            vec![1, 3, 4],
            vec![2, 4, 0],
            vec![3, 0, 1],
            vec![4, 1, 2],
        ];
        assert_eq!(got, expected);
    }

    #[test]
    fn rack_aware_matches_kafka() {
        // Kafka's RackAwareAutoTopicCreationTest-style layout: racks alternate in the
        // arranged list [0 (a), 1 (b), 2 (c), 3 (a), 4 (b), 5 (c)].
        let brokers = racked(&[(0, "a"), (1, "b"), (2, "c"), (3, "a"), (4, "b"), (5, "c")]);
        let got = assign_replicas(&brokers, 6, 3, 0, 0).unwrap();
        let rack_of: BTreeMap<i32, String> = brokers
            .iter()
            .map(|b| (b.broker_id, b.rack.clone().unwrap()))
            .collect();
        for replicas in &got {
            let racks: BTreeSet<&String> = replicas.iter().map(|r| &rack_of[r]).collect();
            assert_eq!(racks.len(), 3, "{replicas:?} spans every rack");
        }
        let leaders: BTreeSet<i32> = got.iter().map(|r| r[0]).collect();
        assert_eq!(leaders.len(), 6, "every broker leads one partition");
        assert_eq!(got[0], vec![0, 1, 2]);
    }

    #[test]
    fn uneven_racks_still_cover_racks_and_balance() {
        let brokers = racked(&[(1, "a"), (2, "a"), (3, "a"), (4, "b")]);
        let got = assign_replicas(&brokers, 8, 2, 0, 0).unwrap();
        let rack_of: BTreeMap<i32, &str> = [(1, "a"), (2, "a"), (3, "a"), (4, "b")].into();
        for replicas in &got {
            assert_eq!(replicas.len(), 2);
            let racks: BTreeSet<&str> = replicas.iter().map(|r| rack_of[r]).collect();
            assert_eq!(racks.len(), 2, "{replicas:?}");
        }
    }

    #[test]
    fn every_assignment_is_valid_and_leaders_are_spread() {
        for n in 1..=7 {
            let ids: Vec<i32> = (1..=n).collect();
            for rf in 1..=n {
                for start in 0..n as usize {
                    let parts = n * 3;
                    let got = assign_replicas(&plain(&ids), parts, rf as i16, start, 0).unwrap();
                    assert_eq!(got.len(), parts as usize);
                    let mut leader_count: BTreeMap<i32, usize> = BTreeMap::new();
                    for replicas in &got {
                        assert_eq!(replicas.len(), rf as usize);
                        let distinct: BTreeSet<_> = replicas.iter().collect();
                        assert_eq!(distinct.len(), replicas.len(), "{replicas:?}");
                        *leader_count.entry(replicas[0]).or_default() += 1;
                    }
                    assert!(leader_count.values().all(|&c| c == 3), "{leader_count:?}");
                }
            }
        }
    }

    #[test]
    fn rack_aware_assignments_are_valid() {
        let brokers = racked(&[(1, "a"), (2, "b"), (3, "c"), (4, "a"), (5, "b")]);
        for rf in 1..=5i16 {
            for start in 0..5 {
                let got = assign_replicas(&brokers, 10, rf, start, 0).unwrap();
                for replicas in &got {
                    let distinct: BTreeSet<_> = replicas.iter().collect();
                    assert_eq!(distinct.len(), rf as usize);
                }
            }
        }
    }

    #[test]
    fn added_partitions_continue_the_pattern() {
        let all = assign_replicas(&plain(&[0, 1, 2]), 6, 2, 1, 0).unwrap();
        let tail = assign_replicas(&plain(&[0, 1, 2]), 3, 2, 1, 3).unwrap();
        // The leader pattern continues; the follower shift restarts from start_index, as in
        // Kafka, so only leaders are compared.
        let leaders: Vec<i32> = tail.iter().map(|r| r[0]).collect();
        let expected: Vec<i32> = all[3..].iter().map(|r| r[0]).collect();
        assert_eq!(leaders, expected);
    }

    #[test]
    fn input_order_does_not_matter() {
        let a = assign_replicas(&plain(&[3, 1, 2]), 5, 2, 0, 0).unwrap();
        let b = assign_replicas(&plain(&[1, 2, 3]), 5, 2, 0, 0).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn errors() {
        assert_eq!(
            assign_replicas(&plain(&[1]), 0, 1, 0, 0),
            Err(PlacementError::InvalidPartitionCount(0))
        );
        assert!(matches!(
            assign_replicas(&plain(&[1, 2]), 1, 3, 0, 0),
            Err(PlacementError::InvalidReplicationFactor { .. })
        ));
        assert!(matches!(
            assign_replicas(&plain(&[1, 2]), 1, 0, 0, 0),
            Err(PlacementError::InvalidReplicationFactor { .. })
        ));
        assert!(matches!(
            assign_replicas(&[], 1, 1, 0, 0),
            Err(PlacementError::InvalidReplicationFactor { .. })
        ));
        let mut mixed = plain(&[1, 2]);
        mixed[0].rack = Some("a".into());
        assert_eq!(
            assign_replicas(&mixed, 1, 1, 0, 0),
            Err(PlacementError::InconsistentRacks)
        );
        assert_eq!(
            assign_replicas(&plain(&[1, 1]), 1, 1, 0, 0),
            Err(PlacementError::DuplicateBroker(1))
        );
    }
}
