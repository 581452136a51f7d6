//! Sending a response frame whose file regions are large from memory mappings of them: each
//! region is found in its segment file's kept mapping (`storage::RegionMap`, mapped once per
//! file and kept, see `storage::segment::log_file`) and the whole frame goes to the socket with
//! vectored writes, so the page cache is copied once, into the socket. The copy path
//! (`copy_out`) reads the regions into a buffer first, a second copy of every byte, and the
//! client waits for that read before the first byte leaves.
//!
//! Small regions are still copied out: a `pread` of a few kilobytes costs less than the page
//! faults of touching the mapping (the latency scenario's fetches are a hundred bytes).
//!
//! Mappings are bounded: storage keeps at most `storage::segment::log_file::MAX_KEPT_MAPPINGS`
//! and drops the least recently used beyond that; a dropped one lives on while a frame being
//! written holds it. Every file region is at least 32 KiB (`partition::replica`'s
//! `MIN_FILE_REGION_BYTES`; smaller answers are read into memory), so a frame holds at most one
//! mapping per 32 KiB it carries, and the frames being written hold at most
//! `MAX_MAPPED_REGIONS` regions at once (a frame to a client that stops reading keeps its hold
//! until the connection ends); a frame that would go past that budget, or one whose regions
//! cannot be mapped (`vm.max_map_count`, a file shorter than its region), is copied out
//! instead. Nothing has been written when that is decided.
//!
//! Invariant: as with the copy path, the whole frame is written or an error is returned and the
//! connection must close: a region past the end of its file fails to map and then to be copied
//! out; one cut below the region while mapped fails the write with EFAULT (see
//! `storage::log::region_map`). As with `pread` or `sendfile`, a file cut and written again
//! before the write reaches the page sends the new bytes; only follower truncation does that,
//! and a consumer never reads past the high watermark it truncates above.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use storage::RegionMap;
use tokio::net::tcp::OwnedWriteHalf;

use crate::handlers::OutChunk;

/// Frames whose file regions hold fewer bytes than this are copied out instead.
const MAP_MIN_BYTES: u64 = 64 * 1024;

/// The most regions held at once by frames being written, process-wide: with storage's kept
/// mappings, well below Linux's default `vm.max_map_count` (65,530), which the sealed
/// segments' mapped indexes, the allocator and thread stacks share.
const MAX_MAPPED_REGIONS: usize = 8192;

/// Regions held now by frames being written.
static MAPPED_REGIONS: AtomicUsize = AtomicUsize::new(0);

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

/// A share of a mapping budget (`MAPPED_REGIONS`, or a test's own), given back when dropped.
struct MappingBudget {
    held: &'static AtomicUsize,
    regions: usize,
}

impl MappingBudget {
    /// Takes `regions` from the budget `held` counts against `limit`, or `None` if that would
    /// exceed it.
    fn take(held: &'static AtomicUsize, limit: usize, regions: usize) -> Option<MappingBudget> {
        held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
            now.checked_add(regions).filter(|&total| total <= limit)
        })
        .ok()
        .map(|_| MappingBudget { held, regions })
    }
}

impl Drop for MappingBudget {
    fn drop(&mut self) {
        self.held.fetch_sub(self.regions, Ordering::AcqRel);
    }
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
            // SAFETY: a `Piece` lives only in this module, whose one use of these bytes is
            // `write_chunks`, which hands them to `writev` and reads none of them.
            Piece::Mapped(m) => unsafe { m.for_kernel() },
        }
    }
}

/// A frame's pieces with every file region mapped, and the share of the budget they hold, or
/// why they could not be mapped.
fn map_pieces(chunks: &[OutChunk]) -> Result<(Vec<Piece>, MappingBudget), String> {
    let regions = chunks
        .iter()
        .filter(|c| matches!(c, OutChunk::File(_)))
        .count();
    let budget = MappingBudget::take(&MAPPED_REGIONS, MAX_MAPPED_REGIONS, regions)
        .ok_or_else(|| format!("{MAX_MAPPED_REGIONS} regions mapped already"))?;
    let pieces = chunks
        .iter()
        .map(|c| match c {
            OutChunk::Bytes(b) => Ok(Piece::Bytes(b.clone())),
            OutChunk::File(r) => r.map().map(Piece::Mapped),
        })
        .collect::<Result<Vec<Piece>, _>>()
        .map_err(|e| e.to_string())?;
    Ok((pieces, budget))
}

