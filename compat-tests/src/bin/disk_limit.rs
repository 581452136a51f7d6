//! Disk limits of the filesystem holding a directory, for the benchmark's
//! "machine limits" row: what an fsync-before-ack broker can at best do there.
//!
//! 1. Sequential append of 1 MiB chunks, each followed by `fdatasync`:
//!    throughput (MB/s) and per-chunk latency.
//! 2. Appends of 4 KiB, each followed by `fdatasync`: latency p50/p99/p99.9,
//!    the floor under any acks=all produce latency.
//!
//! 3. The same 4 KiB appends into a file preallocated with `fallocate` (as
//!    Sluice preallocates its active segments), where an fdatasync need not
//!    commit a new file size: the floor for a broker that does so.
//!
//! 1 and 2 write to fresh files that grow (like a log segment), and all stop at
//! a count or a time limit, whichever comes first. The files are removed.
//!
//! `disk_limit --dir DIR [--seq-mib 256] [--small-count 2000] [--max-s 20]`
//! prints one JSON object.

#[path = "bench_support/mod.rs"]
mod bench_support;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bench_support::{json_f64, json_str, mb, Args, BenchResult, Percentiles};

/// Size of one sequential chunk.
const CHUNK_BYTES: usize = 1 << 20;
/// Size of one small write.
const SMALL_BYTES: usize = 4096;

fn main() {
    if let Err(e) = run() {
        eprintln!("disk_limit: {e}");
        std::process::exit(1);
    }
}

fn create(path: &Path) -> BenchResult<File> {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// Appends `count` chunks of `chunk` to a fresh file, each followed by
/// fdatasync; returns (bytes written, elapsed, per-write latencies in ns).
fn append_sync(
    path: &Path,
    chunk: &[u8],
    count: usize,
    max: Duration,
    preallocate: bool,
) -> BenchResult<(u64, Duration, Vec<u64>)> {
    let mut file = create(path)?;
    if preallocate {
        use std::os::fd::AsRawFd;
        let len = (chunk.len() * count) as i64;
        // SAFETY: plain syscall on the descriptor `file` owns.
        if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } != 0 {
            return Err(format!(
                "fallocate {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        file.sync_all()
            .map_err(|e| format!("fsync {}: {e}", path.display()))?;
    }
    let mut lat = Vec::with_capacity(count);
    let start = Instant::now();
    let mut written = 0u64;
    for _ in 0..count {
        let t = Instant::now();
        file.write_all(chunk)
            .map_err(|e| format!("write {}: {e}", path.display()))?;
        file.sync_data()
            .map_err(|e| format!("fdatasync {}: {e}", path.display()))?;
        lat.push(t.elapsed().as_nanos() as u64);
        written += chunk.len() as u64;
        if start.elapsed() > max {
            break;
        }
    }
    let elapsed = start.elapsed();
    drop(file);
    let _ = std::fs::remove_file(path);
    Ok((written, elapsed, lat))
}

fn run() -> BenchResult<()> {
    let args = Args::parse()?;
    let dir = PathBuf::from(args.required("dir")?);
    let seq_mib: usize = args.get("seq-mib", 256)?;
    let small_count: usize = args.get("small-count", 2000)?;
    let max = Duration::from_secs_f64(args.get("max-s", 20.0)?);
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;

    // Non-zero, non-repeating content, so no layer can shortcut it.
    let chunk: Vec<u8> = (0..CHUNK_BYTES)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let pid = std::process::id();
    let (seq_bytes, seq_elapsed, mut seq_lat) = append_sync(
        &dir.join(format!("disk-limit-seq-{pid}")),
        &chunk,
        seq_mib,
        max,
        false,
    )?;
    let small = chunk.get(..SMALL_BYTES).unwrap_or(&chunk);
    let (_, small_elapsed, mut small_lat) = append_sync(
        &dir.join(format!("disk-limit-small-{pid}")),
        small,
        small_count,
        max,
        false,
    )?;
    // Where the filesystem cannot preallocate, report the growing-file figure again.
    let mut prealloc_lat = match append_sync(
        &dir.join(format!("disk-limit-prealloc-{pid}")),
        small,
        small_count,
        max,
        true,
    ) {
        Ok((_, _, lat)) => lat,
        Err(e) => {
            eprintln!("disk_limit: {e}; no preallocated figure");
            small_lat.clone()
        }
    };
    let seq = Percentiles::from_ns(&mut seq_lat);
    let small_p = Percentiles::from_ns(&mut small_lat);
    let prealloc_p = Percentiles::from_ns(&mut prealloc_lat);
    println!(
        "{{\"dir\":{},\"seq_bytes\":{},\"seq_s\":{},\"seq_mb_per_s\":{},\"seq_chunk_us\":{},\
         \"small_writes\":{},\"small_s\":{},\"small_fdatasync_us\":{},\
         \"small_fdatasync_prealloc_us\":{}}}",
        json_str(&dir.display().to_string()),
        seq_bytes,
        json_f64(seq_elapsed.as_secs_f64()),
        json_f64(mb(seq_bytes) / seq_elapsed.as_secs_f64()),
        seq.to_json(),
        small_p.count,
        json_f64(small_elapsed.as_secs_f64()),
        small_p.to_json(),
        prealloc_p.to_json()
    );
    Ok(())
}
