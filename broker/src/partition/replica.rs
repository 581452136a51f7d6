//! One topic-partition replica on this broker (always the leader on a single node).
//!
//! Invariants: appends happen under `log`'s mutex, in the order requests arrive; the high
//! watermark only moves forward and never passes the log end offset; with `SyncOnAck` it never
//! passes the flushed offset, so a consumer never sees a record a crash could take back.

use std::sync::Arc;

use parking_lot::Mutex;
use storage::{AppendOutcome, Log, LogConfig, StorageError};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use super::{DurabilityPolicy, TopicPartition};

/// Why an operation on a partition failed.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("partition {0} is closed")]
    Closed(TopicPartition),
}

/// The result of reading for a fetch.
#[derive(Debug)]
pub struct FetchRead {
    pub records: bytes::Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

pub struct Partition {
    pub tp: TopicPartition,
    pub topic_id: Uuid,
    /// Leader epoch stamped into appended batches; constant on a single node.
    pub leader_epoch: i32,
    /// `None` once closed (shutdown or topic deletion).
    log: Mutex<Option<Log>>,
    /// Consumers read below this; fetches and acks wait on it.
    high_watermark: watch::Sender<i64>,
    /// Offset below which everything is fsynced; acks=1/-1 wait on it.
    durable: watch::Sender<i64>,
    /// Wakes the flusher after an append (a stored permit, so no wake-up is lost).
    pub(super) flush_wanted: Notify,
    pub(super) policy: DurabilityPolicy,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition").field("tp", &self.tp).finish()
    }
}

impl Partition {
    /// Opens (recovering) the log in `dir`.
    pub fn open(
        dir: &std::path::Path,
        tp: TopicPartition,
        topic_id: Uuid,
        config: LogConfig,
        policy: DurabilityPolicy,
        now_ms: i64,
    ) -> Result<Arc<Self>, PartitionError> {
        let log = Log::open(dir, config, now_ms)?;
        let leo = log.log_end_offset();
        Ok(Arc::new(Self {
            tp,
            topic_id,
            leader_epoch: 0,
            log: Mutex::new(Some(log)),
            high_watermark: watch::Sender::new(leo),
            durable: watch::Sender::new(leo),
            flush_wanted: Notify::new(),
            policy,
        }))
    }

    fn with_log<T>(
        &self,
        f: impl FnOnce(&mut Log) -> Result<T, StorageError>,
    ) -> Result<T, PartitionError> {
        let mut guard = self.log.lock();
        let log = guard
            .as_mut()
            .ok_or_else(|| PartitionError::Closed(self.tp.clone()))?;
        Ok(f(log)?)
    }

    /// Validates and appends one produce payload. Does not wait for durability.
    pub fn append(&self, records: &[u8], now_ms: i64) -> Result<AppendOutcome, PartitionError> {
        let (outcome, leo) = self.with_log(|log| {
            let o = log.append(records, self.leader_epoch, now_ms)?;
            Ok((o, log.log_end_offset()))
        })?;
        if matches!(outcome, AppendOutcome::Appended { .. }) {
            match self.policy {
                DurabilityPolicy::SyncOnAck => self.flush_wanted.notify_one(),
                DurabilityPolicy::Interval { .. } => self.advance_high_watermark(leo),
            }
        }
        Ok(outcome)
    }

    /// Waits until every offset below `offset` is durable (SyncOnAck) or written (Interval).
    /// Returns false if the deadline passes first or the partition closes.
    pub async fn wait_durable(&self, offset: i64, deadline: tokio::time::Instant) -> bool {
        let mut rx = match self.policy {
            DurabilityPolicy::SyncOnAck => self.durable.subscribe(),
            DurabilityPolicy::Interval { .. } => return true,
        };
        let reached = tokio::time::timeout_at(deadline, rx.wait_for(|&d| d >= offset))
            .await
            .is_ok_and(|r| r.is_ok());
        reached
    }

    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    pub fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    fn advance_high_watermark(&self, to: i64) {
        self.high_watermark.send_if_modified(|hw| {
            if to > *hw {
                *hw = to;
                true
            } else {
                false
            }
        });
    }

