//! A controller whose Raft log cannot be fsynced: the write is not acknowledged, Raft stops on
//! it, and `Controller::storage_failure` reports it (the broker halts on that); a normal
//! shutdown is not reported as a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use uuid::Uuid;

use super::records::Command;
use super::{Controller, ControllerConfig};
use crate::durable_file::SyncData;

const WAIT: Duration = Duration::from_secs(15);

/// A one-voter controller whose log fdatasync fails with EIO while `failing` is set.
async fn start(dir: &std::path::Path, failing: Arc<AtomicBool>) -> Controller {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = ControllerConfig::new(1, vec![], dir.to_owned());
    config.log_sync = SyncData::new(move |file: &std::fs::File| {
        if failing.load(Ordering::SeqCst) {
            Err(std::io::Error::from_raw_os_error(libc::EIO))
        } else {
            file.sync_data()
        }
    });
    let node = Controller::start_on(config, listener).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !node.is_leader() {
        assert!(tokio::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node
}

fn register(id: i32) -> Command {
    Command::RegisterBroker {
        broker_id: id,
        host: "127.0.0.1".into(),
        port: 9090,
        replica_endpoint: None,
        rack: None,
        incarnation_id: Uuid::from_u128(id as u128),
        rules_version: crate::controller::state::RULES_VERSION,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_log_fsync_is_not_acknowledged_and_stops_raft() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let node = start(dir.path(), Arc::clone(&failing)).await;
    node.propose(register(1)).await.unwrap();
    let failure = node.storage_failure();

    failing.store(true, Ordering::SeqCst);
    assert!(
        node.propose(register(2)).await.is_err(),
        "a command whose log fsync failed was acknowledged"
    );
    let why = tokio::time::timeout(WAIT, failure)
        .await
        .expect("Raft stopped on the failed fsync and said so");
    assert!(why.contains("Raft stopped"), "{why}");
    assert_eq!(node.state().borrow().brokers.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_shutdown_is_not_a_storage_failure() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), Arc::new(AtomicBool::new(false))).await;
    let failure = node.storage_failure();
    node.shutdown().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), failure)
            .await
            .is_err(),
        "a shutdown was reported as a storage failure"
    );
}
