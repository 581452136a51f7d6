//! The writer half of a connection: takes the responses in request order, waits for each, and
//! writes it. Responses that are already answered when one is written go out with it in one
//! vectored write: a round of the shared flush acknowledges several produce requests of a
//! connection at once, and one write then wakes the client once for all of them where a write
//! each woke it once per response. A response with record data in a segment file is written on
//! its own (`map_out`, `copy_out` or `send_file`).

use std::task::Poll;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

use crate::handlers::{OutChunk, PendingResponse};

/// At most this many chunks are gathered from several responses into one write (the chunks
/// of one `writev`).
const GATHER_CHUNKS: usize = 64;

/// What the writer takes up after a write.
enum Next {
    /// The next response, not answered yet when the last write was gathered (or just taken
    /// from the queue).
    Waiting(PendingResponse),
    /// The next response, answered but with record data in a file (written on its own).
    Answered(Vec<OutChunk>),
    /// The next response asked to close the connection.
    Close,
}

/// Writes every response `responses` yields, in order, until the reader drops its end (then
/// shuts the socket's write side down), a write fails, a response is not written whole within
/// `idle` (Kafka's idle expiry closes a connection whose socket made no progress that long), or
/// a response asks to close the connection.
pub(super) async fn write_responses(
    mut responses: mpsc::Receiver<PendingResponse>,
    mut writer: OwnedWriteHalf,
    idle: Duration,
    use_sendfile: bool,
) {
    let mut next = None;
    loop {
        let up = match next.take() {
            Some(up) => up,
            None => match responses.recv().await {
                Some(pending) => Next::Waiting(pending),
                None => break,
            },
        };
        let mut chunks = match up {
            Next::Answered(chunks) => chunks,
            Next::Waiting(pending) => match pending.await {
                Some(chunks) => chunks,
                None => return,
            },
            Next::Close => return,
        };
        next = gather(&mut chunks, &mut responses).await;
        match tokio::time::timeout(idle, write_frame(&mut writer, &chunks, use_sendfile)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "write failed");
                return;
            }
            Err(_) => {
                tracing::debug!(
                    "closing connection: a response went unread for connections.max.idle.ms"
                );
                return;
            }
        }
    }
    let _ = writer.shutdown().await;
}

/// Appends to `chunks` (a response held in memory) the responses after it that are already
/// answered and held in memory too, up to `GATHER_CHUNKS` chunks and at most as many
/// responses as the queue holds (each taken frees a place the reader may fill meanwhile, so
/// a connection has at most about twice `queued.max.requests` outstanding); returns the
/// first one it took but could not append, if any. Each is polled once: one not answered yet
/// is kept (its wake-up is this task's) for the writer to wait on next. That first poll may
/// do a response's own work (a fetch's reads and encoding) before the write instead of after
/// it.
async fn gather(
    chunks: &mut Vec<OutChunk>,
    responses: &mut mpsc::Receiver<PendingResponse>,
) -> Option<Next> {
    if !in_memory(chunks) {
        return None;
    }
    for _ in 0..responses.max_capacity() {
        if chunks.len() >= GATHER_CHUNKS {
            break;
        }
        let Ok(mut pending) = responses.try_recv() else {
            return None;
        };
        match std::future::poll_fn(|cx| Poll::Ready(pending.as_mut().poll(cx))).await {
            Poll::Pending => return Some(Next::Waiting(pending)),
            Poll::Ready(None) => return Some(Next::Close),
            Poll::Ready(Some(more)) if in_memory(&more) => chunks.extend(more),
            Poll::Ready(Some(more)) => return Some(Next::Answered(more)),
        }
    }
    None
}

fn in_memory(chunks: &[OutChunk]) -> bool {
    chunks.iter().all(|c| matches!(c, OutChunk::Bytes(_)))
}

/// Writes a frame. One held in memory goes out with vectored writes; one with file regions is
/// written from mappings of them (`map_out`, 64 KiB of regions or more) or copied out through a
/// bounded buffer (`copy_out`), or, with `use_sendfile`, written as runs of in-memory chunks and
/// file regions sent with `sendfile`.
async fn write_frame(
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    chunks: &[OutChunk],
    use_sendfile: bool,
) -> std::io::Result<()> {
    let has_file = chunks.iter().any(|c| matches!(c, OutChunk::File(_)));
    if has_file && !use_sendfile {
        if super::map_out::worth_mapping(chunks) {
            return super::map_out::write_frame_mapped(writer, chunks).await;
        }
        return super::copy_out::write_frame_copied(
            writer,
            chunks,
            super::copy_out::COPY_BUFFER_BYTES,
        )
        .await;
    }
    let mut run: Vec<bytes::Bytes> = Vec::new();
    for chunk in chunks {
        match chunk {
            OutChunk::Bytes(b) => run.push(b.clone()),
            OutChunk::File(region) => {
                write_chunks(writer, &run).await?;
                run.clear();
                super::send_file::send_file(writer.as_ref(), region).await?;
            }
        }
    }
    write_chunks(writer, &run).await
}

/// Writes a frame given as chunks with vectored writes, so large record chunks go to the socket
/// straight from where storage read or mapped them. Empty chunks are skipped.
pub(super) async fn write_chunks<C: AsRef<[u8]>>(
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    chunks: &[C],
) -> std::io::Result<()> {
    use std::io::IoSlice;
    /// Chunks per writev call (well below IOV_MAX).
    const MAX_SLICES: usize = 64;
    let mut index = 0usize;
    let mut offset = 0usize;
    loop {
        // Skip what is written (and empty chunks), so every writev has bytes to write.
        while chunks
            .get(index)
            .is_some_and(|c| c.as_ref().len() == offset)
        {
            index += 1;
            offset = 0;
        }
        if index >= chunks.len() {
            break;
        }
        let slices: Vec<IoSlice<'_>> = chunks
            .get(index..)
            .unwrap_or_default()
            .iter()
            .take(MAX_SLICES)
            .enumerate()
            .map(|(i, c)| {
                let c = c.as_ref();
                IoSlice::new(if i == 0 {
                    c.get(offset..).unwrap_or_default()
                } else {
                    c
                })
            })
            .collect();
        let mut written = writer.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let Some(chunk) = chunks.get(index) else {
                break;
            };
            let left = chunk.as_ref().len() - offset;
            if written >= left {
                written -= left;
                index += 1;
                offset = 0;
            } else {
                offset += written;
                written = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "response_writer_tests.rs"]
mod tests;
