//! The Sluice broker: configuration, the network server, request handlers, partitions and
//! metadata. The `sluice` binary (`main.rs`) wires them together.

pub mod clock;
pub mod cluster;
pub mod config;
pub mod controller;
mod durable_file;
mod filesystem_sync;
pub mod group;
pub mod handlers;
pub mod metadata;
pub mod metrics;
pub mod node;
pub mod open_files;
pub mod partition;
pub mod partition_dirs;
pub mod producer_ids;
pub mod run;
pub mod server;
pub mod sync_failure;
