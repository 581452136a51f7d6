//! Group commit: one task per partition fsyncs the active segment off the async runtime.
//!
//! Appends that arrive while an fsync runs are covered by the next one, so under load many
//! produce requests share one fsync. With `SyncOnAck` the fsyncs run back to back on one
//! blocking thread for as long as appends keep coming, and each marks its offsets durable
//! from there (waking the waiting acknowledgements at once, without a hop back through this
//! task per fsync); the thread returns when nothing is left to sync. With the interval policy
//! the task flushes on a timer. A failed fsync is never retried: the log refuses further
//! writes, the failure goes to `SyncFailures` (the broker halts on it) and the task ends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;

use super::{DurabilityPolicy, Partition, SyncFailures};

pub use crate::durable_file::SyncData;

/// What every flusher shares.
#[derive(Clone, Debug)]
pub struct FlushContext {
    /// Where flushers record fsync durations.
    pub fsync_seconds: Histogram,
    pub sync_data: SyncData,
    pub failures: SyncFailures,
}

/// Runs until the partition is closed or an fsync of it fails.
pub async fn run_flusher(partition: Arc<Partition>, ctx: FlushContext) {
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
        // An fsync the append path ran (sealing a segment at a roll) may have failed.
        if let Some(why) = partition.sync_failure() {
            report(&partition, &ctx, &why);
            return;
        }
        let result = {
            let p = Arc::clone(&partition);
            let ctx = ctx.clone();
            tokio::task::spawn_blocking(move || match p.policy {
                DurabilityPolicy::SyncOnAck => sync_while_pending(&p, &ctx),
                DurabilityPolicy::Interval { .. } => match p.pending_flush() {
                    Some(target) => sync_one(&p, &ctx, &target),
                    None => Ok(()),
                },
            })
            .await
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let why = e.to_string();
                partition.fail_sync(&why);
                report(&partition, &ctx, &why);
                return;
            }
            Err(e) => {
                tracing::error!(partition = %partition.tp, error = %e, "fsync task failed");
                return;
            }
        }
    }
}

pub(super) fn report(partition: &Partition, ctx: &FlushContext, why: &str) {
    tracing::error!(
        partition = %partition.tp,
        error = %why,
        "fsync failed: records written since the last good fsync may be lost; this log takes \
         no more writes and nothing more is acknowledged"
    );
    ctx.failures.report(&partition.tp, why);
}

/// How long a flusher thread that found nothing left to sync waits for the next append
/// before it returns to the pool: an append in that time unparks it directly, without the
/// hops through the flusher task and `spawn_blocking`.
pub const LINGER: Duration = Duration::from_millis(1);

/// The most flusher threads lingering at once, process-wide: well below tokio's 512 blocking
/// threads, so with thousands of partitions a lingering thread never keeps another
/// partition's fsync (or other blocking work) waiting for a thread.
const MAX_LINGERING: usize = 64;

/// Flusher threads lingering now.
static LINGERING: AtomicUsize = AtomicUsize::new(0);

/// One of `max` places to linger in, given back when dropped.
struct LingerSlot<'a> {
    held: &'a AtomicUsize,
}

impl<'a> LingerSlot<'a> {
    /// A place if fewer than `max` are taken.
    fn take(held: &'a AtomicUsize, max: usize) -> Option<LingerSlot<'a>> {
        held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| LingerSlot { held })
    }
}

impl Drop for LingerSlot<'_> {
    fn drop(&mut self) {
        self.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// On a blocking thread: fsyncs and marks durable until nothing appended is left unsynced
/// and no append came for `LINGER`. An fsync error ends it; nothing after the last good fsync
/// was marked.
fn sync_while_pending(partition: &Partition, ctx: &FlushContext) -> std::io::Result<()> {
    loop {
        while let Some(target) = partition.pending_flush() {
            sync_one(partition, ctx, &target)?;
        }
        if !linger(partition) {
            return Ok(());
        }
    }
}

/// Waits up to `LINGER` for an append; true if one came. An append that runs while no
/// thread is registered wakes the flusher task instead, so none is missed either way. With
/// `MAX_LINGERING` threads lingering already it does not wait.
fn linger(partition: &Partition) -> bool {
    let Some(_slot) = LingerSlot::take(&LINGERING, MAX_LINGERING) else {
        return partition.pending_flush().is_some();
    };
    *partition.lingering_flusher.lock() = Some(std::thread::current());
    let deadline = Instant::now() + LINGER;
    let mut appended = partition.pending_flush().is_some();
    while !appended {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::park_timeout(deadline - now);
        appended = partition.pending_flush().is_some();
    }
    *partition.lingering_flusher.lock() = None;
    appended || partition.pending_flush().is_some()
}

/// One fsync; on success everything below the target's offset is durable.
fn sync_one(
    partition: &Partition,
    ctx: &FlushContext,
    target: &storage::FlushTarget,
) -> std::io::Result<()> {
    let started = Instant::now();
    let result = ctx.sync_data.sync(&target.file);
    ctx.fsync_seconds.observe(started.elapsed().as_secs_f64());
    result?;
    partition.mark_durable(target);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod linger_slot_tests {
    use super::*;

    #[test]
    fn no_more_than_max_linger_at_once_and_a_dropped_slot_is_free_again() {
        let held = AtomicUsize::new(0);
        let first = LingerSlot::take(&held, 2).expect("first place");
        let second = LingerSlot::take(&held, 2).expect("second place");
        assert!(LingerSlot::take(&held, 2).is_none(), "a third place of two");
        drop(first);
        let third = LingerSlot::take(&held, 2).expect("a place given back");
        drop((second, third));
        assert_eq!(held.load(Ordering::Acquire), 0);
    }
}
