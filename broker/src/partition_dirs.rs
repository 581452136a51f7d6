//! Partition directories in a single node's data directory, named as Kafka's `LocalLog` names
//! them: `<topic>-<partition>` for a live partition, `<topic>-<partition>.<uuid>-delete` for
//! one being deleted, `<topic>-<partition>.<uuid>-stray` for one set aside because it belongs
//! to no known topic. Owns the start-up pass over the data directory and the removal of a
//! deleted topic's partition directories.
//!
//! Nothing here deletes data it cannot prove was meant to go: only `-delete` directories are
//! removed. A live-looking directory of no known topic (a crash between the topic's removal from
//! `meta/topics.json` and the rename, a lost or older `topics.json`, a directory copied in by
//! hand) is renamed to its `-stray` name with a warning, as Kafka does with stray logs, so a
//! topic created later under that name starts empty and the data stays for an operator to
//! inspect. Every other entry (`meta/`, `lost+found`, earlier `-stray` directories, files) is
//! left alone.

use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::metadata::validate_topic_name;
use crate::partition::TopicPartition;

/// Kafka's `LogFileUtils.DELETE_DIR_SUFFIX`.
pub const DELETE_DIR_SUFFIX: &str = "-delete";
/// Kafka's `LogFileUtils.STRAY_DIR_SUFFIX`.
pub const STRAY_DIR_SUFFIX: &str = "-stray";
/// Longest file name the suffixed names are cut to (Kafka's `logDirNameWithSuffixCappedLength`).
const MAX_NAME_BYTES: usize = 255;

/// The topic and partition of a live partition directory's name `<topic>-<partition>`: a legal
/// topic name and a partition written as Sluice writes it (non-negative, no sign, no leading
/// zero). `None` for any other name.
pub fn parse_partition_dir(name: &str) -> Option<(&str, i32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    validate_topic_name(topic).ok()?;
    let index: i32 = partition.parse().ok()?;
    (index >= 0 && index.to_string() == partition).then_some((topic, index))
}

/// `<topic>-<partition>.<uuid without dashes><suffix>`, the topic cut so that the name fits in
/// 255 bytes (Kafka's `logDirNameWithSuffixCappedLength`; topic names are ASCII).
pub fn suffixed_dir_name(tp: &TopicPartition, suffix: &str) -> String {
    let tail = format!("-{}.{}{suffix}", tp.partition, Uuid::new_v4().simple());
    let keep = tp
        .topic
        .len()
        .min(MAX_NAME_BYTES.saturating_sub(tail.len()));
    format!("{}{tail}", tp.topic.get(..keep).unwrap_or(&tp.topic))
}

/// Whether `name` has the form `suffixed_dir_name` gives with `suffix`.
fn has_suffixed_form(name: &str, suffix: &str) -> bool {
    name.strip_suffix(suffix)
        .and_then(|rest| rest.rsplit_once('.'))
        .is_some_and(|(live, id)| {
            id.len() == 32
                && id.bytes().all(|b| b.is_ascii_hexdigit())
                && parse_partition_dir(live).is_some()
        })
}

/// What `tidy_data_dir` did, for the log and the tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TidyOutcome {
    /// `-delete` directories removed.
    pub removed: Vec<String>,
    /// Partition directories of no known topic and their new `-stray` names.
    pub set_aside: Vec<(String, String)>,
}

