//! Finding and running `kcat` (librdkafka's command-line client).
//!
//! The binary is `KCAT` if set, else `kcat` (or the older name `kafkacat`)
//! on `PATH`. Every run has a deadline, so a hanging kcat fails the test.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The kcat binary, if installed.
pub fn find_kcat() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KCAT").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    ["kcat", "kafkacat"]
        .iter()
        .find_map(|name| find_on_path(name))
}

/// The first executable called `name` on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// What a finished kcat run left behind.
#[derive(Debug)]
pub struct KcatOutput {
    /// Exit code (`None` if killed by a signal or by our deadline).
    pub code: Option<i32>,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr, lossily decoded.
    pub stderr: String,
}

impl KcatOutput {
    /// True for exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Reads `topic` from the beginning to its current end (`-C -o beginning -e`), one
/// `key:value` line per record, and kills kcat at `timeout`.
pub fn read_from_beginning(
    kcat: &Path,
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> KcatOutput {
    let args = [
        "-b",
        bootstrap,
        "-t",
        topic,
        "-C",
        "-o",
        "beginning",
        "-e",
        "-q",
        "-f",
        "%k:%s\n",
    ];
    run_kcat(kcat, &args, b"", timeout)
}

/// Runs kcat with `args`, feeding `stdin`, and kills it at `timeout`.
/// stdout and stderr are drained on threads so a chatty run cannot block.
pub fn run_kcat(kcat: &Path, args: &[&str], stdin: &[u8], timeout: Duration) -> KcatOutput {
    let mut child = match Command::new(kcat)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("cannot run {}: {e}", kcat.display()),
    };
    let mut child_stdout = child.stdout.take();
    let mut child_stderr = child.stderr.take();
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = child_stdout.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = child_stderr.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let mut child_stdin = child.stdin.take();
    let input = stdin.to_vec();
    let in_thread = std::thread::spawn(move || {
        if let Some(s) = child_stdin.as_mut() {
            // A write error means kcat exited early; its exit code says why.
            let _ = s.write_all(&input);
        }
        // Dropping stdin closes it, which tells `kcat -P` to flush and exit.
        drop(child_stdin);
    });
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Err(e) => panic!("cannot wait for kcat: {e}"),
        }
    };
    let _ = in_thread.join();
    let stdout = out_thread.join().unwrap_or_default();
    let mut stderr = String::from_utf8_lossy(&err_thread.join().unwrap_or_default()).into_owned();
    if timed_out {
        stderr.push_str(&format!("\n[killed by the test after {timeout:?}]"));
    }
    KcatOutput {
        code: if timed_out {
            None
        } else {
            status.and_then(|s| s.code())
        },
        stdout,
        stderr,
    }
}