    /// Called by the flusher once everything below `offset` is fsynced.
    pub(super) fn mark_durable(&self, offset: i64) {
        let advanced = self.with_log(|log| {
            log.mark_flushed(offset);
            Ok(())
        });
        if advanced.is_ok() {
            self.durable.send_if_modified(|d| {
                if offset > *d {
                    *d = offset;
                    true
                } else {
                    false
                }
            });
            if self.policy == DurabilityPolicy::SyncOnAck {
                self.advance_high_watermark(offset);
            }
        }
    }

    /// The file to fsync and the offset it covers, if anything is not yet durable.
    pub(super) fn pending_flush(&self) -> Option<storage::FlushTarget> {
        let guard = self.log.lock();
        let log = guard.as_ref()?;
        if log.flushed_offset() >= log.log_end_offset() {
            return None;
        }
        Some(log.flush_target())
    }

    /// Reads whole batches from `offset` below the high watermark.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<FetchRead, PartitionError> {
        let hw = self.high_watermark();
        self.with_log(|log| {
            let r = log.read(offset, hw, max_bytes, min_one_batch)?;
            Ok(FetchRead {
                records: r.records,
                high_watermark: hw,
                log_start_offset: log.log_start_offset(),
                log_end_offset: log.log_end_offset(),
            })
        })
    }

    pub fn log_start_offset(&self) -> Result<i64, PartitionError> {
        self.with_log(|log| Ok(log.log_start_offset()))
    }

    pub fn log_end_offset(&self) -> Result<i64, PartitionError> {
        self.with_log(|log| Ok(log.log_end_offset()))
    }

    pub fn offset_for_timestamp(
        &self,
        ts: i64,
    ) -> Result<Option<storage::TimestampOffset>, PartitionError> {
        self.with_log(|log| log.offset_for_timestamp(ts))
    }

    pub fn max_timestamp(&self) -> Result<Option<storage::TimestampOffset>, PartitionError> {
        self.with_log(|log| log.max_timestamp())
    }

    /// The leader epoch this replica serves in (constant on a single node).
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// OffsetForLeaderEpoch as the leader: the largest epoch <= `epoch` and its end offset
    /// (`Log::end_offset_for_epoch`, with this replica's own epoch known from the moment it
    /// leads, as in Kafka). `None` means UNDEFINED (-1, -1).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Result<Option<(i32, i64)>, PartitionError> {
        let leader_epoch = self.leader_epoch();
        self.with_log(|log| {
            Ok(super::leader_epoch::end_offset_as_leader(
                epoch,
                log.end_offset_for_epoch(epoch),
                log.latest_epoch(),
                leader_epoch,
                log.log_end_offset(),
            ))
        })
    }

    pub fn set_config(&self, config: LogConfig) -> Result<(), PartitionError> {
        self.with_log(|log| {
            log.set_config(config);
            Ok(())
        })
    }

    pub fn apply_retention(&self, now_ms: i64) -> Result<usize, PartitionError> {
        self.with_log(|log| log.apply_retention(now_ms))
    }

    pub fn size_bytes(&self) -> Result<u64, PartitionError> {
        self.with_log(|log| Ok(log.size_bytes()))
    }

    /// Flushes and closes the log; later calls fail with `Closed`.
    pub fn close(&self) -> Result<(), PartitionError> {
        let log = self.log.lock().take();
        if let Some(log) = log {
            log.close()?;
        }
        self.flush_wanted.notify_one();
        Ok(())
    }

    /// Closes the log and removes its directory.
    pub fn delete(&self) -> Result<(), PartitionError> {
        let log = self.log.lock().take();
        if let Some(log) = log {
            log.delete()?;
        }
        self.flush_wanted.notify_one();
        Ok(())
    }

    pub fn is_closed(&self) -> bool {
        self.log.lock().is_none()
    }
}
