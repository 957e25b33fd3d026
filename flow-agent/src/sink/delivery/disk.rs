//! The disk buffer: a FIFO of records in segment files, with the position of the first
//! unacknowledged record in a small ack file, so that a new process (restart, reload, even
//! after SIGKILL) replays every record that was not acknowledged.
//!
//! Three positions: `acked` (everything before it was delivered or dropped; persisted),
//! `read` (everything before it was handed to the worker), and the end. Records between
//! `acked` and `read` are in flight; those after `read` are waiting.
use std::{
    collections::VecDeque,
    ffi::OsStr,
    fs::File,
    io::{self, Write},
    os::{fd::AsRawFd, unix::fs::DirBuilderExt},
    path::{Path, PathBuf},
};

use super::DropPolicy;
use crate::sink::safe_dir::{DirError, FileError, Refusal, SafeDir};

mod segment;

use segment::{Cursor, Damage, Format, Kind, Parsed, FIRST_ID, HEADER};

/// Suffix of a segment that failed validation, moved aside and never replayed.
const CORRUPT_SUFFIX: &str = ".corrupt";
/// Suffix of a file refused under a segment's name (a link, not a regular file, another
/// user's), moved aside unread and unchanged.
const REFUSED_SUFFIX: &str = ".refused";

/// Largest segment file; smaller buffers use an eighth of their cap.
const MAX_SEGMENT: u64 = 8 << 20;
const MIN_SEGMENT: u64 = 4 << 10;
/// Bytes read at once when taking a batch.
const READ_CHUNK: u64 = 1 << 20;

struct Segment {
    id: u64,
    file: File,
    format: Format,
    /// Offset of the first record counted in `records` (the ack offset for the oldest segment
    /// at open, else the first record's).
    start: u64,
    len: u64,
    records: u64,
}

/// What happened to an appended record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Appended {
    /// Stored, after dropping this many of the oldest waiting records to make room.
    Stored { dropped_oldest: u64 },
    /// Not stored: the buffer is full (policy `newest`, or nothing left to drop), the
    /// record alone is larger than the cap, or it is empty or all zeros (never a record).
    Refused,
}

/// What [`DiskBuffer::open`] found from an earlier run.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// Unacknowledged records, delivered first.
    pub(crate) records: u64,
    /// Records cut short by a crash (or damaged), removed.
    pub(crate) torn: u64,
    pub(crate) torn_bytes: u64,
    /// Segments that failed validation (a damaged record with more after it, an unknown
    /// format version): moved aside as `NAME.corrupt`, not replayed.
    pub(crate) corrupt: u64,
    /// Records of those segments that were readable before the damage: not replayed.
    pub(crate) corrupt_records: u64,
    /// Files under a segment's name that are links, not regular files, or another user's:
    /// moved aside as `NAME.refused`, unread and unchanged.
    pub(crate) refused: u64,
}

pub(crate) struct DiskBuffer {
    /// Every file of the buffer is reached through this descriptor, never by path.
    dir: SafeDir,
    /// Held (flock) while open: one buffer directory, one writer.
    _lock: File,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    acked: Cursor,
    read: Cursor,
    /// Records of the read segment already taken (counted from its `start`).
    read_taken: u64,
    inflight: (u64, u64),
    waiting: (u64, u64),
    next_id: u64,
    scratch: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("disk buffer {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("disk buffer: {0}")]
    Dir(#[from] DirError),
    #[error("disk buffer: {path} {reason} (remove it)")]
    Refused { path: PathBuf, reason: Refusal },
    #[error("disk buffer {0} is in use by another output or flow-agent process")]
    Locked(PathBuf),
}

impl DiskBuffer {
    /// Opens (creating, mode 0700) the buffer in `dir` and recovers what an earlier run left.
    /// Refuses a directory that is a symbolic link, writable by group or others, or another
    /// user's ([`SafeDir`]).
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> Result<(Self, Recovered), OpenError> {
        let io_err = |source| OpenError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err)?;
        let safe = SafeDir::open(dir)?;
        let mode = safe.mode().map_err(io_err)?;
        if mode & 0o077 != 0 {
            log::warn!(
                "disk buffer {}: directory mode is {:o}; other users can read buffered events (chmod 700 it)",
                dir.display(),
                mode & 0o777
            );
        }
        let lock = match safe.open_file(OsStr::new("lock"), libc::O_RDWR | libc::O_CREAT, 0o600) {
            Ok(f) => f,
            Err(FileError::Refused(reason)) => {
                return Err(OpenError::Refused {
                    path: dir.join("lock"),
                    reason,
                })
            }
            Err(FileError::Io(e)) => return Err(io_err(e)),
        };
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            return Err(if e.kind() == io::ErrorKind::WouldBlock {
                OpenError::Locked(dir.to_path_buf())
            } else {
                io_err(e)
            });
        }
        let mut buf = Self {
            dir: safe,
            _lock: lock,
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(MIN_SEGMENT, MAX_SEGMENT),
            segments: VecDeque::new(),
            acked: Cursor::default(),
            read: Cursor::default(),
            read_taken: 0,
            inflight: (0, 0),
            waiting: (0, 0),
            next_id: FIRST_ID,
            scratch: Vec::new(),
        };
        let recovered = buf.recover().map_err(io_err)?;
        Ok((buf, recovered))
    }

