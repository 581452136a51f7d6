//! Property test: random keyed appends (values and tombstones, some compressed batches), rolls,
//! compactions at advancing times, and clean or unclean reopens, against an in-memory model of
//! everything appended. After every step: every stored record is the one appended at its offset,
//! the latest value of every key is readable at its offset, the log end matches, and below the
//! first dirty offset of a cleaning no key appears twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::tests::{all_records, compact_config, Record};
use crate::batch::builder::BatchBuilder;
use crate::batch::compression::Compression;
use crate::log::Log;

#[derive(Clone, Debug)]
enum Op {
    /// (key, value: None = tombstone) records in one batch.
    Append {
        records: Vec<(u8, Option<u8>)>,
        compressed: bool,
    },
    Roll,
    Compact {
        advance_ms: u16,
    },
    Reopen {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop::collection::vec((0u8..6, prop::option::weighted(0.8, 0u8..255)), 1..4), any::<bool>())
            .prop_map(|(records, compressed)| Op::Append { records, compressed }),
        2 => Just(Op::Roll),
        2 => (0u16..1500).prop_map(|advance_ms| Op::Compact { advance_ms }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

fn check(log: &Log, appended: &BTreeMap<i64, (Vec<u8>, Option<Vec<u8>>)>, next: i64) {
    assert_eq!(log.log_end_offset(), next);
    let stored = all_records(log);
    let by_offset: HashMap<i64, &Record> = stored.iter().map(|r| (r.0, r)).collect();
    for r in &stored {
        let (key, value) = appended.get(&r.0).expect("stored record was appended");
        assert_eq!((&r.1, &r.2), (key, value), "record at {}", r.0);
    }
    let mut latest: HashMap<&[u8], i64> = HashMap::new();
    for (offset, (key, _)) in appended {
        latest.insert(key, *offset);
    }
    for offset in latest.values() {
        let (_, value) = &appended[offset];
        if value.is_some() {
            assert!(
                by_offset.contains_key(offset),
                "latest value at {offset} lost"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn compaction_keeps_the_latest_value_of_every_key(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut now = 0i64;
        let mut log = Some(Log::open(dir.path(), compact_config(), now).unwrap());
        let mut appended = BTreeMap::new();
        let mut next = 0i64;
        for op in ops {
            let l = log.as_mut().unwrap();
            match op {
                Op::Append { records, compressed } => {
                    let mut builder = BatchBuilder::new();
                    if compressed {
                        builder = builder.compression(Compression::Lz4);
                    }
                    for (key, value) in &records {
                        builder = builder.record(Some(&[*key]), value.map(|v| vec![v; 3]).as_deref(), now);
                    }
                    l.append(&builder.build().unwrap(), 0, now).unwrap();
                    for (key, value) in records {
                        appended.insert(next, (vec![key], value.map(|v| vec![v; 3])));
                        next += 1;
                    }
                }
                Op::Roll => l.roll().unwrap(),
                Op::Compact { advance_ms } => {
                    now += i64::from(advance_ms);
                    if let Some(outcome) = l.compact(now).unwrap() {
                        let mut seen = std::collections::HashSet::new();
                        for r in all_records(l).iter().filter(|r| r.0 < outcome.first_dirty_offset) {
                            prop_assert!(seen.insert(r.1.clone()), "key twice below {}", outcome.first_dirty_offset);
                        }
                    }
                }
                Op::Reopen { clean } => {
                    let old = log.take().unwrap();
                    if clean {
                        old.close().unwrap();
                    } else {
                        drop(old);
                    }
                    log = Some(Log::open(dir.path(), compact_config(), now).unwrap());
                }
            }
            check(log.as_ref().unwrap(), &appended, next);
        }
    }
}
