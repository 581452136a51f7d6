//! Hostile and malformed input on a raw socket.
//!
//! Each test starts its own broker (auto-create off), stores a few "seed"
//! records, sends something a well-behaved client never would, checks the
//! broker's reaction against Kafka's, and finally checks that the broker
//! still serves new connections and the seed records are intact.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use compat_tests::batch::{build_batch, decode_records};
use compat_tests::wire::{self, encode_body, RawConnection};
use compat_tests::{unique_topic, SluiceOptions, SluiceProcess};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::{Decodable, StrBytes};

/// Kafka error codes used below.
const NONE: i16 = 0;
const OFFSET_OUT_OF_RANGE: i16 = 1;
const CORRUPT_MESSAGE: i16 = 2;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const UNSUPPORTED_VERSION: i16 = 35;

/// How long the broker may take to close a connection it must reject.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// Records every test stores first and checks last.
struct Seed {
    topic: String,
    records: Vec<(Vec<u8>, Vec<u8>)>,
}

fn start_broker() -> SluiceProcess {
    SluiceProcess::start(SluiceOptions::new().set("auto.create.topics.enable", "false"))
}

fn seed(broker: &SluiceProcess) -> Seed {
    let topic = unique_topic("bad-input-seed");
    let mut conn = RawConnection::connect(broker.bootstrap()).unwrap();
    assert_eq!(wire::create_topic(&mut conn, &topic, 1).unwrap(), NONE);
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..5)
        .map(|i| {
            (
                format!("seed-key-{i}").into_bytes(),
                format!("seed-value-{i}").into_bytes(),
            )
        })
        .collect();
    let pairs: Vec<(&[u8], &[u8])> = records
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    let response =
        wire::produce(&mut conn, &topic, 0, build_batch(&pairs, 1_700_000_000_000)).unwrap();
    assert_eq!(response.error_code, NONE, "seed produce: {response:?}");
    assert_eq!(response.base_offset, 0, "seed produce: {response:?}");
    Seed { topic, records }
}

/// The broker answers a fresh connection and still has the seed records at
/// offsets 0..5.
fn assert_healthy(broker: &mut SluiceProcess, seed: &Seed) {
    assert!(
        broker.is_running(),
        "broker died; log:\n{}",
        broker.log_tail()
    );
    let versions = wire::api_versions(broker.bootstrap(), Duration::from_secs(5))
        .expect("ApiVersions on a fresh connection after the bad input");
    assert_eq!(versions.error_code, NONE);
    let mut conn = RawConnection::connect(broker.bootstrap()).unwrap();
    let data = wire::fetch(&mut conn, &seed.topic, 0, 0).unwrap();
    assert_eq!(data.error_code, NONE, "fetch of seed records: {data:?}");
    let fetched = decode_records(&data.records.unwrap_or_default());
    assert!(
        fetched.len() >= seed.records.len(),
        "seed records lost: fetched {} records",
        fetched.len()
    );
    for (i, (key, value)) in seed.records.iter().enumerate() {
        let (offset, k, v) = &fetched[i];
        assert_eq!(*offset, i as i64);
        assert_eq!(k.as_deref(), Some(key.as_slice()), "seed key at offset {i}");
        assert_eq!(
            v.as_deref(),
            Some(value.as_slice()),
            "seed value at offset {i}"
        );
    }
}

/// Sends raw bytes and asserts the broker closes the connection quickly.
fn assert_closes_after(broker: &SluiceProcess, bytes: &[u8], what: &str) {
    let mut conn = RawConnection::connect(broker.bootstrap()).unwrap();
    let started = Instant::now();
    // The broker may close (and reset) before we finish writing; that is fine.
    let _ = conn.stream().write_all(bytes);
    let closed = conn.wait_closed(CLOSE_WITHIN).unwrap();
    assert!(
        closed,
        "{what}: broker kept the connection open for {CLOSE_WITHIN:?}"
    );
    assert!(
        started.elapsed() < CLOSE_WITHIN,
        "{what}: closed too slowly"
    );
}