    fn recover(&mut self) -> io::Result<Recovered> {
        let ack = segment::read_ack(&self.dir);
        let mut recovered = Recovered::default();
        for id in segment::list_segments(&self.dir)? {
            if ack.is_some_and(|a| id < a.segment) {
                // Removing a name never changes what a link points at.
                self.dir.remove(&segment::segment_name(id))?;
                continue;
            }
            let start = match ack {
                Some(a) if a.segment == id => a.offset,
                _ => 0,
            };
            match segment::open_segment(&self.dir, id) {
                Ok(file) => self.recover_segment(id, file, start, &mut recovered)?,
                Err(FileError::Refused(why)) => {
                    self.set_aside(id, REFUSED_SUFFIX, &format!("{why}; not read"))?;
                    recovered.refused += 1;
                }
                Err(FileError::Io(e)) => return Err(e),
            }
        }
        self.next_id = self.next_id.max(ack.map_or(0, |a| a.segment + 1));
        if let Some(last) = self.segments.back() {
            self.next_id = self.next_id.max(last.id + 1);
        }
        if let Some(first) = self.segments.front() {
            self.read = Cursor {
                segment: first.id,
                offset: first.start,
            };
            self.acked = self.read;
        }
        Ok(recovered)
    }

    /// Checks one segment an earlier run left (from `start`, the ack offset in it) and keeps
    /// its valid records: a torn last record is cut off; a segment that fails validation
    /// otherwise is moved aside whole.
    fn recover_segment(
        &mut self,
        id: u64,
        file: File,
        start: u64,
        recovered: &mut Recovered,
    ) -> io::Result<()> {
        let format = match segment::read_kind(&file)? {
            Kind::Segment(f) => f,
            Kind::Empty => return self.dir.remove(&segment::segment_name(id)),
            Kind::UnknownVersion(v) => {
                recovered.corrupt += 1;
                let why = format!("segment format version {v} is unknown (a newer flow-agent's?)");
                return self.set_aside(id, CORRUPT_SUFFIX, &why);
            }
        };
        let start = start.max(format.first_record());
        let scan = segment::scan_segment(&file, start, format)?;
        match scan.damage {
            Some(Damage::Corrupt { offset }) => {
                recovered.corrupt += 1;
                recovered.corrupt_records += scan.records;
                let why = format!(
                    "damaged record at offset {offset} with {} bytes after it; {} records before it are not replayed either",
                    scan.invalid_bytes, scan.records
                );
                return self.set_aside(id, CORRUPT_SUFFIX, &why);
            }
            Some(Damage::Torn) => {
                log::warn!(
                    "disk buffer {}: removing {} bytes of a record cut short (crash during a write, or damage)",
                    self.dir.join(segment::segment_name(id)).display(),
                    scan.invalid_bytes
                );
                // Safe to cut: opened without following links, one link, ours (SafeDir).
                file.set_len(scan.valid_len)?;
                recovered.torn += 1;
                recovered.torn_bytes += scan.invalid_bytes;
            }
            None => {}
        }
        recovered.records += scan.records;
        self.waiting.0 += scan.records;
        self.waiting.1 += scan.bytes;
        self.segments.push_back(Segment {
            id,
            file,
            format,
            start: start.min(scan.valid_len),
            len: scan.valid_len,
            records: scan.records,
        });
        Ok(())
    }

