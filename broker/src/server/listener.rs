//! Accept loop: the connection limits (`ConnectionLimits`), one task per connection, and
//! graceful shutdown (stop accepting, let connections finish their in-flight requests).

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use super::connection::serve_connection;
use super::connection_limits::{ConnectionLimits, Refused};
use crate::node::Node;

/// Serves `listener` until the node shuts down and every connection has finished.
/// `inter_broker`: the listener followers fetch through, not counted against
/// `max.connections`.
pub async fn run_listener(
    node: Arc<Node>,
    listener: TcpListener,
    limits: Arc<ConnectionLimits>,
    inter_broker: bool,
) {
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = node.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match limits.admit(peer.ip(), inter_broker) {
            Ok(slot) => slot,
            Err(Refused::Broker { max }) => {
                tracing::warn!(%peer, max_connections = max, "connection limit reached; closing new connection");
                continue;
            }
            Err(Refused::Address { max }) => {
                tracing::warn!(%peer, max_connections_per_ip = max, "connection limit of this address reached; closing new connection");
                continue;
            }
        };
        let node = Arc::clone(&node);
        tracker.spawn(async move {
            serve_connection(node, stream, peer).await;
            drop(slot);
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}
