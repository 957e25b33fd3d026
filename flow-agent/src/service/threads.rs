//! Dropping capabilities in EVERY thread of the agent. Linux keeps credentials per thread and
//! capset(2), PR_CAPBSET_DROP and PR_SET_NO_NEW_PRIVS act on the calling thread only; threads
//! that exist before the drop (a sink's worker, tokio's blocking pool) would keep everything.
//! So the drop runs in the calling thread, then in each other thread from a signal handler
//! (what libcap's libpsx does), and every thread's /proc status is checked afterwards. Threads
//! started later inherit the dropped sets from the thread that starts them.
use std::{
    fs,
    sync::{
        atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst},
        Mutex,
    },
    time::{Duration, Instant},
};

use super::caps::{self, CapSet, ThreadCaps};

/// Real-time signal that carries the request to the other threads. Its handler stays
/// installed: a late delivery only repeats a drop that is already done.
pub(crate) fn signal() -> libc::c_int {
    libc::SIGRTMAX() - 3
}

/// How long the other threads get to run the handler, per round.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// Rounds of signalling: threads started during a round by a not-yet-dropped thread are
/// caught in the next.
const ROUNDS: usize = 4;

static KEEP: AtomicU64 = AtomicU64::new(0);
static LAST_CAP: AtomicU32 = AtomicU32::new(40);
static ACKS: AtomicUsize = AtomicUsize::new(0);
static CAPSET_ERRNO: AtomicI32 = AtomicI32::new(0);
static BOUNDING_ERRNO: AtomicI32 = AtomicI32::new(0);
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[derive(Debug, thiserror::Error)]
pub(crate) enum ThreadsError {
    #[error("installing the handler of signal {signal}: {source}")]
    Handler {
        signal: libc::c_int,
        source: std::io::Error,
    },
    #[error("lowering the capability sets failed: {0}")]
    Capset(std::io::Error),
    #[error("setting no_new_privs failed: {0}")]
    NoNewPrivs(std::io::Error),
    #[error("thread {tid} still holds {extra} after the drop")]
    Kept { tid: u32, extra: CapSet },
}

/// What the drop achieved beyond effective and permitted (which always drop).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DropResult {
    /// Why the bounding set could not be reduced (EPERM without CAP_SETPCAP); None if it was.
    pub(crate) bounding_errno: Option<i32>,
}

/// One thread: bounding set, ambient set, effective/permitted/inheritable, no_new_privs.
/// Only raw syscalls and atomics: it runs in a signal handler.
fn drop_this_thread(keep: CapSet, last: u32) {
    for c in 0..=last.min(63) {
        if !keep.contains(c) && caps::in_bounding_set(c) == Some(true) {
            if let Err(e) = caps::drop_bounding(c) {
                let _ = BOUNDING_ERRNO.compare_exchange(0, e, SeqCst, SeqCst);
            }
        }
    }
    let lowered = caps::clear_ambient()
        .and_then(|_| caps::get())
        .and_then(|now| {
            caps::set(ThreadCaps {
                effective: now.effective.intersect(keep),
                permitted: now.permitted.intersect(keep),
                inheritable: CapSet::EMPTY,
            })
        });
    let result = lowered.and_then(|_| caps::set_no_new_privs().map_err(|e| -e));
    if let Err(e) = result {
        let _ = CAPSET_ERRNO.compare_exchange(0, e, SeqCst, SeqCst);
    }
}

extern "C" fn on_signal(_: libc::c_int) {
    let saved = caps::errno();
    drop_this_thread(CapSet(KEEP.load(SeqCst)), LAST_CAP.load(SeqCst));
    ACKS.fetch_add(1, SeqCst);
    // SAFETY: restoring the interrupted code's errno, a thread-local.
    unsafe { *libc::__errno_location() = saved };
}

