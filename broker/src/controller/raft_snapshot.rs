//! State-machine snapshots on disk: `snapshot.json` in the controller directory holds the
//! snapshot's Raft metadata (last included log id, membership) and the `ClusterState`,
//! rewritten atomically. The bytes sent to a lagging follower (InstallSnapshot) are the JSON of
//! the `ClusterState` alone; the metadata travels beside them.

use std::path::Path;

use openraft::{BasicNode, SnapshotMeta};
use serde::{Deserialize, Serialize};

use super::state::ClusterState;
use super::types::RaftStoreError;
use crate::durable_file::write_atomically;

const SNAPSHOT_FILE: &str = "snapshot.json";

/// The content of `snapshot.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotFile {
    pub meta: SnapshotMeta<u64, BasicNode>,
    pub state: ClusterState,
}

/// The snapshot in `dir`, if any. A file that does not decode is an error: the log entries it
/// covers may already be purged, so starting without it would lose metadata.
pub fn load(dir: &Path) -> Result<Option<SnapshotFile>, RaftStoreError> {
    let path = dir.join(SNAPSHOT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| RaftStoreError::Corrupt {
                    what: "snapshot",
                    path,
                    detail: e.to_string(),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RaftStoreError::io("read", &path, e)),
    }
}

/// Replace the snapshot in `dir`.
pub fn save(dir: &Path, snapshot: &SnapshotFile) -> Result<(), RaftStoreError> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = serde_json::to_vec(snapshot).map_err(|source| RaftStoreError::Encode {
        what: "snapshot",
        source,
    })?;
    write_atomically(&path, &bytes).map_err(|e| RaftStoreError::io("write", &path, e))
}

/// The bytes of a state as sent in InstallSnapshot.
pub fn encode_state(state: &ClusterState) -> Result<Vec<u8>, RaftStoreError> {
    serde_json::to_vec(state).map_err(|source| RaftStoreError::Encode {
        what: "snapshot state",
        source,
    })
}

/// The state from InstallSnapshot bytes.
pub fn decode_state(bytes: &[u8]) -> Result<ClusterState, RaftStoreError> {
    serde_json::from_slice(bytes).map_err(|e| RaftStoreError::Corrupt {
        what: "received snapshot",
        path: Default::default(),
        detail: e.to_string(),
    })
}