/// A request whose array count is huge but whose frame holds nothing after it: the broker
/// closes the connection (Kafka: "Tried to allocate a collection of size ...") instead of
/// reserving room for two billion elements, which aborted the process.
#[test]
fn huge_array_counts_close_the_connection_and_the_broker_lives() {
    let mut broker = start_broker();
    let seed = seed(&broker);
    let frame = |body: &[u8]| {
        let mut bytes = i32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        bytes.extend_from_slice(body);
        bytes
    };
    // Metadata v0 (header v1: key, version, correlation id, null client id), then a topic
    // array (INT32 count) of 2^31 - 1 entries.
    let mut v0 = vec![0, 3, 0, 0, 0, 0, 0, 7, 0xff, 0xff];
    v0.extend_from_slice(&i32::MAX.to_be_bytes());
    assert_closes_after(&broker, &frame(&v0), "Metadata v0 with 2^31-1 topics");
    // Metadata v12 (header v2 with no tagged fields), then a compact topic array whose
    // unsigned varint says 2^32 - 2 entries.
    let v12 = [
        0, 3, 0, 12, 0, 0, 0, 8, 0xff, 0xff, 0, 0xff, 0xff, 0xff, 0xff, 0x0f,
    ];
    assert_closes_after(&broker, &frame(&v12), "Metadata v12 with 2^32-2 topics");
    // Produce v8 (header v1), transactional id null, acks, timeout, then 2^31 - 1 topics.
    let mut produce = vec![0, 0, 0, 8, 0, 0, 0, 9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    produce.extend_from_slice(&1000i32.to_be_bytes());
    produce.extend_from_slice(&i32::MAX.to_be_bytes());
    assert_closes_after(&broker, &frame(&produce), "Produce v8 with 2^31-1 topics");
    assert_healthy(&mut broker, &seed);
}

/// A client that sends Fetches for megabytes and never reads the answers: the broker closes
/// the connection once a response has gone unread for `connections.max.idle.ms` (Kafka counts
/// only socket activity), and such a client does not hold up a SIGTERM shutdown either.
#[test]
fn a_client_that_never_reads_is_closed_and_does_not_hold_shutdown() {
    let idle = Duration::from_secs(2);
    let mut broker = SluiceProcess::start(
        SluiceOptions::new()
            .with_metrics()
            .set("connections.max.idle.ms", &idle.as_millis().to_string()),
    );
    let topic = unique_topic("unread");
    let mut conn = RawConnection::connect(broker.bootstrap()).unwrap();
    assert_eq!(wire::create_topic(&mut conn, &topic, 1).unwrap(), NONE);
    // 8 MiB of records, then Fetches that each ask for all of it: far more than the socket
    // buffers hold.
    let value = vec![7u8; 512 << 10];
    for _ in 0..16 {
        let batch = build_batch(&[(b"k".as_slice(), value.as_slice())], 1_700_000_004_000);
        assert_eq!(
            wire::produce(&mut conn, &topic, 0, batch)
                .unwrap()
                .error_code,
            NONE
        );
    }
    drop(conn);
    let limits = wire::FetchLimits {
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: 64 << 20,
        partition_max_bytes: 64 << 20,
    };
    let fetch = encode_body(&wire::fetch_request(&topic, &[(0, 0)], limits), 11);
    let open = || broker.metric("sluice_connections");
    // The producer's connection is gone first, so that the one counted next is this one (on
    // a loaded machine the broker may still count the producer's when the next connects).
    assert!(
        wire::poll_until(idle, || (open() == Some(0.0)).then_some(())).is_some(),
        "the producer's connection was never counted closed"
    );
    let mut unread = RawConnection::connect(broker.bootstrap()).unwrap();
    for _ in 0..8 {
        unread.send_request(1, 11, &fetch).unwrap();
    }
    let sent = Instant::now();
    assert!(
        wire::poll_until(idle, || (open() == Some(1.0)).then_some(())).is_some(),
        "the connection was never counted open"
    );
    // The broker counts the connection open while it writes what fits, then closes it: its
    // unread response has made no progress for the idle limit (and the reader has been idle as
    // long). Counted on the broker, as reading here would read the responses.
    let closed = wire::poll_until(idle * 5, || (open() == Some(0.0)).then(Instant::now));
    let closed = closed.unwrap_or_else(|| {
        panic!(
            "a connection whose responses went unread stayed open for {:?}",
            idle * 5
        )
    });
    assert!(
        closed.duration_since(sent) >= idle / 2,
        "closed before it idled: {:?}",
        closed.duration_since(sent)
    );
    drop(unread);
    // Again, and this time stop the broker while the responses sit unread.
    let mut unread = RawConnection::connect(broker.bootstrap()).unwrap();
    for _ in 0..8 {
        unread.send_request(1, 11, &fetch).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    assert!(broker.terminate().success());
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "SIGTERM took {:?} with an unread client connected",
        asked.elapsed()
    );
}

/// A client configured for SASL against a listener without it: Kafka answers SaslHandshake
/// and SaslAuthenticate ILLEGAL_SASL_STATE (the Java client then fails naming the mismatch)
/// rather than closing, and the connection stays usable.
#[test]
fn sasl_on_a_plaintext_listener_gets_illegal_sasl_state() {
    use kafka_protocol::messages::{
        SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
        SaslHandshakeResponse,
    };
    const ILLEGAL_SASL_STATE: i16 = 34;
    let mut broker = start_broker();
    let seed = seed(&broker);
    let mut conn = RawConnection::connect(broker.bootstrap()).unwrap();
    let handshake =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    let mut answer = conn
        .request(ApiKey::SaslHandshake as i16, 1, &encode_body(&handshake, 1))
        .unwrap()
        .expect("SaslHandshake answered, not closed");
    let answer = SaslHandshakeResponse::decode(&mut answer, 1).unwrap();
    assert_eq!(answer.error_code, ILLEGAL_SASL_STATE);
    let authenticate =
        SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0u\0p"));
    let mut answer = conn
        .request(
            ApiKey::SaslAuthenticate as i16,
            2,
            &encode_body(&authenticate, 2),
        )
        .unwrap()
        .expect("SaslAuthenticate answered, not closed");
    let answer = SaslAuthenticateResponse::decode(&mut answer, 2).unwrap();
    assert_eq!(answer.error_code, ILLEGAL_SASL_STATE);
    // Still usable: ApiVersions on the same connection.
    let versions = conn.call(&ApiVersionsRequest::default(), 0).unwrap();
    assert_eq!(versions.error_code, NONE);
    assert_healthy(&mut broker, &seed);
}

#[test]
fn negative_frame_length_closes_connection() {
    let mut broker = start_broker();
    let seed = seed(&broker);
    let mut bytes = (-1i32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0, 18, 0, 3, 0, 0, 0, 1]);
    assert_closes_after(&broker, &bytes, "frame length -1");
    let mut bytes = i32::MIN.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0; 16]);
    assert_closes_after(&broker, &bytes, "frame length i32::MIN");
    assert_healthy(&mut broker, &seed);
}