/// Writes `chunks` (a whole frame) from mappings of its file regions, or copies it out if they
/// cannot be mapped (see the module comment).
pub async fn write_frame_mapped(
    writer: &mut OwnedWriteHalf,
    chunks: &[OutChunk],
) -> io::Result<()> {
    match map_pieces(chunks) {
        Ok((pieces, _budget)) => super::response_writer::write_chunks(writer, &pieces).await,
        Err(why) => {
            tracing::debug!(%why, "fetched regions not mapped; copying them out");
            super::copy_out::write_frame_copied(writer, chunks, super::copy_out::COPY_BUFFER_BYTES)
                .await
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::server::test_support::{file_chunk, writer_and_received};

    #[tokio::test]
    async fn a_frame_with_mapped_regions_arrives_whole_and_in_order_past_the_socket_buffer() {
        // 8 MiB in two regions at unaligned offsets: more than the socket buffers hold, so the
        // vectored writes meet EAGAIN and resume mid-piece.
        let data: Vec<u8> = (0..8u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
        let chunks = vec![
            OutChunk::Bytes(Bytes::from_static(b"head")),
            file_chunk(&data, 1001, 5 << 20),
            OutChunk::Bytes(Bytes::from_static(b"")),
            OutChunk::Bytes(Bytes::from_static(b"mid")),
            file_chunk(&data, 4095, 0),
            file_chunk(&data, 12_345, 3 << 20),
            OutChunk::Bytes(Bytes::from_static(b"tail")),
        ];
        assert!(worth_mapping(&chunks));
        // The frame is sent mapped, not through the copy path's fallback.
        let (pieces, _budget) = map_pieces(&chunks).unwrap();
        let mapped = pieces
            .iter()
            .filter(|p| matches!(p, Piece::Mapped(_)))
            .count();
        assert_eq!(mapped, 3);
        drop(pieces);
        let mut want = b"head".to_vec();
        want.extend_from_slice(&data[1001..1001 + (5 << 20)]);
        want.extend_from_slice(b"mid");
        want.extend_from_slice(&data[12_345..12_345 + (3 << 20)]);
        want.extend_from_slice(b"tail");
        let (mut writer, reader) = writer_and_received().await;
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
            file_chunk(&data, 50_000, 60_000),
        ];
        let (mut writer, reader) = writer_and_received().await;
        assert!(write_frame_mapped(&mut writer, &chunks).await.is_err());
        drop(writer);
        assert!(
            reader.await.unwrap().is_empty(),
            "nothing of the frame was sent"
        );
    }

    #[test]
    fn small_regions_are_copied_out_instead() {
        let data = vec![1u8; 100_000];
        let small = vec![
            file_chunk(&data, 0, MAP_MIN_BYTES / 2),
            file_chunk(&data, 0, MAP_MIN_BYTES / 2 - 1),
        ];
        assert!(!worth_mapping(&small));
        let enough = vec![
            file_chunk(&data, 0, MAP_MIN_BYTES / 2),
            OutChunk::Bytes(Bytes::from(vec![0u8; 100_000])),
            file_chunk(&data, 0, MAP_MIN_BYTES / 2),
        ];
        assert!(worth_mapping(&enough));
    }

    #[test]
    fn the_mapping_budget_is_taken_and_given_back() {
        static HELD: AtomicUsize = AtomicUsize::new(0);
        let most = MappingBudget::take(&HELD, 10, 7).unwrap();
        let three = MappingBudget::take(&HELD, 10, 3).unwrap();
        assert!(MappingBudget::take(&HELD, 10, 1).is_none(), "spent");
        assert_eq!(HELD.load(Ordering::Acquire), 10);
        drop(three);
        assert!(MappingBudget::take(&HELD, 10, 4).is_none(), "only 3 left");
        let again = MappingBudget::take(&HELD, 10, 3).unwrap();
        drop((most, again));
        assert_eq!(HELD.load(Ordering::Acquire), 0);
        assert!(
            MappingBudget::take(&HELD, 10, usize::MAX).is_none(),
            "no overflow"
        );
    }

    #[tokio::test]
    async fn chunk_lists_with_empty_chunks_anywhere_and_more_than_one_writev_arrive_whole() {
        let (mut writer, reader) = writer_and_received().await;
        // Only empty chunks: nothing to write, and no error.
        let empties = vec![Bytes::new(); 100];
        crate::server::response_writer::write_chunks(&mut writer, &empties)
            .await
            .unwrap();
        // 70 empty chunks first (more than one writev's 64), then 300 chunks, every 7th empty.
        let mut chunks = vec![Bytes::new(); 70];
        let mut want = Vec::new();
        for i in 0..300u32 {
            let c = if i % 7 == 0 {
                Bytes::new()
            } else {
                Bytes::from(vec![(i % 251) as u8; 1000 + i as usize * 37])
            };
            want.extend_from_slice(&c);
            chunks.push(c);
        }
        crate::server::response_writer::write_chunks(&mut writer, &chunks)
            .await
            .unwrap();
        drop(writer);
        assert_eq!(reader.await.unwrap(), want);
    }
}
