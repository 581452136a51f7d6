//! Raw Kafka requests over a plain TCP socket.
//!
//! Used by the readiness probe (ApiVersions) and by tests that must send
//! frames no well-behaved client would: wrong lengths, unknown API keys,
//! unsupported versions, corrupt batches. Request headers are written by hand
//! (so any api key and version can be sent); bodies are usually encoded with
//! `kafka-protocol`. Every socket has read and write timeouts, so a broker
//! that hangs fails the test instead of hanging it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreateTopicsRequest, FetchRequest,
    ListOffsetsRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

/// Largest response frame we accept; anything bigger means we are out of sync.
const MAX_RESPONSE_FRAME_BYTES: usize = 256 * 1024 * 1024;

/// How long a socket read or write may block before the test fails.
const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(15);

/// The client id every raw request carries, so broker logs show where it came from.
const CLIENT_ID: &str = "sluice-compat-raw";

/// Request versions the typed helpers use: non-flexible, so easy to reason
/// about in hex dumps.
pub const PRODUCE_VERSION: i16 = 8;
/// See [`PRODUCE_VERSION`].
pub const FETCH_VERSION: i16 = 11;
/// See [`PRODUCE_VERSION`].
pub const CREATE_TOPICS_VERSION: i16 = 4;

/// Converts a `kafka-protocol` (anyhow) error into an I/O error.
fn codec_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// True for the errors a read or write gets when the peer has closed the
/// connection (cleanly or with a reset).
pub fn is_closed_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// The request header version Kafka uses for `api_key` at `version`; unknown
/// keys get the non-flexible v1 header.
pub fn request_header_version(api_key: i16, version: i16) -> i16 {
    ApiKey::try_from(api_key)
        .map(|k| k.request_header_version(version))
        .unwrap_or(1)
}

/// The response header version for `api_key` at `version`. ApiVersions
/// responses always use v0, even for flexible versions, so a client can
/// always read them.
pub fn response_header_version(api_key: i16, version: i16) -> i16 {
    ApiKey::try_from(api_key)
        .map(|k| k.response_header_version(version))
        .unwrap_or(0)
}

/// Encodes a request header by hand, so any key/version pair can be sent.
pub fn encode_request_header(api_key: i16, version: i16, correlation_id: i32) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_i16(api_key);
    buf.put_i16(version);
    buf.put_i32(correlation_id);
    let client_id = CLIENT_ID.as_bytes();
    buf.put_i16(client_id.len() as i16);
    buf.put_slice(client_id);
    if request_header_version(api_key, version) >= 2 {
        // Empty tagged-field section of the flexible header.
        buf.put_u8(0);
    }
    buf
}

/// Encodes a message body at `version`, panicking on a codec error (a bug in
/// the test, not in the broker).
pub fn encode_body<M: Encodable>(message: &M, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    if let Err(e) = message.encode(&mut buf, version) {
        panic!("cannot encode request body at v{version}: {e}");
    }
    buf.freeze()
}

