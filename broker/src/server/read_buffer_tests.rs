use super::*;
use bytes::BufMut;
use protocol_shim::FrameDecoder;

/// Frames of `sizes` bytes (prefix included in the stream, not in the size), each filled with
/// its own index so a frame read wrong is seen.
fn stream_of(sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        out.extend_from_slice(&u32::try_from(size).unwrap_or(0).to_be_bytes());
        out.extend(std::iter::repeat_n(
            u8::try_from(i % 251).unwrap_or(0),
            size,
        ));
    }
    out
}

/// What the connection's read loop does, over `stream` delivered at most `per_read` bytes per
/// read: returns the sizes of the frames taken (each checked against its fill as it is taken,
/// then dropped as a served request's frame is) and the bytes of frames moved inside the
/// buffer after the first `warm_up` frames. With `keep` every frame stays alive instead.
fn receive(stream: &[u8], per_read: usize, warm_up: usize, keep: bool) -> (Vec<usize>, usize) {
    let decoder = FrameDecoder::new(64 << 20);
    let mut buf = BytesMut::with_capacity(INITIAL_BUFFER_BYTES);
    let mut frames = Vec::new();
    let mut kept = Vec::new();
    let mut at = 0;
    let mut moved = 0;
    loop {
        while let Some(frame) = decoder.decode(&mut buf).ok().flatten() {
            let fill = u8::try_from(frames.len() % 251).unwrap_or(0);
            assert!(
                frame.iter().all(|&b| b == fill),
                "frame {} content",
                frames.len()
            );
            frames.push(frame.len());
            if keep {
                kept.push(frame);
            }
        }
        if at == stream.len() {
            return (frames, moved);
        }
        let needed = decoder.bytes_needed(&buf).unwrap_or(0);
        let (ptr, len) = (buf.as_ptr(), buf.len());
        let limit = prepare_read(&mut buf, needed);
        // A read of 0 bytes would be taken for the client closing.
        assert!(limit > 0, "a read limit of 0");
        if len > 0 && buf.as_ptr() != ptr && frames.len() >= warm_up {
            moved += len;
        }
        let n = per_read
            .min(limit)
            .min(buf.capacity() - buf.len())
            .min(stream.len() - at);
        buf.put_slice(&stream[at..at + n]);
        at += n;
    }
}

/// Produce requests of about 384 KiB whose sizes differ a little (as compressed batches sized
/// to a target do), sent back to back.
fn large_sizes() -> Vec<usize> {
    (0..64).map(|i| 393_216 + (i * 7_919) % 4_096).collect()
}

#[test]
fn large_frames_are_never_moved_once_the_buffer_has_grown() {
    let sizes = large_sizes();
    let stream = stream_of(&sizes);
    for per_read in [16 << 10, 200 << 10, 1 << 20, usize::MAX] {
        let (frames, moved) = receive(&stream, per_read, 2, false);
        assert_eq!(frames, sizes);
        assert_eq!(moved, 0, "bytes moved with reads of up to {per_read}");
    }
}

#[test]
fn small_pipelined_frames_are_taken_a_large_read_at_a_time() {
    let sizes = vec![100; 50];
    let stream = stream_of(&sizes);
    let decoder = FrameDecoder::new(1 << 20);
    let mut buf = BytesMut::with_capacity(INITIAL_BUFFER_BYTES);
    let needed = decoder.bytes_needed(&buf).unwrap_or(0);
    assert_eq!(
        prepare_read(&mut buf, needed),
        LARGE_FRAME_BYTES,
        "size unknown"
    );
    buf.put_slice(&stream[..10]);
    let needed = decoder.bytes_needed(&buf).unwrap_or(0);
    assert_eq!(
        prepare_read(&mut buf, needed),
        LARGE_FRAME_BYTES,
        "a small frame"
    );
    let (frames, _) = receive(&stream, usize::MAX, 0, false);
    assert_eq!(frames, sizes);
}

#[test]
fn a_large_frame_is_read_to_its_end_and_no_further() {
    let decoder = FrameDecoder::new(1 << 20);
    let mut buf = BytesMut::with_capacity(INITIAL_BUFFER_BYTES);
    buf.put_slice(&stream_of(&[100_000])[..5_000]);
    let needed = decoder.bytes_needed(&buf).unwrap_or(0);
    assert_eq!(needed, 100_004 - 5_000);
    assert_eq!(prepare_read(&mut buf, needed), needed);
    assert!(buf.capacity() - buf.len() >= needed, "room for the rest");
}

#[test]
fn frames_still_held_are_left_alone() {
    // Every frame kept alive: the buffer cannot start again at the front, and every frame
    // must still be read whole and right.
    let mut sizes = large_sizes();
    sizes.extend([10, 70_000, 3, 200_000, 1]);
    let stream = stream_of(&sizes);
    for per_read in [4 << 10, 100 << 10, usize::MAX] {
        let (frames, _) = receive(&stream, per_read, 0, true);
        assert_eq!(frames, sizes);
    }
}

#[test]
fn an_idle_connection_gives_back_a_large_empty_buffer_once() {
    let idle = Duration::from_secs(600);
    let mut large = BytesMut::with_capacity(1 << 20);
    // First wait: only until the shrink; then the rest of the idle limit.
    assert_eq!(read_wait(idle, Duration::ZERO, &large), IDLE_SHRINK_AFTER);
    shrink_idle_buffer(&mut large);
    assert!(large.capacity() <= IDLE_BUFFER_KEEP_BYTES);
    assert_eq!(
        read_wait(idle, IDLE_SHRINK_AFTER, &large),
        idle - IDLE_SHRINK_AFTER
    );
    // A small buffer waits out the whole limit at once (no extra wake-up).
    let small = BytesMut::with_capacity(INITIAL_BUFFER_BYTES);
    assert_eq!(read_wait(idle, Duration::ZERO, &small), idle);
    // An idle limit shorter than the shrink delay is kept.
    let short = Duration::from_millis(200);
    assert_eq!(
        read_wait(short, Duration::ZERO, &BytesMut::with_capacity(1 << 20)),
        short
    );
}

#[test]
fn a_partial_frame_is_never_dropped() {
    let mut buf = BytesMut::with_capacity(1 << 20);
    buf.extend_from_slice(&[0, 0, 0, 9, 1, 2]);
    assert_eq!(
        read_wait(Duration::from_secs(600), Duration::ZERO, &buf),
        Duration::from_secs(600)
    );
    shrink_idle_buffer(&mut buf);
    assert_eq!(&buf[..], &[0, 0, 0, 9, 1, 2]);
    assert!(buf.capacity() >= 1 << 20);
}
