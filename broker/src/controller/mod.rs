//! The controller quorum (docs/cluster-design.md, "Controller quorum"): the replicated cluster
//! metadata state machine, its Raft storage and transport on openraft 0.9, and the `Controller`
//! handle a node uses to propose commands and watch the applied state.
//!
//! - `state`, `records`, `placement`, `control`: the pure metadata state machine, its commands,
//!   replica placement and the control-loop decisions (no runtime).
//! - `raft_log`, `raft_snapshot`, `raft_store`, `types`: openraft storage in a directory.
//! - `transport`, `network`, `client`: the controller listener, Raft over TCP, and the
//!   broker→controller client.
//! - this file: `Controller`, which starts Raft, the listener and the control loop, and serves
//!   broker→controller RPCs when it is the active controller (the Raft leader).

pub mod client;
pub mod control;
pub mod network;
pub mod placement;
pub mod raft_log;
pub mod raft_snapshot;
pub mod raft_store;
pub mod records;
pub mod state;
pub mod transport;
pub mod types;

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod state_tests;
#[cfg(test)]
mod storage_failure_tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::network::{NetworkFactory, RpcHandler};
use self::records::{Command, CommandError, CommandResult};
use self::state::ClusterState;
use self::transport::{ControllerReply, ControllerRpc};
use self::types::{broker_id, node_id, Raft, RaftStoreError};
use crate::durable_file::SyncData;

/// Settings of a controller; `ControllerConfig::new` gives the defaults.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// This node's id (= its broker id).
    pub node_id: i32,
    /// The voters and their controller listeners (`host:port`, resolved at connect time);
    /// empty = this node alone.
    pub voters: Vec<(i32, String)>,
    /// Where the Raft log, vote and snapshots live (`<data-dir>/controller`).
    pub dir: PathBuf,
    /// Leader → follower heartbeat period.
    pub raft_heartbeat_interval_ms: u64,
    /// A follower without a leader for a random time in this range starts an election.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// A snapshot is taken after this many entries since the last one.
    pub snapshot_every_entries: u64,
    /// A broker whose last heartbeat is older than this is fenced (`broker.session.timeout.ms`).
    pub broker_session_timeout_ms: u64,
    /// Restore preferred leaders automatically (`auto.leader.rebalance.enable`).
    pub auto_leader_rebalance: bool,
    /// How often preferred leaders are restored (`leader.imbalance.check.interval.seconds`,
    /// Kafka's 300 s by default).
    pub leader_imbalance_check_interval_ms: u64,
    /// Period of the active controller's control loop.
    pub control_interval_ms: u64,
    /// How long `propose` waits for the command to be committed and applied.
    pub propose_timeout_ms: u64,
    /// The Raft log's fdatasync (a failing disk in tests).
    pub log_sync: SyncData,
}

impl ControllerConfig {
    pub fn new(node_id: i32, voters: Vec<(i32, SocketAddr)>, dir: PathBuf) -> ControllerConfig {
        let voters = voters
            .into_iter()
            .map(|(id, addr)| (id, addr.to_string()))
            .collect();
        ControllerConfig::with_named_voters(node_id, voters, dir)
    }

    /// As `new`, with voter addresses as `host:port` names.
    pub fn with_named_voters(
        node_id: i32,
        voters: Vec<(i32, String)>,
        dir: PathBuf,
    ) -> ControllerConfig {
        ControllerConfig {
            node_id,
            voters,
            dir,
            raft_heartbeat_interval_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_every_entries: 1000,
            broker_session_timeout_ms: 9000,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval_ms: 300_000,
            control_interval_ms: 250,
            propose_timeout_ms: 10_000,
            log_sync: SyncData::default(),
        }
    }
}

/// Why a controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("controller listener {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("controller storage: {0}")]
    Storage(#[from] RaftStoreError),
    #[error("invalid controller config: {0}")]
    Config(String),
    #[error("raft: {0}")]
    Raft(String),
}

