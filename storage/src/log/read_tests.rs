//! Property test: `Log::read` (one read per segment, batches cut inside the buffer) returns exactly
//! what the straightforward reference — a header-by-header scan then a read of the byte range,
//! the algorithm it replaced — returns, on random logs with batch sizes from a few bytes to well
//! past every read-ahead, random index intervals (changed mid-log, so the batch holding the start
//! can lie far beyond its index entry), and random limits.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::tests::small_config;
use super::*;
use crate::batch::builder::BatchBuilder;

/// The read algorithm before the single-read fetch path, kept as the oracle.
fn reference_read(
    log: &Log,
    start_offset: i64,
    max_offset: i64,
    max_bytes: usize,
    min_one_batch: bool,
) -> Result<ReadResult, StorageError> {
    let log_end = log.log_end_offset();
    if start_offset < log.log_start_offset() || start_offset > log_end {
        return Err(StorageError::OffsetOutOfRange {
            offset: start_offset,
            log_start: log.log_start_offset(),
            log_end,
        });
    }
    let mut result = ReadResult::default();
    if start_offset >= max_offset {
        return Ok(result);
    }
    let mut out = Vec::new();
    'segments: for segment in log.segments().filter(|s| s.next_offset() > start_offset) {
        let Some(first) = segment.find_batch(start_offset)? else {
            continue;
        };
        let (start, mut end) = (first.position, first.position);
        let mut stop = false;
        for info in segment.scan(first.position) {
            let info = info?;
            if info.base_offset >= max_offset {
                stop = true;
                break;
            }
            let size = info.total_size as usize;
            let taken = out.len() + (end - start) as usize;
            if !(taken.saturating_add(size) <= max_bytes || (min_one_batch && taken == 0)) {
                stop = true;
                break;
            }
            end = info.position + info.total_size;
            result.first_offset.get_or_insert(info.base_offset);
            result.last_offset = Some(info.last_offset);
        }
        if end > start {
            out.extend_from_slice(&segment.read_bytes(start, end - start)?);
        }
        if stop {
            break 'segments;
        }
    }
    result.records = out.into();
    Ok(result)
}

fn sized_batch(records: usize, value_bytes: usize, ts: i64) -> Vec<u8> {
    let value = vec![0xabu8; value_bytes];
    let mut builder = BatchBuilder::new();
    for i in 0..records {
        builder = builder.record(Some(b"k"), Some(&value), ts + i as i64);
    }
    builder.build().unwrap()
}

fn value_bytes() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..64,
        3 => 64usize..3_000,
        1 => 3_000usize..150_000,
    ]
}

fn max_bytes() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1usize),
        0usize..500,
        0usize..20_000,
        0usize..400_000,
        Just(usize::MAX),
    ]
}

#[derive(Clone, Debug)]
struct Read {
    start_pct: u8,
    span: Option<u16>,
    max_bytes: usize,
    min_one: bool,
}

fn read() -> impl Strategy<Value = Read> {
    (
        0u8..=100,
        proptest::option::of(0u16..300),
        max_bytes(),
        any::<bool>(),
    )
        .prop_map(|(start_pct, span, max_bytes, min_one)| Read {
            start_pct,
            span,
            max_bytes,
            min_one,
        })
}

fn check(
    batches: Vec<(usize, usize)>,
    intervals: (u32, u32),
    segment_bytes: u64,
    start_pct: u8,
    reads: Vec<Read>,
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes,
        index_interval_bytes: intervals.0,
        max_message_bytes: 10 << 20,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    let half = batches.len() / 2;
    for (i, (records, value)) in batches.into_iter().enumerate() {
        if i == half {
            // Later entries are sparser or denser than the allowance the reader assumes.
            log.set_config(LogConfig {
                index_interval_bytes: intervals.1,
                ..config.clone()
            });
        }
        log.append(&sized_batch(records, value, i as i64), 0, 0)
            .unwrap();
    }
    log.set_config(config);
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    let new_start = start + (end - start) * i64::from(start_pct) / 100;
    log.advance_log_start_offset(new_start).unwrap();
    let start = log.log_start_offset();
    for r in reads {
        let offset = start + (end - start) * i64::from(r.start_pct) / 100;
        let max_offset = r.span.map_or(i64::MAX, |s| offset + i64::from(s));
        let got = log
            .read(offset, max_offset, r.max_bytes, r.min_one)
            .unwrap();
        let want = reference_read(&log, offset, max_offset, r.max_bytes, r.min_one).unwrap();
        prop_assert_eq!(got, want, "read({}, {}, {:?})", offset, max_offset, r);
    }
    prop_assert!(log.read(end + 1, i64::MAX, 100, true).is_err());
    if start > 0 {
        prop_assert!(log.read(start - 1, i64::MAX, 100, true).is_err());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]
    #[test]
    fn read_matches_reference(
        batches in proptest::collection::vec((1usize..4, value_bytes()), 1..60),
        intervals in (prop_oneof![Just(0u32), 0u32..300, Just(4096u32), Just(1u32 << 20)],
                      prop_oneof![Just(0u32), 0u32..300, Just(4096u32), Just(1u32 << 20)]),
        segment_bytes in prop_oneof![Just(400u64), 400u64..200_000, Just(1u64 << 30)],
        start_pct in prop_oneof![Just(0u8), 0u8..=100],
        reads in proptest::collection::vec(read(), 1..25),
    ) {
        check(batches, intervals, segment_bytes, start_pct, reads)?;
    }
}

/// A batch far past its index entry (the entries were written sparsely) and a first batch bigger
/// than `max_bytes` both need a second read; the result is still exact.
#[test]
fn refill_paths() {
    let reads = vec![
        Read {
            start_pct: 99,
            span: None,
            max_bytes: 0,
            min_one: true,
        },
        Read {
            start_pct: 50,
            span: None,
            max_bytes: 10,
            min_one: true,
        },
        Read {
            start_pct: 50,
            span: None,
            max_bytes: 100_000,
            min_one: false,
        },
    ];
    let batches = (0..40)
        .map(|i| (1, if i % 3 == 0 { 20_000 } else { 30 }))
        .collect();
    check(batches, (1 << 20, 0), 1 << 30, 0, reads).unwrap();
}
