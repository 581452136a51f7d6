//! Request handlers, one file per Kafka API, and the dispatch from a decoded request to them.
//!
//! A handler returns a `Reply`: a response ready now, a future for one that must wait
//! (produce acks, fetch long-polls), or nothing (acks=0). Handlers never see sockets and
//! never fail the connection; errors become Kafka error codes in the response.

pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod fetch;
pub mod group;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;
pub(crate) mod util;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use protocol_shim::fetch_answer::{encode_fetch_answer, FetchAnswer, FrameChunk};
use protocol_shim::{encode_response, Request};
use storage::FileRegion;
use tracing::Instrument;

use crate::node::Node;

/// The encoded response frame as chunks to write in order (a Fetch response keeps its record
/// data as separate chunks, uncopied), or `None` if the connection must close (an encoding bug).
pub type PendingResponse = Pin<Box<dyn Future<Output = Option<Vec<OutChunk>>> + Send>>;

/// One piece of a response frame for the socket writer.
#[derive(Clone, Debug)]
pub enum OutChunk {
    Bytes(Bytes),
    /// Record batches still in their segment file, written from a mapping, copied out or sent
    /// with `sendfile` by the connection writer.
    File(FileRegion),
}

/// A Fetch answer plus the record sets it leaves in segment files (`AnswerRecords::External`
/// index `i` is `files[i]`).
pub struct Outgoing {
    pub answer: FetchAnswer,
    pub files: Vec<FileRegion>,
}

/// What a handler produced.
pub enum Reply {
    Now(Box<ResponseKind>),
    Later(Pin<Box<dyn Future<Output = ResponseKind> + Send>>),
    /// A response that may send records from files (Fetch), now or after waiting.
    WithFiles(Pin<Box<dyn Future<Output = Outgoing> + Send>>),
    /// No response is sent (produce with acks=0).
    Nothing,
    /// No response, and the connection closes once the responses before it are written: an
    /// acks=0 produce that failed somewhere, so the client learns of it (reconnects and
    /// refreshes its metadata), as Kafka's `handleProduceRequest` does.
    Close,
}

