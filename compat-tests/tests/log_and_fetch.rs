//! The log and the fetch path of a real broker process, over raw sockets: time-based
//! retention and rolling by age (`retention.ms`, `segment.ms`), group commit (concurrent
//! acks=all produces share fsyncs), fetch sessions keyed by topic id (Fetch v13+) with
//! forgotten topics, the `max_bytes` / `partition_max_bytes` budgets (KIP-74), and large
//! answers sent every way (from mappings, copied out, or with `sendfile`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use compat_tests::batch::parse_batch_headers;
use compat_tests::process::{SluiceOptions, SluiceProcess};
use compat_tests::wire::{self, RawConnection};
use compat_tests::{now_ms, unique_topic};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use uuid::Uuid;

/// Kafka's UNKNOWN_TOPIC_ID.
const UNKNOWN_TOPIC_ID: i16 = 100;

fn connect(broker: &SluiceProcess) -> RawConnection {
    RawConnection::connect_with_timeout(broker.bootstrap(), Duration::from_secs(20)).unwrap()
}

/// Creates a topic (CreateTopics v7) and returns its id.
fn create_topic(
    conn: &mut RawConnection,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Uuid {
    wire::create_topic_with(conn, topic, partitions, configs)
        .unwrap()
        .topic_id
}

fn produce_ok(conn: &mut RawConnection, topic: &str, partition: i32, value: &[u8]) -> i64 {
    let batch = compat_tests::batch::build_batch(&[(b"k", value)], now_ms());
    let r = wire::produce(conn, topic, partition, batch).unwrap();
    assert_eq!(r.error_code, 0, "{r:?}");
    r.base_offset
}

/// The directory of partition `<topic>-<partition>` somewhere under the data dir.
fn partition_dir(data_dir: &Path, name: &str) -> PathBuf {
    fn find(dir: &Path, name: &str) -> Option<PathBuf> {
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let path = e.path();
            if !path.is_dir() {
                continue;
            }
            if e.file_name().to_string_lossy() == name {
                return Some(path);
            }
            if let Some(found) = find(&path, name) {
                return Some(found);
            }
        }
        None
    }
    find(data_dir, name)
        .unwrap_or_else(|| panic!("no directory {name} under {}", data_dir.display()))
}

/// Base offsets of the `.log` segments in a partition directory, sorted.
fn segment_bases(dir: &Path) -> Vec<i64> {
    let mut out: Vec<i64> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("log"))
        .filter_map(|p| p.file_stem()?.to_str()?.parse::<i64>().ok())
        .collect();
    out.sort();
    out
}

