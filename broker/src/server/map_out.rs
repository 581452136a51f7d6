//! Sending a response frame whose file regions are large from memory mappings of them: each
//! region is mapped (`storage::RegionMap`) and the whole frame goes to the socket with vectored
//! writes, so the page cache is copied once, into the socket. The copy path (`copy_out`) reads
//! the regions into a buffer first, a second copy of every byte, and the client waits for that
//! read before the first byte leaves.
//!
//! Small regions are still copied out: mapping and unmapping costs a few system calls and a TLB
//! flush, more than a `pread` of a few kilobytes (the latency scenario's fetches are a hundred
//! bytes).
//!
//! Invariant: as with the copy path, the whole frame is written or an error is returned and the
//! connection must close (a region past the end of its file fails to map and then to be copied
//! out; one truncated while mapped fails the write with EFAULT, see
//! `storage::log::region_map`). A region that cannot be mapped for another reason (no mappings
//! left) sends the frame through the copy path instead. Every file region is at least 32 KiB
//! (`partition::replica`'s `MIN_FILE_REGION_BYTES`; smaller answers are read into memory), so a
//! frame maps at most one region per 32 KiB it carries, and unmaps them once it is written.

use std::io;

use bytes::Bytes;
use storage::RegionMap;
use tokio::net::tcp::OwnedWriteHalf;

use crate::handlers::OutChunk;

/// Frames whose file regions hold fewer bytes than this are copied out instead.
const MAP_MIN_BYTES: u64 = 64 * 1024;

/// Whether `chunks` carry enough file bytes to be sent mapped.
pub fn worth_mapping(chunks: &[OutChunk]) -> bool {
    let file_bytes = chunks
        .iter()
        .map(|c| match c {
            OutChunk::File(r) => r.len,
            OutChunk::Bytes(_) => 0,
        })
        .fold(0u64, u64::saturating_add);
    file_bytes >= MAP_MIN_BYTES
}

/// A frame's piece: bytes held in memory, or a mapped region.
enum Piece {
    Bytes(Bytes),
    Mapped(RegionMap),
}

impl AsRef<[u8]> for Piece {
    fn as_ref(&self) -> &[u8] {
        match self {
            Piece::Bytes(b) => b,
            // Only handed to writev below.
            Piece::Mapped(m) => m.for_kernel(),
        }
    }
}

/// Writes `chunks` (a whole frame), mapping every file region. If a region cannot be mapped
/// (the process is out of mappings, `vm.max_map_count`, or the file is shorter than the region)
/// nothing has been written yet and the frame is copied out instead, which fails the same way
/// on a short file.
pub async fn write_frame_mapped(
    writer: &mut OwnedWriteHalf,
    chunks: &[OutChunk],
) -> io::Result<()> {
    let pieces = chunks
        .iter()
        .map(|c| match c {
            OutChunk::Bytes(b) => Ok(Piece::Bytes(b.clone())),
            OutChunk::File(r) => r.map().map(Piece::Mapped),
        })
        .collect::<Result<Vec<Piece>, _>>();
    match pieces {
        Ok(pieces) => super::connection::write_chunks(writer, &pieces).await,
        Err(e) => {
            tracing::debug!(error = %e, "cannot map a fetched region; copying it out");
            super::copy_out::write_frame_copied(writer, chunks, super::copy_out::COPY_BUFFER_BYTES)
                .await
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;

    use storage::FileRegion;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    fn file_region(data: &[u8], position: u64, len: u64) -> OutChunk {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        OutChunk::File(FileRegion {
            file: Arc::new(f),
            position,
            len,
        })
    }

    #[tokio::test]
    async fn a_frame_with_mapped_regions_arrives_whole_and_in_order_past_the_socket_buffer() {
        // 8 MiB in two regions at unaligned offsets: more than the socket buffers hold, so the
        // vectored writes meet EAGAIN and resume mid-piece.
        let data: Vec<u8> = (0..8u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
        let chunks = vec![
            OutChunk::Bytes(Bytes::from_static(b"head")),
            file_region(&data, 1001, 5 << 20),
            OutChunk::Bytes(Bytes::from_static(b"")),
            OutChunk::Bytes(Bytes::from_static(b"mid")),
            file_region(&data, 4095, 0),
            file_region(&data, 12_345, 3 << 20),
            OutChunk::Bytes(Bytes::from_static(b"tail")),
        ];
        assert!(worth_mapping(&chunks));
        let mut want = b"head".to_vec();
        want.extend_from_slice(&data[1001..1001 + (5 << 20)]);
        want.extend_from_slice(b"mid");
        want.extend_from_slice(&data[12_345..12_345 + (3 << 20)]);
        want.extend_from_slice(b"tail");
        let (server, mut client) = pair().await;
        let (_, mut writer) = server.into_split();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        write_frame_mapped(&mut writer, &chunks).await.unwrap();
        drop(writer);
        assert_eq!(reader.await.unwrap(), want);
    }

    #[tokio::test]
    async fn a_region_past_the_end_of_its_file_fails_before_anything_is_written() {
        // It cannot be mapped, and copying it out then finds the file short before a write.
        let data = vec![1u8; 100_000];
        let chunks = vec![
            OutChunk::Bytes(Bytes::from_static(b"head")),
            file_region(&data, 50_000, 60_000),
        ];
        let (server, mut client) = pair().await;
        let (_, mut writer) = server.into_split();
        assert!(write_frame_mapped(&mut writer, &chunks).await.is_err());
        drop(writer);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty(), "nothing of the frame was sent");
    }

    #[test]
    fn small_regions_are_copied_out_instead() {
        let data = vec![1u8; 100_000];
        let small = vec![
            file_region(&data, 0, MAP_MIN_BYTES / 2),
            file_region(&data, 0, MAP_MIN_BYTES / 2 - 1),
        ];
        assert!(!worth_mapping(&small));
        let enough = vec![
            file_region(&data, 0, MAP_MIN_BYTES / 2),
            OutChunk::Bytes(Bytes::from(vec![0u8; 100_000])),
            file_region(&data, 0, MAP_MIN_BYTES / 2),
        ];
        assert!(worth_mapping(&enough));
    }
}
