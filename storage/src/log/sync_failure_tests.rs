//! Tests of a log after a failed fsync: no more writes, nothing more marked durable, no clean
//! close, and the next open recovers it as after a crash.

#![allow(clippy::unwrap_used)]

use super::tests::batch;
use super::*;

#[test]
fn after_a_failed_fsync_the_log_refuses_writes_flushes_and_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    log.append(&batch(3, 0), 0, 0).unwrap();
    log.mark_flushed(3).unwrap();
    log.append(&batch(2, 1), 0, 0).unwrap();
    assert_eq!(log.sync_failure(), None);

    log.fail_sync(&"Input/output error (os error 5)");
    assert_eq!(log.sync_failure(), Some("Input/output error (os error 5)"));
    // What the failed fsync covered is never reported durable, whatever a later one says.
    assert!(matches!(
        log.mark_flushed(5),
        Err(StorageError::SyncFailed(_))
    ));
    assert_eq!(log.flushed_offset(), 3);
    assert!(matches!(
        log.append(&batch(1, 2), 0, 0),
        Err(StorageError::SyncFailed(_))
    ));
    assert!(matches!(log.flush(), Err(StorageError::SyncFailed(_))));
    assert!(matches!(log.roll(), Err(StorageError::SyncFailed(_))));
    assert_eq!(log.log_end_offset(), 5, "the refused append wrote nothing");
    // A second failure keeps the first reason.
    log.fail_sync(&"another");
    assert_eq!(log.sync_failure(), Some("Input/output error (os error 5)"));

    assert!(matches!(log.close(), Err(StorageError::SyncFailed(_))));
    assert!(
        !dir.path().join(CLEAN_SHUTDOWN_FILE).exists(),
        "no clean-shutdown marker: the next open must check the log"
    );
    let log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    assert_eq!(log.sync_failure(), None);
    assert_eq!(log.log_end_offset(), 5, "here the pages did reach the disk");
}
