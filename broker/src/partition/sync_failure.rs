//! A failed fsync ends the broker, as a failed log directory does in Kafka (a single one, so
//! the whole broker): after one, Linux may have dropped the unwritten pages, so a retried
//! fsync can report success for records that are gone. Flushers report the first failure
//! here; `run` waits on it and halts the process without a clean shutdown, and the next start
//! recovers every log as after a crash. Nothing the failed fsync covered was acknowledged.

use std::sync::Arc;

use tokio::sync::watch;

use super::TopicPartition;

/// The first fsync failure of any partition, shared by the flushers and `run`.
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
    /// Records a failure; later ones are only logged by their flusher.
    pub fn report(&self, partition: &TopicPartition, why: &str) {
        self.first.send_if_modified(|first| {
            if first.is_some() {
                return false;
            }
            *first = Some(format!("{partition}: {why}"));
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
