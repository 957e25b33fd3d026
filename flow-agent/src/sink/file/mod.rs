//! file: one record per line, with size- and time-based rotation by renaming and a cap on the
//! disk space, for a shipper that tails the file (docs/sink-file.md).
//!
//! Records are collected per batch and appended at `flush()` as whole lines, so a tailer
//! never sees a partial line. The sink writes on the capture loop's thread: appending to a
//! local file takes microseconds, and a full disk fails fast (the batch is dropped and
//! counted, the sink writes again once there is room).
use std::{
    ffi::OsString,
    io,
    path::Path,
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

mod config;
mod live;
mod rotate;
#[cfg(test)]
mod tests;

pub(crate) use config::FileConfig;
pub(crate) use rotate::rotated_name;

use live::{LiveError, LiveFile, PathState};

use super::{
    safe_dir::{DirError, Refusal, SafeDir},
    CloseFuture, OutputConfig, Sink, SinkError, SinkStats,
};

/// Size rotations are at least this far apart, so that a tailer following the path notices
/// each new file before it is renamed in turn; a burst may take the live file past
/// rotate_size meanwhile.
pub(crate) const MIN_ROTATION_GAP: Duration = Duration::from_secs(1);

/// Opens the file sink described by `config` (validated here); fails if the file cannot be
/// opened, naming the option and the reason.
pub(crate) fn open(config: &FileConfig, stats: Arc<SinkStats>) -> Result<Box<dyn Sink>, SinkError> {
    Ok(Box::new(FileSink::open(config, stats)?))
}

pub(crate) struct FileSink {
    config: FileConfig,
    /// The live file's name in its directory.
    name: OsString,
    /// The directory of the live file, opened with it; None while it could not be opened.
    dir: Option<SafeDir>,
    gid: Option<u32>,
    stats: Arc<SinkStats>,
    /// Whole lines not yet written, and how many records they are.
    batch: Vec<u8>,
    pending: u64,
    /// `None` after the file could not be (re)opened; retried at the next write.
    live: Option<LiveFile>,
    /// When the live file was opened: size rotations wait for `min_rotation_gap` after it.
    opened: Instant,
    min_rotation_gap: Duration,
    /// The rotation period (UTC seconds / rotate_interval) of the live file's first line.
    period: Option<u64>,
    /// In a write-failure episode: logged once at its start and once at its end.
    failing: Option<Failure>,
    /// Renaming failed at the last rotation (logged once).
    rotate_failing: bool,
    clock: fn() -> SystemTime,
}

struct Failure {
    dropped: u64,
}

impl FileSink {
    pub(crate) fn open(config: &FileConfig, stats: Arc<SinkStats>) -> Result<FileSink, SinkError> {
        Self::with_clock(config, stats, SystemTime::now)
    }

    /// `clock` tells the time for time-based rotation (tests move it by hand).
    fn with_clock(
        config: &FileConfig,
        stats: Arc<SinkStats>,
        clock: fn() -> SystemTime,
    ) -> Result<FileSink, SinkError> {
        config.validate()?;
        let gid = config.group.as_deref().map(resolve_group).transpose()?;
        let path = &config.path;
        let name = path.file_name().expect("validated: path names a file");
        let (dir, live) =
            open_live(path, name, config.mode.0, gid).map_err(|e| open_error(path, gid, e))?;
        let mut sink = FileSink {
            config: config.clone(),
            name: name.to_os_string(),
            dir: Some(dir),
            gid,
            stats,
            batch: Vec::with_capacity(1 << 16),
            pending: 0,
            period: None,
            live: None,
            opened: Instant::now(),
            min_rotation_gap: MIN_ROTATION_GAP,
            failing: None,
            rotate_failing: false,
            clock,
        };
        sink.adopt(live);
        sink.enforce_caps(0);
        if config.max_files == 0 && config.max_total_size.0 == 0 {
            log::warn!(
                "file sink {}: max_files = 0 and max_total_size = 0: rotated files are never deleted",
                path.display()
            );
        }
        Ok(sink)
    }

    fn path(&self) -> &Path {
        &self.config.path
    }

    /// Makes `live` the current file; its period is that of its last write if it has lines.
    fn adopt(&mut self, live: LiveFile) {
        self.period = live.modified.map(|t| self.period_of(t));
        self.live = Some(live);
        self.opened = Instant::now();
    }

    fn period_of(&self, t: SystemTime) -> u64 {
        let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        secs.checked_div(self.config.rotate_interval).unwrap_or(0)
    }

    fn live_size(&self) -> u64 {
        self.live.as_ref().map_or(0, |l| l.size)
    }

    /// Writes the collected lines to the live file, first reopening it if it was removed or
    /// replaced and rotating it if it is full or its period ended.
    fn write_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let result = self.ensure_live().and_then(|()| {
            self.rotate_if_due()?;
            match self.live.as_mut() {
                Some(live) => live.append(&self.batch),
                None => Err(io::Error::other("the file is not open")),
            }
        });
        match result {
            Ok(()) => {
                if self.period.is_none() {
                    self.period = Some(self.period_of((self.clock)()));
                }
                self.stats.sent.fetch_add(self.pending, Relaxed);
                if let Some(f) = self.failing.take() {
                    log::warn!(
                        "file sink: writing to {} works again; {} records were dropped meanwhile",
                        self.path().display(),
                        f.dropped
                    );
                }
            }
            Err(e) => self.fail(e),
        }
        self.batch.clear();
        self.pending = 0;
    }

    /// The batch could not be written: counted as dropped; logged at an episode's start.
    fn fail(&mut self, e: io::Error) {
        self.stats.errors.fetch_add(1, Relaxed);
        self.stats.dropped.fetch_add(self.pending, Relaxed);
        match self.failing.as_mut() {
            Some(f) => f.dropped += self.pending,
            None => {
                log::error!(
                    "file sink: writing to {} failed: {e}; events are dropped (and counted) until it works again",
                    self.path().display()
                );
                self.failing = Some(Failure {
                    dropped: self.pending,
                });
            }
        }
    }

    /// Opens the file if it is not open, or again when the path no longer names it (an
    /// administrator removed or moved it).
    fn ensure_live(&mut self) -> io::Result<()> {
        if let Some(live) = &self.live {
            match live.path_state(self.path()) {
                Ok(PathState::Same) => return Ok(()),
                Ok(state) => log::warn!(
                    "file sink: {} was {} while open; writing to a new file at that path",
                    self.path().display(),
                    if state == PathState::Missing {
                        "removed or moved away"
                    } else {
                        "replaced by another file"
                    }
                ),
                // Cannot tell (e.g. the directory is unreadable): keep writing where we were.
                Err(_) => return Ok(()),
            }
            self.live = None;
        }
        self.reopen()
    }

    /// Opens the directory again (it may have been replaced) and the live file in it.
    fn reopen(&mut self) -> io::Result<()> {
        self.dir = None;
        let (dir, live) = open_live(self.path(), &self.name, self.config.mode.0, self.gid)
            .map_err(io::Error::other)?;
        self.dir = Some(dir);
        self.adopt(live);
        Ok(())
    }

    /// Rotates when the batch would take the live file past rotate_size or the file's period
    /// ended (never an empty file). A size rotation within `min_rotation_gap` of the last is
    /// put off; the caps then make room for the bigger live file.
    fn rotate_if_due(&mut self) -> io::Result<()> {
        let size = self.live_size();
        if size == 0 {
            return Ok(());
        }
        let after = size + self.batch.len() as u64;
        let full = after > self.config.rotate_size.0;
        let now = self.period_of((self.clock)());
        let ended = self.config.rotate_interval > 0 && self.period.is_some_and(|p| p != now);
        if ended || (full && self.opened.elapsed() >= self.min_rotation_gap) {
            self.rotate()?;
        } else if full && self.config.max_total_size.0 != 0 {
            self.enforce_caps(after);
        }
        Ok(())
    }

    /// Renames the live file to `<path>.1` (shifting the older ones), opens a new one and
    /// deletes what the caps no longer allow. When renaming fails the current file stays in
    /// use; the error is logged once until a rotation succeeds.
    fn rotate(&mut self) -> io::Result<()> {
        let shifted = match &self.dir {
            Some(dir) => rotate::shift(dir, &self.name),
            None => Err(io::Error::other("the directory is not open")),
        };
        if let Err(e) = shifted {
            self.stats.errors.fetch_add(1, Relaxed);
            if !self.rotate_failing {
                log::error!(
                    "file sink: rotating {} failed: {e}; writing on to the current file",
                    self.path().display()
                );
                self.rotate_failing = true;
            }
            return Ok(());
        }
        if std::mem::take(&mut self.rotate_failing) {
            log::warn!("file sink: rotating {} works again", self.path().display());
        }
        log::info!(
            "file sink: rotated {} ({} bytes) to {}",
            self.path().display(),
            self.live_size(),
            rotated_name(self.path(), 1).display()
        );
        self.live = None;
        self.period = None;
        let reopened = self.reopen();
        self.enforce_caps(0);
        reopened
    }

    /// Deletes the oldest rotated files beyond max_files, and those that do not fit in
    /// max_total_size next to a live file of rotate_size (or of `live_bytes` if bigger).
    fn enforce_caps(&self, live_bytes: u64) {
        let max_total = self.config.max_total_size.0;
        let budget = (max_total != 0)
            .then(|| max_total.saturating_sub(live_bytes.max(self.config.rotate_size.0)));
        if let Some(dir) = &self.dir {
            rotate::enforce_caps(dir, &self.name, self.config.max_files, budget, max_total);
        }
    }
}