#[test]
fn segments_roll_by_age_and_expire_by_retention_ms() {
    let broker =
        SluiceProcess::start(SluiceOptions::new().set("log.retention.check.interval.ms", "200"));
    let mut conn = connect(&broker);

    // Rolling by age alone: a huge segment.bytes, a short segment.ms, no time retention.
    let rolled = unique_topic("roll-age");
    create_topic(&mut conn, &rolled, 1, &[("segment.ms", "300")]);
    for _ in 0..3 {
        produce_ok(&mut conn, &rolled, 0, b"v");
        std::thread::sleep(Duration::from_millis(450));
    }
    let dir = partition_dir(broker.data_dir(), &format!("{rolled}-0"));
    let bases = wire::poll_until(Duration::from_secs(5), || {
        let b = segment_bases(&dir);
        (b.len() >= 3).then_some(b)
    })
    .unwrap_or_else(|| panic!("segments did not roll by age: {:?}", segment_bases(&dir)));
    assert_eq!(&bases[..3], &[0, 1, 2], "one segment per aged batch");
    // Nothing expires without a time limit: the log still starts at 0.
    assert_eq!(wire::earliest_offset(&mut conn, &rolled), 0);

    // Time retention: records older than retention.ms go, segment by segment.
    let expiring = unique_topic("retention-ms");
    create_topic(
        &mut conn,
        &expiring,
        1,
        &[("segment.ms", "200"), ("retention.ms", "1500")],
    );
    for _ in 0..4 {
        produce_ok(&mut conn, &expiring, 0, &[b'x'; 200]);
        std::thread::sleep(Duration::from_millis(250));
    }
    let dir = partition_dir(broker.data_dir(), &format!("{expiring}-0"));
    assert!(segment_bases(&dir).len() >= 2, "{:?}", segment_bases(&dir));
    let start = Instant::now();
    let moved = wire::poll_until(Duration::from_secs(10), || {
        let e = wire::earliest_offset(&mut conn, &expiring);
        (e == 4).then_some(e)
    });
    assert!(
        moved.is_some(),
        "log start offset stuck at {} after {:?}",
        wire::earliest_offset(&mut conn, &expiring),
        start.elapsed()
    );
    // The old segment files are gone; what is left starts at the log start offset.
    let left = wire::poll_until(Duration::from_secs(5), || {
        let b = segment_bases(&dir);
        b.iter().all(|&base| base >= 4).then_some(b)
    });
    assert!(
        left.is_some(),
        "old segments kept: {:?}",
        segment_bases(&dir)
    );
    let below = wire::fetch(&mut conn, &expiring, 0, 0).unwrap();
    assert_eq!(
        below.error_code, 1,
        "OFFSET_OUT_OF_RANGE below the log start"
    );
    // The log keeps taking appends at the old end.
    assert_eq!(produce_ok(&mut conn, &expiring, 0, b"after"), 4);
}

fn fsync_count(broker: &SluiceProcess) -> f64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(broker.metrics_addr()).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines()
        .find(|l| l.starts_with("sluice_fsync_duration_seconds_count"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no fsync count in:\n{out}"))
}

#[test]
fn concurrent_acks_all_produces_share_fsyncs() {
    const PRODUCERS: usize = 16;
    const ROUNDS: usize = 10;
    let broker = SluiceProcess::start(SluiceOptions::new().with_metrics());
    let topic = unique_topic("groupcommit");
    let mut conn = connect(&broker);
    create_topic(&mut conn, &topic, 1, &[]);
    std::thread::sleep(Duration::from_millis(200));
    let before = fsync_count(&broker);

    // PRODUCERS connections each send ROUNDS acks=all requests back to back, all at once.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(PRODUCERS));
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            let addr = broker.bootstrap();
            let topic = topic.clone();
            let barrier = std::sync::Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut c = RawConnection::connect(addr).unwrap();
                barrier.wait();
                for _ in 0..ROUNDS {
                    produce_ok(&mut c, &topic, 0, &[b'v'; 512]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let requests = (PRODUCERS * ROUNDS) as f64;
    let fsyncs = fsync_count(&broker) - before;
    let hw = wire::fetch(&mut conn, &topic, 0, 0).unwrap().high_watermark;
    assert_eq!(hw, requests as i64, "every produce stored");
    assert!(fsyncs >= 1.0, "acks=all produces were never fsynced");
    assert!(
        fsyncs < requests,
        "{requests} concurrent acks=all produces took {fsyncs} fsyncs: no group commit"
    );
}

fn fetch_by_id(
    conn: &mut RawConnection,
    session: (i32, i32),
    topics: &[(Uuid, &[(i32, i64)])],
    forgotten: &[(Uuid, &[i32])],
    max_wait_ms: i32,
) -> FetchResponse {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 24)
        .with_session_id(session.0)
        .with_session_epoch(session.1)
        .with_topics(
            topics
                .iter()
                .map(|(id, parts)| {
                    FetchTopic::default().with_topic_id(*id).with_partitions(
                        parts
                            .iter()
                            .map(|&(p, offset)| {
                                FetchPartition::default()
                                    .with_partition(p)
                                    .with_current_leader_epoch(-1)
                                    .with_fetch_offset(offset)
                                    .with_log_start_offset(-1)
                                    .with_partition_max_bytes(1 << 20)
                            })
                            .collect(),
                    )
                })
                .collect(),
        )
        .with_forgotten_topics_data(
            forgotten
                .iter()
                .map(|(id, parts)| {
                    ForgottenTopic::default()
                        .with_topic_id(*id)
                        .with_partitions(parts.to_vec())
                })
                .collect(),
        );
    conn.call(&request, 13).unwrap()
}

/// `(topic id, partition, error, high watermark, record bytes)` of every partition returned.
fn returned(r: &FetchResponse) -> Vec<(Uuid, i32, i16, i64, usize)> {
    let mut out: Vec<_> = r
        .responses
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.topic_id,
                    p.partition_index,
                    p.error_code,
                    p.high_watermark,
                    p.records.as_ref().map_or(0, |r| r.len()),
                )
            })
        })
        .collect();
    out.sort();
    out
}

