//! Property test: `Log` against a simple in-memory model under random append / idempotent append /
//! retry / follower append / read / truncate / advance-start / retention by bytes / close+reopen /
//! crash+reopen, with leader epochs that go up and down: the stored bytes, offsets and the
//! leader epoch entries must match the model after every step.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::tests::{batch, idempotent, small_config};
use super::*;
use crate::batch::header::{set_base_offset, set_partition_leader_epoch};
use crate::leader_epoch::LeaderEpochCache;

#[derive(Clone, Debug)]
enum Op {
    Append {
        records: usize,
        epoch: i32,
    },
    AppendIdempotent {
        records: usize,
        epoch: i32,
    },
    RetryLast {
        epoch: i32,
    },
    /// Replicated batches: (records, partitionLeaderEpoch as stamped by the leader).
    Follower {
        batches: Vec<(usize, i32)>,
    },
    Read {
        start_pct: u8,
        span: Option<u8>,
        max_bytes: u16,
        min_one: bool,
    },
    Truncate {
        pct: u8,
    },
    AdvanceStart {
        pct: u8,
    },
    Reopen {
        clean: bool,
    },
    RetainBytes {
        retention_bytes: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..5, 0i32..6).prop_map(|(records, epoch)| Op::Append { records, epoch }),
        3 => (1usize..4, 0i32..6).prop_map(|(records, epoch)| Op::AppendIdempotent { records, epoch }),
        1 => (0i32..8).prop_map(|epoch| Op::RetryLast { epoch }),
        2 => proptest::collection::vec((1usize..4, -1i32..8), 1..4)
            .prop_map(|batches| Op::Follower { batches }),
        3 => (0u8..=100, proptest::option::of(0u8..20), 0u16..600, any::<bool>())
            .prop_map(|(start_pct, span, max_bytes, min_one)| Op::Read { start_pct, span, max_bytes, min_one }),
        1 => (0u8..=100).prop_map(|pct| Op::Truncate { pct }),
        1 => (0u8..=100).prop_map(|pct| Op::AdvanceStart { pct }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        1 => (0u16..2000).prop_map(|retention_bytes| Op::RetainBytes { retention_bytes }),
    ]
}

struct StoredBatch {
    base: i64,
    last: i64,
    bytes: Vec<u8>,
    /// (first_seq, last_seq) for the idempotent producer 1.
    sequences: Option<(i32, i32)>,
}

#[derive(Default)]
struct Model {
    batches: Vec<StoredBatch>,
    start: i64,
    end: i64,
    /// The leader epoch entries the log must report.
    epochs: LeaderEpochCache,
    /// Producer 1's next sequence, kept across retention: a producer whose batches were all
    /// deleted goes on where it was, and the log must accept that, whether it kept the
    /// producer's state (it does until the producer expires) or forgot it at a truncation.
    next_seq: i32,
    /// A truncation reloaded the producer state while some batch of the producer lay below
    /// the log start: the reload may have had only a snapshot below the start, which it does
    /// not use (Kafka neither), so the log may have forgotten the producer.
    producer_maybe_forgotten: bool,
}

impl Model {
    /// The producer's last batch that no truncation cut, if the log must still know it: in
    /// the log, or below the log start while the log keeps its state.
    fn last_idempotent(&self) -> Option<&StoredBatch> {
        self.batches
            .iter()
            .rev()
            .find(|b| b.sequences.is_some())
            .filter(|b| b.last >= self.start || !self.producer_maybe_forgotten)
    }
    fn push(&mut self, payload: &[u8], sequences: Option<(i32, i32)>, epoch: i32) {
        let mut bytes = payload.to_vec();
        set_base_offset(&mut bytes, self.end).unwrap();
        set_partition_leader_epoch(&mut bytes, epoch).unwrap();
        self.epochs.assign_if_newer(epoch, self.end);
        let count = crate::batch::BatchHeader::parse(&bytes)
            .unwrap()
            .records_count();
        let base = self.end;
        self.end += i64::from(count);
        self.batches.push(StoredBatch {
            base,
            last: self.end - 1,
            bytes,
            sequences,
        });
    }
    fn pick(&self, lo: i64, pct: u8) -> i64 {
        lo + (self.end - lo) * i64::from(pct) / 100
    }
}