impl Sink for FileSink {
    fn submit(&mut self, record: &[u8]) {
        // A record that would take the live file past rotate_size starts the next file: the
        // lines before it go to the current one now.
        let line = record.len() as u64 + 1;
        let used = self.live_size() + self.batch.len() as u64;
        if used > 0 && used + line > self.config.rotate_size.0 && !self.batch.is_empty() {
            self.write_batch();
        }
        // One record, one line: a newline inside a record (never in JSON, whose strings
        // escape it) would split it for the tailer.
        let start = self.batch.len();
        self.batch.extend_from_slice(record);
        // The scan (memchr) is the common case; the byte loop only for the rare record.
        if record.contains(&b'\n') {
            for b in &mut self.batch[start..] {
                if *b == b'\n' {
                    *b = b' ';
                }
            }
        }
        self.batch.push(b'\n');
        self.pending += 1;
    }

    fn flush(&mut self) {
        self.write_batch();
    }

    fn close(mut self: Box<Self>) -> CloseFuture {
        self.write_batch();
        if let Some(Err(e)) = self.live.as_ref().map(LiveFile::sync) {
            log::error!("file sink: syncing {}: {e}", self.path().display());
        }
        Box::pin(async {})
    }
}

/// Why the live file could not be opened: its directory, or the file itself.
#[derive(Debug, thiserror::Error)]
enum OpenFailure {
    #[error(transparent)]
    Dir(#[from] DirError),
    #[error(transparent)]
    Live(#[from] LiveError),
}

/// Opens (checking it) the directory of `path`, then `name` in it.
fn open_live(
    path: &Path,
    name: &std::ffi::OsStr,
    mode: u32,
    gid: Option<u32>,
) -> Result<(SafeDir, LiveFile), OpenFailure> {
    let dir = SafeDir::open(path.parent().unwrap_or(Path::new("/")))?;
    let live = LiveFile::open(&dir, name, mode, gid)?;
    Ok((dir, live))
}

fn open_error(path: &Path, gid: Option<u32>, e: OpenFailure) -> SinkError {
    let why = match e {
        OpenFailure::Dir(DirError::Open { path: dir, source })
            if source.kind() == io::ErrorKind::NotFound =>
        {
            format!(
                "directory {} does not exist (create it with the owner and mode your shipper needs)",
                dir.display()
            )
        }
        OpenFailure::Live(LiveError::Refused(Refusal::Symlink)) => {
            "is a symbolic link; give the real path".into()
        }
        OpenFailure::Live(e @ LiveError::Group { .. }) => {
            return SinkError::Config(format!(
                "outputs.file.group {}: {}: {e}",
                gid.unwrap_or_default(),
                path.display()
            ))
        }
        other => other.to_string(),
    };
    SinkError::Config(format!(
        "outputs.file.path: cannot open {}: {why}",
        path.display()
    ))
}

/// The groups the file outputs of `outputs` name, as gids: the agent joins them at start-up,
/// while it still may, so that it can give new files these groups after dropping its
/// capabilities.
pub(crate) fn output_groups(outputs: &[OutputConfig]) -> Result<Vec<u32>, SinkError> {
    let mut gids = Vec::new();
    for group in outputs
        .iter()
        .filter_map(|o| o.file.as_ref()?.group.as_deref())
    {
        let gid = resolve_group(group)?;
        if !gids.contains(&gid) {
            gids.push(gid);
        }
    }
    Ok(gids)
}

/// A group name or numeric id → gid.
fn resolve_group(group: &str) -> Result<u32, SinkError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let name = std::ffi::CString::new(group)
        .map_err(|_| SinkError::Config(format!("outputs.file.group {group:?} is not a name")))?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: getgrnam_r writes into `grp` and `buf`, both live and sized as passed.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return Err(SinkError::Config(format!(
            "outputs.file.group: no group named {group:?}"
        )));
    }
    Ok(grp.gr_gid)
}
