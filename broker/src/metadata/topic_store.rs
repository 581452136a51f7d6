//! The persisted set of topics: `meta/topics.json`, rewritten atomically on every change.
//!
//! Invariant: the file on disk is always a complete, valid snapshot (temp file + fsync +
//! rename + directory fsync), and a topic appears in memory only once it is on disk. The
//! in-memory index of names by topic id is rebuilt with every change, so an id lookup (Fetch
//! and Produce from v13 name topics by id) costs one hash lookup, not a walk over every topic.
//! Listeners (`on_removed`) learn which topics a change removed, once it is persisted.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::TopicConfigs;
use crate::durable_file::write_atomically;

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    #[serde(default)]
    pub configs: TopicConfigs,
    #[serde(default)]
    pub internal: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TopicsFile {
    version: u32,
    topics: Vec<TopicMeta>,
}

#[derive(Debug, thiserror::Error)]
pub enum TopicStoreError {
    #[error("io error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// Told the topics a change removed: deleted, or replaced by a topic of the same name and
/// another id. Called after the change is persisted, outside the store's lock, on the thread
/// that made the change.
pub type RemovedTopicsListener = Box<dyn Fn(&[TopicMeta]) + Send + Sync>;

/// Topics by name, persisted.
#[derive(Debug)]
pub struct TopicStore {
    path: PathBuf,
    topics: RwLock<Topics>,
    removal_listeners: Listeners,
}

#[derive(Default)]
struct Listeners(RwLock<Vec<RemovedTopicsListener>>);

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} removal listener(s)", self.0.read().len())
    }
}

/// The topics by name, and their names by id.
#[derive(Debug)]
struct Topics {
    by_name: BTreeMap<String, TopicMeta>,
    names_by_id: HashMap<Uuid, String>,
}

impl Topics {
    fn new(by_name: BTreeMap<String, TopicMeta>) -> Self {
        let names_by_id = by_name.values().map(|t| (t.id, t.name.clone())).collect();
        Topics {
            by_name,
            names_by_id,
        }
    }

    fn by_id(&self, id: Uuid) -> Option<&TopicMeta> {
        self.names_by_id
            .get(&id)
            .and_then(|name| self.by_name.get(name))
    }
}

impl TopicStore {
    pub fn open(meta_dir: &Path) -> Result<Self, TopicStoreError> {
        let path = meta_dir.join("topics.json");
        let topics = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: TopicsFile =
                    serde_json::from_slice(&bytes).map_err(|e| TopicStoreError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                file.topics
                    .into_iter()
                    .map(|t| (t.name.clone(), t))
                    .collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(TopicStoreError::Io { path, source }),
        };
        Ok(Self {
            path,
            topics: RwLock::new(Topics::new(topics)),
            removal_listeners: Listeners::default(),
        })
    }

    /// Adds a listener told of every topic a later change removes.
    pub fn on_removed(&self, listener: RemovedTopicsListener) {
        self.removal_listeners.0.write().push(listener);
    }

    pub fn get(&self, name: &str) -> Option<TopicMeta> {
        self.topics.read().by_name.get(name).cloned()
    }

    pub fn get_by_id(&self, id: Uuid) -> Option<TopicMeta> {
        self.topics.read().by_id(id).cloned()
    }

    /// The name of the topic with this id, without copying the rest of its metadata.
    pub fn name_of_id(&self, id: Uuid) -> Option<String> {
        self.topics.read().by_id(id).map(|t| t.name.clone())
    }

    pub fn all(&self) -> Vec<TopicMeta> {
        self.topics.read().by_name.values().cloned().collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.topics.read().by_name.contains_key(name)
    }

    /// Applies `change` to the topic map and persists the result; the in-memory map changes
    /// only if the write succeeded. `change` returns `false` to abort without writing.
    pub fn update<F>(&self, change: F) -> Result<bool, TopicStoreError>
    where
        F: FnOnce(&mut BTreeMap<String, TopicMeta>) -> bool,
    {
        let mut guard = self.topics.write();
        let mut next = guard.by_name.clone();
        if !change(&mut next) {
            return Ok(false);
        }
        let file = TopicsFile {
            version: 1,
            topics: next.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| TopicStoreError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        write_atomically(&self.path, &bytes).map_err(|source| TopicStoreError::Io {
            path: self.path.clone(),
            source,
        })?;
        let removed: Vec<TopicMeta> = guard
            .by_name
            .values()
            .filter(|old| next.get(&old.name).is_none_or(|new| new.id != old.id))
            .cloned()
            .collect();
        *guard = Topics::new(next);
        drop(guard);
        if !removed.is_empty() {
            for listener in self.removal_listeners.0.read().iter() {
                listener(&removed);
            }
        }
        Ok(true)
    }
}

/// Kafka's `Topic.hasCollision` check for a new topic: an existing name that differs from
/// `name` but reads the same once every '.' is taken as '_' (their metric names would clash),
/// the least such name for a stable message.
pub fn colliding_topic<'a>(
    name: &str,
    existing: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    if !name.contains(['.', '_']) {
        return None;
    }
    let normal = |n: &str| n.replace('.', "_");
    let wanted = normal(name);
    existing
        .into_iter()
        .filter(|e| *e != name && e.len() == name.len() && normal(e) == wanted)
        .min()
}

