//! A cache pack's records. A pack file is records back to back, each a header and then the
//! chunk's bytes:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | `PXCK` |
//! | 2 | length of the CID, little-endian (1–128) |
//! | 2 | zero |
//! | 8 | the chunk's index in its object, little-endian |
//! | 4 | the chunk's length, little-endian (1 – the chunk size) |
//! | 4 | CRC-32C of the chunk's bytes |
//! | 4 | CRC-32C of the 24 bytes above and the CID |
//! | n | the CID (ASCII) |
//!
//! A reader stops at the first header that is not whole and right: what follows is what a
//! crash cut short (or room a failed write left empty).

use std::fs::File;
use std::os::unix::fs::FileExt;

const MAGIC: &[u8; 4] = b"PXCK";
const FIXED: usize = 28;
const MAX_CID: usize = 128;
const PREFIX: &str = "pack-";

/// A pack's file name.
pub(crate) fn name(seq: u64) -> String {
    format!("{PREFIX}{seq:016x}")
}

pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix(PREFIX)?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// A record to write.
pub(crate) struct Record<'a> {
    pub cid: &'a str,
    pub index: u64,
    pub len: u32,
    pub crc: u32,
}

impl Record<'_> {
    pub fn header(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(FIXED + self.cid.len());
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&(self.cid.len() as u16).to_le_bytes());
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(&self.index.to_le_bytes());
        h.extend_from_slice(&self.len.to_le_bytes());
        h.extend_from_slice(&self.crc.to_le_bytes());
        let head_crc = crc32c::crc32c_append(crc32c::crc32c(&h), self.cid.as_bytes());
        h.extend_from_slice(&head_crc.to_le_bytes());
        h.extend_from_slice(self.cid.as_bytes());
        h
    }
}

/// A record read back: where its chunk's bytes are, and what they must check to.
#[derive(Debug)]
pub(crate) struct Found {
    pub cid: String,
    pub index: u64,
    pub len: u32,
    pub crc: u32,
    pub data_offset: u64,
}

/// The record at `at` of a pack of `size` bytes, or `None` when there is none whole there.
fn read_record(file: &File, at: u64, size: u64, chunk_size: u64) -> std::io::Result<Option<Found>> {
    let room = size.saturating_sub(at);
    if room < FIXED as u64 {
        return Ok(None);
    }
    let mut buf = vec![0u8; (FIXED + MAX_CID).min(room as usize)];
    file.read_exact_at(&mut buf, at)?;
    let u16_at = |i: usize| u16::from_le_bytes([buf[i], buf[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes(buf[i..i + 4].try_into().expect("4 bytes"));
    if &buf[..4] != MAGIC || u16_at(6) != 0 {
        return Ok(None);
    }
    let cid_len = usize::from(u16_at(4));
    if cid_len == 0 || cid_len > MAX_CID || FIXED + cid_len > buf.len() {
        return Ok(None);
    }
    let cid_bytes = &buf[FIXED..FIXED + cid_len];
    let head_crc = crc32c::crc32c_append(crc32c::crc32c(&buf[..24]), cid_bytes);
    if head_crc != u32_at(24) {
        return Ok(None);
    }
    let Ok(cid) = std::str::from_utf8(cid_bytes) else {
        return Ok(None);
    };
    if !super::store::valid_cid(cid) {
        return Ok(None);
    }
    let index = u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes"));
    let len = u32_at(16);
    let data_offset = at + (FIXED + cid_len) as u64;
    if len == 0 || u64::from(len) > chunk_size || data_offset + u64::from(len) > size {
        return Ok(None);
    }
    Ok(Some(Found {
        cid: cid.to_string(),
        index,
        len,
        crc: u32_at(20),
        data_offset,
    }))
}

/// Every record of a pack, in order, up to the first that is not whole.
pub(crate) fn records(file: &File, chunk_size: u64) -> std::io::Result<Vec<Found>> {
    let size = file.metadata()?.len();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(found) = read_record(file, at, size, chunk_size)? {
        at = found.data_offset + u64::from(found.len);
        out.push(found);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pack_of(records: &[(&str, u64, &[u8])]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for (cid, index, data) in records {
            let r = Record {
                cid,
                index: *index,
                len: data.len() as u32,
                crc: crc32c::crc32c(data),
            };
            f.write_all(&r.header()).unwrap();
            f.write_all(data).unwrap();
        }
        f
    }

    #[test]
    fn records_read_back_as_written() {
        let f = pack_of(&[("bafyone", 0, b"hello"), ("bafytwo", 7, b"world!")]);
        let found = records(f.as_file(), 64).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(
            (found[0].cid.as_str(), found[0].index, found[0].len),
            ("bafyone", 0, 5)
        );
        assert_eq!(
            (found[1].cid.as_str(), found[1].index, found[1].len),
            ("bafytwo", 7, 6)
        );
        let mut data = vec![0u8; 6];
        f.as_file()
            .read_exact_at(&mut data, found[1].data_offset)
            .unwrap();
        assert_eq!(&data, b"world!");
        assert_eq!(found[1].crc, crc32c::crc32c(b"world!"));
    }

    #[test]
    fn a_record_cut_short_or_damaged_ends_the_pack() {
        let f = pack_of(&[("bafyone", 0, b"hello"), ("bafytwo", 1, b"world!")]);
        let whole = std::fs::metadata(f.path()).unwrap().len();
        // Cut inside the second record's bytes.
        f.as_file().set_len(whole - 2).unwrap();
        assert_eq!(records(f.as_file(), 64).unwrap().len(), 1);
        // A flipped bit in the first header.
        f.as_file().write_all_at(b"X", 9).unwrap();
        assert_eq!(records(f.as_file(), 64).unwrap().len(), 0);
        // Longer than a chunk may be.
        let g = pack_of(&[("bafyone", 0, b"hello")]);
        assert_eq!(records(g.as_file(), 4).unwrap().len(), 0);
    }

    #[test]
    fn names_round_trip_and_nothing_else_parses() {
        assert_eq!(parse_name(&name(0x2a)), Some(0x2a));
        assert_eq!(parse_name("pack-2a"), None);
        assert_eq!(parse_name("bafyone.0"), None);
        assert_eq!(parse_name(".tmp-0123"), None);
    }
}
