//! The shared flush (`sluice.flush.shared`, on ext4 or XFS and Linux 5.17+, see `Node::start`):
//! one thread makes the appends of every partition in the data directory durable together, in
//! rounds. A round takes every partition that appended since the last one: one such partition
//! gets an fdatasync of its active segment, several get one `syncfs(2)` of the data
//! directory's filesystem (what it promises, and where it needs an fdatasync after it:
//! `filesystem_sync`), which covers them all with one journal commit and one cache flush where
//! concurrent fdatasyncs of separate files force one each (on a slow disk those stall one
//! another for 10-20 ms: docs/performance.md, "Twenty-fourth VM"). With fsync'd acks a round
//! starts as soon as a partition is queued, and appends that arrive during a round are covered
//! by the next (group commit across partitions); with `log.flush.interval.ms` a round starts
//! once per interval (or at once for a partition whose log failed a sync, to report it), so a
//! thousand partitions cost one syncfs per interval, not a timer and an fdatasync each. A
//! failed sync is never retried: every partition of its round takes no more writes and marks
//! nothing durable again, each is reported to `SyncFailures`, and the broker halts on it.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use storage::FlushTarget;

use super::flusher::FlushContext;
use super::Partition;
use crate::durable_file::SyncData;
use crate::filesystem_sync::{self, SyncfsTrust};

/// Where partitions ask for a round; shared by the thread and every partition it serves.
#[derive(Debug, Default)]
pub struct FlushQueue {
    waiting: Mutex<Waiting>,
    wake: Condvar,
    /// `None`: a round as soon as a partition is queued (fsync'd acks); `Some`: one round per
    /// interval (`log.flush.interval.ms`).
    interval: Option<Duration>,
}

#[derive(Debug, Default)]
struct Waiting {
    partitions: Vec<Weak<Partition>>,
    /// With an interval: a partition asked for a round before the next tick (`push(.., true)`).
    urgent: bool,
    stopped: bool,
}

impl FlushQueue {
    pub(super) fn new(interval: Option<Duration>) -> Self {
        Self {
            interval,
            ..Self::default()
        }
    }

    /// Queues `partition` for the next round unless it is queued already (`flush_queued`).
    /// With an interval the round waits for the next tick unless `now` (a failed sync to
    /// report).
    pub(super) fn push(&self, partition: &Partition, now: bool) {
        let wake = now || self.interval.is_none();
        if partition.flush_queued.swap(true, Ordering::AcqRel) {
            if now {
                self.waiting.lock().urgent = true;
                self.wake.notify_one();
            }
            return;
        }
        let mut waiting = self.waiting.lock();
        waiting.partitions.push(partition.me.clone());
        if wake {
            waiting.urgent = true;
            drop(waiting);
            self.wake.notify_one();
        }
    }

    /// The partitions queued since the last call, into `into` (emptied first). Waits for one,
    /// or with an interval until `tick` (or an urgent push). False once stopped.
    pub(super) fn take(&self, into: &mut Vec<Weak<Partition>>, tick: Instant) -> bool {
        into.clear();
        let mut waiting = self.waiting.lock();
        loop {
            if waiting.stopped {
                return false;
            }
            match self.interval {
                None if !waiting.partitions.is_empty() => break,
                None => self.wake.wait(&mut waiting),
                Some(_) if waiting.urgent || Instant::now() >= tick => break,
                Some(_) => {
                    self.wake.wait_until(&mut waiting, tick);
                }
            }
        }
        waiting.urgent = false;
        std::mem::swap(&mut waiting.partitions, into);
        true
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
    /// Opens `data_dir` (syncfs is called through it: it reports every write error on its
    /// filesystem from now on, `filesystem_sync`) and starts the thread. The caller checks
    /// that the kernel and the filesystem deserve it (`filesystem_sync::syncfs_trust`); where
    /// the syncfs alone flushes no device cache, an fdatasync of one file of the round
    /// follows. `ctx.sync_data` syncs one partition's file, `sync_fs` the filesystem holding
    /// the file it is given. With `interval` (`log.flush.interval.ms`) it runs a round once per
    /// interval instead of whenever a partition appends.
    pub fn start(
        data_dir: &Path,
        ctx: FlushContext,
        sync_fs: SyncData,
        interval: Option<Duration>,
    ) -> std::io::Result<Self> {
        let handle = File::open(data_dir)?;
        let filesystem = Filesystem {
            device: handle.metadata()?.dev(),
            flushes_cache: filesystem_sync::syncfs_trust(&handle) == SyncfsTrust::Alone,
            handle,
        };
        let queue = Arc::new(FlushQueue::new(interval));
        let q = Arc::clone(&queue);
        std::thread::Builder::new()
            .name("sluice-flush".into())
            .spawn(move || run(&q, &ctx, &sync_fs, &filesystem))?;
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

/// The data directory's filesystem, as the thread syncs it.
struct Filesystem {
    /// The data directory, opened before any write a syncfs through it answers for.
    handle: File,
    device: u64,
    /// Whether a syncfs ends with a device cache flush by itself (ext4).
    flushes_cache: bool,
}

fn run(queue: &FlushQueue, ctx: &FlushContext, sync_fs: &SyncData, filesystem: &Filesystem) {
    let mut queued = Vec::new();
    let mut round = Vec::new();
    let mut tick = Instant::now() + queue.interval.unwrap_or_default();
    while queue.take(&mut queued, tick) {
        if let Some(interval) = queue.interval {
            let now = Instant::now();
            if now >= tick {
                tick = now + interval;
            }
        }
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
        if round.is_empty() {
            continue;
        }
        let started = Instant::now();
        let result = sync_round(&round, ctx, sync_fs, filesystem);
        ctx.fsync_seconds.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                for (partition, target) in round.drain(..) {
                    partition.mark_durable(&target);
                }
            }
            Err(e) => {
                // Every partition of the round refuses writes before any is reported (the
                // broker halts on the first report).
                let why = e.to_string();
                for (partition, _) in &round {
                    partition.fail_sync(&why);
                }
                for (partition, _) in round.drain(..) {
                    report(&partition, ctx, &why);
                }
            }
        }
    }
}

/// Makes every target of the round durable: one partition on the data directory's filesystem
/// by an fdatasync of its file, several by one syncfs (followed by an fdatasync of one of
/// them where the syncfs flushes no device cache), and any on another filesystem (a partition
/// directory moved to another disk and linked back) by an fdatasync of its own. The first
/// error ends it.
fn sync_round(
    round: &[(Arc<Partition>, FlushTarget)],
    ctx: &FlushContext,
    sync_fs: &SyncData,
    filesystem: &Filesystem,
) -> std::io::Result<()> {
    let mut on_data_dir = round
        .iter()
        .filter(|(p, _)| p.filesystem == filesystem.device)
        .map(|(_, target)| target);
    match (on_data_dir.next(), on_data_dir.next()) {
        (None, _) => {}
        (Some(one), None) => ctx.sync_data.sync(&one.file)?,
        (Some(first), Some(_)) => {
            sync_fs.sync(&filesystem.handle)?;
            if !filesystem.flushes_cache {
                ctx.sync_data.sync(&first.file)?;
            }
        }
    }
    for (_, target) in round
        .iter()
        .filter(|(p, _)| p.filesystem != filesystem.device)
    {
        ctx.sync_data.sync(&target.file)?;
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
