//! How records and chain points are laid out on disk.
//!
//! A record is `[len: u32 LE][crc32 of the bytes: u32 LE][bytes]`, and its bytes are one
//! postcard-encoded journal entry: they start with the entry's sequence number (a varint) and
//! end with the hash of the entry before (32 bytes). A chain point (the retention anchor, the
//! acknowledged head) is `[seq: u64 LE][hash: 32 bytes][crc32 of both: u32 LE]` in a file of
//! its own.

use std::{
    fs::{self, File},
    io::{self, Read, Write},
    path::Path,
};

use super::{Anchor, Hash};

pub(super) const HEADER: usize = 8;
/// No single record is near this; a larger length means a damaged header.
pub(super) const MAX_RECORD: usize = 16 << 20;
const POINT_BYTES: usize = 44;

/// What is wrong with one stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bad {
    /// The file ends inside the record.
    Short,
    /// The length field is beyond any record.
    Length(u32),
    /// The bytes do not match their checksum.
    Checksum,
}

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Short => f.write_str("the file ends inside the record"),
            Self::Length(n) => write!(f, "its length field says {n} bytes, more than any record"),
            Self::Checksum => f.write_str("its checksum does not match its bytes"),
        }
    }
}

/// Reads one record into `out`: `Ok(None)` at a clean end of the file, `Ok(Some(bad))` for a
/// record that cannot be trusted, `Err` only when the file cannot be read.
pub(super) fn read(r: &mut impl Read, out: &mut Vec<u8>) -> io::Result<Option<Result<(), Bad>>> {
    let mut header = [0u8; HEADER];
    let got = read_full(r, &mut header)?;
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER {
        return Ok(Some(Err(Bad::Short)));
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len as usize > MAX_RECORD {
        return Ok(Some(Err(Bad::Length(len))));
    }
    out.resize(len as usize, 0);
    if read_full(r, out)? < out.len() {
        return Ok(Some(Err(Bad::Short)));
    }
    if crc32fast::hash(out) != crc {
        return Ok(Some(Err(Bad::Checksum)));
    }
    Ok(Some(Ok(())))
}

/// Reads until `buf` is full or the input ends; how much was read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Appends one record's framing and bytes to `buf`.
pub(super) fn frame(buf: &mut Vec<u8>, record: &[u8]) -> io::Result<()> {
    let len = u32::try_from(record.len())
        .ok()
        .filter(|&n| n as usize <= MAX_RECORD)
        .ok_or_else(|| io::Error::other("record too large"))?;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(record).to_le_bytes());
    buf.extend_from_slice(record);
    Ok(())
}

/// The sequence number a record's entry carries: its first field, a postcard varint.
pub fn entry_seq(record: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, byte) in record.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Reads a chain point file; `None` when there is none.
pub(super) fn read_point(path: &Path) -> io::Result<Option<Anchor>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    decode_point(&bytes).map(Some).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("`{}` is damaged", path.display()),
        )
    })
}

pub(super) fn encode_point(point: Anchor) -> [u8; POINT_BYTES] {
    let mut bytes = [0u8; POINT_BYTES];
    bytes[..8].copy_from_slice(&point.seq.to_le_bytes());
    bytes[8..40].copy_from_slice(&point.hash);
    let crc = crc32fast::hash(&bytes[..40]);
    bytes[40..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode_point(bytes: &[u8]) -> Option<Anchor> {
    if bytes.len() != POINT_BYTES || crc32fast::hash(&bytes[..40]).to_le_bytes() != bytes[40..] {
        return None;
    }
    let seq = u64::from_le_bytes(bytes[..8].try_into().ok()?);
    let hash: Hash = bytes[8..40].try_into().ok()?;
    Some(Anchor { seq, hash })
}

/// Replaces a chain point file durably (written aside, synced, renamed, directory synced).
pub(super) fn write_point_durably(dir: &Path, name: &str, point: Anchor) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(&encode_point(point))?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    super::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_number_is_read_from_an_encoded_entry() {
        for seq in [1u64, 127, 128, 300, 1 << 40, u64::MAX] {
            let bytes = postcard::to_stdvec(&(seq, "rest")).unwrap();
            assert_eq!(entry_seq(&bytes), Some(seq));
        }
        assert_eq!(entry_seq(&[0x80; 11]), None);
        assert_eq!(entry_seq(&[]), None);
    }

    #[test]
    fn a_point_round_trips_and_damage_is_noticed() {
        let point = Anchor {
            seq: 42,
            hash: [7; 32],
        };
        let mut bytes = encode_point(point);
        assert_eq!(decode_point(&bytes), Some(point));
        bytes[3] ^= 1;
        assert_eq!(decode_point(&bytes), None);
        assert_eq!(decode_point(&bytes[..40]), None);
    }
}
