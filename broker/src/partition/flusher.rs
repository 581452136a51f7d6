//! Group commit: one task per partition fsyncs the active segment off the async runtime.
//!
//! Appends that arrive while an fsync runs are covered by the next one, so under load many
//! produce requests share one fsync. With the interval policy the task flushes on a timer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;

use super::{DurabilityPolicy, Partition};

/// Runs until the partition is closed.
pub async fn run_flusher(partition: Arc<Partition>, fsync_seconds: Histogram) {
    let mut backoff_ms = 10u64;
    loop {
        match partition.policy {
            DurabilityPolicy::SyncOnAck => partition.flush_wanted.notified().await,
            DurabilityPolicy::Interval { interval_ms } => {
                tokio::select! {
                    () = partition.flush_wanted.notified() => {}
                    () = tokio::time::sleep(Duration::from_millis(interval_ms)) => {}
                }
            }
        }
        if partition.is_closed() {
            return;
        }
        while let Some(target) = partition.pending_flush() {
            let file = Arc::clone(&target.file);
            let started = Instant::now();
            let result = tokio::task::spawn_blocking(move || file.sync_data()).await;
            fsync_seconds.observe(started.elapsed().as_secs_f64());
            match result {
                Ok(Ok(())) => {
                    backoff_ms = 10;
                    partition.mark_durable(target.up_to_offset);
                }
                Ok(Err(e)) => {
                    tracing::error!(partition = %partition.tp, error = %e, "fsync failed; retrying");
                    tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                    backoff_ms = (backoff_ms * 2).min(1000);
                }
                Err(e) => {
                    tracing::error!(partition = %partition.tp, error = %e, "fsync task failed");
                    return;
                }
            }
            if matches!(partition.policy, DurabilityPolicy::Interval { .. }) {
                break;
            }
        }
    }
}
