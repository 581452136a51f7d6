//! Opening a partition directory: cleanup, segment recovery, log start and producer state.
//!
//! Invariants after `open_log`: interrupted compaction swaps are completed (see
//! `compaction::swap`); temp files and orphan index files are gone; segments do not overlap
//! (a segment starting below the end of the one before it is a stale one that a crash brought
//! back after a truncation deleted it, and is deleted, see `load_segments`); every segment's
//! indexes are sane (rebuilt otherwise); without a clean-shutdown marker the active segment has
//! been rescanned with CRC checks and cut to its longest valid prefix of whole batches; a
//! `log_start_offset` file that is present but unreadable fails the open; snapshots
//! above the log end are gone; producer state = newest valid snapshot <= log end + replay; leader
//! epochs = the checkpoint (or, if it is missing or corrupt, a scan of the batch headers' leader
//! epochs) cut to `[log start, log end)` and persisted if that changed anything; the
//! clean-shutdown marker is removed (so a crash from now on triggers recovery next time).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::config::LogConfig;
use crate::error::StorageError;
use crate::leader_epoch::checkpoint::{self, Checkpoint};
use crate::leader_epoch::LeaderEpochCache;
use crate::log::Log;
use crate::producer_state::snapshot::sync_dir;
use crate::producer_state::ProducerStateManager;
use crate::segment::file_name::{
    is_temp_file, parse_offset, CLEAN_SHUTDOWN_FILE, INDEX_SUFFIX, LOG_START_OFFSET_FILE,
    LOG_SUFFIX, TIME_INDEX_SUFFIX,
};
use crate::segment::segment::remove_if_exists;
use crate::segment::Segment;

/// What `scan_dir` found.
struct DirListing {
    log_bases: Vec<i64>,
}

/// Deletes transient files and index files without a log; lists the segments.
fn scan_dir(dir: &Path) -> Result<DirListing, StorageError> {
    let mut log_bases = Vec::new();
    let mut index_files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if is_temp_file(name) {
            tracing::info!(file = name, "deleting leftover temp file");
            remove_if_exists(&entry.path())?;
        } else if let Some(base) = parse_offset(name, LOG_SUFFIX) {
            log_bases.push(base);
        } else if let Some(base) =
            parse_offset(name, INDEX_SUFFIX).or_else(|| parse_offset(name, TIME_INDEX_SUFFIX))
        {
            index_files.push((base, entry.path()));
        }
    }
    log_bases.sort_unstable();
    for (base, path) in index_files {
        if log_bases.binary_search(&base).is_err() {
            remove_if_exists(&path)?;
        }
    }
    Ok(DirListing { log_bases })
}

/// Most bytes a `log_start_offset` file may hold: an i64 in decimal is at most 20 characters.
const LOG_START_OFFSET_MAX_BYTES: u64 = 64;

/// The persisted log start offset: `None` if the file is missing; an error if it cannot be read
/// or does not hold one offset (Kafka takes such a log directory offline rather than guess).
fn read_log_start_offset(dir: &Path) -> Result<Option<i64>, StorageError> {
    let path = dir.join(LOG_START_OFFSET_FILE);
    let corrupt = |reason: String| StorageError::CorruptLogStartOffset {
        path: path.display().to_string(),
        reason,
    };
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut data = Vec::new();
    file.take(LOG_START_OFFSET_MAX_BYTES + 1)
        .read_to_end(&mut data)?;
    if data.len() as u64 > LOG_START_OFFSET_MAX_BYTES {
        return Err(corrupt(format!(
            "more than {LOG_START_OFFSET_MAX_BYTES} bytes"
        )));
    }
    let text = std::str::from_utf8(&data).map_err(|_| corrupt("not UTF-8".into()))?;
    text.trim()
        .parse()
        .map(Some)
        .map_err(|e| corrupt(format!("{:?} is not an offset: {e}", text.trim())))
}

/// What `load_segments` found.
struct LoadedSegments {
    sealed: BTreeMap<i64, Segment>,
    /// The last segment, recovered and writable; `None` in an empty directory.
    active: Option<Segment>,
    /// Lowest base of a segment that stale segments followed, if any were deleted.
    stale_above: Option<i64>,
}