fn install_handler() -> Result<(), ThreadsError> {
    // SAFETY: a zeroed sigaction is valid; the handler only makes raw syscalls and touches
    // atomics, which is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigfillset(&mut action.sa_mask);
        if libc::sigaction(signal(), &action, std::ptr::null_mut()) != 0 {
            return Err(ThreadsError::Handler {
                signal: signal(),
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

/// The thread ids of this process.
fn thread_ids() -> Vec<u32> {
    fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn gettid() -> u32 {
    // SAFETY: gettid cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// The capability lines and no_new_privs of one thread's /proc status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatusCaps {
    pub(crate) inheritable: CapSet,
    pub(crate) permitted: CapSet,
    pub(crate) effective: CapSet,
    pub(crate) bounding: CapSet,
    pub(crate) ambient: CapSet,
    pub(crate) no_new_privs: bool,
}

impl StatusCaps {
    /// Parses the text of `/proc/<pid>/status` (or a task's).
    pub(crate) fn parse(status: &str) -> StatusCaps {
        let mut s = StatusCaps::default();
        for line in status.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let set = || CapSet::from_hex(value).unwrap_or_default();
            match key {
                "CapInh" => s.inheritable = set(),
                "CapPrm" => s.permitted = set(),
                "CapEff" => s.effective = set(),
                "CapBnd" => s.bounding = set(),
                "CapAmb" => s.ambient = set(),
                "NoNewPrivs" => s.no_new_privs = value.trim() == "1",
                _ => {}
            }
        }
        s
    }

    /// Capabilities this thread holds (in any set that counts) beyond `keep` and `bounding`.
    fn excess(&self, keep: CapSet, bounding: CapSet) -> CapSet {
        let held =
            CapSet(self.permitted.0 | self.effective.0 | self.inheritable.0 | self.ambient.0);
        CapSet(held.minus(keep).0 | self.bounding.minus(bounding).0)
    }
}

fn task_status(tid: u32) -> Option<StatusCaps> {
    fs::read_to_string(format!("/proc/self/task/{tid}/status"))
        .ok()
        .map(|s| StatusCaps::parse(&s))
}

/// Drops every capability outside `keep` from every thread; see the module docs.
pub(crate) fn drop_everywhere(keep: CapSet) -> Result<DropResult, ThreadsError> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let last = caps::last_cap();
    KEEP.store(keep.0, SeqCst);
    LAST_CAP.store(last, SeqCst);
    CAPSET_ERRNO.store(0, SeqCst);
    BOUNDING_ERRNO.store(0, SeqCst);
    install_handler()?;

    drop_this_thread(keep, last);
    check_errors()?;
    // What the others must end up with: this thread's bounding set (smaller than before only
    // if the kernel let us drop from it).
    let bounding = caps::bounding_set(last);
    let me = gettid();
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() };
    for _ in 0..ROUNDS {
        let pending: Vec<u32> = thread_ids()
            .into_iter()
            .filter(|t| *t != me)
            .filter(|t| task_status(*t).is_some_and(|s| !compliant(&s, keep, bounding)))
            .collect();
        if pending.is_empty() {
            break;
        }
        let before = ACKS.load(SeqCst);
        let sent = pending
            .iter()
            // SAFETY: tgkill to a thread of our own process; ESRCH if it has just exited.
            .filter(|t| unsafe { libc::syscall(libc::SYS_tgkill, pid, **t, signal()) } == 0)
            .count();
        let deadline = Instant::now() + ACK_TIMEOUT;
        while ACKS.load(SeqCst) - before < sent && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        check_errors()?;
    }
    for tid in thread_ids() {
        if let Some(s) = task_status(tid) {
            if !compliant(&s, keep, bounding) {
                return Err(ThreadsError::Kept {
                    tid,
                    extra: s.excess(keep, bounding),
                });
            }
        }
    }
    let bounding_errno = BOUNDING_ERRNO.load(SeqCst);
    Ok(DropResult {
        bounding_errno: (bounding_errno != 0).then_some(bounding_errno),
    })
}

fn compliant(s: &StatusCaps, keep: CapSet, bounding: CapSet) -> bool {
    s.excess(keep, bounding).is_empty() && s.no_new_privs
}

fn check_errors() -> Result<(), ThreadsError> {
    match CAPSET_ERRNO.load(SeqCst) {
        0 => Ok(()),
        // no_new_privs failures are stored negated to tell them apart.
        e if e < 0 => Err(ThreadsError::NoNewPrivs(std::io::Error::from_raw_os_error(
            -e,
        ))),
        e => Err(ThreadsError::Capset(std::io::Error::from_raw_os_error(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::caps::cap;
    use std::io::{Read, Write};
    use std::os::fd::FromRawFd;

    /// Set for the child process in which [`drop_child`] runs: the drop is for the whole
    /// process, which must not be this test binary's other tests.
    const CHILD_ENV: &str = "FLOW_AGENT_TEST_DROP_CHILD";

    #[test]
    fn drops_in_every_thread() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "service::threads::tests::drop_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("drop-child: every thread dropped"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Threads that exist before the drop (one blocked in read(2), one sleeping) lose their
    /// capabilities too; a thread started after inherits the dropped sets; the interrupted
    /// read goes on (SA_RESTART).
    #[test]
    fn drop_child() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        let mut fds = [0; 2];
        // SAFETY: pipe(2) fills two descriptors that the Files below then own.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (mut rx, mut tx) = unsafe {
            (
                std::fs::File::from_raw_fd(fds[0]),
                std::fs::File::from_raw_fd(fds[1]),
            )
        };
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4];
            rx.read_exact(&mut buf).map(|_| buf)
        });
        let sleeper = std::thread::spawn(|| std::thread::sleep(Duration::from_secs(3)));
        std::thread::sleep(Duration::from_millis(100));
        assert!(thread_ids().len() >= 3);

        let keep = CapSet::of(&[cap::SYS_PTRACE]);
        assert_eq!(drop_everywhere(keep).unwrap(), DropResult::default());
        for tid in thread_ids() {
            let s = task_status(tid).unwrap();
            assert_eq!(
                (s.effective, s.permitted, s.bounding),
                (keep, keep, keep),
                "thread {tid}"
            );
            assert_eq!((s.inheritable, s.ambient), (CapSet::EMPTY, CapSet::EMPTY));
            assert!(s.no_new_privs, "thread {tid}");
        }
        let later = std::thread::spawn(|| caps::get().unwrap()).join().unwrap();
        assert_eq!((later.effective, later.permitted), (keep, keep));
        tx.write_all(b"done").unwrap();
        assert_eq!(&reader.join().unwrap().unwrap(), b"done");
        sleeper.join().unwrap();
        println!("drop-child: every thread dropped");
    }

    #[test]
    fn parses_proc_status() {
        let text = "Name:\tflow-agent\nCapInh:\t0000000000000000\nCapPrm:\t0000000000280004\n\
                    CapEff:\t0000000000280004\nCapBnd:\t0000000000280004\n\
                    CapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t0\n";
        let s = StatusCaps::parse(text);
        let kept = CapSet(0x28_0004);
        assert_eq!(s.permitted, kept);
        assert_eq!(s.effective, kept);
        assert_eq!(s.bounding, kept);
        assert_eq!(s.ambient, CapSet::EMPTY);
        assert!(s.no_new_privs);
        assert!(compliant(&s, kept, kept));
        // A bounding set we could not reduce is accepted when this thread's is the same.
        assert!(!compliant(&s, CapSet(0x4), CapSet(0x4)));
        assert_eq!(s.excess(CapSet(0x4), kept), CapSet(0x28_0000));
    }
}
