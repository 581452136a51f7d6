//! `Log`: one partition's log — an ordered set of segments, the last of which is active, plus the
//! producer state and the log start offset.
//!
//! Invariants: segments never overlap and their base offsets increase; `active` is the only
//! segment written to and holds `log_end_offset`; `log_start_offset` lies in
//! `[first segment base, log_end_offset]`; `producers` equals a replay of the log (plus unexpired
//! producers whose batches left it, see `producer_state`); nothing of a
//! batch that fails validation is written; sealed segments are fsynced (so `flushed_offset` is at
//! least the active segment's base offset); every leader epoch entry starts at or above the log
//! start and below the log end (or at the log start of an emptied log), and the checkpoint file
//! is written before the first batch of a new epoch, so it never lags the data.

mod outcome;
mod read;
mod read_region;
mod region_map;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use outcome::{
    AppendOutcome, FileRegion, FlushTarget, ReadResult, RegionRead, StoredRecords, TimestampOffset,
};
pub use region_map::RegionMap;

use crate::batch::header::{
    set_base_offset, set_partition_leader_epoch, stamp_create_time, stamp_log_append_time,
    BatchHeader, HEADER_BYTES,
};
use crate::batch::record_rules;
use crate::batch::validate::{check_stored_batch, validate_produce_with_span};
use crate::config::{LogConfig, TimestampType};
use crate::error::StorageError;
use crate::leader_epoch::{checkpoint, LeaderEpochCache};
use crate::producer_state::snapshot;
use crate::producer_state::{
    BatchMetadata, ProducerStateManager, ProducerStateView, SequenceCheck,
};
use crate::segment::file_name::{CLEAN_SHUTDOWN_FILE, LOG_START_OFFSET_FILE};
use crate::segment::Segment;

/// A log closed by `Log::close_unsynced`, waiting for its clean-shutdown marker.
#[derive(Debug)]
#[must_use = "without its marker the next open recovers the log as after a crash"]
pub struct UnsyncedClose {
    dir: PathBuf,
}

impl UnsyncedClose {
    /// Writes the clean-shutdown marker, unsynced: only once the filesystem was synced after
    /// `Log::close_unsynced`, and the caller syncs it again for the marker to count.
    pub fn mark_clean(self) -> Result<(), StorageError> {
        std::fs::File::create(self.dir.join(CLEAN_SHUTDOWN_FILE))?;
        Ok(())
    }
}

/// How many producer snapshots are kept.
const SNAPSHOTS_KEPT: usize = 2;

/// One partition's log.
pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    /// Inactive segments by base offset; sealed (trimmed indexes, fsynced).
    pub(crate) sealed: BTreeMap<i64, Segment>,
    /// The segment appends go to; its `next_offset` is the log end offset.
    pub(crate) active: Segment,
    pub(crate) log_start_offset: i64,
    pub(crate) flushed_offset: i64,
    pub(crate) producers: ProducerStateManager,
    /// Leader epochs and where they start; mirrored in `leader-epoch-checkpoint`.
    pub(crate) leader_epochs: LeaderEpochCache,
    /// Why an fsync failed, once one has (see `StorageError::SyncFailed`).
    pub(crate) sync_failure: Option<String>,
    /// Truncations so far: a sync of a `flush_target` taken before one covers nothing after it.
    pub(crate) truncations: u64,
    /// The open's fsyncs (the directory's, the epoch checkpoint's) are the caller's still: see
    /// `open_deferring_syncs`.
    pub(crate) syncs_deferred: bool,
    /// With `syncs_deferred`, a new epoch checkpoint waits in its temp file (`checkpoint::stage`).
    pub(crate) checkpoint_staged: bool,
}

impl Log {
    /// Opens (creating if missing) the partition directory and recovers it (see `recovery`).
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<Log, StorageError> {
        crate::recovery::open_log(dir, config, now_ms, false)
    }

