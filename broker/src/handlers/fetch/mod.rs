//! Fetch (key 1) for consumers: whole batches from each partition below its high watermark,
//! within `max_bytes` and each partition's `partition_max_bytes` (the first batch is always
//! returned whole, KIP-74), long-polling up to `max_wait_ms` until `min_bytes` are available;
//! fetch sessions (KIP-227) in `session`. In a cluster, consumers sending client metadata
//! (v11+) may fetch from followers, and with `replica.selector.class` set to Kafka's
//! `RackAwareReplicaSelector` the leader names a follower in the consumer's rack
//! (`preferred_read_replica`, KIP-392).

mod session;
#[cfg(test)]
#[path = "wait_tests.rs"]
mod wait_tests;

/// For the fetch tests: a single node in a temporary directory holding `topics` (name,
/// partitions).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn node_with(topics: &[(&str, i32)]) -> (tempfile::TempDir, Arc<Node>) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        crate::config::BrokerConfig::for_tests(dir.path(), Default::default()),
        Arc::new(crate::clock::SystemClock),
    )
    .unwrap();
    for (name, partitions) in topics {
        node.create_topic(name, *partitions, 1, Default::default(), false)
            .unwrap();
    }
    (dir, node)
}

pub use session::FetchSessionCache;

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use kafka_protocol::messages::{FetchRequest, FetchResponse, ResponseKind};
use protocol_shim::ErrorKind;
use tokio::sync::watch;
use uuid::Uuid;

use super::util::partition_error_kind;
use super::{Outgoing, Reply};
use crate::node::Node;
use crate::partition::{FollowerFetchRefused, Partition};
use protocol_shim::fetch_answer::{
    AnswerRecords, Endpoint, FetchAnswer, PartitionAnswer, TopicAnswer,
};
use session::{FetchPlan, PartitionKey};
use storage::{FileRegion, StoredRecords};

/// What one partition's read found. It becomes a `PartitionData` only if the answer carries
/// it: an incremental round over many idle partitions builds, moves and drops no response
/// entries for those it leaves out.
#[derive(Debug)]
pub struct PartitionRead {
    pub error: ErrorKind,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// KIP-392: the replica the consumer should read from instead (-1: none).
    pub preferred_read_replica: i32,
    pub records: ReadRecords,
    /// KIP-951: the leader's id and epoch, with NOT_LEADER_OR_FOLLOWER.
    pub current_leader: Option<(i32, i32)>,
    /// After a read without error: the partition, what a long-poll watches on it (its high
    /// watermark for a consumer, its log end for a follower) and its leader epoch, as the
    /// read saw them.
    watched: Option<(Arc<Partition>, i64, i32)>,
}

/// A partition's records in an answer: in memory, or a segment file region sent as it is.
#[derive(Debug)]
pub enum ReadRecords {
    Bytes(Bytes),
    File(FileRegion),
}

impl ReadRecords {
    pub fn len(&self) -> usize {
        match self {
            ReadRecords::Bytes(b) => b.len(),
            ReadRecords::File(region) => usize::try_from(region.len).unwrap_or(usize::MAX),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            ReadRecords::Bytes(b) => b.is_empty(),
            ReadRecords::File(region) => region.len == 0,
        }
    }
}

impl PartitionRead {
    /// An answer without records still tells the partition's high watermark and log start.
    fn offsets_of(&mut self, partition: &Partition) {
        self.high_watermark = partition.high_watermark();
        self.log_start_offset = partition.log_start_offset().unwrap_or(-1);
    }

    fn new() -> Self {
        Self {
            error: ErrorKind::None,
            high_watermark: -1,
            log_start_offset: -1,
            preferred_read_replica: -1,
            records: ReadRecords::Bytes(Bytes::new()),
            current_leader: None,
            watched: None,
        }
    }
}

/// Upper bound on `max_wait_ms`, whatever the client asks.
const MAX_WAIT_MS: i32 = 300_000;

/// What one partition of a fetch asks for.
#[derive(Debug, Clone)]
pub struct WantedPartition {
    pub key: PartitionKey,
    pub fetch_offset: i64,
    /// A follower's log start offset (v5+; -1 otherwise).
    pub log_start_offset: i64,
    pub partition_max_bytes: i32,
    pub current_leader_epoch: i32,
}