#[test]
fn fetch_sessions_by_topic_id_with_forgotten_topics() {
    let broker = SluiceProcess::start_default();
    let mut conn = connect(&broker);
    let a = unique_topic("ids-a");
    let b = unique_topic("ids-b");
    let a_id = create_topic(&mut conn, &a, 2, &[]);
    let b_id = create_topic(&mut conn, &b, 1, &[]);
    produce_ok(&mut conn, &a, 0, b"a0");
    produce_ok(&mut conn, &b, 0, b"b0");

    // A full fetch by id creates a session and answers by id (names are not sent in v13+).
    let full = fetch_by_id(
        &mut conn,
        (0, 0),
        &[(a_id, &[(0, 0), (1, 0)]), (b_id, &[(0, 0)])],
        &[],
        0,
    );
    assert_eq!(full.error_code, 0, "{full:?}");
    assert!(full.session_id > 0);
    let sid = full.session_id;
    let got = returned(&full);
    assert_eq!(
        got.iter().map(|g| (g.0, g.1, g.2, g.3)).collect::<Vec<_>>(),
        {
            let mut want = vec![(a_id, 0, 0, 1), (a_id, 1, 0, 0), (b_id, 0, 0, 1)];
            want.sort();
            want
        }
    );
    assert!(full.responses.iter().all(|t| t.topic.0.is_empty()));
    assert!(got.iter().filter(|g| g.3 == 1).all(|g| g.4 > 0));

    // Incremental: forget a-1 and move a-0 and b-0 past what they have.
    let inc = fetch_by_id(
        &mut conn,
        (sid, 1),
        &[(a_id, &[(0, 1)]), (b_id, &[(0, 1)])],
        &[(a_id, &[1])],
        200,
    );
    assert_eq!((inc.error_code, inc.session_id), (0, sid), "{inc:?}");
    // New data on a-1 (forgotten) and b-0: only b-0 comes back.
    produce_ok(&mut conn, &a, 1, b"a1");
    produce_ok(&mut conn, &b, 0, b"b1");
    let inc = fetch_by_id(&mut conn, (sid, 2), &[], &[], 2_000);
    let got = returned(&inc);
    assert_eq!(got.len(), 1, "{inc:?}");
    assert_eq!((got[0].0, got[0].1, got[0].3), (b_id, 0, 2));
    assert!(got[0].4 > 0);
    // The client now has b-0 up to 2 (the session keeps the offsets it was last sent, so
    // it says so) and forgets a-0, the last partition of topic a: new data on a-0 is not
    // returned either.
    let _ = fetch_by_id(
        &mut conn,
        (sid, 3),
        &[(b_id, &[(0, 2)])],
        &[(a_id, &[0])],
        0,
    );
    produce_ok(&mut conn, &a, 0, b"a0-2");
    let quiet = fetch_by_id(&mut conn, (sid, 4), &[], &[], 300);
    assert!(returned(&quiet).is_empty(), "{quiet:?}");

    // An unknown topic id is answered UNKNOWN_TOPIC_ID for its partition.
    let unknown = Uuid::from_u128(0x0bad_0000_0000_4000_8000_0000_0000_0001);
    let r = fetch_by_id(&mut conn, (0, -1), &[(unknown, &[(0, 0)])], &[], 0);
    assert_eq!(r.error_code, 0, "{r:?}");
    assert_eq!(
        returned(&r),
        vec![(unknown, 0, UNKNOWN_TOPIC_ID, -1, 0)],
        "{r:?}"
    );
}

