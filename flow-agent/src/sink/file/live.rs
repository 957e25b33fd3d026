//! The live file: opened for appending with the configured mode and group, checked against
//! the path (an administrator may remove or move it), written a whole batch of lines at a time.
use std::{
    ffi::OsStr,
    fs::File,
    io::{self, Write},
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::Path,
    time::SystemTime,
};

use crate::sink::safe_dir::{FileError, Refusal, SafeDir};

/// Why the live file could not be opened and set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LiveError {
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A link, not a regular file, another user's: left untouched.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// fchown without CAP_CHOWN works only for a group the agent is a member of.
    #[error("cannot give it group {gid}: {source}; the agent is not a member of that group and has no CAP_CHOWN once started (it joins the groups of the file outputs at start-up: restart it after naming a new group, add its user to the group, or make the directory set-group-ID with that group)")]
    Group {
        gid: u32,
        #[source]
        source: io::Error,
    },
}

impl From<FileError> for LiveError {
    fn from(e: FileError) -> Self {
        match e {
            FileError::Refused(r) => LiveError::Refused(r),
            FileError::Io(e) => LiveError::Io(e),
        }
    }
}

/// What the path points at now, compared with the open file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PathState {
    /// The path is the open file.
    Same,
    /// Nothing at the path: removed, or moved away.
    Missing,
    /// Another file is at the path.
    Replaced,
}

pub(crate) struct LiveFile {
    file: File,
    dev: u64,
    ino: u64,
    /// Bytes in the file (we are its only writer).
    pub(crate) size: u64,
    /// Last-modified time at open, for time-based rotation of a file we did not start.
    pub(crate) modified: Option<SystemTime>,
    /// fallocate is not supported by this file system: plain writes only.
    no_reserve: bool,
}

impl LiveFile {
    /// Opens `name` in `dir` for appending, creating it with `mode`; sets `mode` and `gid` on
    /// it. Refuses a symbolic link, anything but a regular file, a file with another hard link
    /// and another user's file, before changing anything ([`SafeDir::open_file`]).
    pub(crate) fn open(
        dir: &SafeDir,
        name: &OsStr,
        mode: u32,
        gid: Option<u32>,
    ) -> Result<LiveFile, LiveError> {
        let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT;
        let file = dir.open_file(name, flags, mode)?;
        let meta = file.metadata()?;
        // The umask or an earlier configuration may have left other bits.
        if meta.mode() & 0o7777 != mode {
            // SAFETY: fchmod on an fd we own.
            if unsafe { libc::fchmod(file.as_raw_fd(), mode) } != 0 {
                return Err(io::Error::last_os_error().into());
            }
        }
        if let Some(gid) = gid.filter(|g| *g != meta.gid()) {
            // SAFETY: fchown on an fd we own; u32::MAX (-1) keeps the owner.
            if unsafe { libc::fchown(file.as_raw_fd(), u32::MAX, gid) } != 0 {
                let source = io::Error::last_os_error();
                return Err(match source.raw_os_error() {
                    Some(libc::EPERM) => LiveError::Group { gid, source },
                    _ => source.into(),
                });
            }
        }
        Ok(LiveFile {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            modified: (meta.len() > 0).then(|| meta.modified().ok()).flatten(),
            file,
            no_reserve: false,
        })
    }

    /// Whether `path` still names this file.
    pub(crate) fn path_state(&self, path: &Path) -> io::Result<PathState> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => Ok(PathState::Same),
            Ok(_) => Ok(PathState::Replaced),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(PathState::Missing),
            Err(e) => Err(e),
        }
    }

    /// Appends `data` (whole lines) entirely or not at all, so that a tailer never reads a
    /// partial line: the space is reserved first, and a short write (disk full on a file
    /// system without fallocate) is cut back off.
    pub(crate) fn append(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.reserve(data.len() as u64)?;
        let mut written = 0;
        while written < data.len() {
            match self.file.write(&data[written..]) {
                Ok(0) => {
                    return self.undo(written, io::Error::from(io::ErrorKind::WriteZero));
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.undo(written, e),
            }
        }
        self.size += data.len() as u64;
        Ok(())
    }

    /// Allocates the blocks for `len` more bytes without changing the file's size: with the
    /// disk full this fails before anything is written.
    fn reserve(&mut self, len: u64) -> io::Result<()> {
        if self.no_reserve {
            return Ok(());
        }
        // SAFETY: fallocate on an fd we own.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_KEEP_SIZE,
                self.size as libc::off_t,
                len as libc::off_t,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {
                self.no_reserve = true;
                Ok(())
            }
            _ => Err(e),
        }
    }

    /// Cuts a partly written batch back off, then reports `err`.
    fn undo(&mut self, written: usize, err: io::Error) -> io::Result<()> {
        if written > 0 {
            if let Err(e) = self.file.set_len(self.size) {
                log::error!(
                    "file sink: removing a partly written batch failed ({e}): the file has a partial line"
                );
                self.size += written as u64;
            }
        }
        Err(err)
    }

    /// Makes what was written durable (at close).
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_write_is_cut_back_to_the_last_whole_line() {
        let dir = crate::sink::delivery::tests::TestDir::new("live");
        std::fs::create_dir(dir.path()).unwrap();
        let path = dir.path().join("events.log");
        let safe = SafeDir::open(dir.path()).unwrap();
        let mut live = LiveFile::open(&safe, OsStr::new("events.log"), 0o640, None).unwrap();
        live.append(b"whole\n").unwrap();
        // A write that stopped half-way, as on a full disk without fallocate.
        live.file.write_all(b"par").unwrap();
        let err = live
            .undo(3, io::Error::from_raw_os_error(libc::ENOSPC))
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "whole\n");
        assert_eq!(live.size, 6);
        live.append(b"next\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "whole\nnext\n");
    }
}