#[test]
fn oversized_frame_length_closes_connection() {
    let mut broker = start_broker();
    let seed = seed(&broker);
    // socket.request.max.bytes defaults to 104857600; both are above it.
    for len in [0x7fff_ffff_i32, 104_857_601] {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0, 18, 0, 3, 0, 0, 0, 1, 0, 0]);
        assert_closes_after(&broker, &bytes, &format!("frame length {len}"));
    }
    assert_healthy(&mut broker, &seed);
}

/// The broker's virtual memory size in KiB (`VmSize`).
fn vm_size_kib(broker: &SluiceProcess) -> u64 {
    let pid = broker.pid().expect("running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Clients that announce large (allowed) frames and then send almost nothing must not make
/// the broker allocate the announced sizes: 20 × 90 MiB would be 1.8 GiB.
#[test]
fn announced_frame_sizes_are_not_allocated_up_front() {
    let mut broker = start_broker();
    let seed = seed(&broker);
    let before = vm_size_kib(&broker);
    let mut conns = Vec::new();
    for _ in 0..20 {
        let mut conn = RawConnection::connect(broker.bootstrap().as_str()).unwrap();
        let mut bytes = (90 * 1024 * 1024_i32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 1]);
        conn.stream().write_all(&bytes).unwrap();
        conns.push(conn);
    }
    std::thread::sleep(Duration::from_millis(500));
    let grown_kib = vm_size_kib(&broker).saturating_sub(before);
    assert!(
        grown_kib < 512 * 1024,
        "virtual memory grew by {grown_kib} KiB for 20 stalled 90 MiB frames"
    );
    drop(conns);
    assert_healthy(&mut broker, &seed);
}

#[test]
fn truncated_frames_then_close_leave_broker_fine() {
    let mut broker = start_broker();
    let seed = seed(&broker);
    // Half a length prefix.
    {
        let mut conn = RawConnection::connect(broker.bootstrap()).unwrap();
        conn.stream().write_all(&[0, 0]).unwrap();
    }
    // A length prefix promising 100 bytes, then 10 bytes, then EOF.
    {
        let mut conn = RawConnection::connect(broker.bootstrap()).unwrap();
        conn.stream().write_all(&100i32.to_be_bytes()).unwrap();
        conn.stream()
            .write_all(&[0, 18, 0, 3, 0, 0, 0, 7, 0, 0])
            .unwrap();
        conn.shutdown_write().unwrap();
        assert!(
            conn.wait_closed(CLOSE_WITHIN).unwrap(),
            "broker kept a half-closed connection with a truncated frame open"
        );
    }
    // A whole valid request followed by a truncated one: the first is answered.
    {
        let mut conn = RawConnection::connect(broker.bootstrap()).unwrap();
        let body = encode_body(&api_versions_request(), 3);
        let id = conn
            .send_request(ApiKey::ApiVersions as i16, 3, &body)
            .unwrap();
        conn.stream().write_all(&50i32.to_be_bytes()).unwrap();
        conn.stream().write_all(&[0, 3]).unwrap();
        let frame = conn.read_frame().unwrap().expect("ApiVersions answered");
        assert_eq!(frame.get(..4), Some(&id.to_be_bytes()[..]));
    }
    assert_healthy(&mut broker, &seed);
}

#[test]
fn unknown_api_key_closes_connection() {
    let mut broker = start_broker();
    let seed = seed(&broker);
    let response = wire::raw_request(broker.bootstrap(), 9999, 0, &[]).unwrap();
    assert!(
        response.is_none(),
        "api key 9999: expected the connection closed, got a response {response:02x?}"
    );
    assert_healthy(&mut broker, &seed);
}

fn api_versions_request() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("bad-input"))
        .with_client_software_version(StrBytes::from_static_str("1"))
}