/// Opens the segments at `bases` (ascending): sealed ones trusting their data (indexes checked,
/// rebuilt if damaged), the last one as the active segment (rescanned with CRC checks after an
/// unclean shutdown). Segments must not overlap: each one's next offset is at most the next
/// one's base. A segment starting below the next offset of the kept segment before it is stale
/// and deleted, with its indexes.
///
/// Why the later segment goes: truncation (`Log::truncate_to`) shortens the segment holding the
/// truncation point and deletes every segment after it; appends then continue in the shortened
/// one. If a crash loses those unlinks (no directory fsync yet), a deleted segment reappears,
/// and once the new appends reached its base the two overlap. The earlier segment holds what
/// the log acknowledged after the truncation (from the new leader); the reappearing one holds
/// the offsets the truncation removed (a diverged history). Keeping it would serve the same
/// offsets twice and bring back records the leader never had. The same holds for a compaction
/// group's other segments reappearing after its swap: the cleaned segment at the group's base
/// holds their retained records. Kafka's `LogLoader` likewise recovers every segment above the
/// recovery point and deletes all segments after the first one it has to cut.
///
/// Before anything is deleted on its word, the earlier segment is rescanned with CRC checks (a
/// damaged header could claim offsets it does not hold); only if it still overlaps after that
/// is the later segment deleted. A reappearing segment that the new appends did not reach does
/// not overlap and cannot be told from a live one by offsets: only the directory fsync after
/// the truncation (`Log::sync_log_dir`) prevents that case.
fn load_segments(
    dir: &Path,
    bases: &[i64],
    clean: bool,
    config: &LogConfig,
    now_ms: i64,
) -> Result<LoadedSegments, StorageError> {
    let interval = config.index_interval_bytes;
    let index_bytes = config.segment_index_bytes;
    let mut kept: Vec<Segment> = Vec::with_capacity(bases.len());
    // The kept segment last rescanned with CRC checks because a later one overlapped it.
    let mut verified: Option<i64> = None;
    let mut stale_above: Option<i64> = None;
    for (i, &base) in bases.iter().enumerate() {
        if let Some(previous) = kept.last_mut() {
            if base < previous.next_offset() && verified != Some(previous.base_offset()) {
                verified = Some(previous.base_offset());
                let cut = previous.rebuild(interval, index_bytes, true, now_ms)?;
                previous.seal()?;
                if cut > 0 {
                    tracing::warn!(dir = %dir.display(), base = previous.base_offset(), cut_bytes = cut,
                        "truncated the invalid tail of a segment that a later one overlaps");
                }
            }
            if base < previous.next_offset() {
                tracing::warn!(
                    dir = %dir.display(),
                    base,
                    overlapped_by = previous.base_offset(),
                    overlapped_up_to = previous.next_offset(),
                    "deleting a stale segment that overlaps the one before it (a segment deleted by a truncation that a crash brought back)"
                );
                crate::compaction::swap::remove_segment_files(dir, base)?;
                stale_above = Some(stale_above.map_or(previous.base_offset(), |s: i64| {
                    s.min(previous.base_offset())
                }));
                continue;
            }
        }
        let mut segment = Segment::open(dir, base)?;
        if i + 1 < bases.len() {
            if segment.load(interval, index_bytes, now_ms)? {
                segment.seal()?;
            }
        } else if clean {
            segment.load(interval, index_bytes, now_ms)?;
            segment.unseal(index_bytes)?;
        } else {
            let cut = segment.rebuild(interval, index_bytes, true, now_ms)?;
            // What the crash left in the page cache may never have been fsynced: synced now,
            // before the log counts it flushed and consumers may read it.
            segment.flush()?;
            segment.enable_preallocation();
            if cut > 0 {
                tracing::warn!(dir = %dir.display(), cut_bytes = cut, "truncated torn tail of the active segment");
            }
        }
        kept.push(segment);
    }
    let mut active = kept.pop();
    if let Some(segment) = active.as_mut() {
        if bases.last() != Some(&segment.base_offset()) {
            // The last segment was stale: the one it overlapped, sealed and rescanned with CRC
            // checks above, is the active segment again.
            segment.unseal(index_bytes)?;
        }
    }
    Ok(LoadedSegments {
        sealed: kept.into_iter().map(|s| (s.base_offset(), s)).collect(),
        active,
        stale_above,
    })
}

