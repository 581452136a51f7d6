//! Consumer groups: Kafka's classic group protocol (JoinGroup/SyncGroup/Heartbeat/LeaveGroup)
//! and committed offsets, stored in the internal topic `__consumer_offsets`.
//!
//! `GroupCoordinator` (with `join`, `membership`, `offsets`, `admin`, `replay`, `rebalance`)
//! is a pure state machine: it takes `now_ms`, answers or parks requests, and emits replies,
//! records and deadlines. `GroupRuntime` is the thin tokio layer around it: it owns the
//! timers' task, appends records to `__consumer_offsets` and makes them durable before any
//! reply goes out, and delivers parked JoinGroup/SyncGroup responses. `ownership` tracks
//! which `__consumer_offsets` partitions (and so which groups) this node serves; `loader`
//! replays a partition when it is loaded; `records` is Kafka's on-disk format; `partitioner`
//! maps a group to its partition as Kafka does.

pub mod admin;
pub mod api;
pub mod classic_group;
pub mod coordinator;
pub mod join;
pub mod loader;
pub mod member;
pub mod membership;
pub mod offsets;
pub mod ownership;
pub mod partitioner;
pub mod rebalance;
pub mod records;
pub mod replay;
pub mod runtime;
pub mod state;
pub mod timers;

#[cfg(test)]
mod runtime_tests;
#[cfg(test)]
mod tests;

pub use coordinator::{Answer, CoordinatorConfig, Effects, GroupCoordinator, MemberIds};
pub use runtime::GroupRuntime;
pub use state::GroupState;
