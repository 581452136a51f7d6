//! Crash-safe replacement of small metadata files: write a temp file, fsync it, rename it
//! over the target, fsync the directory. A reader sees either the old or the new content.
//! Also the type of an injectable sync of a file (`SyncData`): an fdatasync, or a syncfs of the
//! filesystem holding the file.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// A sync of a file: an fdatasync (`File::sync_data`) by default, a syncfs of its filesystem
/// (`filesystem`), or a failing one in tests (the disk seam of the partition flushers and the
/// controller log).
#[derive(Clone)]
pub struct SyncData(Arc<SyncFn>);

type SyncFn = dyn Fn(&File) -> std::io::Result<()> + Send + Sync;

impl SyncData {
    pub fn new(sync: impl Fn(&File) -> std::io::Result<()> + Send + Sync + 'static) -> Self {
        SyncData(Arc::new(sync))
    }

    /// `syncfs(2)` of the filesystem holding the file (`filesystem_sync`, where what it
    /// promises is spelled out).
    pub fn filesystem() -> Self {
        SyncData::new(crate::filesystem_sync::syncfs)
    }

    pub fn sync(&self, file: &File) -> std::io::Result<()> {
        (self.0)(file)
    }
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
