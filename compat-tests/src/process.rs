//! A real `sluice` broker process under test.
//!
//! [`SluiceProcess::start`] picks a free loopback port, makes (or reuses) a
//! data directory, spawns the binary with stderr/stdout appended to a log file
//! in a temporary directory, and returns only once the port answers an
//! ApiVersions request. Invariants: while a `SluiceProcess` exists it owns the
//! child process and its port; dropping it kills the child (SIGKILL), so a
//! failed test never leaves brokers behind. When a test panics, the log tail
//! is printed and the temporary directory is kept for inspection.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ports::free_port;
use crate::wire;

/// How long a broker may take to answer its first ApiVersions request.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a broker may take to exit after SIGTERM.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// How many bytes of the log [`SluiceProcess::log_tail`] returns.
const LOG_TAIL_BYTES: u64 = 16 * 1024;

/// How to start a broker. Built with chained methods:
/// `SluiceOptions::new().set("num.partitions", "3")`.
#[derive(Debug, Clone, Default)]
pub struct SluiceOptions {
    /// Broker settings passed as `--set key=value`, in order.
    settings: Vec<(String, String)>,
    /// Data directory to reuse; `None` means a fresh one in the temp dir.
    data_dir: Option<PathBuf>,
    /// Node id passed as `--node-id`.
    node_id: Option<i32>,
    /// Log level passed as `--log-level`; defaults to `SLUICE_TEST_LOG_LEVEL` or `info`.
    log_level: Option<String>,
    /// Extra raw command-line arguments, appended last.
    extra_args: Vec<String>,
    /// Whether to pass `--metrics-listen` (off by default: not every build
    /// has the metrics listener, and most tests do not need it).
    metrics: bool,
    /// Environment variables given to the child, after every inherited
    /// `SLUICE_*` variable has been removed.
    env: Vec<(String, String)>,
    /// Give listen address, advertised listener, data dir, node id, log level
    /// and metrics listener as `SLUICE_*` variables instead of flags.
    env_instead_of_flags: bool,
}

impl SluiceOptions {
    /// Default options: fresh data dir, node id 1, Kafka default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a broker setting (`--set key=value`), using Kafka's names.
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.settings.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Uses an existing data directory instead of a fresh one.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Sets `--node-id`.
    pub fn node_id(mut self, node_id: i32) -> Self {
        self.node_id = Some(node_id);
        self
    }

    /// Sets `--log-level`.
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = Some(level.to_owned());
        self
    }

    /// Starts the metrics listener on a free port (`--metrics-listen`).
    pub fn with_metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// Appends a raw command-line argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_owned());
        self
    }

    /// Passes an environment variable to the broker. Inherited `SLUICE_*`
    /// variables are still removed (the run stays hermetic); these are set
    /// explicitly afterwards.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Starts the broker with no flags for what the harness chooses (listen
    /// address, advertised listener, data dir, node id, log level, metrics
    /// listener): they go in `SLUICE_LISTEN`, `SLUICE_ADVERTISED_LISTENER`,
    /// `SLUICE_DATA_DIR`, `SLUICE_NODE_ID`, `SLUICE_LOG_LEVEL` and
    /// `SLUICE_METRICS_LISTEN` instead. Settings given with
    /// [`SluiceOptions::set`] are still flags; use `env("SLUICE_SET", ..)`.
    pub fn env_instead_of_flags(mut self) -> Self {
        self.env_instead_of_flags = true;
        self
    }
}

/// The broker binary: `SLUICE_BIN`, else `<workspace>/target/debug/sluice`.
pub fn sluice_bin() -> PathBuf {
    match std::env::var_os("SLUICE_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => crate::workspace_root()
            .join("target")
            .join("debug")
            .join("sluice"),
    }
}

/// A running (or stopped, between [`SluiceProcess::kill9`] and
/// [`SluiceProcess::restart`]) broker process.
pub struct SluiceProcess {
    /// The options it was started with, reused by `restart`.
    options: SluiceOptions,
    /// The child process; `None` once it has been stopped and reaped.
    child: Option<Child>,
    /// Port the broker listens on; kept across restarts.
    port: u16,
    /// Port of the metrics listener; kept across restarts.
    metrics_port: u16,
    /// Holds the log file and, unless one was given, the data directory.
    /// `None` only after it was deliberately kept on disk in `Drop`.
    temp_dir: Option<TempDir>,
    /// Path of the temporary directory (stays valid even after it is kept).
    temp_path: PathBuf,
    /// The data directory the broker uses.
    data_dir: PathBuf,
    /// The file stdout and stderr are appended to.
    log_path: PathBuf,
    /// How many times the process has been started (for log markers).
    starts: u32,
}

