//! Produce (key 0): validate and append each partition's batch in request order, then (for
//! acks=1 and acks=-1) answer once every appended batch is durable, or with REQUEST_TIMED_OUT
//! after `timeout_ms`. acks=0 gets no response at all.
//!
//! Transactions are not supported yet: a transactional produce is refused with
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED and nothing is stored.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse, ResponseKind};
use protocol_shim::ErrorKind;
use storage::batch::{BatchHeader, Compression};
use storage::{AppendOutcome, StorageError};

use super::util::{partition_error_kind, str_bytes, topic_name};
use super::Reply;
use crate::node::Node;
use crate::partition::{AckWait, Partition, PartitionError};

/// Longest a produce may wait for durability, whatever the client asks.
const MAX_TIMEOUT_MS: i32 = 300_000;

pub fn handle(node: &Arc<Node>, request: ProduceRequest, version: i16) -> Reply {
    let now_ms = node.now_ms();
    let acks = request.acks;
    let timeout_ms = request.timeout_ms.clamp(0, MAX_TIMEOUT_MS);
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0));
    let acks_valid = matches!(acks, -1..=1);
    let attempt = Attempt {
        acks,
        version,
        transactional: request.transactional_id.is_some(),
        now_ms,
    };
    // (topic index, partition index, partition, offset that must become durable,
    // min.insync.replicas, the leader epoch the records were appended at)
    let mut waits: Vec<(usize, usize, Arc<Partition>, i64, usize, i32)> = Vec::new();
    let mut responses = Vec::with_capacity(request.topic_data.len());
    // KIP-951 endpoints of leaders named in NOT_LEADER_OR_FOLLOWER answers (v10+).
    let mut endpoints: Vec<NodeEndpoint> = Vec::new();

    for (ti, topic) in request.topic_data.into_iter().enumerate() {
        let meta = if version >= 13 {
            node.topics.get_by_id(topic.topic_id)
        } else {
            node.topics.get(topic.name.0.as_str())
        };
        let unknown = if version >= 13 {
            ErrorKind::UnknownTopicId
        } else {
            ErrorKind::UnknownTopicOrPartition
        };
        let mut partition_responses = Vec::with_capacity(topic.partition_data.len());
        for (pi, pd) in topic.partition_data.into_iter().enumerate() {
            let mut resp = PartitionProduceResponse::default()
                .with_index(pd.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let result = append_partition(
                node,
                &attempt,
                meta.as_ref(),
                unknown,
                pd.index,
                pd.records.as_deref(),
            );
            match result {
                Ok((partition, outcome, epoch)) => {
                    let (base, last, append_time) = match outcome {
                        AppendOutcome::Appended {
                            base_offset,
                            last_offset,
                            log_append_time_ms,
                            record_count,
                            ..
                        } => {
                            let bytes = pd.records.as_ref().map_or(0, |r| r.len());
                            node.metrics.add_bytes_in(
                                &partition.tp.topic,
                                bytes,
                                u64::from(record_count),
                            );
                            (base_offset, last_offset, log_append_time_ms)
                        }
                        AppendOutcome::Duplicate {
                            base_offset,
                            last_offset,
                            log_append_time_ms,
                        } => (base_offset, last_offset, log_append_time_ms),
                    };
                    resp = resp
                        .with_base_offset(base)
                        .with_log_append_time_ms(append_time)
                        .with_log_start_offset(partition.log_start_offset().unwrap_or(-1));
                    let min_isr = meta
                        .as_ref()
                        .map_or(1, |m| effective_min_isr(node, m, &partition));
                    waits.push((ti, pi, partition, last + 1, min_isr, epoch));
                }
                Err(Refusal {
                    kind,
                    message,
                    record_errors,
                    log_start_offset,
                }) => {
                    tracing::debug!(partition = pd.index, error = ?kind, %message, "produce refused");
                    resp = resp
                        .with_error_code(kind.code())
                        .with_log_start_offset(log_start_offset);
                    if kind == ErrorKind::NotLeaderOrFollower && version >= 10 {
                        let name = meta.as_ref().map_or("", |m| m.name.as_str());
                        add_leader_hint(node, name, pd.index, &mut resp, &mut endpoints);
                    }
                    if version >= 8 {
                        resp = resp.with_error_message(Some(str_bytes(message)));
                        resp.record_errors = record_errors
                            .into_iter()
                            .map(|(index, why)| {
                                BatchIndexAndErrorMessage::default()
                                    .with_batch_index(index)
                                    .with_batch_index_error_message(Some(str_bytes(why)))
                            })
                            .collect();
                    }
                }
            }
            partition_responses.push(resp);
        }
        // A copy of the name: the response waits for the fsync, and a slice of the request
        // would keep the whole request buffer alive meanwhile, so the connection could not
        // reuse it for the next request (it would fault in a fresh one every time).
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_name(topic.name.0.as_str()))
                .with_topic_id(topic.topic_id)
                .with_partition_responses(partition_responses),
        );
    }

    if acks == 0 && acks_valid {
        let failed = responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .any(|p| p.error_code != 0);
        if failed {
            tracing::debug!("acks=0 produce failed; closing the connection as Kafka does");
            return Reply::Close;
        }
        return Reply::Nothing;
    }
    let response = ProduceResponse::default()
        .with_responses(responses)
        .with_node_endpoints(endpoints);
    if waits.is_empty() {
        return Reply::Now(Box::new(ResponseKind::Produce(response)));
    }
    let node = Arc::clone(node);
    Reply::Later(Box::pin(async move {
        let mut response = response;
        for (ti, pi, partition, offset, min_isr, epoch) in waits {
            // acks=all: on every in-sync replica (the high watermark passed it, in a cluster),
            // while this replica still leads at the epoch that appended them; acks=1: durable
            // on this replica.
            let error = if acks == -1 {
                match partition.wait_all_replicas(offset, epoch, deadline).await {
                    AckWait::TimedOut => Some(ErrorKind::RequestTimedOut),
                    AckWait::NotLeader => Some(ErrorKind::NotLeaderOrFollower),
                    AckWait::Done if partition.isr_len() < min_isr => {
                        Some(ErrorKind::NotEnoughReplicasAfterAppend)
                    }
                    AckWait::Done => None,
                }
            } else if !partition.wait_local_durable(offset, deadline).await {
                Some(ErrorKind::RequestTimedOut)
            } else {
                None
            };
            let Some(kind) = error else { continue };
            let ProduceResponse {
                responses,
                node_endpoints,
                ..
            } = &mut response;
            if let Some(r) = responses
                .get_mut(ti)
                .and_then(|t| t.partition_responses.get_mut(pi))
            {
                r.error_code = kind.code();
                if kind == ErrorKind::NotLeaderOrFollower && version >= 10 {
                    add_leader_hint(&node, &partition.tp.topic, r.index, r, node_endpoints);
                }
            }
        }
        ResponseKind::Produce(response)
    }))
}

