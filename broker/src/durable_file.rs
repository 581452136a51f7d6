//! Crash-safe replacement of small metadata files: write a temp file, fsync it, rename it
//! over the target, fsync the directory. A reader sees either the old or the new content.
//! Also the type of an injectable sync of a file (`SyncData`): an fdatasync, or a syncfs of the
//! filesystem holding the file.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// An fdatasync: `File::sync_data` by default, or a failing one in tests (the disk seam of the
/// partition flushers and the controller log).
#[derive(Clone)]
pub struct SyncData(Arc<SyncFn>);

type SyncFn = dyn Fn(&File) -> std::io::Result<()> + Send + Sync;

impl SyncData {
    pub fn new(sync: impl Fn(&File) -> std::io::Result<()> + Send + Sync + 'static) -> Self {
        SyncData(Arc::new(sync))
    }

    /// `syncfs(2)` of the filesystem holding the file: everything written to any file there
    /// is durable once it returns Ok (since Linux 5.8 it reports a writeback error of any of
    /// them, as fdatasync does for its own file). Unsupported elsewhere than Linux.
    pub fn filesystem() -> Self {
        SyncData::new(sync_filesystem)
    }

    pub fn sync(&self, file: &File) -> std::io::Result<()> {
        (self.0)(file)
    }
}

/// Whether this kernel's `syncfs(2)` reports writeback errors (Linux 5.8 and later; before,
/// it returned 0 even when pages it wrote were lost, so it cannot stand in for fdatasyncs).
pub fn syncfs_reports_errors() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .is_ok_and(|release| release_at_least(&release, (5, 8)))
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

#[cfg(target_os = "linux")]
fn sync_filesystem(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `file` is an open descriptor for the whole call; syncfs reads nothing else.
    if unsafe { libc::syncfs(file.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem(_file: &File) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

impl Default for SyncData {
    fn default() -> Self {
        SyncData::new(File::sync_data)
    }
}

impl std::fmt::Debug for SyncData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncData")
    }
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::release_at_least;

    #[test]
    fn kernel_releases_compare_by_major_then_minor() {
        assert!(release_at_least("6.18.44-fc-v669\n", (5, 8)));
        assert!(release_at_least("5.8.0", (5, 8)));
        assert!(release_at_least("5.10.0-28-amd64", (5, 8)));
        assert!(!release_at_least("5.4.0-150-generic", (5, 8)));
        assert!(!release_at_least("4.18.0-553.el8_10.x86_64", (5, 8)));
        assert!(!release_at_least("", (5, 8)));
        assert!(!release_at_least("6", (5, 8)));
    }
}
