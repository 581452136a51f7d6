//! The `leader-epoch-checkpoint` file: Kafka's `LeaderEpochCheckpointFile` text format, so a
//! partition directory stays readable by Kafka's tools.
//!
//! ```text
//! 0            <- format version
//! 2            <- number of entries
//! 0 0          <- "epoch startOffset", oldest first
//! 3 150
//! ```
//!
//! Invariants: the file is only ever replaced whole (written to `leader-epoch-checkpoint.tmp`,
//! fsynced, renamed over the old one, directory fsynced), so a crash leaves the old or the new
//! version; a file that does not parse exactly (version, count, entries, monotonic epochs and
//! offsets) is reported as corrupt and rebuilt from the log by the caller.

use std::io::{Read, Write};
use std::path::Path;

use crate::error::StorageError;
use crate::leader_epoch::LeaderEpochCache;
use crate::producer_state::snapshot::sync_dir;
use crate::segment::file_name::LEADER_EPOCH_CHECKPOINT_FILE;

/// The only format version (Kafka's `LeaderEpochCheckpointFile.CURRENT_VERSION`).
const VERSION: u32 = 0;
/// A checkpoint is a few lines per leader change; anything bigger is not ours.
const MAX_CHECKPOINT_BYTES: u64 = 16 * 1024 * 1024;

/// What `read` found.
#[derive(Debug)]
pub(crate) enum Checkpoint {
    Missing,
    Corrupt(String),
    Loaded(LeaderEpochCache),
}

/// The file's text for `entries`.
pub(crate) fn encode(entries: &[(i32, i64)]) -> String {
    let mut text = format!("{VERSION}\n{}\n", entries.len());
    for (epoch, start_offset) in entries {
        text.push_str(&format!("{epoch} {start_offset}\n"));
    }
    text
}

/// Parses the file's text (Kafka accepts any whitespace between the two numbers).
pub(crate) fn decode(text: &str) -> Result<LeaderEpochCache, String> {
    let mut lines = text.lines();
    let version = lines.next().ok_or("empty file")?;
    if version.trim().parse::<u32>().ok() != Some(VERSION) {
        return Err(format!("unsupported version line {version:?}"));
    }
    let count_line = lines.next().ok_or("no entry count")?;
    let count: usize = count_line
        .trim()
        .parse()
        .map_err(|_| format!("bad entry count {count_line:?}"))?;
    let mut entries = Vec::new();
    for line in lines {
        let mut fields = line.split_whitespace();
        let (Some(epoch), Some(start), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(format!("malformed line {line:?}"));
        };
        let (Ok(epoch), Ok(start)) = (epoch.parse::<i32>(), start.parse::<i64>()) else {
            return Err(format!("malformed line {line:?}"));
        };
        entries.push((epoch, start));
    }
    if entries.len() != count {
        return Err(format!("expected {count} entries, found {}", entries.len()));
    }
    LeaderEpochCache::from_entries(entries)
        .ok_or_else(|| "epochs or start offsets do not increase".to_string())
}

/// Reads `dir/leader-epoch-checkpoint`. I/O errors other than a missing file are errors.
pub(crate) fn read(dir: &Path) -> Result<Checkpoint, StorageError> {
    let file = match std::fs::File::open(dir.join(LEADER_EPOCH_CHECKPOINT_FILE)) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Checkpoint::Missing),
        Err(e) => return Err(e.into()),
    };
    let mut data = Vec::new();
    file.take(MAX_CHECKPOINT_BYTES + 1).read_to_end(&mut data)?;
    if data.len() as u64 > MAX_CHECKPOINT_BYTES {
        return Ok(Checkpoint::Corrupt("file too large".into()));
    }
    let Ok(text) = std::str::from_utf8(&data) else {
        return Ok(Checkpoint::Corrupt("not UTF-8".into()));
    };
    Ok(match decode(text) {
        Ok(cache) => Checkpoint::Loaded(cache),
        Err(reason) => Checkpoint::Corrupt(reason),
    })
}

/// Replaces `dir/leader-epoch-checkpoint` atomically (tmp + fsync + rename + fsync dir).
pub(crate) fn write(dir: &Path, entries: &[(i32, i64)]) -> Result<(), StorageError> {
    stage(dir, entries)?.sync_all()?;
    install_staged(dir)?;
    sync_dir(dir)
}

/// The first step of `write` alone: the new text in `leader-epoch-checkpoint.tmp`, not
/// fsynced, the checkpoint itself untouched (`Log::open_deferring_syncs`; a crash leaves the
/// old checkpoint and a temp file the next open deletes).
pub(crate) fn stage(dir: &Path, entries: &[(i32, i64)]) -> Result<std::fs::File, StorageError> {
    let mut file = std::fs::File::create(staged_path(dir))?;
    file.write_all(encode(entries).as_bytes())?;
    Ok(file)
}

/// fsyncs the staged file (staged earlier, its handle gone).
pub(crate) fn sync_staged(dir: &Path) -> Result<(), StorageError> {
    std::fs::File::open(staged_path(dir))?.sync_all()?;
    Ok(())
}

/// Renames the staged file over the checkpoint; durable once the directory is synced. Only
/// once the staged file's text is durable (`sync_staged`, or a sync of the filesystem), so a
/// crash leaves the old checkpoint or the new one, whole.
pub(crate) fn install_staged(dir: &Path) -> Result<(), StorageError> {
    std::fs::rename(staged_path(dir), dir.join(LEADER_EPOCH_CHECKPOINT_FILE))?;
    Ok(())
}

fn staged_path(dir: &Path) -> std::path::PathBuf {
    dir.join(format!("{LEADER_EPOCH_CHECKPOINT_FILE}.tmp"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kafka_text_format_round_trips() {
        let text = encode(&[(0, 0), (3, 150)]);
        assert_eq!(text, "0\n2\n0 0\n3 150\n");
        assert_eq!(decode(&text).unwrap().entries(), &[(0, 0), (3, 150)]);
        assert_eq!(encode(&[]), "0\n0\n");
        assert!(decode("0\n0\n").unwrap().entries().is_empty());
        // Kafka splits on any whitespace and tolerates a missing final newline.
        assert_eq!(decode("0\n1\n4   17").unwrap().entries(), &[(4, 17)]);
    }

    #[test]
    fn malformed_files_are_corrupt() {
        for bad in [
            "",
            "1\n0\n",
            "x\n0\n",
            "0\n",
            "0\nx\n",
            "0\n2\n0 0\n",
            "0\n1\n0 0\n1 5\n",
            "0\n1\n0\n",
            "0\n1\n0 0 0\n",
            "0\n1\na 0\n",
            "0\n1\n0 99999999999999999999\n",
            "0\n2\n3 0\n2 5\n",
            "0\n2\n1 5\n2 5\n",
            "0\n1\n-1 0\n",
        ] {
            assert!(decode(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn write_then_read_and_missing_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(read(dir.path()).unwrap(), Checkpoint::Missing));
        write(dir.path(), &[(1, 0), (4, 99)]).unwrap();
        let Checkpoint::Loaded(cache) = read(dir.path()).unwrap() else {
            panic!("not loaded");
        };
        assert_eq!(cache.entries(), &[(1, 0), (4, 99)]);
        assert!(!dir
            .path()
            .join(format!("{LEADER_EPOCH_CHECKPOINT_FILE}.tmp"))
            .exists());
        std::fs::write(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE), [0xff, 0xfe]).unwrap();
        assert!(matches!(read(dir.path()).unwrap(), Checkpoint::Corrupt(_)));
    }
}
