//! A segment's `.log` file as the log and the holders of its regions share it: the open file,
//! and one read-only mapping of it kept for sending fetched regions (`FileRegion::map`), so a
//! fetch does not map and unmap (a few system calls and a TLB shootdown) what the last one
//! mapped already.
//!
//! The kept mapping starts at the file's first byte and runs past its end, rounded up to
//! `MAP_STEP_BYTES` (mapping past the end of a file is allowed; the pages there read what the
//! file holds when they are touched), so the active segment is remapped only once per step it
//! grows. Its bytes are only ever handed to the kernel (see `log::region_map`).
//!
//! Kept mappings are bounded process-wide (`KeptMappings`): at most `MAX_KEPT_MAPPINGS` files
//! keep one, and keeping one more drops the mapping of the file used least recently. A dropped
//! or replaced mapping lives on only while a frame being written still holds it. A file's
//! mapping goes with the file (its segment deleted or replaced) and when the file is cut in
//! place (`forget_mapping`, follower truncation).
//!
//! So are the pages they hold: every page the kernel sends from a mapping stays mapped (and
//! counted in the process's RSS as a file page) until it is let go, so once the kept mappings
//! have sent `MAX_SENT_BYTES_HELD` since the last time, the pages of every file that sent
//! anything are let go together (`MADV_DONTNEED`, which on a shared file mapping only unmaps
//! them: the page cache keeps them, and a later send maps them again). One such call per file
//! per 64 MiB served instead of a `munmap` per answer.
//!
//! Lock order: the registry (`KeptMappings::files`) before any file's `kept`; a file's `kept`
//! is never held while taking the registry.

use std::fs::File;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use memmap2::{Mmap, MmapOptions, UncheckedAdvice};

use crate::error::StorageError;

/// A kept mapping covers the file rounded up to a multiple of this.
pub(crate) const MAP_STEP_BYTES: u64 = 64 * 1024 * 1024;
/// Most files keeping a mapping at once, process-wide: with the mappings of frames being
/// written (at most 8,192, the broker's budget) and the sealed segments' mapped indexes, well
/// below Linux's default `vm.max_map_count` (65,530).
pub const MAX_KEPT_MAPPINGS: usize = 4096;
/// Bytes sent from kept mappings, process-wide, after which their pages are let go.
pub const MAX_SENT_BYTES_HELD: u64 = 64 * 1024 * 1024;

/// The files keeping a mapping, and the clock that orders their use.
pub struct KeptMappings {
    limit: usize,
    sent_limit: u64,
    /// Bytes sent from the mappings since their pages were last let go (one shared add per
    /// answer sent mapped, of 64 KiB or more).
    sent: AtomicU64,
    files: Mutex<Vec<Weak<LogFile>>>,
    /// Advanced each time a mapping is made; a file's `last_used` is its value at its last use
    /// (a read of a rarely written counter, not a shared write per fetch).
    clock: AtomicU64,
}

impl KeptMappings {
    pub const fn new(limit: usize, sent_limit: u64) -> KeptMappings {
        KeptMappings {
            limit,
            sent_limit,
            sent: AtomicU64::new(0),
            files: Mutex::new(Vec::new()),
            clock: AtomicU64::new(0),
        }
    }

    fn files(&self) -> MutexGuard<'_, Vec<Weak<LogFile>>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Files keeping a mapping now.
    pub fn kept(&self) -> usize {
        self.files()
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|f| f.kept().is_some())
            .count()
    }

    /// Makes `map` the mapping `file` keeps, dropping the least recently used file's mapping
    /// first if `file` is new and the limit is reached.
    fn keep(&self, file: &Arc<LogFile>, map: Arc<Mmap>) {
        let mut files = self.files();
        self.clock.fetch_add(1, Ordering::Relaxed);
        files.retain(|w| w.strong_count() > 0);
        let me = Arc::downgrade(file);
        if !files.iter().any(|w| w.ptr_eq(&me)) {
            if files.len() >= self.limit {
                let oldest = files
                    .iter()
                    .enumerate()
                    .filter_map(|(i, w)| w.upgrade().map(|f| (i, f)))
                    .min_by_key(|(_, f)| f.last_used.load(Ordering::Relaxed));
                if let Some((i, victim)) = oldest {
                    victim.forget_mapping();
                    files.swap_remove(i);
                }
            }
            if files.len() >= self.limit {
                return; // a limit of 0: nothing is kept
            }
            files.push(me);
        }
        *file.kept() = Some(map);
    }

    /// Lets go of the pages of every mapping that sent anything since the last time, if the
    /// mappings have sent `sent_limit` bytes meanwhile (another thread may just have done it).
    fn let_pages_go(&self) {
        let files = self.files();
        if self.sent.load(Ordering::Relaxed) < self.sent_limit {
            return;
        }
        self.sent.store(0, Ordering::Relaxed);
        for file in files.iter().filter_map(Weak::upgrade) {
            if file.sent.swap(0, Ordering::Relaxed) == 0 {
                continue;
            }
            let Some(map) = file.kept().clone() else {
                continue;
            };
            // SAFETY: on a shared file mapping MADV_DONTNEED only unmaps the pages (the page
            // cache keeps them, a later touch maps the file's bytes again); a send in progress
            // from them faults them back in.
            if let Err(e) = unsafe { map.unchecked_advise(UncheckedAdvice::DontNeed) } {
                tracing::debug!(error = %e, "cannot let go of a log file mapping's pages");
            }
        }
    }
}

