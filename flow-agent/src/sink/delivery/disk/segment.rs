//! On-disk format of the buffer: segment files of length-prefixed records, and the ack file
//! that says where the first unacknowledged record is.
//!
//! A record is `len: u32 LE | crc32(payload): u32 LE | payload`. A record that a crash cut
//! short (header or payload incomplete, or a checksum that does not match) ends the valid
//! part of its segment.
use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

/// Bytes before each record's payload.
pub const HEADER: u64 = 8;
/// Longest record the buffer accepts; a longer length in a header can only be damage.
pub const MAX_RECORD: u64 = 64 << 20;
/// Where the numbering of segments starts: records persisted at close go in front of the
/// oldest segment, with a smaller number.
pub const FIRST_ID: u64 = 1 << 62;
const ACK_FILE: &str = "ack";
const ACK_TMP: &str = "ack.tmp";
const SEGMENT_EXT: &str = "seg";

/// A position in the buffer: segment number and byte offset in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub segment: u64,
    pub offset: u64,
}

pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.{SEGMENT_EXT}"))
}

/// Numbers of the segment files in `dir`, sorted.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(hex) = name.strip_suffix(&format!(".{SEGMENT_EXT}")) {
            if let Ok(id) = u64::from_str_radix(hex, 16) {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Opens (creating) a file readable and writable by the agent only.
pub fn open_private(path: &Path, append: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .append(append)
        .mode(0o600)
        .open(path)
}

pub fn encode_record(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What a header promises, checked against what the file holds.
pub enum Parsed<'a> {
    /// A whole record with a valid checksum and its total size on disk.
    Record(&'a [u8], u64),
    /// More bytes are needed than `buf` holds: read `need` bytes from the record's start.
    Short { need: u64 },
    /// Not a record: a torn write or damage.
    Invalid,
}

/// Parses the record at the start of `buf`; `available` is how many bytes the segment has
/// from there on (so that a short `buf` is told apart from a short file).
pub fn parse_record(buf: &[u8], available: u64) -> Parsed<'_> {
    if available < HEADER {
        return Parsed::Invalid;
    }
    if (buf.len() as u64) < HEADER {
        return Parsed::Short { need: HEADER };
    }
    let len = u64::from(u32::from_le_bytes(buf[0..4].try_into().unwrap()));
    let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap());
    let total = HEADER + len;
    if len > MAX_RECORD || total > available {
        return Parsed::Invalid;
    }
    if (buf.len() as u64) < total {
        return Parsed::Short { need: total };
    }
    let payload = &buf[HEADER as usize..total as usize];
    if crc32fast::hash(payload) != crc {
        return Parsed::Invalid;
    }
    Parsed::Record(payload, total)
}

/// Result of checking one segment from an offset to its end.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    pub records: u64,
    /// Bytes of valid records (headers included).
    pub bytes: u64,
    /// Length of the valid part: the file is cut there when it is longer.
    pub valid_len: u64,
    /// Bytes after the valid part (a torn record, or damage).
    pub invalid_bytes: u64,
}

const SCAN_CHUNK: usize = 1 << 20;

/// Counts the valid records of a segment from `offset` on.
pub fn scan_segment(file: &File, offset: u64) -> io::Result<Scan> {
    let len = file.metadata()?.len();
    let mut scan = Scan {
        valid_len: offset.min(len),
        ..Scan::default()
    };
    let mut pos = scan.valid_len;
    let mut buf = Vec::new();
    'chunks: while pos < len {
        let want = (len - pos).min(SCAN_CHUNK as u64) as usize;
        read_at(file, pos, want, &mut buf)?;
        let mut at = 0usize;
        loop {
            if pos + at as u64 == len {
                pos = len;
                break 'chunks;
            }
            match parse_record(&buf[at..], len - pos - at as u64) {
                Parsed::Record(_, total) => {
                    scan.records += 1;
                    scan.bytes += total;
                    at += total as usize;
                }
                Parsed::Short { need } if at == 0 => {
                    // One record longer than a chunk: read exactly it.
                    read_at(file, pos, need as usize, &mut buf)?;
                }
                Parsed::Short { .. } => break,
                Parsed::Invalid => {
                    pos += at as u64;
                    break 'chunks;
                }
            }
        }
        pos += at as u64;
    }
    scan.valid_len = pos;
    scan.invalid_bytes = len - pos;
    Ok(scan)
}

/// Reads exactly `n` bytes at `offset` into `buf` (replacing its contents).
pub fn read_at(file: &File, offset: u64, n: usize, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.resize(n, 0);
    file.read_exact_at(buf, offset)
}

/// Where delivery resumes: the ack file, or the start of the oldest segment when it is
/// missing or damaged (replaying too much is allowed, losing is not).
pub fn read_ack(dir: &Path) -> Option<Cursor> {
    let bytes = std::fs::read(dir.join(ACK_FILE)).ok()?;
    if bytes.len() != 20 {
        return None;
    }
    let crc = u32::from_le_bytes(bytes[16..20].try_into().unwrap());
    if crc32fast::hash(&bytes[..16]) != crc {
        return None;
    }
    Some(Cursor {
        segment: u64::from_le_bytes(bytes[0..8].try_into().unwrap()),
        offset: u64::from_le_bytes(bytes[8..16].try_into().unwrap()),
    })
}

/// Records the first unacknowledged position; replaces the ack file atomically (rename), so a
/// crash leaves the old or the new position, never a mix.
pub fn write_ack(dir: &Path, at: Cursor) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(20);
    bytes.extend_from_slice(&at.segment.to_le_bytes());
    bytes.extend_from_slice(&at.offset.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
    let tmp = dir.join(ACK_TMP);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&bytes)?;
    drop(f);
    std::fs::rename(tmp, dir.join(ACK_FILE))
}
