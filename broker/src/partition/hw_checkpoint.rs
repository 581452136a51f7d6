//! The high-watermark checkpoint (Kafka's `replication-offset-checkpoint`): in a cluster, each
//! hosted partition's high watermark, written to `<data-dir>/replication-offset-checkpoint`
//! every `replica.high.watermark.checkpoint.interval.ms` (when one moved) and at shutdown, and
//! read once at start. A replica opened after a restart starts at its checkpointed high
//! watermark (log start when it has none), not at its log end: a follower serving consumer
//! reads, a leader elected before its followers fetched, or the divergence check's
//! high-watermark fallback would otherwise take records no quorum ever committed as committed.
//! A lower high watermark only delays visibility, so a missing or unreadable checkpoint
//! starts every partition at its log start (with a warning) rather than failing the start.
//!
//! Format, as Kafka's `CheckpointFile`: a version line (`0`), a count line, then one
//! `<topic> <partition> <offset>` line per partition. Written as tmp, fsync, rename, directory
//! fsync.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use super::{PartitionManager, TopicPartition};
use crate::durable_file::write_atomically;

/// The file's name in the data directory.
pub const FILE: &str = "replication-offset-checkpoint";
/// The most bytes read from the file (about a million partitions' lines).
const MAX_BYTES: u64 = 64 << 20;
const VERSION: &str = "0";

/// Each partition's checkpointed high watermark; empty (with a warning) if the file is missing
/// or cannot be read or parsed.
pub fn read(data_dir: &Path) -> HashMap<TopicPartition, i64> {
    let path = data_dir.join(FILE);
    let mut text = String::new();
    let read =
        std::fs::File::open(&path).and_then(|f| f.take(MAX_BYTES + 1).read_to_string(&mut text));
    match read {
        Ok(n) if n as u64 > MAX_BYTES => {
            tracing::warn!(path = %path.display(), "high-watermark checkpoint too large; every partition starts at its log start");
            HashMap::new()
        }
        Ok(_) => parse(&text).unwrap_or_else(|reason| {
            tracing::warn!(path = %path.display(), %reason, "corrupt high-watermark checkpoint; every partition starts at its log start");
            HashMap::new()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the high-watermark checkpoint; every partition starts at its log start");
            HashMap::new()
        }
    }
}

fn parse(text: &str) -> Result<HashMap<TopicPartition, i64>, String> {
    let mut lines = text.lines();
    if lines.next() != Some(VERSION) {
        return Err("not version 0".into());
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.parse().ok())
        .ok_or("no entry count")?;
    let mut out = HashMap::new();
    for line in lines.by_ref().take(count) {
        let mut fields = line.split(' ');
        let (Some(topic), Some(partition), Some(offset), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(format!("bad line {line:?}"));
        };
        let partition: i32 = partition
            .parse()
            .map_err(|_| format!("bad line {line:?}"))?;
        let offset: i64 = offset.parse().map_err(|_| format!("bad line {line:?}"))?;
        if topic.is_empty() || partition < 0 || offset < 0 {
            return Err(format!("bad line {line:?}"));
        }
        let tp = TopicPartition {
            topic: topic.to_string(),
            partition,
        };
        out.insert(tp, offset);
    }
    if out.len() != count || lines.next().is_some() {
        return Err(format!("{count} entries announced, {} found", out.len()));
    }
    Ok(out)
}

/// One writer at a time (the periodic task and the shutdown write share the `.tmp` file).
static WRITING: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// Writes `entries` (sorted, so equal states give equal files) atomically
/// (`durable_file::write_atomically`).
pub fn write(data_dir: &Path, entries: &[(TopicPartition, i64)]) -> std::io::Result<()> {
    let _one_writer = WRITING.lock();
    let mut text = format!("{VERSION}\n{}\n", entries.len());
    for (tp, hw) in entries {
        text.push_str(&format!("{} {} {hw}\n", tp.topic, tp.partition));
    }
    write_atomically(&data_dir.join(FILE), text.as_bytes())
}

/// The hosted partitions' high watermarks, and the checkpointed ones of partitions not
/// opened since the start (kept for the next start, as they were), sorted.
pub fn current(partitions: &PartitionManager) -> Vec<(TopicPartition, i64)> {
    let mut entries: Vec<(TopicPartition, i64)> = partitions
        .all()
        .iter()
        .map(|p| (p.tp.clone(), p.high_watermark().max(0)))
        .collect();
    entries.extend(partitions.checkpointed_not_opened());
    entries.sort();
    entries.dedup_by(|a, b| a.0 == b.0);
    entries
}

/// Writes the checkpoint if it differs from `written` (what the last write held); returns
/// what the file holds now.
pub fn write_if_changed(
    partitions: &PartitionManager,
    data_dir: &Path,
    written: Vec<(TopicPartition, i64)>,
) -> Vec<(TopicPartition, i64)> {
    let entries = current(partitions);
    // Nothing hosted (yet): no write, as Kafka writes none without online partitions.
    if entries == written || entries.is_empty() {
        return written;
    }
    match write(data_dir, &entries) {
        Ok(()) => entries,
        Err(e) => {
            tracing::warn!(error = %e, "cannot write the high-watermark checkpoint");
            written
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    #[test]
    fn written_entries_read_back_in_kafkas_format() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).is_empty(), "no file");
        let entries = vec![(tp("a", 0), 10), (tp("a", 1), 0), (tp("b.c_d-e", 7), 123)];
        write(dir.path(), &entries).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FILE)).unwrap(),
            "0\n3\na 0 10\na 1 0\nb.c_d-e 7 123\n"
        );
        let back = read(dir.path());
        assert_eq!(back.len(), 3);
        assert_eq!(back.get(&tp("b.c_d-e", 7)), Some(&123));
        write(dir.path(), &[]).unwrap();
        assert!(read(dir.path()).is_empty());
    }

    #[test]
    fn a_corrupt_checkpoint_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "",
            "1\n0\n",
            "0\n2\na 0 1\n",
            "0\n1\na 0 1\nb 0 1\n",
            "0\n1\na x 1\n",
            "0\n1\na 0 -5\n",
            "0\n1\na 0 1 2\n",
            "0\nmany\n",
        ] {
            std::fs::write(dir.path().join(FILE), bad).unwrap();
            assert!(read(dir.path()).is_empty(), "{bad:?}");
        }
    }
}