fn appended_base(outcome: AppendOutcome) -> Option<i64> {
    match outcome {
        AppendOutcome::Appended { base_offset, .. } => Some(base_offset),
        AppendOutcome::Duplicate { .. } => None,
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 300,
        index_interval_bytes: 60,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Append { records, epoch } => {
                let payload = batch(records, 1000 + model.end);
                let outcome = log.append(&payload, epoch, 0).unwrap();
                prop_assert_eq!(appended_base(outcome), Some(model.end));
                model.push(&payload, None, epoch);
            }
            Op::Follower { batches } => {
                let mut payload = Vec::new();
                let mut base = model.end;
                for (records, epoch) in &batches {
                    let mut b = batch(*records, 1000 + base);
                    set_base_offset(&mut b, base).unwrap();
                    set_partition_leader_epoch(&mut b, *epoch).unwrap();
                    base += *records as i64;
                    payload.extend_from_slice(&b);
                }
                log.append_as_follower(&payload).unwrap();
                for (records, epoch) in batches {
                    model.push(&batch(records, 1000 + model.end), None, epoch);
                }
            }
            Op::AppendIdempotent { records, epoch } => {
                // After the producer's last batch that no truncation cut, below the log start
                // or not (the log keeps its state, or forgot it at a truncation and takes any
                // sequence), or, with none left, where it was.
                let seq = match model.batches.iter().rev().find(|b| b.sequences.is_some()) {
                    Some(b) => b.sequences.map_or(0, |s| s.1 + 1),
                    None => model.next_seq,
                };
                let payload = idempotent(1, 0, seq, records);
                let outcome = log.append(&payload, epoch, 0).unwrap();
                prop_assert_eq!(appended_base(outcome), Some(model.end));
                model.push(&payload, Some((seq, seq + records as i32 - 1)), epoch);
                model.next_seq = seq + records as i32;
            }
            Op::RetryLast { epoch } => {
                // A duplicate writes nothing, so even a newer epoch is not recorded.
                if let Some(last) = model.last_idempotent() {
                    let (first, last_seq) = last.sequences.unwrap();
                    let payload = idempotent(1, 0, first, (last_seq - first + 1) as usize);
                    let outcome = log.append(&payload, epoch, 0).unwrap();
                    prop_assert_eq!(
                        outcome,
                        AppendOutcome::Duplicate {
                            base_offset: last.base,
                            last_offset: last.last,
                            log_append_time_ms: -1
                        }
                    );
                }
            }
            Op::Read {
                start_pct,
                span,
                max_bytes,
                min_one,
            } => {
                let start = model.pick(model.start, start_pct);
                let max_offset = span.map_or(i64::MAX, |s| start + i64::from(s));
                let max_bytes = usize::from(max_bytes);
                let mut expected = Vec::new();
                // At or past `max_offset` nothing, even from a batch that straddles it (Kafka).
                let wanted = |b: &&StoredBatch| start < max_offset && b.last >= start;
                for b in model.batches.iter().filter(wanted) {
                    if b.base >= max_offset {
                        break;
                    }
                    if expected.len() + b.bytes.len() > max_bytes
                        && !(min_one && expected.is_empty())
                    {
                        break;
                    }
                    expected.extend_from_slice(&b.bytes);
                }
                let got = log.read(start, max_offset, max_bytes, min_one).unwrap();
                prop_assert_eq!(
                    &got.records[..],
                    &expected[..],
                    "read({}, {}, {}, {})",
                    start,
                    max_offset,
                    max_bytes,
                    min_one
                );
                if model.start > 0 {
                    prop_assert!(log.read(model.start - 1, i64::MAX, 100, true).is_err());
                }
                prop_assert!(log.read(model.end + 1, i64::MAX, 100, true).is_err());
            }
            Op::Truncate { pct } => {
                let offset = model.pick(0, pct);
                model.producer_maybe_forgotten |= model
                    .batches
                    .iter()
                    .any(|b| b.sequences.is_some() && b.last < model.start);
                log.truncate_to(offset).unwrap();
                if offset < model.end {
                    if offset < model.start {
                        model.batches.clear();
                        model.start = offset;
                        model.end = offset;
                        model.epochs.clear();
                    } else {
                        model.batches.retain(|b| b.last < offset);
                        let remaining_end = model.batches.last().map_or(0, |b| b.last + 1);
                        if remaining_end >= model.start {
                            model.end = remaining_end;
                        } else {
                            // The batch that would become last may sit in a segment already deleted
                            // below the log start: the log then ends at the first segment's base.
                            let end = log.log_end_offset();
                            prop_assert!(remaining_end <= end && end <= model.start.min(offset));
                            model.end = end;
                            model.start = end;
                        }
                    }
                    model.epochs.truncate_from_end(model.end);
                    model.epochs.truncate_from_start(model.start);
                }
            }
            Op::AdvanceStart { pct } => {
                let offset = model.pick(model.start, pct);
                log.advance_log_start_offset(offset).unwrap();
                // Every sealed segment wholly below the new start is gone.
                prop_assert!(log.sealed.values().all(|s| s.next_offset() > offset));
                model.start = offset;
                model.epochs.truncate_from_start(model.start);
            }
            Op::RetainBytes { retention_bytes } => {
                log.set_config(LogConfig {
                    retention_bytes: i64::from(retention_bytes),
                    ..config.clone()
                });
                let segments = log.segment_count();
                let deleted = log.apply_retention(0).unwrap();
                log.set_config(config.clone());
                prop_assert_eq!(log.segment_count(), segments - deleted);
                let start = log.log_start_offset();
                prop_assert!(model.start <= start && start <= model.end);
                if deleted > 0 {
                    prop_assert!(log.size_bytes() >= u64::from(retention_bytes));
                }
                model.start = start;
                model.epochs.truncate_from_start(model.start);
            }
            Op::Reopen { clean } => {
                if clean {
                    log.close().unwrap();
                } else {
                    drop(log);
                }
                log = Log::open(dir.path(), config.clone(), 0).unwrap();
                // Like Kafka's log loading: no entry survives at or past the log end.
                model.epochs.truncate_from_end(model.end);
                model.epochs.truncate_from_start(model.start);
            }
        }
        prop_assert_eq!(log.log_end_offset(), model.end);
        prop_assert_eq!(log.log_start_offset(), model.start);
        prop_assert_eq!(log.epoch_entries(), model.epochs.entries());
        // `segments_from` starts at the segment holding the offset: the same segments as
        // filtering all of them, for every offset around the log.
        for offset in model.start - 1..=model.end + 1 {
            let from: Vec<i64> = log
                .segments_from(offset)
                .map(Segment::base_offset)
                .collect();
            let all: Vec<i64> = log
                .segments()
                .filter(|s| s.next_offset() > offset)
                .map(Segment::base_offset)
                .collect();
            prop_assert_eq!(from, all, "segments from {}", offset);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}

/// A producer whose batches a log-start move passed, then appending again, must come back from
/// crash recovery with its latest state, not an older snapshot's (found by the property test).
#[test]
fn forgotten_producer_is_not_resurrected_by_replay() {
    let ops = vec![
        Op::AppendIdempotent {
            records: 1,
            epoch: 3,
        },
        Op::Append {
            records: 1,
            epoch: 3,
        },
        Op::Append {
            records: 2,
            epoch: 3,
        },
        Op::Append {
            records: 2,
            epoch: 3,
        },
        Op::Append {
            records: 2,
            epoch: 3,
        },
        Op::RetryLast { epoch: 3 },
        Op::AdvanceStart { pct: 13 },
        Op::AppendIdempotent {
            records: 1,
            epoch: 3,
        },
        Op::Reopen { clean: false },
        Op::RetryLast { epoch: 3 },
    ];
    run(ops).unwrap();
}
