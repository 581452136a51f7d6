//! Load generator for `min_server`: sends `--total-mib` of payload in
//! requests of `--request-bytes` with at most `--depth` unacknowledged
//! requests in flight (librdkafka keeps up to 5 per connection with
//! idempotence, Kafka's Java client the same), and reports throughput and
//! request latency.
//!
//! With `--rate` it sends instead on a fixed schedule, one request every
//! 1/rate seconds for `--duration-s` whatever is in flight, and times each
//! acknowledgement from the request's due time (so a stalled sender counts
//! against the server), as the latency scenario's clients time Sluice: the
//! benchmark's floor for produce-ack latency on this machine. Requests due in
//! the first `--warmup-s` seconds are not counted.
//!
//! `min_client --connect HOST:PORT [--total-mib 200] [--request-bytes 65536]
//! [--depth 5] [--max-s 60]` or `min_client --connect HOST:PORT --rate R
//! [--duration-s 20] [--warmup-s 1] [--request-bytes 100]` prints one JSON
//! object.

#[path = "bench_support/mod.rs"]
mod bench_support;

use std::collections::VecDeque;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bench_support::{json_f64, mb, sleep_until_due, Args, BenchResult, Percentiles};
use rand::{Rng, SeedableRng};

fn main() {
    if let Err(e) = run() {
        eprintln!("min_client: {e}");
        std::process::exit(1);
    }
}

fn run() -> BenchResult<()> {
    let args = Args::parse()?;
    let connect = args.required("connect")?;
    if args.has("rate") {
        return run_fixed_rate(&args, &connect);
    }
    let total_bytes = (args.get("total-mib", 200.0f64)? * 1048576.0) as u64;
    let request_bytes: usize = args.get("request-bytes", 65536)?;
    let depth: usize = args.get::<usize>("depth", 5)?.max(1);
    let max = Duration::from_secs_f64(args.get("max-s", 60.0)?);
    let requests = total_bytes.div_ceil(request_bytes.max(1) as u64).max(1);

    let frames = frames(request_bytes);

    let mut conn = TcpStream::connect(&connect).map_err(|e| format!("connect {connect}: {e}"))?;
    let _ = conn.set_nodelay(true);
    let reader = conn.try_clone().map_err(|e| format!("dup socket: {e}"))?;
    // The reader returns one token per acknowledgement; the sender starts
    // with `depth` tokens, which bounds the pipeline.
    let (ack_tx, ack_rx) = mpsc::channel::<Result<Instant, String>>();
    let (sent_tx, sent_rx) = mpsc::channel::<Instant>();
    let acker = std::thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        let mut in_flight: VecDeque<Instant> = VecDeque::new();
        let mut latencies = Vec::with_capacity(requests as usize);
        for _ in 0..requests {
            let mut status = [0u8; 4];
            if let Err(e) = reader.read_exact(&mut status) {
                let _ = ack_tx.send(Err(format!("read ack: {e}")));
                return latencies;
            }
            while in_flight.is_empty() {
                match sent_rx.recv() {
                    Ok(t) => in_flight.push_back(t),
                    Err(_) => return latencies,
                }
            }
            while let Ok(t) = sent_rx.try_recv() {
                in_flight.push_back(t);
            }
            let now = Instant::now();
            if let Some(sent) = in_flight.pop_front() {
                latencies.push(now.duration_since(sent).as_nanos() as u64);
            }
            if status != [0, 0, 0, 0] {
                let _ = ack_tx.send(Err("server reported a CRC mismatch".to_owned()));
                return latencies;
            }
            if ack_tx.send(Ok(now)).is_err() {
                return latencies;
            }
        }
        latencies
    });

    let start = Instant::now();
    let mut sent = 0u64;
    let mut acked = 0u64;
    while acked < requests {
        while sent < requests && sent - acked < depth as u64 {
            let frame = frames.get(sent as usize % frames.len()).ok_or("no frame")?;
            let _ = sent_tx.send(Instant::now());
            conn.write_all(frame).map_err(|e| format!("send: {e}"))?;
            sent += 1;
        }
        match ack_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(_)) => acked += 1,
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(format!("no acknowledgement within 10 s: {e}")),
        }
        if start.elapsed() > max {
            break;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(conn);
    drop(sent_tx);
    let mut latencies = acker.join().map_err(|_| "ack thread panicked".to_owned())?;
    let bytes = acked * request_bytes as u64;
    println!(
        "{{\"requests\":{acked},\"request_bytes\":{request_bytes},\"depth\":{depth},\"bytes\":{bytes},\
         \"seconds\":{},\"mb_per_s\":{},\"requests_per_s\":{},\"request_latency_us\":{}}}",
        json_f64(elapsed),
        json_f64(mb(bytes) / elapsed),
        json_f64(acked as f64 / elapsed),
        Percentiles::from_ns(&mut latencies).to_json()
    );
    Ok(())
}

