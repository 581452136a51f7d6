//! The fixed preamble of every request: api key, api version and correlation id.
//!
//! These 8 bytes are read before the full header is decoded so that an unknown API or an
//! unsupported version can still be answered (ApiVersions) or logged with its correlation id.

/// The first fields of a request header, common to all header versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPreamble {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

impl RequestPreamble {
    /// Reads the preamble from the start of a frame; `None` if the frame is shorter than 8 bytes.
    pub fn parse(frame: &[u8]) -> Option<Self> {
        let b = frame.get(..8)?;
        Some(Self {
            api_key: i16::from_be_bytes([b[0], b[1]]),
            api_version: i16::from_be_bytes([b[2], b[3]]),
            correlation_id: i32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_short() {
        let p = RequestPreamble::parse(&[0, 18, 0, 3, 0, 0, 0, 7, 0xff]).unwrap();
        assert_eq!(
            p,
            RequestPreamble {
                api_key: 18,
                api_version: 3,
                correlation_id: 7
            }
        );
        assert!(RequestPreamble::parse(&[0, 18, 0]).is_none());
    }
}
