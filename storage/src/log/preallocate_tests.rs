//! Tests of the active segment's preallocation: the file runs ahead of the data, sealing and
//! closing (also the unsynced close of many logs at once) trim it, and recovery after a crash
//! stops at the zeros without losing a batch.

#![allow(clippy::unwrap_used)]

use super::tests::{batch, batch_offsets};
use super::*;
use crate::segment::file_name::{path_for, LOG_SUFFIX};

fn file_len(dir: &Path) -> u64 {
    std::fs::metadata(path_for(dir, 0, LOG_SUFFIX))
        .unwrap()
        .len()
}

fn read_all(log: &Log) -> Vec<(i64, i64)> {
    let r = log.read(0, i64::MAX, usize::MAX, true).unwrap();
    batch_offsets(&r.records)
}

fn log_with_batches(dir: &Path, batches: usize) -> Log {
    let mut log = Log::open(dir, LogConfig::default(), 0).unwrap();
    for i in 0..batches {
        log.append(&batch(3, i as i64), 0, 0).unwrap();
    }
    log
}

#[test]
fn the_active_file_runs_ahead_of_the_data_and_close_trims_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_batches(dir.path(), 5);
    let data = log.size_bytes();
    assert!(file_len(dir.path()) > data, "preallocated past the data");
    assert_eq!(read_all(&log).len(), 5, "reads stop at the data");
    log.close().unwrap();
    assert_eq!(file_len(dir.path()), data, "close trims the preallocation");
    let log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 15);
    assert_eq!(read_all(&log).len(), 5);
}

#[test]
fn a_crash_with_a_preallocated_tail_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_batches(dir.path(), 7);
    let data = log.size_bytes();
    drop(log); // no close: as after kill -9
    assert!(file_len(dir.path()) > data);
    let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 21);
    assert_eq!(read_all(&log).len(), 7);
    assert_eq!(file_len(dir.path()), data, "recovery trims the zeros");
    // And appends go on after it, into fresh preallocated space.
    log.append(&batch(2, 100), 0, 0).unwrap();
    assert_eq!(log.log_end_offset(), 23);
    assert!(file_len(dir.path()) > log.size_bytes());
}

#[test]
fn a_clean_open_of_a_preallocated_file_trims_it_too() {
    // The clean path trusts the indexes and scans only the tail after the last index entry.
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_batches(dir.path(), 4);
    let data = log.size_bytes();
    drop(log);
    std::fs::File::create(dir.path().join(CLEAN_SHUTDOWN_FILE)).unwrap();
    let log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(read_all(&log).len(), 4);
    assert_eq!(file_len(dir.path()), data);
}

#[test]
fn garbage_inside_the_preallocated_space_is_cut_as_a_torn_tail() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_batches(dir.path(), 3);
    let data = log.size_bytes();
    drop(log);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path_for(dir.path(), 0, LOG_SUFFIX))
        .unwrap();
    // Half a batch header, as a write torn by the crash would leave.
    file.write_all_at(&batch(1, 0)[..30], data).unwrap();
    let log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 9);
    assert_eq!(read_all(&log).len(), 3);
    assert_eq!(file_len(dir.path()), data);
}

#[test]
fn rolled_segments_are_trimmed_to_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 400,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    for i in 0..20 {
        log.append(&batch(2, i), 0, 0).unwrap();
    }
    assert!(log.segment_count() > 2);
    let sealed: Vec<(i64, u64)> = log
        .segments()
        .take(log.segment_count() - 1)
        .map(|s| (s.base_offset(), s.size_bytes()))
        .collect();
    for (base, size) in sealed {
        let len = std::fs::metadata(path_for(dir.path(), base, LOG_SUFFIX))
            .unwrap()
            .len();
        assert_eq!(len, size, "sealed segment {base} trimmed");
    }
    drop(log);
    let log = Log::open(dir.path(), config, 0).unwrap();
    assert_eq!(log.log_end_offset(), 40);
}

/// A close whose fsyncs the caller makes (`close_unsynced`) trims and seals as `close` does;
/// its marker is only written by `mark_clean`, and without it the next open recovers the log.
#[test]
fn an_unsynced_close_writes_its_marker_only_when_told() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_batches(dir.path(), 5);
    let data = log.size_bytes();
    let closing = log.close_unsynced().unwrap();
    assert_eq!(file_len(dir.path()), data, "trimmed as by close");
    assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
    closing.mark_clean().unwrap();
    assert!(dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
    let log = Log::open_deferring_syncs(dir.path(), LogConfig::default(), 0).unwrap();
    assert!(log.syncs_deferred(), "opened as after a clean shutdown");
    assert_eq!(log.log_end_offset(), 15);
    assert_eq!(read_all(&log).len(), 5);

    // Not marked: recovered as after a crash.
    let closing = log.close_unsynced().unwrap();
    drop(closing);
    let log = Log::open_deferring_syncs(dir.path(), LogConfig::default(), 0).unwrap();
    assert!(!log.syncs_deferred(), "recovered with its own fsyncs");
    assert_eq!(read_all(&log).len(), 5);

    // After a failed fsync nothing is written.
    let mut log = log;
    log.fail_sync(&"injected");
    assert!(matches!(
        log.close_unsynced(),
        Err(StorageError::SyncFailed(_))
    ));
}