impl SluiceProcess {
    /// Starts a broker with default options.
    pub fn start_default() -> Self {
        Self::start(SluiceOptions::new())
    }

    /// Starts a broker and waits until it answers ApiVersions; panics with
    /// the log tail if it does not within ~20 s.
    pub fn start(options: SluiceOptions) -> Self {
        let temp_dir = match tempfile::Builder::new().prefix("sluice-test-").tempdir() {
            Ok(d) => d,
            Err(e) => panic!("cannot create a temporary directory: {e}"),
        };
        let temp_path = temp_dir.path().to_path_buf();
        let data_dir = options
            .data_dir
            .clone()
            .unwrap_or_else(|| temp_path.join("data"));
        if let Err(e) = std::fs::create_dir_all(&data_dir) {
            panic!("cannot create data dir {}: {e}", data_dir.display());
        }
        let mut process = Self {
            options,
            child: None,
            port: free_port(),
            metrics_port: free_port(),
            log_path: temp_path.join("sluice.log"),
            temp_dir: Some(temp_dir),
            temp_path,
            data_dir,
            starts: 0,
        };
        process.spawn_and_wait();
        process
    }

    /// `127.0.0.1:<port>`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The metrics listener address (only listening with
    /// [`SluiceOptions::with_metrics`]).
    pub fn metrics_addr(&self) -> String {
        format!("127.0.0.1:{}", self.metrics_port)
    }

