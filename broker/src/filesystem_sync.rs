//! `syncfs(2)` for the shared flusher, and what it may be trusted with. A syncfs makes every
//! write to the filesystem done before the call durable, and reports a writeback error that
//! happened since the descriptor it is called on was opened, once (a later syncfs through the
//! same descriptor reports only newer ones; another descriptor still sees it): since Linux 5.8
//! those of the data
//! (the superblock's error sequence), since 5.17 also those of the filesystem's own sync (a
//! failed journal commit or cache flush), which 5.8-5.16 dropped (`syncfs_reports_errors`).
//! The descriptor must therefore be one opened before the writes it answers for (the data
//! directory, opened when the shared flusher starts). Only ext4 and XFS are trusted
//! (`syncfs_trust`): ext4's sync ends with a device cache flush even when its journal has
//! nothing to commit, XFS's does not (an fdatasync after it adds one), and a stacked
//! filesystem such as overlayfs may not see its lower filesystem's write errors at all.

use std::fs::File;

/// `syncfs(2)` of the filesystem holding `file`; unsupported elsewhere than Linux.
#[cfg(target_os = "linux")]
pub fn syncfs(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `file` is an open descriptor for the whole call; syncfs reads nothing else.
    if unsafe { libc::syncfs(file.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub fn syncfs(_file: &File) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// Whether this kernel's syncfs reports every error a set of fdatasyncs would (Linux 5.17
/// and later).
pub fn syncfs_reports_errors() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .is_ok_and(|release| release_at_least(&release, (5, 17)))
}

/// What a syncfs of the filesystem holding a file can stand in for, by its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncfsTrust {
    /// ext4 (magic 0xEF53): its sync commits the journal and ends with a device cache flush
    /// even when the journal had nothing to commit.
    Alone,
    /// XFS (0x58465342): its sync forces the journal but sends no cache flush when the journal
    /// was idle; an fdatasync of one of the files after it sends one.
    WithFdatasync,
    /// Anything else (overlayfs, for one, records a write error of its upper filesystem where
    /// a syncfs through the overlay does not see it): each partition fdatasyncs its own file.
    No,
}

/// The trust a syncfs of the filesystem holding `file` deserves (`SyncfsTrust`). The ext2
/// and ext3 formats share ext4's magic: mounted by the ext4 driver (the kernels' default)
/// they are ext4 here; the old stand-alone ext2 driver, which flushes no cache, cannot be told
/// apart by `fstatfs`.
#[cfg(target_os = "linux")]
pub fn syncfs_trust(file: &File) -> SyncfsTrust {
    use std::os::fd::AsRawFd;
    const EXT4_SUPER_MAGIC: i64 = 0xEF53;
    const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
    // SAFETY: an all-zero `statfs` is a valid value of the plain C struct fstatfs fills in.
    let mut stats: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `file` is open for the whole call and `stats` is a valid, writable statfs.
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut stats) } != 0 {
        return SyncfsTrust::No;
    }
    // `f_type` is an i64 on x86_64 and narrower elsewhere.
    #[allow(clippy::useless_conversion)]
    match i64::from(stats.f_type) {
        EXT4_SUPER_MAGIC => SyncfsTrust::Alone,
        XFS_SUPER_MAGIC => SyncfsTrust::WithFdatasync,
        _ => SyncfsTrust::No,
    }
}

#[cfg(not(target_os = "linux"))]
pub fn syncfs_trust(_file: &File) -> SyncfsTrust {
    SyncfsTrust::No
}

/// Whether a kernel release string ("6.1.0-13-amd64") is at least `major.minor`.
fn release_at_least(release: &str, want: (u32, u32)) -> bool {
    let mut parts = release.trim().split(['.', '-']);
    let mut number = || parts.next().and_then(|p| p.parse::<u32>().ok());
    match (number(), number()) {
        (Some(major), Some(minor)) => (major, minor) >= want,
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{release_at_least, syncfs_trust, SyncfsTrust};

    #[test]
    fn a_filesystem_other_than_ext4_and_xfs_is_not_trusted() {
        let proc = std::fs::File::open("/proc").unwrap();
        assert_eq!(syncfs_trust(&proc), SyncfsTrust::No);
        let shm = std::fs::File::open("/dev/shm").unwrap();
        assert_eq!(syncfs_trust(&shm), SyncfsTrust::No);
    }

    #[test]
    fn kernel_releases_compare_by_major_then_minor() {
        assert!(release_at_least("6.18.44-fc-v669\n", (5, 17)));
        assert!(release_at_least("5.17.0", (5, 17)));
        assert!(release_at_least("5.10.0-28-amd64", (5, 8)));
        assert!(!release_at_least("5.10.0-28-amd64", (5, 17)));
        assert!(!release_at_least("5.4.0-150-generic", (5, 17)));
        assert!(!release_at_least("4.18.0-553.el8_10.x86_64", (5, 17)));
        assert!(!release_at_least("", (5, 17)));
        assert!(!release_at_least("6", (5, 17)));
    }
}
