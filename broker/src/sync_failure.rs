//! A failed fsync ends the broker, as a failed log directory does in Kafka (a single one, so
//! the whole broker): after one, Linux may have dropped the unwritten pages, so a retried
//! fsync can report success for records that are gone. Partition flushers report the first
//! failure here, and so does a cluster node whose controller's Raft stopped on a failed write
//! of its log (openraft stops on any storage error; such a node could no longer follow the
//! metadata, as Kafka halts when its metadata log directory fails). `run` waits on it and
//! halts the process without a clean shutdown, and the next start recovers every log as after
//! a crash. Nothing the failed fsync covered was acknowledged.

use std::fmt::Display;
use std::sync::Arc;

use tokio::sync::watch;

/// The first fsync failure of any partition or of the controller, shared by what writes and
/// `run`.
#[derive(Debug, Clone)]
pub struct SyncFailures {
    first: Arc<watch::Sender<Option<String>>>,
}

impl Default for SyncFailures {
    fn default() -> Self {
        Self {
            first: Arc::new(watch::Sender::new(None)),
        }
    }
}

impl SyncFailures {
    /// Records a failure of `source` (a partition, the controller); later ones are only logged
    /// where they happen.
    pub fn report(&self, source: &impl Display, why: &str) {
        self.first.send_if_modified(|first| {
            if first.is_some() {
                return false;
            }
            *first = Some(format!("{source}: {why}"));
            true
        });
    }

    /// The first failure reported, if any.
    pub fn first(&self) -> Option<String> {
        self.first.borrow().clone()
    }

    /// Waits for the first failure (at once if one was reported already).
    pub async fn wait(&self) -> String {
        let mut rx = self.first.subscribe();
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            // The sender lives in `self`, so `changed` cannot fail while this waits.
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