pub fn handle(node: &Arc<Node>, request: FetchRequest, version: i16) -> Reply {
    let ctx = match FetchContext::new(node, &request, version) {
        Ok(ctx) => ctx,
        Err(kind) => {
            return Reply::Now(Box::new(ResponseKind::Fetch(
                FetchResponse::default().with_error_code(kind.code()),
            )))
        }
    };
    let first = ctx.collect(ctx.may_wait);
    if first.bytes >= ctx.min_bytes || first.has_error || first.answer_now || !ctx.may_wait {
        return Reply::WithFiles(Box::pin(std::future::ready(ctx.finish(first))));
    }
    Reply::WithFiles(Box::pin(async move { ctx.wait_for_bytes(first).await }))
}

/// Waits until `rx` sees a change and hands it back (`false`: its partition was closed).
async fn changed(mut rx: watch::Receiver<i64>) -> (watch::Receiver<i64>, bool) {
    let open = rx.changed().await.is_ok();
    (rx, open)
}

struct FetchContext {
    node: Arc<Node>,
    version: i16,
    max_bytes: usize,
    read_committed: bool,
    /// The follower's broker id, for a replica fetch.
    follower: Option<i32>,
    /// The consumer's `client.rack` (v11+; empty if unset).
    client_rack: String,
    plan: FetchPlan,
    /// The request may long-poll (`max_wait_ms` > 0).
    may_wait: bool,
    /// Answer once this many bytes are there (0: at once, as Kafka).
    min_bytes: usize,
    /// When a long-poll ends without them.
    deadline: tokio::time::Instant,
}

struct Collected {
    /// One per partition of the plan, in its order.
    entries: Vec<PartitionRead>,
    bytes: usize,
    has_error: bool,
    /// A partition names a preferred read replica: answer at once, as Kafka does.
    answer_now: bool,
    /// When collected to wait: each partition read without error, with what ends a wait for
    /// it as the read saw it.
    waits: Vec<PartitionWait>,
}

struct PartitionWait {
    /// Its index in the plan.
    index: usize,
    partition: Arc<Partition>,
    /// The value the wait watches, as of the partition's last read: the high watermark for a
    /// consumer, the log end for a follower. A wait reads again the partitions whose value
    /// differs from it.
    seen: i64,
    /// Its leader epoch as of that read: a partition whose leadership changed is read again
    /// too (and answers the change's error).
    epoch: i32,
}

impl FetchContext {
    fn new(node: &Arc<Node>, request: &FetchRequest, version: i16) -> Result<Self, ErrorKind> {
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(
                u64::try_from(request.max_wait_ms.clamp(0, MAX_WAIT_MS)).unwrap_or(0),
            );
        let replica_id = if version >= 15 {
            request.replica_state.replica_id.0
        } else {
            request.replica_id.0
        };
        let plan = session::plan(node, request, version, replica_id >= 0)?;
        let nothing_wanted = plan.wanted.is_empty();
        // Kafka: min(request, fetch.max.bytes); 0 still returns the first batch (KIP-74).
        let broker_max = node.config.settings.i32("fetch.max.bytes").max(1);
        let max_bytes = request.max_bytes.clamp(0, broker_max);
        Ok(FetchContext {
            node: Arc::clone(node),
            version,
            max_bytes: usize::try_from(max_bytes).unwrap_or(0),
            read_committed: request.isolation_level == 1,
            follower: (replica_id >= 0).then_some(replica_id),
            client_rack: request.rack_id.as_str().to_string(),
            plan,
            // Nothing to read is answered at once (Kafka: `if (interesting.isEmpty)`).
            may_wait: request.max_wait_ms > 0 && !nothing_wanted,
            // Kafka caps min_bytes by max_bytes: more could never arrive in one answer.
            min_bytes: usize::try_from(request.min_bytes.clamp(0, max_bytes)).unwrap_or(0),
            deadline,
        })
    }