fn fetch_budget(
    conn: &mut RawConnection,
    topic: &str,
    partitions: &[i32],
    max_bytes: i32,
    partition_max_bytes: i32,
) -> FetchResponse {
    let offsets: Vec<(i32, i64)> = partitions.iter().map(|&p| (p, 0)).collect();
    let request = wire::fetch_request(
        topic,
        &offsets,
        wire::FetchLimits {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes,
            partition_max_bytes,
        },
    );
    conn.call(&request, 12).unwrap()
}

fn records_of(r: &FetchResponse, partition: i32) -> bytes::Bytes {
    r.responses[0]
        .partitions
        .iter()
        .find(|p| p.partition_index == partition)
        .and_then(|p| p.records.clone())
        .unwrap_or_default()
}

#[test]
fn fetch_max_bytes_and_partition_max_bytes_budgets() {
    let broker = SluiceProcess::start_default();
    let mut conn = connect(&broker);
    let topic = unique_topic("budget");
    create_topic(&mut conn, &topic, 2, &[]);
    for p in 0..2 {
        for _ in 0..5 {
            produce_ok(&mut conn, &topic, p, &[b'v'; 1000]);
        }
    }
    let all = records_of(&fetch_budget(&mut conn, &topic, &[0], 1 << 24, 1 << 20), 0);
    let headers = parse_batch_headers(&all);
    assert_eq!(headers.len(), 5);
    let batch = headers[0].size;
    assert_eq!(all.len(), 5 * batch);

    // KIP-74: a budget smaller than the first batch still returns that one whole batch.
    for (max_bytes, partition_max) in [(10, 1 << 20), (1 << 24, 10), (1, 1)] {
        let r = fetch_budget(&mut conn, &topic, &[0], max_bytes, partition_max);
        let got = records_of(&r, 0);
        assert_eq!(
            got.len(),
            batch,
            "max_bytes {max_bytes}, partition_max_bytes {partition_max}"
        );
        assert_eq!(parse_batch_headers(&got).len(), 1);
    }
    // Otherwise no more than the budget: two and a half batches' worth gives two.
    let two_and_a_half = i32::try_from(batch * 5 / 2).unwrap();
    let got = records_of(
        &fetch_budget(&mut conn, &topic, &[0], two_and_a_half, 1 << 20),
        0,
    );
    assert!(got.len() <= batch * 5 / 2, "{} bytes", got.len());
    assert_eq!(parse_batch_headers(&got).len(), 2);
    let got = records_of(
        &fetch_budget(&mut conn, &topic, &[0], 1 << 24, two_and_a_half),
        0,
    );
    assert!(got.len() <= batch * 5 / 2, "{} bytes", got.len());
    assert_eq!(parse_batch_headers(&got).len(), 2);

    // The response budget spans partitions: partition 0 takes 3 batches, partition 1 only
    // what is left (one batch), though its own limit would allow more.
    let three = i32::try_from(batch * 3).unwrap();
    let four = i32::try_from(batch * 4).unwrap();
    let r = fetch_budget(&mut conn, &topic, &[0, 1], four, three);
    let p0 = records_of(&r, 0);
    let p1 = records_of(&r, 1);
    assert_eq!(p0.len(), 3 * batch);
    assert_eq!(p1.len(), batch);
    // With the budget used up by partition 0, partition 1 gets nothing (only the first
    // partition of a response is guaranteed a batch).
    let r = fetch_budget(&mut conn, &topic, &[0, 1], three, three);
    assert_eq!(records_of(&r, 0).len(), 3 * batch);
    assert!(records_of(&r, 1).is_empty());
}

