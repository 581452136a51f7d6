//! Group commit: one task per partition fsyncs the active segment off the async runtime.
//!
//! Appends that arrive while an fsync runs are covered by the next one, so under load many
//! produce requests share one fsync. With `SyncOnAck` the fsyncs run back to back on one
//! blocking thread for as long as appends keep coming, and each marks its offsets durable
//! from there (waking the waiting acknowledgements at once, without a hop back through this
//! task per fsync); the thread returns when nothing is left to sync. With the interval policy
//! the task flushes on a timer.

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
        let result = match partition.policy {
            DurabilityPolicy::SyncOnAck => {
                let p = Arc::clone(&partition);
                let histogram = fsync_seconds.clone();
                tokio::task::spawn_blocking(move || sync_while_pending(&p, &histogram)).await
            }
            DurabilityPolicy::Interval { .. } => match partition.pending_flush() {
                Some(target) => {
                    let p = Arc::clone(&partition);
                    let histogram = fsync_seconds.clone();
                    tokio::task::spawn_blocking(move || {
                        let started = Instant::now();
                        let result = target.file.sync_data();
                        histogram.observe(started.elapsed().as_secs_f64());
                        result.map(|()| p.mark_durable(target.up_to_offset))
                    })
                    .await
                }
                None => Ok(Ok(())),
            },
        };
        match result {
            Ok(Ok(())) => backoff_ms = 10,
            Ok(Err(e)) => {
                tracing::error!(partition = %partition.tp, error = %e, "fsync failed; retrying");
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(1000);
                // Retry even if no new append comes.
                partition.flush_wanted.notify_one();
            }
            Err(e) => {
                tracing::error!(partition = %partition.tp, error = %e, "fsync task failed");
                return;
            }
        }
    }
}

/// On a blocking thread: fsyncs and marks durable until nothing appended is left unsynced.
/// An fsync error ends it; nothing after the failed fsync was marked.
fn sync_while_pending(partition: &Partition, fsync_seconds: &Histogram) -> std::io::Result<()> {
    while let Some(target) = partition.pending_flush() {
        let started = Instant::now();
        let result = target.file.sync_data();
        fsync_seconds.observe(started.elapsed().as_secs_f64());
        result?;
        partition.mark_durable(target.up_to_offset);
    }
    Ok(())
}
