//! `cleaner_checkpoint`: where the dirty section of a partition starts and when the earliest
//! kept tombstone may go (Kafka keeps the first in `cleaner-offset-checkpoint` per log dir and
//! derives the second from the batches; one small file per partition suits our layout).
//!
//! Format: ASCII `<first dirty offset> <next delete horizon ms, -1 for none>\n`. Replaced whole
//! (tmp, fsync, rename, fsync dir). Missing or unreadable means "nothing cleaned yet": the next
//! cleaning starts over from the log start, which is safe, only slower.

use std::path::Path;

use crate::error::StorageError;
use crate::producer_state::snapshot::sync_dir;

pub const CLEANER_CHECKPOINT_FILE: &str = "cleaner_checkpoint";

/// What the last cleaning left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CleanerCheckpoint {
    /// Everything below was cleaned (Kafka's `firstDirtyOffset`).
    pub first_dirty_offset: i64,
    /// The earliest delete horizon of a kept tombstone; -1 for none.
    pub next_delete_horizon_ms: i64,
}

pub(crate) fn read(dir: &Path) -> Option<CleanerCheckpoint> {
    let text = std::fs::read_to_string(dir.join(CLEANER_CHECKPOINT_FILE)).ok()?;
    let mut fields = text.split_whitespace();
    let first_dirty_offset = fields.next()?.parse().ok()?;
    let next_delete_horizon_ms = fields.next()?.parse().ok()?;
    Some(CleanerCheckpoint {
        first_dirty_offset,
        next_delete_horizon_ms,
    })
}

pub(crate) fn write(dir: &Path, checkpoint: CleanerCheckpoint) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{CLEANER_CHECKPOINT_FILE}.tmp"));
    {
        let mut file = std::fs::File::create(&tmp)?;
        let text = format!(
            "{} {}\n",
            checkpoint.first_dirty_offset, checkpoint.next_delete_horizon_ms
        );
        std::io::Write::write_all(&mut file, text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(CLEANER_CHECKPOINT_FILE))?;
    sync_dir(dir)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_ignores_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), None);
        let c = CleanerCheckpoint {
            first_dirty_offset: 42,
            next_delete_horizon_ms: -1,
        };
        write(dir.path(), c).unwrap();
        assert_eq!(read(dir.path()), Some(c));
        std::fs::write(dir.path().join(CLEANER_CHECKPOINT_FILE), "x y").unwrap();
        assert_eq!(read(dir.path()), None);
    }
}
