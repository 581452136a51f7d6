//! Test helpers shared by the ways a frame leaves through a socket (`copy_out`, `map_out`,
//! `send_file`): a connected loopback pair, and file regions over temporary files.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::Arc;

use storage::FileRegion;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::handlers::OutChunk;

/// A connected loopback pair: (the accepted side, the connecting side).
pub async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (server, client)
}

/// The write half of a connection, and a task that reads everything its peer receives until
/// the write half is dropped.
pub async fn writer_and_received() -> (OwnedWriteHalf, JoinHandle<Vec<u8>>) {
    let (server, mut client) = pair().await;
    let (_, writer) = server.into_split();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        got
    });
    (writer, reader)
}

/// A temporary file holding `data`.
pub fn file_with(data: &[u8]) -> Arc<storage::LogFile> {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(data).unwrap();
    Arc::new(storage::LogFile::new(f))
}

/// A region of a temporary file holding `data`, as a frame chunk.
pub fn file_chunk(data: &[u8], position: u64, len: u64) -> OutChunk {
    OutChunk::File(FileRegion {
        file: file_with(data),
        position,
        len,
    })
}
