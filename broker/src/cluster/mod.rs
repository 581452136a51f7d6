//! A node of a multi-node cluster (`--controller-voters`): the glue between the controller
//! quorum's metadata (`crate::controller`) and this broker's partitions.
//!
//! - this file: `ClusterRuntime` (start, registration and heartbeats, proposals to the active
//!   controller, the metadata view handlers read);
//! - `reconcile`: applies the controller's state to local topics, partitions and roles;
//! - `fetcher`: follower replication (Fetch from the leader, divergence check with
//!   OffsetForLeaderEpoch, verbatim append); `fetch_session`: its KIP-227 session;
//! - `isr`: the leader's ISR shrink/expand proposals;
//! - `topic_admin`: CreateTopics / DeleteTopics / CreatePartitions through the controller;
//! - `kafka_client`: the broker-to-broker Kafka wire client.
//!
//! Invariant: a broker leads or follows nothing until the controller has unfenced it, which it
//! does only once this node's copy of the metadata log reached its registration, so a
//! restarted node never acts on a stale leadership.

pub mod fetch_session;
pub mod fetcher;
pub mod isr;
pub mod kafka_client;
pub mod reconcile;
pub mod topic_admin;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::ClusterConfig;
use crate::controller::client::ControllerClient;
use crate::controller::records::{Command, CommandError, CommandResult};
use crate::controller::state::{
    BrokerRegistration, ClusterState, Endpoint, PartitionState, TopicState,
};
use crate::controller::transport::{ControllerReply, ControllerRpc};
use crate::controller::{Controller, ControllerConfig, ControllerError};
use crate::node::Node;
use crate::partition::hw_checkpoint;

/// Why a cluster node could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterStartError {
    #[error("controller listener {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Controller(#[from] ControllerError),
}

/// Why a request to the active controller failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposalError {
    /// The state machine refused the command.
    #[error("{0}")]
    Refused(CommandError),
    /// No active controller answered in time (retriable).
    #[error("controller unavailable: {0}")]
    Unavailable(String),
}

/// The cluster side of a node.
pub struct ClusterRuntime {
    /// This node's id.
    pub node_id: i32,
    /// The controller quorum member running in this process.
    controller: Controller,
    /// Requests to the active controller (one at a time; they are rare).
    client: tokio::sync::Mutex<ControllerClient>,
    /// Our registration epoch; -1 until registered.
    broker_epoch: AtomicI64,
    /// A random id per process start: the controller sees a restart as a new incarnation.
    incarnation_id: Uuid,
    /// True once the controller unfenced us (we caught up with the metadata log).
    unfenced: watch::Sender<bool>,
    /// Set by a controlled shutdown: no more heartbeats (they would unfence us again).
    stopping: AtomicBool,
    /// Follower replication tasks, one per leader broker.
    pub fetchers: fetcher::FetcherManager,
    /// Settings read often.
    pub settings: ClusterSettings,
    config: ClusterConfig,
}

/// Cluster settings, from the Kafka-named broker settings.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub heartbeat_interval_ms: u64,
    pub session_timeout_ms: u64,
    pub replica_lag_time_max_ms: i64,
    pub replica_fetch_max_bytes: i32,
    pub replica_fetch_response_max_bytes: i32,
    pub replica_fetch_wait_max_ms: i32,
    pub replica_fetch_backoff_ms: u64,
    pub offsets_topic_replication_factor: i16,
}

impl ClusterSettings {
    fn from(settings: &crate::config::BrokerSettings) -> Self {
        let ms = |k: &str| u64::try_from(settings.i32(k)).unwrap_or(0);
        ClusterSettings {
            heartbeat_interval_ms: ms("broker.heartbeat.interval.ms").max(10),
            session_timeout_ms: ms("broker.session.timeout.ms").max(100),
            replica_lag_time_max_ms: settings.i64("replica.lag.time.max.ms").max(100),
            replica_fetch_max_bytes: settings.i32("replica.fetch.max.bytes").max(1024),
            replica_fetch_response_max_bytes: settings
                .i32("replica.fetch.response.max.bytes")
                .max(1024),
            replica_fetch_wait_max_ms: settings.i32("replica.fetch.wait.max.ms").clamp(0, 30_000),
            replica_fetch_backoff_ms: ms("replica.fetch.backoff.ms").max(10),
            offsets_topic_replication_factor: i16::try_from(
                settings.i32("offsets.topic.replication.factor"),
            )
            .unwrap_or(3)
            .max(1),
        }
    }
}