/// A topic creation or partition addition of more than `MAX_PARTITIONS_PER_REQUEST` partitions,
/// refused before it is appended, as Kafka's controller bounds one request's records
/// (`MAX_RECORDS_PER_USER_OP`). The brokers' handlers refuse such requests first; this keeps a
/// proposal from any other sender (another version of the broker, a bug) from committing a
/// million partitions that every node would then try to open.
fn too_many_partitions(cmd: &Command) -> Option<CommandError> {
    let partitions = match cmd {
        Command::CreateTopic { assignments, .. }
        | Command::CreatePartitions { assignments, .. } => assignments.len(),
        _ => return None,
    };
    (u64::try_from(partitions).unwrap_or(u64::MAX) > crate::node::MAX_PARTITIONS_PER_REQUEST)
        .then(|| CommandError::InvalidPartitions(crate::node::TOO_MANY_PARTITIONS.to_string()))
}

/// Why a proposal did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the active controller; the leader's id and controller address if known.
    #[error("not the controller (leader: {leader:?})")]
    NotController { leader: Option<(i32, String)> },
    /// The command was committed but refused by the state machine.
    #[error("refused: {0}")]
    Refused(CommandError),
    /// Not committed in time (it may still be, later).
    #[error("timed out waiting for the command to commit")]
    Timeout,
    /// Raft is shutting down or failed.
    #[error("controller unavailable: {0}")]
    Unavailable(String),
}

