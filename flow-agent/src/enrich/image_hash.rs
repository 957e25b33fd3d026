//! SHA-256 of executables, off the hot path: the pipeline opens `/proc/PID/exe` (the file as
//! exec'd, also when deleted or a memfd) and hands the descriptor to one worker thread through
//! a bounded queue; a full queue drops the request (tried again at the process's next
//! identity), so hashing never blocks the pipeline. The worker caches digests by (device,
//! inode, size, mtime, ctime), skips files above a configured size, gives up on a file after
//! [`MAX_HASH_TIME`], and writes the result into the image's [`HashSlot`], where the next
//! identity built from that image finds it.
use std::{
    collections::HashMap,
    fs::File,
    io::Read,
    os::unix::fs::MetadataExt,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{sync_channel, Receiver, SyncSender, TrySendError},
        Arc, OnceLock,
    },
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256 as Hasher};

use crate::event::{HashSkip, Sha256};

/// Requests waiting for the worker at most (each holds an open descriptor).
const QUEUE_LEN: usize = 256;
/// Digests remembered at most (about 80 bytes each); beyond it the cache starts over.
const CACHE_LEN: usize = 16_384;
/// One file is read for at most this long (a slow or hung filesystem).
pub(crate) const MAX_HASH_TIME: Duration = Duration::from_secs(10);
/// Default of `enrich.hash_max_bytes`.
pub(crate) const DEFAULT_MAX_BYTES: u64 = 64 << 20;

/// What hashing an image gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ImageHash {
    Sha256(Sha256),
    Skipped(HashSkip),
}

/// An image's digest, filled in once by the worker; shared by the processes forked from it.
#[derive(Debug, Default)]
pub(crate) struct HashSlot {
    requested: AtomicBool,
    result: OnceLock<ImageHash>,
}

/// Two slots are equal when they hold the same result (a cache, not part of an image's
/// identity).
impl PartialEq for HashSlot {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for HashSlot {}

impl HashSlot {
    pub(crate) fn get(&self) -> Option<ImageHash> {
        self.result.get().copied()
    }
}

/// The file's identity: the same key is the same bytes (a rewrite changes mtime or ctime).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

struct Job {
    exe: File,
    slot: Arc<HashSlot>,
}

pub(crate) struct ImageHasher {
    /// None when hashing is off (`hash_max_bytes = 0`) or the worker could not start.
    jobs: Option<SyncSender<Job>>,
}

impl ImageHasher {
    /// A hasher whose worker skips files larger than `max_bytes` (0: no hashing at all).
    pub(crate) fn new(max_bytes: u64) -> Self {
        if max_bytes == 0 {
            return Self { jobs: None };
        }
        let (tx, rx) = sync_channel(QUEUE_LEN);
        let worker = std::thread::Builder::new()
            .name("image-hash".into())
            .spawn(move || work(&rx, max_bytes));
        if let Err(e) = &worker {
            log::warn!("executable hashing is off: no worker thread: {e}");
        }
        Self {
            jobs: worker.is_ok().then_some(tx),
        }
    }

    /// Asks for the digest of `pid`'s executable into `slot`, once per slot. Never waits: when
    /// the queue is full, or the process is gone, the slot may be asked for again later.
    pub(crate) fn request(&self, pid: u32, slot: &Arc<HashSlot>) {
        let Some(jobs) = &self.jobs else { return };
        if slot.result.get().is_some() || slot.requested.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(exe) = File::open(format!("/proc/{pid}/exe")) else {
            slot.requested.store(false, Ordering::Relaxed);
            return;
        };
        let job = Job {
            exe,
            slot: slot.clone(),
        };
        if let Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) = jobs.try_send(job) {
            job.slot.requested.store(false, Ordering::Relaxed);
        }
    }
}

fn work(jobs: &Receiver<Job>, max_bytes: u64) {
    let mut cache: HashMap<FileKey, ImageHash> = HashMap::new();
    while let Ok(job) = jobs.recv() {
        let result = match job.exe.metadata() {
            Ok(m) => {
                let key = FileKey {
                    dev: m.dev(),
                    ino: m.ino(),
                    size: m.size(),
                    mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                    ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
                };
                if let Some(known) = cache.get(&key) {
                    *known
                } else {
                    let result = hash_file(job.exe, key.size, max_bytes);
                    if cache.len() >= CACHE_LEN {
                        cache.clear();
                    }
                    cache.insert(key, result);
                    result
                }
            }
            Err(_) => ImageHash::Skipped(HashSkip::Unreadable),
        };
        let _ = job.slot.result.set(result);
    }
}

/// Reads the whole file through `exe`, within [`MAX_HASH_TIME`].
fn hash_file(mut exe: File, size: u64, max_bytes: u64) -> ImageHash {
    if size > max_bytes {
        return ImageHash::Skipped(HashSkip::TooLarge);
    }
    let started = Instant::now();
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        match exe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return ImageHash::Skipped(HashSkip::Unreadable),
        }
        // A file that grew past the limit after the stat, or a filesystem that crawls.
        if total > max_bytes {
            return ImageHash::Skipped(HashSkip::TooLarge);
        }
        if started.elapsed() > MAX_HASH_TIME {
            return ImageHash::Skipped(HashSkip::Unreadable);
        }
    }
    ImageHash::Sha256(Sha256(hasher.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(slot: &HashSlot) -> ImageHash {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Some(r) = slot.get() {
                return r;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("no hash within 30 s");
    }

    fn sha256_of(path: &str) -> Sha256 {
        Sha256(Hasher::digest(std::fs::read(path).unwrap()).into())
    }

    #[test]
    fn a_running_process_is_hashed_once_per_slot() {
        let hasher = ImageHasher::new(DEFAULT_MAX_BYTES);
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).unwrap();
        let want = sha256_of(exe.to_str().unwrap());
        let slot = Arc::new(HashSlot::default());
        hasher.request(child.id(), &slot);
        hasher.request(child.id(), &slot);
        let got = wait(&slot);
        // A second image of the same file comes from the cache, with the same digest.
        let again = Arc::new(HashSlot::default());
        hasher.request(child.id(), &again);
        let cached = wait(&again);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(got, ImageHash::Sha256(want));
        assert_eq!(cached, ImageHash::Sha256(want));
    }

    #[test]
    fn files_above_the_limit_are_skipped_as_too_large() {
        let hasher = ImageHasher::new(1024);
        let slot = Arc::new(HashSlot::default());
        hasher.request(std::process::id(), &slot);
        assert_eq!(wait(&slot), ImageHash::Skipped(HashSkip::TooLarge));
    }

    #[test]
    fn no_worker_and_no_result_when_off() {
        let hasher = ImageHasher::new(0);
        let slot = Arc::new(HashSlot::default());
        hasher.request(std::process::id(), &slot);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(slot.get(), None);
    }

    #[test]
    fn a_gone_process_leaves_the_slot_to_ask_again() {
        let hasher = ImageHasher::new(DEFAULT_MAX_BYTES);
        let slot = Arc::new(HashSlot::default());
        // Beyond pid_max: no such process.
        hasher.request(u32::MAX - 1, &slot);
        assert!(!slot.requested.load(Ordering::Relaxed));
        assert_eq!(slot.get(), None);
    }
}
