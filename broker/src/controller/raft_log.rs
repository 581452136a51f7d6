//! The controller's Raft log and vote on disk (openraft's `RaftLogStorage`).
//!
//! Files in the controller directory:
//! - `raft-log`: entries as frames `[payload length u32 LE][CRC32C of payload u32 LE][payload]`,
//!   the payload being the JSON of an openraft `Entry`. Appends are fsynced before openraft is
//!   told they are durable. On open, frames are read until the first one that is incomplete,
//!   fails its CRC, does not decode, or does not follow its predecessor's index; the file is
//!   truncated there (a torn tail from a crash), as the storage crate does for segments.
//! - `raft-vote.json`: the vote, rewritten atomically (temp file, fsync, rename, fsync dir).
//! - `raft-purged.json`: the last purged log id, rewritten atomically *before* the entries are
//!   dropped, so entries at or below it found in `raft-log` after a crash are ignored.
//!
//! The entries not purged are also kept in memory (the metadata log is small and compacted by
//! snapshots); reads never touch the disk. Writes run on a blocking thread, one at a time, in
//! the order openraft issues them.
//!
//! A failed write or fsync is never retried: the part written is cut off and the error goes to
//! openraft, which stops this node's Raft on it (`Controller::storage_failure` tells the broker,
//! which halts). The append's fdatasync is injectable (`durable_file::SyncData`) so tests can fail it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogId, RaftLogReader, StorageIOError};
use parking_lot::Mutex;

use super::types::{Entry, LogId, RaftStoreError, StorageError, TypeConfig, Vote};
use crate::durable_file::{write_atomically, SyncData};

/// Largest entry payload accepted, on write and on recovery (checked before allocating).
pub const MAX_ENTRY_BYTES: usize = 16 * 1024 * 1024;

const LOG_FILE: &str = "raft-log";
const VOTE_FILE: &str = "raft-vote.json";
const PURGED_FILE: &str = "raft-purged.json";
const FRAME_HEADER_BYTES: usize = 8;

/// The log store; clones share the same log (openraft uses one as the log reader).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

/// An entry kept in memory with the file offset of its frame.
struct Stored {
    offset: u64,
    entry: Entry,
}

struct LogInner {
    /// The controller directory.
    dir: PathBuf,
    /// `raft-log`, opened for writing at `file_len`.
    file: File,
    /// Bytes of valid frames in `raft-log`.
    file_len: u64,
    /// Entries above `last_purged`, by index.
    entries: BTreeMap<u64, Stored>,
    /// The fdatasync of an append.
    sync: SyncData,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
}

impl LogStore {
    /// Open (or create) the log in `dir`, truncating a torn or corrupt tail.
    pub fn open(dir: &Path) -> Result<LogStore, RaftStoreError> {
        LogStore::open_with_sync(dir, SyncData::default())
    }

    /// As `open`, with appends synced by `sync`.
    pub fn open_with_sync(dir: &Path, sync: SyncData) -> Result<LogStore, RaftStoreError> {
        std::fs::create_dir_all(dir).map_err(|e| RaftStoreError::io("create dir", dir, e))?;
        let vote: Option<Vote> = read_json(&dir.join(VOTE_FILE), "vote")?;
        let last_purged: Option<LogId> = read_json(&dir.join(PURGED_FILE), "purged log id")?;
        let path = dir.join(LOG_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(RaftStoreError::io("read", &path, e)),
        };
        let (entries, valid_len) = scan_frames(&bytes, last_purged.map(|l| l.index), &path);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| RaftStoreError::io("open", &path, e))?;
        if valid_len < bytes.len() as u64 {
            tracing::warn!(
                path = %path.display(),
                valid_len,
                file_len = bytes.len(),
                "truncating torn or corrupt tail of the controller log"
            );
            file.set_len(valid_len)
                .and_then(|()| file.sync_all())
                .map_err(|e| RaftStoreError::io("truncate", &path, e))?;
        }
        let mut inner = LogInner {
            dir: dir.to_owned(),
            file,
            file_len: valid_len,
            entries,
            sync,
            last_purged,
            vote,
        };
        inner.seek_end()?;
        tracing::debug!(
            entries = inner.entries.len(),
            last_purged = ?inner.last_purged,
            "opened controller log"
        );
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    /// Run a write on a blocking thread with the log locked.
    async fn write<T, F>(&self, f: F) -> Result<T, RaftStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut LogInner) -> Result<T, RaftStoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&mut inner.lock()))
            .await
            .map_err(|e| RaftStoreError::Task(e.to_string()))?
    }
}

