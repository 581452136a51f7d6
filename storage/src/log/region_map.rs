//! A file region mapped into memory for the kernel to send from (`write`/`writev` on a socket):
//! the page cache is copied once, into the socket, instead of into a buffer and from there into
//! the socket. The mapped bytes are for handing to system calls only; nothing in user space
//! reads them.
//!
//! Why that is safe even if the file shrinks under the mapping (a log truncated while a fetch
//! answer is being written): touching a mapped page past the end of the file raises SIGBUS only
//! when user code touches it. When the kernel copies from such a page inside a system call, the
//! fault is handled as a bad user address and the call returns `EFAULT` (or writes less), which
//! the sender treats like any failed write: the connection closes, as with a short `pread`. If
//! the file is cut and then written again before the kernel reaches the page, the new bytes are
//! sent, as `pread` or `sendfile` would send them. Only follower truncation cuts a log file in
//! place (a log restarted at an offset replaces its file, `Segment::create`). The same holds
//! for the part of a kept mapping past the end of its file (`segment::log_file`): a region is
//! inside the file when it is mapped, and the mapping's pages read the file as it is when the
//! kernel touches them.

use std::sync::Arc;

use memmap2::Mmap;

use crate::error::StorageError;
use crate::log::FileRegion;

/// Exactly one `FileRegion`'s bytes in a read-only mapping of its file (the file's kept
/// mapping, `segment::log_file`; nothing for an empty region).
#[derive(Debug)]
pub struct RegionMap {
    map: Option<Arc<Mmap>>,
    start: usize,
    len: usize,
}

impl RegionMap {
    /// The region's bytes, to pass to a system call that copies them (a socket write).
    ///
    /// # Safety
    /// The caller must not read the bytes in user space (nor let other code do so): if the file
    /// was cut below the region meanwhile, that raises SIGBUS, and if it was written again the
    /// bytes change under the slice. Handing them to the kernel is fine (see the module comment).
    pub unsafe fn for_kernel(&self) -> &[u8] {
        let end = self.start.saturating_add(self.len);
        self.map
            .as_deref()
            .and_then(|m| m.get(self.start..end))
            .unwrap_or_default()
    }
}

impl FileRegion {
    /// The region in its file's kept mapping (made if the file has none long enough); an error
    /// if the file is already shorter than the region.
    pub fn map(&self) -> Result<RegionMap, StorageError> {
        if self.len == 0 {
            return Ok(RegionMap {
                map: None,
                start: 0,
                len: 0,
            });
        }
        let too_large = || StorageError::corrupt("region too large to map");
        let len = usize::try_from(self.len).map_err(|_| too_large())?;
        let start = usize::try_from(self.position).map_err(|_| too_large())?;
        let end = self.position.checked_add(self.len);
        let file_len = self.file.metadata()?.len();
        let Some(end) = end.filter(|&end| end <= file_len) else {
            return Err(StorageError::corrupt(
                "file region runs past the end of its file",
            ));
        };
        // SAFETY: the mapping's bytes are only handed to the kernel: `RegionMap::for_kernel`'s
        // callers promise that (see the module comment).
        let map = unsafe { self.file.mapping_covering(end)? };
        self.file.note_sent(self.len);
        Ok(RegionMap {
            map: Some(map),
            start,
            len,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::log::tests::batch;
    use crate::log::{Log, StoredRecords};
    use crate::LogConfig;
    use std::io::Write;
    use std::sync::Arc;

    fn region_of(data: &[u8], position: u64, len: u64) -> (tempfile::NamedTempFile, FileRegion) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(data).unwrap();
        let file = Arc::new(crate::LogFile::new(f.reopen().unwrap()));
        (
            f,
            FileRegion {
                file,
                position,
                len,
            },
        )
    }

    #[test]
    fn a_mapped_region_holds_exactly_the_regions_bytes_at_any_offset() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        for (position, len) in [
            (0u64, 20_000u64),
            (1, 4095),
            (4095, 2),
            (4096, 8192),
            (12_345, 7_655),
            (19_999, 1),
            (7, 0),
        ] {
            let (_f, region) = region_of(&data, position, len);
            let map = region.map().unwrap();
            let (p, l) = (position as usize, len as usize);
            // SAFETY: the file is not cut while the test reads the mapping.
            assert_eq!(
                unsafe { map.for_kernel() },
                &data[p..p + l],
                "region {position}+{len}"
            );
        }
    }

    #[test]
    fn a_region_past_the_end_of_its_file_is_an_error() {
        let data = vec![3u8; 1000];
        for (position, len) in [(0u64, 1001u64), (1000, 1), (u64::MAX, 2)] {
            let (_f, region) = region_of(&data, position, len);
            assert!(region.map().is_err(), "region {position}+{len}");
        }
    }

    /// The case the module comment argues: the file cut below a live mapping. Sending the
    /// mapped bytes then fails (EFAULT) instead of killing the process with SIGBUS.
    #[test]
    fn sending_a_mapping_whose_file_was_truncated_fails_without_a_signal() {
        use std::os::unix::net::UnixStream;
        let data = vec![9u8; 64 * 1024];
        let (_f, region) = region_of(&data, 0, data.len() as u64);
        let map = region.map().unwrap();
        region.file.set_len(0).unwrap();
        let (mut tx, _rx) = UnixStream::pair().unwrap();
        tx.set_nonblocking(true).unwrap();
        // SAFETY: the bytes go to the kernel only.
        let sent = tx.write(unsafe { map.for_kernel() });
        let err = sent.unwrap_err(); // the truncated pages cannot be sent
        assert_eq!(err.raw_os_error(), Some(libc::EFAULT), "{err}");
    }

    /// A log of `batches` batches of 3 records, in a temporary directory.
    fn log_of_batches(batches: i64) -> (tempfile::TempDir, Log) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        for i in 0..batches {
            log.append(&batch(3, i), 0, 0).unwrap();
        }
        (dir, log)
    }

