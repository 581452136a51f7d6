//! The controller listener's wire format: the messages (openraft's RPCs and the
//! broker→controller RPCs) and how they are framed on a TCP stream.
//!
//! A frame is `[payload length u32 BE][CRC32C of payload u32 BE][payload]`, the payload being
//! the JSON of a `Request` or `Response`. The length is checked against `MAX_FRAME_BYTES` before
//! anything is allocated, and the CRC before the payload is decoded. One request is answered
//! before the next is read on the same connection, so responses match requests by order.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use super::records::Command;
use super::state::Endpoint;
use super::types::{CommandResponse, TypeConfig};

/// Largest frame accepted or sent. Raft batches are bounded by `max_payload_entries` and
/// snapshots are sent in chunks far below this.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

const FRAME_HEADER_BYTES: usize = 8;

/// A request on the controller listener.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    Controller(ControllerRpc),
}

/// The answer to a `Request`, same variant.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    InstallSnapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    Controller(ControllerReply),
}

/// Broker → active controller requests (docs/cluster-design.md, "Broker → controller RPCs").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerRpc {
    /// BrokerRegistration: answered with `Applied(BrokerRegistered { broker_epoch })`.
    RegisterBroker {
        broker_id: i32,
        /// The client endpoint (Metadata).
        host: String,
        port: u16,
        /// The inter-broker endpoint followers fetch from, if not the client endpoint.
        #[serde(default)]
        replica_endpoint: Option<Endpoint>,
        rack: Option<String>,
        incarnation_id: Uuid,
        /// The newest controller rules (`state::RULES_VERSION`) the broker's code applies; 0
        /// from brokers older than the field.
        #[serde(default)]
        rules_version: u16,
    },
    /// BrokerHeartbeat: keeps the broker's session alive; `metadata_offset` is the last applied
    /// controller log index on the broker, so it is unfenced only once it caught up.
    Heartbeat {
        broker_id: i32,
        broker_epoch: i64,
        metadata_offset: u64,
    },
    /// A broker-only node asks to receive the metadata log as a Raft learner (it votes in no
    /// election); answered with `Applied(Ok(Nothing))` once the membership change is
    /// committed.
    AddLearner {
        node_id: i32,
        controller_addr: String,
    },
    /// A partition leader's ISR change (must be `Command::AlterPartition`) or a forwarded admin
    /// request (CreateTopic, DeleteTopic, CreatePartitions, AlterConfigs) already turned into a
    /// command by the receiving broker's controller client.
    Propose(Command),
}

/// The active controller's answer to a `ControllerRpc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerReply {
    /// The command was committed and applied with this result.
    Applied(CommandResponse),
    /// Heartbeat accepted; `fenced` tells the broker whether it may lead.
    Heartbeat { fenced: bool },
    /// This node is not the active controller; try `leader` (id, controller address) if known.
    NotController { leader: Option<(i32, String)> },
    /// The request could not be served (e.g. the quorum is unavailable); retriable.
    Unavailable(String),
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    FrameTooLarge { size: usize, limit: usize },
    #[error("frame fails its CRC")]
    CorruptFrame,
    #[error("undecodable frame: {0}")]
    Decode(serde_json::Error),
    #[error("unencodable message: {0}")]
    Encode(serde_json::Error),
    #[error("peer closed the connection")]
    Closed,
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("unexpected response")]
    UnexpectedResponse,
}

/// Encode `msg` as one frame.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, TransportError> {
    let payload = serde_json::to_vec(msg).map_err(TransportError::Encode)?;
    let too_large = || TransportError::FrameTooLarge {
        size: payload.len(),
        limit: MAX_FRAME_BYTES,
    };
    if payload.len() > MAX_FRAME_BYTES {
        return Err(too_large());
    }
    let len = u32::try_from(payload.len()).map_err(|_| too_large())?;
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Write one frame.
pub async fn write_frame<W, T>(w: &mut W, msg: &T) -> Result<(), TransportError>
where
    W: tokio::io::AsyncWrite + Unpin,
    T: Serialize,
{
    let bytes = encode_frame(msg)?;
    w.write_all(&bytes).await?;
    w.flush().await?;
    Ok(())
}

/// Read one frame; `Ok(None)` if the peer closed the connection between frames.
pub async fn read_frame<R, T>(r: &mut R) -> Result<Option<T>, TransportError>
where
    R: tokio::io::AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut header = [0u8; FRAME_HEADER_BYTES];
    match r.read_exact(&mut header[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    r.read_exact(&mut header[1..]).await?;
    let [l0, l1, l2, l3, c0, c1, c2, c3] = header;
    let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
    let crc = u32::from_be_bytes([c0, c1, c2, c3]);
    if len > MAX_FRAME_BYTES {
        return Err(TransportError::FrameTooLarge {
            size: len,
            limit: MAX_FRAME_BYTES,
        });
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    if crc32c::crc32c(&payload) != crc {
        return Err(TransportError::CorruptFrame);
    }
    serde_json::from_slice(&payload)
        .map(Some)
        .map_err(TransportError::Decode)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let rpc = ControllerRpc::Heartbeat {
            broker_id: 3,
            broker_epoch: 7,
            metadata_offset: 99,
        };
        let bytes = encode_frame(&Request::Controller(rpc.clone())).unwrap();
        let mut r = &bytes[..];
        let back: Option<Request> = read_frame(&mut r).await.unwrap();
        match back {
            Some(Request::Controller(got)) => assert_eq!(got, rpc),
            other => panic!("{other:?}"),
        }
        let none: Option<Request> = read_frame(&mut r).await.unwrap();
        assert!(none.is_none(), "clean end of stream");
    }

    #[tokio::test]
    async fn bad_frames_are_refused() {
        let good = encode_frame(&ControllerReply::Heartbeat { fenced: false }).unwrap();
        // Oversized length: refused before allocating.
        let mut big = good.clone();
        big[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        let r: Result<Option<ControllerReply>, _> = read_frame(&mut &big[..]).await;
        assert!(matches!(r, Err(TransportError::FrameTooLarge { .. })));
        // Flipped payload byte.
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let r: Result<Option<ControllerReply>, _> = read_frame(&mut &bad[..]).await;
        assert!(matches!(r, Err(TransportError::CorruptFrame)));
        // Truncated frame.
        let r: Result<Option<ControllerReply>, _> = read_frame(&mut &good[..good.len() - 1]).await;
        assert!(matches!(r, Err(TransportError::Io(_))));
        // Valid CRC, wrong message type.
        let other = encode_frame(&42u32).unwrap();
        let r: Result<Option<ControllerReply>, _> = read_frame(&mut &other[..]).await;
        assert!(matches!(r, Err(TransportError::Decode(_))));
    }
}
