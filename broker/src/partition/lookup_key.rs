//! Looking a `TopicPartition`-keyed map up by `(&str, i32)` without building a
//! `TopicPartition`: the partition map is consulted for every partition of every produce and
//! fetch (a follower's fetch names each partition it follows on the leader, every round), and
//! a `String` allocated and freed per lookup was a visible share of that.
//!
//! The standard `Borrow` trick: `TopicPartition` borrows as `dyn PartitionLookup`, whose hash
//! and equality are those of `TopicPartition`'s derived ones (the name, then the index), as
//! `Borrow` requires.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

use super::TopicPartition;

/// A topic name and partition index, however held.
pub trait PartitionLookup {
    fn parts(&self) -> (&str, i32);
}

impl PartitionLookup for TopicPartition {
    fn parts(&self) -> (&str, i32) {
        (&self.topic, self.partition)
    }
}

impl PartitionLookup for (&str, i32) {
    fn parts(&self) -> (&str, i32) {
        *self
    }
}

impl<'a> Borrow<dyn PartitionLookup + 'a> for TopicPartition {
    fn borrow(&self) -> &(dyn PartitionLookup + 'a) {
        self
    }
}

impl Hash for dyn PartitionLookup + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (topic, partition) = self.parts();
        topic.hash(state);
        partition.hash(state);
    }
}

impl PartialEq for dyn PartitionLookup + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn PartitionLookup + '_ {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::RandomState;
    use std::collections::HashMap;
    use std::hash::BuildHasher;

    #[test]
    fn a_borrowed_key_hashes_and_compares_as_the_owned_one() {
        let state = RandomState::new();
        for (topic, partition) in [("", 0), ("orders", 7), ("a-1", -1), ("ünï", i32::MAX)] {
            let owned = TopicPartition {
                topic: topic.to_string(),
                partition,
            };
            let key = (topic, partition);
            let borrowed: &dyn PartitionLookup = &key;
            assert_eq!(state.hash_one(&owned), state.hash_one(borrowed));
            assert!(<TopicPartition as Borrow<dyn PartitionLookup>>::borrow(&owned) == borrowed);
        }
    }

    #[test]
    fn a_map_is_looked_up_by_name_and_index() {
        let mut map: HashMap<TopicPartition, u32> = HashMap::new();
        for (i, name) in ["a", "b", "ab"].iter().enumerate() {
            for p in 0..3 {
                map.insert(
                    TopicPartition {
                        topic: name.to_string(),
                        partition: p,
                    },
                    (i * 10) as u32 + p as u32,
                );
            }
        }
        assert_eq!(map.get(&("ab", 2) as &dyn PartitionLookup), Some(&22));
        assert_eq!(map.get(&("b", 0) as &dyn PartitionLookup), Some(&10));
        assert_eq!(map.get(&("a", 3) as &dyn PartitionLookup), None);
        assert_eq!(map.get(&("c", 0) as &dyn PartitionLookup), None);
    }
}