/// Read frames from the start of `bytes`; return the entries above `purged` and the length of
/// the valid prefix.
fn scan_frames(bytes: &[u8], purged: Option<u64>, path: &Path) -> (BTreeMap<u64, Stored>, u64) {
    let mut entries = BTreeMap::new();
    let mut pos = 0usize;
    let mut prev_index: Option<u64> = None;
    while let Some(header) = bytes.get(pos..pos + FRAME_HEADER_BYTES) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_ENTRY_BYTES {
            tracing::warn!(path = %path.display(), pos, len, "controller log frame too large");
            break;
        }
        let start = pos + FRAME_HEADER_BYTES;
        let Some(payload) = bytes.get(start..start + len) else {
            break;
        };
        if crc32c::crc32c(payload) != crc {
            tracing::warn!(path = %path.display(), pos, "controller log frame fails its CRC");
            break;
        }
        let entry: Entry = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(path = %path.display(), pos, error = %e, "undecodable controller log entry");
                break;
            }
        };
        let index = entry.get_log_id().index;
        if prev_index.is_some_and(|p| index != p + 1) {
            tracing::warn!(path = %path.display(), pos, index, ?prev_index, "gap in controller log");
            break;
        }
        prev_index = Some(index);
        if purged.is_none_or(|p| index > p) {
            entries.insert(
                index,
                Stored {
                    offset: pos as u64,
                    entry,
                },
            );
        }
        pos = start + len;
    }
    (entries, pos as u64)
}

fn frame(entry: &Entry) -> Result<Vec<u8>, RaftStoreError> {
    let payload = serde_json::to_vec(entry).map_err(|source| RaftStoreError::Encode {
        what: "log entry",
        source,
    })?;
    if payload.len() > MAX_ENTRY_BYTES {
        return Err(RaftStoreError::EntryTooLarge {
            size: payload.len(),
            limit: MAX_ENTRY_BYTES,
        });
    }
    let len = u32::try_from(payload.len()).map_err(|_| RaftStoreError::EntryTooLarge {
        size: payload.len(),
        limit: MAX_ENTRY_BYTES,
    })?;
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
) -> Result<Option<T>, RaftStoreError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| RaftStoreError::Corrupt {
                    what,
                    path: path.to_owned(),
                    detail: e.to_string(),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RaftStoreError::io("read", path, e)),
    }
}

fn write_json<T: serde::Serialize>(
    path: &Path,
    what: &'static str,
    value: &T,
) -> Result<(), RaftStoreError> {
    let bytes =
        serde_json::to_vec(value).map_err(|source| RaftStoreError::Encode { what, source })?;
    write_atomically(path, &bytes).map_err(|e| RaftStoreError::io("write", path, e))
}

impl LogInner {
    fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    fn seek_end(&mut self) -> Result<(), RaftStoreError> {
        use std::io::Seek;
        let path = self.log_path();
        self.file
            .seek(std::io::SeekFrom::Start(self.file_len))
            .map(|_| ())
            .map_err(|e| RaftStoreError::io("seek", &path, e))
    }

