//! The Raft state machine (openraft's `RaftStateMachine`) around `ClusterState`, and
//! `open_storage`, which opens the log and state machine of a controller directory.
//!
//! Applied state is kept in memory and published through a watch channel after every applied
//! batch; it is made durable by snapshots (`raft_snapshot`), which openraft triggers every
//! `snapshot_every_entries` entries. After a restart the state machine starts from the snapshot
//! and openraft re-applies the committed log entries after it.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, EntryPayload, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageIOError, StoredMembership,
};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::raft_log::LogStore;
use super::raft_snapshot::{self, SnapshotFile};
use super::records::CommandResult;
use super::state::ClusterState;
use super::types::{CommandResponse, Entry, LogId, RaftStoreError, StorageError, TypeConfig};
use crate::durable_file::SyncData;

/// Open the log and the state machine stored in `dir` (created if missing). `publish` receives
/// the state after every applied batch, starting with the snapshot's.
pub fn open_storage(
    dir: &Path,
    sync: SyncData,
    publish: Arc<watch::Sender<Arc<ClusterState>>>,
) -> Result<(LogStore, StateMachineStore), RaftStoreError> {
    let log = LogStore::open_with_sync(dir, sync)?;
    let sm = StateMachineStore::open(dir, publish)?;
    Ok((log, sm))
}

/// The state machine; clones share it (openraft uses one as the snapshot builder).
#[derive(Clone)]
pub struct StateMachineStore {
    dir: PathBuf,
    applied: Arc<Mutex<Applied>>,
    /// The current snapshot; its own lock so that writing a snapshot file never blocks apply.
    snapshot: Arc<Mutex<Option<CurrentSnapshot>>>,
    publish: Arc<watch::Sender<Arc<ClusterState>>>,
}

/// What apply changes.
struct Applied {
    state: ClusterState,
    last_applied: Option<LogId>,
    last_membership: StoredMembership<u64, BasicNode>,
    /// Makes snapshot ids unique within this process.
    snapshot_seq: u64,
}

struct CurrentSnapshot {
    meta: SnapshotMeta<u64, BasicNode>,
    /// `ClusterState` JSON, as sent to followers.
    bytes: Vec<u8>,
}

fn to_storage(e: RaftStoreError, io: fn(&RaftStoreError) -> StorageIOError<u64>) -> StorageError {
    tracing::error!(error = %e, "controller state machine storage failed");
    StorageError::IO { source: io(&e) }
}

impl StateMachineStore {
    /// Open the state machine of `dir`: the snapshot's state, or an empty one.
    pub fn open(
        dir: &Path,
        publish: Arc<watch::Sender<Arc<ClusterState>>>,
    ) -> Result<StateMachineStore, RaftStoreError> {
        std::fs::create_dir_all(dir).map_err(|e| RaftStoreError::io("create dir", dir, e))?;
        let (applied, current) = match raft_snapshot::load(dir)? {
            Some(file) => {
                let bytes = raft_snapshot::encode_state(&file.state)?;
                let applied = Applied {
                    state: file.state,
                    last_applied: file.meta.last_log_id,
                    last_membership: file.meta.last_membership.clone(),
                    snapshot_seq: 0,
                };
                let current = CurrentSnapshot {
                    meta: file.meta,
                    bytes,
                };
                (applied, Some(current))
            }
            None => (
                Applied {
                    state: ClusterState::new(),
                    last_applied: None,
                    last_membership: StoredMembership::default(),
                    snapshot_seq: 0,
                },
                None,
            ),
        };
        publish.send_replace(Arc::new(applied.state.clone()));
        Ok(StateMachineStore {
            dir: dir.to_owned(),
            applied: Arc::new(Mutex::new(applied)),
            snapshot: Arc::new(Mutex::new(current)),
            publish,
        })
    }

    /// A copy of the applied state.
    pub fn state(&self) -> ClusterState {
        self.applied.lock().state.clone()
    }

