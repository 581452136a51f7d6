//! Positional file I/O that `std` lacks on stable: one vectored positional write (a restamped
//! batch header plus the untouched rest of the producer's bytes, in a single `pwritev`), and a
//! positional read straight into a `Vec`'s spare capacity (no zero-fill of a buffer the kernel
//! overwrites anyway), plus `WindowReader`, which serves sequential header scans and CRC checks
//! from one reused buffer filled by large reads instead of a syscall per batch header.
//!
//! `preallocate` extends a file with allocated (reading as zeros) space, so that later appends
//! inside it change no file size and an fdatasync after them need not commit the inode.
//!
//! Invariants: `write_all_vectored_at` either writes every byte or returns an error (short writes
//! are continued, EINTR is retried); `read_exact_at_into` appends exactly `len` bytes or returns
//! an error and leaves the vector's length unchanged.

use std::fs::File;
use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;
#[cfg(not(target_os = "linux"))]
use std::os::unix::fs::FileExt;

use crate::error::StorageError;

/// Writes `head` then `tail` at `offset` with one `pwritev` (more only on short writes).
#[cfg(target_os = "linux")]
pub(crate) fn write_all_vectored_at(
    file: &File,
    mut head: &[u8],
    mut tail: &[u8],
    mut offset: u64,
) -> io::Result<()> {
    while !head.is_empty() || !tail.is_empty() {
        let position = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
        let iov = [
            libc::iovec {
                iov_base: head.as_ptr().cast_mut().cast(),
                iov_len: head.len(),
            },
            libc::iovec {
                iov_base: tail.as_ptr().cast_mut().cast(),
                iov_len: tail.len(),
            },
        ];
        // SAFETY: both iovecs describe live, initialized slices borrowed for the whole call, and
        // pwritev only reads from them (the `cast_mut` is required by the C signature); the fd is
        // owned by `file`, which outlives the call.
        let written = unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), 2, position) };
        let Ok(mut written) = usize::try_from(written) else {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        offset += written as u64;
        let from_head = written.min(head.len());
        head = head.get(from_head..).unwrap_or_default();
        written -= from_head;
        tail = tail.get(written..).unwrap_or_default();
    }
    Ok(())
}

/// Extends `file` to `offset + len` bytes with allocated space (`fallocate` mode 0, never
/// glibc's zero-writing emulation): an error where the filesystem cannot (or the disk is full).
#[cfg(target_os = "linux")]
pub(crate) fn preallocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let too_large = || io::Error::new(io::ErrorKind::InvalidInput, "file offset too large");
    let offset = libc::off_t::try_from(offset).map_err(|_| too_large())?;
    let len = libc::off_t::try_from(len).map_err(|_| too_large())?;
    loop {
        // SAFETY: plain syscall on a file descriptor owned by `file`, which outlives the call.
        let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, offset, len) };
        if r == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Not available here: appends simply grow the file.