/// The start-up pass of a single node over `data_dir`: removes `-delete` directories (deletions
/// a crash interrupted), renames every partition directory for which `known(topic, partition)`
/// is false to its `-stray` name, and leaves everything else alone (see the module doc). The
/// directory is fsynced if anything changed. An error listing the directory or renaming a
/// directory fails the pass (a stray left under its live name would come back as the data of
/// a topic created later under that name); a `-delete` directory that cannot be removed is only
/// logged (its name never collides with a live one, the next start-up tries again).
pub fn tidy_data_dir(
    data_dir: &Path,
    known: impl Fn(&str, i32) -> bool,
) -> std::io::Result<TidyOutcome> {
    let mut outcome = TidyOutcome::default();
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        // Non-UTF-8 names are nothing Sluice or Kafka made.
        if let Ok(name) = entry.file_name().into_string() {
            if entry.path().is_dir() {
                names.push(name);
            }
        }
    }
    names.sort_unstable();
    for name in names {
        let path = data_dir.join(&name);
        if has_suffixed_form(&name, DELETE_DIR_SUFFIX) {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    tracing::info!(dir = %path.display(), "removed the directory of a deleted partition");
                    outcome.removed.push(name);
                }
                Err(e) => {
                    tracing::error!(dir = %path.display(), error = %e, "cannot remove the directory of a deleted partition")
                }
            }
            continue;
        }
        let Some((topic, partition)) = parse_partition_dir(&name) else {
            continue;
        };
        if known(topic, partition) {
            continue;
        }
        let tp = TopicPartition {
            topic: topic.to_string(),
            partition,
        };
        let stray = suffixed_dir_name(&tp, STRAY_DIR_SUFFIX);
        std::fs::rename(&path, data_dir.join(&stray))?;
        tracing::warn!(
            dir = %path.display(),
            renamed_to = %stray,
            "partition directory of no known topic set aside as stray (not deleted)"
        );
        outcome.set_aside.push((name, stray));
    }
    if !outcome.removed.is_empty() || !outcome.set_aside.is_empty() {
        sync_dir(data_dir)?;
    }
    Ok(outcome)
}