    /// `open`, except that when the directory is new or was shut down cleanly, the open's
    /// fsyncs are left to the caller, so that many partitions cost one sync together: the
    /// directory's, and the epoch checkpoint's, which the open or `assign_leader_epoch` then
    /// only stage in its temp file (the checkpoint in place stays as it was). The caller then
    /// either syncs the filesystem, calls `install_staged_checkpoint`, syncs the filesystem
    /// again if that renamed one, and calls `deferred_syncs_done`; or calls `sync_deferred`.
    /// Either way it makes a new directory's entry in its parent durable. Until then the log
    /// must not be appended to.
    ///
    /// What such an open writes: a new directory and its empty segment; the staged checkpoint
    /// (a new epoch, or the entries at the log end cut as every open cuts them); the removal
    /// of the clean-shutdown marker, temp files and orphaned indexes; the active segment's
    /// indexes made writable. A crash before the syncs leaves an empty new log, or the files
    /// of the clean shutdown (the old checkpoint, the marker) with at most those removals
    /// done and a temp file the next open deletes; the marker still tells the truth, as
    /// nothing was appended. An open that recovers from an unclean shutdown (cutting torn
    /// tails, deleting stale segments) keeps its own fsyncs.
    pub fn open_deferring_syncs(
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Log, StorageError> {
        crate::recovery::open_log(dir, config, now_ms, true)
    }

    /// Whether the open's fsyncs still wait for the caller (`open_deferring_syncs`).
    pub fn syncs_deferred(&self) -> bool {
        self.syncs_deferred
    }

    /// Renames a staged epoch checkpoint into place, once the caller synced the filesystem
    /// after staging it; returns whether there was one (the rename then needs a sync of its
    /// own before `deferred_syncs_done`).
    pub fn install_staged_checkpoint(&mut self) -> Result<bool, StorageError> {
        if !self.checkpoint_staged {
            return Ok(false);
        }
        checkpoint::install_staged(&self.dir)?;
        self.checkpoint_staged = false;
        Ok(true)
    }

    /// The caller synced the whole filesystem after the open and after any staged checkpoint's
    /// installation (`open_deferring_syncs`).
    pub fn deferred_syncs_done(&mut self) {
        debug_assert!(!self.checkpoint_staged, "a staged checkpoint not installed");
        self.syncs_deferred = false;
    }

    /// Makes what `open_deferring_syncs` deferred durable with the log's own fsyncs: a staged
    /// checkpoint is fsynced and renamed into place, then the directory is fsynced. No-op for
    /// a log opened otherwise or already synced.
    pub fn sync_deferred(&mut self) -> Result<(), StorageError> {
        if self.syncs_deferred {
            if self.checkpoint_staged {
                checkpoint::sync_staged(&self.dir)?;
                checkpoint::install_staged(&self.dir)?;
                self.checkpoint_staged = false;
            }
            self.sync_log_dir()?;
            self.syncs_deferred = false;
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Takes effect at the next append / retention pass. A new `segment_index_bytes` applies to
    /// segments created afterwards.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The next offset to assign.
    pub fn log_end_offset(&self) -> i64 {
        self.active.next_offset()
    }

    /// Everything below this offset is fsynced.
    pub fn flushed_offset(&self) -> i64 {
        self.flushed_offset
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments().map(Segment::size_bytes).sum()
    }

    /// Number of segments, the active one included.
    pub fn segment_count(&self) -> usize {
        self.sealed.len() + 1
    }

    pub(crate) fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.sealed.values().chain(std::iter::once(&self.active))
    }

    pub fn producer_state(&self, producer_id: i64) -> Option<ProducerStateView> {
        self.producers.view(producer_id)
    }

    /// The newest leader epoch that wrote to this log (or held its log start), if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.leader_epochs.latest_epoch()
    }

    /// OffsetsForLeaderEpoch (Kafka's `LeaderEpochFileCache.endOffsetFor`): the largest known
    /// epoch <= `epoch` and the offset where `epoch` ended, i.e. the start offset of the first
    /// epoch above it, or the log end offset if `epoch` is the latest. For an epoch below every
    /// known one: `epoch` itself and the first entry's start offset. `None` (Kafka's
    /// `UNDEFINED_EPOCH`, `UNDEFINED_EPOCH_OFFSET` = -1, -1) for epoch -1, an unknown newer
    /// epoch, or a log without epochs.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.leader_epochs
            .end_offset_for(epoch, self.log_end_offset())
    }

