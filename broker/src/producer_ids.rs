//! Producer id allocation for InitProducerId.
//!
//! Ids are handed out from blocks; the end of the current block is persisted *before* any id
//! of it is used, so ids are never reused after a crash (some may be skipped).
//!
//! In a cluster each node hands out ids in a range of its own, `node_id << 40`, so ids are
//! unique cluster-wide without asking the controller (Kafka allocates blocks through its
//! controller instead): node ids are at most `MAX_NODE_ID` so every range fits a positive
//! i64, and a node that used up its 2^40 ids refuses to hand out more rather than spill into
//! the next node's range.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::durable_file::write_atomically;

const BLOCK_SIZE: i64 = 1000;

/// Bits of a producer id below the node's range.
const RANGE_BITS: u32 = 40;

/// Ids a node may hand out: `0..RANGE_SIZE` within its range.
const RANGE_SIZE: i64 = 1 << RANGE_BITS;

/// The largest node id whose producer id range fits a positive i64.
pub const MAX_NODE_ID: i32 = (1 << (63 - RANGE_BITS)) - 1;

#[derive(Debug)]
pub struct ProducerIdAllocator {
    path: PathBuf,
    /// (next id to hand out, end of the persisted block, exclusive).
    state: Mutex<(i64, i64)>,
    /// Added to every id: in a cluster each broker hands out ids in its own range
    /// (`node_id << 40`), so ids are unique cluster-wide without asking the controller.
    namespace: std::sync::atomic::AtomicI64,
}

impl ProducerIdAllocator {
    pub fn open(meta_dir: &Path) -> std::io::Result<Self> {
        let path = meta_dir.join("producer_id_block");
        let next = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<i64>()
                .map_err(|e| e.to_string())
                .and_then(|n| {
                    if (0..=RANGE_SIZE).contains(&n) {
                        Ok(n)
                    } else {
                        Err(format!("{n} is outside 0..={RANGE_SIZE}"))
                    }
                })
                .map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: {e}", path.display()),
                    )
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(Self {
            path,
            state: Mutex::new((next, next)),
            namespace: std::sync::atomic::AtomicI64::new(0),
        })
    }

    /// Hand out ids in `node_id`'s own range from now on (cluster nodes).
    pub fn set_namespace(&self, node_id: i32) {
        let ns = i64::from(node_id.clamp(0, MAX_NODE_ID)) << RANGE_BITS;
        self.namespace
            .store(ns, std::sync::atomic::Ordering::Relaxed);
    }

    /// A fresh producer id.
    pub fn allocate(&self) -> std::io::Result<i64> {
        let mut st = self.state.lock();
        if st.0 >= RANGE_SIZE {
            return Err(std::io::Error::other(
                "this node has handed out every producer id of its range",
            ));
        }
        if st.0 >= st.1 {
            let end = (st.1 + BLOCK_SIZE).min(RANGE_SIZE);
            write_atomically(&self.path, end.to_string().as_bytes())?;
            st.1 = end;
        }
        let id = st.0;
        st.0 += 1;
        Ok(id + self.namespace.load(std::sync::atomic::Ordering::Relaxed))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let a = ProducerIdAllocator::open(dir.path()).unwrap();
        let first: Vec<i64> = (0..3).map(|_| a.allocate().unwrap()).collect();
        assert_eq!(first, vec![0, 1, 2]);
        drop(a);
        let b = ProducerIdAllocator::open(dir.path()).unwrap();
        assert!(b.allocate().unwrap() >= BLOCK_SIZE);
    }

    #[test]
    fn a_node_stays_in_its_range_and_a_bad_block_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("producer_id_block");
        std::fs::write(&path, (RANGE_SIZE - 2).to_string()).unwrap();
        let a = ProducerIdAllocator::open(dir.path()).unwrap();
        a.set_namespace(MAX_NODE_ID);
        let base = i64::from(MAX_NODE_ID) << RANGE_BITS;
        assert_eq!(a.allocate().unwrap(), base + (RANGE_SIZE - 2));
        assert_eq!(a.allocate().unwrap(), i64::MAX);
        assert!(a.allocate().is_err(), "the range is used up");
        for bad in ["-1", "9223372036854775807", "x"] {
            std::fs::write(&path, bad).unwrap();
            assert!(ProducerIdAllocator::open(dir.path()).is_err(), "{bad}");
        }
    }
}