/// `Log::open`, or with `defer` `Log::open_deferring_syncs`: a new or cleanly shut down
/// directory's fsyncs are then left to the caller.
pub(crate) fn open_log(
    dir: &Path,
    config: LogConfig,
    now_ms: i64,
    defer: bool,
) -> Result<Log, StorageError> {
    let existed = dir.try_exists()?;
    std::fs::create_dir_all(dir)?;
    let clean_marker = dir.join(CLEAN_SHUTDOWN_FILE);
    let clean = clean_marker.exists();
    let defer = defer && (clean || !existed);
    // Before temp files go: a committed compaction swap is finished, not discarded.
    crate::compaction::swap::complete_swaps(
        dir,
        config.index_interval_bytes,
        config.segment_index_bytes,
        now_ms,
    )?;
    let listing = scan_dir(dir)?;
    let persisted_start = read_log_start_offset(dir)?;
    let index_bytes = config.segment_index_bytes;

    let LoadedSegments {
        sealed,
        active,
        stale_above,
    } = load_segments(dir, &listing.log_bases, clean, &config, now_ms)?;
    let active = match active {
        Some(active) => active,
        None => Segment::create(dir, persisted_start.unwrap_or(0).max(0), index_bytes)?,
    };
    if let Some(base) = stale_above {
        // Snapshots above that segment's base may describe the stale segments' batches; the
        // state is replayed from an older one (or from the log) instead.
        crate::producer_state::snapshot::delete_above(dir, base)?;
    }
    let first_base = sealed
        .values()
        .next()
        .map_or(active.base_offset(), Segment::base_offset);
    let log_end = active.next_offset();
    let log_start = persisted_start
        .unwrap_or(first_base)
        .max(first_base)
        .min(log_end);
    let mut log = Log {
        dir: dir.to_path_buf(),
        config,
        sealed,
        active,
        log_start_offset: log_start,
        flushed_offset: log_end,
        producers: ProducerStateManager::new(),
        leader_epochs: LeaderEpochCache::default(),
        sync_failure: None,
        truncations: 0,
        syncs_deferred: defer,
        checkpoint_staged: false,
    };
    log.reload_producer_state()?;
    log.load_leader_epochs(clean)?;
    remove_if_exists(&clean_marker)?;
    if !defer {
        log.sync_log_dir()?;
    }
    Ok(log)
}

impl Log {
    /// fsyncs the partition directory, making the creations, renames and deletions of files in
    /// it durable. A truncation calls it after deleting segments and snapshots: a deletion the
    /// crash loses brings a stale segment back, which open can only catch when it overlaps the
    /// segment before it (see `load_segments`).
    pub(crate) fn sync_log_dir(&self) -> Result<(), StorageError> {
        sync_dir(&self.dir)
    }