/// A running controller: Raft, its listener and (while leader) the control loop.
pub struct Controller {
    shared: Arc<Shared>,
    state: watch::Receiver<Arc<ClusterState>>,
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// What the listener, the control loop and the handle share.
struct Shared {
    node_id: i32,
    raft: Raft,
    state: watch::Receiver<Arc<ClusterState>>,
    config: ControllerConfig,
    /// The active controller's view of broker liveness (memory only, rebuilt on failover).
    heartbeats: Mutex<Heartbeats>,
    /// Origin of the monotonic milliseconds used for heartbeats.
    started: Instant,
}

#[derive(Default)]
struct Heartbeats {
    /// The Raft term these were collected in; a new term (failover) starts afresh.
    term: u64,
    /// Last heartbeat per broker, in ms since `Shared::started`.
    last_ms: HashMap<i32, u64>,
}

impl Controller {
    /// Start a controller bound to `listen`. With no `voters`, this node is a one-voter quorum.
    pub async fn start(
        node_id: i32,
        voters: Vec<(i32, SocketAddr)>,
        listen: SocketAddr,
        dir: PathBuf,
    ) -> Result<Controller, ControllerError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ControllerError::Bind {
                addr: listen,
                source,
            })?;
        Controller::start_on(ControllerConfig::new(node_id, voters, dir), listener).await
    }

    /// Start a controller on an already bound listener.
    pub async fn start_on(
        mut config: ControllerConfig,
        listener: TcpListener,
    ) -> Result<Controller, ControllerError> {
        let local_addr = listener
            .local_addr()
            .map_err(|e| ControllerError::Config(format!("listener address: {e}")))?;
        if config.node_id < 0 {
            return Err(ControllerError::Config(format!(
                "node id {} is negative",
                config.node_id
            )));
        }
        if config.voters.is_empty() {
            config.voters = vec![(config.node_id, local_addr.to_string())];
        }
        let ids: BTreeSet<i32> = config.voters.iter().map(|(id, _)| *id).collect();
        if ids.len() != config.voters.len() || ids.iter().any(|&id| id < 0) {
            return Err(ControllerError::Config(
                "voter ids must be distinct and non-negative".into(),
            ));
        }
        // A node outside the voters is a learner: it starts Raft uninitialized and receives
        // the log once the active controller adds it (`ControllerRpc::AddLearner`).
        let voter = ids.contains(&config.node_id);
        let raft_config = openraft::Config {
            cluster_name: "sluice-controller".into(),
            heartbeat_interval: config.raft_heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            install_snapshot_timeout: 5_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every_entries),
            max_in_snapshot_log_to_keep: config.snapshot_every_entries / 2,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ControllerError::Config(e.to_string()))?;

        let (tx, rx) = watch::channel(Arc::new(ClusterState::new()));
        let (log, sm) =
            raft_store::open_storage(&config.dir, config.log_sync.clone(), Arc::new(tx))?;
        let raft = Raft::new(
            node_id(config.node_id),
            Arc::new(raft_config),
            NetworkFactory,
            log,
            sm,
        )
        .await
        .map_err(|e| ControllerError::Raft(e.to_string()))?;

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ControllerError::Raft(e.to_string()))?;
        if !initialized && voter {
            // Every voter initializes with the same membership; openraft writes the same
            // entry at log index 0 on each, and refuses (NotAllowed) where a peer already
            // replicated to us.
            let members: BTreeMap<u64, BasicNode> = config
                .voters
                .iter()
                .map(|(id, addr)| (node_id(*id), BasicNode { addr: addr.clone() }))
                .collect();
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(node_id = config.node_id, "initialized controller quorum"),
                Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                    tracing::debug!(error = %e, "controller quorum already initialized");
                }
                Err(e) => return Err(ControllerError::Raft(e.to_string())),
            }
        }

        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let shared = Arc::new(Shared {
            node_id: config.node_id,
            raft: raft.clone(),
            state: rx.clone(),
            config,
            heartbeats: Mutex::new(Heartbeats::default()),
            started: Instant::now(),
        });
        tasks.spawn(network::serve(
            listener,
            raft,
            Arc::clone(&shared),
            shutdown.clone(),
            tasks.clone(),
        ));
        tasks.spawn(control_loop(Arc::clone(&shared), shutdown.clone()));
        tracing::info!(node_id = shared.node_id, %local_addr, "controller started");
        Ok(Controller {
            shared,
            state: rx,
            local_addr,
            shutdown,
            tasks,
        })
    }

    /// Propose `cmd`; on the active controller, wait until it is committed and applied and
    /// return its result.
    pub async fn propose(&self, cmd: Command) -> Result<CommandResult, ProposeError> {
        self.shared.propose(cmd).await
    }

    /// Serve one broker→controller RPC as the listener does.
    pub async fn handle_rpc(&self, rpc: ControllerRpc) -> ControllerReply {
        self.shared.handle(rpc).await
    }

    /// The applied metadata state; changes after every applied batch.
    pub fn state(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.state.clone()
    }

    /// The current Raft leader (the active controller), if known.
    pub fn leader(&self) -> Option<i32> {
        self.shared.leader().map(|(id, _)| id)
    }

    /// Whether this node is the active controller.
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader()
    }

    /// This node's id.
    pub fn node_id(&self) -> i32 {
        self.shared.node_id
    }

    /// The address the controller listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Raft metrics (term, leader, log indexes), for diagnostics and tests.
    pub fn raft_metrics(&self) -> watch::Receiver<openraft::RaftMetrics<u64, BasicNode>> {
        self.shared.raft.metrics()
    }

    /// Resolves when this node's Raft stops on anything but a shutdown: a failed write or
    /// fsync of its log, vote or snapshot (openraft never retries storage and stops the node on
    /// such an error), or a panic inside Raft. Describes the error; never resolves otherwise.
    /// A node whose Raft stopped can no longer follow the metadata, so the broker halts on it.
    pub fn storage_failure(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let mut metrics = self.shared.raft.metrics();
        async move {
            loop {
                match &metrics.borrow_and_update().running_state {
                    Ok(()) => {}
                    Err(openraft::error::Fatal::Stopped) => break,
                    Err(fatal) => return format!("the controller's Raft stopped: {fatal}"),
                }
                // An error only once Raft is gone and its last state was seen above.
                if metrics.changed().await.is_err() {
                    break;
                }
            }
            std::future::pending().await
        }
    }

    /// Stop Raft, the listener and the control loop, and wait for them.
    pub async fn shutdown(self) -> Result<(), ControllerError> {
        self.shutdown.cancel();
        let result = self
            .shared
            .raft
            .shutdown()
            .await
            .map_err(|e| ControllerError::Raft(e.to_string()));
        self.tasks.close();
        self.tasks.wait().await;
        tracing::info!(node_id = self.shared.node_id, "controller stopped");
        result
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Shared {
    fn leader(&self) -> Option<(i32, String)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let leader = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        Some((broker_id(leader), addr))
    }

    fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(node_id(self.node_id))
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn propose(&self, cmd: Command) -> Result<CommandResult, ProposeError> {
        let name = cmd.name();
        if let Some(refused) = too_many_partitions(&cmd) {
            return Err(ProposeError::Refused(refused));
        }
        let timeout = Duration::from_millis(self.config.propose_timeout_ms);
        let written = tokio::time::timeout(timeout, self.raft.client_write(cmd))
            .await
            .map_err(|_| ProposeError::Timeout)?;
        match written {
            Ok(resp) => {
                tracing::debug!(
                    command = name,
                    index = resp.log_id.index,
                    "command committed"
                );
                resp.data.map_err(ProposeError::Refused)
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ProposeError::NotController {
                    leader: f.leader_id.map(|id| {
                        (
                            broker_id(id),
                            f.leader_node.map(|n| n.addr).unwrap_or_default(),
                        )
                    }),
                })
            }
            Err(e) => Err(ProposeError::Unavailable(e.to_string())),
        }
    }

    fn not_controller(&self) -> ControllerReply {
        ControllerReply::NotController {
            leader: self.leader(),
        }
    }

    fn record_heartbeat(&self, broker: i32) {
        let now = self.now_ms();
        self.heartbeats.lock().last_ms.insert(broker, now);
    }

    fn reply(&self, result: Result<CommandResult, ProposeError>) -> ControllerReply {
        match result {
            Ok(r) => ControllerReply::Applied(Ok(r)),
            Err(ProposeError::Refused(e)) => ControllerReply::Applied(Err(e)),
            Err(ProposeError::NotController { leader }) => {
                ControllerReply::NotController { leader }
            }
            Err(e) => ControllerReply::Unavailable(e.to_string()),
        }
    }

    async fn heartbeat(
        &self,
        broker: i32,
        broker_epoch: i64,
        metadata_offset: u64,
    ) -> ControllerReply {
        let registration = self.state.borrow().brokers.get(&broker).cloned();
        let Some(registration) = registration else {
            return ControllerReply::Applied(Err(CommandError::UnknownBroker(broker)));
        };
        if let Err(e) = registration.check_epoch(broker_epoch) {
            return ControllerReply::Applied(Err(e));
        }
        self.record_heartbeat(broker);
        if !registration.fenced || metadata_offset < registration.registered_offset {
            return ControllerReply::Heartbeat {
                fenced: registration.fenced,
            };
        }
        let unfence = Command::UnfenceBroker {
            broker_id: broker,
            broker_epoch,
        };
        match self.propose(unfence).await {
            Ok(_) => ControllerReply::Heartbeat { fenced: false },
            Err(e) => self.reply(Err(e)),
        }
    }

    /// Adds a broker-only node as a Raft learner (idempotent for the same address).
    async fn add_learner(&self, id: i32, addr: String) -> ControllerReply {
        let known = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            let membership = m.membership_config.membership();
            if membership.voter_ids().any(|v| v == node_id(id)) {
                return ControllerReply::Applied(Err(CommandError::InvalidConfig(format!(
                    "node {id} is a voter, not a learner"
                ))));
            }
            membership
                .get_node(&node_id(id))
                .is_some_and(|n| n.addr == addr)
        };
        if known {
            return ControllerReply::Applied(Ok(CommandResult::Nothing));
        }
        let added = tokio::time::timeout(
            Duration::from_millis(self.config.propose_timeout_ms),
            self.raft
                .add_learner(node_id(id), BasicNode { addr }, false),
        )
        .await;
        match added {
            Ok(Ok(_)) => {
                tracing::info!(node_id = id, "added a broker-only node as a Raft learner");
                ControllerReply::Applied(Ok(CommandResult::Nothing))
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                self.not_controller()
            }
            Ok(Err(e)) => ControllerReply::Unavailable(e.to_string()),
            Err(_) => ControllerReply::Unavailable("timed out adding a learner".into()),
        }
    }

    /// One pass of the active controller's control loop.
    async fn control_tick(&self, tick: u64) {
        if !self.is_leader() {
            return;
        }
        let term = self.raft.metrics().borrow().current_term;
        let state = Arc::clone(&self.state.borrow());
        let now = self.now_ms();
        let last_ms = {
            let mut hb = self.heartbeats.lock();
            if hb.term != term {
                // New leadership: every broker gets a full session to reach us.
                hb.term = term;
                hb.last_ms.clear();
            }
            for id in state.brokers.keys() {
                hb.last_ms.entry(*id).or_insert(now);
            }
            hb.last_ms.clone()
        };
        let mut cmds =
            control::expired_brokers(&state, &last_ms, now, self.config.broker_session_timeout_ms);
        for broker in state.brokers.values().filter(|b| b.fenced) {
            cmds.extend(control::on_broker_fenced(&state, broker.broker_id));
        }
        cmds.extend(control::offline_leader_elections(&state));
        cmds.extend(control::rules_upgrade(&state));
        // Preferred elections are not urgent: every `leader.imbalance.check.interval.seconds`.
        let every = (self.config.leader_imbalance_check_interval_ms
            / self.config.control_interval_ms.max(1))
        .max(1);
        if self.config.auto_leader_rebalance && tick.is_multiple_of(every) {
            cmds.extend(control::preferred_leader_elections(&state));
        }
        for cmd in cmds {
            let name = cmd.name();
            match self.propose(cmd).await {
                Ok(_) => tracing::info!(command = name, "control loop command applied"),
                Err(e) => {
                    tracing::debug!(command = name, error = %e, "control loop command not applied")
                }
            }
        }
    }
}