impl std::fmt::Debug for ClusterRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRuntime")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// Until shutdown: every `replica.high.watermark.checkpoint.interval.ms`, the hosted
/// partitions' high watermarks go to the checkpoint if one moved (`hw_checkpoint`; the last
/// write is at shutdown, in `run`).
async fn checkpoint_high_watermarks(node: Arc<Node>) {
    let interval = Duration::from_millis(
        u64::try_from(
            node.config
                .settings
                .i64("replica.high.watermark.checkpoint.interval.ms"),
        )
        .unwrap_or(5_000)
        .max(1),
    );
    let mut written = Vec::new();
    loop {
        tokio::select! {
            () = node.shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let n = Arc::clone(&node);
        match tokio::task::spawn_blocking(move || {
            hw_checkpoint::write_if_changed(&n.partitions, &n.config.data_dir, written)
        })
        .await
        {
            Ok(now) => written = now,
            Err(e) => {
                tracing::warn!(error = %e, "high-watermark checkpoint task failed");
                written = Vec::new();
            }
        }
    }
}

impl ClusterRuntime {
    /// Starts the controller (binding `--controller-listen`), then registration, heartbeats,
    /// the reconciler and the ISR task. Returns at once; the node takes partitions only once
    /// unfenced.
    pub async fn start(node: &Arc<Node>) -> Result<Arc<ClusterRuntime>, ClusterStartError> {
        let Some(config) = node.config.cluster.clone() else {
            return Err(ClusterStartError::Controller(ControllerError::Config(
                "not a cluster node".into(),
            )));
        };
        let listener = TcpListener::bind(config.controller_listen)
            .await
            .map_err(|source| ClusterStartError::Bind {
                addr: config.controller_listen,
                source,
            })?;
        let settings = ClusterSettings::from(&node.config.settings);
        let mut cc = ControllerConfig::with_named_voters(
            node.meta.node_id,
            config.voters.clone(),
            node.config.data_dir.join("controller"),
        );
        cc.broker_session_timeout_ms = settings.session_timeout_ms;
        cc.auto_leader_rebalance = node.config.settings.bool("auto.leader.rebalance.enable");
        cc.leader_imbalance_check_interval_ms = u64::try_from(
            node.config
                .settings
                .i64("leader.imbalance.check.interval.seconds"),
        )
        .unwrap_or(300)
        .max(1)
        .saturating_mul(1000);
        let controller = Controller::start_on(cc, listener).await?;
        // A controller whose Raft stopped on a failed write halts the broker, as a failed
        // partition fsync does (`run`).
        let raft_failure = controller.storage_failure();
        let failures = node.partitions.sync_failures().clone();
        tokio::spawn(async move {
            let why = raft_failure.await;
            failures.report(&"controller", &why);
        });
        let runtime = Arc::new(ClusterRuntime {
            node_id: node.meta.node_id,
            controller,
            client: tokio::sync::Mutex::new(ControllerClient::new(config.voters.clone())),
            broker_epoch: AtomicI64::new(-1),
            incarnation_id: Uuid::new_v4(),
            unfenced: watch::Sender::new(false),
            stopping: AtomicBool::new(false),
            fetchers: fetcher::FetcherManager::new(),
            settings,
            config,
        });
        if !runtime.is_voter() {
            tokio::spawn(join_as_learner(Arc::clone(node), Arc::clone(&runtime)));
        }
        tokio::spawn(heartbeat_loop(Arc::clone(node), Arc::clone(&runtime)));
        tokio::spawn(reconcile::run(Arc::clone(node), Arc::clone(&runtime)));
        tokio::spawn(isr::run(Arc::clone(node), Arc::clone(&runtime)));
        tokio::spawn(checkpoint_high_watermarks(Arc::clone(node)));
        Ok(runtime)
    }

    /// The applied metadata state.
    pub fn state(&self) -> Arc<ClusterState> {
        Arc::clone(&self.controller.state().borrow())
    }

    /// A receiver of metadata state changes.
    pub fn subscribe_state(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.controller.state()
    }

    /// The active controller, if known.
    pub fn controller_id(&self) -> Option<i32> {
        self.controller.leader()
    }

    /// The controller id Metadata and DescribeCluster give clients, who send their admin
    /// requests there: a live broker, as Kafka gives (`getRandomAliveBrokerId`), since any
    /// Sluice broker takes them. The active controller when it is one of `live` (the unfenced
    /// brokers the answer lists), else this broker if it is, else the first; -1 if none.
    pub fn controller_for_clients(&self, live: &[i32]) -> i32 {
        self.controller_id()
            .filter(|id| live.contains(id))
            .or_else(|| live.contains(&self.node_id).then_some(self.node_id))
            .or_else(|| live.first().copied())
            .unwrap_or(-1)
    }

    /// Whether the controller has unfenced this broker.
    pub fn is_unfenced(&self) -> bool {
        *self.unfenced.borrow()
    }

    pub fn subscribe_unfenced(&self) -> watch::Receiver<bool> {
        self.unfenced.subscribe()
    }

    /// Our registration epoch (-1 before registration).
    pub fn broker_epoch(&self) -> i64 {
        self.broker_epoch.load(Ordering::Acquire)
    }

    /// A registered broker (its client endpoint, and its replica endpoint if it has one).
    pub fn broker(&self, id: i32) -> Option<BrokerRegistration> {
        self.state().brokers.get(&id).cloned()
    }

    /// The partition's state in the metadata.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<(TopicState, PartitionState)> {
        let state = self.state();
        let t = state.topics.get(topic)?;
        let p = t.partitions.get(usize::try_from(partition).ok()?)?.clone();
        Some((t.clone(), p))
    }

    /// Sends `cmd` to the active controller and returns its result once applied there.
    pub async fn propose(&self, cmd: Command) -> Result<CommandResult, ProposalError> {
        let reply = self
            .client
            .lock()
            .await
            .call(ControllerRpc::Propose(cmd))
            .await
            .map_err(|e| ProposalError::Unavailable(e.to_string()))?;
        match reply {
            ControllerReply::Applied(Ok(r)) => Ok(r),
            ControllerReply::Applied(Err(e)) => Err(ProposalError::Refused(e)),
            other => Err(ProposalError::Unavailable(format!("{other:?}"))),
        }
    }

    /// Waits (up to `timeout`) until this node's metadata state satisfies `pred`.
    pub async fn wait_for_state(
        &self,
        timeout: Duration,
        pred: impl Fn(&ClusterState) -> bool,
    ) -> bool {
        let mut rx = self.controller.state();
        tokio::time::timeout(timeout, rx.wait_for(|s| pred(s)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Controlled shutdown (SIGTERM): stop heartbeating, have the controller fence this
    /// broker so its leaderships move to in-sync replicas now instead of after
    /// `broker.session.timeout.ms`, and wait (at most `timeout`) until this node's metadata
    /// shows no partition it leads that another live in-sync replica could take.
    pub async fn controlled_shutdown(&self, timeout: Duration) {
        self.stopping.store(true, Ordering::Release);
        let epoch = self.broker_epoch();
        if epoch < 0 {
            return;
        }
        let me = self.node_id;
        let fence = Command::FenceBroker {
            broker_id: me,
            broker_epoch: epoch,
        };
        let started = tokio::time::Instant::now();
        match tokio::time::timeout(timeout, self.propose(fence)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "controlled shutdown: could not fence this broker");
                return;
            }
            Err(_) => {
                tracing::warn!("controlled shutdown: the controller did not answer in time");
                return;
            }
        }
        let left = timeout.saturating_sub(started.elapsed());
        let moved = self
            .wait_for_state(left, |s| {
                !s.partitions().any(|(_, _, p)| {
                    p.leader == me && p.isr.iter().any(|r| *r != me && s.is_unfenced(*r))
                })
            })
            .await;
        tracing::info!(
            moved,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "controlled shutdown: leaderships handed over"
        );
    }

    /// Whether a controlled shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Stops the controller (Raft and its listener).
    pub async fn shutdown(&self) {
        self.fetchers.stop_all();
    }

    /// The controller handle (for shutdown by the owner).
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// The configured voters.
    pub fn voters(&self) -> &[(i32, String)] {
        &self.config.voters
    }

    /// Whether this node votes in the controller quorum (else it is a broker-only learner).
    pub fn is_voter(&self) -> bool {
        self.config.voters.iter().any(|(id, _)| *id == self.node_id)
    }
}

/// A broker-only node asks the active controller to replicate the metadata log to it (as a
/// Raft learner), retrying until that is committed.
async fn join_as_learner(node: Arc<Node>, rt: Arc<ClusterRuntime>) {
    let mut client = ControllerClient::new(rt.config.voters.clone());
    let addr = rt.config.controller_listen.to_string();
    loop {
        let rpc = ControllerRpc::AddLearner {
            node_id: rt.node_id,
            controller_addr: addr.clone(),
        };
        let reply = tokio::select! {
            () = node.shutdown.cancelled() => return,
            r = client.call(rpc) => r,
        };
        match reply {
            Ok(ControllerReply::Applied(Ok(_))) => {
                tracing::info!("joined the controller quorum as a learner (broker-only node)");
                return;
            }
            Ok(other) => tracing::warn!(reply = ?other, "could not join as a learner; retrying"),
            Err(e) => tracing::warn!(error = %e, "could not join as a learner; retrying"),
        }
        tokio::select! {
            () = node.shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Registers, then heartbeats every `broker.heartbeat.interval.ms`; registers again when the
/// controller no longer knows our epoch. Publishes whether we are unfenced.
async fn heartbeat_loop(node: Arc<Node>, rt: Arc<ClusterRuntime>) {
    let interval = Duration::from_millis(rt.settings.heartbeat_interval_ms);
    // Heartbeat faster until unfenced, so start-up is quick.
    let fast = Duration::from_millis(rt.settings.heartbeat_interval_ms.min(200));
    // Its own client: a slow proposal must never delay a heartbeat (we would be fenced).
    let mut client = ControllerClient::new(rt.config.voters.clone());
    loop {
        if node.shutdown.is_cancelled() || rt.is_stopping() {
            return;
        }
        let epoch = rt.broker_epoch();
        let rpc = if epoch < 0 {
            let client = (&node.config.advertised_host, node.config.advertised_port);
            let replica = (
                &node.config.inter_broker_advertised_host,
                node.config.inter_broker_advertised_port,
            );
            ControllerRpc::RegisterBroker {
                rules_version: crate::controller::state::RULES_VERSION,
                broker_id: rt.node_id,
                host: node.config.advertised_host.clone(),
                port: u16::try_from(node.config.advertised_port).unwrap_or(0),
                // Only when it differs, so a node without an inter-broker listener registers
                // exactly as before.
                replica_endpoint: (replica != client).then(|| Endpoint {
                    host: node.config.inter_broker_advertised_host.clone(),
                    port: u16::try_from(node.config.inter_broker_advertised_port).unwrap_or(0),
                }),
                rack: rt.config.rack.clone(),
                incarnation_id: rt.incarnation_id,
            }
        } else {
            ControllerRpc::Heartbeat {
                broker_id: rt.node_id,
                broker_epoch: epoch,
                metadata_offset: rt.state().metadata_offset,
            }
        };
        let reply = tokio::select! {
            () = node.shutdown.cancelled() => return,
            r = client.call(rpc) => r,
        };
        match reply {
            Ok(ControllerReply::Applied(Ok(CommandResult::BrokerRegistered { broker_epoch }))) => {
                tracing::info!(broker_epoch, "registered with the controller");
                rt.broker_epoch.store(broker_epoch, Ordering::Release);
                continue;
            }
            Ok(ControllerReply::Heartbeat { fenced }) => {
                let was = *rt.unfenced.borrow();
                if was == fenced {
                    tracing::info!(fenced, "broker fencing changed");
                }
                rt.unfenced.send_replace(!fenced);
            }
            Ok(ControllerReply::Applied(Err(
                CommandError::UnknownBroker(_) | CommandError::StaleBrokerEpoch { .. },
            ))) => {
                tracing::warn!("controller does not know our registration; registering again");
                rt.broker_epoch.store(-1, Ordering::Release);
                rt.unfenced.send_replace(false);
                continue;
            }
            Ok(other) => tracing::debug!(reply = ?other, "unexpected controller reply"),
            Err(e) => tracing::warn!(error = %e, "controller heartbeat failed"),
        }
        let wait = if rt.is_unfenced() { interval } else { fast };
        tokio::select! {
            () = node.shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