    fn append(&mut self, entries: Vec<Entry>) -> Result<(), RaftStoreError> {
        let mut buf = Vec::new();
        let mut placed = Vec::with_capacity(entries.len());
        for entry in entries {
            let offset = self.file_len + buf.len() as u64;
            buf.extend_from_slice(&frame(&entry)?);
            placed.push(Stored { offset, entry });
        }
        let path = self.log_path();
        if let Err(e) = self
            .file
            .write_all(&buf)
            .and_then(|()| self.sync.sync(&self.file))
        {
            // Whatever part was written is not acknowledged; cut it so the file and memory agree.
            let _ = self.file.set_len(self.file_len);
            let _ = self.seek_end();
            return Err(RaftStoreError::io("append", &path, e));
        }
        self.file_len += buf.len() as u64;
        for stored in placed {
            self.entries.insert(stored.entry.get_log_id().index, stored);
        }
        Ok(())
    }

    fn truncate(&mut self, since: u64) -> Result<(), RaftStoreError> {
        let Some(offset) = self.entries.range(since..).next().map(|(_, s)| s.offset) else {
            return Ok(());
        };
        let path = self.log_path();
        self.file
            .set_len(offset)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| RaftStoreError::io("truncate", &path, e))?;
        self.file_len = offset;
        self.seek_end()?;
        self.entries.split_off(&since);
        Ok(())
    }

    fn purge(&mut self, upto: LogId) -> Result<(), RaftStoreError> {
        if self.last_purged.is_some_and(|p| p.index >= upto.index) {
            return Ok(());
        }
        write_json(&self.dir.join(PURGED_FILE), "purged log id", &upto)?;
        self.last_purged = Some(upto);
        self.entries = self.entries.split_off(&(upto.index + 1));
        // Reclaim the dead prefix once it is more than half of the file.
        let first_live = self
            .entries
            .values()
            .next()
            .map_or(self.file_len, |s| s.offset);
        if first_live > self.file_len / 2 {
            self.rewrite()?;
        }
        Ok(())
    }

    /// Rewrite `raft-log` with only the live entries (temp file, fsync, rename).
    fn rewrite(&mut self) -> Result<(), RaftStoreError> {
        let mut buf = Vec::new();
        for stored in self.entries.values_mut() {
            stored.offset = buf.len() as u64;
            buf.extend_from_slice(&frame(&stored.entry)?);
        }
        let path = self.log_path();
        write_atomically(&path, &buf).map_err(|e| RaftStoreError::io("rewrite", &path, e))?;
        self.file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| RaftStoreError::io("open", &path, e))?;
        self.file_len = buf.len() as u64;
        self.seek_end()
    }

    fn log_state(&self) -> LogState<TypeConfig> {
        let last = self
            .entries
            .values()
            .next_back()
            .map(|s| *s.entry.get_log_id())
            .or(self.last_purged);
        LogState {
            last_purged_log_id: self.last_purged,
            last_log_id: last,
        }
    }
}

