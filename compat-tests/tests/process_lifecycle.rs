//! The broker as a process: configured only through `SLUICE_*` environment variables (and a
//! flag beating its variable), a clean SIGTERM that still answers the request in flight, and
//! the open-file limit raised to the hard one at start-up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use compat_tests::process::{SluiceOptions, SluiceProcess};
use compat_tests::wire::{self, topic_name, RawConnection};
use compat_tests::{now_ms, unique_topic};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DescribeConfigsRequest, FetchRequest, MetadataRequest,
};
use kafka_protocol::protocol::StrBytes;

fn connect(broker: &SluiceProcess) -> RawConnection {
    let mut c = RawConnection::connect(broker.bootstrap()).unwrap();
    c.set_read_timeout(Duration::from_secs(20)).unwrap();
    c
}

/// `(node_id, port)` of every broker in a Metadata v12 answer, and the controller id.
fn brokers(conn: &mut RawConnection) -> (Vec<(i32, i32)>, i32) {
    let r = conn
        .call(&MetadataRequest::default().with_topics(Some(vec![])), 12)
        .unwrap();
    (
        r.brokers.iter().map(|b| (b.node_id.0, b.port)).collect(),
        r.controller_id.0,
    )
}

/// True if some file or directory under `dir` (recursively) has a name starting with `prefix`.
fn has_entry_starting_with(dir: &Path, prefix: &str) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            e.file_name().to_string_lossy().starts_with(prefix)
                || (e.file_type().map(|t| t.is_dir()).unwrap_or(false)
                    && has_entry_starting_with(&e.path(), prefix))
        })
}

#[test]
fn sluice_environment_variables_configure_the_broker() {
    let broker = SluiceProcess::start(
        SluiceOptions::new()
            .env_instead_of_flags()
            .node_id(5)
            .with_metrics()
            .env(
                "SLUICE_SET",
                "num.partitions=3,log.retention.check.interval.ms=1000",
            ),
    );
    let mut conn = connect(&broker);
    // SLUICE_LISTEN / SLUICE_ADVERTISED_LISTENER: we reached it, and it advertises that port.
    // SLUICE_NODE_ID: it is node 5.
    let (listed, controller) = brokers(&mut conn);
    assert_eq!(listed, vec![(5, i32::from(broker.port()))]);
    assert_eq!(controller, 5);

    // SLUICE_SET: a topic created without a partition count gets num.partitions=3, and the
    // broker reports the setting as a static broker config.
    let topic = unique_topic("envset");
    let created = conn
        .call(
            &CreateTopicsRequest::default()
                .with_topics(vec![CreatableTopic::default()
                    .with_name(topic_name(&topic))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)])
                .with_timeout_ms(10_000),
            5,
        )
        .unwrap();
    assert_eq!(created.topics[0].error_code, 0, "{created:?}");
    assert_eq!(created.topics[0].num_partitions, 3);
    let configs = conn
        .call(
            &DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(StrBytes::from_static_str("5"))
                    .with_configuration_keys(Some(vec![
                        StrBytes::from_static_str("num.partitions"),
                        StrBytes::from_static_str("log.retention.check.interval.ms"),
                    ])),
            ]),
            4,
        )
        .unwrap();
    let values: Vec<(String, Option<String>, i8)> = configs.results[0]
        .configs
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                c.value.as_ref().map(|v| v.to_string()),
                c.config_source,
            )
        })
        .collect();
    assert_eq!(
        values,
        vec![
            ("num.partitions".into(), Some("3".into()), 4),
            (
                "log.retention.check.interval.ms".into(),
                Some("1000".into()),
                4
            ),
        ]
    );

    // SLUICE_DATA_DIR: the partitions live there.
    let batch = compat_tests::batch::build_batch(&[(b"k", b"v")], now_ms());
    assert_eq!(
        wire::produce(&mut conn, &topic, 2, batch)
            .unwrap()
            .error_code,
        0
    );
    assert!(
        has_entry_starting_with(broker.data_dir(), &format!("{topic}-2")),
        "no partition directory for {topic}-2 under {}",
        broker.data_dir().display()
    );

    // SLUICE_METRICS_LISTEN: the metrics listener answers.
    let metrics = std::net::TcpStream::connect(broker.metrics_addr());
    assert!(metrics.is_ok(), "metrics listener not up: {metrics:?}");
}

#[test]
fn a_flag_beats_its_environment_variable() {
    // The harness passes --node-id 1 and --set; the variables say otherwise.
    let broker = SluiceProcess::start(
        SluiceOptions::new()
            .set("num.partitions", "2")
            .env("SLUICE_NODE_ID", "9")
            .env("SLUICE_SET", "num.partitions=7"),
    );
    let mut conn = connect(&broker);
    assert_eq!(brokers(&mut conn).0, vec![(1, i32::from(broker.port()))]);
    let topic = unique_topic("flagwins");
    let created = conn
        .call(
            &CreateTopicsRequest::default()
                .with_topics(vec![CreatableTopic::default()
                    .with_name(topic_name(&topic))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)])
                .with_timeout_ms(10_000),
            5,
        )
        .unwrap();
    assert_eq!(created.topics[0].num_partitions, 2, "{created:?}");
}