    /// Loads the leader epoch checkpoint, rebuilding it from the batch headers when it is missing
    /// or corrupt, and cuts it to the recovered log.
    fn load_leader_epochs(&mut self, clean: bool) -> Result<(), StorageError> {
        let (mut cache, mut dirty) = match checkpoint::read(&self.dir)? {
            Checkpoint::Loaded(cache) => (cache, false),
            // A missing file with no epochs in the log reads back as the same empty cache, so
            // a new partition's open writes nothing (its first epoch writes the file).
            Checkpoint::Missing => {
                let cache = self.leader_epochs_from_batches()?;
                let dirty = !cache.entries().is_empty();
                (cache, dirty)
            }
            Checkpoint::Corrupt(reason) => {
                tracing::warn!(dir = %self.dir.display(), reason, "rebuilding corrupt leader epoch checkpoint");
                (self.leader_epochs_from_batches()?, true)
            }
        };
        if !clean {
            // The checkpoint is written before the first batch of a new epoch, so it should
            // already know every epoch; the active segment was just rescanned, so checking it
            // again costs a header walk and catches a checkpoint from a lost rename.
            for info in self.active.scan(0) {
                let info = info?;
                if info.last_offset < self.log_start_offset {
                    continue;
                }
                dirty |=
                    cache.assign_if_newer(info.view()?.partition_leader_epoch(), info.base_offset);
            }
        }
        // A crash can leave entries for batches that recovery cut off, or from before a log
        // start move whose checkpoint rewrite was lost.
        dirty |= cache.truncate_from_end(self.log_end_offset());
        dirty |= cache.truncate_from_start(self.log_start_offset);
        self.leader_epochs = cache;
        if dirty {
            self.persist_leader_epochs()?;
        }
        Ok(())
    }

    /// The leader epochs recorded in the batches from the log start on.
    fn leader_epochs_from_batches(&self) -> Result<LeaderEpochCache, StorageError> {
        let from = self.log_start_offset;
        let mut cache = LeaderEpochCache::default();
        for segment in self.segments().filter(|s| s.next_offset() > from) {
            let Some(first) = segment.find_batch(from)? else {
                continue;
            };
            for info in segment.scan(first.position) {
                let info = info?;
                cache.assign_if_newer(info.view()?.partition_leader_epoch(), info.base_offset);
            }
        }
        Ok(cache)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Write;

    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::log::tests::{batch, batch_offsets, idempotent, small_config};
    use crate::log::TimestampOffset;
    use crate::segment::file_name::{path_for, SNAPSHOT_SUFFIX};

    /// One-segment log of `n` batches; returns the bytes as stored and each batch's end position.
    fn single_segment_log(dir: &Path, n: usize) -> (Vec<u8>, Vec<(usize, i64)>) {
        let config = LogConfig {
            segment_bytes: 1 << 20,
            ..small_config()
        };
        let mut log = Log::open(dir, config, 0).unwrap();
        for i in 0..n {
            log.append(&idempotent(1, 0, (i * 2) as i32, 2), 0, 0)
                .unwrap();
            log.append(&batch(1 + i % 3, i as i64 * 10), 0, 0).unwrap();
        }
        let bytes = log
            .read(0, i64::MAX, usize::MAX, false)
            .unwrap()
            .records
            .to_vec();
        drop(log);
        let mut ends = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            let h = crate::batch::BatchHeader::parse(&bytes[pos..]).unwrap();
            pos += h.total_size();
            ends.push((pos, h.last_offset() + 1));
        }
        (bytes, ends)
    }

    /// What a recovered log must hold after its file was cut / damaged at `valid_bytes`.
    fn expected_prefix(ends: &[(usize, i64)], valid_bytes: usize) -> (usize, i64) {
        ends.iter()
            .rev()
            .find(|(end, _)| *end <= valid_bytes)
            .copied()
            .unwrap_or((0, 0))
    }

    fn reopen_and_check(dir: &Path, bytes: &[u8], ends: &[(usize, i64)], valid_bytes: usize) {
        let (prefix_bytes, log_end) = expected_prefix(ends, valid_bytes);
        let config = LogConfig {
            segment_bytes: 1 << 20,
            ..small_config()
        };
        let mut log = Log::open(dir, config, 0).unwrap();
        assert_eq!(log.log_end_offset(), log_end, "valid bytes {valid_bytes}");
        let got = log.read(0, i64::MAX, usize::MAX, false).unwrap().records;
        assert_eq!(&got[..], &bytes[..prefix_bytes]);
        // The recovered log is writable and consistent.
        log.append(&batch(1, 0), 0, 0).unwrap();
        assert_eq!(log.log_end_offset(), log_end + 1);
        // Producer state was replayed from what survived.
        let expected_seq = batch_offsets(&bytes[..prefix_bytes]).len() as i32 / 2 * 2
            + (batch_offsets(&bytes[..prefix_bytes]).len() as i32 % 2) * 2;
        let next = log.producer_state(1).map_or(0, |v| v.last_sequence + 1);
        assert_eq!(next, expected_seq);
    }