#[test]
fn api_versions_at_unsupported_version_gets_v0_error_with_its_range() {
    let mut broker = start_broker();
    let seed = seed(&broker);
    let mut conn = RawConnection::connect(broker.bootstrap()).unwrap();
    let body = encode_body(&api_versions_request(), 3);
    let mut response = conn
        .request(ApiKey::ApiVersions as i16, 99, &body)
        .unwrap()
        .expect("ApiVersions v99 must be answered, not closed");
    let decoded = ApiVersionsResponse::decode(&mut response, 0)
        .expect("the answer to ApiVersions v99 is a v0-encoded ApiVersionsResponse");
    assert_eq!(decoded.error_code, UNSUPPORTED_VERSION, "{decoded:?}");
    let range = |key: ApiKey| {
        decoded
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .map(|k| (k.min_version, k.max_version))
    };
    let api_versions = range(ApiKey::ApiVersions).expect("ApiVersions range listed");
    assert_eq!(api_versions.0, 0, "ApiVersions min version");
    assert!(
        api_versions.1 >= 3,
        "ApiVersions max version {}",
        api_versions.1
    );
    // Only ApiVersions' own range, as Kafka's getErrorResponse (KIP-511).
    assert_eq!(decoded.api_keys.len(), 1, "{decoded:?}");
    // Like librdkafka, retry at v0 on the same connection: it must still be open.
    let mut retry = conn
        .request(ApiKey::ApiVersions as i16, 0, &[])
        .unwrap()
        .expect("ApiVersions v0 after the v99 error");
    let retry = ApiVersionsResponse::decode(&mut retry, 0).unwrap();
    assert_eq!(retry.error_code, NONE);
    assert!(
        retry.api_keys.contains(&decoded.api_keys[0]),
        "the same ApiVersions range at v0"
    );
    assert!(retry.api_keys.len() > 10, "every API at v0: {retry:?}");
    assert_healthy(&mut broker, &seed);
}

#[test]
fn metadata_at_unsupported_version_closes_connection() {
    let mut broker = start_broker();
    let seed = seed(&broker);
    let response =
        wire::raw_request(broker.bootstrap(), ApiKey::Metadata as i16, 99, &[0]).unwrap();
    assert!(
        response.is_none(),
        "Metadata v99: expected the connection closed, got {response:02x?}"
    );
    assert_healthy(&mut broker, &seed);
}