#[test]
fn sigterm_answers_a_fetch_long_poll_in_flight_then_exits_zero() {
    let mut broker = SluiceProcess::start_default();
    let topic = unique_topic("sigterm");
    let mut conn = connect(&broker);
    assert_eq!(wire::create_topic(&mut conn, &topic, 1).unwrap(), 0);

    // A long poll with nothing to return: it would wait 5 s.
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(5_000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(&topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(0)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(1 << 20)])]);
    let poller = std::thread::spawn(move || {
        let start = Instant::now();
        let response = conn.call(&request, 12);
        (response, start.elapsed())
    });
    // Let the request reach the broker and park.
    std::thread::sleep(Duration::from_millis(500));
    let status = broker.terminate();
    let (response, waited) = poller.join().unwrap();
    let response =
        response.unwrap_or_else(|e| panic!("the in-flight fetch got no response before exit: {e}"));
    assert_eq!(response.error_code, 0, "{response:?}");
    let p = &response.responses[0].partitions[0];
    assert_eq!(p.error_code, 0, "{p:?}");
    assert!(p.records.as_ref().is_none_or(|r| r.is_empty()));
    assert!(
        waited < Duration::from_secs(15),
        "answered after {waited:?}"
    );
    assert!(
        status.success(),
        "exit {} after SIGTERM; log tail:\n{}",
        compat_tests::process::describe_status(status),
        broker.log_tail()
    );
}

#[test]
fn sigterm_answers_acks_all_produces_in_flight() {
    let mut broker = SluiceProcess::start_default();
    let topic = unique_topic("sigterm-produce");
    let mut conn = connect(&broker);
    assert_eq!(wire::create_topic(&mut conn, &topic, 1).unwrap(), 0);
    drop(conn);

    // Several connections produce acks=all in a loop; SIGTERM lands in the middle. Every
    // request whose bytes were fully sent must be answered (no connection closed while a
    // response is owed), and every answer must be a success.
    let addr = broker.bootstrap();
    let producers: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            let topic = topic.clone();
            std::thread::spawn(move || {
                let mut c = RawConnection::connect(addr).unwrap();
                let value = vec![b'x'; 4096];
                let mut acked = 0u32;
                loop {
                    let batch = compat_tests::batch::build_batch(&[(b"k", &value)], now_ms());
                    match wire::produce(&mut c, &topic, 0, batch) {
                        Ok(r) => {
                            assert_eq!(r.error_code, 0, "{r:?}");
                            acked += 1;
                        }
                        Err(_) => return acked,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let status = broker.terminate();
    let acked: u32 = producers.into_iter().map(|p| p.join().unwrap()).sum();
    assert!(acked > 0);
    assert!(
        status.success(),
        "exit {} after SIGTERM; log tail:\n{}",
        compat_tests::process::describe_status(status),
        broker.log_tail()
    );
    // Everything acknowledged is there after a restart.
    broker.restart();
    let mut conn = connect(&broker);
    let data = wire::fetch(&mut conn, &topic, 0, 0).unwrap();
    assert!(
        data.high_watermark >= i64::from(acked),
        "acked {acked}, high watermark {}",
        data.high_watermark
    );
}

/// The `Max open files` soft and hard limits in `/proc/<pid>/limits`.
fn open_file_limits(pid: &str) -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut numbers = line
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok());
    Some((numbers.next()?, numbers.next()?))
}

/// Started with the common service default of 1,024 open files (soft) under a higher hard
/// limit, the broker raises its soft limit to the hard one, as the JVM does for Kafka: at
/// three files per partition 1,024 would stop it at about 300 partitions.
#[test]
fn the_open_file_limit_is_raised_to_the_hard_one() {
    let (_, hard) = open_file_limits("self").expect("this process's limits");
    if hard <= 1024 {
        eprintln!("hard open-file limit {hard}: nothing to raise to; skipped");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let port = compat_tests::ports::free_port();
    // `prlimit` (util-linux) sets the limits and then runs the broker in its own process.
    let mut child = std::process::Command::new("prlimit")
        .arg(format!("--nofile=1024:{hard}"))
        .arg(compat_tests::process::sluice_bin())
        .arg("--data-dir")
        .arg(data.path())
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--log-level")
        .arg("warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prlimit (util-linux) runs the broker");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the broker did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let limits = open_file_limits(&child.id().to_string());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(limits, Some((hard, hard)));
}