    /// The value of metric `name` (a whole sample name, labels included) this broker serves on
    /// its metrics listener (`SluiceOptions::with_metrics`), if it answers.
    pub fn metric(&self, name: &str) -> Option<f64> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.metrics_addr().as_str()).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The log file (stdout + stderr of every start).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The OS process id, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True if the process is running (not exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last ~16 KiB of the log file.
    pub fn log_tail(&self) -> String {
        read_tail(&self.log_path, LOG_TAIL_BYTES)
    }

    /// Kills the broker with SIGKILL (no chance to flush or clean up) and
    /// reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Ignored: the process may have exited already, which is fine.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the process (SIGSTOP): it keeps its sockets but answers nothing.
    pub fn pause(&mut self) {
        if let Some(child) = self.child.as_ref() {
            signal(child, libc::SIGSTOP);
        }
    }

    /// Thaws a process frozen by [`SluiceProcess::pause`] (SIGCONT).
    pub fn resume(&mut self) {
        if let Some(child) = self.child.as_ref() {
            signal(child, libc::SIGCONT);
        }
    }

    /// Sends SIGTERM and waits for the exit; returns the exit status. Panics
    /// (after SIGKILL) if the broker does not exit within 20 s.
    pub fn terminate(&mut self) -> ExitStatus {
        let Some(mut child) = self.child.take() else {
            panic!("terminate() called on a broker that is not running");
        };
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        signal(&child, libc::SIGTERM);
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "broker did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM; log tail:\n{}",
                        self.log_tail()
                    );
                }
                Err(e) => panic!("cannot wait for the broker: {e}"),
            }
        }
    }

    /// Starts the broker again on the same port and data directory. A broker
    /// still running is first stopped with SIGTERM.
    pub fn restart(&mut self) {
        if self.is_running() {
            let status = self.terminate();
            assert!(
                status.success(),
                "broker exited with {status} on SIGTERM before restart; log tail:\n{}",
                self.log_tail()
            );
        }
        self.child = None;
        self.spawn_and_wait();
    }

    /// Spawns the binary and waits until it answers ApiVersions.
    fn spawn_and_wait(&mut self) {
        let bin = sluice_bin();
        assert!(
            bin.exists(),
            "sluice binary not found at {}: build it with `cargo build -p sluice-broker --bin sluice` \
             or point SLUICE_BIN at it",
            bin.display()
        );
        self.starts += 1;
        let mut log = match OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
        {
            Ok(f) => f,
            Err(e) => panic!("cannot open log file {}: {e}", self.log_path.display()),
        };
        let _ = writeln!(
            log,
            "===== sluice-compat-tests: start #{} of {} on port {} =====",
            self.starts,
            bin.display(),
            self.port
        );
        let stderr = clone_file(&log);
        let listen = self.bootstrap();
        let level = self
            .options
            .log_level
            .clone()
            .or_else(|| std::env::var("SLUICE_TEST_LOG_LEVEL").ok())
            .unwrap_or_else(|| "info".to_owned());
        let mut cmd = Command::new(&bin);
        // Hermetic: no SLUICE_* setting from the developer's environment
        // (e.g. SLUICE_SET, SLUICE_CONFIG) may change the broker under test.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SLUICE_") {
                cmd.env_remove(name);
            }
        }
        let node_id = self.options.node_id.unwrap_or(1).to_string();
        let data_dir = self.data_dir.display().to_string();
        let metrics_addr = self.metrics_addr();
        let mut chosen: Vec<(&str, &str, &str)> = vec![
            ("--listen", "SLUICE_LISTEN", &listen),
            (
                "--advertised-listener",
                "SLUICE_ADVERTISED_LISTENER",
                &listen,
            ),
            ("--data-dir", "SLUICE_DATA_DIR", &data_dir),
            ("--node-id", "SLUICE_NODE_ID", &node_id),
            ("--log-level", "SLUICE_LOG_LEVEL", &level),
        ];
        if self.options.metrics {
            chosen.push(("--metrics-listen", "SLUICE_METRICS_LISTEN", &metrics_addr));
        }
        for (flag, var, value) in chosen {
            if self.options.env_instead_of_flags {
                cmd.env(var, value);
            } else {
                cmd.arg(flag).arg(value);
            }
        }
        for (key, value) in &self.options.env {
            cmd.env(key, value);
        }
        for (key, value) in &self.options.settings {
            cmd.arg("--set").arg(format!("{key}={value}"));
        }
        cmd.args(&self.options.extra_args)
            .current_dir(&self.temp_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("cannot spawn {}: {e}", bin.display()),
        };
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until the port answers ApiVersions v3 with error code 0.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let addr = self.bootstrap();
        let mut last_problem = String::from("no attempt made");
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "sluice exited during startup with {}; log tail:\n{}",
                        describe_status(status),
                        self.log_tail()
                    );
                }
            }
            match wire::api_versions(addr.as_str(), Duration::from_secs(2)) {
                Ok(r) if r.error_code == 0 && !r.api_keys.is_empty() => return,
                Ok(r) => {
                    last_problem = format!(
                        "ApiVersions answered error_code {} with {} api keys",
                        r.error_code,
                        r.api_keys.len()
                    )
                }
                Err(e) => last_problem = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill9();
        panic!(
            "sluice did not answer ApiVersions on {addr} within {STARTUP_TIMEOUT:?} \
             (last problem: {last_problem}); log tail:\n{}",
            self.log_tail()
        );
    }
}

impl Drop for SluiceProcess {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "---- sluice log tail ({}) ----\n{}\n---- end of sluice log ----",
                self.log_path.display(),
                self.log_tail()
            );
            if let Some(dir) = self.temp_dir.take() {
                eprintln!("kept test directory {}", dir.keep().display());
            }
        }
    }
}

/// Sends a signal to a child process.
fn signal(child: &Child, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        panic!("child pid {} does not fit pid_t", child.id());
    };
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own
    // un-reaped child, so it cannot have been reused by another process.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}) failed: {}",
        std::io::Error::last_os_error()
    );
}

/// A second handle to the log file, so stdout and stderr can both append to it.
fn clone_file(file: &File) -> File {
    match file.try_clone() {
        Ok(f) => f,
        Err(e) => panic!("cannot duplicate the log file handle: {e}"),
    }
}

/// "exit code N" or "signal N".
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => status.to_string(),
    }
}

/// The last `max_bytes` of a file, lossily decoded.
fn read_tail(path: &Path, max_bytes: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log file at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max_bytes);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return String::from("(cannot seek in log file)");
    }
    let mut buf = Vec::new();
    if file.read_to_end(&mut buf).is_err() {
        return String::from("(cannot read log file)");
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Copies a directory tree (files and directories only).
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
