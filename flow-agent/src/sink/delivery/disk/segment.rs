//! On-disk format of the buffer: segment files of length-prefixed records, and the ack file
//! that says where the first unacknowledged record is.
//!
//! Format 2, the one written: a segment starts with [`MAGIC`] and the version (u16 LE); each
//! record is `len: u32 LE | crc32(len LE, payload): u32 LE | payload` with `len` ≥ 1. The
//! checksum covers the length, so zeros (what a crash or a power loss can leave at the end of
//! a file) are never a record. Format 1, written by earlier versions, has no file header and
//! a checksum of the payload only: such segments are still read (their records replayed)
//! and never appended to.
//!
//! Everything goes through the buffer's [`SafeDir`]: no name in the directory is followed if
//! it is a link, and only regular files with one link are opened.
use std::{ffi::OsString, fs::File, io, io::Write, os::unix::fs::FileExt};

use crate::sink::safe_dir::{FileError, SafeDir};

/// Bytes before each record's payload.
pub(crate) const HEADER: u64 = 8;
/// Bytes before the first record of a format 2 segment.
pub(crate) const FILE_HEADER: u64 = 8;
/// Start of a format 2 segment. Read as a format 1 record length (u32 LE) it is above
/// [`MAX_RECORD`], so no format 1 segment starts with it.
const MAGIC: &[u8; 6] = b"FLOWSG";
/// The segment format written.
pub(crate) const VERSION: u16 = 2;
/// Longest record the buffer accepts; a longer length in a header can only be damage.
pub(crate) const MAX_RECORD: u64 = 64 << 20;
/// Where the numbering of segments starts: records persisted at close go in front of the
/// oldest segment, with a smaller number.
pub(crate) const FIRST_ID: u64 = 1 << 62;
const ACK_FILE: &str = "ack";
const ACK_TMP: &str = "ack.tmp";
const SEGMENT_EXT: &str = "seg";
/// Buffer files are the agent's alone.
const PRIVATE: u32 = 0o600;

/// A position in the buffer: segment number and byte offset in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Cursor {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
}

/// Layout of one segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// Earlier versions: no file header, checksum of the payload only.
    V1,
    V2,
}

impl Format {
    /// Offset of the first record.
    pub(crate) fn first_record(self) -> u64 {
        match self {
            Format::V1 => 0,
            Format::V2 => FILE_HEADER,
        }
    }

    fn checksum(self, len: &[u8], payload: &[u8]) -> u32 {
        match self {
            Format::V1 => crc32fast::hash(payload),
            Format::V2 => {
                let mut h = crc32fast::Hasher::new();
                h.update(len);
                h.update(payload);
                h.finalize()
            }
        }
    }
}

/// What the start of a segment file says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Segment(Format),
    /// No record can be in it: empty, or a crash while its file header was written.
    Empty,
    /// A format 2 header with another version (a newer agent's segment).
    UnknownVersion(u16),
}

