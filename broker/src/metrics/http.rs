//! A minimal HTTP/1.1 endpoint for Prometheus scrapes: `GET /metrics` returns the text
//! exposition, anything else 404. Requests are bounded (8 KiB of headers, 5 s to send them)
//! and every connection is closed after one response.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::node::Node;

const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// Serves scrapes until shutdown.
pub async fn serve_metrics(node: Arc<Node>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            () = node.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                let node = Arc::clone(&node);
                tokio::spawn(async move {
                    if let Err(e) = answer(&node, stream).await {
                        tracing::debug!(error = %e, "metrics request failed");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn answer(node: &Node, mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let read_headers = async {
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() >= MAX_REQUEST_BYTES {
                break;
            }
        }
        Ok::<(), std::io::Error>(())
    };
    if tokio::time::timeout(Duration::from_secs(5), read_headers)
        .await
        .is_err()
    {
        return Ok(());
    }
    let request_line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let request_line = String::from_utf8_lossy(request_line);
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let response = if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
        let committed = node.groups.read(|c| c.all_committed());
        let active = node
            .cluster()
            .is_none_or(|rt| rt.controller_id() == Some(rt.node_id));
        node.metrics.active_controller.set(i64::from(active));
        let body = node.metrics.render(&node.partitions, &committed);
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
