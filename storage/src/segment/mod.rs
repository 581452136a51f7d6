//! Segments: the on-disk layout of a partition directory.
//!
//! # On-disk format (version 1)
//!
//! A partition directory holds:
//!
//! - `<base offset, 20 digits>.log`: whole v2 record batches, back to back, byte-for-byte as
//!   stored (baseOffset/partitionLeaderEpoch stamped, compressed batches still compressed). Base
//!   offsets increase; the file name is the base offset of the segment (<= its first batch).
//! - `<base>.index`: sparse offset index, 8-byte big-endian entries (offset - base: u32,
//!   file position of that batch: u32), one entry per `index_interval_bytes` of log, written just
//!   after the batch. While the segment is active the file is exactly its entries: each entry is
//!   appended with a positional write (the file grows by 8 bytes) and lookups use an in-memory
//!   copy; at most `segment_index_bytes` of entries, then the segment rolls. When the segment is
//!   sealed (roll, close) the file is synced and memory-mapped read-only for lookups.
//!   Entries are unchanged since version 1 began; only the active file's length changed: earlier
//!   builds preallocated it to `segment_index_bytes` (zeros past the entries) and wrote through a
//!   shared mapping. Such a file is only left by an unclean shutdown (close trimmed it), after
//!   which the active segment is always rebuilt, so both layouts open the same; an earlier build
//!   opens a directory written by this one as it is.
//! - `<base>.timeindex`: sparse time index, 12-byte entries (max timestamp so far: i64, offset -
//!   base of the batch that carries it: u32), timestamps strictly increasing; written, sized,
//!   limited and mapped like the offset index. The last entry of a sealed segment holds the
//!   segment's largest timestamp.
//! - `<offset>.snapshot`: producer state covering every batch below `offset` (see
//!   `producer_state::snapshot`). The newest two are kept.
//! - `log_start_offset`: ASCII decimal log start offset, when moved past the first segment base.
//! - `leader-epoch-checkpoint`: leader epochs and the offset each started at, in Kafka's
//!   `LeaderEpochCheckpointFile` text format: a version line `0`, a line with the number of
//!   entries, then one `<epoch> <start offset>` line per entry, oldest first, epochs and offsets
//!   strictly increasing (`0\n2\n0 0\n3 150\n`). Replaced whole (tmp, fsync, rename, fsync dir)
//!   whenever it changes: before the first batch of a newer epoch is written (leader appends use
//!   the caller's epoch, follower appends each batch's partitionLeaderEpoch), on truncation
//!   (entries at or past the new log end go) and when the log start moves (entries before it go;
//!   the epoch holding the new start keeps an entry starting there). On open, entries at or past
//!   the log end are dropped, the first is cut to the log start, and a missing or unparsable file
//!   is rebuilt from the batch headers' partitionLeaderEpoch (see `leader_epoch`).
//! - `clean_shutdown`: empty marker written by `Log::close`, removed by `Log::open`.
//! - `cleaner_checkpoint`: compacted logs only, `<first dirty offset> <next delete horizon ms>`
//!   (see `compaction::checkpoint`).
//! - `*.tmp`, `*.deleted`, `*.cleaned`: transient, deleted on open. `<base>.log.swap`: a committed
//!   compaction of the segments from `base`, completed on open (see `compaction::swap`).
//!
//! Offsets in a `.log` increase but may have gaps where compaction removed batches; a compacted
//! batch keeps its base offset and lastOffsetDelta and may hold fewer records (or none).
//!
//! Indexes are derived data: an index whose length is not a multiple of its entry size, whose
//! entries do not increase, or that points past the log, is rebuilt from the log. Without the
//! clean-shutdown marker the active segment is always rescanned with CRC checks, truncated to its
//! longest valid prefix of whole batches, and its indexes rebuilt (this also restores entries a
//! crash lost between a batch write and its index write, or tore in half). An index shorter than
//! its log is otherwise valid: lookups scan forward from its last entry.

pub(crate) mod file_io;
pub mod file_name;
pub(crate) mod index_file;
pub mod log_file;
pub(crate) mod offset_index;
#[allow(clippy::module_inception)]
pub(crate) mod segment;
pub(crate) mod time_index;

pub(crate) use segment::{BatchInfo, Segment};
