//! Topic-level configs: which keys a topic accepts, the broker setting each falls back to, and
//! the resolved `storage::LogConfig` a partition runs with.
//!
//! Every topic config of Kafka 4 is accepted (tools such as Terraform, Strimzi and
//! `kafka-topics --config` set them). Those Sluice has no use for say so in their doc, which
//! DescribeConfigs returns: flush timing (Sluice fsyncs before acknowledging), segment jitter,
//! preallocation, tiered storage (only disabled), replication throttles and the broker's
//! recompression levels (Sluice never recompresses).

use std::collections::BTreeMap;

use super::settings::{BrokerSettings, ConfigSource, ConfigType};

/// One topic config key.
#[derive(Debug)]
pub struct TopicConfigDef {
    pub name: &'static str,
    /// The broker setting that supplies the default ("" if none, as for Kafka's tiered
    /// storage and throttle configs).
    pub broker_setting: &'static str,
    pub config_type: ConfigType,
    pub doc: &'static str,
    /// The default when the broker setting has no value (or there is none).
    pub fallback: &'static str,
}

const fn t(
    name: &'static str,
    broker_setting: &'static str,
    config_type: ConfigType,
    doc: &'static str,
) -> TopicConfigDef {
    with_fallback(name, broker_setting, config_type, doc, "")
}

const fn with_fallback(
    name: &'static str,
    broker_setting: &'static str,
    config_type: ConfigType,
    doc: &'static str,
    fallback: &'static str,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        broker_setting,
        config_type,
        doc,
        fallback,
    }
}

/// Every topic config Sluice accepts (Kafka 4's). Others are refused with INVALID_CONFIG.
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
        "message.timestamp.before.max.ms",
        "log.message.timestamp.before.max.ms",
        ConfigType::Long,
        "With CreateTime: how far in the past a record's timestamp may lie.",
    ),
    t(
        "message.timestamp.after.max.ms",
        "log.message.timestamp.after.max.ms",
        ConfigType::Long,
        "With CreateTime: how far in the future a record's timestamp may lie.",
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
    // Compaction settings (see storage::compaction); max.compaction.lag.ms is accepted only.
    t("delete.retention.ms", "log.cleaner.delete.retention.ms", ConfigType::Long, "How long tombstones are kept after the compaction that first kept them."),
    t("min.cleanable.dirty.ratio", "log.cleaner.min.cleanable.ratio", ConfigType::Double, "Dirty ratio that triggers compaction."),
    t("min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms", ConfigType::Long, "Minimum age before a record may be compacted."),
    t("max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms", ConfigType::Long, "Maximum age before a record must be compacted (accepted, not enforced)."),
    // Flush and deletion timing: Sluice fsyncs on every acknowledged produce by default and
    // deletes retired segments at once, which already meets these bounds.
    t("flush.messages", "log.flush.interval.messages", ConfigType::Long, "Kafka's forced-flush interval in messages; Sluice fsyncs before acknowledging, so every value is met."),
    t("file.delete.delay.ms", "log.segment.delete.delay.ms", ConfigType::Long, "Delay before deleting a retired segment; Sluice deletes at once."),
    with_fallback("flush.ms", "log.flush.interval.ms", ConfigType::Long, "Kafka's forced-flush interval; Sluice fsyncs before acknowledging (unless the broker's log.flush.interval.ms is set), so every value is met.", "9223372036854775807"),
    t("segment.jitter.ms", "log.roll.jitter.ms", ConfigType::Long, "Random jitter subtracted from segment.ms (accepted, not applied: segments roll at segment.ms)."),
    t("preallocate", "log.preallocate", ConfigType::Boolean, "Preallocate segment files (accepted: Sluice preallocates segment space in steps whatever the value)."),
    t("local.retention.ms", "log.local.retention.ms", ConfigType::Long, "Tiered storage's local retention (-2: retention.ms); Sluice has no remote tier, so retention.ms applies."),
    t("local.retention.bytes", "log.local.retention.bytes", ConfigType::Long, "Tiered storage's local retention (-2: retention.bytes); Sluice has no remote tier, so retention.bytes applies."),
    with_fallback("remote.storage.enable", "", ConfigType::Boolean, "Tiered storage: only false (Sluice has no remote tier).", "false"),
    with_fallback("remote.log.copy.disable", "", ConfigType::Boolean, "Tiered storage (accepted; Sluice has no remote tier).", "false"),
    with_fallback("remote.log.delete.on.disable", "", ConfigType::Boolean, "Tiered storage (accepted; Sluice has no remote tier).", "false"),
    with_fallback("leader.replication.throttled.replicas", "", ConfigType::List, "Replicas whose leader-side replication is throttled (accepted, not applied: Sluice has no replication quotas yet).", ""),
    with_fallback("follower.replication.throttled.replicas", "", ConfigType::List, "Replicas whose follower-side replication is throttled (accepted, not applied: Sluice has no replication quotas yet).", ""),
    t("compression.gzip.level", "compression.gzip.level", ConfigType::Int, "gzip level when the broker recompresses, which Sluice never does."),
    t("compression.lz4.level", "compression.lz4.level", ConfigType::Int, "lz4 level when the broker recompresses, which Sluice never does."),
    t("compression.zstd.level", "compression.zstd.level", ConfigType::Int, "zstd level when the broker recompresses, which Sluice never does."),
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
    let int = value.parse::<i64>().ok();
    let within = |lo: i64, hi: i64| int.is_some_and(|v| (lo..=hi).contains(&v));
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
        "segment.bytes" if int.unwrap_or(0) < 14 => bad("at least 14"),
        "max.message.bytes"
        | "index.interval.bytes"
        | "segment.index.bytes"
        | "message.timestamp.before.max.ms"
        | "message.timestamp.after.max.ms"
            if int.unwrap_or(-1) < 0 =>
        {
            bad("must not be negative")
        }
        "min.insync.replicas" if int.unwrap_or(0) < 1 => bad("at least 1"),
        // Kafka's validators for the recompression levels.
        "compression.gzip.level" if !(within(1, 9) || int == Some(-1)) => {
            bad("Value must be between 1 and 9, or -1")
        }
        "compression.lz4.level" if !within(1, 17) => bad("Value must be between 1 and 17"),
        "compression.zstd.level" if !within(-131_072, 22) => {
            bad("Value must be between -131072 and 22")
        }
        "remote.storage.enable" if value.trim().eq_ignore_ascii_case("true") => Err(
            "Tiered Storage functionality is disabled in the broker. Topic cannot be configured with remote log storage."
                .into(),
        ),
        "leader.replication.throttled.replicas" | "follower.replication.throttled.replicas"
            if !throttled_replicas_valid(value) =>
        {
            bad("must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],...")
        }
        _ => Ok(()),
    }
}