    /// The leader epoch that wrote `offset` (Kafka's `LeaderEpochFileCache.epochForOffset`);
    /// `None` for an offset below every known epoch or a log without epochs.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.leader_epochs.epoch_for_offset(offset)
    }

    /// The (epoch, start offset) entries, oldest first, as in `leader-epoch-checkpoint`.
    pub fn epoch_entries(&self) -> Vec<(i32, i64)> {
        self.leader_epochs.entries().to_vec()
    }

    /// Validates and appends one produce payload (exactly one v2 batch). Does not fsync.
    pub fn append(
        &mut self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, StorageError> {
        let (header, span) = validate_produce_with_span(records, self.config.max_message_bytes)?;
        record_rules::check_records(
            &header,
            span,
            record_rules::RecordRules {
                timestamp_type: self.config.timestamp_type,
                before_max_ms: self.config.timestamp_before_max_ms,
                after_max_ms: self.config.timestamp_after_max_ms,
                require_keys: self.config.compact,
            },
            now_ms,
            &self.dir,
            RECORD_CHECK_MAX_DECOMPRESSED_BYTES,
        )?;
        // A batch the producer marked LogAppendTime that a CreateTime log takes is stored as
        // CreateTime, as Kafka rewrites it.
        let marked_append_time = header.timestamp_type() == TimestampType::LogAppendTime;
        let producer_id = header.producer_id();
        let producer_epoch = header.producer_epoch();
        let first_seq = header.base_sequence();
        let last_seq = header.last_sequence();
        let last_offset_delta = header.last_offset_delta();
        let record_count = u32::try_from(header.records_count()).unwrap_or(0);
        let log_append_time = self.config.timestamp_type == TimestampType::LogAppendTime;
        if producer_id >= 0 {
            let check = self
                .producers
                .check(producer_id, producer_epoch, first_seq, last_seq)?;
            if let SequenceCheck::Duplicate(dup) = check {
                return Ok(AppendOutcome::Duplicate {
                    base_offset: dup.base_offset,
                    last_offset: dup.last_offset,
                    log_append_time_ms: if log_append_time { dup.timestamp } else { -1 },
                });
            }
        }
        let max_timestamp = if log_append_time {
            now_ms
        } else {
            header.max_timestamp()
        };
        let base_offset = self.log_end_offset();
        let last_offset = base_offset.saturating_add(i64::from(last_offset_delta));
        // Only the 61-byte header is copied and stamped; the producer's record bytes are written
        // as they are, behind it, in the same vectored write.
        let (mut header, rest) = split_header(records)?;
        set_base_offset(&mut header, base_offset)?;
        set_partition_leader_epoch(&mut header, leader_epoch)?;
        if log_append_time {
            stamp_log_append_time(&mut header, rest, now_ms)?;
        } else if marked_append_time {
            stamp_create_time(&mut header, rest)?;
        }
        self.write_batch_of_epoch(leader_epoch, &header, rest, last_offset, now_ms)?;
        if producer_id >= 0 {
            self.producers.update(
                producer_id,
                producer_epoch,
                BatchMetadata {
                    first_seq,
                    last_seq,
                    base_offset,
                    last_offset,
                    timestamp: max_timestamp,
                },
            );
        }
        Ok(AppendOutcome::Appended {
            base_offset,
            last_offset,
            log_append_time_ms: if log_append_time { now_ms } else { -1 },
            max_timestamp,
            record_count,
        })
    }

    /// Appends batches that already carry their offsets (replication): checked (whole, magic,
    /// CRC, base offset >= log end) first, then written verbatim.
    pub fn append_as_follower(&mut self, records: &[u8]) -> Result<(), StorageError> {
        self.append_from_leader(records, i32::MAX)
    }

    /// `append_as_follower` for a follower of a leader at `leader_epoch`: a batch stamped with
    /// a later epoch is refused and nothing is written (Kafka's `appendAsFollower` checks
    /// `hasHigherPartitionLeaderEpoch`; the CRC does not cover the epoch field, and one
    /// inflated epoch in the epoch cache would hide every real one after it).
    pub fn append_from_leader(
        &mut self,
        records: &[u8],
        leader_epoch: i32,
    ) -> Result<(), StorageError> {
        let mut batches = Vec::new();
        let mut position = 0usize;
        let mut expected = self.log_end_offset();
        while let Some(rest) = records.get(position..).filter(|r| !r.is_empty()) {
            let header = check_stored_batch(rest)?;
            if header.partition_leader_epoch() > leader_epoch {
                return Err(StorageError::EpochAboveLeader {
                    epoch: header.partition_leader_epoch(),
                    leader_epoch,
                });
            }
            // Increasing, not contiguous: a compacted leader sends batches with gaps between
            // them (Kafka's follower append checks monotonic offsets only).
            if header.base_offset() < expected {
                return Err(StorageError::UnexpectedBaseOffset {
                    expected,
                    actual: header.base_offset(),
                });
            }
            let total = header.total_size();
            batches.push(position..position + total);
            expected = header.last_offset().saturating_add(1);
            position += total;
        }
        for range in batches {
            let batch = records.get(range).unwrap_or_default();
            let header = BatchHeader::parse(batch)?;
            let (last_offset, max_timestamp) = (header.last_offset(), header.max_timestamp());
            let meta = idempotent_metadata(&header);
            let epoch = header.partition_leader_epoch();
            let (header, rest) = split_header(batch)?;
            self.write_batch_of_epoch(epoch, &header, rest, last_offset, max_timestamp)?;
            if let Some((producer_id, epoch, meta)) = meta {
                self.producers.update(producer_id, epoch, meta);
            }
        }
        Ok(())
    }

    /// `write_batch`, first recording (and persisting) `epoch` at the log end if it is a new
    /// leader epoch; if the write then fails, an entry this call added is dropped again.
    fn write_batch_of_epoch(
        &mut self,
        epoch: i32,
        header: &[u8; HEADER_BYTES],
        rest: &[u8],
        last_offset: i64,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        debug_assert!(!self.syncs_deferred, "appended before the open's syncs");
        self.check_sync_failure()?;
        let log_end = self.log_end_offset();
        let added = self.assign_leader_epoch(epoch)?;
        let written = self.write_batch(header, rest, last_offset, now_ms);
        if written.is_err() && added && self.leader_epochs.truncate_from_end(log_end) {
            // Best effort: a stale entry at the log end is also dropped by recovery.
            if let Err(e) = self.persist_leader_epochs() {
                tracing::warn!(dir = %self.dir.display(), error = %e, "could not rewrite leader epochs");
            }
        }
        written
    }

    /// Kafka's `maybeAssignEpochStartOffset`: records `epoch` as starting at the log end if it
    /// is newer than every recorded epoch, and persists the checkpoint (tmp, fsync, rename,
    /// fsync dir) before returning; if that fails, the entry is dropped again. Appends call it
    /// for their batch's epoch; a replica that becomes the leader calls it for its own epoch
    /// at once, as Kafka's `Partition.makeLeader` does, so its first produce does not wait for
    /// the checkpoint's two fsyncs. Returns whether an entry was added.
    pub fn assign_leader_epoch(&mut self, epoch: i32) -> Result<bool, StorageError> {
        let log_end = self.log_end_offset();
        if !self.leader_epochs.assign_if_newer(epoch, log_end) {
            return Ok(false);
        }
        if let Err(e) = self.persist_leader_epochs() {
            self.leader_epochs.truncate_from_end(log_end);
            return Err(e);
        }
        tracing::info!(dir = %self.dir.display(), epoch, start_offset = log_end, "new leader epoch");
        Ok(true)
    }

    pub(crate) fn persist_leader_epochs(&mut self) -> Result<(), StorageError> {
        if self.syncs_deferred {
            // Its fsync is the caller's (`sync_deferred`, or a sync of the filesystem).
            drop(checkpoint::stage(&self.dir, self.leader_epochs.entries())?);
            self.checkpoint_staged = true;
            Ok(())
        } else {
            checkpoint::write(&self.dir, self.leader_epochs.entries())
        }
    }

    fn write_batch(
        &mut self,
        header: &[u8; HEADER_BYTES],
        rest: &[u8],
        last_offset: i64,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        if self.active.should_roll(
            (HEADER_BYTES + rest.len()) as u64,
            last_offset,
            self.config.segment_bytes,
            self.config.segment_ms,
            now_ms,
        ) {
            self.roll()?;
        }
        self.active
            .append(header, rest, self.config.index_interval_bytes, now_ms)
    }

    /// Seals the active segment and starts a new one at the log end offset; writes a producer
    /// snapshot there. No-op if the active segment is empty.
    pub(crate) fn roll(&mut self) -> Result<(), StorageError> {
        self.check_sync_failure()?;
        if self.active.is_empty() {
            return Ok(());
        }
        let new_base = self.log_end_offset();
        if let Err(e) = self.active.seal() {
            // Sealing fsyncs the segment; a retry could report success for lost pages.
            return Err(self.record_sync_failure(e));
        }
        let new = Segment::create(&self.dir, new_base, self.config.segment_index_bytes)?;
        let old = std::mem::replace(&mut self.active, new);
        self.sealed.insert(old.base_offset(), old);
        self.flushed_offset = self.flushed_offset.max(new_base);
        self.write_snapshot()?;
        tracing::debug!(dir = %self.dir.display(), new_base, "rolled segment");
        Ok(())
    }

    pub(crate) fn write_snapshot(&self) -> Result<(), StorageError> {
        self.write_snapshot_with(true)
    }

    fn write_snapshot_with(&self, sync: bool) -> Result<(), StorageError> {
        snapshot::write_with(&self.dir, self.log_end_offset(), &self.producers, sync)?;
        snapshot::retain_latest(&self.dir, SNAPSHOTS_KEPT)
    }

    /// The active segment's file and the offset it covers, for an off-thread fdatasync.
    pub fn flush_target(&self) -> FlushTarget {
        FlushTarget {
            file: self.active.log_file(),
            up_to_offset: self.log_end_offset(),
            truncations: self.truncations,
        }
    }

    /// Records that an fsync of `target` completed, unless the log was truncated since the
    /// target was taken: records written again below its offset after the truncation (a
    /// follower's, from its new leader) may be in another file, or written after the fsync
    /// began, so nothing is marked and the next target covers them. Refused after a failed
    /// fsync, as `mark_flushed`.
    pub fn mark_target_flushed(&mut self, target: &FlushTarget) -> Result<(), StorageError> {
        self.check_sync_failure()?;
        if target.truncations != self.truncations {
            return Ok(());
        }
        self.mark_flushed(target.up_to_offset)
    }

    /// Records that a `flush_target` fsync completed. Refused (`SyncFailed`, nothing marked)
    /// once an fsync has failed: a later one may report success for lost pages.
    pub fn mark_flushed(&mut self, up_to_offset: i64) -> Result<(), StorageError> {
        self.check_sync_failure()?;
        self.flushed_offset = self
            .flushed_offset
            .max(up_to_offset.min(self.log_end_offset()));
        Ok(())
    }

    /// Synchronous fsync of everything.
    pub fn flush(&mut self) -> Result<(), StorageError> {
        self.check_sync_failure()?;
        if let Err(e) = self.active.flush() {
            return Err(self.record_sync_failure(e));
        }
        self.flushed_offset = self.log_end_offset();
        Ok(())
    }

    /// Records that an fsync of this log failed (`flush_target`'s, run by the caller): from
    /// now on the log refuses writes, flushes and a clean close (`StorageError::SyncFailed`),
    /// so nothing written since its last good fsync is ever reported durable and the next
    /// open recovers it as after a crash.
    pub fn fail_sync(&mut self, why: &dyn std::fmt::Display) {
        if self.sync_failure.is_none() {
            self.sync_failure = Some(why.to_string());
        }
    }

    /// Why an fsync of this log failed, if one has.
    pub fn sync_failure(&self) -> Option<&str> {
        self.sync_failure.as_deref()
    }

    fn record_sync_failure(&mut self, e: StorageError) -> StorageError {
        self.fail_sync(&e);
        e
    }

    fn check_sync_failure(&self) -> Result<(), StorageError> {
        match &self.sync_failure {
            Some(why) => Err(StorageError::SyncFailed(why.clone())),
            None => Ok(()),
        }
    }

    /// Drops every batch containing or following `offset`, fixing indexes and producer state.
    /// Below the log start offset, the log is emptied and restarts at `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), StorageError> {
        let log_end = self.log_end_offset();
        if offset >= log_end {
            // No batch goes, but an epoch entry at the log end no batch followed (a leader that
            // recorded its epoch and appended nothing before the next election) does: a
            // follower's divergence check that asks about it again would never settle. Kafka's
            // `truncateTo` always truncates the epoch cache from the log end.
            if self.leader_epochs.truncate_from_end(log_end) {
                self.persist_leader_epochs()?;
            }
            return Ok(());
        }
        if offset < self.log_start_offset {
            return self.truncate_fully_and_start_at(offset);
        }
        self.truncations += 1;
        let index_bytes = self.config.segment_index_bytes;
        while self.active.base_offset() >= offset {
            let Some((_, previous)) = self.sealed.pop_last() else {
                break;
            };
            let removed = std::mem::replace(&mut self.active, previous);
            removed.delete()?;
            self.active.unseal(index_bytes)?;
        }
        self.active
            .truncate_to(offset, self.config.index_interval_bytes, index_bytes)?;
        let log_end = self.log_end_offset();
        self.flushed_offset = self.flushed_offset.min(log_end);
        if self.leader_epochs.truncate_from_end(log_end) {
            self.persist_leader_epochs()?;
        }
        if self.log_start_offset > log_end {
            self.set_log_start_offset(log_end)?;
        }
        self.reload_producer_state()?;
        // The deleted segments and snapshots stay deleted through a crash.
        self.sync_log_dir()
    }

    /// Empties the log and restarts it at `offset` (Kafka's `truncateFullyAndStartAt`): a
    /// follower whose log ends below its leader's log start fetches from there.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), StorageError> {
        self.truncations += 1;
        let new = Segment::create(&self.dir, offset, self.config.segment_index_bytes)?;
        let old_active = std::mem::replace(&mut self.active, new);
        if old_active.base_offset() != offset {
            old_active.delete()?;
        }
        for (base, segment) in std::mem::take(&mut self.sealed) {
            if base != offset {
                segment.delete()?;
            }
        }
        self.flushed_offset = offset;
        if self.leader_epochs.clear() {
            self.persist_leader_epochs()?;
        }
        self.set_log_start_offset(offset)?;
        snapshot::delete_above(&self.dir, -1)?;
        self.producers = ProducerStateManager::new();
        self.sync_log_dir()
    }

    /// Loads the newest snapshot at or below the log end and replays the batches after it.
    pub(crate) fn reload_producer_state(&mut self) -> Result<(), StorageError> {
        let log_end = self.log_end_offset();
        snapshot::delete_above(&self.dir, log_end)?;
        let (from, state) = snapshot::load_latest(&self.dir, log_end)?
            .unwrap_or((i64::MIN, ProducerStateManager::new()));
        // A snapshot at or above the log start holds every producer, those whose batches left
        // the log among them; one below it misses what happened between it and the log start,
        // which is gone, so it is not used (Kafka deletes snapshots at or below the log start)
        // and the state is what the log still holds.
        self.producers = if from >= self.log_start_offset {
            state
        } else {
            ProducerStateManager::new()
        };
        self.replay_producers(from.max(self.log_start_offset))?;
        Ok(())
    }

    fn replay_producers(&mut self, from: i64) -> Result<(), StorageError> {
        let mut updates = Vec::new();
        for segment in self.segments().filter(|s| s.next_offset() > from) {
            let Some(first) = segment.find_batch(from)? else {
                continue;
            };
            for info in segment.scan(first.position) {
                let info = info?;
                if let Some(update) = idempotent_metadata(&info.view()?) {
                    updates.push(update);
                }
            }
        }
        for (producer_id, epoch, meta) in updates {
            self.producers.update(producer_id, epoch, meta);
        }
        Ok(())
    }

    /// Persists a new log start offset (atomically, tmp + rename) and cuts the leader epochs
    /// before it (the epoch holding the new start keeps an entry starting there).
    pub(crate) fn set_log_start_offset(&mut self, offset: i64) -> Result<(), StorageError> {
        if offset == self.log_start_offset {
            return Ok(());
        }
        self.log_start_offset = offset;
        if self.leader_epochs.truncate_from_start(offset) {
            self.persist_leader_epochs()?;
        }
        let tmp = self.dir.join(format!("{LOG_START_OFFSET_FILE}.tmp"));
        {
            let mut file = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut file, offset.to_string().as_bytes())?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, self.dir.join(LOG_START_OFFSET_FILE))?;
        snapshot::sync_dir(&self.dir)
    }

    /// fsyncs, trims the indexes, writes a producer snapshot and the clean-shutdown marker.
    /// After a failed fsync it writes nothing: the next open recovers the log.
    pub fn close(mut self) -> Result<(), StorageError> {
        self.check_sync_failure()?;
        self.active.seal()?;
        self.write_snapshot()?;
        let marker = std::fs::File::create(self.dir.join(CLEAN_SHUTDOWN_FILE))?;
        marker.sync_all()?;
        snapshot::sync_dir(&self.dir)?;
        Ok(())
    }

    /// The first half of a close whose fsyncs the caller makes for many logs together: trims
    /// the indexes and writes a producer snapshot as `close` does, without fsyncing them or the
    /// segment. The caller then syncs the filesystem, calls `UnsyncedClose::mark_clean`, and
    /// syncs it again. A crash before the first sync leaves no marker (the next open
    /// recovers); the marker is only written after the sync made everything it vouches for
    /// durable. After a failed fsync it writes nothing.
    pub fn close_unsynced(mut self) -> Result<UnsyncedClose, StorageError> {
        self.check_sync_failure()?;
        self.active.seal_with(false)?;
        self.write_snapshot_with(false)?;
        Ok(UnsyncedClose {
            dir: self.dir.clone(),
        })
    }

    /// Removes the partition directory.
    pub fn delete(self) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}

