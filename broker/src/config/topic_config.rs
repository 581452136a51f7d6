//! Topic-level configs: which keys a topic accepts, the broker setting each falls back to, and
//! the resolved `storage::LogConfig` a partition runs with.

use std::collections::BTreeMap;

use super::settings::{BrokerSettings, ConfigSource, ConfigType};

/// One topic config key.
#[derive(Debug)]
pub struct TopicConfigDef {
    pub name: &'static str,
    /// The broker setting that supplies the default.
    pub broker_setting: &'static str,
    pub config_type: ConfigType,
    pub doc: &'static str,
}

const fn t(
    name: &'static str,
    broker_setting: &'static str,
    config_type: ConfigType,
    doc: &'static str,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        broker_setting,
        config_type,
        doc,
    }
}

/// Every topic config Sluice honours. Others are refused with INVALID_CONFIG.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    t(
        "cleanup.policy",
        "log.cleanup.policy",
        ConfigType::List,
        "delete or compact.",
    ),
    t(
        "compression.type",
        "compression.type",
        ConfigType::String,
        "Only 'producer'.",
    ),
    t(
        "max.message.bytes",
        "message.max.bytes",
        ConfigType::Int,
        "Largest record batch.",
    ),
    t(
        "message.timestamp.type",
        "log.message.timestamp.type",
        ConfigType::String,
        "CreateTime or LogAppendTime.",
    ),
    t(
        "min.insync.replicas",
        "min.insync.replicas",
        ConfigType::Int,
        "Minimum ISR size for acks=all.",
    ),
    t(
        "retention.bytes",
        "log.retention.bytes",
        ConfigType::Long,
        "Size-based retention per partition.",
    ),
    t(
        "retention.ms",
        "log.retention.ms",
        ConfigType::Long,
        "Time-based retention.",
    ),
    t(
        "segment.bytes",
        "log.segment.bytes",
        ConfigType::Int,
        "Segment size.",
    ),
    t(
        "segment.ms",
        "log.roll.ms",
        ConfigType::Long,
        "Segment age before rolling.",
    ),
    t(
        "segment.index.bytes",
        "log.index.size.max.bytes",
        ConfigType::Int,
        "Maximum index file size.",
    ),
    t(
        "index.interval.bytes",
        "log.index.interval.bytes",
        ConfigType::Int,
        "Bytes between index entries.",
    ),
    t(
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
        ConfigType::Boolean,
        "Allow out-of-sync leaders.",
    ),
    // Compaction settings: accepted and stored so that clients creating compacted topics work;
    // they take effect when log compaction lands (until then compacted topics keep everything).
    t("delete.retention.ms", "log.cleaner.delete.retention.ms", ConfigType::Long, "How long tombstones are kept after compaction (effective once compaction lands)."),
    t("min.cleanable.dirty.ratio", "log.cleaner.min.cleanable.ratio", ConfigType::Double, "Dirty ratio that triggers compaction (effective once compaction lands)."),
    t("min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms", ConfigType::Long, "Minimum age before a record may be compacted (effective once compaction lands)."),
    t("max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms", ConfigType::Long, "Maximum age before a record must be compacted (effective once compaction lands)."),
    // Flush and deletion timing: Sluice fsyncs on every acknowledged produce by default and
    // deletes retired segments at once, which already meets these bounds.
    t("flush.messages", "log.flush.interval.messages", ConfigType::Long, "Kafka's forced-flush interval in messages; Sluice fsyncs before acknowledging, so every value is met."),
    t("file.delete.delay.ms", "log.segment.delete.delay.ms", ConfigType::Long, "Delay before deleting a retired segment; Sluice deletes at once."),
];

/// The configs explicitly set on one topic.
pub type TopicConfigs = BTreeMap<String, String>;