/// Reads an unsigned varint (used by flexible headers' tagged fields).
fn read_unsigned_varint(buf: &mut Bytes) -> io::Result<u32> {
    let mut value: u32 = 0;
    for shift in (0..35).step_by(7) {
        if !buf.has_remaining() {
            return Err(codec_error("truncated varint"));
        }
        let b = buf.get_u8();
        value |= u32::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(codec_error("varint too long"))
}

/// Strips a response header (correlation id, plus tagged fields for v1) and
/// checks the correlation id.
fn strip_response_header(
    mut frame: Bytes,
    header_version: i16,
    expected_correlation_id: i32,
) -> io::Result<Bytes> {
    if frame.len() < 4 {
        return Err(codec_error("response frame shorter than its header"));
    }
    let correlation_id = frame.get_i32();
    if correlation_id != expected_correlation_id {
        return Err(codec_error(format!(
            "correlation id {correlation_id} in response, expected {expected_correlation_id}"
        )));
    }
    if header_version >= 1 {
        let tagged_fields = read_unsigned_varint(&mut frame)?;
        for _ in 0..tagged_fields {
            let _tag = read_unsigned_varint(&mut frame)?;
            let size = read_unsigned_varint(&mut frame)? as usize;
            if frame.remaining() < size {
                return Err(codec_error("truncated tagged field in response header"));
            }
            frame.advance(size);
        }
    }
    Ok(frame)
}

/// Decodes a response frame (as [`RawConnection::read_frame`] returns it) to `R`'s response,
/// checking the correlation id.
pub fn decode_response<R: Request>(
    frame: Bytes,
    version: i16,
    correlation_id: i32,
) -> io::Result<R::Response> {
    let mut body = strip_response_header(
        frame,
        response_header_version(R::KEY, version),
        correlation_id,
    )?;
    R::Response::decode(&mut body, version).map_err(codec_error)
}

/// Decodes a Produce answer frame and checks that it covers `partitions` partitions, every
/// one without error.
pub fn check_produce_answer(
    frame: Bytes,
    version: i16,
    correlation_id: i32,
    partitions: usize,
) -> io::Result<()> {
    let response = decode_response::<ProduceRequest>(frame, version, correlation_id)?;
    let mut answered = 0usize;
    for p in response
        .responses
        .iter()
        .flat_map(|t| &t.partition_responses)
    {
        if p.error_code != 0 {
            return Err(codec_error(format!(
                "partition {} error {}",
                p.index, p.error_code
            )));
        }
        answered += 1;
    }
    if answered != partitions {
        return Err(codec_error(format!(
            "answer {correlation_id} covers {answered} of {partitions} partitions"
        )));
    }
    Ok(())
}

/// One client connection that speaks raw frames.
pub struct RawConnection {
    /// The socket; exposed through [`RawConnection::stream`] for tests that
    /// write malformed bytes.
    stream: TcpStream,
    /// Correlation id of the next request, so responses can be matched.
    next_correlation_id: i32,
}

impl RawConnection {
    /// Connects with the default I/O timeouts.
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Self::connect_with_timeout(addr, DEFAULT_IO_TIMEOUT)
    }

    /// Connects with the given read/write timeout.
    pub fn connect_with_timeout(addr: impl ToSocketAddrs, timeout: Duration) -> io::Result<Self> {
        let mut last_err = io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing");
        for a in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(timeout))?;
                    stream.set_write_timeout(Some(timeout))?;
                    stream.set_nodelay(true)?;
                    return Ok(Self {
                        stream,
                        next_correlation_id: 1,
                    });
                }
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    /// Connects from the local address `from` (another loopback address, say, to stand for
    /// another client host), with the default I/O timeouts.
    pub fn connect_from(from: std::net::IpAddr, addr: std::net::SocketAddr) -> io::Result<Self> {
        let domain = socket2::Domain::for_address(addr);
        let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
        socket.bind(&std::net::SocketAddr::new(from, 0).into())?;
        socket.connect_timeout(&addr.into(), DEFAULT_IO_TIMEOUT)?;
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(DEFAULT_IO_TIMEOUT))?;
        stream.set_write_timeout(Some(DEFAULT_IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            next_correlation_id: 1,
        })
    }

    /// The underlying socket, for writing arbitrary bytes.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// A second handle on the same connection (for a reader thread beside a writer); it
    /// numbers its own requests from 1, so only one of the two should send.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            stream: self.stream.try_clone()?,
            next_correlation_id: 1,
        })
    }

    /// Sets the read timeout of the socket.
    pub fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.stream.set_read_timeout(Some(timeout))
    }

    /// Writes a length-prefixed frame holding `payload`.
    pub fn send_frame(&mut self, payload: &[u8]) -> io::Result<()> {
        let len = i32::try_from(payload.len()).map_err(codec_error)?;
        let mut frame = Vec::with_capacity(payload.len() + 4);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame)?;
        self.stream.flush()
    }

    /// Sends a request with a hand-written header; returns its correlation id.
    pub fn send_request(&mut self, api_key: i16, version: i16, body: &[u8]) -> io::Result<i32> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let mut payload = encode_request_header(api_key, version, correlation_id);
        payload.extend_from_slice(body);
        self.send_frame(&payload)?;
        Ok(correlation_id)
    }

    /// Reads one response frame (without its length prefix). `Ok(None)` means
    /// the broker closed the connection before a whole frame arrived.
    pub fn read_frame(&mut self) -> io::Result<Option<Bytes>> {
        let mut len_buf = [0u8; 4];
        match self.stream.read_exact(&mut len_buf) {
            Ok(()) => {}
            Err(e) if is_closed_error(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = i32::from_be_bytes(len_buf);
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= MAX_RESPONSE_FRAME_BYTES)
            .ok_or_else(|| codec_error(format!("response frame length {len} out of range")))?;
        let mut body = vec![0u8; len];
        match self.stream.read_exact(&mut body) {
            Ok(()) => Ok(Some(Bytes::from(body))),
            Err(e) if is_closed_error(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends a request and returns the response body (header stripped), or
    /// `None` if the broker closed the connection instead of answering.
    pub fn request(
        &mut self,
        api_key: i16,
        version: i16,
        body: &[u8],
    ) -> io::Result<Option<Bytes>> {
        let correlation_id = match self.send_request(api_key, version, body) {
            Ok(id) => id,
            Err(e) if is_closed_error(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        match self.read_frame()? {
            None => Ok(None),
            Some(frame) => strip_response_header(
                frame,
                response_header_version(api_key, version),
                correlation_id,
            )
            .map(Some),
        }
    }

    /// Sends a typed request and decodes the typed response; a closed
    /// connection is an error here.
    pub fn call<R: Request>(&mut self, request: &R, version: i16) -> io::Result<R::Response> {
        let body = encode_body(request, version);
        match self.request(R::KEY, version, &body)? {
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "broker closed the connection instead of answering api key {} v{version}",
                    R::KEY
                ),
            )),
            Some(mut response) => R::Response::decode(&mut response, version).map_err(codec_error),
        }
    }

    /// Waits up to `timeout` for the broker to close the connection. Returns
    /// `Ok(true)` on EOF/reset, `Ok(false)` if it stayed open, and an error
    /// if the broker sent bytes instead.
    pub fn wait_closed(&mut self, timeout: Duration) -> io::Result<bool> {
        self.stream.set_read_timeout(Some(timeout))?;
        let mut buf = [0u8; 256];
        match self.stream.read(&mut buf) {
            Ok(0) => Ok(true),
            Ok(n) => Err(codec_error(format!(
                "expected the connection to close, got {n} bytes: {:02x?}",
                &buf[..n]
            ))),
            Err(e) if is_closed_error(&e) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Half-closes the write side (the broker sees EOF after what was sent).
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }
}

/// One request on a fresh connection: `Ok(Some(body))` with the response
/// header stripped, or `Ok(None)` if the broker closed the connection.
pub fn raw_request(
    addr: impl ToSocketAddrs,
    api_key: i16,
    version: i16,
    body: &[u8],
) -> io::Result<Option<Bytes>> {
    RawConnection::connect(addr)?.request(api_key, version, body)
}

/// ApiVersions v3, as a modern client sends it first.
pub fn api_versions(
    addr: impl ToSocketAddrs,
    timeout: Duration,
) -> io::Result<ApiVersionsResponse> {
    let mut conn = RawConnection::connect_with_timeout(addr, timeout)?;
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("sluice-compat-tests"))
        .with_client_software_version(StrBytes::from_static_str("0.1.0"));
    conn.call(&request, 3)
}

/// Creates a topic with CreateTopics v4 and returns the topic's error code.
pub fn create_topic(conn: &mut RawConnection, topic: &str, partitions: i32) -> io::Result<i16> {
    let request = create_topics_request(topic, partitions, &[]);
    let response = conn.call(&request, CREATE_TOPICS_VERSION)?;
    response
        .topics
        .first()
        .map(|t| t.error_code)
        .ok_or_else(|| codec_error("CreateTopics response without topics"))
}

/// A CreateTopics request of one topic of `partitions` at replication factor 1 with these
/// configs (a `None` value goes as null).
pub fn create_topics_request(
    topic: &str,
    partitions: i32,
    configs: &[(&str, Option<&str>)],
) -> CreateTopicsRequest {
    CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(v.map(|v| StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            )])
        .with_timeout_ms(10_000)
}

/// Creates `topic` with these configs by CreateTopics v7 (which answers the topic id) and
/// returns the topic's result, or an error if the broker refused it.
pub fn create_topic_with(
    conn: &mut RawConnection,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> io::Result<CreatableTopicResult> {
    let configs: Vec<(&str, Option<&str>)> = configs.iter().map(|(k, v)| (*k, Some(*v))).collect();
    let response = conn.call(&create_topics_request(topic, partitions, &configs), 7)?;
    let result = response
        .topics
        .into_iter()
        .next()
        .ok_or_else(|| codec_error("CreateTopics response without topics"))?;
    if result.error_code != 0 {
        return Err(codec_error(format!(
            "CreateTopics refused {topic}: {result:?}"
        )));
    }
    Ok(result)
}

/// A `TopicName` from a `&str`.
pub fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

/// Produces raw batch bytes (acks=all) to one partition with Produce v8 and
/// returns that partition's response.
pub fn produce(
    conn: &mut RawConnection,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> io::Result<PartitionProduceResponse> {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let response = conn.call(&request, PRODUCE_VERSION)?;
    response
        .responses
        .into_iter()
        .flat_map(|t| t.partition_responses)
        .find(|p| p.index == partition)
        .ok_or_else(|| codec_error("Produce response without our partition"))
}

/// How much a Fetch asks for and how long it may wait (the fields every fetch here sets).
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
}

/// A consumer's sessionless Fetch of one topic's `(partition, offset)` pairs.
pub fn fetch_request(topic: &str, partitions: &[(i32, i64)], limits: FetchLimits) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(limits.max_wait_ms)
        .with_min_bytes(limits.min_bytes)
        .with_max_bytes(limits.max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&(partition, offset)| {
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_current_leader_epoch(-1)
                            .with_fetch_offset(offset)
                            .with_log_start_offset(-1)
                            .with_partition_max_bytes(limits.partition_max_bytes)
                    })
                    .collect(),
            )])
        .with_rack_id(StrBytes::from_static_str(""))
}

