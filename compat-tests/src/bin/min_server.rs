//! The least work a durable, acknowledging log server must do per byte: the
//! benchmark's yardstick for Sluice's produce path.
//!
//! A loopback server that reads length-prefixed requests
//! (`u32 length | u32 crc32c | payload`, big-endian), checks the payload's
//! CRC32C, appends the payload to a file, fdatasyncs, and replies with four
//! bytes (`0` = stored, `1` = CRC mismatch) in request order. Group commit:
//! per connection a reader thread checks and appends requests while a
//! syncer thread fdatasyncs whatever has been appended and then acknowledges
//! all of it at once, so one fsync covers every request that arrived during
//! the previous one (as Sluice's flusher does).
//!
//! Nothing else: no protocol decoding, no indexes, no offsets. A broker that
//! costs little more CPU per byte than this is close to the floor. It uses
//! what Sluice uses where that lowers the floor: each payload is read from
//! the socket straight into the buffer it is appended from (one copy in, one
//! into the page cache), and the file is preallocated ahead of the appends
//! (`fallocate`), so an fdatasync need not commit a new file size.
//!
//! After each connection ends it prints `{"cpu_s": X}` (getrusage of the whole
//! process, microsecond resolution, exited threads included) so the benchmark
//! need not rely on /proc's 10 ms ticks.
//!
//! `min_server --dir DIR [--listen 127.0.0.1:0] [--lifetime-s 600]` prints
//! `listening HOST:PORT` on stdout, then serves until killed (or until the
//! lifetime bound). `min_client` is the matching load generator.

#[path = "bench_support/mod.rs"]
mod bench_support;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bench_support::{Args, BenchResult};

/// Largest accepted request payload (a bound on allocation).
const MAX_REQUEST_BYTES: usize = 64 << 20;

fn main() {
    if let Err(e) = run() {
        eprintln!("min_server: {e}");
        std::process::exit(1);
    }
}

fn run() -> BenchResult<()> {
    let args = Args::parse()?;
    let dir = PathBuf::from(args.required("dir")?);
    let listen = args.get("listen", "127.0.0.1:0".to_owned())?;
    let lifetime = Duration::from_secs_f64(args.get("lifetime-s", 600.0)?);
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let listener = TcpListener::bind(&listen).map_err(|e| format!("bind {listen}: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))?;
    println!("listening {addr}");
    let _ = std::io::stdout().flush();
    // Every load is bounded: exit even if nobody stops us.
    std::thread::spawn(move || {
        std::thread::sleep(lifetime);
        eprintln!("min_server: lifetime of {lifetime:?} reached, exiting");
        std::process::exit(2);
    });
    for (n, conn) in listener.incoming().enumerate() {
        let conn = conn.map_err(|e| format!("accept: {e}"))?;
        let path = dir.join(format!("min-server-{n}.log"));
        std::thread::spawn(move || {
            if let Err(e) = serve(conn, path) {
                eprintln!("min_server: connection {n}: {e}");
            }
            println!("{{\"cpu_s\":{:.6}}}", process_cpu_s());
            let _ = std::io::stdout().flush();
        });
    }
    Ok(())
}

/// User + system CPU time of this process (all threads, exited ones included).
fn process_cpu_s() -> f64 {
    // SAFETY: getrusage fills the zeroed struct we own; RUSAGE_SELF is always valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Preallocation step ahead of the appends (as Sluice's active segments).
const PREALLOCATE_BYTES: u64 = 4 << 20;

/// State shared by a connection's reader and syncer.
#[derive(Default)]
struct Progress {
    /// Requests appended to the file (their statuses in order, not yet acknowledged).
    pending: Vec<u8>,
    /// The reader saw end of stream (or an error): the syncer finishes and exits.
    done: bool,
}

fn serve(conn: TcpStream, path: PathBuf) -> BenchResult<()> {
    let _ = conn.set_nodelay(true);
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("create {}: {e}", path.display()))?;
    let sync_file = file
        .try_clone()
        .map_err(|e| format!("dup {}: {e}", path.display()))?;
    let writer = conn.try_clone().map_err(|e| format!("dup socket: {e}"))?;
    let shared = Arc::new((Mutex::new(Progress::default()), Condvar::new()));
    let syncer = {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || sync_and_ack(sync_file, writer, &shared))
    };
    let read_result = read_and_append(conn, file, &shared);
    {
        let (lock, cond) = &*shared;
        lock.lock().unwrap_or_else(|p| p.into_inner()).done = true;
        cond.notify_all();
    }
    let sync_result = syncer
        .join()
        .map_err(|_| "syncer thread panicked".to_owned())?;
    let _ = std::fs::remove_file(&path);
    read_result.and(sync_result)
}

/// Reads requests, checks each CRC and appends the payload; hands each
/// request's status to the syncer.
fn read_and_append(
    conn: TcpStream,
    mut file: File,
    shared: &(Mutex<Progress>, Condvar),
) -> BenchResult<()> {
    let mut reader = conn;
    let mut payload = Vec::new();
    let mut written = 0u64;
    let mut allocated = 0u64;
    loop {
        let mut header = [0u8; 8];
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(format!("read: {e}")),
        }
        let [l0, l1, l2, l3, c0, c1, c2, c3] = header;
        let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
        let crc = u32::from_be_bytes([c0, c1, c2, c3]);
        if len > MAX_REQUEST_BYTES {
            return Err(format!("request of {len} bytes is over the limit"));
        }
        payload.resize(len, 0);
        reader
            .read_exact(&mut payload)
            .map_err(|e| format!("read payload: {e}"))?;
        let status = if crc32c::crc32c(&payload) == crc {
            let end = written + payload.len() as u64;
            if end > allocated {
                let to = end + PREALLOCATE_BYTES;
                // SAFETY: plain syscall on the descriptor `file` owns. A failure (no
                // fallocate here) only means the appends grow the file instead.
                let r = unsafe {
                    libc::fallocate(
                        file.as_raw_fd(),
                        0,
                        allocated as i64,
                        (to - allocated) as i64,
                    )
                };
                if r == 0 {
                    allocated = to;
                }
            }
            file.write_all(&payload)
                .map_err(|e| format!("append: {e}"))?;
            written = end;
            0
        } else {
            1
        };
        let (lock, cond) = shared;
        lock.lock()
            .unwrap_or_else(|p| p.into_inner())
            .pending
            .push(status);
        cond.notify_one();
    }
}

/// Group commit: fdatasync everything appended so far, then acknowledge it.
fn sync_and_ack(
    file: File,
    mut writer: TcpStream,
    shared: &(Mutex<Progress>, Condvar),
) -> BenchResult<()> {
    let (lock, cond) = shared;
    let mut replies = Vec::new();
    loop {
        let statuses = {
            let mut progress = lock.lock().unwrap_or_else(|p| p.into_inner());
            while progress.pending.is_empty() && !progress.done {
                progress = cond.wait(progress).unwrap_or_else(|p| p.into_inner());
            }
            if progress.pending.is_empty() {
                return Ok(());
            }
            std::mem::take(&mut progress.pending)
        };
        // Everything in `statuses` was written before it was queued, so this
        // fdatasync covers it.
        file.sync_data().map_err(|e| format!("fdatasync: {e}"))?;
        replies.clear();
        for status in statuses {
            replies.extend_from_slice(&u32::from(status).to_be_bytes());
        }
        writer
            .write_all(&replies)
            .map_err(|e| format!("reply: {e}"))?;
    }
}