/// Flips one byte inside the value of the last record, which the batch CRC covers.
fn corrupt_value(batch: &Bytes, value: &[u8]) -> Bytes {
    let mut bytes = batch.to_vec();
    let at = bytes
        .windows(value.len())
        .rposition(|w| w == value)
        .expect("value bytes inside the batch");
    bytes[at + value.len() / 2] ^= 0x55;
    Bytes::from(bytes)
}

#[test]
fn produce_with_bad_crc_is_rejected_and_not_stored() {
    let mut broker = start_broker();
    let seed = seed(&broker);
    let mut conn = RawConnection::connect(broker.bootstrap()).unwrap();
    let value = b"this-value-gets-corrupted".as_slice();
    let good = build_batch(&[(b"k1", b"v1"), (b"k2", value)], 1_700_000_001_000);
    let bad = corrupt_value(&good, value);
    let response = wire::produce(&mut conn, &seed.topic, 0, bad).unwrap();
    assert_eq!(
        response.error_code, CORRUPT_MESSAGE,
        "produce of a batch with a bad CRC: {response:?}"
    );
    let data = wire::fetch(&mut conn, &seed.topic, 0, 0).unwrap();
    assert_eq!(data.error_code, NONE);
    assert_eq!(data.high_watermark, seed.records.len() as i64, "{data:?}");
    let fetched = decode_records(&data.records.unwrap_or_default());
    assert_eq!(fetched.len(), seed.records.len(), "corrupt records stored");
    // The rejected batch consumed no offsets: the next good batch follows the seed.
    let response = wire::produce(&mut conn, &seed.topic, 0, good).unwrap();
    assert_eq!(response.error_code, NONE, "{response:?}");
    assert_eq!(response.base_offset, seed.records.len() as i64);
    assert_healthy(&mut broker, &seed);
}