impl RpcHandler for Shared {
    async fn handle(&self, rpc: ControllerRpc) -> ControllerReply {
        if !self.is_leader() {
            return self.not_controller();
        }
        match rpc {
            ControllerRpc::RegisterBroker {
                broker_id,
                host,
                port,
                replica_endpoint,
                rack,
                incarnation_id,
                rules_version,
            } => {
                let result = self
                    .propose(Command::RegisterBroker {
                        broker_id,
                        host,
                        port,
                        replica_endpoint,
                        rack,
                        incarnation_id,
                        rules_version,
                    })
                    .await;
                if result.is_ok() {
                    self.record_heartbeat(broker_id);
                }
                self.reply(result)
            }
            ControllerRpc::Heartbeat {
                broker_id,
                broker_epoch,
                metadata_offset,
            } => {
                self.heartbeat(broker_id, broker_epoch, metadata_offset)
                    .await
            }
            ControllerRpc::AddLearner {
                node_id: id,
                controller_addr,
            } => self.add_learner(id, controller_addr).await,
            ControllerRpc::Propose(cmd) => self.reply(self.propose(cmd).await),
        }
    }
}

async fn control_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(Duration::from_millis(
        shared.config.control_interval_ms.max(10),
    ));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick: u64 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        tick += 1;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = shared.control_tick(tick) => {}
        }
    }
}
