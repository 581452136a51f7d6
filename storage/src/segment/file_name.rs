//! File names of a partition directory: `<20-digit zero-padded offset>.<suffix>`.
//!
//! Invariant: names sort lexicographically in offset order, and parsing accepts exactly the names
//! this module produces (20 ASCII digits, a known suffix).

use std::path::{Path, PathBuf};

pub const LOG_SUFFIX: &str = "log";
pub const INDEX_SUFFIX: &str = "index";
pub const TIME_INDEX_SUFFIX: &str = "timeindex";
pub const SNAPSHOT_SUFFIX: &str = "snapshot";
/// Written by `close()`, removed by `open()`: its presence means the last shutdown was clean.
pub const CLEAN_SHUTDOWN_FILE: &str = "clean_shutdown";
/// Holds the log start offset when it is above the first segment's base offset.
pub const LOG_START_OFFSET_FILE: &str = "log_start_offset";
/// Leader epochs and their start offsets, in Kafka's checkpoint text format.
pub const LEADER_EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// Suffixes of files that are only ever transient and are deleted on open.
pub const TEMP_SUFFIXES: [&str; 4] = ["tmp", "deleted", "cleaned", "swap"];

/// `00000000000000000042` for 42.
pub fn offset_name(offset: i64, suffix: &str) -> String {
    format!("{offset:020}.{suffix}")
}

pub fn path_for(dir: &Path, offset: i64, suffix: &str) -> PathBuf {
    dir.join(offset_name(offset, suffix))
}

/// Parses `<20 digits>.<suffix>`; `None` for any other name.
pub fn parse_offset(file_name: &str, suffix: &str) -> Option<i64> {
    let (stem, ext) = file_name.split_once('.')?;
    if ext != suffix || stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// True for names ending in one of `TEMP_SUFFIXES`.
pub fn is_temp_file(file_name: &str) -> bool {
    file_name
        .rsplit_once('.')
        .is_some_and(|(_, ext)| TEMP_SUFFIXES.contains(&ext))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let name = offset_name(42, LOG_SUFFIX);
        assert_eq!(name, "00000000000000000042.log");
        assert_eq!(parse_offset(&name, LOG_SUFFIX), Some(42));
        assert_eq!(parse_offset(&name, INDEX_SUFFIX), None);
        assert_eq!(parse_offset("42.log", LOG_SUFFIX), None);
        assert_eq!(parse_offset("0000000000000000004x.log", LOG_SUFFIX), None);
        assert!(is_temp_file("00000000000000000042.snapshot.tmp"));
        assert!(!is_temp_file("00000000000000000042.snapshot"));
    }
}