    /// The records of `log` from `offset`, which must be a file region.
    fn region_from(log: &Log, offset: i64) -> FileRegion {
        match log
            .read_region(offset, i64::MAX, usize::MAX, true)
            .unwrap()
            .records
        {
            StoredRecords::File(region) => region,
            StoredRecords::Bytes(_) => panic!("a file region"),
        }
    }

    /// A log emptied and restarted at the base offset of a segment it had (truncation below
    /// the log start) replaces that segment's file by a new one instead of cutting it in place,
    /// so a fetch answer still holding a region of it sends the bytes it was given.
    #[test]
    fn a_log_restarted_at_a_segments_base_offset_leaves_a_held_region_intact() {
        let (_dir, mut log) = log_of_batches(5);
        let region = region_from(&log, 0);
        let before = region.read_to_bytes().unwrap();
        log.set_log_start_offset(6).unwrap();
        log.truncate_to(0).unwrap(); // below the log start: emptied, restarted at 0
        assert_eq!(log.log_end_offset(), 0);
        log.append(&batch(2, 9), 0, 0).unwrap();
        assert_eq!(region.read_to_bytes().unwrap(), before);
        let map = region.map().unwrap();
        // SAFETY: the region's file (replaced, not cut) is not cut while the test reads it.
        assert_eq!(unsafe { map.for_kernel() }, &before[..]);
    }

    /// Fetches from one segment find its kept mapping; a follower truncation, which cuts the
    /// file in place, drops it, and the next fetch maps the file again and sends the new bytes.
    #[test]
    fn regions_of_a_segment_share_its_mapping_until_the_file_is_cut_in_place() {
        let (_dir, mut log) = log_of_batches(6);
        let (all, tail) = (region_from(&log, 0), region_from(&log, 9));
        let (all_map, tail_map) = (all.map().unwrap(), tail.map().unwrap());
        let mapping = |m: &RegionMap| Arc::clone(m.map.as_ref().unwrap());
        assert!(Arc::ptr_eq(&mapping(&all_map), &mapping(&tail_map)));
        // SAFETY: nothing cuts the file while the test reads these.
        unsafe {
            assert_eq!(all_map.for_kernel(), &all.read_to_bytes().unwrap()[..]);
            assert_eq!(tail_map.for_kernel(), &tail.read_to_bytes().unwrap()[..]);
        }
        let before = mapping(&all_map);
        drop((all_map, tail_map));
        log.truncate_to(9).unwrap(); // the last three batches go, in place
        log.append(&batch(1, 42), 0, 0).unwrap();
        let again = region_from(&log, 9);
        assert!(
            Arc::ptr_eq(&again.file, &tail.file),
            "the same file, cut in place"
        );
        let again_map = again.map().unwrap();
        assert!(!Arc::ptr_eq(&before, &mapping(&again_map)), "mapped anew");
        // SAFETY: as above.
        let sent = unsafe { again_map.for_kernel().to_vec() };
        assert_eq!(sent, &again.read_to_bytes().unwrap()[..]);
        assert_eq!(crate::log::tests::batch_offsets(&sent), vec![(9, 9)]);
    }
}