/// The registry every segment's log file uses.
static KEPT_MAPPINGS: KeptMappings = KeptMappings::new(MAX_KEPT_MAPPINGS, MAX_SENT_BYTES_HELD);

/// Segment log files keeping a mapping now, process-wide (a metric).
pub fn kept_log_file_mappings() -> usize {
    KEPT_MAPPINGS.kept()
}

/// A segment's open `.log` file (dereferences to the `File`) and its kept mapping.
pub struct LogFile {
    file: File,
    kept: Mutex<Option<Arc<Mmap>>>,
    /// `registry.clock` at the last use of the mapping.
    last_used: AtomicU64,
    /// Bytes sent from the mapping since its pages were last let go.
    sent: AtomicU64,
    registry: &'static KeptMappings,
}

impl LogFile {
    pub fn new(file: File) -> LogFile {
        LogFile::with_registry(file, &KEPT_MAPPINGS)
    }

    /// A file whose mapping counts against `registry` instead of the process-wide one.
    pub fn with_registry(file: File, registry: &'static KeptMappings) -> LogFile {
        LogFile {
            file,
            kept: Mutex::new(None),
            last_used: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            registry,
        }
    }

    fn kept(&self) -> MutexGuard<'_, Option<Arc<Mmap>>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A read-only mapping of the file from its first byte, at least `end` bytes long: the kept
    /// one if it is long enough, else a new one, which is kept instead.
    ///
    /// # Safety
    /// The mapping's bytes may change or be cut under it (see `log::region_map`): the caller
    /// must hand them only to the kernel, never read them in user space.
    pub(crate) unsafe fn mapping_covering(
        self: &Arc<Self>,
        end: u64,
    ) -> Result<Arc<Mmap>, StorageError> {
        self.last_used.store(
            self.registry.clock.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        if let Some(map) = self.kept().as_ref().filter(|m| m.len() as u64 >= end) {
            return Ok(Arc::clone(map));
        }
        let len = end
            .max(self.file.metadata()?.len())
            .max(1)
            .div_ceil(MAP_STEP_BYTES)
            .saturating_mul(MAP_STEP_BYTES);
        let len =
            usize::try_from(len).map_err(|_| StorageError::corrupt("log file too large to map"))?;
        // SAFETY: read-only, and the caller hands the bytes only to the kernel (this function's
        // contract): pages past the end of the file, or cut from it later, fail the system call
        // that copies them (EFAULT) instead of raising a signal.
        let map = Arc::new(unsafe { MmapOptions::new().len(len).map(&self.file)? });
        self.registry.keep(self, Arc::clone(&map));
        Ok(map)
    }

    /// Counts `bytes` about to be sent from the mapping, letting go of the pages of every kept
    /// mapping if that brings what they sent to the registry's limit.
    pub(crate) fn note_sent(&self, bytes: u64) {
        self.sent.fetch_add(bytes, Ordering::Relaxed);
        let sent = self.registry.sent.fetch_add(bytes, Ordering::Relaxed);
        if sent.saturating_add(bytes) >= self.registry.sent_limit {
            self.registry.let_pages_go();
        }
    }

    /// Drops the kept mapping (the file is being cut in place); frames being written from it
    /// keep theirs until they are written.
    pub(crate) fn forget_mapping(&self) {
        let dropped = self.kept().take();
        drop(dropped); // outside the lock: the unmap is a system call
    }
}

impl Deref for LogFile {
    type Target = File;
    fn deref(&self) -> &File {
        &self.file
    }
}

impl std::fmt::Debug for LogFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFile")
            .field("file", &self.file)
            .field("mapped_bytes", &self.kept().as_ref().map(|m| m.len()))
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(len: usize, registry: &'static KeptMappings) -> Arc<LogFile> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&vec![5u8; len]).unwrap();
        Arc::new(LogFile::with_registry(f, registry))
    }

    fn map(file: &Arc<LogFile>, end: u64) -> Arc<Mmap> {
        // SAFETY: the tests compare lengths and pointers only, or read bytes of files nobody cuts.
        unsafe { file.mapping_covering(end).unwrap() }
    }

