//! Kafka-named broker settings: the table of what Sluice understands, their defaults (Kafka's,
//! unless a note says otherwise), and the values set at start-up.
//!
//! Invariant: every value stored in `BrokerSettings` has been parsed against its type, so the
//! typed getters cannot fail on a known name; asking for an unknown name is a programming
//! error caught by the table test.

use std::collections::BTreeMap;

/// The type of a setting, as DescribeConfigs reports it (KIP-569 `config_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Short,
    Long,
    Double,
    List,
    Class,
    Password,
}

impl ConfigType {
    /// The code DescribeConfigs v3+ uses.
    pub fn code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Short => 4,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
            ConfigType::Class => 8,
            ConfigType::Password => 9,
        }
    }

    /// Checks that `value` parses as this type.
    pub fn validate(self, value: &str) -> Result<(), String> {
        let ok = match self {
            ConfigType::Boolean => matches!(value, "true" | "false"),
            ConfigType::Int => value.parse::<i32>().is_ok(),
            ConfigType::Short => value.parse::<i16>().is_ok(),
            ConfigType::Long => value.parse::<i64>().is_ok(),
            ConfigType::Double => value.parse::<f64>().is_ok(),
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(format!("{value:?} is not a valid {self:?}"))
        }
    }
}

/// Where a config value came from (DescribeConfigs v1+ `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopicConfig,
    StaticBrokerConfig,
    DefaultConfig,
}

impl ConfigSource {
    pub fn code(self) -> i8 {
        match self {
            ConfigSource::DynamicTopicConfig => 1,
            ConfigSource::StaticBrokerConfig => 4,
            ConfigSource::DefaultConfig => 5,
        }
    }
}

/// One broker setting Sluice understands.
#[derive(Debug)]
pub struct SettingDef {
    pub name: &'static str,
    pub default: Option<&'static str>,
    pub config_type: ConfigType,
    pub doc: &'static str,
}

const fn def(
    name: &'static str,
    default: Option<&'static str>,
    config_type: ConfigType,
    doc: &'static str,
) -> SettingDef {
    SettingDef {
        name,
        default,
        config_type,
        doc,
    }
}

use ConfigType as T;

