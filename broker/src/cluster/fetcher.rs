//! Follower replication: one task per leader broker fetches every partition this broker
//! follows on that leader, with Kafka's own Fetch request (`replica_id` = our id), and appends
//! the returned batches verbatim. It connects to the leader's registered replica endpoint (its
//! inter-broker listener if it has one, else its client listener).
//!
//! Before fetching a partition whose leader or epoch changed, the follower removes any suffix
//! that diverges from the leader (KIP-101/KIP-279): it asks the leader, with
//! OffsetForLeaderEpoch, where the follower's latest epoch ends on the leader, and truncates
//! to the smaller of that and its own end of the epoch the leader answered with; when the
//! leader answered an epoch the follower does not have, it truncates to where its own older
//! epoch ends and asks again, until the two agree on an epoch.
//!
//! A fetch the leader answers OFFSET_OUT_OF_RANGE is settled as Kafka's
//! `handleOutOfRangeError`: the follower asks the leader's log end and start (ListOffsets as a
//! replica) and truncates to the leader's end if it is ahead of it, or empties its log and
//! restarts at the leader's log start if it is behind it (a replica that was away longer
//! than the leader's retention, or a new one). The leader's log start also follows along
//! with every answer, up to the follower's high watermark.
//!
//! An answer is applied only if the replica still follows at the epoch it fetched with and
//! its log still ends where the fetch began (`Partition::append_as_follower`): an answer that
//! comes back after a leadership change or a truncation is dropped.
//!
//! Each fetcher keeps a fetch session with its leader (KIP-227, `fetch_session`): after the
//! first round, a request names only the partitions whose fetch state changed and the answer
//! carries only partitions with news, so an idle partition costs no bytes on the wire.
//!
//! Partitions are fetched by topic id (Fetch v13), as Kafka's followers do: a follower still
//! holding a deleted topic's replica, whose name a new topic has taken, is answered
//! INCONSISTENT_TOPIC_ID by the new topic's leader instead of being counted as a replica of
//! it.
//!
//! Durability: a follower fetches from its *durable* log end (it waits for the fsync of what
//! it appended before the next fetch), so the leader's high watermark (and acks=all) only
//! counts records that are on disk on every in-sync replica.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};
use parking_lot::Mutex;
use protocol_shim::ErrorKind;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::fetch_session::{FollowerSession, RoundEntry, RoundPlan, Sent, Stamp};
use super::kafka_client::{ClientError, KafkaConnection};
use super::{ClusterRuntime, ClusterSettings};
use crate::controller::state::ClusterState;
use crate::handlers::util::topic_name;
use crate::node::Node;
use crate::partition::{Partition, PartitionError, TopicPartition};

/// The Fetch version followers send (topic ids, top-level replica id).
const FETCH_VERSION: i16 = 13;
/// The OffsetForLeaderEpoch version followers send (with replica id).
const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 4;
/// The ListOffsets version followers send (current leader epoch, no isolation needed).
const LIST_OFFSETS_VERSION: i16 = 7;
/// Connect timeout to a leader.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a follower waits for its own fsync before giving up on a round.
const DURABLE_WAIT: Duration = Duration::from_secs(10);

/// One partition followed on a leader.
#[derive(Clone)]
struct Target {
    partition: Arc<Partition>,
    leader_epoch: i32,
    /// Check for a divergent suffix before the next fetch.
    needs_truncation: bool,
    /// The leader answered the last fetch OFFSET_OUT_OF_RANGE: settle the fetch offset
    /// against the leader's log start and end before the next fetch.
    out_of_range: bool,
    /// Skip until then (after an error).
    backoff_until: Option<Instant>,
    /// What the fetch session holds for this partition (`fetch_session`).
    stamp: Option<Stamp>,
}

/// What one fetcher task shares with the manager.
struct Fetcher {
    leader: i32,
    targets: Mutex<BTreeMap<TopicPartition, Target>>,
    wake: Notify,
    cancel: CancellationToken,
}

/// The fetcher tasks of this broker, by leader.
#[derive(Default)]
pub struct FetcherManager {
    fetchers: Mutex<HashMap<i32, Arc<Fetcher>>>,
}

