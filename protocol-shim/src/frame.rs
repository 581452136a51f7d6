//! Length-prefixed Kafka frames: a big-endian i32 size followed by that many bytes.
//!
//! Invariant: the size is checked against the limit *before* any buffer for the frame is
//! reserved, so a hostile length never causes an allocation. A negative or zero size, or one
//! above the limit, is `FrameError::Invalid`; the connection must then be closed.

use bytes::{Buf, Bytes, BytesMut};

/// Why a frame could not be taken from the buffer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The size prefix is negative or zero.
    #[error("invalid frame size {0}")]
    InvalidSize(i32),
    /// The size prefix exceeds `socket.request.max.bytes`.
    #[error("frame size {size} exceeds the limit of {max_bytes} bytes")]
    TooLarge { size: i32, max_bytes: usize },
}

/// Splits a byte stream into frames.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    /// `socket.request.max.bytes`: the largest request accepted.
    max_frame_bytes: usize,
}

impl FrameDecoder {
    pub fn new(max_frame_bytes: usize) -> Self {
        Self { max_frame_bytes }
    }

    /// Takes one whole frame (without its size prefix) off the front of `buf`.
    /// `Ok(None)` means more bytes are needed; `additional_hint` of how many can be read via
    /// [`FrameDecoder::bytes_needed`].
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(size) = self.peek_size(buf)? else {
            return Ok(None);
        };
        if buf.len() < 4 + size {
            return Ok(None);
        }
        buf.advance(4);
        Ok(Some(buf.split_to(size).freeze()))
    }

    /// How many more bytes the frame at the front of `buf` needs, once its size is known.
    pub fn bytes_needed(&self, buf: &[u8]) -> Result<usize, FrameError> {
        match self.peek_size(buf)? {
            None => Ok(4usize.saturating_sub(buf.len())),
            Some(size) => Ok((4 + size).saturating_sub(buf.len())),
        }
    }

    fn peek_size(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = buf.get(..4) else {
            return Ok(None);
        };
        let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if size <= 0 {
            return Err(FrameError::InvalidSize(size));
        }
        let size_usize = size as usize;
        if size_usize > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                size,
                max_bytes: self.max_frame_bytes,
            });
        }
        Ok(Some(size_usize))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_then_whole() {
        let d = FrameDecoder::new(100);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 3, 1, 2][..]);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert_eq!(d.bytes_needed(&buf).unwrap(), 1);
        buf.extend_from_slice(&[3, 0, 0]);
        let f = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&f[..], &[1, 2, 3]);
        assert_eq!(&buf[..], &[0, 0]);
        assert_eq!(d.bytes_needed(&buf).unwrap(), 2);
    }

    #[test]
    fn negative_zero_and_oversized_are_invalid() {
        let d = FrameDecoder::new(100);
        for (prefix, want) in [
            (-1i32, FrameError::InvalidSize(-1)),
            (0, FrameError::InvalidSize(0)),
            (
                i32::MAX,
                FrameError::TooLarge {
                    size: i32::MAX,
                    max_bytes: 100,
                },
            ),
        ] {
            let mut buf = BytesMut::from(&prefix.to_be_bytes()[..]);
            assert_eq!(d.decode(&mut buf), Err(want));
        }
    }

    #[test]
    fn limit_is_inclusive() {
        let d = FrameDecoder::new(4);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 4, 9, 9, 9, 9][..]);
        assert_eq!(d.decode(&mut buf).unwrap().unwrap().len(), 4);
    }
}
