//! The shared flush (`sluice.flush.shared`, with fsync'd acks on Linux): one thread makes the
//! appends of every partition in the data directory durable together, in rounds. A round takes
//! every partition that appended since the last one: one such partition gets an fdatasync of
//! its active segment, several get one `syncfs(2)` of the data directory's filesystem (of each
//! filesystem their directories are on), which covers them all with one journal commit and one cache flush where concurrent fdatasyncs of
//! separate files force one each (on a slow disk those stall one another for 10-20 ms:
//! docs/performance.md, "Twenty-fourth VM"). Appends that arrive during a round are covered by
//! the next (group commit across partitions). A failed sync is never retried: every partition
//! of its round takes no more writes and marks nothing durable again, each is reported to
//! `SyncFailures`, and the broker halts on it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use super::flusher::FlushContext;
use super::Partition;
use crate::durable_file::SyncData;

/// Where partitions ask for a round; shared by the thread and every partition it serves.
#[derive(Debug, Default)]
pub struct FlushQueue {
    waiting: Mutex<Waiting>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct Waiting {
    partitions: Vec<Weak<Partition>>,
    stopped: bool,
}

impl FlushQueue {
    /// Queues `partition` for the next round unless it is queued already (`flush_queued`).
    pub(super) fn push(&self, partition: &Partition) {
        if partition.flush_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        self.waiting.lock().partitions.push(partition.me.clone());
        self.wake.notify_one();
    }

    /// The partitions queued since the last call, into `into` (emptied first); waits for one.
    /// False once stopped.
    fn take(&self, into: &mut Vec<Weak<Partition>>) -> bool {
        into.clear();
        let mut waiting = self.waiting.lock();
        while waiting.partitions.is_empty() && !waiting.stopped {
            self.wake.wait(&mut waiting);
        }
        std::mem::swap(&mut waiting.partitions, into);
        !waiting.stopped
    }

    fn stop(&self) {
        self.waiting.lock().stopped = true;
        self.wake.notify_one();
    }
}

/// The running thread; stopped when dropped (with the partition manager).
#[derive(Debug)]
pub struct SharedFlusher {
    queue: Arc<FlushQueue>,
}

impl SharedFlusher {
    /// Starts the thread. `ctx.sync_data` syncs one partition's file, `sync_fs` the
    /// filesystem holding the file it is given (`SyncData::filesystem`).
    pub fn start(ctx: FlushContext, sync_fs: SyncData) -> std::io::Result<Self> {
        let queue = Arc::new(FlushQueue::default());
        let q = Arc::clone(&queue);
        std::thread::Builder::new()
            .name("sluice-flush".into())
            .spawn(move || run(&q, &ctx, &sync_fs))?;
        Ok(Self { queue })
    }

    pub fn queue(&self) -> &Arc<FlushQueue> {
        &self.queue
    }
}

impl Drop for SharedFlusher {
    fn drop(&mut self) {
        self.queue.stop();
    }
}

fn run(queue: &FlushQueue, ctx: &FlushContext, sync_fs: &SyncData) {
    let mut queued = Vec::new();
    let mut round = Vec::new();
    while queue.take(&mut queued) {
        round.clear();
        for weak in queued.drain(..) {
            let Some(partition) = weak.upgrade() else {
                continue;
            };
            // Cleared before the log is read (and with an acquire, so this reads every append
            // made before the flag was set): an append after this queues it again.
            partition.flush_queued.swap(false, Ordering::AcqRel);
            // An fsync the append path ran (sealing a segment at a roll) may have failed.
            if let Some(why) = partition.sync_failure() {
                report(&partition, ctx, &why);
                continue;
            }
            if let Some(target) = partition.pending_flush() {
                round.push((partition, target));
            }
        }
        let started = Instant::now();
        let result = match round.as_slice() {
            [] => continue,
            [(_, one)] => ctx.sync_data.sync(&one.file),
            several => sync_filesystems(several, sync_fs),
        };
        ctx.fsync_seconds.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                for (partition, target) in round.drain(..) {
                    partition.mark_durable(target.up_to_offset);
                }
            }
            Err(e) => {
                let why = e.to_string();
                for (partition, _) in round.drain(..) {
                    partition.fail_sync(&why);
                    report(&partition, ctx, &why);
                }
            }
        }
    }
}

/// One `sync_fs` per filesystem the round's partitions are on (one, unless a partition's
/// directory was moved to another disk and linked back); the first error ends it.
fn sync_filesystems(
    round: &[(Arc<Partition>, storage::FlushTarget)],
    sync_fs: &SyncData,
) -> std::io::Result<()> {
    let mut synced: Vec<u64> = Vec::with_capacity(1);
    for (partition, target) in round {
        if !synced.contains(&partition.filesystem) {
            sync_fs.sync(&target.file)?;
            synced.push(partition.filesystem);
        }
    }
    Ok(())
}

/// Reports a partition's failed sync once (later appends it refuses queue it again).
fn report(partition: &Partition, ctx: &FlushContext, why: &str) {
    if partition.sync_reported.swap(true, Ordering::AcqRel) {
        return;
    }
    super::flusher::report(partition, ctx, why);
}
