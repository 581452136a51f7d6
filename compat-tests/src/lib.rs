//! Test-support library for Sluice's end-to-end compatibility tests.
//!
//! The tests in `compat-tests/tests/` start real `sluice` processes and drive
//! them with real Kafka clients (kcat, librdkafka through the `rdkafka` crate,
//! the Python clients) and with hand-built frames. This crate owns everything
//! those tests share:
//!
//! - [`process`]: starting, stopping, killing and restarting a broker process.
//! - [`cluster`]: several brokers forming one cluster, with kill/pause/restart.
//! - [`docker`]: Docker and compose commands, image builds, self-cleaning
//!   compose projects.
//! - [`load`]: a numbered acks=all produce load for failover tests.
//! - [`ports`]: picking free loopback ports.
//! - [`wire`]: raw-socket requests encoded with `kafka-protocol`.
//! - [`batch`]: building v2 record batches and parsing batch headers in
//!   segment files.
//! - [`kcat`]: finding and running the `kcat` binary.
//! - [`rdk`]: librdkafka clients (producer, manual-assignment consumer,
//!   admin) configured for tests.
//!
//! It is test-support code: a failure here is a failed test, so helpers panic
//! with a readable message instead of returning errors the caller would only
//! unwrap.

pub mod batch;
pub mod cluster;
pub mod docker;
pub mod kcat;
pub mod load;
pub mod ports;
pub mod process;
pub mod rdk;
pub mod wire;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use process::{SluiceOptions, SluiceProcess};
pub use wire::{raw_request, RawConnection};

/// The workspace root (the directory holding the top-level `Cargo.toml`).
///
/// Found from this crate's manifest directory, which is fixed at compile time,
/// so it works no matter where `cargo test` was started from.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// True when running in CI (`CI=true` or `CI=1`), where a missing tool is a
/// failure instead of a skipped test.
pub fn in_ci() -> bool {
    matches!(
        std::env::var("CI")
            .map(|v| v.to_ascii_lowercase())
            .as_deref(),
        Ok("true") | Ok("1") | Ok("yes")
    )
}

/// Decides what to do when something a test needs is missing: in CI, fail;
/// elsewhere, print why the test is skipped and return `false` so the caller
/// can return early.
pub fn require(available: bool, what: &str) -> bool {
    if available {
        return true;
    }
    assert!(
        !in_ci(),
        "{what} is missing and CI=true: run ./scripts/test.sh, which installs it"
    );
    eprintln!("SKIPPED: {what} is missing (not in CI, so this test is skipped)");
    false
}

/// A topic name unique to this process run and call, so tests never share a
/// topic even when they share a broker.
pub fn unique_topic(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
