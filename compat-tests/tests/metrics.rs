//! The Prometheus endpoint of a real broker: it scrapes, and the figures move with traffic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use compat_tests::process::{SluiceOptions, SluiceProcess};
use compat_tests::wire::{self, RawConnection};
use compat_tests::{now_ms, unique_topic};

fn scrape(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The value of the first sample whose line starts with `prefix`.
fn sample(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_scrape_and_move() {
    let broker = SluiceProcess::start(SluiceOptions::new().with_metrics());
    let addr = broker.metrics_addr();
    let (status, body) = scrape(&addr, "/metrics");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("# TYPE sluice_requests counter"), "{body}");
    let (status, _) = scrape(&addr, "/nope");
    assert!(status.contains("404"), "{status}");

    let topic = unique_topic("metrics");
    let mut conn = RawConnection::connect(broker.bootstrap()).unwrap();
    assert_eq!(wire::create_topic(&mut conn, &topic, 1).unwrap(), 0);
    let batch = compat_tests::batch::build_batch(&[(b"k", b"value"), (b"k", b"value")], now_ms());
    for _ in 0..3 {
        assert_eq!(
            wire::produce(&mut conn, &topic, 0, batch.clone())
                .unwrap()
                .error_code,
            0
        );
    }
    let fetched = wire::fetch(&mut conn, &topic, 0, 0).unwrap();
    let served = fetched.records.unwrap().len() as f64;

    let (_, body) = scrape(&addr, "/metrics");
    let leo = format!("sluice_log_end_offset{{topic=\"{topic}\",partition=\"0\"}}");
    assert_eq!(sample(&body, &leo), Some(6.0), "{body}");
    let hw = format!("sluice_high_watermark{{topic=\"{topic}\",partition=\"0\"}}");
    assert_eq!(sample(&body, &hw), Some(6.0));
    let bytes_in = format!("sluice_bytes_in_total{{topic=\"{topic}\"}}");
    assert_eq!(sample(&body, &bytes_in), Some(3.0 * batch.len() as f64));
    let records_in = format!("sluice_records_in_total{{topic=\"{topic}\"}}");
    assert_eq!(sample(&body, &records_in), Some(6.0));
    let bytes_out = format!("sluice_bytes_out_total{{topic=\"{topic}\"}}");
    assert_eq!(sample(&body, &bytes_out), Some(served));
    assert_eq!(
        sample(&body, "sluice_requests_total{api=\"Produce\"}"),
        Some(3.0)
    );
    assert!(
        sample(
            &body,
            "sluice_request_duration_seconds_count{api=\"Produce\"}"
        ) == Some(3.0)
    );
    assert!(sample(&body, "sluice_fsync_duration_seconds_count").unwrap_or(0.0) >= 1.0);
    assert!(
        sample(&body, "sluice_connections ").unwrap_or(0.0) >= 1.0,
        "{body}"
    );
    // Small fetches are copied out; one with a large batch is sent from a mapping of its
    // segment's file, which the file keeps.
    let mappings = "sluice_log_file_mappings ";
    assert_eq!(sample(&body, mappings), Some(0.0), "{body}");
    let big_topic = unique_topic("metrics-big");
    assert_eq!(wire::create_topic(&mut conn, &big_topic, 1).unwrap(), 0);
    let value = vec![7u8; 200 * 1024];
    let big = compat_tests::batch::build_batch(&[(&b"k"[..], &value[..])], now_ms());
    let produced = wire::produce(&mut conn, &big_topic, 0, big.clone()).unwrap();
    assert_eq!(produced.error_code, 0);
    let fetched = wire::fetch(&mut conn, &big_topic, 0, 0).unwrap();
    assert_eq!(fetched.records.unwrap().len(), big.len());
    let (_, body) = scrape(&addr, "/metrics");
    assert_eq!(sample(&body, mappings), Some(1.0), "{body}");
    // A single node is its own controller (Kafka's ActiveControllerCount).
    assert_eq!(sample(&body, "sluice_active_controller_count "), Some(1.0));

    // Consumer group lag: high watermark (6) minus the committed offset, at scrape time.
    let group = unique_topic("lag-group");
    let lag =
        format!("sluice_consumer_group_lag{{group=\"{group}\",topic=\"{topic}\",partition=\"0\"}}");
    assert_eq!(sample(&body, &lag), None, "no commit yet");
    commit(&mut conn, &group, &topic, 2);
    let (_, body) = scrape(&addr, "/metrics");
    assert_eq!(sample(&body, &lag), Some(4.0), "{body}");
    // More produced: the lag grows without a new commit.
    assert_eq!(
        wire::produce(&mut conn, &topic, 0, batch.clone())
            .unwrap()
            .error_code,
        0
    );
    let (_, body) = scrape(&addr, "/metrics");
    assert_eq!(sample(&body, &lag), Some(6.0));
    commit(&mut conn, &group, &topic, 8);
    let (_, body) = scrape(&addr, "/metrics");
    assert_eq!(sample(&body, &lag), Some(0.0));
}

/// Commits `offset` for partition 0 of `topic` as a simple (memberless) group, OffsetCommit v8.
fn commit(conn: &mut RawConnection, group: &str, topic: &str, offset: i64) {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, OffsetCommitRequest};
    use kafka_protocol::protocol::StrBytes;
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(wire::topic_name(topic))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)])]);
    let response = conn.call(&request, 8).unwrap();
    assert_eq!(
        response.topics[0].partitions[0].error_code, 0,
        "{response:?}"
    );
}