/// Kafka's topic name rules: 1..=249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return Err("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > 249 {
        return Err(format!(
            "Topic name is illegal, it can't be longer than 249 characters, topic name: {name}"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!(
            "Topic name {name} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_collide_when_dots_read_as_underscores() {
        let existing = ["a_b", "x.y.z", "plain", "a-b"];
        assert_eq!(colliding_topic("a.b", existing), Some("a_b"));
        assert_eq!(colliding_topic("x_y.z", existing), Some("x.y.z"));
        assert_eq!(
            colliding_topic("a_b", existing),
            None,
            "the same name is no collision"
        );
        assert_eq!(colliding_topic("a.c", existing), None);
        assert_eq!(colliding_topic("plain", existing), None);
        assert_eq!(colliding_topic("a.b", ["a_b.", "a__b"]), None);
        // The least colliding name, so the message is stable.
        assert_eq!(colliding_topic("a.b_c", ["a_b_c", "a_b.c"]), Some("a_b.c"));
    }

    #[test]
    fn persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = TopicStore::open(dir.path()).unwrap();
        let t = TopicMeta {
            name: "a".into(),
            id: Uuid::new_v4(),
            partitions: 3,
            configs: Default::default(),
            internal: false,
        };
        let t2 = t.clone();
        assert!(store
            .update(move |m| {
                m.insert(t2.name.clone(), t2);
                true
            })
            .unwrap());
        assert!(!store.update(|_| false).unwrap());
        let again = TopicStore::open(dir.path()).unwrap();
        assert_eq!(again.get("a"), Some(t.clone()));
        assert_eq!(again.get_by_id(t.id).map(|t| t.name), Some("a".into()));
    }

    #[test]
    fn ids_follow_deletion_and_re_creation_under_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = TopicStore::open(dir.path()).unwrap();
        let topic = |id| TopicMeta {
            name: "a".into(),
            id,
            partitions: 1,
            configs: Default::default(),
            internal: false,
        };
        let (old, new) = (Uuid::new_v4(), Uuid::new_v4());
        store
            .update(|m| m.insert("a".into(), topic(old)).is_none())
            .unwrap();
        assert_eq!(store.name_of_id(old), Some("a".into()));
        store.update(|m| m.remove("a").is_some()).unwrap();
        assert_eq!(store.name_of_id(old), None);
        store
            .update(|m| m.insert("a".into(), topic(new)).is_none())
            .unwrap();
        assert_eq!(store.name_of_id(old), None);
        assert_eq!(store.get_by_id(new), Some(topic(new)));
        // A failed or aborted change leaves the index as it was.
        assert!(!store.update(|m| m.remove("a").is_none()).unwrap());
        assert_eq!(store.name_of_id(new), Some("a".into()));
    }

    #[test]
    fn listeners_learn_of_deleted_and_replaced_topics_only() {
        use std::sync::{Arc, Mutex};
        let dir = tempfile::tempdir().unwrap();
        let store = TopicStore::open(dir.path()).unwrap();
        // Each call's removed topics, as (name, id).
        type Calls = Vec<Vec<(String, Uuid)>>;
        let seen: Arc<Mutex<Calls>> = Arc::default();
        let sink = Arc::clone(&seen);
        store.on_removed(Box::new(move |removed| {
            let names = removed.iter().map(|t| (t.name.clone(), t.id)).collect();
            sink.lock().unwrap().push(names);
        }));
        let topic = |name: &str, id, partitions| TopicMeta {
            name: name.into(),
            id,
            partitions,
            configs: Default::default(),
            internal: false,
        };
        let (a, b, a2) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        store
            .update(|m| {
                m.insert("a".into(), topic("a", a, 1));
                m.insert("b".into(), topic("b", b, 1));
                true
            })
            .unwrap();
        // More partitions, an aborted change: nothing removed.
        store
            .update(|m| m.insert("b".into(), topic("b", b, 4)).is_some())
            .unwrap();
        store.update(|m| m.remove("b").is_none()).unwrap();
        assert!(seen.lock().unwrap().is_empty());
        // "a" replaced by another topic of the same name (a cluster broker may see a deletion
        // and a re-creation in one metadata update), then "b" deleted.
        store
            .update(|m| m.insert("a".into(), topic("a", a2, 1)).is_some())
            .unwrap();
        store.update(|m| m.remove("b").is_some()).unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            vec![vec![("a".to_string(), a)], vec![("b".to_string(), b)]]
        );
    }

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        for bad in ["", ".", "..", "a b", "é", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }
}