/// What a produce request asks of every partition it names.
struct Attempt {
    acks: i16,
    version: i16,
    transactional: bool,
    now_ms: i64,
}

/// Why one partition's records were refused: the error and its message, and for records
/// refused one by one (Kafka's `RecordValidationException`) which and why, with the partition's
/// log start offset, which Kafka sends with them (-1 otherwise).
struct Refusal {
    kind: ErrorKind,
    message: String,
    record_errors: Vec<(i32, String)>,
    log_start_offset: i64,
}

impl Refusal {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Refusal {
            kind,
            message: message.into(),
            record_errors: Vec::new(),
            log_start_offset: -1,
        }
    }
}

/// Checks and appends one partition's records: the partition, what the append did, and the
/// leader epoch it appended at.
fn append_partition(
    node: &Node,
    attempt: &Attempt,
    meta: Option<&crate::metadata::TopicMeta>,
    unknown: ErrorKind,
    index: i32,
    records: Option<&[u8]>,
) -> Result<(Arc<Partition>, AppendOutcome, i32), Refusal> {
    let Attempt {
        acks,
        version,
        transactional,
        now_ms,
    } = *attempt;
    if !matches!(acks, -1..=1) {
        return Err(Refusal::new(
            ErrorKind::InvalidRequiredAcks,
            format!("invalid acks {acks}"),
        ));
    }
    let meta = meta.ok_or_else(|| Refusal::new(unknown, "unknown topic"))?;
    if meta.internal {
        return Err(Refusal::new(
            ErrorKind::InvalidTopic,
            format!("Cannot append to internal topic {}", meta.name),
        ));
    }
    let partition = node.leader_partition(&meta.name, index).map_err(|kind| {
        let message = if kind == ErrorKind::NotLeaderOrFollower {
            "This server is not the leader for that topic-partition."
        } else {
            "This server does not host this topic-partition."
        };
        Refusal::new(kind, message)
    })?;
    let records = records.ok_or_else(|| Refusal::new(ErrorKind::InvalidRecord, "null records"))?;
    let header = BatchHeader::parse(records).ok();
    if version < 7 && header.as_ref().and_then(|h| h.compression().ok()) == Some(Compression::Zstd)
    {
        // Kafka's `ProduceRequest.validateRecords`: zstd needs Produce v7 (KIP-110).
        return Err(Refusal::new(
            ErrorKind::UnsupportedCompressionType,
            format!(
                "Produce requests with version {version} are not allowed to use ZStandard \
                 compression"
            ),
        ));
    }
    if transactional || header.is_some_and(|h| h.is_transactional()) {
        return Err(Refusal::new(
            ErrorKind::TransactionalIdAuthorizationFailed,
            "transactions are not supported by this broker yet",
        ));
    }
    if acks == -1 {
        let min_isr = effective_min_isr(node, meta, &partition);
        let lag_ms = node
            .cluster()
            .map_or(i64::MAX, |rt| rt.settings.replica_lag_time_max_ms);
        let in_sync = partition.live_isr_len(now_ms, lag_ms);
        if in_sync < min_isr {
            return Err(Refusal::new(
                ErrorKind::NotEnoughReplicas,
                format!(
                    "The size of the current ISR {in_sync} is insufficient to satisfy the \
                     min.isr requirement of {min_isr} for partition {}",
                    partition.tp
                ),
            ));
        }
    }
    let (outcome, epoch) = partition.append_at_epoch(records, now_ms).map_err(|e| {
        let mut refusal = Refusal::new(partition_error_kind(&e), e.to_string());
        if let PartitionError::Storage(StorageError::RecordsRefused { records, .. }) = e {
            refusal.record_errors = records;
            refusal.log_start_offset = partition.log_start_offset().unwrap_or(-1);
        }
        refusal
    })?;
    Ok((partition, outcome, epoch))
}