impl FetcherManager {
    pub fn new() -> Self {
        Self::default()
    }

    /// Follow `partition` on `leader` at `leader_epoch`. `role_changed`: the replica just
    /// became a follower (or changed leader or epoch), so check for divergence first.
    pub fn follow(
        &self,
        node: &Arc<Node>,
        rt: &ClusterRuntime,
        leader: i32,
        partition: Arc<Partition>,
        leader_epoch: i32,
        role_changed: bool,
    ) {
        let tp = partition.tp.clone();
        let mut fetchers = self.fetchers.lock();
        for (id, f) in fetchers.iter() {
            if *id != leader {
                f.targets.lock().remove(&tp);
            }
        }
        let fetcher = fetchers.entry(leader).or_insert_with(|| {
            let f = Arc::new(Fetcher {
                leader,
                targets: Mutex::new(BTreeMap::new()),
                wake: Notify::new(),
                cancel: CancellationToken::new(),
            });
            tokio::spawn(run_fetcher(
                Arc::clone(&f),
                Arc::clone(node),
                rt.subscribe_state(),
                rt.node_id,
                rt.settings.clone(),
            ));
            f
        });
        let mut targets = fetcher.targets.lock();
        let keep = targets.get(&tp).is_some_and(|t| {
            !role_changed && t.leader_epoch == leader_epoch && Arc::ptr_eq(&t.partition, &partition)
        });
        if !keep {
            targets.insert(
                tp,
                Target {
                    partition,
                    leader_epoch,
                    needs_truncation: true,
                    out_of_range: false,
                    backoff_until: None,
                    stamp: None,
                },
            );
            fetcher.wake.notify_one();
        }
    }

    /// Stop following `tp` (it became leader, or was removed).
    pub fn remove(&self, tp: &TopicPartition) {
        let mut fetchers = self.fetchers.lock();
        fetchers.retain(|_, f| {
            let mut targets = f.targets.lock();
            targets.remove(tp);
            if targets.is_empty() {
                f.cancel.cancel();
                false
            } else {
                true
            }
        });
    }

    /// Stop every fetcher (shutdown).
    pub fn stop_all(&self) {
        for (_, f) in self.fetchers.lock().drain() {
            f.cancel.cancel();
        }
    }
}

/// Fetches from one leader until cancelled.
async fn run_fetcher(
    fetcher: Arc<Fetcher>,
    node: Arc<Node>,
    state: watch::Receiver<Arc<ClusterState>>,
    my_id: i32,
    settings: ClusterSettings,
) {
    let backoff = Duration::from_millis(settings.replica_fetch_backoff_ms);
    let mut conn: Option<KafkaConnection> = None;
    let mut session = FollowerSession::new();
    tracing::info!(leader = fetcher.leader, "replica fetcher started");
    loop {
        if fetcher.cancel.is_cancelled() || node.shutdown.is_cancelled() {
            tracing::info!(leader = fetcher.leader, "replica fetcher stopped");
            return;
        }
        let now = Instant::now();
        // The round's targets, in name order; each names itself (`partition.tp`, the map's
        // key), so the snapshot copies no names.
        let targets: Vec<Target> = fetcher
            .targets
            .lock()
            .values()
            .filter(|t| t.backoff_until.is_none_or(|b| b <= now))
            .cloned()
            .collect();
        if targets.is_empty() {
            tokio::select! {
                () = fetcher.cancel.cancelled() => {}
                () = node.shutdown.cancelled() => {}
                () = fetcher.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            continue;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                let endpoint = state
                    .borrow()
                    .brokers
                    .get(&fetcher.leader)
                    .map(|b| b.replica_endpoint().to_string());
                let Some(endpoint) = endpoint else {
                    sleep_or_cancel(&fetcher, &node, backoff).await;
                    continue;
                };
                session.reset();
                match KafkaConnection::connect(
                    &endpoint,
                    format!("sluice-replica-{my_id}"),
                    CONNECT_TIMEOUT,
                )
                .await
                {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        tracing::debug!(leader = fetcher.leader, error = %e, "cannot reach leader");
                        sleep_or_cancel(&fetcher, &node, backoff).await;
                        continue;
                    }
                }
            }
        };
        let result = tokio::select! {
            () = fetcher.cancel.cancelled() => continue,
            () = node.shutdown.cancelled() => continue,
            r = fetch_round(c, &fetcher, &mut session, &targets, my_id, &settings) => r,
        };
        if let Err(e) = result {
            tracing::debug!(leader = fetcher.leader, error = %e, "replica fetch failed; reconnecting");
            conn = None;
            sleep_or_cancel(&fetcher, &node, backoff).await;
        }
    }
}