    #[test]
    fn the_mapping_is_kept_and_reused_until_a_region_runs_past_it() {
        static REG: KeptMappings = KeptMappings::new(4, u64::MAX);
        let file = file_of(10_000, &REG);
        let first = map(&file, 10_000);
        assert_eq!(
            first.len() as u64,
            MAP_STEP_BYTES,
            "rounded up past the end"
        );
        assert_eq!(&first[..10_000], &vec![5u8; 10_000][..]);
        assert!(Arc::ptr_eq(&first, &map(&file, 4096)), "reused");
        assert!(Arc::ptr_eq(&first, &map(&file, MAP_STEP_BYTES)), "reused");
        let longer = map(&file, MAP_STEP_BYTES + 1);
        assert_eq!(longer.len() as u64, 2 * MAP_STEP_BYTES);
        assert!(
            Arc::ptr_eq(&longer, &map(&file, 10)),
            "the longer one is kept"
        );
        assert_eq!(REG.kept(), 1, "one file, one mapping");
    }

    #[test]
    fn past_the_limit_the_least_recently_used_files_mapping_is_dropped() {
        static REG: KeptMappings = KeptMappings::new(2, u64::MAX);
        let (a, b, c) = (file_of(100, &REG), file_of(100, &REG), file_of(100, &REG));
        let held = map(&a, 100);
        map(&b, 100);
        map(&a, 100); // a used after b
        map(&c, 100); // b goes
        assert_eq!(REG.kept(), 2);
        assert!(b.kept().is_none());
        assert!(a.kept().is_some() && c.kept().is_some());
        map(&b, 100); // a was used before c was mapped: a goes
        assert!(a.kept().is_none() && b.kept().is_some() && c.kept().is_some());
        assert_eq!(
            &held[..100],
            &[5u8; 100][..],
            "a held mapping outlives its dropping"
        );
    }

    #[test]
    fn a_dropped_file_frees_its_place() {
        static REG: KeptMappings = KeptMappings::new(1, u64::MAX);
        let a = file_of(100, &REG);
        map(&a, 100);
        drop(a);
        let b = file_of(100, &REG);
        map(&b, 100);
        assert_eq!(REG.kept(), 1);
        assert!(b.kept().is_some());
    }

    #[test]
    fn a_forgotten_mapping_is_made_again_on_the_next_use() {
        static REG: KeptMappings = KeptMappings::new(2, u64::MAX);
        let a = file_of(100, &REG);
        let first = map(&a, 100);
        a.forget_mapping();
        assert_eq!(REG.kept(), 0);
        let again = map(&a, 100);
        assert!(!Arc::ptr_eq(&first, &again));
        assert_eq!(REG.kept(), 1);
    }

    #[test]
    fn with_no_room_nothing_is_kept_but_the_mapping_is_still_made() {
        static REG: KeptMappings = KeptMappings::new(0, u64::MAX);
        let a = file_of(100, &REG);
        assert_eq!(&map(&a, 100)[..100], &[5u8; 100][..]);
        assert_eq!(REG.kept(), 0);
    }

    /// KiB of `map` mapped into this process now (its `Rss` in /proc/self/smaps).
    fn resident_kib(map: &Mmap) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let start = format!("{:x}-", map.as_ptr() as usize);
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&start));
        assert!(lines.next().is_some(), "the mapping is listed");
        let rss = lines.find(|l| l.starts_with("Rss:")).unwrap();
        rss.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn once_the_limit_is_sent_the_pages_of_every_mapping_that_sent_are_let_go() {
        const LEN: usize = 512 * 1024;
        static REG: KeptMappings = KeptMappings::new(4, 2 * LEN as u64);
        let (a, b) = (file_of(LEN, &REG), file_of(LEN, &REG));
        let (ma, mb) = (map(&a, LEN as u64), map(&b, LEN as u64));
        let touch = |m: &Mmap| {
            m[..LEN]
                .iter()
                .step_by(4096)
                .map(|&x| u64::from(x))
                .sum::<u64>()
        };
        assert_eq!(touch(&ma) + touch(&mb), 2 * 5 * (LEN as u64 / 4096));
        assert!(resident_kib(&ma) >= 512 && resident_kib(&mb) >= 512);
        a.note_sent(LEN as u64);
        assert!(resident_kib(&ma) >= 512, "below the limit: kept");
        b.note_sent(LEN as u64);
        assert_eq!(
            (resident_kib(&ma), resident_kib(&mb)),
            (0, 0),
            "both let go"
        );
        assert_eq!(
            touch(&ma),
            5 * (LEN as u64 / 4096),
            "the bytes map again when touched"
        );
        assert!(Arc::ptr_eq(&ma, &map(&a, 1)), "the mapping itself is kept");
    }
}
