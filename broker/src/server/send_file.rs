//! Sending record batches from a segment file to a socket with `sendfile`: the kernel moves
//! page-cache pages to the socket without a copy through user space (Kafka's
//! `FileRecords.writeTo` uses `transferTo`, the same call).
//!
//! Invariant: exactly `region.len` bytes are sent, or an error is returned and the connection
//! must close (the frame is incomplete). A file shorter than the region (the log was truncated
//! after the fetch read it) is such an error, as in Kafka.

use std::io;
use std::os::fd::AsRawFd;

use storage::FileRegion;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Largest count per `sendfile` call (the kernel caps one call near 2 GiB anyway).
const MAX_PER_CALL_BYTES: u64 = 1 << 30;

/// Sends `region` of its file to `stream`, waiting for the socket to take it.
pub async fn send_file(stream: &TcpStream, region: &FileRegion) -> io::Result<()> {
    let too_large = || io::Error::new(io::ErrorKind::InvalidInput, "file position too large");
    let mut offset = libc::off_t::try_from(region.position).map_err(|_| too_large())?;
    let mut left = region.len;
    while left > 0 {
        stream.writable().await?;
        let count = usize::try_from(left.min(MAX_PER_CALL_BYTES)).map_err(|_| too_large())?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            // SAFETY: both descriptors are open for the whole call (the socket is borrowed, the
            // file is kept alive by `region.file`); `offset` is a valid, exclusively borrowed
            // off_t that sendfile advances by what it sent.
            let n = unsafe {
                libc::sendfile(
                    stream.as_raw_fd(),
                    region.file.as_raw_fd(),
                    &mut offset,
                    count,
                )
            };
            usize::try_from(n).map_err(|_| io::Error::last_os_error())
        });
        match sent {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "segment file shorter than the records read for this fetch",
                ))
            }
            Ok(n) => left = left.saturating_sub(n as u64),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::server::test_support::{file_with, pair};

    #[tokio::test]
    async fn sends_exactly_the_region_even_past_the_socket_buffer() {
        // 8 MiB: more than the socket buffers hold, so sendfile meets EAGAIN and waits.
        let data: Vec<u8> = (0..8u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
        let file = file_with(&data);
        let (server, mut client) = pair().await;
        let region = FileRegion {
            file,
            position: 1000,
            len: (data.len() - 3000) as u64,
        };
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        send_file(&server, &region).await.unwrap();
        drop(server);
        let got = reader.await.unwrap();
        assert_eq!(got, &data[1000..data.len() - 2000]);
    }

    #[tokio::test]
    async fn a_file_shorter_than_the_region_is_an_error() {
        let file = file_with(&[1u8; 100]);
        let (server, _client) = pair().await;
        let region = FileRegion {
            file,
            position: 50,
            len: 200,
        };
        let err = send_file(&server, &region).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
