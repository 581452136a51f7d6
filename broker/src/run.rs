//! Start-up and shutdown of a broker process (the client listener and the optional
//! inter-broker listener), and the `healthcheck` subcommand.
//!
//! Shutdown (SIGTERM or SIGINT): stop accepting, let connections finish their in-flight
//! requests, then flush and close every log, and return so the process exits 0. A failed
//! fsync (of a partition, or of the controller's Raft log in a cluster) instead halts the process
//! with exit code 1 (`sync_failure::SyncFailures`).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::clock::SystemClock;
use crate::config::BrokerConfig;
use crate::node::{Node, StartError};
use crate::server::{run_listener, ConnectionLimits};

/// Longest a cluster node spends handing its leaderships over on SIGTERM (Docker's grace
/// period is 10 s).
const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterStartError),
    #[error("{0}")]
    Config(String),
}

/// Runs the broker until a shutdown signal.
pub async fn run(config: BrokerConfig) -> Result<(), RunError> {
    let listen = config.listen;
    // Shared by every listener (see `ConnectionLimits`); checked before anything starts.
    let limits =
        Arc::new(ConnectionLimits::from_settings(&config.settings).map_err(RunError::Config)?);
    let node = Node::start(config, Arc::new(SystemClock))?;
    // A failed fsync halts the broker at once (no clean shutdown, no markers written), as
    // Kafka halts when its last log directory fails; the next start recovers every log.
    let sync_failures = node.partitions.sync_failures().clone();
    tokio::spawn(async move {
        let why = sync_failures.wait().await;
        tracing::error!(
            %why,
            "halting: an fsync (or a write of the controller's log) failed, so the data \
             directory may not hold what was written; restart to recover the logs \
             (acknowledged records were all fsynced before)"
        );
        std::process::exit(1);
    });
    if node.config.cluster.is_some() {
        let rt = crate::cluster::ClusterRuntime::start(&node).await?;
        let _ = node.cluster.set(rt);
    }
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: listen,
            source,
        })?;
    // The inter-broker listener is the same Kafka server on a second socket: followers fetch
    // through it (the address other brokers can reach), clients through the first.
    let inter_broker = match node.config.inter_broker_listen {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::Bind { addr, source })?;
            tracing::info!(
                %addr,
                advertised = %format!(
                    "{}:{}",
                    node.config.inter_broker_advertised_host,
                    node.config.inter_broker_advertised_port
                ),
                "inter-broker listener bound"
            );
            Some(l)
        }
        None => None,
    };
    tracing::info!(
        %listen,
        advertised = %format!("{}:{}", node.config.advertised_host, node.config.advertised_port),
        data_dir = %node.config.data_dir.display(),
        node_id = node.meta.node_id,
        cluster_id = %node.meta.cluster_id,
        topics = node.topics.all().len(),
        "sluice is ready"
    );
    tokio::spawn(Arc::clone(&node).run_retention());
    if let Some(addr) = node.config.metrics_listen {
        let metrics_listener = TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Bind { addr, source })?;
        tracing::info!(%addr, "serving metrics at /metrics");
        tokio::spawn(crate::metrics::http::serve_metrics(
            Arc::clone(&node),
            metrics_listener,
        ));
    }
    let shutdown = node.shutdown.clone();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(RunError::Signal)?;
    let signalled = Arc::clone(&node);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
        }
        if let Some(rt) = signalled.cluster() {
            // Hand leaderships over while still serving, so clients move at once.
            rt.controlled_shutdown(CONTROLLED_SHUTDOWN_TIMEOUT).await;
        }
        shutdown.cancel();
    });
    match inter_broker {
        Some(second) => {
            tokio::join!(
                run_listener(Arc::clone(&node), listener, Arc::clone(&limits), false),
                run_listener(Arc::clone(&node), second, limits, true),
            );
        }
        None => run_listener(Arc::clone(&node), listener, limits, false).await,
    }
    if let Some(rt) = node.cluster() {
        rt.shutdown().await;
    }
    let closing = Arc::clone(&node);
    if let Err(e) = tokio::task::spawn_blocking(move || closing.close_partitions()).await {
        tracing::error!(error = %e, "closing partitions failed");
    }
    tracing::info!("sluice stopped");
    Ok(())
}

/// Sends ApiVersions to `addr` and waits for a well-formed answer.
pub async fn healthcheck(addr: &str, timeout: Duration) -> Result<(), String> {
    use bytes::{Buf, BufMut, BytesMut};
    use kafka_protocol::messages::{
        ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader,
    };
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let work = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let version = 3;
        let mut body = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(ApiKey::ApiVersions as i16)
            .with_request_api_version(version)
            .with_correlation_id(1)
            .with_client_id(Some(StrBytes::from_static_str("sluice-healthcheck")))
            .encode(
                &mut body,
                ApiKey::ApiVersions.request_header_version(version),
            )
            .map_err(|e| e.to_string())?;
        ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")))
            .encode(&mut body, version)
            .map_err(|e| e.to_string())?;
        let mut frame = BytesMut::new();
        frame.put_i32(i32::try_from(body.len()).map_err(|e| e.to_string())?);
        frame.extend_from_slice(&body);
        stream.write_all(&frame).await.map_err(|e| e.to_string())?;
        let size = stream.read_i32().await.map_err(|e| e.to_string())?;
        if !(4..=1 << 20).contains(&size) {
            return Err(format!("bad response size {size}"));
        }
        let mut buf = vec![0u8; usize::try_from(size).map_err(|e| e.to_string())?];
        stream
            .read_exact(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = bytes::Bytes::from(buf);
        if buf.get_i32() != 1 {
            return Err("correlation id mismatch".into());
        }
        let resp = ApiVersionsResponse::decode(&mut buf, version).map_err(|e| e.to_string())?;
        if resp.error_code != 0 {
            return Err(format!("error code {}", resp.error_code));
        }
        Ok(())
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("no answer from {addr} within {timeout:?}"))?
}
