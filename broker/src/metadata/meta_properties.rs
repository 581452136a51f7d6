//! `meta/meta.properties`: the cluster id and node id a data directory belongs to, written
//! once when the directory is first used (as Kafka's `meta.properties`). Starting with a
//! different node id than the directory was formatted with is refused.

use std::path::Path;

use crate::durable_file::write_atomically;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    pub cluster_id: String,
    pub node_id: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("io error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("data directory belongs to node {found}, but this broker is node {configured}")]
    NodeIdMismatch { found: i32, configured: i32 },
}

impl MetaProperties {
    /// Loads the properties, or creates them with a fresh cluster id.
    pub fn load_or_create(meta_dir: &Path, node_id: i32) -> Result<Self, MetaError> {
        let path = meta_dir.join("meta.properties");
        let io = |source| MetaError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut cluster_id = None;
                let mut found_node = None;
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("cluster.id=") {
                        cluster_id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("node.id=") {
                        found_node = v.trim().parse::<i32>().ok();
                    }
                }
                let corrupt = |reason: &str| MetaError::Corrupt {
                    path: path.display().to_string(),
                    reason: reason.to_string(),
                };
                let cluster_id = cluster_id.ok_or_else(|| corrupt("no cluster.id"))?;
                let found = found_node.ok_or_else(|| corrupt("no node.id"))?;
                if found != node_id {
                    return Err(MetaError::NodeIdMismatch {
                        found,
                        configured: node_id,
                    });
                }
                Ok(Self {
                    cluster_id,
                    node_id,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(meta_dir).map_err(io)?;
                let props = Self {
                    cluster_id: new_cluster_id(),
                    node_id,
                };
                let text = format!(
                    "# Written by sluice when this data directory was first used.\nversion=1\ncluster.id={}\nnode.id={}\n",
                    props.cluster_id, props.node_id
                );
                write_atomically(&path, text.as_bytes()).map_err(io)?;
                Ok(props)
            }
            Err(e) => Err(io(e)),
        }
    }
}

/// A 22-character URL-safe base64 rendering of a random UUID, like Kafka's cluster ids.
fn new_cluster_id() -> String {
    cluster_id_of(uuid::Uuid::new_v4())
}

/// A UUID as a 22-character cluster id.
pub fn cluster_id_of(id: uuid::Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = id.as_u128();
    (0..22)
        .map(|i| {
            let idx = ((bits >> (i * 6)) & 63) as usize;
            char::from(ALPHABET.get(idx).copied().unwrap_or(b'A'))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_loaded_and_node_id_checked() {
        let dir = tempfile::tempdir().unwrap();
        let a = MetaProperties::load_or_create(dir.path(), 1).unwrap();
        assert_eq!(a.cluster_id.len(), 22);
        let b = MetaProperties::load_or_create(dir.path(), 1).unwrap();
        assert_eq!(a, b);
        assert!(matches!(
            MetaProperties::load_or_create(dir.path(), 2),
            Err(MetaError::NodeIdMismatch { .. })
        ));
    }
}