/// Every broker setting Sluice understands. Settings not listed are refused at start-up.
pub const BROKER_SETTINGS: &[SettingDef] = &[
    def("num.partitions", Some("1"), T::Int, "Default number of partitions for new topics."),
    def("default.replication.factor", Some("1"), T::Int, "Default replication factor for new topics."),
    def("auto.create.topics.enable", Some("true"), T::Boolean, "Create a topic when a client asks for its metadata."),
    def("delete.topic.enable", Some("true"), T::Boolean, "Allow DeleteTopics."),
    def("log.segment.bytes", Some("1073741824"), T::Int, "Size at which a segment is rolled."),
    def("log.roll.ms", Some("604800000"), T::Long, "Age at which a segment is rolled."),
    def("log.retention.ms", Some("604800000"), T::Long, "Delete segments older than this; -1 keeps them forever."),
    def("log.retention.bytes", Some("-1"), T::Long, "Delete old segments while a partition is larger than this; -1 disables."),
    def("log.retention.check.interval.ms", Some("300000"), T::Long, "How often retention is applied."),
    def("log.index.interval.bytes", Some("4096"), T::Int, "Bytes between offset index entries."),
    def("log.index.size.max.bytes", Some("10485760"), T::Int, "Maximum size of an offset or time index file."),
    def("log.message.timestamp.type", Some("CreateTime"), T::String, "CreateTime or LogAppendTime."),
    def("log.message.timestamp.before.max.ms", Some("9223372036854775807"), T::Long, "With CreateTime: a produced record whose timestamp lies further in the past is refused (INVALID_TIMESTAMP)."),
    def("log.message.timestamp.after.max.ms", Some("3600000"), T::Long, "With CreateTime: a produced record whose timestamp lies further in the future is refused (INVALID_TIMESTAMP); Kafka 4.0's default, one hour."),
    def("log.cleanup.policy", Some("delete"), T::List, "delete, compact, or both (compacted logs keep the latest record per key)."),
    def("log.flush.interval.ms", None, T::Long, "Unset (default): acknowledge produce only after fsync, with group commit. Set: flush every this many ms and acknowledge after the write."),
    def("message.max.bytes", Some("1048588"), T::Int, "Largest record batch accepted."),
    def("min.insync.replicas", Some("1"), T::Int, "Minimum in-sync replicas for acks=all."),
    def("unclean.leader.election.enable", Some("false"), T::Boolean, "Allow electing an out-of-sync leader."),
    def("compression.type", Some("producer"), T::String, "Only 'producer' (keep the producer's compression) is supported."),
    def("compression.gzip.level", Some("-1"), T::Int, "Default compression.gzip.level: used only when the broker recompresses, which Sluice never does."),
    def("compression.lz4.level", Some("9"), T::Int, "Default compression.lz4.level: used only when the broker recompresses, which Sluice never does."),
    def("compression.zstd.level", Some("3"), T::Int, "Default compression.zstd.level: used only when the broker recompresses, which Sluice never does."),
    def("log.roll.jitter.ms", Some("0"), T::Long, "Default segment.jitter.ms (accepted, not applied)."),
    def("log.preallocate", Some("false"), T::Boolean, "Default preallocate (accepted: Sluice preallocates segment space whatever the value)."),
    def("log.local.retention.ms", Some("-2"), T::Long, "Default local.retention.ms: tiered storage's, unused (Sluice has no remote tier)."),
    def("log.local.retention.bytes", Some("-2"), T::Long, "Default local.retention.bytes: tiered storage's, unused (Sluice has no remote tier)."),
    def("socket.request.max.bytes", Some("104857600"), T::Int, "Largest request frame accepted; larger ones close the connection."),
    def("max.connections", Some("10000"), T::Int, "Connections accepted at once (Sluice caps the default at 10000)."),
    def("max.connections.per.ip", Some("2147483647"), T::Int, "Connections accepted at once from one client address; more are closed as they come."),
    def("max.connections.per.ip.overrides", Some(""), T::String, "Per-address exceptions to max.connections.per.ip: a comma-separated list of host:count (a host name or an address)."),
    def("connections.max.idle.ms", Some("600000"), T::Long, "Close connections idle for this long."),
    def("queued.max.requests", Some("500"), T::Int, "Requests in flight per connection before reading pauses."),
    def("fetch.max.bytes", Some("57671680"), T::Int, "Largest fetch response."),
    def("max.incremental.fetch.session.cache.slots", Some("1000"), T::Int, "Fetch sessions (KIP-227) held at once; when full, a follower's or a larger consumer's session takes the place of the consumer's with the fewest partitions."),
    def("sluice.flush.shared", Some("true"), T::Boolean, "Sluice, with fsync'd acks on ext4 or XFS and Linux 5.17 or later (elsewhere ignored, with a warning): one thread makes every partition's appends durable together, with one fdatasync when one partition has appended since its last round and one syncfs of the data directory's filesystem when several have (one journal commit and cache flush for all, where concurrent fdatasyncs stall one another on slow disks). false: each partition fdatasyncs its own segment. With true, a failed syncfs fails every partition it covered (the broker halts on any failed sync), and it also flushes whatever else was written to that filesystem."),
    def("sluice.fetch.sendfile", Some("false"), T::Boolean, "Sluice: send fetched record batches from the segment file with sendfile instead of the default: writing them from a memory mapping of the segment (answers with 64 KiB or more of records) or reading them into a buffer and writing that (smaller ones), cheaper for broker and client on loopback in Sluice's benchmark."),
    def("broker.session.timeout.ms", Some("9000"), T::Int, "Cluster: a broker that has not heartbeated to the controller for this long is fenced and loses its leaderships."),
    def("broker.heartbeat.interval.ms", Some("2000"), T::Int, "Cluster: how often a broker heartbeats to the active controller."),
    def("replica.lag.time.max.ms", Some("30000"), T::Long, "Cluster: a follower not caught up with the leader for this long leaves the ISR."),
    def("replica.fetch.max.bytes", Some("1048576"), T::Int, "Cluster: bytes a follower asks for per partition in one fetch."),
    def("replica.fetch.response.max.bytes", Some("10485760"), T::Int, "Cluster: bytes a follower asks for in one fetch."),
    def("replica.fetch.wait.max.ms", Some("500"), T::Int, "Cluster: longest a follower fetch waits for data on the leader."),
    def("replica.fetch.backoff.ms", Some("1000"), T::Int, "Cluster: pause before a follower retries after an error."),
    def("replica.high.watermark.checkpoint.interval.ms", Some("5000"), T::Long, "Cluster: how often the partitions' high watermarks are written to replication-offset-checkpoint (and at shutdown); a restarted replica starts at its checkpointed high watermark, not its log end."),
    def("offsets.topic.replication.factor", Some("3"), T::Short, "Cluster: replication factor of __consumer_offsets (capped by the number of brokers)."),
    def("replica.selector.class", None, T::Class, "Cluster: unset (default), consumers read from leaders; org.apache.kafka.common.replica.RackAwareReplicaSelector sends a consumer with client.rack to an in-sync follower in its rack (KIP-392)."),
    def("auto.leader.rebalance.enable", Some("true"), T::Boolean, "Cluster: move leadership back to the preferred replica when it is in sync."),
    def("leader.imbalance.check.interval.seconds", Some("300"), T::Long, "Cluster: how often the active controller moves leadership back to preferred replicas."),
    def("group.initial.rebalance.delay.ms", Some("3000"), T::Int, "Delay before the first rebalance of a new group."),
    def("offsets.topic.num.partitions", Some("50"), T::Int, "Partitions of __consumer_offsets."),
    def("offsets.topic.segment.bytes", Some("104857600"), T::Int, "Segment size of __consumer_offsets (set when it is created), kept small so that compaction keeps the log a coordinator loads small."),
    def("group.min.session.timeout.ms", Some("6000"), T::Int, "Smallest session timeout a group member may ask for."),
    def("group.max.session.timeout.ms", Some("1800000"), T::Int, "Largest session timeout a group member may ask for."),
    def("group.max.size", Some("2147483647"), T::Int, "Most members a consumer group may have."),
    def("offsets.retention.minutes", Some("10080"), T::Int, "Committed offsets of a group that stays empty expire after this long."),
    def("offsets.retention.check.interval.ms", Some("600000"), T::Long, "How often expired offsets are looked for."),
    def("offset.metadata.max.bytes", Some("4096"), T::Int, "Largest metadata string accepted with a committed offset."),
    def("offsets.commit.timeout.ms", Some("5000"), T::Int, "Longest an offset commit waits for its record to be durable."),
    def("log.cleaner.enable", Some("true"), T::Boolean, "Compact topics with cleanup.policy=compact (checked every log.retention.check.interval.ms)."),
    def("log.cleaner.delete.retention.ms", Some("86400000"), T::Long, "Default delete.retention.ms: tombstones live this long after the compaction that first kept them."),
    def("log.cleaner.min.cleanable.ratio", Some("0.5"), T::Double, "Default min.cleanable.dirty.ratio."),
    def("log.cleaner.min.compaction.lag.ms", Some("0"), T::Long, "Default min.compaction.lag.ms."),
    def("log.cleaner.max.compaction.lag.ms", Some("9223372036854775807"), T::Long, "Default max.compaction.lag.ms (accepted, not enforced)."),
    def("log.flush.interval.messages", Some("9223372036854775807"), T::Long, "Kafka's forced-flush interval in messages; Sluice fsyncs before acknowledging."),
    def("log.segment.delete.delay.ms", Some("60000"), T::Long, "Kafka's delay before deleting retired segments; Sluice deletes at once."),
    def("producer.id.expiration.ms", Some("86400000"), T::Int, "An idempotent producer idle this long (by its last batch's timestamp) is forgotten, checked every log.retention.check.interval.ms."),
];

