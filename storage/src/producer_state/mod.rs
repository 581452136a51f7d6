//! Idempotent-producer state (Kafka's `ProducerStateManager`): per producer id, the current
//! epoch and the metadata of its last five batches, used to fence old epochs, reject sequence
//! gaps and answer retries of already-written batches with their original offsets.
//!
//! Invariants: an entry's batches all belong to its epoch and are in log order, at most
//! `MAX_CACHED_BATCHES` of them; the state equals a replay of every idempotent batch header of
//! the log in order (snapshots are a shortcut to that replay, never a different truth), plus
//! producers whose batches have since left the log (retention, DeleteRecords): as in Kafka a
//! producer is forgotten only once it has been idle for `producer.id.expiration.ms`
//! (`remove_expired`), not when the log start passes its last batch, so its retries are still
//! answered as duplicates and its sequence gaps still refused.

pub mod snapshot;

use std::collections::{BTreeMap, VecDeque};

use crate::error::StorageError;

/// How many recent batches per producer are remembered for duplicate detection (Kafka: 5).
pub const MAX_CACHED_BATCHES: usize = 5;

/// What is remembered of one appended batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    /// The batch max timestamp as stored (the LogAppendTime when that applies).
    pub timestamp: i64,
}

/// State of one producer id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMetadata>,
}

/// A copy of a producer's state, for diagnostics and InitProducerId.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerStateView {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_offset: i64,
    pub last_timestamp: i64,
}

/// Result of checking an incoming batch's sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Accept,
    /// Already in the log: answer with these offsets, write nothing.
    Duplicate(BatchMetadata),
}

/// `sequence + increment`, wrapping from `i32::MAX` to 0 like Kafka.
pub fn add_sequence(sequence: i32, increment: i32) -> i32 {
    if increment >= 0 && sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence.wrapping_add(increment)
    }
}

/// All producers of one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerStateManager {
    producers: BTreeMap<i64, ProducerEntry>,
}

