//! A cluster of real `sluice` processes on loopback ports, for replication and failover
//! tests.
//!
//! [`TestCluster::start`] picks a Kafka port and a controller port per node, starts every
//! node as a controller+broker with the same `--controller-voters`, and waits until every
//! node is registered and unfenced (every node shows all brokers in Metadata). Nodes can be killed
//! (`kill -9`), frozen (`SIGSTOP`/`SIGCONT`) and restarted on the same ports and data
//! directories. Dropping the cluster kills every node.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use crate::ports::free_port;
use crate::process::{SluiceOptions, SluiceProcess};

/// Settings that make failure detection quick enough for tests.
pub const FAST_FAILOVER: &[(&str, &str)] = &[
    ("broker.session.timeout.ms", "3000"),
    ("broker.heartbeat.interval.ms", "500"),
    ("replica.lag.time.max.ms", "4000"),
    ("group.initial.rebalance.delay.ms", "0"),
];

/// A partition as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// Several `sluice` nodes forming one cluster. Node `i` (0-based) has node id `i + 1`.
pub struct TestCluster {
    /// The nodes, by index (node id - 1).
    pub nodes: Vec<SluiceProcess>,
}

impl TestCluster {
    /// Starts `n` nodes with `settings` (plus [`FAST_FAILOVER`]) and waits until all are
    /// registered and unfenced.
    pub fn start(n: usize, settings: &[(&str, &str)]) -> TestCluster {
        Self::start_mixed(n, 0, settings)
    }

    /// Starts `voters` controller+broker nodes (ids 1..=voters) and `brokers_only` broker-only
    /// nodes (the following ids), and waits until all are registered and unfenced.
    pub fn start_mixed(
        voters: usize,
        brokers_only: usize,
        settings: &[(&str, &str)],
    ) -> TestCluster {
        let n = voters + brokers_only;
        let controller_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let voters = controller_ports
            .iter()
            .take(voters)
            .enumerate()
            .map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = controller_ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let id = i32::try_from(i + 1).unwrap_or(i32::MAX);
                let mut options = SluiceOptions::new()
                    .with_metrics()
                    .node_id(id)
                    .arg("--controller-listen")
                    .arg(&format!("127.0.0.1:{port}"))
                    .arg("--controller-voters")
                    .arg(&voters);
                for (k, v) in FAST_FAILOVER.iter().chain(settings.iter()) {
                    options = options.set(k, v);
                }
                SluiceProcess::start(options)
            })
            .collect();
        let cluster = TestCluster { nodes };
        cluster.wait_for_brokers(n, Duration::from_secs(60));
        cluster
    }

    /// Every running node's address, comma separated.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(SluiceProcess::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node with this id.
    pub fn node(&mut self, id: i32) -> &mut SluiceProcess {
        let index = usize::try_from(id - 1).unwrap_or(usize::MAX);
        match self.nodes.get_mut(index) {
            Some(n) => n,
            None => panic!("no node with id {id}"),
        }
    }

    /// The value of metric `name` (a whole sample name, labels included) that node `id`
    /// serves on its metrics listener, if it answers.
    pub fn metric(&mut self, id: i32, name: &str) -> Option<f64> {
        self.node(id).metric(name)
    }

    /// A metadata client bootstrapped from every node.
    pub fn metadata_client(&self) -> BaseConsumer {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap())
            .set("socket.timeout.ms", "5000")
            .set("topic.metadata.refresh.interval.ms", "500")
            .set("broker.address.family", "v4");
        match config.create() {
            Ok(c) => c,
            Err(e) => panic!("cannot create a metadata client: {e}"),
        }
    }

    /// The active controller: the node whose `sluice_active_controller_count` is 1 (Metadata's
    /// controller id is any live broker, as in Kafka, so it cannot tell).
    pub fn active_controller(&mut self) -> Option<i32> {
        let ids: Vec<i32> = (1..=i32::try_from(self.nodes.len()).unwrap_or(0)).collect();
        ids.into_iter()
            .find(|&id| self.metric(id, "sluice_active_controller_count") == Some(1.0))
    }

    /// The number of brokers node `index` lists in Metadata (asked directly, v12), if it
    /// answers.
    fn brokers_seen_by(&self, index: usize) -> Option<usize> {
        use kafka_protocol::messages::MetadataRequest;
        let addr = self.nodes.get(index)?.bootstrap();
        let mut conn =
            crate::wire::RawConnection::connect_with_timeout(addr.as_str(), Duration::from_secs(2))
                .ok()?;
        let response = conn
            .call(
                &MetadataRequest::default().with_topics(Some(Vec::new())),
                12,
            )
            .ok()?;
        Some(response.brokers.len())
    }

    /// Waits until every node lists `n` brokers in Metadata. Every node, not just one: a node
    /// lists itself even while still fenced, so only the others' view proves it unfenced (and
    /// a replication factor of `n` placeable).
    pub fn wait_for_brokers(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if (0..self.nodes.len()).all(|i| self.brokers_seen_by(i).is_some_and(|b| b >= n)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not show {n} brokers within {timeout:?}; node 1 log:\n{}",
                self.nodes
                    .first()
                    .map(SluiceProcess::log_tail)
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The partitions of `topic` as seen through `client` (fresh metadata).
    pub fn partitions(client: &BaseConsumer, topic: &str) -> Option<Vec<PartitionInfo>> {
        let m = client
            .fetch_metadata(Some(topic), Duration::from_secs(3))
            .ok()?;
        let t = m.topics().iter().find(|t| t.name() == topic)?;
        if t.error().is_some() {
            return None;
        }
        let mut parts: Vec<_> = t
            .partitions()
            .iter()
            .map(|p| {
                (
                    p.id(),
                    PartitionInfo {
                        leader: p.leader(),
                        replicas: p.replicas().to_vec(),
                        isr: p.isr().to_vec(),
                    },
                )
            })
            .collect();
        parts.sort_by_key(|(id, _)| *id);
        Some(parts.into_iter().map(|(_, p)| p).collect())
    }

    /// `partitions`, asked again for up to 30 s while the answer does not list the topic: a
    /// node that has not applied the topic's records yet answers UNKNOWN_TOPIC_OR_PARTITION, and
    /// on a loaded machine a Metadata call can time out.
    pub fn partitions_listed(client: &BaseConsumer, topic: &str) -> Vec<PartitionInfo> {
        crate::wire::poll_until(Duration::from_secs(30), || Self::partitions(client, topic))
            .unwrap_or_else(|| panic!("{topic}: not listed in Metadata within 30 s"))
    }

    /// Waits until `pred` holds for the partitions of `topic`; returns how long it took.
    pub fn wait_for_partitions(
        &self,
        topic: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&[PartitionInfo]) -> bool,
    ) -> Duration {
        let client = self.metadata_client();
        let started = Instant::now();
        let mut last = None;
        while started.elapsed() < timeout {
            if let Some(parts) = Self::partitions(&client, topic) {
                if pred(&parts) {
                    return started.elapsed();
                }
                last = Some(parts);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{what}: not reached within {timeout:?}; last metadata: {last:?}");
    }
}