async fn sleep_or_cancel(fetcher: &Fetcher, node: &Node, d: Duration) {
    tokio::select! {
        () = fetcher.cancel.cancelled() => {}
        () = node.shutdown.cancelled() => {}
        () = tokio::time::sleep(d) => {}
    }
}

/// Marks `tp` to be skipped for `backoff` (if it is still the same target).
fn back_off(
    fetcher: &Fetcher,
    tp: &TopicPartition,
    target: &Target,
    backoff: Duration,
    truncate: bool,
) {
    update_target(fetcher, tp, target, |t| {
        t.backoff_until = Some(Instant::now() + backoff);
        t.needs_truncation |= truncate;
    });
}

/// Applies `f` to `tp`'s target if it is still the one this round used (the reconciler may
/// have replaced it with a new partition or epoch meanwhile).
fn update_target(
    fetcher: &Fetcher,
    tp: &TopicPartition,
    used: &Target,
    f: impl FnOnce(&mut Target),
) {
    if let Some(t) = fetcher.targets.lock().get_mut(tp) {
        if Arc::ptr_eq(&t.partition, &used.partition) && t.leader_epoch == used.leader_epoch {
            f(t);
        }
    }
}

/// One round: divergence checks where needed, then one Fetch for every target (naming, in a
/// session, only what changed).
async fn fetch_round(
    conn: &mut KafkaConnection,
    fetcher: &Fetcher,
    session: &mut FollowerSession,
    targets: &[Target],
    my_id: i32,
    settings: &ClusterSettings,
) -> Result<(), ClientError> {
    let backoff = Duration::from_millis(settings.replica_fetch_backoff_ms);
    let mut ready: Vec<&Target> = Vec::with_capacity(targets.len());
    for target in targets {
        let tp = &target.partition.tp;
        if target.needs_truncation {
            if let Err(reason) = truncate_divergent(conn, tp, target, my_id).await? {
                tracing::debug!(partition = %tp, %reason, "divergence check failed; retrying");
                back_off(fetcher, tp, target, backoff, true);
                continue;
            }
            update_target(fetcher, tp, target, |t| t.needs_truncation = false);
        }
        if target.out_of_range {
            if let Err(reason) = settle_out_of_range(conn, tp, target, my_id).await? {
                tracing::debug!(partition = %tp, %reason, "out-of-range fetch offset not settled; retrying");
                back_off(fetcher, tp, target, backoff, false);
                continue;
            }
            update_target(fetcher, tp, target, |t| t.out_of_range = false);
        }
        ready.push(target);
    }
    if ready.is_empty() {
        return Ok(());
    }

    // The round's partitions in target order (sorted by topic and index), with what each
    // would send.
    let entries: Vec<(RoundEntry<'_>, &Target)> = ready
        .iter()
        .filter_map(|&target| {
            let (log_start_offset, fetch_offset) = target.partition.log_offsets().ok()?;
            let sent = Sent {
                fetch_offset,
                leader_epoch: target.leader_epoch,
                log_start_offset,
            };
            Some((
                RoundEntry {
                    tp: &target.partition.tp,
                    topic_id: target.partition.topic_id,
                    sent,
                    stamp: target.stamp,
                },
                target,
            ))
        })
        .collect();
    let (round, used): (Vec<RoundEntry<'_>>, Vec<&Target>) = entries.into_iter().unzip();
    if round.is_empty() {
        // Every partition's log was unreadable (being closed): no request naming nothing,
        // which the leader would answer at once, in a loop (Kafka's `buildFetch` sends none).
        for target in &ready {
            back_off(fetcher, &target.partition.tp, target, backoff, false);
        }
        return Ok(());
    }
    let plan = session.plan(&round);
    let request = round_request(&plan, &round, my_id, settings);
    let timeout = Duration::from_millis(
        u64::try_from(settings.replica_fetch_wait_max_ms).unwrap_or(500) + 15_000,
    );
    let response: FetchResponse = conn
        .send(ApiKey::Fetch, FETCH_VERSION, &request, timeout)
        .await?;
    if response.error_code != 0 {
        session.reset();
        if response.error_code == ErrorKind::FetchSessionIdNotFound.code()
            || response.error_code == ErrorKind::InvalidFetchSessionEpoch.code()
        {
            // The leader lost or evicted the session: the next round opens a new one.
            tracing::debug!(
                leader = fetcher.leader,
                code = response.error_code,
                "fetch session reset"
            );
            return Ok(());
        }
        tracing::debug!(
            leader = fetcher.leader,
            code = response.error_code,
            "fetch refused"
        );
        for target in &ready {
            back_off(fetcher, &target.partition.tp, target, backoff, false);
        }
        return Ok(());
    }
    if let Some(stamps) = session.complete(&plan, &round, response.session_id) {
        stamp_targets(fetcher, &plan, &round, &used, &stamps);
    }

    let mut appended: Vec<Appended> = Vec::new();
    // The answer names topics by id: the round's names by id, built only for an answer with
    // news. An id the round does not hold (a forgotten topic's) is skipped.
    let names = if response.responses.is_empty() {
        Vec::new()
    } else {
        names_by_id(&round)
    };
    for topic in &response.responses {
        let Ok(n) = names.binary_search_by(|(id, _)| id.cmp(&topic.topic_id)) else {
            continue;
        };
        let Some(&(_, name)) = names.get(n) else {
            continue;
        };
        for data in &topic.partitions {
            let Ok(i) = round.binary_search_by(|e| {
                (e.tp.topic.as_str(), e.tp.partition).cmp(&(name, data.partition_index))
            }) else {
                continue;
            };
            let (tp, target, sent) = (round[i].tp, used[i], &round[i].sent);
            if data.error_code == ErrorKind::OffsetOutOfRange.code() {
                tracing::debug!(partition = %tp, fetch_offset = sent.fetch_offset, "follower fetch offset out of range");
                update_target(fetcher, tp, target, |t| t.out_of_range = true);
                continue;
            }
            if data.error_code != 0 {
                tracing::debug!(partition = %tp, code = data.error_code, "follower fetch error");
                back_off(fetcher, tp, target, backoff, false);
                continue;
            }
            let partition = &target.partition;
            let records = data.records.as_ref().filter(|r| !r.is_empty());
            match records {
                Some(records) => {
                    match partition.append_as_follower(
                        records,
                        sent.fetch_offset,
                        target.leader_epoch,
                    ) {
                        Ok(log_end) => appended.push(Appended {
                            partition: Arc::clone(partition),
                            log_end,
                            high_watermark: data.high_watermark,
                            leader_log_start: data.log_start_offset,
                            sent_log_start: sent.log_start_offset,
                            leader_epoch: target.leader_epoch,
                        }),
                        Err(PartitionError::StaleFetch(_)) => {
                            tracing::debug!(partition = %tp, "dropping a stale fetch answer");
                        }
                        Err(e) => {
                            tracing::warn!(partition = %tp, error = %e, "cannot append replicated batches");
                            back_off(fetcher, tp, target, backoff, true);
                        }
                    }
                }
                None => {
                    partition.set_follower_hw(data.high_watermark, target.leader_epoch);
                    follow_log_start(partition, data.log_start_offset, sent.log_start_offset);
                }
            }
        }
    }
    // Fetch again only once what we appended is durable: our next fetch offset tells the
    // leader these records are safe here.
    let deadline = Instant::now() + DURABLE_WAIT;
    for a in appended {
        if a.partition.wait_local_durable(a.log_end, deadline).await {
            a.partition
                .set_follower_hw(a.high_watermark, a.leader_epoch);
            follow_log_start(&a.partition, a.leader_log_start, a.sent_log_start);
        }
    }
    Ok(())
}

/// A partition's answer appended in a round, applied once it is durable.
struct Appended {
    partition: Arc<Partition>,
    /// Our log end after the append.
    log_end: i64,
    /// The leader's high watermark and log start in its answer.
    high_watermark: i64,
    leader_log_start: i64,
    /// The log start our fetch carried.
    sent_log_start: i64,
    /// The epoch we fetched at.
    leader_epoch: i32,
}

/// Moves the follower's log start up to the leader's (`Partition::follow_leader_log_start`)
/// when the leader's is past the one the fetch carried (`sent`).
fn follow_log_start(partition: &Partition, leader_log_start: i64, sent: i64) {
    if leader_log_start <= sent {
        return;
    }
    if let Err(e) = partition.follow_leader_log_start(leader_log_start) {
        tracing::warn!(partition = %partition.tp, error = %e, "cannot move the log start offset to the leader's");
    }
}

/// The round's topic names by topic id, sorted by id (entries come in name order, so each
/// topic's partitions are adjacent).
fn names_by_id<'a>(round: &[RoundEntry<'a>]) -> Vec<(Uuid, &'a str)> {
    let mut names: Vec<(Uuid, &'a str)> = Vec::new();
    for e in round {
        if names.last().is_none_or(|&(id, _)| id != e.topic_id) {
            names.push((e.topic_id, e.tp.topic.as_str()));
        }
    }
    names.sort_unstable_by_key(|&(id, _)| id);
    names
}

/// The Fetch request (v13) for `plan`: one FetchTopic per topic id, in round order.
fn round_request(
    plan: &RoundPlan,
    round: &[RoundEntry<'_>],
    my_id: i32,
    settings: &ClusterSettings,
) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for e in plan.include.iter().filter_map(|&i| round.get(i)) {
        let part = FetchPartition::default()
            .with_partition(e.tp.partition)
            .with_current_leader_epoch(e.sent.leader_epoch)
            .with_fetch_offset(e.sent.fetch_offset)
            .with_last_fetched_epoch(-1)
            .with_log_start_offset(e.sent.log_start_offset)
            .with_partition_max_bytes(settings.replica_fetch_max_bytes);
        match topics.last_mut() {
            Some(t) if t.topic_id == e.topic_id => t.partitions.push(part),
            _ => topics.push(
                FetchTopic::default()
                    .with_topic_id(e.topic_id)
                    .with_partitions(vec![part]),
            ),
        }
    }
    let mut forgotten: Vec<ForgottenTopic> = Vec::new();
    for (tp, topic_id) in &plan.forget {
        match forgotten.last_mut() {
            Some(t) if t.topic_id == *topic_id => t.partitions.push(tp.partition),
            _ => forgotten.push(
                ForgottenTopic::default()
                    .with_topic_id(*topic_id)
                    .with_partitions(vec![tp.partition]),
            ),
        }
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(my_id))
        .with_max_wait_ms(settings.replica_fetch_wait_max_ms)
        .with_min_bytes(1)
        .with_max_bytes(settings.replica_fetch_response_max_bytes)
        .with_isolation_level(0)
        .with_session_id(plan.session_id)
        .with_session_epoch(plan.epoch)
        .with_topics(topics)
        .with_forgotten_topics_data(forgotten)
}

/// After an answered round: stamps the partitions the plan named with what the session now
/// holds for them, and clears the stamps of those it forgot, under one lock.
fn stamp_targets(
    fetcher: &Fetcher,
    plan: &RoundPlan,
    round: &[RoundEntry<'_>],
    used: &[&Target],
    stamps: &[Stamp],
) {
    if plan.include.is_empty() && plan.forget.is_empty() {
        return;
    }
    let mut targets = fetcher.targets.lock();
    for (&i, stamp) in plan.include.iter().zip(stamps) {
        let (Some(e), Some(u)) = (round.get(i), used.get(i)) else {
            continue;
        };
        if let Some(t) = targets.get_mut(e.tp) {
            if Arc::ptr_eq(&t.partition, &u.partition) && t.leader_epoch == u.leader_epoch {
                t.stamp = Some(*stamp);
            }
        }
    }
    for (tp, topic_id) in &plan.forget {
        if let Some(t) = targets.get_mut(tp) {
            if t.partition.topic_id == *topic_id {
                t.stamp = None;
            }
        }
    }
}

/// The most OffsetForLeaderEpoch rounds one divergence check takes: each round that does not
/// settle it truncates below an epoch of ours, so the rounds are bounded by our epoch count;
/// past this the check is retried after a back-off, from where it got to.
const MAX_DIVERGENCE_ROUNDS: usize = 64;

/// Asks the leader where our latest epoch ends and truncates a divergent suffix, asking again
/// while the leader answers with an epoch we do not have (Kafka's `getOffsetTruncationState`
/// with `truncationCompleted = false`). The outer error is a connection failure; the inner one
/// a refusal to retry later.
async fn truncate_divergent(
    conn: &mut KafkaConnection,
    tp: &TopicPartition,
    target: &Target,
    my_id: i32,
) -> Result<Result<(), String>, ClientError> {
    let partition = &target.partition;
    for _ in 0..MAX_DIVERGENCE_ROUNDS {
        let latest = match partition.latest_epoch() {
            Ok(Some(e)) => e,
            // An empty log (or one without epochs) has nothing to diverge.
            Ok(None) => return Ok(Ok(())),
            Err(e) => return Ok(Err(e.to_string())),
        };
        let answer = match leader_epoch_end(conn, tp, target, latest, my_id).await? {
            Ok(answer) => answer,
            Err(reason) => return Ok(Err(reason)),
        };
        let leo = match partition.log_end_offset() {
            Ok(o) => o,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let ours = if answer.0 < 0 || answer.1 < 0 {
            None
        } else {
            match partition.local_end_offset_for_epoch(answer.0) {
                Ok(found) => Some(found),
                Err(e) => return Ok(Err(e.to_string())),
            }
        };
        let step = divergence_step(answer, ours, leo, partition.high_watermark());
        // An unsettled step truncates even at the log end: it drops an epoch entry there that
        // no batch followed, which the next round would otherwise ask about again.
        if step.truncate_to < leo || !step.settled {
            tracing::info!(partition = %tp, from = leo, to = step.truncate_to, leader_epoch = answer.0, "truncating divergent suffix");
            if let Err(e) = partition.truncate_to(step.truncate_to, target.leader_epoch) {
                return Ok(Err(e.to_string()));
            }
        }
        if step.settled {
            return Ok(Ok(()));
        }
    }
    Ok(Err(format!(
        "no common epoch after {MAX_DIVERGENCE_ROUNDS} rounds"
    )))
}

/// One round's outcome of the divergence check.
#[derive(Debug, PartialEq, Eq)]
struct DivergenceStep {
    truncate_to: i64,
    /// False: the leader answered an epoch we lack; ask again after truncating.
    settled: bool,
}

/// Kafka's `getOffsetTruncationState`: `answer` is the leader's (epoch, end offset) for our
/// latest epoch, `ours` our own largest epoch at or below the leader's answer and its end
/// (`None` when we have none that old; not asked when the leader had no epoch), `leo` our
/// log end, `high_watermark` ours.
fn divergence_step(
    answer: (i32, i64),
    ours: Option<Option<(i32, i64)>>,
    leo: i64,
    high_watermark: i64,
) -> DivergenceStep {
    let (leader_epoch, leader_end) = answer;
    match ours {
        // The leader has no epoch at or below ours: keep only what is below our high
        // watermark (KIP-279's fallback).
        None => DivergenceStep {
            truncate_to: high_watermark.min(leo),
            settled: true,
        },
        // We hold that epoch: we diverge where it ends on either side.
        Some(Some((epoch, our_end))) if epoch == leader_epoch => DivergenceStep {
            truncate_to: our_end.min(leader_end).min(leo),
            settled: true,
        },
        // We lack the leader's epoch: cut to where our older epoch ends, then ask about it.
        Some(Some((_, our_end))) => DivergenceStep {
            truncate_to: our_end.min(leo),
            settled: false,
        },
        // No epoch of ours is that old (our log starts after it): the leader's end of its
        // epoch is safe to keep up to.
        Some(None) => DivergenceStep {
            truncate_to: leader_end.min(leo),
            settled: true,
        },
    }
}

/// The leader's answer to OffsetForLeaderEpoch for our `epoch`: (its largest epoch at or
/// below it, that epoch's end offset), -1s when it has none.
async fn leader_epoch_end(
    conn: &mut KafkaConnection,
    tp: &TopicPartition,
    target: &Target,
    epoch: i32,
    my_id: i32,
) -> Result<Result<(i32, i64), String>, ClientError> {
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(my_id))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(topic_name(&tp.topic))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(tp.partition)
                .with_current_leader_epoch(target.leader_epoch)
                .with_leader_epoch(epoch)])]);
    let response: OffsetForLeaderEpochResponse = conn
        .send(
            ApiKey::OffsetForLeaderEpoch,
            OFFSET_FOR_LEADER_EPOCH_VERSION,
            &request,
            Duration::from_secs(10),
        )
        .await?;
    let Some(answer) = response
        .topics
        .iter()
        .filter(|t| t.topic.0.as_str() == tp.topic)
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition == tp.partition)
    else {
        return Ok(Err("no answer for the partition".into()));
    };
    if answer.error_code != 0 {
        return Ok(Err(format!("leader answered error {}", answer.error_code)));
    }
    Ok(Ok((answer.leader_epoch, answer.end_offset)))
}

