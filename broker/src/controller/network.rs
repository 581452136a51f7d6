//! Raft over TCP: the client side (openraft's `RaftNetworkFactory`/`RaftNetwork`, one
//! connection per peer, re-established after any failure) and the server side (the controller
//! listener: an accept loop with a connection limit that dispatches AppendEntries, Vote and
//! InstallSnapshot to the local Raft and broker→controller RPCs to an `RpcHandler`).
//!
//! Every client call is bounded by openraft's per-RPC deadline (`RPCOption::hard_ttl`) and every
//! connect by `CONNECT_TIMEOUT`. A failed or timed-out call drops the connection, so a late
//! response can never be read as the answer to a later request.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::transport::{
    read_frame, write_frame, ControllerReply, ControllerRpc, Request, Response, TransportError,
};
use super::types::{Raft, TypeConfig};

/// How long a connection attempt to a peer may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// At most this many connections are served at once on the controller listener.
pub const MAX_CONNECTIONS: usize = 256;

/// Creates a `PeerClient` per peer for openraft.
#[derive(Debug, Clone, Default)]
pub struct NetworkFactory;

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            conn: None,
        }
    }
}

/// A connection to one peer's controller listener, opened on first use and after failures.
pub struct PeerClient {
    /// The peer's node id (for errors).
    target: u64,
    /// The peer's controller listener, `host:port`.
    addr: String,
    conn: Option<TcpStream>,
}

impl PeerClient {
    /// A client for `addr` outside openraft (tests, the broker's controller client).
    pub fn new(target: u64, addr: String) -> PeerClient {
        PeerClient {
            target,
            addr,
            conn: None,
        }
    }

    /// Send `req` and read its response within `ttl`.
    pub async fn call(&mut self, req: &Request, ttl: Duration) -> Result<Response, TransportError> {
        let attempt = async {
            if self.conn.is_none() {
                let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
                    .await
                    .map_err(|_| TransportError::Timeout(CONNECT_TIMEOUT))?
                    .map_err(TransportError::Connect)?;
                stream.set_nodelay(true).map_err(TransportError::Connect)?;
                self.conn = Some(stream);
            }
            let conn = self.conn.as_mut().ok_or(TransportError::Closed)?;
            write_frame(conn, req).await?;
            read_frame::<_, Response>(conn)
                .await?
                .ok_or(TransportError::Closed)
        };
        match tokio::time::timeout(ttl, attempt).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(TransportError::Timeout(ttl))
            }
        }
    }

    /// Map a transport failure to openraft's error: an unreachable peer is backed off from,
    /// other failures are retried.
    fn rpc_error<E: std::error::Error>(
        &self,
        e: TransportError,
        action: RPCTypes,
        ttl: Duration,
    ) -> RPCError<u64, BasicNode, E> {
        tracing::debug!(target_node = self.target, addr = %self.addr, error = %e, ?action, "controller RPC failed");
        match e {
            TransportError::Connect(_) => RPCError::Unreachable(Unreachable::new(&e)),
            TransportError::Timeout(_) => RPCError::Timeout(Timeout {
                action,
                id: 0,
                target: self.target,
                timeout: ttl,
            }),
            _ => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let ttl = option.hard_ttl();
        match self.call(&Request::AppendEntries(rpc), ttl).await {
            Ok(Response::AppendEntries(Ok(r))) => Ok(r),
            Ok(Response::AppendEntries(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(self.rpc_error(
                TransportError::UnexpectedResponse,
                RPCTypes::AppendEntries,
                ttl,
            )),
            Err(e) => Err(self.rpc_error(e, RPCTypes::AppendEntries, ttl)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let ttl = option.hard_ttl();
        match self.call(&Request::InstallSnapshot(rpc), ttl).await {
            Ok(Response::InstallSnapshot(Ok(r))) => Ok(r),
            Ok(Response::InstallSnapshot(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(self.rpc_error(
                TransportError::UnexpectedResponse,
                RPCTypes::InstallSnapshot,
                ttl,
            )),
            Err(e) => Err(self.rpc_error(e, RPCTypes::InstallSnapshot, ttl)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let ttl = option.hard_ttl();
        match self.call(&Request::Vote(rpc), ttl).await {
            Ok(Response::Vote(Ok(r))) => Ok(r),
            Ok(Response::Vote(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(self.rpc_error(TransportError::UnexpectedResponse, RPCTypes::Vote, ttl)),
            Err(e) => Err(self.rpc_error(e, RPCTypes::Vote, ttl)),
        }
    }
}

/// Serves broker→controller RPCs (implemented by the `Controller`).
pub trait RpcHandler: Send + Sync + 'static {
    fn handle(&self, rpc: ControllerRpc) -> impl Future<Output = ControllerReply> + Send;
}

/// Accept connections on `listener` until `shutdown` is cancelled; connection tasks are
/// spawned on `tracker` and also end on `shutdown`.
pub async fn serve<H: RpcHandler>(
    listener: TcpListener,
    raft: Raft,
    handler: Arc<H>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "controller listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let raft = raft.clone();
        let handler = Arc::clone(&handler);
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = shutdown.cancelled() => {}
                r = serve_connection(stream, raft, handler) => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "controller connection closed");
                    }
                }
            }
        });
    }
}

async fn serve_connection<H: RpcHandler>(
    mut stream: TcpStream,
    raft: Raft,
    handler: Arc<H>,
) -> Result<(), TransportError> {
    while let Some(req) = read_frame::<_, Request>(&mut stream).await? {
        let resp = match req {
            Request::AppendEntries(r) => Response::AppendEntries(raft.append_entries(r).await),
            Request::Vote(r) => Response::Vote(raft.vote(r).await),
            Request::InstallSnapshot(r) => {
                Response::InstallSnapshot(raft.install_snapshot(r).await)
            }
            Request::Controller(rpc) => Response::Controller(handler.handle(rpc).await),
        };
        write_frame(&mut stream, &resp).await?;
    }
    Ok(())
}
