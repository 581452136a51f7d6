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
}