    /// Renames segment `id` to its name plus `suffix`, in the same directory, and says why.
    fn set_aside(&self, id: u64, suffix: &str, why: &str) -> io::Result<()> {
        let name = segment::segment_name(id);
        let mut aside = name.clone();
        aside.push(suffix);
        self.dir.rename(&name, &aside)?;
        log::error!(
            "disk buffer {}: {why}; moved aside to {}",
            self.dir.join(&name).display(),
            self.dir.join(&aside).display()
        );
        Ok(())
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Records not yet acknowledged (in flight and waiting).
    pub(crate) fn unacked_records(&self) -> u64 {
        self.inflight.0 + self.waiting.0
    }

    pub(crate) fn unacked_bytes(&self) -> u64 {
        self.inflight.1 + self.waiting.1
    }

    /// Appends one record, applying the cap and the drop policy.
    pub(crate) fn append(&mut self, record: &[u8], policy: DropPolicy) -> io::Result<Appended> {
        let size = HEADER + record.len() as u64;
        // An empty or all-zero record would read back as damage.
        if size > self.max_bytes || size > segment::MAX_RECORD || !segment::acceptable(record) {
            return Ok(Appended::Refused);
        }
        let mut dropped_oldest = 0;
        while self.unacked_bytes() + size > self.max_bytes {
            if policy == DropPolicy::Newest || !self.skip_oldest()? {
                self.persist_ack_if_moved(dropped_oldest)?;
                return Ok(Appended::Refused);
            }
            dropped_oldest += 1;
        }
        self.persist_ack_if_moved(dropped_oldest)?;
        let mut bytes = std::mem::take(&mut self.scratch);
        bytes.clear();
        segment::encode_record(record, &mut bytes);
        let seg = self.writable_segment()?;
        let before = seg.len;
        let written = seg.file.write_all(&bytes);
        self.scratch = bytes;
        let seg = self
            .segments
            .back_mut()
            .expect("written to the last segment");
        if let Err(e) = written {
            // Leave no partial record behind; a failed truncate is found as torn on reopen.
            let _ = seg.file.set_len(before);
            return Err(e);
        }
        seg.len += size;
        seg.records += 1;
        self.waiting.0 += 1;
        self.waiting.1 += size;
        Ok(Appended::Stored { dropped_oldest })
    }

    fn persist_ack_if_moved(&mut self, dropped: u64) -> io::Result<()> {
        if dropped > 0 && self.inflight.0 == 0 {
            self.ack()?;
        }
        Ok(())
    }

    /// The last segment if it has room (and is of the format written), else a new one.
    fn writable_segment(&mut self) -> io::Result<&mut Segment> {
        let full = self
            .segments
            .back()
            .is_none_or(|s| s.len >= self.segment_bytes || s.format != Format::V2);
        if full {
            let id = self.next_id;
            self.next_id += 1;
            let file = segment::create_segment(&self.dir, id)?;
            let start = Format::V2.first_record();
            if self.segments.is_empty() {
                self.read = Cursor {
                    segment: id,
                    offset: start,
                };
                self.read_taken = 0;
                self.acked = self.read;
            }
            self.segments.push_back(Segment {
                id,
                file,
                format: Format::V2,
                start,
                len: start,
                records: 0,
            });
        }
        Ok(self
            .segments
            .back_mut()
            .expect("a segment was just ensured"))
    }

    /// Index in `segments` of the segment holding the next waiting record, moving `read` past
    /// the ends of segments; None when nothing is waiting.
    fn read_segment(&mut self) -> Option<usize> {
        if self.waiting.0 == 0 {
            return None;
        }
        let mut i = self
            .segments
            .iter()
            .position(|s| s.id == self.read.segment)?;
        while self.read.offset >= self.segments[i].len {
            i += 1;
            let next = self.segments.get(i)?;
            self.read = Cursor {
                segment: next.id,
                offset: next.start,
            };
            self.read_taken = 0;
        }
        Some(i)
    }

    /// Drops the oldest waiting record (policy `oldest`); false when none is waiting.
    fn skip_oldest(&mut self) -> io::Result<bool> {
        let Some(i) = self.read_segment() else {
            return Ok(false);
        };
        let mut header = Vec::new();
        segment::read_at(
            &self.segments[i].file,
            self.read.offset,
            HEADER as usize,
            &mut header,
        )?;
        let len = u64::from(u32::from_le_bytes(header[0..4].try_into().unwrap()));
        self.take(HEADER + len);
        if self.inflight.0 == 0 {
            self.acked = self.read;
        }
        Ok(true)
    }

    /// Moves `read` past one record of `size` bytes.
    fn take(&mut self, size: u64) {
        self.read.offset += size;
        self.read_taken += 1;
        self.waiting.0 -= 1;
        self.waiting.1 -= size;
    }

    /// Hands up to `max` waiting records to the worker (in flight until [`Self::ack`]).
    /// Returns the records and how many were lost to damage found while reading.
    pub(crate) fn read_batch(&mut self, max: usize) -> io::Result<(Vec<Vec<u8>>, u64)> {
        let mut out = Vec::new();
        let mut lost = 0;
        let mut buf = Vec::new();
        while out.len() < max {
            let Some(i) = self.read_segment() else { break };
            let available = self.segments[i].len - self.read.offset;
            if available == 0 {
                break;
            }
            let want = available.min(READ_CHUNK) as usize;
            let format = self.segments[i].format;
            segment::read_at(&self.segments[i].file, self.read.offset, want, &mut buf)?;
            let mut at = 0usize;
            while out.len() < max && (at as u64) < available {
                match segment::parse_record(&buf[at..], available - at as u64, format) {
                    Parsed::Record(payload, total) => {
                        out.push(payload.to_vec());
                        self.inflight.0 += 1;
                        self.inflight.1 += total;
                        self.take(total);
                        at += total as usize;
                    }
                    Parsed::Short { need } if at == 0 => {
                        let file = &self.segments[i].file;
                        segment::read_at(file, self.read.offset, need as usize, &mut buf)?;
                    }
                    Parsed::Short { .. } => break,
                    Parsed::Invalid => {
                        lost += self.discard_rest_of_read_segment(i);
                        break;
                    }
                }
            }
        }
        Ok((out, lost))
    }

    /// Damage found after open (the file was changed under us): the rest of that segment is
    /// given up and its records counted as lost.
    fn discard_rest_of_read_segment(&mut self, i: usize) -> u64 {
        let seg = &self.segments[i];
        let lost = seg.records.saturating_sub(self.read_taken);
        let bytes = seg.len - self.read.offset;
        log::error!(
            "disk buffer {}: damaged record at offset {}; {lost} records ({bytes} bytes) after it are lost",
            self.dir.join(segment::segment_name(seg.id)).display(),
            self.read.offset
        );
        self.read.offset = seg.len;
        self.read_taken = seg.records;
        self.waiting.0 = self.waiting.0.saturating_sub(lost);
        self.waiting.1 = self.waiting.1.saturating_sub(bytes);
        lost
    }

    /// The records in flight were delivered (or given up): persists the new position and
    /// deletes the segments behind it.
    pub(crate) fn ack(&mut self) -> io::Result<()> {
        self.inflight = (0, 0);
        let _ = self.read_segment();
        self.acked = self.read;
        segment::write_ack(&self.dir, self.acked)?;
        while let Some(first) = self.segments.front() {
            let done = first.id < self.acked.segment
                || (first.id == self.acked.segment
                    && self.acked.offset >= first.len
                    && self.segments.len() == 1
                    && self.waiting.0 == 0);
            if !done {
                break;
            }
            self.dir.remove(&segment::segment_name(first.id))?;
            self.segments.pop_front();
        }
        Ok(())
    }

    /// Stops the buffer, first storing `older` (records held in memory, all older than the
    /// buffer's) in front of it, so a new instance delivers them first. Records in flight stay
    /// unacknowledged and are replayed. Returns how many of `older` did not fit under the cap.
    pub(crate) fn close_with(
        mut self,
        mut older: Vec<Vec<u8>>,
        policy: DropPolicy,
    ) -> io::Result<u64> {
        if older.is_empty() {
            return Ok(0);
        }
        let mut room = self.max_bytes.saturating_sub(self.unacked_bytes());
        let mut keep = Vec::with_capacity(older.len());
        let mut dropped = 0;
        if policy == DropPolicy::Oldest {
            older.reverse();
        }
        for r in older {
            let size = HEADER + r.len() as u64;
            if size <= room {
                room -= size;
                keep.push(r);
            } else {
                dropped += 1;
            }
        }
        if policy == DropPolicy::Oldest {
            keep.reverse();
        }
        self.scratch.clear();
        for r in &keep {
            segment::encode_record(r, &mut self.scratch);
        }
        let Some(head) = self.segments.front() else {
            // Empty buffer: the records form its only segment.
            return self.persist_front(self.next_id, None).map(|()| dropped);
        };
        // In front of the oldest segment, followed by its unacknowledged rest, so that the
        // ack position can be the start of the new segment.
        let mut rest = Vec::new();
        segment::read_at(
            &head.file,
            self.acked.offset,
            (head.len - self.acked.offset) as usize,
            &mut rest,
        )?;
        // The rest is written again in the current format (an earlier version's segment).
        let lost = segment::reencode(&rest, head.format, &mut self.scratch);
        if lost > 0 {
            log::error!(
                "disk buffer {}: {lost} bytes of the oldest segment changed since they were checked and are lost",
                self.dir.path().display()
            );
        }
        let head_id = head.id;
        self.persist_front(head_id - 1, Some(head_id))
            .map(|()| dropped)
    }

    /// Writes `scratch` as segment `id`, makes it the ack position, and removes `replaced`.
    fn persist_front(&self, id: u64, replaced: Option<u64>) -> io::Result<()> {
        segment::write_new_segment(&self.dir, id, &self.scratch)?;
        segment::write_ack(
            &self.dir,
            Cursor {
                segment: id,
                offset: Format::V2.first_record(),
            },
        )?;
        if let Some(old) = replaced {
            self.dir.remove(&segment::segment_name(old))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