    /// Reads every partition of the plan; with `watch`, notes what a long-poll would wait on.
    fn collect(&self, watch: bool) -> Collected {
        let mut entries = Vec::with_capacity(self.plan.wanted.len());
        let mut bytes = 0usize;
        let mut has_error = false;
        let mut answer_now = false;
        let mut waits = Vec::new();
        // One clock read per round, not per partition (a follower's fetch time per partition).
        let now_ms = self.follower.map(|_| self.node.now_ms());
        let found = self.plan.found.as_deref();
        // Without a session's list, the partitions are looked up by name here, a topic at a
        // time (a librdkafka Fetch names every partition its consumer reads).
        let mut looked_up = match found {
            Some(_) => Vec::new(),
            None => self.node.partitions.get_many(
                self.plan
                    .wanted
                    .iter()
                    .map(|w| (w.key.topic.as_deref(), w.key.partition)),
            ),
        };
        for (i, w) in self.plan.wanted.iter().enumerate() {
            let partition = match found {
                Some(f) => f.get(i).and_then(Weak::upgrade),
                None => looked_up.get_mut(i).and_then(Option::take),
            };
            let mut read = PartitionRead::new();
            read.error = self.read_partition(w, partition, now_ms, &mut read, &mut bytes);
            if let (true, Some((partition, seen, epoch))) = (watch, read.watched.take()) {
                waits.push(PartitionWait {
                    index: i,
                    partition,
                    seen,
                    epoch,
                });
            }
            answer_now |= read.preferred_read_replica >= 0;
            if read.error != ErrorKind::None {
                has_error = true;
                if matches!(
                    read.error,
                    ErrorKind::NotLeaderOrFollower | ErrorKind::FencedLeaderEpoch
                ) && self.version >= 16
                {
                    // KIP-951: where the leader went (endpoints are added in `finish`), from
                    // v16 as Kafka's `handleFetchRequest`.
                    read.current_leader = w
                        .key
                        .topic
                        .as_deref()
                        .and_then(|t| self.node.leader_hint(t, w.key.partition))
                        .map(|(id, epoch, ..)| (id, epoch));
                }
            }
            entries.push(read);
        }
        Collected {
            entries,
            bytes,
            has_error,
            answer_now,
            waits,
        }
    }

    /// Long-polls: waits until `min_bytes` are there, an error, the deadline or shutdown.
    /// After a wake-up every partition whose watched value moved since its read is read
    /// again (Kafka completes a delayed fetch by reading every partition again; one that did
    /// not move would read the same), and the deadline reads all of them once more.
    async fn wait_for_bytes(&self, mut result: Collected) -> Outgoing {
        let mut waiting = FuturesUnordered::new();
        let mut waits = std::mem::take(&mut result.waits);
        for wait in &waits {
            // The receiver moves into its future and comes back with the change.
            waiting.push(changed(self.subscribe(&wait.partition)));
        }
        // A value that moved between a partition's read and the subscription is not a change
        // the receiver reports: compare it with what the read saw.
        self.read_moved(&mut result, &mut waits);
        if result.bytes >= self.min_bytes || result.has_error {
            return self.finish(result);
        }
        let sleep = tokio::time::sleep_until(self.deadline);
        tokio::pin!(sleep);
        loop {
            let next = tokio::select! {
                () = &mut sleep => break,
                () = self.node.shutdown.cancelled() => break,
                next = waiting.next(), if !waiting.is_empty() => next,
            };
            let Some(first) = next else { break };
            let mut woken = vec![first];
            while let Some(Some(more)) = waiting.next().now_or_never() {
                woken.push(more);
            }
            if woken.iter().any(|(_, open)| !open) {
                // A partition was closed; answer with what we have.
                break;
            }
            for (rx, _) in woken {
                waiting.push(changed(rx));
            }
            self.read_moved(&mut result, &mut waits);
            if result.bytes >= self.min_bytes || result.has_error {
                return self.finish(result);
            }
        }
        drop(waiting);
        let result = self.collect(false);
        self.finish(result)
    }

    /// What a wait watches on a partition: a consumer its high watermark, a follower its log
    /// end.
    fn subscribe(&self, partition: &Partition) -> watch::Receiver<i64> {
        if self.follower.is_some() {
            partition.subscribe_log_end()
        } else {
            partition.subscribe_high_watermark()
        }
    }

    fn watched(&self, partition: &Partition) -> i64 {
        if self.follower.is_some() {
            partition.published_log_end()
        } else {
            partition.high_watermark()
        }
    }

    /// Reads again each partition whose watched value or leader epoch is no longer what its
    /// last read saw, within what the other partitions' reads left of `max_bytes`.
    fn read_moved(&self, result: &mut Collected, waits: &mut [PartitionWait]) {
        let mut now_ms = None;
        for wait in waits.iter_mut() {
            if self.watched(&wait.partition) == wait.seen
                && wait.partition.leader_epoch() == wait.epoch
                && !wait.partition.is_closed()
            {
                continue;
            }
            let (Some(w), Some(old)) = (
                self.plan.wanted.get(wait.index),
                result.entries.get(wait.index),
            ) else {
                continue;
            };
            let mut bytes = result.bytes.saturating_sub(old.records.len());
            if self.follower.is_some() && now_ms.is_none() {
                now_ms = Some(self.node.now_ms());
            }
            let mut read = PartitionRead::new();
            read.error = self.read_partition(
                w,
                Some(Arc::clone(&wait.partition)),
                now_ms,
                &mut read,
                &mut bytes,
            );
            // An error sends the answer once this round of reads is done.
            result.has_error |= read.error != ErrorKind::None;
            if let Some((_, seen, epoch)) = read.watched.take() {
                wait.seen = seen;
                wait.epoch = epoch;
            }
            result.bytes = bytes;
            if let Some(entry) = result.entries.get_mut(wait.index) {
                *entry = read;
            }
        }
    }