pub fn topic_config_def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Validates one topic config; the error is the message for INVALID_CONFIG.
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), String> {
    let d = topic_config_def(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
    d.config_type
        .validate(value)
        .map_err(|e| format!("Invalid value for {name}: {e}"))?;
    let bad = |why: &str| {
        Err(format!(
            "Invalid value {value} for configuration {name}: {why}"
        ))
    };
    match name {
        "message.timestamp.type" if !matches!(value, "CreateTime" | "LogAppendTime") => {
            bad("must be CreateTime or LogAppendTime")
        }
        "compression.type" if value != "producer" => {
            bad("Sluice keeps the producer's compression; only 'producer' is supported")
        }
        "cleanup.policy"
            if !value
                .split(',')
                .all(|p| matches!(p.trim(), "delete" | "compact")) =>
        {
            bad("must be a list of delete, compact")
        }
        "segment.bytes" if value.parse::<i64>().unwrap_or(0) < 14 => bad("at least 14"),
        "max.message.bytes" | "index.interval.bytes" | "segment.index.bytes"
            if value.parse::<i64>().unwrap_or(-1) < 0 =>
        {
            bad("must not be negative")
        }
        "min.insync.replicas" if value.parse::<i64>().unwrap_or(0) < 1 => bad("at least 1"),
        _ => Ok(()),
    }
}

/// A topic config's effective value and where it came from.
pub fn effective_topic_config(
    def: &TopicConfigDef,
    topic: &TopicConfigs,
    broker: &BrokerSettings,
) -> (String, ConfigSource) {
    if let Some(v) = topic.get(def.name) {
        return (v.clone(), ConfigSource::DynamicTopicConfig);
    }
    broker
        .get(def.broker_setting)
        .unwrap_or_else(|| (String::new(), ConfigSource::DefaultConfig))
}

/// The `LogConfig` a partition of a topic with these configs runs with.
pub fn log_config(topic: &TopicConfigs, broker: &BrokerSettings) -> storage::LogConfig {
    let get = |name: &str| -> String {
        topic_config_def(name)
            .map(|d| effective_topic_config(d, topic, broker).0)
            .unwrap_or_default()
    };
    let num = |name: &str, fallback: i64| get(name).parse::<i64>().unwrap_or(fallback);
    let compact = get("cleanup.policy").contains("compact");
    let defaults = storage::LogConfig::default();
    storage::LogConfig {
        segment_bytes: u64::try_from(num("segment.bytes", 1 << 30)).unwrap_or(1 << 30),
        segment_ms: num("segment.ms", defaults.segment_ms),
        // Until compaction lands, compacted topics keep everything rather than deleting
        // by time or size (deleting would lose the latest value of a key).
        retention_ms: if compact {
            -1
        } else {
            num("retention.ms", defaults.retention_ms)
        },
        retention_bytes: if compact {
            -1
        } else {
            num("retention.bytes", -1)
        },
        index_interval_bytes: u32::try_from(num("index.interval.bytes", 4096)).unwrap_or(4096),
        segment_index_bytes: u32::try_from(num("segment.index.bytes", 10 << 20))
            .unwrap_or(10 << 20),
        max_message_bytes: u32::try_from(num("max.message.bytes", 1_048_588)).unwrap_or(1_048_588),
        timestamp_type: if get("message.timestamp.type") == "LogAppendTime" {
            storage::TimestampType::LogAppendTime
        } else {
            storage::TimestampType::CreateTime
        },
        ..defaults
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_config_has_a_broker_default() {
        for d in TOPIC_CONFIGS {
            assert!(
                BrokerSettings::definition(d.broker_setting).is_some(),
                "{} -> {}",
                d.name,
                d.broker_setting
            );
        }
    }

    #[test]
    fn validation() {
        assert!(validate_topic_config("retention.ms", "1000").is_ok());
        assert!(validate_topic_config("retention.ms", "soon").is_err());
        assert!(validate_topic_config("no.such", "1").is_err());
        assert!(validate_topic_config("cleanup.policy", "compact,delete").is_ok());
        assert!(validate_topic_config("cleanup.policy", "shred").is_err());
        assert!(validate_topic_config("compression.type", "gzip").is_err());
        // Kafka's compaction settings are accepted (clients set them on compacted topics).
        assert!(validate_topic_config("delete.retention.ms", "1000").is_ok());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "0.1").is_ok());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "lots").is_err());
    }

    #[test]
    fn resolution_prefers_topic_then_broker() {
        let mut broker = BrokerSettings::default();
        broker.set("log.segment.bytes", "2048").unwrap_or_default();
        let mut topic = TopicConfigs::new();
        topic.insert("message.timestamp.type".into(), "LogAppendTime".into());
        let c = log_config(&topic, &broker);
        assert_eq!(c.segment_bytes, 2048);
        assert_eq!(c.timestamp_type, storage::TimestampType::LogAppendTime);
        topic.insert("cleanup.policy".into(), "compact".into());
        assert_eq!(log_config(&topic, &broker).retention_ms, -1);
    }
}
