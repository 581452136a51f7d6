//! A connection's read buffer: how much room to make before each read, how much that read
//! may take, and when an idle connection gives a large buffer back.
//!
//! Requests are received straight into the place they are decoded from and, for a produce,
//! appended from; a large request should not be copied inside the buffer on the way. Three
//! rules keep it so. A read takes at most `LARGE_FRAME_BYTES` unless it is reading the rest of
//! a large frame whose size is known, and then it stops at that frame's end, so the buffer is
//! empty once a large frame is taken and holds at most that much of the next one. An empty
//! buffer starts again at the front of its allocation (free when no earlier frame still holds
//! a slice of it). So once the buffer has grown to the largest frame, a large frame fits where
//! its first bytes were read, and the bytes already read are never moved to make room.

use std::time::Duration;

use bytes::BytesMut;

/// Most buffer space reserved ahead of the bytes received: the buffer grows with what arrives,
/// never by the announced frame size, so a client that announces a large frame and sends
/// nothing cannot make us allocate it.
const READ_AHEAD_MAX_BYTES: usize = 1 << 20;
/// The least room made before a read.
const READ_MIN_BYTES: usize = 4096;
/// The read buffer a connection starts with.
pub(super) const INITIAL_BUFFER_BYTES: usize = 8 * 1024;
/// The most a read takes while no large frame's size is known (pipelined small requests still
/// come in one read); frames of at least this size are read up to their end and no further.
const LARGE_FRAME_BYTES: usize = 64 * 1024;
/// A busy connection keeps and reuses its read buffer however large requests made it; one
/// idle for `IDLE_SHRINK_AFTER` with nothing buffered trades a buffer larger than this for a
/// fresh small one, so idle connections do not each hold a megabyte.
const IDLE_BUFFER_KEEP_BYTES: usize = 64 * 1024;
const IDLE_SHRINK_AFTER: Duration = Duration::from_secs(1);

/// Makes room in `buf` for the next read, given that the frame at its front needs `needed`
/// more bytes (`FrameDecoder::bytes_needed`), and returns how many bytes that read may take.
pub(super) fn prepare_read(buf: &mut BytesMut, needed: usize) -> usize {
    if buf.is_empty() {
        // Back to the front of the allocation; copies nothing, and does nothing while an
        // earlier frame still holds part of it.
        let _ = buf.try_reclaim(buf.capacity().saturating_add(1));
    }
    buf.reserve(needed.clamp(READ_MIN_BYTES, READ_AHEAD_MAX_BYTES));
    let size_known = buf.len() >= 4;
    if size_known && buf.len().saturating_add(needed) >= LARGE_FRAME_BYTES {
        // Never 0: a read of nothing would look like the client closing.
        needed.max(1)
    } else {
        LARGE_FRAME_BYTES
    }
}

/// How long to wait for the next bytes, having waited `idle_for` of the `idle` limit: at first
/// only until a large, empty buffer should be given back.
pub(super) fn read_wait(idle: Duration, idle_for: Duration, buf: &BytesMut) -> Duration {
    let left = idle.saturating_sub(idle_for);
    if idle_for.is_zero() && buf.is_empty() && buf.capacity() > IDLE_BUFFER_KEEP_BYTES {
        left.min(IDLE_SHRINK_AFTER)
    } else {
        left
    }
}

/// Replaces an empty read buffer larger than `IDLE_BUFFER_KEEP_BYTES` by a small one.
pub(super) fn shrink_idle_buffer(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > IDLE_BUFFER_KEEP_BYTES {
        *buf = BytesMut::with_capacity(INITIAL_BUFFER_BYTES);
    }
}

#[cfg(test)]
#[path = "read_buffer_tests.rs"]
mod tests;