/// Values of broker settings: explicit ones plus the defaults.
#[derive(Debug, Clone, Default)]
pub struct BrokerSettings {
    /// Settings given explicitly (file or `--set`), validated against their type.
    explicit: BTreeMap<String, String>,
}

/// The entries of `max.connections.per.ip.overrides`: a comma-separated list of `host:count`
/// (a host name, an IPv4 address, or an IPv6 one, bracketed or not), as (host, count).
pub fn connection_overrides(list: &str) -> Result<Vec<(&str, usize)>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let bad =
                || format!("max.connections.per.ip.overrides: cannot read {entry:?} as host:count");
            let (host, count) = entry.rsplit_once(':').ok_or_else(bad)?;
            let count = count.trim().parse::<u32>().map_err(|_| bad())?;
            let host = host.trim().trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(bad());
            }
            Ok((host, usize::try_from(count).map_err(|_| bad())?))
        })
        .collect()
}

impl BrokerSettings {
    pub fn definition(name: &str) -> Option<&'static SettingDef> {
        BROKER_SETTINGS.iter().find(|d| d.name == name)
    }

    /// Sets a value, refusing unknown names and values that don't parse.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let d = Self::definition(name).ok_or_else(|| format!("{name}: unknown broker setting"))?;
        d.config_type
            .validate(value)
            .map_err(|e| format!("{name}: {e}"))?;
        if name == "producer.id.expiration.ms" && value.trim().parse::<i64>().unwrap_or(0) < 1 {
            return Err(format!("{name}: at least 1 (Kafka's range)"));
        }
        if name == "log.message.timestamp.type" && !matches!(value, "CreateTime" | "LogAppendTime")
        {
            return Err(format!("{name}: must be CreateTime or LogAppendTime"));
        }
        if matches!(
            name,
            "log.message.timestamp.before.max.ms" | "log.message.timestamp.after.max.ms"
        ) && value.parse::<i64>().is_ok_and(|v| v < 0)
        {
            return Err(format!("{name}: must not be negative"));
        }
        if name == "max.connections.per.ip" && value.parse::<i64>().is_ok_and(|v| v < 0) {
            return Err(format!("{name}: must not be negative"));
        }
        if name == "max.connections.per.ip.overrides" {
            connection_overrides(value)?;
        }
        if name == "compression.type" && value != "producer" {
            return Err(format!("{name}: only 'producer' is supported"));
        }
        self.explicit.insert(name.to_string(), value.to_string());
        Ok(())
    }

    /// The value and its source, `None` if unset with no default.
    pub fn get(&self, name: &str) -> Option<(String, ConfigSource)> {
        if let Some(v) = self.explicit.get(name) {
            return Some((v.clone(), ConfigSource::StaticBrokerConfig));
        }
        Self::definition(name)
            .and_then(|d| d.default)
            .map(|v| (v.to_string(), ConfigSource::DefaultConfig))
    }

    pub fn str(&self, name: &str) -> Option<String> {
        self.get(name).map(|(v, _)| v)
    }

    pub fn i64(&self, name: &str) -> i64 {
        self.str(name).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    pub fn opt_i64(&self, name: &str) -> Option<i64> {
        self.str(name).and_then(|v| v.parse().ok())
    }

    pub fn i32(&self, name: &str) -> i32 {
        self.str(name).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    pub fn bool(&self, name: &str) -> bool {
        self.str(name).is_some_and(|v| v == "true")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_as_their_type_and_names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for d in BROKER_SETTINGS {
            assert!(seen.insert(d.name), "duplicate {}", d.name);
            if let Some(v) = d.default {
                assert!(d.config_type.validate(v).is_ok(), "{}", d.name);
            }
        }
    }

    #[test]
    fn explicit_values_win_and_report_their_source() {
        let mut s = BrokerSettings::default();
        assert_eq!(
            s.get("num.partitions"),
            Some(("1".to_string(), ConfigSource::DefaultConfig))
        );
        s.set("num.partitions", "6").unwrap_or_default();
        assert_eq!(s.i32("num.partitions"), 6);
        assert_eq!(
            s.get("num.partitions").map(|(_, src)| src),
            Some(ConfigSource::StaticBrokerConfig)
        );
        assert!(s.set("log.message.timestamp.type", "Other").is_err());
        assert!(s.set("compression.type", "gzip").is_err());
        assert!(s.set("producer.id.expiration.ms", "0").is_err());
        assert!(s.set("producer.id.expiration.ms", "1").is_ok());
        assert_eq!(s.opt_i64("log.flush.interval.ms"), None);
    }
}
