//! Leader epochs of a partition (KIP-101, KIP-279; Kafka's `LeaderEpochFileCache`): which leader
//! epoch wrote which offsets, so that a replica can find where its log diverges from the
//! leader's (OffsetsForLeaderEpoch) instead of trusting the high watermark.
//!
//! `cache` holds the pure in-memory list and its Kafka semantics; `checkpoint` reads and writes
//! the `leader-epoch-checkpoint` file in Kafka's text format. `Log` owns one cache per partition
//! and persists it whenever it changes.

pub(crate) mod cache;
pub(crate) mod checkpoint;

pub(crate) use cache::LeaderEpochCache;
