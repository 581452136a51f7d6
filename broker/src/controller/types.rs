//! The openraft type configuration of the controller quorum and the storage error type.
//!
//! Raft node ids are the broker ids (non-negative `i32`) widened to `u64`, because openraft's
//! storage test suite builds node ids from `u64`.

use std::io::Cursor;
use std::path::PathBuf;

use openraft::BasicNode;

use super::records::{Command, CommandError, CommandResult};

/// What applying one log entry returned (a refused command is a normal, replicated outcome).
pub type CommandResponse = Result<CommandResult, CommandError>;

openraft::declare_raft_types!(
    /// The controller's openraft types: commands in, results out, nodes addressed by
    /// `host:port` of their controller listener.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A Raft log entry of the controller.
pub type Entry = openraft::Entry<TypeConfig>;
/// Raft's log id with our node id type.
pub type LogId = openraft::LogId<u64>;
/// Raft's vote with our node id type.
pub type Vote = openraft::Vote<u64>;
/// The error openraft's storage traits return.
pub type StorageError = openraft::StorageError<u64>;
/// The running Raft instance.
pub type Raft = openraft::Raft<TypeConfig>;

/// Widen a broker id to a Raft node id. Broker ids are never negative.
pub fn node_id(broker_id: i32) -> u64 {
    u64::try_from(broker_id).unwrap_or(u64::MAX)
}

/// Narrow a Raft node id back to a broker id (`-1` if it cannot be one).
pub fn broker_id(node_id: u64) -> i32 {
    i32::try_from(node_id).unwrap_or(-1)
}

/// Failures of the controller's files, named after the condition.
#[derive(Debug, thiserror::Error)]
pub enum RaftStoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt {what} in {path}: {detail}")]
    Corrupt {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("encoding {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("log entry of {size} bytes exceeds the limit of {limit}")]
    EntryTooLarge { size: usize, limit: usize },
    #[error("storage task failed: {0}")]
    Task(String),
}

impl RaftStoreError {
    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        RaftStoreError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}