/// A few distinct random payloads framed for `min_server`, so the CRC is real work on real
/// data.
fn frames(request_bytes: usize) -> Vec<Vec<u8>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    (0..8)
        .map(|_| {
            let payload: Vec<u8> = (0..request_bytes).map(|_| rng.gen::<u8>()).collect();
            let mut frame = Vec::with_capacity(request_bytes + 8);
            frame.extend_from_slice(&(request_bytes as u32).to_be_bytes());
            frame.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
            frame.extend_from_slice(&payload);
            frame
        })
        .collect()
}

/// `--rate`: requests on a fixed schedule, acknowledgement latency from each one's due time.
fn run_fixed_rate(args: &Args, connect: &str) -> BenchResult<()> {
    let rate: f64 = args.get("rate", 10_000.0)?;
    let duration_s: f64 = args.get("duration-s", 20.0)?;
    let warmup_s: f64 = args.get("warmup-s", 1.0)?;
    let request_bytes: usize = args.get("request-bytes", 100)?;
    if rate <= 0.0 || duration_s <= 0.0 || warmup_s < 0.0 || request_bytes == 0 {
        return Err("--rate > 0, --duration-s > 0, --warmup-s >= 0, --request-bytes > 0".into());
    }
    let total = (rate * duration_s) as u64;
    let interval_ns = 1e9 / rate;
    let warmup_ns = (warmup_s * 1e9) as u64;
    let frames = frames(request_bytes);

    let mut conn = TcpStream::connect(connect).map_err(|e| format!("connect {connect}: {e}"))?;
    let _ = conn.set_nodelay(true);
    let reader = conn.try_clone().map_err(|e| format!("dup socket: {e}"))?;
    let start = Instant::now();
    // Acknowledgements come in request order: the sender passes each due time along before
    // it writes the request.
    let (due_tx, due_rx) = mpsc::channel::<u64>();
    let acker = std::thread::spawn(move || -> BenchResult<(Vec<u64>, u64)> {
        let mut reader = BufReader::new(reader);
        let mut latencies = Vec::with_capacity(total as usize);
        let mut acked = 0u64;
        while let Ok(due_ns) = due_rx.recv() {
            let mut status = [0u8; 4];
            reader
                .read_exact(&mut status)
                .map_err(|e| format!("read ack: {e}"))?;
            let now_ns = start.elapsed().as_nanos() as u64;
            if status != [0, 0, 0, 0] {
                return Err("server reported a CRC mismatch".to_owned());
            }
            acked += 1;
            if due_ns >= warmup_ns {
                latencies.push(now_ns.saturating_sub(due_ns));
            }
        }
        Ok((latencies, acked))
    });

    let mut send_error = None;
    for i in 0..total {
        let due_ns = sleep_until_due(start, i, interval_ns);
        let frame = frames.get(i as usize % frames.len()).ok_or("no frame")?;
        if due_tx.send(due_ns).is_err() {
            break; // the acker failed: its error is reported below
        }
        if let Err(e) = conn.write_all(frame) {
            send_error = Some(format!("send: {e}"));
            break;
        }
    }
    drop(due_tx);
    let (mut latencies, acked) = acker
        .join()
        .map_err(|_| "ack thread panicked".to_owned())??;
    if let Some(e) = send_error {
        return Err(e);
    }
    if acked < total {
        return Err(format!("{acked} of {total} requests acknowledged"));
    }
    println!(
        "{{\"mode\":\"rate\",\"requests\":{acked},\"request_bytes\":{request_bytes},\"rate\":{},\
         \"duration_s\":{},\"warmup_s\":{},\"request_latency_us\":{}}}",
        json_f64(rate),
        json_f64(duration_s),
        json_f64(warmup_s),
        Percentiles::from_ns(&mut latencies).to_json()
    );
    Ok(())
}
