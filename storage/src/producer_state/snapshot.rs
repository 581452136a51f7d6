//! Producer-state snapshots: `<offset, 20 digits>.snapshot` holds the state after every batch
//! below `offset`.
//!
//! Format (big-endian): magic `SLPS`, version u16 (1), crc32c u32 of everything after it,
//! producer count u32, then per producer: id i64, epoch i16, batch count u8, and per batch
//! first_seq i32, last_seq i32, base_offset i64, last_offset i64, timestamp i64.
//!
//! Invariants: files are written to `.tmp`, fsynced, then renamed (and the directory fsynced), so
//! a snapshot is either absent or whole; a snapshot failing its CRC or parse is deleted when
//! loaded, one that cannot be read fails the load.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use crate::error::StorageError;
use crate::producer_state::{
    BatchMetadata, ProducerEntry, ProducerStateManager, MAX_CACHED_BATCHES,
};
use crate::segment::file_name::{offset_name, parse_offset, path_for, SNAPSHOT_SUFFIX};

const MAGIC: &[u8; 4] = b"SLPS";
const VERSION: u16 = 1;
const PREFIX_BYTES: usize = 10;
/// Refuse to read absurdly large snapshot files (a bound on allocation from disk).
const MAX_SNAPSHOT_BYTES: u64 = 512 * 1024 * 1024;

/// Serializes the state.
pub fn encode(state: &ProducerStateManager) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(state.producers.len() as u32).to_be_bytes());
    for (id, entry) in &state.producers {
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&entry.epoch.to_be_bytes());
        let batches: Vec<_> = entry
            .batches
            .iter()
            .rev()
            .take(MAX_CACHED_BATCHES)
            .rev()
            .collect();
        body.push(batches.len() as u8);
        for b in batches {
            body.extend_from_slice(&b.first_seq.to_be_bytes());
            body.extend_from_slice(&b.last_seq.to_be_bytes());
            body.extend_from_slice(&b.base_offset.to_be_bytes());
            body.extend_from_slice(&b.last_offset.to_be_bytes());
            body.extend_from_slice(&b.timestamp.to_be_bytes());
        }
    }
    let mut out = Vec::with_capacity(PREFIX_BYTES + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let bytes = self
            .data
            .get(self.pos..self.pos + N)
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or_else(|| "truncated".to_string())?;
        self.pos += N;
        Ok(bytes)
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take()?))
    }
}

/// Parses a snapshot; the error says why it is unusable.
pub fn decode(data: &[u8]) -> Result<ProducerStateManager, String> {
    if data.get(..4) != Some(&MAGIC[..]) {
        return Err("bad magic".into());
    }
    let mut r = Reader { data, pos: 4 };
    let version = u16::from_be_bytes(r.take()?);
    if version != VERSION {
        return Err(format!("unknown version {version}"));
    }
    let crc = u32::from_be_bytes(r.take()?);
    let body = data.get(PREFIX_BYTES..).unwrap_or_default();
    if crc32c::crc32c(body) != crc {
        return Err("crc mismatch".into());
    }
    let count = u32::from_be_bytes(r.take()?);
    let mut state = ProducerStateManager::new();
    for _ in 0..count {
        let id = r.i64()?;
        let epoch = i16::from_be_bytes(r.take()?);
        let batch_count = u8::from_be_bytes(r.take()?);
        if usize::from(batch_count) > MAX_CACHED_BATCHES || batch_count == 0 {
            return Err(format!("bad batch count {batch_count}"));
        }
        let mut batches = VecDeque::with_capacity(usize::from(batch_count));
        for _ in 0..batch_count {
            batches.push_back(BatchMetadata {
                first_seq: r.i32()?,
                last_seq: r.i32()?,
                base_offset: r.i64()?,
                last_offset: r.i64()?,
                timestamp: r.i64()?,
            });
        }
        state.producers.insert(id, ProducerEntry { epoch, batches });
    }
    if r.pos != data.len() {
        return Err("trailing bytes".into());
    }
    Ok(state)
}

/// Writes `<offset>.snapshot` atomically.
pub fn write(dir: &Path, offset: i64, state: &ProducerStateManager) -> Result<(), StorageError> {
    write_with(dir, offset, state, true)
}

