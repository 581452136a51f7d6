//! Sending a response frame that holds file regions through one bounded buffer: in-memory
//! chunks are copied in, file regions are read into it with `pread`, and the buffer goes to
//! the socket with plain writes of up to `COPY_BUFFER_BYTES` (4 MiB) each (an in-memory chunk
//! at least that large is written as it is, without a copy). How fetch answers with less than
//! 64 KiB of file data leave the broker (larger ones are sent from mappings, `map_out`);
//! `sendfile` (`send_file`) is the alternative for all, chosen with the `sluice.fetch.sendfile`
//! setting.
//!
//! Why not `sendfile` by default (measured against this copy path, before `map_out`, which
//! costs less still): on the benchmark machine (loopback, Linux 6.18) `sendfile`
//! of page-cache pages cost the broker 0.75-0.94 CPU-s per GB read by a lean consumer and
//! that consumer 0.38-0.58 (mostly the kernel's receive copy), against 0.53-0.61 and
//! 0.27-0.31 copied out through a 4 MiB buffer, at 0.8-1.1 against 1.3-1.5 GB/s (paired
//! runs; docs/performance.md, "Consume, again"). A spliced page-cache page travels as its own
//! 4 KiB fragment; written bytes travel in large ones, which both ends handle faster.
//!
//! Invariant: as with `sendfile`, the whole frame is written or an error is returned and the
//! connection must close (a file region that became shorter than it was read is an error).
//! At most `COPY_BUFFER_BYTES` (or the frame's size, if smaller) is allocated per frame.

use std::io;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;

use crate::handlers::OutChunk;

/// The buffer a frame is gathered in, and so the largest gathered write: 4 MiB (the frames
/// copied out are those under 64 KiB of records, and large ones `map_out` could not map; for
/// those, 1 MiB pieces cost the broker about 10 % more per byte than 4 MiB on the benchmark
/// machine). It is freed when the frame is written.
pub const COPY_BUFFER_BYTES: usize = 4 << 20;

/// Writes `chunks` (a whole frame) through one buffer of at most `buffer_bytes`.
pub async fn write_frame_copied(
    writer: &mut OwnedWriteHalf,
    chunks: &[OutChunk],
    buffer_bytes: usize,
) -> io::Result<()> {
    let mut out = FrameGather::new(chunks, buffer_bytes);
    while let Some(piece) = out.next_piece()? {
        writer.write_all(piece).await?;
    }
    Ok(())
}

/// Cuts a frame into the pieces to write: the buffer filled from the chunks in order, or a
/// large in-memory chunk on its own (it needs no copy).
struct FrameGather<'a> {
    chunks: &'a [OutChunk],
    /// The chunk being taken, and how many of its bytes are taken already.
    index: usize,
    taken: u64,
    buf: Vec<u8>,
    capacity: usize,
    /// A large in-memory chunk to hand out after the buffer was flushed.
    direct: Option<&'a [u8]>,
}

impl<'a> FrameGather<'a> {
    fn new(chunks: &'a [OutChunk], buffer_bytes: usize) -> Self {
        let total = chunks
            .iter()
            .map(|c| match c {
                OutChunk::Bytes(b) => b.len() as u64,
                OutChunk::File(r) => r.len,
            })
            .fold(0u64, u64::saturating_add);
        let capacity = usize::try_from(total)
            .unwrap_or(usize::MAX)
            .clamp(1, buffer_bytes.max(1));
        Self {
            chunks,
            index: 0,
            taken: 0,
            buf: Vec::with_capacity(capacity),
            capacity,
            direct: None,
        }
    }

