//! Reads a `__consumer_offsets` partition from its start and yields the group records in it,
//! for replay at start-up.
//!
//! Batches are walked by their headers, checked by CRC, and decompressed with a bound;
//! control batches are skipped. A batch or record that cannot be decoded is logged and
//! skipped rather than failing start-up (one bad record must not make every group vanish).

use storage::batch::{decompress, BatchHeader, RecordIter};

use super::records::GroupRecord;
use crate::partition::{Partition, PartitionError};

/// Bytes read from the log per step.
const READ_CHUNK_BYTES: usize = 4 << 20;
/// Most bytes one batch may decompress to.
const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

/// Calls `apply` for every decodable group record of `partition`, in log order. Returns how
/// many records were applied.
pub fn load_partition(
    partition: &Partition,
    mut apply: impl FnMut(GroupRecord),
) -> Result<usize, PartitionError> {
    let mut offset = partition.log_start_offset()?;
    let end = partition.log_end_offset()?;
    let mut applied = 0usize;
    while offset < end {
        // Up to the log end, not the high watermark: a new leader's high watermark can lag its
        // log (it learns it from the old leader one fetch late), and its whole log is what
        // stays (Kafka loads to the log end too).
        let read = partition.read_below(offset, READ_CHUNK_BYTES, true, true)?;
        if read.records.is_empty() {
            break;
        }
        let mut pos = 0usize;
        let mut next = offset;
        while let Some(rest) = read.records.get(pos..) {
            if rest.is_empty() {
                break;
            }
            let header = match BatchHeader::parse(rest) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(partition = %partition.tp, offset = next, error = %e, "unreadable batch; stopping load of this partition");
                    return Ok(applied);
                }
            };
            let size = header.total_size();
            next = header.last_offset().saturating_add(1);
            if header.last_offset() >= offset {
                applied += apply_batch(partition, &header, offset, &mut apply);
            }
            pos = pos.saturating_add(size.max(1));
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(applied)
}

fn apply_batch(
    partition: &Partition,
    header: &BatchHeader<'_>,
    from_offset: i64,
    apply: &mut impl FnMut(GroupRecord),
) -> usize {
    let base = header.base_offset();
    let skip = |why: &dyn std::fmt::Display| {
        tracing::warn!(partition = %partition.tp, base_offset = base, error = %why, "skipping unreadable __consumer_offsets batch");
        0
    };
    if header.is_control() {
        return 0;
    }
    if let Err(e) = header.verify_crc() {
        return skip(&e);
    }
    let (codec, raw) = match (header.compression(), header.records_bytes()) {
        (Ok(c), Some(r)) => (c, r),
        (Err(e), _) => return skip(&e),
        (_, None) => return skip(&"truncated records"),
    };
    let data = match decompress(codec, raw, MAX_DECOMPRESSED_BYTES) {
        Ok(d) => d,
        Err(e) => return skip(&e),
    };
    let mut applied = 0;
    for record in RecordIter::new(&data, header.records_count()) {
        let record = match record {
            Ok(r) => r,
            Err(e) => return applied + skip(&e),
        };
        if base.saturating_add(i64::from(record.offset_delta)) < from_offset {
            continue;
        }
        let Some(key) = record.key else {
            continue;
        };
        match GroupRecord::decode(key, record.value) {
            Ok(Some(r)) => {
                apply(r);
                applied += 1;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(partition = %partition.tp, base_offset = base, error = %e, "skipping malformed group record");
            }
        }
    }
    applied
}
