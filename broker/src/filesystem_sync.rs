//! `syncfs(2)` for the shared flusher, and what it may be trusted with. A syncfs makes every
//! write to the filesystem done before the call durable, and reports a writeback error that
//! happened since the descriptor it is called on was opened: since Linux 5.8 those of the data
//! (the superblock's error sequence), since 5.17 also those of the filesystem's own sync (a
//! failed journal commit or cache flush), which 5.8-5.16 dropped (`syncfs_reports_errors`).
//! The descriptor must therefore be one opened before the writes it answers for (the data
//! directory, opened at start). ext4's sync ends with a device cache flush even when its journal
//! has nothing to commit; XFS's does not (its fsync adds one), so elsewhere than ext4 a syncfs
//! is followed by an fdatasync (`syncfs_flushes_device_cache`).

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

/// Whether a syncfs of the filesystem holding `file` ends with a flush of the device's write
/// cache on its own: on ext4 (and ext2/ext3 through the ext4 driver), whose magic number is
/// 0xEF53.
#[cfg(target_os = "linux")]
pub fn syncfs_flushes_device_cache(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    const EXT4_SUPER_MAGIC: i64 = 0xEF53;
    // SAFETY: an all-zero `statfs` is a valid value of the plain C struct fstatfs fills in.
    let mut stats: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `file` is open for the whole call and `stats` is a valid, writable statfs.
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut stats) } != 0 {
        return false;
    }
    // `f_type` is an i64 on x86_64 and narrower elsewhere.
    #[allow(clippy::useless_conversion)]
    let kind = i64::from(stats.f_type);
    kind == EXT4_SUPER_MAGIC
}

#[cfg(not(target_os = "linux"))]
pub fn syncfs_flushes_device_cache(_file: &File) -> bool {
    false
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
    use super::{release_at_least, syncfs_flushes_device_cache};

    #[test]
    fn only_ext4_counts_as_flushing_the_device_cache() {
        let proc = std::fs::File::open("/proc").unwrap();
        assert!(!syncfs_flushes_device_cache(&proc));
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