    #[test]
    fn cut_active_log_recovers_longest_valid_prefix() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let template = tempfile::tempdir().unwrap();
        let (bytes, ends) = single_segment_log(template.path(), 12);
        let mut cuts: Vec<usize> = vec![0, 1, 11, 12, 60, 61, bytes.len() - 1, bytes.len()];
        cuts.extend(ends.iter().map(|(e, _)| *e));
        cuts.extend(ends.iter().map(|(e, _)| e - 1));
        cuts.extend((0..20).map(|_| rng.gen_range(0..bytes.len())));
        for cut in cuts {
            let dir = tempfile::tempdir().unwrap();
            single_segment_log(dir.path(), 12);
            let file = OpenOptions::new()
                .write(true)
                .open(path_for(dir.path(), 0, "log"))
                .unwrap();
            file.set_len(cut as u64).unwrap();
            reopen_and_check(dir.path(), &bytes, &ends, cut);
        }
    }

    #[test]
    fn garbage_after_the_last_batch_is_cut() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let template = tempfile::tempdir().unwrap();
        let (bytes, ends) = single_segment_log(template.path(), 6);
        for round in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            single_segment_log(dir.path(), 6);
            let mut garbage: Vec<u8> = (0..rng.gen_range(1..300)).map(|_| rng.gen()).collect();
            if round % 2 == 0 {
                // A plausible-looking header with a wrong CRC.
                let mut fake = batch(1, 0);
                crate::batch::header::set_base_offset(&mut fake, 1_000).unwrap();
                let last = fake.len() - 1;
                fake[last] ^= 0xff;
                garbage = fake;
            }
            let mut file = OpenOptions::new()
                .append(true)
                .open(path_for(dir.path(), 0, "log"))
                .unwrap();
            file.write_all(&garbage).unwrap();
            drop(file);
            reopen_and_check(dir.path(), &bytes, &ends, bytes.len());
        }
    }

    #[test]
    fn flipped_byte_in_the_active_segment_cuts_from_that_batch() {
        let template = tempfile::tempdir().unwrap();
        let (bytes, ends) = single_segment_log(template.path(), 6);
        for &(end, _) in ends.iter().take(ends.len() - 1) {
            let dir = tempfile::tempdir().unwrap();
            single_segment_log(dir.path(), 6);
            let path = path_for(dir.path(), 0, "log");
            let mut data = std::fs::read(&path).unwrap();
            data[end + 30] ^= 0x10; // inside the header of the batch starting at `end`
            std::fs::write(&path, &data).unwrap();
            reopen_and_check(dir.path(), &bytes, &ends, end);
        }
    }

    #[test]
    fn damaged_indexes_are_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            index_interval_bytes: 0,
            ..small_config()
        };
        let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
        for i in 0..40 {
            log.append(&batch(2, 1000 + i * 10), 0, 0).unwrap();
        }
        let all = log.read(0, i64::MAX, usize::MAX, false).unwrap();
        let bases: Vec<i64> = log
            .sealed
            .keys()
            .copied()
            .chain([log.active.base_offset()])
            .collect();
        assert!(bases.len() >= 4);
        log.close().unwrap();
        std::fs::remove_file(path_for(dir.path(), bases[0], "index")).unwrap();
        std::fs::write(path_for(dir.path(), bases[1], "index"), [0xffu8; 13]).unwrap();
        std::fs::write(path_for(dir.path(), bases[1], "timeindex"), [0x00u8; 24]).unwrap();
        std::fs::write(
            path_for(dir.path(), bases[2], "index"),
            [0x00, 0, 0, 5, 0, 0, 0x7f, 0xff],
        )
        .unwrap();
        let active_index = path_for(dir.path(), bases[3], "index");
        let mut data = std::fs::read(&active_index).unwrap();
        data.reverse();
        std::fs::write(&active_index, &data).unwrap();
        let log = Log::open(dir.path(), config, 0).unwrap();
        assert_eq!(log.read(0, i64::MAX, usize::MAX, false).unwrap(), all);
        for offset in 0..80 {
            let r = log.read(offset, i64::MAX, 1, true).unwrap();
            assert_eq!(
                batch_offsets(&r.records),
                vec![(offset / 2 * 2, offset / 2 * 2 + 1)]
            );
            let ts = 1000 + (offset / 2) * 10 + offset % 2;
            assert_eq!(
                log.offset_for_timestamp(ts).unwrap(),
                Some(TimestampOffset {
                    offset,
                    timestamp: ts
                })
            );
        }
        // Rebuilt indexes of sealed segments are trimmed again.
        let len = std::fs::metadata(path_for(dir.path(), bases[0], "index"))
            .unwrap()
            .len();
        assert!(len > 0 && len < u64::from(small_config().segment_index_bytes));
    }

    #[test]
    fn open_cleans_temp_files_and_stray_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        log.append(&idempotent(1, 0, 0, 1), 0, 0).unwrap();
        log.close().unwrap();
        std::fs::write(dir.path().join("00000000000000000001.snapshot.tmp"), b"x").unwrap();
        std::fs::write(dir.path().join("00000000000000000009.index"), b"orphan").unwrap();
        crate::producer_state::snapshot::write(dir.path(), 50, &ProducerStateManager::new())
            .unwrap();
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        assert!(!dir
            .path()
            .join("00000000000000000001.snapshot.tmp")
            .exists());
        assert!(!dir.path().join("00000000000000000009.index").exists());
        assert!(!path_for(dir.path(), 50, SNAPSHOT_SUFFIX).exists());
        assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
        // The stray snapshot (empty state) was not used: the producer is still known.
        assert!(matches!(
            log.append(&idempotent(1, 0, 0, 1), 0, 0).unwrap(),
            crate::log::AppendOutcome::Duplicate { base_offset: 0, .. }
        ));
    }

    /// The files of the segment at `base` and the snapshots of `dir`, with their bytes.
    fn files_of(dir: &Path, bases: &[i64]) -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let mut paths: Vec<_> = bases
            .iter()
            .flat_map(|b| ["log", "index", "timeindex"].map(|s| path_for(dir, *b, s)))
            .collect();
        paths.extend(
            crate::producer_state::snapshot::list(dir)
                .unwrap()
                .into_iter()
                .map(|o| path_for(dir, o, SNAPSHOT_SUFFIX)),
        );
        paths
            .into_iter()
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect()
    }

    #[test]
    fn segments_a_truncation_deleted_are_dropped_when_a_crash_brings_them_back() {
        // A truncation deletes the segments after the truncation point and appends continue in
        // the shortened one, past their bases; a crash that loses the unlinks brings them back
        // (with their producer snapshots). They overlap the segment before them and go.
        for (clean, roll_after) in [(false, false), (true, false), (false, true)] {
            let dir = tempfile::tempdir().unwrap();
            let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
            for seq in 0..20 {
                log.append(&idempotent(1, 0, seq * 2, 2), 0, 0).unwrap();
            }
            let bases: Vec<i64> = log.segments().map(Segment::base_offset).collect();
            assert!(bases.len() >= 4, "{bases:?}");
            let truncation = bases[1] + 3;
            let stale = files_of(dir.path(), &bases[2..]);
            log.set_config(LogConfig {
                segment_bytes: 1 << 20,
                ..small_config()
            });
            log.truncate_to(truncation).unwrap();
            for i in 0..15 {
                log.append(&batch(3, 1000 + i), 0, 0).unwrap();
            }
            if roll_after {
                log.roll().unwrap();
                log.append(&batch(1, 2000), 0, 0).unwrap();
            }
            let end = log.log_end_offset();
            assert!(end > *bases.last().unwrap());
            let expected = log.read(0, i64::MAX, usize::MAX, false).unwrap().records;
            let last_seq = log.producer_state(1).unwrap().last_sequence;
            if clean {
                log.close().unwrap();
            } else {
                drop(log);
            }
            let mut restored = Vec::new();
            for (path, bytes) in &stale {
                if !path.exists() {
                    std::fs::write(path, bytes).unwrap();
                    restored.push(path.clone());
                }
            }
            assert!(restored.len() >= 3, "{clean} {roll_after}: {restored:?}");

            let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
            let case = format!("clean {clean}, roll after {roll_after}");
            assert_eq!(log.log_end_offset(), end, "{case}");
            let got = log.read(0, i64::MAX, usize::MAX, false).unwrap().records;
            assert_eq!(got, expected, "{case}");
            let offsets = batch_offsets(&got);
            assert!(
                offsets.windows(2).all(|w| w[0].1 < w[1].0),
                "{case}: {offsets:?}"
            );
            let mut previous_end = i64::MIN;
            for segment in log.segments() {
                assert!(segment.base_offset() >= previous_end, "{case}");
                previous_end = segment.next_offset();
            }
            for path in &restored {
                assert!(!path.exists(), "{case}: {} is back", path.display());
            }
            assert_eq!(
                log.producer_state(1).unwrap().last_sequence,
                last_seq,
                "{case}: the stale snapshots were not used"
            );
            log.append(&batch(1, 0), 0, 0).unwrap();
            assert_eq!(log.log_end_offset(), end + 1, "{case}");
            drop(log);
            let log = Log::open(dir.path(), small_config(), 0).unwrap();
            assert_eq!(log.log_end_offset(), end + 1, "{case}");
        }
    }

    #[test]
    fn a_missing_log_start_offset_file_falls_back_to_the_first_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        for i in 0..10 {
            log.append(&batch(2, i), 0, 0).unwrap();
        }
        log.advance_log_start_offset(6).unwrap();
        let first_base = log.segments().next().unwrap().base_offset();
        assert!(first_base < 6);
        log.close().unwrap();
        let log = Log::open(dir.path(), small_config(), 0).unwrap();
        assert_eq!(log.log_start_offset(), 6);
        log.close().unwrap();
        std::fs::remove_file(dir.path().join(LOG_START_OFFSET_FILE)).unwrap();
        let log = Log::open(dir.path(), small_config(), 0).unwrap();
        assert_eq!(log.log_start_offset(), first_base);
    }

    #[test]
    fn a_corrupt_or_oversized_log_start_offset_file_fails_the_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        for i in 0..10 {
            log.append(&batch(2, i), 0, 0).unwrap();
        }
        log.close().unwrap();
        let path = dir.path().join(LOG_START_OFFSET_FILE);
        let oversized = format!("{}6", " ".repeat(64));
        for bad in [
            "",
            "abc",
            "6x",
            "6 7",
            "\u{0}6",
            "99999999999999999999",
            &oversized,
        ] {
            std::fs::write(&path, bad).unwrap();
            match Log::open(dir.path(), small_config(), 0) {
                Err(StorageError::CorruptLogStartOffset { .. }) => {}
                Err(e) => panic!("{bad:?}: {e}"),
                Ok(_) => panic!("{bad:?}: opened"),
            }
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                bad,
                "left as it was"
            );
        }
        std::fs::write(&path, " 6\n").unwrap();
        let log = Log::open(dir.path(), small_config(), 0).unwrap();
        assert_eq!(log.log_start_offset(), 6);
    }

    #[test]
    fn clean_reopen_keeps_trimmed_indexes_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        for i in 0..5 {
            log.append(&batch(3, i), 0, 0).unwrap();
        }
        log.close().unwrap();
        assert!(dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
        let active_index = std::fs::metadata(path_for(dir.path(), 0, "index"))
            .unwrap()
            .len();
        assert!(
            active_index < u64::from(small_config().segment_index_bytes),
            "trimmed at close"
        );
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        for i in 0..20 {
            log.append(&batch(3, i), 0, 0).unwrap();
        }
        let r = log.read(0, i64::MAX, usize::MAX, false).unwrap();
        assert_eq!(batch_offsets(&r.records).len(), 25);
    }
}