    /// Write `file` as the current snapshot unless a newer one is already current.
    async fn store_snapshot(&self, file: SnapshotFile) -> Result<(), RaftStoreError> {
        let bytes = raft_snapshot::encode_state(&file.state)?;
        let dir = self.dir.clone();
        let current = Arc::clone(&self.snapshot);
        tokio::task::spawn_blocking(move || {
            let mut current = current.lock();
            if current
                .as_ref()
                .is_some_and(|c| c.meta.last_log_id > file.meta.last_log_id)
            {
                return Ok(());
            }
            raft_snapshot::save(&dir, &file)?;
            *current = Some(CurrentSnapshot {
                meta: file.meta,
                bytes,
            });
            Ok(())
        })
        .await
        .map_err(|e| RaftStoreError::Task(e.to_string()))?
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let file = {
            let mut applied = self.applied.lock();
            applied.snapshot_seq += 1;
            let snapshot_id = match applied.last_applied {
                Some(id) => format!(
                    "{}-{}-{}",
                    id.leader_id.term, id.index, applied.snapshot_seq
                ),
                None => format!("0-0-{}", applied.snapshot_seq),
            };
            SnapshotFile {
                meta: SnapshotMeta {
                    last_log_id: applied.last_applied,
                    last_membership: applied.last_membership.clone(),
                    snapshot_id,
                },
                state: applied.state.clone(),
            }
        };
        let meta = file.meta.clone();
        let bytes = raft_snapshot::encode_state(&file.state)
            .map_err(|e| to_storage(e, |e| StorageIOError::write_snapshot(None, e)))?;
        self.store_snapshot(file)
            .await
            .map_err(|e| to_storage(e, |e| StorageIOError::write_snapshot(None, e)))?;
        tracing::info!(snapshot = %meta.snapshot_id, "controller snapshot written");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<u64, BasicNode>), StorageError> {
        let applied = self.applied.lock();
        Ok((applied.last_applied, applied.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut applied = self.applied.lock();
        let mut results = Vec::new();
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            applied.state.metadata_offset = entry.log_id.index;
            let result = match entry.payload {
                EntryPayload::Blank => Ok(CommandResult::Nothing),
                EntryPayload::Normal(cmd) => {
                    let result = applied.state.apply(&cmd);
                    match &result {
                        Ok(_) => tracing::debug!(
                            index = entry.log_id.index,
                            command = cmd.name(),
                            "applied"
                        ),
                        Err(e) => {
                            tracing::debug!(index = entry.log_id.index, command = cmd.name(), error = %e, "refused")
                        }
                    }
                    result
                }
                EntryPayload::Membership(m) => {
                    applied.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    Ok(CommandResult::Nothing)
                }
            };
            results.push(result);
        }
        self.publish.send_replace(Arc::new(applied.state.clone()));
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let signature = meta.signature();
        let state = raft_snapshot::decode_state(snapshot.get_ref())
            .map_err(|e| to_storage(e, |e| StorageIOError::read_snapshot(None, e)))?;
        self.store_snapshot(SnapshotFile {
            meta: meta.clone(),
            state: state.clone(),
        })
        .await
        .map_err(|e| to_storage(e, |e| StorageIOError::write_snapshot(None, e)))?;
        let mut applied = self.applied.lock();
        applied.state = state;
        applied.last_applied = meta.last_log_id;
        applied.last_membership = meta.last_membership.clone();
        self.publish.send_replace(Arc::new(applied.state.clone()));
        tracing::info!(snapshot = %signature.snapshot_id, "installed controller snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.snapshot.lock().as_ref().map(|c| Snapshot {
            meta: c.meta.clone(),
            snapshot: Box::new(Cursor::new(c.bytes.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use openraft::testing::{StoreBuilder, Suite};

    use super::*;

    /// Builds a fresh store in a temp dir; the dir is the guard.
    struct DirBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for DirBuilder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
            let dir = tempfile::tempdir().map_err(|e| StorageError::IO {
                source: StorageIOError::write(&e),
            })?;
            let (tx, _rx) = watch::channel(Arc::new(ClusterState::new()));
            let (log, sm) =
                open_storage(dir.path(), SyncData::default(), Arc::new(tx)).map_err(|e| {
                    StorageError::IO {
                        source: StorageIOError::write(&e),
                    }
                })?;
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(DirBuilder).unwrap();
    }

    /// A snapshot survives a restart, and the state it restores is published.
    #[tokio::test]
    async fn snapshot_survives_restart() {
        use crate::controller::records::Command;
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = watch::channel(Arc::new(ClusterState::new()));
        let tx = Arc::new(tx);
        let (_log, mut sm) =
            open_storage(dir.path(), SyncData::default(), Arc::clone(&tx)).unwrap();
        let entry = Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), 1),
            payload: EntryPayload::Normal(Command::RegisterBroker {
                broker_id: 1,
                host: "h".into(),
                port: 1,
                replica_endpoint: None,
                rack: None,
                incarnation_id: uuid::Uuid::from_u128(1),
                rules_version: crate::controller::state::RULES_VERSION,
            }),
        };
        let results = sm.apply([entry]).await.unwrap();
        assert_eq!(
            results,
            vec![Ok(CommandResult::BrokerRegistered { broker_epoch: 0 })]
        );
        assert!(rx.borrow().brokers.contains_key(&1));
        assert_eq!(rx.borrow().metadata_offset, 1);
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        drop(sm);
        let (tx2, rx2) = watch::channel(Arc::new(ClusterState::new()));
        let (_log, mut sm) = open_storage(dir.path(), SyncData::default(), Arc::new(tx2)).unwrap();
        assert!(rx2.borrow().brokers.contains_key(&1));
        let (last, _) = sm.applied_state().await.unwrap();
        assert_eq!(last, snap.meta.last_log_id);
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snap.meta);
    }

    #[test]
    fn corrupt_snapshot_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("snapshot.json"), b"[").unwrap();
        let (tx, _rx) = watch::channel(Arc::new(ClusterState::new()));
        assert!(matches!(
            StateMachineStore::open(dir.path(), Arc::new(tx)),
            Err(RaftStoreError::Corrupt {
                what: "snapshot",
                ..
            })
        ));
    }
}