    /// Reads one partition into `data` within what `bytes` (the answer so far) leaves of
    /// `max_bytes`; `found`: the partition if already looked up.
    fn read_partition(
        &self,
        w: &WantedPartition,
        found: Option<Arc<Partition>>,
        now_ms: Option<i64>,
        data: &mut PartitionRead,
        bytes: &mut usize,
    ) -> ErrorKind {
        let Some(name) = w.key.topic.as_deref() else {
            return ErrorKind::UnknownTopicId;
        };
        if self.follower.is_some() && self.node.cluster().is_none() {
            return ErrorKind::NotLeaderOrFollower;
        }
        // Kafka serves a consumer from a follower when the request has client metadata.
        let from_follower =
            self.follower.is_none() && self.version >= 11 && self.node.cluster().is_some();
        let partition = found
            .or_else(|| self.node.partitions.get(name, w.key.partition))
            .ok_or_else(|| self.node.not_hosted_error(name, w.key.partition));
        // By id (v13+) an id no topic has is UNKNOWN_TOPIC_ID (above: it has no name); a name
        // whose topic or partition is not here, a deleted topic a session still holds among
        // them, is UNKNOWN_TOPIC_OR_PARTITION, as Kafka's `handleFetchRequest` answers.
        let partition = match partition {
            Ok(p) => p,
            Err(kind) => return kind,
        };
        // Read before the role: a role change sets the role and then the epoch under one lock,
        // so a long-poll that saw this epoch and the old role is woken by the change and sees
        // the epoch moved (`read_moved`).
        let epoch = partition.leader_epoch();
        // A replica fetch asks the partition's role once, when it records the fetch (not a
        // leader: NOT_LEADER_OR_FOLLOWER), after the epoch check as in Kafka; a consumer's is
        // checked for reads first.
        if self.follower.is_none()
            && !partition.serves_reads()
            && !(from_follower && partition.is_follower())
        {
            return ErrorKind::NotLeaderOrFollower;
        }
        if w.key.topic_id != Uuid::nil() && w.key.topic_id != partition.topic_id {
            // A topic re-created under the name the request's id had (Kafka's
            // `hasConsistentTopicId`).
            return ErrorKind::InconsistentTopicId;
        }
        if w.current_leader_epoch >= 0 && w.current_leader_epoch != epoch {
            return if w.current_leader_epoch > epoch {
                ErrorKind::UnknownLeaderEpoch
            } else {
                ErrorKind::FencedLeaderEpoch
            };
        }
        if let (Some(follower), Some(now)) = (self.follower, now_ms) {
            match partition.record_follower_fetch(follower, w.fetch_offset, w.log_start_offset, now)
            {
                Ok(f) if f.should_join_isr => {
                    if let Some(rt) = self.node.cluster() {
                        crate::cluster::isr::expand(rt, &partition, follower);
                    }
                }
                Ok(_) => {}
                Err(FollowerFetchRefused::NotLeader) => return ErrorKind::NotLeaderOrFollower,
                Err(FollowerFetchRefused::BeyondLogEnd) => {
                    data.offsets_of(&partition);
                    return ErrorKind::OffsetOutOfRange;
                }
            }
        }
        if from_follower {
            if let Some(id) = self.preferred_read_replica(&partition, w.fetch_offset) {
                // KIP-392: no records, the consumer goes to `id`.
                data.preferred_read_replica = id;
                data.offsets_of(&partition);
                return ErrorKind::None;
            }
        }
        let remaining = self.max_bytes.saturating_sub(*bytes);
        let limit = usize::try_from(w.partition_max_bytes.max(0))
            .unwrap_or(0)
            .min(remaining);
        let min_one = *bytes == 0;
        match partition.read_for_fetch(w.fetch_offset, limit, min_one, self.follower.is_some()) {
            Ok(read) => {
                // What `watched` gives, as of the read.
                let seen = if self.follower.is_some() {
                    read.log_end_offset
                } else {
                    read.high_watermark
                };
                data.watched = Some((partition, seen, epoch));
                data.high_watermark = read.high_watermark;
                data.log_start_offset = read.log_start_offset;
                *bytes += read.records.len();
                data.records = match read.records {
                    StoredRecords::Bytes(b) => ReadRecords::Bytes(b),
                    StoredRecords::File(region) => ReadRecords::File(region),
                };
                ErrorKind::None
            }
            Err(e) => {
                data.offsets_of(&partition);
                partition_error_kind(&e)
            }
        }
    }