fn to_storage(e: RaftStoreError, io: fn(&RaftStoreError) -> StorageIOError<u64>) -> StorageError {
    tracing::error!(error = %e, "controller log storage failed");
    StorageError::IO { source: io(&e) }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let inner = self.inner.lock();
        Ok(inner
            .entries
            .range(range)
            .map(|(_, s)| s.entry.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        Ok(self.inner.lock().log_state())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.write(move |inner| {
            write_json(&inner.dir.join(VOTE_FILE), "vote", &vote)?;
            inner.vote = Some(vote);
            Ok(())
        })
        .await
        .map_err(|e| to_storage(e, |e| StorageIOError::write_vote(e)))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.inner.lock().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let result = self.write(move |inner| inner.append(entries)).await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(to_storage(e, |e| StorageIOError::write_logs(e)))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write(move |inner| inner.truncate(log_id.index))
            .await
            .map_err(|e| to_storage(e, |e| StorageIOError::write_logs(e)))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write(move |inner| inner.purge(log_id))
            .await
            .map_err(|e| to_storage(e, |e| StorageIOError::write_logs(e)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::controller::records::Command;

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command::DeleteTopic {
                topic_id: uuid::Uuid::from_u128(u128::from(index)),
            }),
        }
    }

    fn indexes(store: &LogStore) -> Vec<u64> {
        store.inner.lock().entries.keys().copied().collect()
    }

    fn append_sync(store: &LogStore, range: std::ops::RangeInclusive<u64>) {
        store
            .inner
            .lock()
            .append(range.map(entry).collect())
            .unwrap();
    }

    #[test]
    fn reopen_keeps_entries_vote_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        append_sync(&store, 1..=10);
        store.inner.lock().truncate(8).unwrap();
        store
            .inner
            .lock()
            .purge(LogId::new(CommittedLeaderId::new(1, 1), 3))
            .unwrap();
        drop(store);
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&store), vec![4, 5, 6, 7]);
        let state = store.inner.lock().log_state();
        assert_eq!(state.last_purged_log_id.unwrap().index, 3);
        assert_eq!(state.last_log_id.unwrap().index, 7);
        // Appends continue after reopening.
        append_sync(&store, 8..=9);
        drop(store);
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&store), vec![4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn purge_rewrites_the_file_when_mostly_dead() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        append_sync(&store, 1..=10);
        let before = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        store
            .inner
            .lock()
            .purge(LogId::new(CommittedLeaderId::new(1, 1), 8))
            .unwrap();
        let after = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        assert!(after < before / 2, "{after} < {before}/2");
        append_sync(&store, 11..=11);
        drop(store);
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&store), vec![9, 10, 11]);
    }

    /// Cutting the file at every byte, or flipping any byte, recovers the longest valid prefix
    /// and leaves the file appendable.
    #[test]
    fn recovery_truncates_torn_or_corrupt_tails() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        append_sync(&store, 1..=3);
        let offsets: Vec<u64> = store
            .inner
            .lock()
            .entries
            .values()
            .map(|s| s.offset)
            .collect();
        drop(store);
        let path = dir.path().join(LOG_FILE);
        let full = std::fs::read(&path).unwrap();
        let whole_entries_below = |cut: u64| {
            let mut ends: Vec<u64> = offsets.iter().skip(1).copied().collect();
            ends.push(full.len() as u64);
            ends.iter().filter(|&&end| end <= cut).count() as u64
        };
        let boundaries = offsets.iter().flat_map(|&o| [o as usize, o as usize + 1]);
        let cuts: std::collections::BTreeSet<usize> =
            (0..=full.len()).step_by(5).chain(boundaries).collect();
        for cut in cuts {
            std::fs::write(&path, &full[..cut]).unwrap();
            let store = LogStore::open(dir.path()).unwrap();
            let n = whole_entries_below(cut as u64);
            assert_eq!(indexes(&store), (1..=n).collect::<Vec<_>>(), "cut at {cut}");
            append_sync(&store, n + 1..=n + 1);
            drop(store);
            let store = LogStore::open(dir.path()).unwrap();
            assert_eq!(indexes(&store), (1..=n + 1).collect::<Vec<_>>());
        }
        for flip in (0..full.len()).step_by(7) {
            let mut bad = full.clone();
            bad[flip] ^= 0x55;
            std::fs::write(&path, &bad).unwrap();
            let store = LogStore::open(dir.path()).unwrap();
            let n = whole_entries_below(flip as u64);
            assert_eq!(
                indexes(&store),
                (1..=n).collect::<Vec<_>>(),
                "flip at {flip}"
            );
        }
        // Garbage appended after valid frames is cut too.
        let mut garbage = full.clone();
        garbage.extend_from_slice(&[0xFF; 20]);
        std::fs::write(&path, &garbage).unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&store), vec![1, 2, 3]);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            full.len() as u64,
            "file truncated to the valid prefix"
        );
    }

    #[test]
    fn corrupt_vote_file_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(VOTE_FILE), b"{nope").unwrap();
        assert!(matches!(
            LogStore::open(dir.path()),
            Err(RaftStoreError::Corrupt { what: "vote", .. })
        ));
    }
}