impl ProducerStateManager {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Kafka's rules for a batch (epoch, first..=last sequence) of `producer_id`.
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> Result<SequenceCheck, StorageError> {
        let out_of_order = |expected: i32| StorageError::OutOfOrderSequence {
            producer_id,
            expected,
            received: first_seq,
        };
        // No state for the producer (new here, or expired after `producer.id.expiration.ms`
        // idle): any sequence is accepted, as Kafka's `ProducerAppendInfo.checkSequence` does
        // when there is no current producer epoch; a long-lived producer on a quiet partition
        // that expired must not be refused.
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(SequenceCheck::Accept);
        };
        if epoch < entry.epoch {
            return Err(StorageError::InvalidProducerEpoch {
                producer_id,
                current: entry.epoch,
                received: epoch,
            });
        }
        if epoch > entry.epoch {
            return if first_seq == 0 {
                Ok(SequenceCheck::Accept)
            } else {
                Err(out_of_order(0))
            };
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .rev()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Ok(SequenceCheck::Duplicate(*dup));
        }
        let expected = entry
            .batches
            .back()
            .map_or(0, |b| add_sequence(b.last_seq, 1));
        if first_seq != expected {
            return Err(out_of_order(expected));
        }
        Ok(SequenceCheck::Accept)
    }

    /// Records an appended batch (also used for replay, which trusts the log: a different epoch
    /// starts the entry afresh).
    pub fn update(&mut self, producer_id: i64, epoch: i16, batch: BatchMetadata) {
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch,
                batches: VecDeque::new(),
            });
        if entry.epoch != epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(batch);
        while entry.batches.len() > MAX_CACHED_BATCHES {
            entry.batches.pop_front();
        }
    }

    pub fn view(&self, producer_id: i64) -> Option<ProducerStateView> {
        let entry = self.producers.get(&producer_id)?;
        let last = entry.batches.back()?;
        Some(ProducerStateView {
            producer_id,
            epoch: entry.epoch,
            last_sequence: last.last_seq,
            last_offset: last.last_offset,
            last_timestamp: last.timestamp,
        })
    }

    /// Forgets producers idle for `expiration_ms`: whose last batch's timestamp is that much
    /// older than `now_ms` (Kafka's `ProducerStateManager.isProducerExpired`, which also reads
    /// the last batch's max timestamp). Returns how many went.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.batches
                .back()
                .is_some_and(|b| now_ms.saturating_sub(b.timestamp) < expiration_ms)
        });
        before - self.producers.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn meta(first_seq: i32, last_seq: i32, base_offset: i64) -> BatchMetadata {
        BatchMetadata {
            first_seq,
            last_seq,
            base_offset,
            last_offset: base_offset + i64::from(last_seq.wrapping_sub(first_seq)),
            timestamp: 0,
        }
    }

    #[test]
    fn sequence_rules() {
        let mut s = ProducerStateManager::new();
        // No state: any sequence (Kafka's "no current producer epoch").
        assert_eq!(s.check(1, 0, 3, 4).unwrap(), SequenceCheck::Accept);
        assert_eq!(s.check(1, 0, 0, 1).unwrap(), SequenceCheck::Accept);
        s.update(1, 0, meta(0, 1, 10));
        assert_eq!(
            s.check(1, 0, 0, 1).unwrap(),
            SequenceCheck::Duplicate(meta(0, 1, 10))
        );
        assert!(matches!(
            s.check(1, 0, 3, 3),
            Err(StorageError::OutOfOrderSequence { expected: 2, .. })
        ));
        assert_eq!(s.check(1, 0, 2, 2).unwrap(), SequenceCheck::Accept);
        assert!(matches!(
            s.check(1, 1, 5, 5),
            Err(StorageError::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(s.check(1, 1, 0, 0).unwrap(), SequenceCheck::Accept);
        s.update(1, 1, meta(0, 0, 20));
        assert!(matches!(
            s.check(1, 0, 2, 2),
            Err(StorageError::InvalidProducerEpoch {
                current: 1,
                received: 0,
                ..
            })
        ));
        assert_eq!(s.view(1).unwrap().last_offset, 20);
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let mut s = ProducerStateManager::new();
        for i in 0..7 {
            s.update(9, 0, meta(i, i, i64::from(i)));
        }
        assert!(matches!(
            s.check(9, 0, 1, 1),
            Err(StorageError::OutOfOrderSequence { .. })
        ));
        assert!(matches!(
            s.check(9, 0, 2, 2),
            Ok(SequenceCheck::Duplicate(_))
        ));
    }

    #[test]
    fn sequences_wrap() {
        assert_eq!(add_sequence(i32::MAX, 1), 0);
        assert_eq!(add_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(add_sequence(5, 3), 8);
        let mut s = ProducerStateManager::new();
        s.update(2, 0, meta(i32::MAX - 1, i32::MAX, 0));
        assert_eq!(s.check(2, 0, 0, 4).unwrap(), SequenceCheck::Accept);
        assert!(s.check(2, 0, 1, 4).is_err());
    }

    #[test]
    fn remove_expired_drops_producers_idle_for_the_expiration() {
        let mut s = ProducerStateManager::new();
        let at = |first_seq, base_offset, timestamp| BatchMetadata {
            timestamp,
            ..meta(first_seq, first_seq, base_offset)
        };
        s.update(1, 0, at(0, 5, 1_000));
        s.update(2, 0, at(0, 6, 1_000));
        // Producer 2's last batch is what counts, not its first.
        s.update(2, 0, at(1, 7, 5_000));
        assert_eq!(s.remove_expired(5_999, 5_000), 0);
        assert_eq!(s.remove_expired(6_000, 5_000), 1);
        assert!(s.view(1).is_none());
        assert!(s.view(2).is_some());
        assert_eq!(s.remove_expired(10_000, 5_000), 1);
        assert!(s.is_empty());
    }
}
