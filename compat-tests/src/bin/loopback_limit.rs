//! Loopback TCP throughput, for the benchmark's "machine limits" row when
//! iperf3 is not installed (and as a cross-check when it is): one thread
//! writes 256 KiB chunks to 127.0.0.1 for a fixed time, another reads and
//! discards them.
//!
//! `loopback_limit [--seconds 3]` prints one JSON object.

#[path = "bench_support/mod.rs"]
mod bench_support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bench_support::{json_f64, mb, Args, BenchResult};

const CHUNK_BYTES: usize = 256 * 1024;

fn main() {
    if let Err(e) = run() {
        eprintln!("loopback_limit: {e}");
        std::process::exit(1);
    }
}

fn run() -> BenchResult<()> {
    let args = Args::parse()?;
    let seconds: f64 = args.get("seconds", 3.0)?;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))?;
    let reader = std::thread::spawn(move || -> BenchResult<u64> {
        let (mut conn, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        let mut buf = vec![0u8; CHUNK_BYTES];
        let mut total = 0u64;
        loop {
            match conn.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n as u64,
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    });
    let mut conn = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    let chunk = vec![0x5au8; CHUNK_BYTES];
    let start = Instant::now();
    let limit = Duration::from_secs_f64(seconds);
    while start.elapsed() < limit {
        conn.write_all(&chunk).map_err(|e| format!("write: {e}"))?;
    }
    drop(conn);
    let received = reader
        .join()
        .map_err(|_| "reader thread panicked".to_owned())??;
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{{\"bytes\":{received},\"seconds\":{},\"mb_per_s\":{},\"gbit_per_s\":{}}}",
        json_f64(elapsed),
        json_f64(mb(received) / elapsed),
        json_f64(received as f64 * 8.0 / 1e9 / elapsed)
    );
    Ok(())
}
