//! One client connection: read frames, dispatch each request in arrival order, and write the
//! responses in the same order.
//!
//! The reader runs each request's in-order part (decode, validation, appends) before reading
//! the next, so produce requests on one connection are appended in the order they were sent.
//! The waiting part (fsync acks, fetch long-polls) is a future handed to the writer, which
//! awaits them in order (`response_writer`); about `queued.max.requests` are outstanding at
//! most (twice that while the writer gathers answered ones into one write), after which
//! reading pauses. A frame that is malformed, oversized, of an unknown API or of an unsupported
//! version (other than ApiVersions) closes the connection, as Kafka does.
//! A connection that sends nothing for `connections.max.idle.ms` is closed, and so is one whose
//! response is not written whole within that long (a client that sends but never reads; Kafka
//! counts any socket progress instead, so a client reading one frame slower than that is also
//! closed here); one idle for a second gives back a read buffer that large requests grew. At
//! shutdown, responses still in flight get `SHUTDOWN_WRITE_GRACE` to be written.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use protocol_shim::{decode_request, DecodeError, FrameDecoder};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::read_buffer::{prepare_read, read_wait, shrink_idle_buffer, INITIAL_BUFFER_BYTES};
use super::response_writer::write_responses;
use crate::handlers::{dispatch, OutChunk, PendingResponse};

use crate::node::Node;

/// How long a connection's writer may go on answering in-flight requests once the broker shuts
/// down, before the connection is dropped (a client that stopped reading would hold shutdown).
const SHUTDOWN_WRITE_GRACE: Duration = Duration::from_secs(3);

/// Serves one connection until the client closes it, it misbehaves, it idles out, or the
/// broker shuts down (after which in-flight requests are still answered).
pub async fn serve_connection(node: Arc<Node>, stream: TcpStream, peer: SocketAddr) {
    let span = tracing::info_span!("conn", %peer);
    async move {
        tracing::debug!("connection opened");
        node.metrics.connections.inc();
        node.metrics.connections_accepted.inc();
        let _ = stream.set_nodelay(true);
        let (mut reader, writer) = stream.into_split();
        let settings = &node.config.settings;
        let max_frame_bytes =
            usize::try_from(settings.i32("socket.request.max.bytes").max(1)).unwrap_or(1);
        let idle = Duration::from_millis(
            settings
                .i64("connections.max.idle.ms")
                .max(1)
                .unsigned_abs(),
        );
        let queue = usize::try_from(settings.i32("queued.max.requests").max(1)).unwrap_or(1);
        let use_sendfile = settings.bool("sluice.fetch.sendfile");
        let decoder = FrameDecoder::new(max_frame_bytes);
        let (tx, rx) = mpsc::channel::<PendingResponse>(queue);

        let writer_task = tokio::spawn(
            write_responses(rx, writer, idle, use_sendfile).in_current_span(),
        );

        let mut buf = BytesMut::with_capacity(INITIAL_BUFFER_BYTES);
        'read: loop {
            // Take every whole frame already buffered.
            loop {
                let frame = match decoder.decode(&mut buf) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "closing connection: bad frame");
                        break 'read;
                    }
                };
                let pending: PendingResponse = match decode_request(frame) {
                    Ok(request) => {
                        // A `debug` span: at the default `info` level it is disabled and
                        // costs nothing, where formatting its fields for every request was
                        // 3-4 % of the broker's CPU at 10,000 requests/s. Events a request
                        // logs at `info` and above name what they are about themselves.
                        let span = tracing::debug_span!(
                            "request",
                            api = ?request.api_key,
                            version = request.version,
                            correlation_id = request.header.correlation_id,
                            client_id = request.header.client_id.as_deref().unwrap_or(""),
                        );
                        match dispatch(&node, request, peer).instrument(span).await {
                            Some(pending) => pending,
                            None => continue,
                        }
                    }
                    Err(DecodeError::UnsupportedVersion(p)) if p.api_key == 18 => {
                        tracing::debug!(
                            version = p.api_version,
                            "ApiVersions at unsupported version"
                        );
                        let frame = protocol_shim::apis::api_versions::unsupported_version_frame(
                            p.correlation_id,
                        );
                        let Ok(frame) = frame else {
                            break 'read;
                        };
                        ready(frame)
                    }
                    Err(DecodeError::UnknownApi(p)) if matches!(p.api_key, 17 | 36) => {
                        // SASL on a listener without it: Kafka's ILLEGAL_SASL_STATE answer.
                        let Some(frame) = protocol_shim::apis::sasl::refusal_frame(&p) else {
                            tracing::warn!(api = p.api_key, "closing connection: SASL request at an unknown version");
                            break 'read;
                        };
                        ready(frame)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "closing connection: cannot serve request");
                        break 'read;
                    }
                };
                // The queue is full while the client reads nothing: wait for room, but not
                // past shutdown.
                let sent = tokio::select! {
                    () = node.shutdown.cancelled() => break 'read,
                    sent = tx.send(pending) => sent,
                };
                if sent.is_err() {
                    break 'read;
                }
            }
            let read_limit = match decoder.bytes_needed(&buf) {
                Ok(n) => prepare_read(&mut buf, n),
                Err(e) => {
                    tracing::warn!(error = %e, "closing connection: bad frame");
                    break;
                }
            };
            // Wait for bytes, up to the idle limit; on the way, a large idle buffer is given back
            // (one extra wake-up per idle spell, and only for such a buffer).
            let mut idle_for = Duration::ZERO;
            let read = loop {
                let wait = read_wait(idle, idle_for, &buf);
                let mut into = (&mut buf).limit(read_limit);
                let r = tokio::select! {
                    () = node.shutdown.cancelled() => break 'read,
                    r = tokio::time::timeout(wait, reader.read_buf(&mut into)) => r,
                };
                idle_for += wait;
                if r.is_err() && idle_for < idle {
                    shrink_idle_buffer(&mut buf);
                    continue;
                }
                break r;
            };
            match read {
                Ok(Ok(0)) => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "read failed");
                    break;
                }
                Err(_) => {
                    tracing::debug!("closing idle connection");
                    break;
                }
            }
        }
        drop(tx);
        let mut writer_task = writer_task;
        tokio::select! {
            _ = &mut writer_task => {}
            () = async {
                node.shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_WRITE_GRACE).await;
            } => {
                tracing::debug!("closing connection: responses still unwritten after shutdown's grace");
                writer_task.abort();
            }
        }
        node.metrics.connections.dec();
        tracing::debug!("connection closed");
    }
    .instrument(span)
    .await;
}

/// A response already encoded, for the writer to send in its turn.
fn ready(frame: bytes::Bytes) -> PendingResponse {
    Box::pin(async move { Some(vec![OutChunk::Bytes(frame)]) })
}