#[cfg(not(target_os = "linux"))]
pub(crate) fn preallocate(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Portable fallback: two positional writes.
#[cfg(not(target_os = "linux"))]
pub(crate) fn write_all_vectored_at(
    file: &File,
    head: &[u8],
    tail: &[u8],
    offset: u64,
) -> io::Result<()> {
    file.write_all_at(head, offset)?;
    file.write_all_at(tail, offset + head.len() as u64)
}

/// Appends exactly `len` bytes read at `offset` to `buf`, reading into its spare capacity.
pub(crate) fn read_exact_at_into(
    file: &File,
    buf: &mut Vec<u8>,
    len: usize,
    offset: u64,
) -> io::Result<()> {
    buf.reserve_exact(len);
    let old_len = buf.len();
    let mut done = 0usize;
    while done < len {
        let spare = buf.spare_capacity_mut();
        let Some(target) = spare.get_mut(..len - done) else {
            buf.truncate(old_len);
            return Err(io::Error::other("buffer reservation failed"));
        };
        let position = offset + done as u64;
        let read = match read_at_uninit(file, target, position) {
            Ok(0) => {
                buf.truncate(old_len);
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                buf.truncate(old_len);
                return Err(e);
            }
        };
        // SAFETY: `read_at_uninit` initialized the first `read` bytes of the spare capacity
        // (read <= target.len() <= spare capacity), so the new length covers initialized bytes.
        unsafe { buf.set_len(buf.len() + read) };
        done += read;
    }
    Ok(())
}

/// One `pread` into possibly uninitialized memory; returns how many bytes were written to it.
fn read_at_uninit(
    file: &File,
    target: &mut [std::mem::MaybeUninit<u8>],
    offset: u64,
) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    {
        let position = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
        // SAFETY: `target` is a live, exclusively borrowed region of `target.len()` bytes; pread
        // writes at most that many bytes into it and never reads it, so it may be uninitialized.
        let read = unsafe {
            libc::pread(
                file.as_raw_fd(),
                target.as_mut_ptr().cast(),
                target.len(),
                position,
            )
        };
        usize::try_from(read).map_err(|_| io::Error::last_os_error())
    }
    #[cfg(not(target_os = "linux"))]
    {
        // Portable path: zero the region first, then read into it as an ordinary slice.
        for byte in target.iter_mut() {
            byte.write(0);
        }
        // SAFETY: every byte was just initialized above.
        let slice = unsafe { &mut *(target as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
        file.read_at(slice, offset)
    }
}

#[cfg(test)]
thread_local! {
    /// Bytes every `WindowReader` of this thread has read, for tests of how much a read that
    /// scans internally (`Log::read_region`) reads; each test runs on its own thread.
    pub(crate) static BYTES_READ_ON_THIS_THREAD: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Sequential reads of one file through a reused window buffer: `get` returns a slice of the
/// window when it holds the range, else refills the window with one read starting at the range.
pub(crate) struct WindowReader<'a> {
    file: &'a File,
    /// Bytes at or past this file position are never read (the segment's valid size).
    limit: u64,
    /// File position of `window[0]`.
    window_start: u64,
    window: Vec<u8>,
    /// Reads made and bytes they read, for tests of how much a scan reads.
    #[cfg(test)]
    pub(crate) reads: (usize, u64),
}

impl<'a> WindowReader<'a> {
    pub(crate) fn new(file: &'a File, limit: u64) -> WindowReader<'a> {
        WindowReader {
            file,
            limit,
            window_start: 0,
            window: Vec::new(),
            #[cfg(test)]
            reads: (0, 0),
        }
    }

    /// `len` bytes at `position` if the last read already holds them (no read).
    pub(crate) fn buffered(&self, position: u64, len: usize) -> Option<&[u8]> {
        let from = usize::try_from(position.checked_sub(self.window_start)?).ok()?;
        self.window.get(from..from.checked_add(len)?)
    }

    /// `len` bytes at `position`; a miss reads `max(len, read_ahead)` bytes (capped at the limit).
    pub(crate) fn get(
        &mut self,
        position: u64,
        len: usize,
        read_ahead: usize,
    ) -> Result<&[u8], StorageError> {
        let end = position
            .checked_add(len as u64)
            .filter(|end| *end <= self.limit)
            .ok_or_else(|| StorageError::corrupt("read past the end of the segment"))?;
        let window_end = self.window_start + self.window.len() as u64;
        if position < self.window_start || end > window_end {
            let available = usize::try_from(self.limit - position).unwrap_or(usize::MAX);
            let want = len.max(read_ahead).min(available);
            self.window.clear();
            read_exact_at_into(self.file, &mut self.window, want, position)?;
            self.window_start = position;
            #[cfg(test)]
            {
                self.reads.0 += 1;
                self.reads.1 += want as u64;
                BYTES_READ_ON_THIS_THREAD.with(|n| n.set(n.get() + want as u64));
            }
        }
        let from = usize::try_from(position - self.window_start).unwrap_or(usize::MAX);
        self.window
            .get(from..from.saturating_add(len))
            .ok_or_else(|| StorageError::corrupt("read past the end of the segment"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn vectored_write_and_spare_capacity_read_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        let head: Vec<u8> = (0..61u8).collect();
        let tail: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        write_all_vectored_at(&file, &head, &tail, 7).unwrap();
        write_all_vectored_at(&file, &[], &[1, 2, 3], 0).unwrap();
        let mut buf = vec![9u8];
        read_exact_at_into(&file, &mut buf, 61 + tail.len(), 7).unwrap();
        assert_eq!(buf[0], 9);
        assert_eq!(&buf[1..62], &head[..]);
        assert_eq!(&buf[62..], &tail[..]);
        let mut start = Vec::new();
        read_exact_at_into(&file, &mut start, 3, 0).unwrap();
        assert_eq!(start, [1, 2, 3]);
        // Past the end: an error, and the vector is unchanged.
        let mut short = vec![5u8];
        assert!(read_exact_at_into(&file, &mut short, 10, 100_060).is_err());
        assert_eq!(short, [5]);
    }

    #[test]
    fn window_reader_serves_hits_and_refills_misses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let mut reader = WindowReader::new(&file, 9_000);
        assert_eq!(reader.get(0, 10, 4096).unwrap(), &data[..10]);
        assert_eq!(reader.get(4000, 96, 4096).unwrap(), &data[4000..4096]);
        assert_eq!(reader.get(4090, 100, 64).unwrap(), &data[4090..4190]);
        assert_eq!(reader.get(100, 5, 0).unwrap(), &data[100..105]);
        assert_eq!(reader.get(8990, 10, 4096).unwrap(), &data[8990..9000]);
        assert!(reader.get(8995, 10, 0).is_err(), "past the limit");
    }
}