/// Removes the directory of a deleted topic's partition (closed by the caller, the topic already
/// gone from `meta/topics.json`): renames it to its `-delete` name, fsyncs `data_dir`, then
/// removes it. A crash after the rename leaves a `-delete` directory that the next start-up
/// removes; one before it leaves the live name, which the start-up pass sets aside as stray.
/// Returns the `-delete` path, or `None` if the partition had no directory.
pub fn delete_partition_dir(
    data_dir: &Path,
    tp: &TopicPartition,
) -> std::io::Result<Option<PathBuf>> {
    let live = data_dir.join(tp.to_string());
    let doomed = data_dir.join(suffixed_dir_name(tp, DELETE_DIR_SUFFIX));
    match std::fs::rename(&live, &doomed) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    sync_dir(data_dir)?;
    std::fs::remove_dir_all(&doomed)?;
    Ok(Some(doomed))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
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

    /// The directories of `dir`, sorted.
    fn dirs(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn only_names_sluice_gives_partitions_parse() {
        assert_eq!(parse_partition_dir("t-0"), Some(("t", 0)));
        assert_eq!(parse_partition_dir("a.b_c-d-12"), Some(("a.b_c-d", 12)));
        // The last '-' separates: "t-" is a legal topic name.
        assert_eq!(parse_partition_dir("t--1"), Some(("t-", 1)));
        assert_eq!(
            parse_partition_dir("__consumer_offsets-49"),
            Some(("__consumer_offsets", 49))
        );
        for name in [
            "t-00",
            "t-+1",
            "t-",
            "-0",
            "t-2147483648",
            "lost+found",
            "meta",
            "controller",
            "t-0.0123456789abcdef0123456789abcdef-stray",
            "t-0.0123456789abcdef0123456789abcdef-delete",
            "a b-0",
            "..-0",
        ] {
            assert_eq!(parse_partition_dir(name), None, "{name}");
        }
    }

    #[test]
    fn suffixed_names_have_kafkas_form_and_fit_in_255_bytes() {
        let name = suffixed_dir_name(&tp("orders.v1", 3), STRAY_DIR_SUFFIX);
        assert!(name.starts_with("orders.v1-3."), "{name}");
        assert!(has_suffixed_form(&name, STRAY_DIR_SUFFIX), "{name}");
        assert!(!has_suffixed_form(&name, DELETE_DIR_SUFFIX), "{name}");
        let long = "x".repeat(249);
        let name = suffixed_dir_name(&tp(&long, i32::MAX), DELETE_DIR_SUFFIX);
        assert_eq!(name.len(), 255);
        assert!(has_suffixed_form(&name, DELETE_DIR_SUFFIX), "{name}");
        assert_ne!(
            suffixed_dir_name(&tp("t", 0), DELETE_DIR_SUFFIX),
            suffixed_dir_name(&tp("t", 0), DELETE_DIR_SUFFIX)
        );
        for name in [
            "t-0.0123456789abcdef0123456789abcdeg-delete",
            "t-0.0123456789abcdef0123456789abcde-delete",
            "t-0-delete",
            "lost+found-0.0123456789abcdef0123456789abcdef-delete",
        ] {
            assert!(!has_suffixed_form(name, DELETE_DIR_SUFFIX), "{name}");
        }
    }

    #[test]
    fn start_up_sets_strays_aside_removes_deletions_and_leaves_the_rest() {
        let data = tempfile::tempdir().unwrap();
        let d = data.path();
        let deleting = "dead-1.0123456789abcdef0123456789abcdef-delete";
        let old_stray = "old-0.fedcba9876543210fedcba9876543210-stray";
        for name in [
            "keep-0",
            "keep-1",
            "keep-5",
            "gone-0",
            "meta",
            "lost+found",
            "backup.d",
            old_stray,
            deleting,
            "t-0.nothex-delete",
        ] {
            std::fs::create_dir(d.join(name)).unwrap();
            std::fs::write(d.join(name).join("00000000000000000000.log"), name).unwrap();
        }
        std::fs::write(d.join("other-0"), b"a file, not a partition").unwrap();
        let outcome = tidy_data_dir(d, |topic, p| topic == "keep" && p < 2).unwrap();
        assert_eq!(outcome.removed, vec![deleting.to_string()]);
        let set_aside: Vec<&str> = outcome.set_aside.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(set_aside, vec!["gone-0", "keep-5"]);
        for (name, stray) in &outcome.set_aside {
            assert!(stray.starts_with(&format!("{name}.")), "{stray}");
            assert!(has_suffixed_form(stray, STRAY_DIR_SUFFIX), "{stray}");
            // The data is all there, under the new name.
            let content = std::fs::read(d.join(stray).join("00000000000000000000.log")).unwrap();
            assert_eq!(content, name.as_bytes());
        }
        let mut expected: Vec<String> = [
            "backup.d",
            "keep-0",
            "keep-1",
            "lost+found",
            "meta",
            old_stray,
            "t-0.nothex-delete",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(outcome.set_aside.iter().map(|(_, s)| s.clone()))
        .collect();
        expected.sort();
        assert_eq!(dirs(d), expected);
        assert!(d.join("other-0").is_file());
        // A second pass changes nothing.
        let again = tidy_data_dir(d, |topic, p| topic == "keep" && p < 2).unwrap();
        assert_eq!(again, TidyOutcome::default());
    }

    #[test]
    fn no_known_topic_sets_every_partition_aside_and_deletes_nothing() {
        // A missing or emptied meta/topics.json must not cost the data.
        let data = tempfile::tempdir().unwrap();
        for name in ["a-0", "a-1", "__consumer_offsets-0"] {
            std::fs::create_dir(data.path().join(name)).unwrap();
            std::fs::write(data.path().join(name).join("x.log"), b"data").unwrap();
        }
        let outcome = tidy_data_dir(data.path(), |_, _| false).unwrap();
        assert_eq!(outcome.set_aside.len(), 3);
        assert!(outcome.removed.is_empty());
        for (_, stray) in &outcome.set_aside {
            assert_eq!(
                std::fs::read(data.path().join(stray).join("x.log")).unwrap(),
                b"data"
            );
        }
    }

    #[test]
    fn deleting_a_partition_dir_leaves_nothing_behind() {
        let data = tempfile::tempdir().unwrap();
        std::fs::create_dir(data.path().join("t-0")).unwrap();
        std::fs::write(data.path().join("t-0").join("x.log"), b"data").unwrap();
        std::fs::create_dir(data.path().join("t-1")).unwrap();
        let doomed = delete_partition_dir(data.path(), &tp("t", 0))
            .unwrap()
            .unwrap();
        assert!(has_suffixed_form(
            doomed.file_name().unwrap().to_str().unwrap(),
            DELETE_DIR_SUFFIX
        ));
        assert_eq!(dirs(data.path()), vec!["t-1".to_string()]);
        assert_eq!(
            delete_partition_dir(data.path(), &tp("t", 0)).unwrap(),
            None
        );
    }
}