/// A copy of a whole batch's header (to stamp) and the rest of its bytes (written untouched).
fn split_header(batch: &[u8]) -> Result<([u8; HEADER_BYTES], &[u8]), StorageError> {
    let (head, rest) = batch
        .split_at_checked(HEADER_BYTES)
        .ok_or_else(|| StorageError::corrupt("batch shorter than its header"))?;
    let header = head
        .try_into()
        .map_err(|_| StorageError::corrupt("batch shorter than its header"))?;
    Ok((header, rest))
}

/// Producer id, epoch and metadata of an idempotent data batch; `None` otherwise.
fn idempotent_metadata(header: &BatchHeader<'_>) -> Option<(i64, i16, BatchMetadata)> {
    if header.producer_id() < 0 || header.is_control() {
        return None;
    }
    Some((
        header.producer_id(),
        header.producer_epoch(),
        BatchMetadata {
            first_seq: header.base_sequence(),
            last_seq: header.last_sequence(),
            base_offset: header.base_offset(),
            last_offset: header.last_offset(),
            timestamp: header.max_timestamp(),
        },
    ))
}

#[cfg(test)]
mod epoch_tests;
#[cfg(test)]
mod index_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod preallocate_tests;
#[cfg(test)]
mod read_tests;
#[cfg(test)]
mod scan_tests;
#[cfg(test)]
mod sync_failure_tests;
#[cfg(test)]
pub(crate) mod tests;

/// Most bytes a produced batch may decompress to when its records are checked one by one.
const RECORD_CHECK_MAX_DECOMPRESSED_BYTES: usize = 64 << 20;