/// Produce of one partition at `version` (acks=all); that partition's error code.
fn produce_at(conn: &mut RawConnection, topic: &str, records: Bytes, version: i16) -> i16 {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::ProduceRequest;
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(wire::topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let response = conn.call(&request, version).unwrap();
    response.responses[0].partition_responses[0].error_code
}

/// Batches Kafka's produce path refuses, with its codes (`ProduceRequest.validateRecords`,
/// `LogValidator.validateBatch`): a message set of another magic and a batch whose
/// lastOffsetDelta disagrees with its record count are INVALID_RECORD, a zstd batch before
/// Produce v7 UNSUPPORTED_COMPRESSION_TYPE; none is stored. Zstd from v7 is taken.
#[test]
fn produce_batches_kafka_refuses_get_its_codes_and_are_not_stored() {
    const INVALID_RECORD: i16 = 87;
    const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;
    let mut broker = start_broker();
    let seed = seed(&broker);
    let mut conn = RawConnection::connect(broker.bootstrap()).unwrap();
    let good = build_batch(&[(b"k", b"v")], 1_700_000_003_000).to_vec();
    let mut old_magic = good.clone();
    old_magic[16] = 1; // magic: outside the CRC, which starts at the attributes
    assert_eq!(
        produce_at(&mut conn, &seed.topic, Bytes::from(old_magic), 8),
        INVALID_RECORD
    );
    let mut inconsistent = good;
    inconsistent[23..27].copy_from_slice(&4i32.to_be_bytes()); // lastOffsetDelta
    storage::batch::header::reset_crc(&mut inconsistent).unwrap();
    assert_eq!(
        produce_at(&mut conn, &seed.topic, Bytes::from(inconsistent), 8),
        INVALID_RECORD
    );
    let zstd = Bytes::from(
        storage::batch::BatchBuilder::new()
            .compression(storage::batch::Compression::Zstd)
            .record(Some(b"k"), Some(b"zstd"), 1_700_000_003_000)
            .build()
            .unwrap(),
    );
    assert_eq!(
        produce_at(&mut conn, &seed.topic, zstd.clone(), 6),
        UNSUPPORTED_COMPRESSION_TYPE
    );
    let data = wire::fetch(&mut conn, &seed.topic, 0, 0).unwrap();
    assert_eq!(
        data.high_watermark,
        seed.records.len() as i64,
        "a refused batch was stored"
    );
    assert_healthy(&mut broker, &seed);
    // (After the health check, whose decoder reads no zstd.)
    assert_eq!(produce_at(&mut conn, &seed.topic, zstd, 7), NONE);
    let data = wire::fetch(&mut conn, &seed.topic, 0, 0).unwrap();
    assert_eq!(data.high_watermark, seed.records.len() as i64 + 1);
}

#[test]
fn produce_to_missing_topic_without_auto_create_is_unknown_topic() {
    let mut broker = start_broker();
    let seed = seed(&broker);
    let mut conn = RawConnection::connect(broker.bootstrap()).unwrap();
    let topic = unique_topic("no-such-topic");
    let response = wire::produce(
        &mut conn,
        &topic,
        0,
        build_batch(&[(b"k", b"v")], 1_700_000_002_000),
    )
    .unwrap();
    assert_eq!(
        response.error_code, UNKNOWN_TOPIC_OR_PARTITION,
        "{response:?}"
    );
    // And it was not created as a side effect.
    let response = wire::produce(
        &mut conn,
        &topic,
        0,
        build_batch(&[(b"k", b"v")], 1_700_000_002_000),
    )
    .unwrap();
    assert_eq!(
        response.error_code, UNKNOWN_TOPIC_OR_PARTITION,
        "{response:?}"
    );
    // A missing partition of an existing topic is the same error.
    let response = wire::produce(
        &mut conn,
        &seed.topic,
        7,
        build_batch(&[(b"k", b"v")], 1_700_000_002_000),
    )
    .unwrap();
    assert_eq!(
        response.error_code, UNKNOWN_TOPIC_OR_PARTITION,
        "{response:?}"
    );
    assert_healthy(&mut broker, &seed);
}

#[test]
fn fetch_past_log_end_is_offset_out_of_range() {
    let mut broker = start_broker();
    let seed = seed(&broker);
    let mut conn = RawConnection::connect(broker.bootstrap()).unwrap();
    let end = seed.records.len() as i64;
    let data = wire::fetch(&mut conn, &seed.topic, 0, end + 1000).unwrap();
    assert_eq!(
        data.error_code,
        OFFSET_OUT_OF_RANGE,
        "fetch at {}: {data:?}",
        end + 1000
    );
    let data = wire::fetch(&mut conn, &seed.topic, 0, end + 1).unwrap();
    assert_eq!(
        data.error_code,
        OFFSET_OUT_OF_RANGE,
        "fetch at {}: {data:?}",
        end + 1
    );
    // Fetching exactly at the log end is fine and returns nothing.
    let data = wire::fetch(&mut conn, &seed.topic, 0, end).unwrap();
    assert_eq!(data.error_code, NONE, "fetch at the log end: {data:?}");
    assert_eq!(data.high_watermark, end);
    assert!(decode_records(&data.records.unwrap_or_default()).is_empty());
    assert_healthy(&mut broker, &seed);
}

#[test]
fn silent_clients_do_not_block_others() {
    let mut broker = start_broker();
    let seed = seed(&broker);
    // One connection that never sends, one that stops mid-length, one mid-frame.
    let silent = RawConnection::connect(broker.bootstrap()).unwrap();
    let mut half_length = RawConnection::connect(broker.bootstrap()).unwrap();
    half_length.stream().write_all(&[0, 0]).unwrap();
    let mut half_frame = RawConnection::connect(broker.bootstrap()).unwrap();
    half_frame.stream().write_all(&64i32.to_be_bytes()).unwrap();
    half_frame.stream().write_all(&[0, 3, 0, 9]).unwrap();

    let started = Instant::now();
    let mut conn = RawConnection::connect(broker.bootstrap()).unwrap();
    let topic = unique_topic("busy");
    assert_eq!(wire::create_topic(&mut conn, &topic, 1).unwrap(), NONE);
    for round in 0..10i64 {
        let key = format!("k{round}");
        let value = format!("v{round}");
        let batch = build_batch(&[(key.as_bytes(), value.as_bytes())], 1_700_000_003_000);
        let response = wire::produce(&mut conn, &topic, 0, batch).unwrap();
        assert_eq!(response.error_code, NONE, "{response:?}");
        assert_eq!(response.base_offset, round);
        let data = wire::fetch(&mut conn, &topic, 0, round).unwrap();
        let fetched = decode_records(&data.records.unwrap_or_default());
        assert_eq!(
            fetched.first().map(|(o, _, v)| (*o, v.clone())),
            Some((round, Some(Bytes::from(value))))
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "10 produce+fetch rounds took {:?} while silent clients were connected",
        started.elapsed()
    );
    drop((silent, half_length, half_frame));
    assert_healthy(&mut broker, &seed);
}