/// Large fetch answers leave the broker from memory mappings of the segments (the default for
/// 64 KiB of records or more), copied out through a bounded buffer (the default below that),
/// or with `sendfile` (`sluice.fetch.sendfile=true`); every way a response of several
/// partitions larger than the 4 MiB buffer, and one of 40 KB, arrive whole, each batch as the
/// producer sent it.
#[test]
fn large_fetch_answers_arrive_whole_mapped_copied_out_or_with_sendfile() {
    for sendfile in ["false", "true"] {
        let broker =
            SluiceProcess::start(SluiceOptions::new().set("sluice.fetch.sendfile", sendfile));
        let mut conn = connect(&broker);
        let topic = unique_topic("large-fetch");
        create_topic(&mut conn, &topic, 3, &[]);
        // 3 partitions x 3 batches of ~900 KB: an answer of ~8 MB, two buffers' worth.
        let mut sent = Vec::new();
        for p in 0..3 {
            let mut batches = Vec::new();
            for b in 0..3u8 {
                let values: Vec<Vec<u8>> = (0..100u8)
                    .map(|i| vec![i ^ b ^ p as u8; 9 * 1024])
                    .collect();
                let records: Vec<(&[u8], &[u8])> =
                    values.iter().map(|v| (&b"k"[..], v.as_slice())).collect();
                let batch = compat_tests::batch::build_batch(&records, now_ms());
                let r = wire::produce(&mut conn, &topic, p, batch.clone()).unwrap();
                assert_eq!(r.error_code, 0, "{r:?}");
                batches.push(batch);
            }
            sent.push(batches);
        }
        let r = fetch_budget(&mut conn, &topic, &[0, 1, 2], 64 << 20, 4 << 20);
        for (p, batches) in sent.iter().enumerate() {
            let got = records_of(&r, p as i32);
            let headers = parse_batch_headers(&got);
            assert_eq!(headers.len(), 3, "sendfile={sendfile} partition {p}");
            let mut position = 0;
            for (i, (h, want)) in headers.iter().zip(batches).enumerate() {
                assert_eq!(h.base_offset, 100 * i as i64);
                let stored = &got[position..position + h.size];
                // From the magic byte on (base offset and leader epoch are the broker's).
                assert_eq!(
                    &stored[16..],
                    &want[16..],
                    "sendfile={sendfile} partition {p} batch {i}"
                );
                position += h.size;
            }
            assert_eq!(position, got.len());
        }
        // The connection stays usable after the large answer.
        assert_eq!(wire::earliest_offset(&mut conn, &topic), 0);
        // 40 KB of records: left in the file (32 KiB or more) but copied out (under 64 KiB).
        let small_topic = unique_topic("mid-fetch");
        create_topic(&mut conn, &small_topic, 1, &[]);
        let values: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 1000]).collect();
        let records: Vec<(&[u8], &[u8])> =
            values.iter().map(|v| (&b"k"[..], v.as_slice())).collect();
        let batch = compat_tests::batch::build_batch(&records, now_ms());
        let r = wire::produce(&mut conn, &small_topic, 0, batch.clone()).unwrap();
        assert_eq!(r.error_code, 0, "{r:?}");
        let r = fetch_budget(&mut conn, &small_topic, &[0], 64 << 20, 1 << 20);
        let got = records_of(&r, 0);
        assert!((32 << 10..64 << 10).contains(&got.len()), "{}", got.len());
        assert_eq!(&got[16..], &batch[16..], "sendfile={sendfile}");
    }
}
