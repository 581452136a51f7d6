//! Hot-path micro-benchmark of `Log::append` and `Log::read` (plain timing, no harness).
//!
//! Run: `cargo bench -p sluice-storage --bench log_bench` (release build). The data stays in the
//! page cache, so this measures CPU, copies and syscalls, not the disk. Each case runs a few
//! rounds and reports the best one, which is the least disturbed by other work on the machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use storage::{BatchBuilder, Log, LogConfig, TimestampType};

/// Batches appended per append round (~100 MiB of 1 KiB batches).
const APPENDS: usize = 100_000;
const ROUNDS: usize = 5;
const FETCH_BYTES: usize = 1 << 20;

fn one_kib_batch() -> Vec<u8> {
    // 61-byte header + one record with a 940-byte value: 1 KiB on disk.
    let value = vec![0x5au8; 940];
    let batch = BatchBuilder::new()
        .record(Some(b"key"), Some(&value), 1_000)
        .build()
        .unwrap();
    assert!((1000..=1050).contains(&batch.len()), "{}", batch.len());
    batch
}

fn config(timestamp_type: TimestampType) -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 30,
        timestamp_type,
        ..LogConfig::default()
    }
}

fn report(name: &str, ops: usize, bytes: usize, best: Duration) {
    let ns_per_op = best.as_nanos() as f64 / ops as f64;
    let mb_per_s = bytes as f64 / best.as_secs_f64() / 1e6;
    println!(
        "{name:<34} {ns_per_op:>10.0} ns/op {mb_per_s:>9.0} MB/s  ({ops} ops, best of {ROUNDS})"
    );
}

fn bench_append(name: &str, timestamp_type: TimestampType, batch: &[u8]) {
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(timestamp_type), 0).unwrap();
        let start = Instant::now();
        for i in 0..APPENDS {
            log.append(batch, 1, i as i64).unwrap();
        }
        best = best.min(start.elapsed());
    }
    report(name, APPENDS, APPENDS * batch.len(), best);
}

/// Logs in the many-partitions case (a broker hosting 1,000 partitions).
const PARTITIONS: usize = 1_000;
/// Appends to each of them, round-robin.
const PARTITION_ROUNDS: usize = 20;

/// One 1 KiB batch to each of 1,000 logs in turn: the first index entries of every partition's
/// segment are written while the others are written too, so per-segment setup costs (index file
/// growth, page-cache allocation) show up here and are invisible in the single-log cases.
fn bench_many_partitions(batch: &[u8]) {
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let mut logs: Vec<Log> = (0..PARTITIONS)
            .map(|p| {
                let path = dir.path().join(format!("topic-{p}"));
                Log::open(&path, config(TimestampType::CreateTime), 0).unwrap()
            })
            .collect();
        // Untimed: a log's first batch of a leader epoch writes the epoch checkpoint (two
        // fsyncs), once per leadership change, not per append. Index entries start only after
        // `index_interval_bytes` (4 KiB), so every index file's first entry is still timed.
        for log in &mut logs {
            log.append(batch, 1, 0).unwrap();
        }
        let start = Instant::now();
        for round in 0..PARTITION_ROUNDS {
            for log in &mut logs {
                log.append(batch, 1, round as i64).unwrap();
            }
        }
        best = best.min(start.elapsed());
    }
    let ops = PARTITIONS * PARTITION_ROUNDS;
    report(
        "append 1 KiB, 1,000 logs round-robin",
        ops,
        ops * batch.len(),
        best,
    );
}

fn bench_reads(batch: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(TimestampType::CreateTime), 0).unwrap();
    for i in 0..APPENDS {
        log.append(batch, 1, i as i64).unwrap();
    }
    let end = log.log_end_offset();

    // Sequential 1 MiB fetches, as a consumer catching up does.
    let mut best = Duration::MAX;
    let (mut fetches, mut bytes) = (0, 0);
    for _ in 0..ROUNDS {
        let (mut f, mut b) = (0, 0);
        let start = Instant::now();
        let mut offset = 0;
        while offset < end {
            let r = log.read(offset, i64::MAX, FETCH_BYTES, true).unwrap();
            offset = r.last_offset.unwrap() + 1;
            f += 1;
            b += r.records.len();
        }
        best = best.min(start.elapsed());
        (fetches, bytes) = (f, b);
    }
    report("read 1 MiB fetches, sequential", fetches, bytes, best);

    // 1 MiB fetches at pseudo-random offsets (index lookup + skip to the batch).
    let mut best = Duration::MAX;
    let (mut fetches, mut bytes) = (0, 0);
    for _ in 0..ROUNDS {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let (mut f, mut b) = (0, 0);
        let start = Instant::now();
        for _ in 0..2_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let offset = (x % end as u64) as i64;
            let r = log.read(offset, i64::MAX, FETCH_BYTES, true).unwrap();
            f += 1;
            b += r.records.len();
        }
        best = best.min(start.elapsed());
        (fetches, bytes) = (f, b);
    }
    report("read 1 MiB fetches, random start", fetches, bytes, best);

    // One batch per read (a follower or consumer at the log end).
    let mut best = Duration::MAX;
    let n = 50_000;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for offset in 0..n {
            let r = log.read(offset, i64::MAX, 0, true).unwrap();
            assert_eq!(r.records.len(), batch.len());
        }
        best = best.min(start.elapsed());
    }
    report(
        "read one 1 KiB batch",
        n as usize,
        n as usize * batch.len(),
        best,
    );
}

/// A log of many small segments, read at its tail (a follower or consumer caught up, whose
/// read must find the last segment among all of them).
fn bench_many_segments(batch: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 32 * 1024,
        ..config(TimestampType::CreateTime)
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    for i in 0..20_000 {
        log.append(batch, 1, i as i64).unwrap();
    }
    let end = log.log_end_offset();
    let segments = log.segment_count();
    let n: usize = 100_000;
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for i in 0..n {
            // The last batch, then nothing (at the end), alternately.
            let offset = if i % 2 == 0 { end - 1 } else { end };
            let r = log.read_region(offset, end, FETCH_BYTES, true).unwrap();
            assert_eq!(r.records.len(), if offset < end { batch.len() } else { 0 });
        }
        best = best.min(start.elapsed());
    }
    report(
        &format!("tail read_region, {segments} segments"),
        n,
        n / 2 * batch.len(),
        best,
    );
}

fn main() {
    // `cargo test --benches` lists benchmarks; there is nothing to list.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    // Optional filter: `cargo bench --bench log_bench -- append` runs only the append cases,
    // `-- partitions` only the 1,000-log case, `-- segments` only the tail reads of a log of
    // many segments.
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    let wanted = |group: &str| filter.as_deref().is_none_or(|f| group.contains(f));
    let batch = one_kib_batch();
    if wanted("append") {
        bench_append(
            "append 1 KiB, CreateTime",
            TimestampType::CreateTime,
            &batch,
        );
        bench_append(
            "append 1 KiB, LogAppendTime",
            TimestampType::LogAppendTime,
            &batch,
        );
    }
    if wanted("append partitions") {
        bench_many_partitions(&batch);
    }
    if wanted("read") {
        bench_reads(&batch);
    }
    if wanted("read segments") {
        bench_many_segments(&batch);
    }
}