/// KIP-951 (v10+): names where a partition's leader went in its NOT_LEADER_OR_FOLLOWER answer,
/// and lists that leader's endpoint once.
fn add_leader_hint(
    node: &Node,
    topic: &str,
    partition: i32,
    resp: &mut PartitionProduceResponse,
    endpoints: &mut Vec<NodeEndpoint>,
) {
    let Some((id, epoch, host, port, rack)) = node.leader_hint(topic, partition) else {
        return;
    };
    resp.current_leader = LeaderIdAndEpoch::default()
        .with_leader_id(BrokerId(id))
        .with_leader_epoch(epoch);
    if !endpoints.iter().any(|e| e.node_id.0 == id) {
        endpoints.push(
            NodeEndpoint::default()
                .with_node_id(BrokerId(id))
                .with_host(str_bytes(host))
                .with_port(port)
                .with_rack(rack.map(str_bytes)),
        );
    }
}

/// The topic's `min.insync.replicas` (or the broker default), capped by the partition's replica
/// count as Kafka's `Partition.effectiveMinIsr` does: a setting above the replication factor
/// (`min.insync.replicas=2` on a single node, or for an RF=1 topic) asks for every replica,
/// not for the impossible.
fn effective_min_isr(
    node: &Node,
    meta: &crate::metadata::TopicMeta,
    partition: &crate::partition::Partition,
) -> usize {
    meta.configs
        .get("min.insync.replicas")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(|| {
            usize::try_from(node.config.settings.i32("min.insync.replicas")).unwrap_or(1)
        })
        .clamp(1, partition.replica_count())
}

#[cfg(test)]
#[path = "produce_tests.rs"]
mod tests;
