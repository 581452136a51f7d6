//! Cluster metadata of a single node: the cluster id, this node's identity, and the topics
//! (names, ids, partition counts, configs), persisted under `<data-dir>/meta/`.

mod meta_properties;
mod topic_store;

pub use meta_properties::{cluster_id_of, MetaError, MetaProperties};
pub use topic_store::{
    colliding_topic, validate_topic_name, TopicMeta, TopicStore, TopicStoreError,
};

/// Name of the internal offsets topic (used from the consumer-group work on).
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";