/// After an OFFSET_OUT_OF_RANGE answer (Kafka's `fetchOffsetAndTruncate`): if the leader's
/// log ends below ours, truncate to its end; if its log starts past our end, empty ours and
/// restart at its start. Otherwise the next fetch from our end is in range again.
async fn settle_out_of_range(
    conn: &mut KafkaConnection,
    tp: &TopicPartition,
    target: &Target,
    my_id: i32,
) -> Result<Result<(), String>, ClientError> {
    let partition = &target.partition;
    let leo = match partition.log_end_offset() {
        Ok(o) => o,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let leader_end = match leader_offset(conn, tp, target, LATEST_OFFSET, my_id).await? {
        Ok(o) => o,
        Err(reason) => return Ok(Err(reason)),
    };
    if leader_end < leo {
        tracing::warn!(partition = %tp, from = leo, to = leader_end, "the leader's log ends below ours; truncating to its end");
        return Ok(partition
            .truncate_to(leader_end, target.leader_epoch)
            .map(|_| ())
            .map_err(|e| e.to_string()));
    }
    let leader_start = match leader_offset(conn, tp, target, EARLIEST_OFFSET, my_id).await? {
        Ok(o) => o,
        Err(reason) => return Ok(Err(reason)),
    };
    if leader_start > leo {
        tracing::warn!(partition = %tp, log_end = leo, leader_log_start = leader_start, "the leader's log starts past our end; restarting our log there");
        return Ok(partition
            .truncate_fully_and_start_at(leader_start, target.leader_epoch)
            .map_err(|e| e.to_string()));
    }
    Ok(Ok(()))
}

/// ListOffsets `timestamp` for latest (the log end offset, asked as a replica).
const LATEST_OFFSET: i64 = -1;
/// ListOffsets `timestamp` for earliest (the log start offset).
const EARLIEST_OFFSET: i64 = -2;

/// The leader's offset for `timestamp` (latest or earliest), asked as replica `my_id` so that
/// latest is its log end (no isolation level).
async fn leader_offset(
    conn: &mut KafkaConnection,
    tp: &TopicPartition,
    target: &Target,
    timestamp: i64,
    my_id: i32,
) -> Result<Result<i64, String>, ClientError> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(my_id))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(&tp.topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(tp.partition)
                .with_current_leader_epoch(target.leader_epoch)
                .with_timestamp(timestamp)])]);
    let response: ListOffsetsResponse = conn
        .send(
            ApiKey::ListOffsets,
            LIST_OFFSETS_VERSION,
            &request,
            Duration::from_secs(10),
        )
        .await?;
    let Some(answer) = response
        .topics
        .iter()
        .filter(|t| t.name.0.as_str() == tp.topic)
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == tp.partition)
    else {
        return Ok(Err("no answer for the partition".into()));
    };
    if answer.error_code != 0 || answer.offset < 0 {
        return Ok(Err(format!(
            "leader answered error {} offset {}",
            answer.error_code, answer.offset
        )));
    }
    Ok(Ok(answer.offset))
}

#[cfg(test)]
#[path = "fetcher_tests.rs"]
mod tests;