    /// The follower this (leader) partition's consumer should read from, with Kafka's
    /// `RackAwareReplicaSelector` configured (`replica.selector.class`; unset, the default,
    /// always reads from the leader).
    fn preferred_read_replica(&self, partition: &Partition, fetch_offset: i64) -> Option<i32> {
        let selector = self.node.config.settings.str("replica.selector.class")?;
        if !selector.ends_with("RackAwareReplicaSelector") || self.client_rack.is_empty() {
            return None;
        }
        let rt = self.node.cluster()?;
        partition.preferred_read_replica(
            &self.client_rack,
            self.node
                .config
                .cluster
                .as_ref()
                .and_then(|c| c.rack.as_deref()),
            fetch_offset,
            |id| rt.broker(id).filter(|b| !b.fenced).and_then(|b| b.rack),
        )
    }

    /// Adds a topic's records in the answer to its bytes-out counter.
    fn count_out(&self, topic: Option<&TopicAnswer>, bytes: usize) {
        if let Some(t) = topic.filter(|t| !t.name.is_empty()) {
            self.node.metrics.add_bytes_out(&t.name, bytes);
        }
    }

    fn finish(&self, collected: Collected) -> Outgoing {
        let mut files = Vec::new();
        // The answer's budget may have cut a partition short: a session then moves the
        // partitions that sent records to its back, so the next rounds serve the others first.
        let budget_limited = collected.bytes > 0 && {
            let left = self.max_bytes.saturating_sub(collected.bytes);
            self.plan
                .wanted
                .iter()
                .any(|w| usize::try_from(w.partition_max_bytes).unwrap_or(0) > left)
        };
        let entries =
            self.node
                .fetch_sessions
                .filter_response(&self.plan, collected.entries, budget_limited);
        let mut topics: Vec<TopicAnswer> = Vec::new();
        let mut endpoints: Vec<Endpoint> = Vec::new();
        // Bytes out are counted per run of one topic's partitions, not per partition.
        let mut sent_of_topic = 0usize;
        for (i, read) in entries {
            let Some(key) = self.plan.wanted.get(i).map(|w| &w.key) else {
                continue;
            };
            let leader = read.current_leader.map_or(-1, |(id, _)| id);
            if self.version >= 16 && leader >= 0 && !endpoints.iter().any(|e| e.node_id == leader) {
                if let Some((id, _, host, port, rack)) = key
                    .topic
                    .as_deref()
                    .and_then(|t| self.node.leader_hint(t, key.partition))
                {
                    endpoints.push(Endpoint {
                        node_id: id,
                        host,
                        port,
                        rack,
                    });
                }
            }
            let same_topic = topics.last().is_some_and(|t| {
                if self.version >= 13 {
                    t.topic_id == key.topic_id
                } else {
                    key.topic.as_deref() == Some(&*t.name)
                }
            });
            if !same_topic {
                self.count_out(topics.last(), sent_of_topic);
                sent_of_topic = 0;
                topics.push(TopicAnswer {
                    name: key.topic.clone().unwrap_or_else(|| Arc::from("")),
                    topic_id: key.topic_id,
                    partitions: Vec::new(),
                });
            }
            let mut data = PartitionAnswer::new(key.partition);
            data.error_code = read.error.code();
            data.high_watermark = read.high_watermark;
            data.last_stable_offset = read.high_watermark;
            data.log_start_offset = read.log_start_offset;
            data.preferred_read_replica = read.preferred_read_replica;
            if let Some(leader) = read.current_leader {
                data.current_leader = leader;
            }
            if self.read_committed {
                data.aborted_transactions = Some(Vec::new());
            }
            data.records = Some(match read.records {
                ReadRecords::Bytes(b) => AnswerRecords::Bytes(b),
                ReadRecords::File(region) => {
                    let len = usize::try_from(region.len).unwrap_or(usize::MAX);
                    files.push(region);
                    AnswerRecords::External {
                        index: files.len() - 1,
                        len,
                    }
                }
            });
            sent_of_topic += data.records.as_ref().map_or(0, AnswerRecords::len);
            if let Some(t) = topics.last_mut() {
                t.partitions.push(data);
            }
        }
        self.count_out(topics.last(), sent_of_topic);
        Outgoing {
            answer: FetchAnswer {
                session_id: self.plan.response_session_id,
                topics,
                node_endpoints: endpoints,
                ..FetchAnswer::default()
            },
            files,
        }
    }
}
