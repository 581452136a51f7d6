//! Prometheus metrics: what is counted, and the text exposition served by `metrics::http`.
//!
//! Hot-path updates are lock-free atomics inside `prometheus-client` families; per-partition
//! gauges (log end offset, high watermark, size) are read from the partitions at scrape time,
//! so they cost nothing between scrapes. So is consumer-group lag: the HTTP handler passes the
//! coordinator's committed offsets to `render`, which subtracts them from high watermarks.

pub mod http;

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::partition::PartitionManager;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupPartitionLabels {
    pub group: String,
    pub topic: String,
    pub partition: String,
}

/// One committed offset of a consumer group, for the lag gauge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~26 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

/// Every metric the broker exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<ApiLabels, Counter>,
    pub request_seconds: Family<ApiLabels, Histogram, fn() -> Histogram>,
    pub bytes_in: Family<TopicLabels, Counter>,
    pub bytes_out: Family<TopicLabels, Counter>,
    pub records_in: Family<TopicLabels, Counter>,
    pub fsync_seconds: Histogram,
    pub connections: Gauge,
    pub connections_accepted: Counter,
    /// Segment log files keeping a read mapping (`storage::segment::log_file`), set at scrape
    /// time.
    log_file_mappings: Gauge,
    log_end_offset: Family<PartitionLabels, Gauge>,
    high_watermark: Family<PartitionLabels, Gauge>,
    log_start_offset: Family<PartitionLabels, Gauge>,
    partition_bytes: Family<PartitionLabels, Gauge>,
    pub under_replicated: Gauge,
    /// 1 on the active controller, else 0 (Kafka's `ActiveControllerCount`), set at scrape time.
    pub active_controller: Gauge,
    /// Consumer lag per group and partition, set by the group coordinator at scrape time.
    pub group_lag: Family<GroupPartitionLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let requests = Family::<ApiLabels, Counter>::default();
        registry.register("requests", "Requests handled, by API", requests.clone());
        let request_seconds =
            Family::<ApiLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its response being ready, by API",
            request_seconds.clone(),
        );
        let bytes_in = Family::<TopicLabels, Counter>::default();
        registry.register(
            "bytes_in",
            "Record batch bytes appended, by topic",
            bytes_in.clone(),
        );
        let bytes_out = Family::<TopicLabels, Counter>::default();
        registry.register(
            "bytes_out",
            "Record batch bytes served to fetches, by topic",
            bytes_out.clone(),
        );
        let records_in = Family::<TopicLabels, Counter>::default();
        registry.register(
            "records_in",
            "Records appended, by topic",
            records_in.clone(),
        );
        let fsync_seconds = latency_histogram();
        registry.register(
            "fsync_duration_seconds",
            "Duration of log syncs: one per flush round (an fdatasync, or a syncfs covering several partitions)",
            fsync_seconds.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        let log_file_mappings = Gauge::default();
        registry.register(
            "log_file_mappings",
            "Segment log files keeping a read-only mapping for sending fetched data (at most 4,096)",
            log_file_mappings.clone(),
        );
        let connections_accepted = Counter::default();
        registry.register(
            "connections_accepted",
            "Client connections accepted",
            connections_accepted.clone(),
        );
        let log_end_offset = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "log_end_offset",
            "Next offset to be written, by partition",
            log_end_offset.clone(),
        );
        let high_watermark = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "high_watermark",
            "Offset below which records are visible to consumers, by partition",
            high_watermark.clone(),
        );
        let log_start_offset = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "log_start_offset",
            "First offset still stored, by partition",
            log_start_offset.clone(),
        );
        let partition_bytes = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "partition_size_bytes",
            "Bytes stored, by partition",
            partition_bytes.clone(),
        );
        let under_replicated = Gauge::default();
        registry.register(
            "under_replicated_partitions",
            "Partitions whose ISR is smaller than their replica set",
            under_replicated.clone(),
        );
        let active_controller = Gauge::default();
        registry.register(
            "active_controller_count",
            "1 on the node that is the active controller (a single node always is), else 0",
            active_controller.clone(),
        );
        let group_lag = Family::<GroupPartitionLabels, Gauge>::default();
        registry.register(
            "consumer_group_lag",
            "High watermark minus committed offset, by group and partition",
            group_lag.clone(),
        );
        Self {
            registry,
            requests,
            request_seconds,
            bytes_in,
            bytes_out,
            records_in,
            fsync_seconds,
            connections,
            connections_accepted,
            log_file_mappings,
            log_end_offset,
            high_watermark,
            log_start_offset,
            partition_bytes,
            under_replicated,
            active_controller,
            group_lag,
        }
    }

    /// Records one handled request.
    pub fn observe_request(&self, api: &str, elapsed: Duration) {
        let labels = ApiLabels {
            api: api.to_string(),
        };
        self.requests.get_or_create(&labels).inc();
        self.request_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    pub fn add_bytes_in(&self, topic: &str, bytes: usize, records: u64) {
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        self.bytes_in
            .get_or_create(&labels)
            .inc_by(u64::try_from(bytes).unwrap_or(u64::MAX));
        self.records_in.get_or_create(&labels).inc_by(records);
    }

    pub fn add_bytes_out(&self, topic: &str, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.bytes_out
            .get_or_create(&TopicLabels {
                topic: topic.to_string(),
            })
            .inc_by(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// Refreshes the per-partition gauges and the consumer-group lag (high watermark minus
    /// each `committed` offset, never below 0, for partitions this node hosts) and renders
    /// everything in the Prometheus text format.
    pub fn render(&self, partitions: &PartitionManager, committed: &[CommittedOffset]) -> String {
        self.group_lag.clear();
        for c in committed {
            let Some(p) = partitions.get(&c.topic, c.partition) else {
                continue;
            };
            let lag = p.high_watermark().saturating_sub(c.offset).max(0);
            self.group_lag
                .get_or_create(&GroupPartitionLabels {
                    group: c.group.clone(),
                    topic: c.topic.clone(),
                    partition: c.partition.to_string(),
                })
                .set(lag);
        }
        self.log_end_offset.clear();
        self.high_watermark.clear();
        self.log_start_offset.clear();
        self.partition_bytes.clear();
        let mut under_replicated = 0i64;
        for p in partitions.all() {
            if p.is_under_replicated() {
                under_replicated += 1;
            }
            let labels = PartitionLabels {
                topic: p.tp.topic.clone(),
                partition: p.tp.partition.to_string(),
            };
            if let (Ok(leo), Ok(start), Ok(size)) =
                (p.log_end_offset(), p.log_start_offset(), p.size_bytes())
            {
                self.log_end_offset.get_or_create(&labels).set(leo);
                self.log_start_offset.get_or_create(&labels).set(start);
                self.partition_bytes
                    .get_or_create(&labels)
                    .set(i64::try_from(size).unwrap_or(i64::MAX));
                self.high_watermark
                    .get_or_create(&labels)
                    .set(p.high_watermark());
            }
        }
        self.under_replicated.set(under_replicated);
        self.log_file_mappings
            .set(i64::try_from(storage::kept_log_file_mappings()).unwrap_or(i64::MAX));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}