/// `write`, with its fsyncs only with `sync` (a close whose caller syncs the filesystem,
/// `Log::close_unsynced`: a crash before that may leave a torn snapshot, which `load_latest`
/// deletes, trying an older one).
pub(crate) fn write_with(
    dir: &Path,
    offset: i64,
    state: &ProducerStateManager,
    sync: bool,
) -> Result<(), StorageError> {
    let path = path_for(dir, offset, SNAPSHOT_SUFFIX);
    let tmp = dir.join(format!("{}.tmp", offset_name(offset, SNAPSHOT_SUFFIX)));
    {
        let mut file = File::create(&tmp)?;
        file.write_all(&encode(state))?;
        if sync {
            file.sync_all()?;
        }
    }
    std::fs::rename(&tmp, &path)?;
    if sync {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Reads and checks `<offset>.snapshot`.
pub fn read(dir: &Path, offset: i64) -> Result<ProducerStateManager, StorageError> {
    let path = path_for(dir, offset, SNAPSHOT_SUFFIX);
    let corrupt = |reason: String| StorageError::CorruptSnapshot {
        path: path.display().to_string(),
        reason,
    };
    let file = File::open(&path)?;
    let len = file.metadata()?.len();
    if len > MAX_SNAPSHOT_BYTES {
        return Err(corrupt(format!("{len} bytes is too large")));
    }
    let mut data = Vec::new();
    file.take(MAX_SNAPSHOT_BYTES).read_to_end(&mut data)?;
    decode(&data).map_err(corrupt)
}

/// Offsets of all snapshot files, ascending.
pub fn list(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let mut offsets = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(offset) = name.to_str().and_then(|n| parse_offset(n, SNAPSHOT_SUFFIX)) {
            offsets.push(offset);
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// Deletes snapshots above `offset` (they describe data that is no longer in the log).
pub fn delete_above(dir: &Path, offset: i64) -> Result<(), StorageError> {
    for o in list(dir)?.into_iter().filter(|o| *o > offset) {
        crate::segment::segment::remove_if_exists(&path_for(dir, o, SNAPSHOT_SUFFIX))?;
    }
    Ok(())
}

/// Keeps only the newest `keep` snapshots.
pub fn retain_latest(dir: &Path, keep: usize) -> Result<(), StorageError> {
    let offsets = list(dir)?;
    let excess = offsets.len().saturating_sub(keep);
    for o in offsets.into_iter().take(excess) {
        crate::segment::segment::remove_if_exists(&path_for(dir, o, SNAPSHOT_SUFFIX))?;
    }
    Ok(())
}

/// The newest valid snapshot at or below `max_offset`. A corrupt one (bad magic, version, CRC
/// or layout, or too large) is deleted and the next older one tried; an error reading one (EIO,
/// EACCES, ...) is returned and nothing is deleted: the file may be fine, and skipping it would
/// rebuild the state from an older snapshot or none.
pub fn load_latest(
    dir: &Path,
    max_offset: i64,
) -> Result<Option<(i64, ProducerStateManager)>, StorageError> {
    for offset in list(dir)?.into_iter().rev().filter(|o| *o <= max_offset) {
        match read(dir, offset) {
            Ok(state) => return Ok(Some((offset, state))),
            Err(e @ StorageError::CorruptSnapshot { .. }) => {
                tracing::warn!(offset, error = %e, "deleting corrupt producer snapshot");
                crate::segment::segment::remove_if_exists(&path_for(dir, offset, SNAPSHOT_SUFFIX))?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// fsyncs a directory so renames and creations in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn state() -> ProducerStateManager {
        let mut s = ProducerStateManager::new();
        for i in 0..7 {
            s.update(
                1,
                2,
                BatchMetadata {
                    first_seq: i,
                    last_seq: i,
                    base_offset: i64::from(i),
                    last_offset: i64::from(i),
                    timestamp: 99,
                },
            );
        }
        s.update(
            -5,
            0,
            BatchMetadata {
                first_seq: 0,
                last_seq: 3,
                base_offset: 10,
                last_offset: 13,
                timestamp: -1,
            },
        );
        s
    }

    #[test]
    fn round_trip_and_corruption() {
        let s = state();
        let bytes = encode(&s);
        assert_eq!(decode(&bytes).unwrap(), s);
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(decode(&bad).is_err(), "flip at {at}");
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn files_latest_and_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let s = state();
        write(dir.path(), 10, &s).unwrap();
        write(dir.path(), 20, &ProducerStateManager::new()).unwrap();
        write(dir.path(), 30, &s).unwrap();
        assert_eq!(list(dir.path()).unwrap(), vec![10, 20, 30]);
        assert_eq!(load_latest(dir.path(), 25).unwrap().unwrap().0, 20);
        std::fs::write(path_for(dir.path(), 30, SNAPSHOT_SUFFIX), b"garbage").unwrap();
        assert_eq!(load_latest(dir.path(), 100).unwrap().unwrap().0, 20);
        assert_eq!(list(dir.path()).unwrap(), vec![10, 20]);
        retain_latest(dir.path(), 1).unwrap();
        assert_eq!(list(dir.path()).unwrap(), vec![20]);
        delete_above(dir.path(), 19).unwrap();
        assert!(list(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_corrupt_snapshot_is_deleted_and_an_older_one_used() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 10, &state()).unwrap();
        write(dir.path(), 20, &state()).unwrap();
        let mut bytes = std::fs::read(path_for(dir.path(), 20, SNAPSHOT_SUFFIX)).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(path_for(dir.path(), 20, SNAPSHOT_SUFFIX), &bytes).unwrap();
        let (offset, loaded) = load_latest(dir.path(), 100).unwrap().unwrap();
        assert_eq!((offset, loaded), (10, state()));
        assert_eq!(list(dir.path()).unwrap(), vec![10]);
    }

    #[test]
    fn an_unreadable_snapshot_fails_the_load_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 10, &state()).unwrap();
        // The newest snapshot's name is a link to a directory: opening works, reading fails
        // (EISDIR) as an I/O error would, and unlinking it would succeed. Tests may run as
        // root, so permissions cannot stand in for it.
        let target = dir.path().join("elsewhere");
        std::fs::create_dir(&target).unwrap();
        let unreadable = path_for(dir.path(), 20, SNAPSHOT_SUFFIX);
        std::os::unix::fs::symlink(&target, &unreadable).unwrap();
        let err = load_latest(dir.path(), 100).unwrap_err();
        assert!(matches!(err, StorageError::Io(_)), "{err:?}");
        assert!(
            std::fs::symlink_metadata(&unreadable).is_ok(),
            "an unreadable snapshot is not deleted"
        );
        assert_eq!(list(dir.path()).unwrap(), vec![10, 20]);
        // Below it, the older snapshot is still found.
        assert_eq!(load_latest(dir.path(), 19).unwrap().unwrap().0, 10);
    }
}