/// Fetches one partition from `offset` with Fetch v11 (no waiting) and
/// returns that partition's data.
pub fn fetch(
    conn: &mut RawConnection,
    topic: &str,
    partition: i32,
    offset: i64,
) -> io::Result<PartitionData> {
    let request = fetch_request(
        topic,
        &[(partition, offset)],
        FetchLimits {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 16 * 1024 * 1024,
            partition_max_bytes: 8 * 1024 * 1024,
        },
    );
    let response = conn.call(&request, FETCH_VERSION)?;
    if response.error_code != 0 {
        return Err(codec_error(format!(
            "Fetch top-level error_code {}",
            response.error_code
        )));
    }
    response
        .responses
        .into_iter()
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| codec_error("Fetch response without our partition"))
}

/// A consumer's ListOffsets of partition 0 of `topic` at `timestamp` (-1 latest, -2 earliest).
pub fn list_offsets_request(topic: &str, timestamp: i64) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(timestamp)])])
}

/// Partition 0's log start offset, from ListOffsets (earliest, v5); panics on any error.
pub fn earliest_offset(conn: &mut RawConnection, topic: &str) -> i64 {
    let response = match conn.call(&list_offsets_request(topic, -2), 5) {
        Ok(r) => r,
        Err(e) => panic!("ListOffsets of {topic}: {e}"),
    };
    let Some(p) = response.topics.first().and_then(|t| t.partitions.first()) else {
        panic!("ListOffsets of {topic}: no partition in the answer");
    };
    assert_eq!(p.error_code, 0, "{p:?}");
    p.offset
}

/// Polls until `deadline`, calling `f` until it returns `Some`.
pub fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
