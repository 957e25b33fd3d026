//! The socket itself: created before the privilege drop (it may need root to make the
//! directory and give the socket its group), served by one accepting thread and one thread
//! per subscriber, which reads the request and then writes what its queue holds.
use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::{
        fs::{MetadataExt, PermissionsExt},
        io::AsRawFd,
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    sync::{atomic::Ordering::Relaxed, Arc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use super::{
    config::{group_id, LiveConfig},
    protocol::{Request, RuleError, DROPPED_PREFIX, ERROR_PREFIX, MAX_REQUEST, OK},
    queue::{End, Queue},
    Hub, Shared,
};
use crate::sink::{SinkError, SinkStats};

/// A client that says nothing for this long is disconnected.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A write that blocks this long ends the subscription (its client stopped reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The socket, bound and given its owner and mode, not served yet.
pub(crate) struct Bound {
    listener: UnixListener,
    path: PathBuf,
    inode: u64,
    config: LiveConfig,
}

impl Bound {
    /// Creates the socket (and its directory, mode 0750, when missing). `None` when `[live]`
    /// is off, or another running agent already serves this path (logged: this agent runs
    /// without a live view rather than take the socket away).
    pub(crate) fn bind(cfg: &LiveConfig) -> Result<Option<Bound>, SinkError> {
        if !cfg.enabled() {
            return Ok(None);
        }
        let path = cfg.socket.clone();
        let what = |w: &str| format!("live socket {}: {w}", path.display());
        let gid = match cfg.group.as_str() {
            "" => unsafe { libc::getegid() },
            name => group_id(name)
                .ok_or_else(|| SinkError::Config(what(&format!("no group named {name:?}"))))?,
        };
        if let Some(dir) = path.parent().filter(|d| !d.exists()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| SinkError::io(what("creating its directory"), e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))
                .and_then(|()| chown(dir, gid))
                .map_err(|e| SinkError::io(what("setting its directory's group"), e))?;
        }
        if path.exists() {
            if UnixStream::connect(&path).is_ok() {
                log::warn!(
                    "live socket {} is served by another running agent: this one runs without a live view",
                    path.display()
                );
                return Ok(None);
            }
            // A socket left by an agent that did not stop cleanly; anything else is an error.
            let meta = std::fs::symlink_metadata(&path)
                .map_err(|e| SinkError::io(what("inspecting it"), e))?;
            if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
                return Err(SinkError::Config(what("exists and is not a socket")));
            }
            std::fs::remove_file(&path)
                .map_err(|e| SinkError::io(what("removing a stale socket"), e))?;
        }
        let listener = UnixListener::bind(&path).map_err(|e| SinkError::io(what("binding"), e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))
            .and_then(|()| chown(&path, gid))
            .map_err(|e| SinkError::io(what("setting its mode and group"), e))?;
        let inode = std::fs::metadata(&path)
            .map_err(|e| SinkError::io(what("inspecting it"), e))?
            .ino();
        log::info!("live socket {} (mode 0660, group {gid})", path.display());
        Ok(Some(Bound {
            listener,
            path,
            inode,
            config: cfg.clone(),
        }))
    }

    /// Starts serving: call after the privilege drop, so that the new threads start with the
    /// dropped credentials.
    pub(crate) fn start(self) -> Result<Hub, SinkError> {
        let shared = Arc::new(Shared {
            subscribers: Mutex::default(),
            count: Default::default(),
            stats: Arc::new(SinkStats::new("live".into(), "subscribe", "any")),
            stopping: Default::default(),
            queue_bytes: self.config.queue_bytes as usize,
            max_subscribers: self.config.max_subscribers as usize,
        });
        let accepting = shared.clone();
        let listener = self.listener;
        let waker = listener
            .try_clone()
            .map_err(|e| SinkError::io("starting the live socket", e))?;
        let thread = std::thread::Builder::new()
            .name("live-accept".into())
            .spawn(move || accept(listener, accepting))
            .map_err(|e| SinkError::io("starting the live socket's thread", e))?;
        Ok(Hub {
            shared,
            server: Some(Server {
                waker,
                path: self.path,
                inode: self.inode,
                thread,
            }),
        })
    }
}

fn chown(path: &Path, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, None, Some(gid))
}

pub(super) struct Server {
    /// The listening socket again: shutting it down wakes the accepting thread.
    waker: UnixListener,
    path: PathBuf,
    inode: u64,
    thread: JoinHandle<()>,
}

impl Server {
    /// Wakes the accepting thread to end it, and removes the socket if it is still ours.
    pub(super) fn stop(self) {
        // SAFETY: shutdown(2) on a descriptor this struct owns; accept() then fails at once.
        unsafe { libc::shutdown(self.waker.as_raw_fd(), libc::SHUT_RDWR) };
        let _ = self.thread.join();
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn accept(listener: UnixListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Relaxed) {
            return;
        }
        let Ok(stream) = stream else {
            // Out of descriptors, say: try again soon rather than spin.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("live-subscriber".into())
            .spawn(move || serve(stream, &shared));
        if let Err(e) = spawned {
            log::warn!("live socket: a subscriber's thread did not start: {e}");
        }
    }
}

/// Reads the request, answers, then writes the subscriber's queue until it ends.
fn serve(stream: UnixStream, shared: &Shared) {
    let queue = match subscribe(&stream, shared) {
        Ok(queue) => queue,
        Err(why) => {
            let _ = (&stream).write_all(format!("{ERROR_PREFIX}{why}\n").as_bytes());
            return;
        }
    };
    let mut out = &stream;
    loop {
        match queue.pop() {
            Ok(chunk) => {
                let records = chunk.records;
                shared.stats.queued.fetch_sub(records, Relaxed);
                if chunk.parts.iter().any(|p| out.write_all(p).is_err()) {
                    let lost = queue.end(End::Gone);
                    shared.stats.queued.fetch_sub(lost, Relaxed);
                    return;
                }
                shared.stats.sent.fetch_add(records, Relaxed);
            }
            Err(End::Dropped(why)) => {
                let _ = out.write_all(format!("{DROPPED_PREFIX}{why}\n").as_bytes());
                return;
            }
            Err(End::Gone | End::AgentStopped) => return,
        }
    }
}

/// The subscriber's request, checked and registered; `ok` sent.
fn subscribe(stream: &UnixStream, shared: &Shared) -> Result<Arc<Queue>, RequestError> {
    let io = RequestError::Read;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT)).map_err(io)?;
    let mut line = String::new();
    BufReader::new(stream.take(MAX_REQUEST))
        .read_line(&mut line)
        .map_err(io)?;
    let request: Request = serde_json::from_str(&line).map_err(RequestError::NotJson)?;
    let filter = request.filter()?;
    let encoding = request.encoding()?;
    let queue = shared.add(filter, encoding, request.include.is_empty())?;
    log::info!(
        "live subscriber connected: {} records, {} include and {} exclude rules",
        encoding.name(),
        request.include.len(),
        request.exclude.len()
    );
    if (&*stream).write_all(format!("{OK}\n").as_bytes()).is_err() {
        queue.end(End::Gone);
    }
    Ok(queue)
}

/// Why a subscriber's request is refused (sent back as `error: WHY`).
#[derive(Debug, thiserror::Error)]
pub(super) enum RequestError {
    #[error("reading the request: {0}")]
    Read(#[source] std::io::Error),
    #[error("bad request: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("{0} subscribers already ([live] max_subscribers)")]
    TooMany(usize),
}