    /// The next bytes to write, `None` when the frame is done. The buffer is emptied before it
    /// is filled again, so a piece is valid until the next call.
    fn next_piece(&mut self) -> io::Result<Option<&[u8]>> {
        if let Some(direct) = self.direct.take() {
            return Ok(Some(direct));
        }
        self.buf.clear();
        while let Some(chunk) = self.chunks.get(self.index) {
            let room = self.capacity - self.buf.len();
            match chunk {
                OutChunk::Bytes(b) => {
                    if b.len() >= self.capacity {
                        // Too large to be worth copying: flush what is gathered, then it.
                        self.index += 1;
                        if self.buf.is_empty() {
                            return Ok(Some(b.as_ref()));
                        }
                        self.direct = Some(b.as_ref());
                        break;
                    }
                    if b.len() > room {
                        break;
                    }
                    self.buf.extend_from_slice(b);
                    self.index += 1;
                }
                OutChunk::File(region) => {
                    let left = region.len - self.taken;
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(room);
                    if n > 0 {
                        region
                            .read_part_into(&mut self.buf, self.taken, n)
                            .map_err(io::Error::other)?;
                        self.taken += n as u64;
                    }
                    if self.taken == region.len {
                        self.index += 1;
                        self.taken = 0;
                    } else {
                        break; // the buffer is full
                    }
                }
            }
            if self.buf.len() == self.capacity {
                break;
            }
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        Ok(Some(&self.buf))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::server::test_support::file_chunk;

    use bytes::Bytes;

    fn gather(chunks: &[OutChunk], buffer_bytes: usize) -> io::Result<Vec<Vec<u8>>> {
        let mut g = FrameGather::new(chunks, buffer_bytes);
        let mut pieces = Vec::new();
        while let Some(p) = g.next_piece()? {
            assert!(!p.is_empty());
            pieces.push(p.to_vec());
        }
        Ok(pieces)
    }

    #[test]
    fn a_frame_comes_out_whole_and_in_order_in_pieces_no_larger_than_the_buffer() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let file1 = file_chunk(&data, 100, 3000);
        let file2 = file_chunk(&data, 0, 5000);
        let chunks = vec![
            OutChunk::Bytes(Bytes::from_static(b"head")),
            file1,
            OutChunk::Bytes(Bytes::from_static(b"mid")),
            OutChunk::Bytes(Bytes::from(vec![7u8; 2500])),
            file2,
            OutChunk::Bytes(Bytes::from_static(b"")),
            OutChunk::Bytes(Bytes::from_static(b"tail")),
        ];
        let mut want = b"head".to_vec();
        want.extend_from_slice(&data[100..3100]);
        want.extend_from_slice(b"mid");
        want.extend_from_slice(&[7u8; 2500]);
        want.extend_from_slice(&data);
        want.extend_from_slice(b"tail");
        for buffer in [1usize, 2, 1000, 2499, 2500, 4096, 1 << 20] {
            let pieces = gather(&chunks, buffer).unwrap();
            assert_eq!(pieces.concat(), want, "buffer {buffer}");
            // No gathered piece is larger than the buffer (a piece ends early when the next
            // in-memory chunk does not fit); only a chunk of at least the buffer's size goes
            // out larger, on its own.
            for p in &pieces {
                assert!(
                    p.len() <= buffer.max(2500),
                    "buffer {buffer}: piece {}",
                    p.len()
                );
            }
        }
        // A buffer larger than the frame: one write of exactly the frame.
        let pieces = gather(&chunks, 1 << 20).unwrap();
        assert_eq!(pieces.len(), 1);
    }

    #[test]
    fn empty_regions_and_a_region_the_size_of_the_buffer_come_out_exactly() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 253) as u8).collect();
        let empty = file_chunk(&data, 10, 0);
        let full = file_chunk(&data, 0, 4096);
        let empty_too = file_chunk(&data, 4096, 0);
        let chunks = vec![empty, full, empty_too];
        for buffer in [1usize, 4095, 4096, 4097] {
            let pieces = gather(&chunks, buffer).unwrap();
            assert_eq!(pieces.concat(), data, "buffer {buffer}");
            assert!(pieces.iter().all(|p| p.len() <= buffer), "buffer {buffer}");
        }
        assert_eq!(gather(&chunks, 4096).unwrap().len(), 1);
        // A frame of nothing but empty regions writes nothing.
        let e1 = file_chunk(&data, 0, 0);
        assert!(gather(&[e1], 4096).unwrap().is_empty());
    }

    #[test]
    fn a_file_shorter_than_its_region_is_an_error_not_a_short_frame() {
        let data = vec![1u8; 1000];
        let file = file_chunk(&data, 0, 2000);
        let chunks = vec![OutChunk::Bytes(Bytes::from_static(b"head")), file];
        let mut g = FrameGather::new(&chunks, 4096);
        assert!(g.next_piece().is_err());
    }
}
