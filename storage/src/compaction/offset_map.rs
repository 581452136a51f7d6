//! `OffsetMap`: the latest offset of each key seen in the dirty section of a log (Kafka's
//! `SkimpyOffsetMap`, but exact: whole keys instead of hashes), with a memory budget.
//!
//! Invariant: `put` only moves a key's offset forward; `approx_bytes` grows with every new key,
//! so the cleaner can stop adding segments once the budget is used.

use std::collections::HashMap;

use crate::batch::compression::decompress;
use crate::batch::header::BatchHeader;
use crate::batch::records::RecordIter;
use crate::error::StorageError;
use crate::segment::Segment;

/// Bookkeeping charged per key on top of its bytes (hash table slot, Vec header, offset).
const ENTRY_OVERHEAD_BYTES: usize = 64;

pub(crate) struct OffsetMap {
    latest: HashMap<Vec<u8>, i64>,
    approx_bytes: usize,
    max_bytes: usize,
}

impl OffsetMap {
    pub(crate) fn new(max_bytes: usize) -> Self {
        OffsetMap {
            latest: HashMap::new(),
            approx_bytes: 0,
            max_bytes,
        }
    }

    pub(crate) fn put(&mut self, key: &[u8], offset: i64) {
        match self.latest.get_mut(key) {
            Some(latest) => *latest = (*latest).max(offset),
            None => {
                self.approx_bytes = self
                    .approx_bytes
                    .saturating_add(key.len() + ENTRY_OVERHEAD_BYTES);
                self.latest.insert(key.to_vec(), offset);
            }
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(key).copied()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.approx_bytes >= self.max_bytes
    }

    pub(crate) fn len(&self) -> usize {
        self.latest.len()
    }

    /// Adds every keyed record of the data batches of `segment`.
    pub(crate) fn add_segment(
        &mut self,
        segment: &Segment,
        max_decompressed_bytes: usize,
    ) -> Result<(), StorageError> {
        for info in segment.scan(0) {
            let info = info?;
            if info.view()?.is_control() {
                continue;
            }
            let bytes = crate::compaction::read_checked_batch(segment, &info)?;
            let header = BatchHeader::parse(&bytes)?;
            let section = header
                .records_bytes()
                .ok_or_else(|| StorageError::corrupt("batch truncated"))?;
            let data = decompress(header.compression()?, section, max_decompressed_bytes)?;
            for record in RecordIter::new(&data, header.records_count()) {
                let record = record?;
                if let Some(key) = record.key {
                    let offset = header
                        .base_offset()
                        .saturating_add(i64::from(record.offset_delta));
                    self.put(key, offset);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_highest_offset_and_counts_bytes() {
        let mut map = OffsetMap::new(2 * (ENTRY_OVERHEAD_BYTES + 1));
        map.put(b"a", 5);
        map.put(b"a", 3);
        assert_eq!(map.get(b"a"), Some(5));
        assert!(!map.is_full());
        map.put(b"b", 1);
        assert!(map.is_full());
        assert_eq!((map.len(), map.get(b"c")), (2, None));
    }
}