/// Kafka's `ThrottledReplicaListValidator`: `*`, or a list whose entries (trimmed) are each
/// empty or `partition:broker` in digits (`([0-9]+:[0-9]+)?`).
fn throttled_replicas_valid(value: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    value.trim() == "*"
        || value.split(',').all(|entry| {
            let entry = entry.trim();
            entry.is_empty()
                || entry
                    .split_once(':')
                    .is_some_and(|(p, b)| digits(p) && digits(b))
        })
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
        .unwrap_or_else(|| (def.fallback.to_string(), ConfigSource::DefaultConfig))
}

/// The `LogConfig` a partition of a topic with these configs runs with.
pub fn log_config(topic: &TopicConfigs, broker: &BrokerSettings) -> storage::LogConfig {
    let get = |name: &str| -> String {
        topic_config_def(name)
            .map(|d| effective_topic_config(d, topic, broker).0)
            .unwrap_or_default()
    };
    let num = |name: &str, fallback: i64| get(name).parse::<i64>().unwrap_or(fallback);
    let policy = get("cleanup.policy");
    let compact = policy.contains("compact");
    let delete = policy.contains("delete") || !compact;
    let defaults = storage::LogConfig::default();
    storage::LogConfig {
        segment_bytes: u64::try_from(num("segment.bytes", 1 << 30)).unwrap_or(1 << 30),
        segment_ms: num("segment.ms", defaults.segment_ms),
        // Retention deletes segments only where the policy includes delete: a compact-only
        // topic keeps the latest value of every key however old.
        retention_ms: if delete {
            num("retention.ms", defaults.retention_ms)
        } else {
            -1
        },
        retention_bytes: if delete {
            num("retention.bytes", -1)
        } else {
            -1
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
        timestamp_before_max_ms: num(
            "message.timestamp.before.max.ms",
            defaults.timestamp_before_max_ms,
        ),
        timestamp_after_max_ms: num(
            "message.timestamp.after.max.ms",
            defaults.timestamp_after_max_ms,
        ),
        compact,
        delete_retention_ms: num("delete.retention.ms", defaults.delete_retention_ms),
        min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio")
            .parse::<f64>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .unwrap_or(defaults.min_cleanable_dirty_ratio),
        min_compaction_lag_ms: num("min.compaction.lag.ms", defaults.min_compaction_lag_ms),
        producer_id_expiration_ms: broker.i64("producer.id.expiration.ms"),
        ..defaults
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_config_has_a_broker_default() {
        for d in TOPIC_CONFIGS
            .iter()
            .filter(|d| !d.broker_setting.is_empty())
        {
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
        // Kafka 4's other topic configs are accepted, with Kafka's checks.
        for (name, value) in [
            ("flush.ms", "1000"),
            ("segment.jitter.ms", "0"),
            ("preallocate", "true"),
            ("local.retention.ms", "-2"),
            ("local.retention.bytes", "1000"),
            ("remote.storage.enable", "false"),
            ("remote.log.copy.disable", "true"),
            ("leader.replication.throttled.replicas", "*"),
            ("follower.replication.throttled.replicas", "0:1, 1:2"),
            ("follower.replication.throttled.replicas", "0:1,,1:2"),
            ("compression.gzip.level", "-1"),
            ("compression.lz4.level", "17"),
            ("compression.zstd.level", "-5"),
        ] {
            assert!(validate_topic_config(name, value).is_ok(), "{name}={value}");
        }
        for (name, value) in [
            ("preallocate", "maybe"),
            ("remote.storage.enable", "true"),
            ("leader.replication.throttled.replicas", "0-1"),
            ("leader.replication.throttled.replicas", "1 : 2"),
            ("compression.gzip.level", "0"),
            ("compression.lz4.level", "18"),
            ("compression.zstd.level", "23"),
        ] {
            assert!(
                validate_topic_config(name, value).is_err(),
                "{name}={value}"
            );
        }
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
        assert!(!c.compact);
        topic.insert("cleanup.policy".into(), "compact".into());
        topic.insert("min.cleanable.dirty.ratio".into(), "0.25".into());
        topic.insert("delete.retention.ms".into(), "5".into());
        let c = log_config(&topic, &broker);
        assert!(c.compact);
        assert_eq!((c.retention_ms, c.delete_retention_ms), (-1, 5));
        assert_eq!(c.min_cleanable_dirty_ratio, 0.25);
        assert_eq!(c.min_compaction_lag_ms, 0);
        // Both policies: compacted and deleted by retention.
        topic.insert("cleanup.policy".into(), "compact,delete".into());
        let c = log_config(&topic, &broker);
        assert!(c.compact);
        assert_eq!(c.retention_ms, storage::config::SEVEN_DAYS_MS);
    }
}