fn file_header() -> [u8; FILE_HEADER as usize] {
    let mut h = [0u8; FILE_HEADER as usize];
    h[..6].copy_from_slice(MAGIC);
    h[6..].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// The file name of segment `id`.
pub(crate) fn segment_name(id: u64) -> OsString {
    format!("{id:016x}.{SEGMENT_EXT}").into()
}

/// The path of segment `id` in `dir`, for tests.
#[cfg(test)]
pub(crate) fn segment_path(dir: &std::path::Path, id: u64) -> std::path::PathBuf {
    dir.join(segment_name(id))
}

/// Numbers of the segment files in `dir`, sorted. Only names exactly as [`segment_name`]
/// writes them count, so that the file listed is the file opened.
pub(crate) fn list_segments(dir: &SafeDir) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for name in dir.names()? {
        let Some(hex) = name
            .to_str()
            .and_then(|n| n.strip_suffix(&format!(".{SEGMENT_EXT}")))
        else {
            continue;
        };
        if let Ok(id) = u64::from_str_radix(hex, 16) {
            if segment_name(id) == name {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Opens an existing segment for reading and appending (refused if it is a link, not a
/// regular file or another user's).
pub(crate) fn open_segment(dir: &SafeDir, id: u64) -> Result<File, FileError> {
    dir.open_file(&segment_name(id), libc::O_RDWR | libc::O_APPEND, PRIVATE)
}

/// Creates segment `id` (it must not exist) with its file header.
pub(crate) fn create_segment(dir: &SafeDir, id: u64) -> io::Result<File> {
    let name = segment_name(id);
    let flags = libc::O_RDWR | libc::O_APPEND | libc::O_CREAT | libc::O_EXCL;
    let mut file = dir.open_file(&name, flags, PRIVATE)?;
    if let Err(e) = file.write_all(&file_header()) {
        let _ = dir.remove(&name);
        return Err(e);
    }
    Ok(file)
}

/// Writes a whole segment under a temporary name and renames it into place. The temporary
/// name is created anew (`O_EXCL`), whatever was there before.
pub(crate) fn write_new_segment(dir: &SafeDir, id: u64, records: &[u8]) -> io::Result<()> {
    let tmp = OsString::from("segment.tmp");
    dir.remove_if_present(&tmp)?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
    let mut f = dir.open_file(&tmp, flags, PRIVATE)?;
    f.write_all(&file_header())?;
    f.write_all(records)?;
    drop(f);
    dir.rename(&tmp, &segment_name(id))
}

/// Reads the start of a segment.
pub(crate) fn read_kind(file: &File) -> io::Result<Kind> {
    let len = file.metadata()?.len();
    let mut start = Vec::new();
    read_at(file, 0, len.min(FILE_HEADER) as usize, &mut start)?;
    let header = file_header();
    if len < FILE_HEADER && header.starts_with(&start) {
        return Ok(Kind::Empty);
    }
    if start.starts_with(MAGIC) && start.len() == FILE_HEADER as usize {
        let version = u16::from_le_bytes([start[6], start[7]]);
        return Ok(match version {
            VERSION if len == FILE_HEADER => Kind::Empty,
            VERSION => Kind::Segment(Format::V2),
            other => Kind::UnknownVersion(other),
        });
    }
    Ok(Kind::Segment(Format::V1))
}

/// Appends one format 2 record. The caller never passes an empty or all-zero payload
/// ([`acceptable`]).
pub(crate) fn encode_record(payload: &[u8], out: &mut Vec<u8>) {
    let len = (payload.len() as u32).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&Format::V2.checksum(&len, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Whether a payload can be stored: an empty or all-zero one would read back as damage.
pub(crate) fn acceptable(payload: &[u8]) -> bool {
    payload.iter().any(|b| *b != 0)
}

/// Re-encodes the records of `bytes` (whole records of `format`) as format 2 into `out`;
/// returns the bytes at the end that were not records.
pub(crate) fn reencode(bytes: &[u8], format: Format, out: &mut Vec<u8>) -> u64 {
    let mut at = 0usize;
    while at < bytes.len() {
        match parse_record(&bytes[at..], (bytes.len() - at) as u64, format) {
            Parsed::Record(payload, total) => {
                encode_record(payload, out);
                at += total as usize;
            }
            Parsed::Short { .. } | Parsed::Invalid => break,
        }
    }
    (bytes.len() - at) as u64
}

/// What a header promises, checked against what the file holds.
pub(crate) enum Parsed<'a> {
    /// A whole record with a valid checksum and its total size on disk.
    Record(&'a [u8], u64),
    /// More bytes are needed than `buf` holds: read `need` bytes from the record's start.
    Short { need: u64 },
    /// Not a record: a torn write or damage.
    Invalid,
}

/// Parses the record at the start of `buf`; `available` is how many bytes the segment has
/// from there on (so that a short `buf` is told apart from a short file).
pub(crate) fn parse_record(buf: &[u8], available: u64, format: Format) -> Parsed<'_> {
    if available < HEADER {
        return Parsed::Invalid;
    }
    if (buf.len() as u64) < HEADER {
        return Parsed::Short { need: HEADER };
    }
    let len = u64::from(u32::from_le_bytes(buf[0..4].try_into().unwrap()));
    let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap());
    let total = HEADER + len;
    if len == 0 || len > MAX_RECORD || total > available {
        return Parsed::Invalid;
    }
    if (buf.len() as u64) < total {
        return Parsed::Short { need: total };
    }
    let payload = &buf[HEADER as usize..total as usize];
    if format.checksum(&buf[0..4], payload) != crc || !acceptable(payload) {
        return Parsed::Invalid;
    }
    Parsed::Record(payload, total)
}

/// What follows the valid records of a segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Damage {
    /// The last record, cut short or not all written (a crash, a power loss): the records
    /// before it are good and the file is cut after them.
    Torn,
    /// A bad record with more after it, at this offset: the segment cannot be trusted.
    Corrupt { offset: u64 },
}

/// Result of checking one segment from an offset to its end.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Scan {
    pub(crate) records: u64,
    /// Bytes of valid records (headers included).
    pub(crate) bytes: u64,
    /// Length of the valid part.
    pub(crate) valid_len: u64,
    /// Bytes after the valid part.
    pub(crate) invalid_bytes: u64,
    pub(crate) damage: Option<Damage>,
}

const SCAN_CHUNK: usize = 1 << 20;

/// Counts the valid records of a segment from `offset` on, and says what follows them.
pub(crate) fn scan_segment(file: &File, offset: u64, format: Format) -> io::Result<Scan> {
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
            match parse_record(&buf[at..], len - pos - at as u64, format) {
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
                    scan.damage = Some(classify(file, pos, len)?);
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

/// Whether the bad bytes from `pos` to the end `len` are a torn last record: fewer bytes than
/// a header, only zeros, or a plausible header whose record reaches the end of the file.
fn classify(file: &File, pos: u64, len: u64) -> io::Result<Damage> {
    let rest = len - pos;
    if rest < HEADER || all_zero(file, pos, len)? {
        return Ok(Damage::Torn);
    }
    let mut header = Vec::new();
    read_at(file, pos, HEADER as usize, &mut header)?;
    let claimed = u64::from(u32::from_le_bytes(header[0..4].try_into().unwrap()));
    if claimed != 0 && claimed <= MAX_RECORD && HEADER + claimed >= rest {
        return Ok(Damage::Torn);
    }
    Ok(Damage::Corrupt { offset: pos })
}

fn all_zero(file: &File, from: u64, to: u64) -> io::Result<bool> {
    let mut buf = Vec::new();
    let mut pos = from;
    while pos < to {
        let n = (to - pos).min(SCAN_CHUNK as u64) as usize;
        read_at(file, pos, n, &mut buf)?;
        if buf.iter().any(|b| *b != 0) {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

/// Reads exactly `n` bytes at `offset` into `buf` (replacing its contents).
pub(crate) fn read_at(file: &File, offset: u64, n: usize, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.resize(n, 0);
    file.read_exact_at(buf, offset)
}

/// Where delivery resumes: the ack file, or the start of the oldest segment when it is
/// missing, damaged or refused (replaying too much is allowed, losing is not).
pub(crate) fn read_ack(dir: &SafeDir) -> Option<Cursor> {
    let name = OsString::from(ACK_FILE);
    let file = match dir.open_file(&name, libc::O_RDONLY, 0) {
        Ok(f) => f,
        Err(FileError::Io(e)) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            log::warn!(
                "disk buffer {}: {e}; replaying from the oldest segment",
                dir.join(ACK_FILE).display()
            );
            return None;
        }
    };
    let mut bytes = Vec::new();
    read_at(&file, 0, 20, &mut bytes).ok()?;
    if file.metadata().ok()?.len() != 20 {
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
pub(crate) fn write_ack(dir: &SafeDir, at: Cursor) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(20);
    bytes.extend_from_slice(&at.segment.to_le_bytes());
    bytes.extend_from_slice(&at.offset.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
    let tmp = OsString::from(ACK_TMP);
    // Created anew: a link left under this name is removed, never written through.
    dir.remove_if_present(&tmp)?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
    let mut f = dir.open_file(&tmp, flags, PRIVATE)?;
    f.write_all(&bytes)?;
    drop(f);
    dir.rename(&tmp, &OsString::from(ACK_FILE))
}