/// Runs the in-order part of a request and returns what the writer must await.
/// `peer` is the client's address (reported as the member host of consumer groups).
pub async fn dispatch(
    node: &Arc<Node>,
    request: Request,
    peer: std::net::SocketAddr,
) -> Option<PendingResponse> {
    let started = std::time::Instant::now();
    let Request {
        header,
        api_key,
        version,
        body,
        ..
    } = request;
    let now = |kind: ResponseKind| Reply::Now(Box::new(kind));
    let reply = match body {
        RequestKind::ApiVersions(r) => {
            now(ResponseKind::ApiVersions(api_versions::handle(&r, version)))
        }
        RequestKind::Metadata(r) => now(ResponseKind::Metadata(
            metadata::handle(node, r, version).await,
        )),
        RequestKind::Produce(r) => produce::handle(node, r, version),
        RequestKind::Fetch(r) => fetch::handle(node, r, version),
        RequestKind::ListOffsets(r) => now(ResponseKind::ListOffsets(list_offsets::handle(
            node, r, version,
        ))),
        RequestKind::CreateTopics(r) => now(ResponseKind::CreateTopics(
            create_topics::handle(node, r, version).await,
        )),
        RequestKind::DeleteTopics(r) => now(ResponseKind::DeleteTopics(
            delete_topics::handle(node, r, version).await,
        )),
        RequestKind::CreatePartitions(r) => now(ResponseKind::CreatePartitions(
            create_partitions::handle(node, r, version).await,
        )),
        RequestKind::DescribeConfigs(r) => now(ResponseKind::DescribeConfigs(
            describe_configs::handle(node, r, version),
        )),
        RequestKind::DescribeCluster(r) => now(ResponseKind::DescribeCluster(
            describe_cluster::handle(node, r, version),
        )),
        RequestKind::InitProducerId(r) => now(ResponseKind::InitProducerId(
            init_producer_id::handle(node, r, version),
        )),
        RequestKind::OffsetForLeaderEpoch(r) => now(ResponseKind::OffsetForLeaderEpoch(
            offset_for_leader_epoch::handle(node, r, version),
        )),
        // Consumer groups.
        RequestKind::FindCoordinator(r) => now(ResponseKind::FindCoordinator(
            group::find_coordinator::handle(node, r, version),
        )),
        RequestKind::JoinGroup(r) => {
            let client_id = header.client_id.as_ref().map_or("", |c| c.as_str());
            group::join_group::handle(node, r, version, client_id, peer)
        }
        RequestKind::SyncGroup(r) => group::sync_group::handle(node, r, version),
        RequestKind::Heartbeat(r) => now(ResponseKind::Heartbeat(group::heartbeat::handle(
            node, r, version,
        ))),
        RequestKind::LeaveGroup(r) => group::leave_group::handle(node, r, version),
        RequestKind::OffsetCommit(r) => group::offset_commit::handle(node, r, version),
        RequestKind::OffsetFetch(r) => now(ResponseKind::OffsetFetch(group::offset_fetch::handle(
            node, r, version,
        ))),
        RequestKind::ListGroups(r) => now(ResponseKind::ListGroups(group::list_groups::handle(
            node, r, version,
        ))),
        RequestKind::DescribeGroups(r) => now(ResponseKind::DescribeGroups(
            group::describe_groups::handle(node, r, version),
        )),
        RequestKind::DeleteGroups(r) => group::delete_groups::handle(node, r, version),
        RequestKind::OffsetDelete(r) => group::offset_delete::handle(node, r, version),
        other => {
            // The version table only admits the APIs above; reaching here is a bug in it.
            // Close the connection (the writer stops at a `None` frame) rather than leave the
            // client waiting out its request timeout.
            tracing::error!(api = ?api_key, "no handler for an advertised API; closing connection");
            drop(other);
            return Some(Box::pin(async { None }));
        }
    };
    let correlation_id = header.correlation_id;
    match reply {
        Reply::Nothing => {
            node.metrics
                .observe_request(api_name(api_key), started.elapsed());
            None
        }
        Reply::Close => {
            node.metrics
                .observe_request(api_name(api_key), started.elapsed());
            Some(Box::pin(async { None }))
        }
        Reply::Now(kind) => {
            let frame = encode(api_key, version, correlation_id, *kind);
            node.metrics
                .observe_request(api_name(api_key), started.elapsed());
            Some(Box::pin(async move { frame }))
        }
        Reply::Later(fut) => {
            let node = Arc::clone(node);
            Some(Box::pin(
                async move {
                    let kind = fut.await;
                    let frame = encode(api_key, version, correlation_id, kind);
                    node.metrics
                        .observe_request(api_name(api_key), started.elapsed());
                    frame
                }
                .in_current_span(),
            ))
        }
        Reply::WithFiles(fut) => {
            let node = Arc::clone(node);
            Some(Box::pin(
                async move {
                    let out = fut.await;
                    let frame = encode_with_files(version, correlation_id, out);
                    node.metrics
                        .observe_request(api_name(api_key), started.elapsed());
                    frame
                }
                .in_current_span(),
            ))
        }
    }
}

/// The API's name as metrics label, e.g. `Produce`.
fn api_name(api_key: ApiKey) -> &'static str {
    match api_key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        _ => "Other",
    }
}

fn encode(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    kind: ResponseKind,
) -> Option<Vec<OutChunk>> {
    match encode_response(api_key, version, correlation_id, &kind) {
        Ok(frame) => Some(vec![OutChunk::Bytes(frame)]),
        Err(e) => {
            tracing::error!(
                api = ?api_key,
                version,
                correlation_id,
                error = %e,
                "cannot encode response; closing connection"
            );
            None
        }
    }
}

/// Encodes a Fetch answer whose `files` record sets go out as `OutChunk::File`.
fn encode_with_files(version: i16, correlation_id: i32, out: Outgoing) -> Option<Vec<OutChunk>> {
    match encode_fetch_answer(version, correlation_id, &out.answer) {
        Ok(chunks) => chunks
            .into_iter()
            .map(|c| match c {
                FrameChunk::Bytes(b) => Some(OutChunk::Bytes(b)),
                FrameChunk::External(i) => out.files.get(i).cloned().map(OutChunk::File),
            })
            .collect(),
        Err(e) => {
            tracing::error!(
                api = "Fetch",
                version,
                correlation_id,
                error = %e,
                "cannot encode response; closing connection"
            );
            None
        }
    }
}
