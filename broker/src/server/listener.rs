//! Accept loop: a connection limit (`max.connections`), one task per connection, and graceful
//! shutdown (stop accepting, let connections finish their in-flight requests).

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::connection::serve_connection;
use crate::node::Node;

/// Serves `listener` until the node shuts down and every connection has finished.
pub async fn run_listener(node: Arc<Node>, listener: TcpListener) {
    let max_connections =
        usize::try_from(node.config.settings.i32("max.connections").max(1)).unwrap_or(1);
    let limit = Arc::new(Semaphore::new(max_connections));
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
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            tracing::warn!(%peer, max_connections, "connection limit reached; closing new connection");
            drop(stream);
            continue;
        };
        let node = Arc::clone(&node);
        tracker.spawn(async move {
            serve_connection(node, stream, peer).await;
            drop(permit);
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}
