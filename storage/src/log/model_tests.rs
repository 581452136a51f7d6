//! Property test: `Log` against a simple in-memory model under random append / idempotent append /
//! retry / read / truncate / advance-start / retention by bytes / close+reopen / crash+reopen.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::tests::{batch, idempotent, small_config};
use super::*;
use crate::batch::header::{set_base_offset, set_partition_leader_epoch};

#[derive(Clone, Debug)]
enum Op {
    Append {
        records: usize,
    },
    AppendIdempotent {
        records: usize,
    },
    RetryLast,
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
        4 => (1usize..5).prop_map(|records| Op::Append { records }),
        3 => (1usize..4).prop_map(|records| Op::AppendIdempotent { records }),
        1 => Just(Op::RetryLast),
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
}

impl Model {
    fn last_idempotent(&self) -> Option<&StoredBatch> {
        self.batches
            .iter()
            .rev()
            .find(|b| b.sequences.is_some())
            .filter(|b| b.last >= self.start)
    }
    fn push(&mut self, payload: &[u8], sequences: Option<(i32, i32)>) {
        let mut bytes = payload.to_vec();
        set_base_offset(&mut bytes, self.end).unwrap();
        set_partition_leader_epoch(&mut bytes, 3).unwrap();
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
            Op::Append { records } => {
                let payload = batch(records, 1000 + model.end);
                let outcome = log.append(&payload, 3, 0).unwrap();
                prop_assert_eq!(appended_base(outcome), Some(model.end));
                model.push(&payload, None);
            }
            Op::AppendIdempotent { records } => {
                let seq = model
                    .last_idempotent()
                    .map_or(0, |b| b.sequences.map_or(0, |s| s.1 + 1));
                let payload = idempotent(1, 0, seq, records);
                let outcome = log.append(&payload, 3, 0).unwrap();
                prop_assert_eq!(appended_base(outcome), Some(model.end));
                model.push(&payload, Some((seq, seq + records as i32 - 1)));
            }
            Op::RetryLast => {
                if let Some(last) = model.last_idempotent() {
                    let (first, last_seq) = last.sequences.unwrap();
                    let payload = idempotent(1, 0, first, (last_seq - first + 1) as usize);
                    let outcome = log.append(&payload, 3, 0).unwrap();
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
                for b in model.batches.iter().filter(|b| b.last >= start) {
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
                log.truncate_to(offset).unwrap();
                if offset < model.end {
                    if offset < model.start {
                        model.batches.clear();
                        model.start = offset;
                        model.end = offset;
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
                }
            }
            Op::AdvanceStart { pct } => {
                let offset = model.pick(model.start, pct);
                log.advance_log_start_offset(offset).unwrap();
                model.start = offset;
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
            }
            Op::Reopen { clean } => {
                if clean {
                    log.close().unwrap();
                } else {
                    drop(log);
                }
                log = Log::open(dir.path(), config.clone(), 0).unwrap();
            }
        }
        prop_assert_eq!(log.log_end_offset(), model.end);
        prop_assert_eq!(log.log_start_offset(), model.start);
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

/// A producer forgotten at a log-start move, then re-registered, must not be resurrected from an
/// older snapshot on crash recovery (found by the property test).
#[test]
fn forgotten_producer_is_not_resurrected_by_replay() {
    let ops = vec![
        Op::AppendIdempotent { records: 1 },
        Op::Append { records: 1 },
        Op::Append { records: 2 },
        Op::Append { records: 2 },
        Op::Append { records: 2 },
        Op::RetryLast,
        Op::AdvanceStart { pct: 13 },
        Op::AppendIdempotent { records: 1 },
        Op::Reopen { clean: false },
        Op::RetryLast,
    ];
    run(ops).unwrap();
}
