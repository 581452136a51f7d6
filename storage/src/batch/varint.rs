//! Zigzag varints as used inside v2 records (protobuf encoding, at most 10 bytes).
//!
//! Invariant: decoding never reads past the slice and rejects over-long encodings.

use crate::error::StorageError;

/// Decodes a zigzag varlong at `*pos`, advancing `pos`.
pub fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, StorageError> {
    let mut raw: u64 = 0;
    let mut shift = 0u32;
    loop {
        let byte = *buf
            .get(*pos)
            .ok_or_else(|| StorageError::corrupt("truncated varint"))?;
        *pos += 1;
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err(StorageError::corrupt("varint longer than 10 bytes"));
        }
    }
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

/// Decodes a zigzag varint that must fit in an i32.
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, StorageError> {
    let value = read_varlong(buf, pos)?;
    i32::try_from(value).map_err(|_| StorageError::corrupt("varint does not fit in 32 bits"))
}

/// Appends the zigzag varlong encoding of `value`.
pub fn write_varlong(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8 & 0x7f) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        let mut out = Vec::new();
        write_varlong(&mut out, -1);
        assert_eq!(out, vec![0x01]);
        out.clear();
        write_varlong(&mut out, 300);
        assert_eq!(out, vec![0xd8, 0x04]);
        assert!(read_varlong(&[0x80], &mut 0).is_err());
        assert!(read_varlong(&[0xff; 11], &mut 0).is_err());
        assert!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0x7f], &mut 0).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(value in any::<i64>()) {
            let mut out = Vec::new();
            write_varlong(&mut out, value);
            let mut pos = 0;
            prop_assert_eq!(read_varlong(&out, &mut pos).unwrap(), value);
            prop_assert_eq!(pos, out.len());
        }
    }
}
