//! The process table: filled from the kernel's exec, fork and exit records, so a process is known
//! exactly even after it has gone; /proc is read only for processes older than the agent.
//!
//! Bounded: a record can be lost (the ring buffer full), and an exit record lost would leave
//! its process here for good. So the table holds at most [`MAX_PROCESSES`] entries and
//! [`MAX_PROCESS_BYTES`] of executable paths and command lines (the oldest entries go first
//! when it is full: a process still running is read again from /proc when a record names
//! it), and a reconciliation checks every entry against /proc, a slice per tick, a pass at
//! most every [`RECONCILE_PERIOD`]: an entry whose /proc/PID is gone, or belongs to a
//! process with another start time, is marked exited and expires like any other.
use std::{
    collections::HashMap,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use flow_common::{
    CredsRecord, ExecRecord, ExitRecord, ForkRecord, COMM_LEN, PATH_FLAG_DELETED,
    PATH_FLAG_TRUNCATED,
};

use ::procfs::{
    process::{Process as ProcDir, Stat},
    ProcError, ProcResult,
};

use super::{image_hash::HashSlot, procfs};
use crate::capture::records::{exec_args, exec_path};

/// Longest command line kept, in bytes (longer ones are cut and marked).
pub(crate) const MAX_COMMAND_LINE: usize = 4096;
/// Entries kept at most, running and exited (the kernel's `PROCESSES` table has as many).
pub(crate) const MAX_PROCESSES: usize = 65_536;
/// Bytes of executable paths and command lines kept at most, counted per entry (an image a
/// fork shares with its parent counts once per process): 32 MiB.
pub(crate) const MAX_PROCESS_BYTES: usize = 32 << 20;
/// A reconciliation pass over the whole table starts at most this often.
pub(crate) const RECONCILE_PERIOD: Duration = Duration::from_secs(30);
/// Entries checked against /proc per tick at most (a full table takes 64 ticks).
pub(crate) const RECONCILE_BATCH: usize = 1024;
/// Fixed cost of one entry, beyond its image's bytes (the entry, its `Arc`s, the pid's list).
const ENTRY_BYTES: usize = 128;

/// What exec gave a process: shared, not copied, by the processes it forks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Image {
    /// Full path of the executable, raw bytes (paths need not be UTF-8).
    pub(crate) path: Option<Vec<u8>>,
    /// The executable was deleted or replaced after it was started.
    pub(crate) deleted: bool,
    /// The path was cut (deeper than the kernel program walks).
    pub(crate) truncated: bool,
    /// The arguments, each followed by a NUL (one allocation however many there are).
    args: Box<[u8]>,
    pub(crate) args_truncated: bool,
    /// The executable's SHA-256, once the hasher has it.
    pub(crate) hash: Arc<HashSlot>,
}

impl Image {
    pub(crate) fn new(path: Option<Vec<u8>>, args: &[Vec<u8>], args_truncated: bool) -> Self {
        let mut joined = Vec::with_capacity(args.iter().map(|a| a.len() + 1).sum());
        for a in args {
            joined.extend_from_slice(a);
            joined.push(0);
        }
        Self {
            path: path.map(|mut p| {
                p.shrink_to_fit();
                p
            }),
            args: joined.into_boxed_slice(),
            args_truncated,
            ..Self::default()
        }
    }

    /// The arguments (an argument holds no NUL: the kernel's argv are C strings).
    pub(crate) fn args(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let body = self.args.strip_suffix(&[0]).unwrap_or(&self.args);
        // No arguments at all is not one empty argument.
        body.split(|b| *b == 0)
            .filter(move |_| !self.args.is_empty())
    }

    pub(crate) fn has_args(&self) -> bool {
        !self.args.is_empty()
    }

    /// Heap bytes it holds.
    fn bytes(&self) -> usize {
        self.path.as_ref().map_or(0, Vec::capacity) + self.args.len()
    }
}

/// A process's credentials as the kernel last reported them (at exec, after a set*id call) or
/// /proc showed them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Creds {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) euid: u32,
    pub(crate) egid: u32,
    /// None when unset (no login session: daemons started at boot).
    pub(crate) auid: Option<u32>,
    pub(crate) session_id: Option<u32>,
}

/// The kernel's "unset" login uid and session id.
const UNSET: u32 = u32::MAX;

impl Creds {
    fn of_record(r: &CredsRecord) -> Self {
        Self {
            uid: r.uid,
            gid: r.gid,
            euid: r.euid,
            egid: r.egid,
            auid: (r.auid != UNSET).then_some(r.auid),
            session_id: (r.session_id != UNSET).then_some(r.session_id),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Process {
    pub(crate) pid: u32,
    /// CLOCK_BOOTTIME ns of the process start (0 when unknown).
    pub(crate) start_ns: u64,
    pub(crate) ppid: u32,
    pub(crate) image: Arc<Image>,
    /// Forked and not (yet) exec'd: the image is its parent's.
    pub(crate) inherited: bool,
    /// None until the kernel or /proc told them.
    pub(crate) creds: Option<Creds>,
    /// The kernel's task comm at exec (a fork's is its parent's), or /proc's.
    pub(crate) comm: [u8; COMM_LEN],
    /// The cgroup at exec (0 when unknown).
    pub(crate) cgroup_id: u64,
    /// Read again from /proc because a task's comm showed an exec whose record was lost.
    pub(crate) refreshed: bool,
}

/// What /proc says of a task whose comm is not its entry's ([`ProcessTable::check_comm`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CommCheck {
    /// The comm is the entry's, or a name the process or a thread gave itself (the same
    /// executable runs): the entry stands.
    Same,
    /// Another executable runs: its exec record was lost. The entry was read again.
    Replaced(Arc<Process>),
    /// /proc could not tell (the process is gone, or the pid is another's now).
    Unverified,
}

/// Other names seen for an entry's executable, kept at most per entry.
const MAX_OTHER_NAMES: usize = 4;

struct Entry {
    process: Arc<Process>,
    /// Comms its tasks showed that /proc found to be names, not execs (thread names, prctl).
    other_names: Vec<[u8; COMM_LEN]>,
    exited: Option<Instant>,
    /// Insertion order: the oldest entries go first when the table is full.
    seq: u64,
    /// What it counts against [`MAX_PROCESS_BYTES`].
    bytes: usize,
}

/// Whether a pid runs, as /proc tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Running {
    /// No such process.
    Gone,
    /// A process with this start time (ns).
    Since(u64),
    /// /proc did not say (unreadable, unparsable): the entry is left alone.
    Unknown,
}

/// Counts of what left the table before its time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProcessTableStats {
    /// Entries the reconciliation found gone from /proc (their exit record was lost) or
    /// replaced by another process with the same pid.
    pub(crate) reconciled: u64,
    /// Entries dropped because the table was full.
    pub(crate) evicted: u64,
}

pub(crate) struct ProcessTable {
    by_pid: HashMap<u32, Vec<Entry>>,
    /// Entries and their bytes, as counted against the caps.
    count: usize,
    bytes: usize,
    next_seq: u64,
    max_entries: usize,
    max_bytes: usize,
    /// Length of a clock tick in ns: /proc reports start times in ticks.
    tick_ns: u64,
    /// How long an exited process stays known, for records still in flight.
    linger: Duration,
    /// Where /proc is (another directory in tests).
    proc_root: PathBuf,
    /// /proc shows the pids the kernel records carry (the agent is in the initial pid
    /// namespace); otherwise the reconciliation would find every process gone, and is off.
    host_pids: bool,
    /// Pids the running reconciliation pass has still to check.
    to_check: Vec<u32>,
    pass_started: Option<Instant>,
    reconcile_period: Duration,
    pub(crate) stats: ProcessTableStats,
}

impl Default for ProcessTable {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessTable {
    pub(crate) fn new() -> Self {
        Self::with_proc_root(PathBuf::from("/proc"))
    }

    /// A table that reads processes from `proc_root` instead of /proc.
    pub(crate) fn with_proc_root(proc_root: PathBuf) -> Self {
        // SAFETY: sysconf has no memory-safety preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Self {
            by_pid: HashMap::new(),
            count: 0,
            bytes: 0,
            next_seq: 0,
            max_entries: MAX_PROCESSES,
            max_bytes: MAX_PROCESS_BYTES,
            tick_ns: 1_000_000_000 / hz,
            linger: Duration::from_secs(120),
            host_pids: in_initial_pid_namespace(&proc_root),
            proc_root,
            to_check: Vec::new(),
            pass_started: None,
            reconcile_period: RECONCILE_PERIOD,
            stats: ProcessTableStats::default(),
        }
    }

    /// Two start times name the same process if they are within one clock tick: /proc's are
    /// rounded to ticks, the kernel's are exact.
    fn same_start(&self, a: u64, b: u64) -> bool {
        a.abs_diff(b) < self.tick_ns
    }

    fn insert(&mut self, p: Process) -> Arc<Process> {
        let p = Arc::new(p);
        let tick = self.tick_ns;
        if let Some(list) = self.by_pid.get_mut(&p.pid) {
            let (mut n, mut b) = (0, 0);
            list.retain(|e| {
                let keep = e.process.start_ns.abs_diff(p.start_ns) >= tick;
                if !keep {
                    (n, b) = (n + 1, b + e.bytes);
                }
                keep
            });
            (self.count, self.bytes) = (self.count - n, self.bytes - b);
        }
        let bytes = ENTRY_BYTES + p.image.bytes();
        if self.count + 1 > self.max_entries || self.bytes + bytes > self.max_bytes {
            self.make_room(bytes);
        }
        self.next_seq += 1;
        self.by_pid.entry(p.pid).or_default().push(Entry {
            process: p.clone(),
            other_names: Vec::new(),
            exited: None,
            seq: self.next_seq,
            bytes,
        });
        (self.count, self.bytes) = (self.count + 1, self.bytes + bytes);
        p
    }

    /// Drops the oldest entries, running or not, until a sixteenth of each cap is free
    /// (besides `incoming` bytes): the cost of finding them is paid once per many inserts.
    fn make_room(&mut self, incoming: usize) {
        let entries_target = self.max_entries - (self.max_entries / 16).max(1);
        let bytes_target = (self.max_bytes - self.max_bytes / 16).saturating_sub(incoming);
        let mut ages: Vec<(u64, usize)> = self
            .by_pid
            .values()
            .flatten()
            .map(|e| (e.seq, e.bytes))
            .collect();
        ages.sort_unstable();
        let (mut count, mut bytes, mut cutoff) = (self.count, self.bytes, 0);
        for (seq, b) in ages {
            if count <= entries_target && bytes <= bytes_target {
                break;
            }
            (count, bytes, cutoff) = (count - 1, bytes - b, seq);
        }
        self.by_pid.retain(|_, list| {
            list.retain(|e| e.seq > cutoff);
            !list.is_empty()
        });
        self.stats.evicted += (self.count - count) as u64;
        (self.count, self.bytes) = (count, bytes);
    }

    pub(crate) fn on_exec(&mut self, rec: &ExecRecord) {
        let total = rec.args_total as usize;
        let mut image = Image::new(
            (rec.path_len > 0).then(|| exec_path(rec)),
            &exec_args(rec),
            total > rec.args_len as usize,
        );
        image.deleted = rec.path_flags & PATH_FLAG_DELETED != 0;
        image.truncated = rec.path_flags & PATH_FLAG_TRUNCATED != 0;
        self.insert(Process {
            pid: rec.task.pid,
            start_ns: rec.task.start_ns,
            ppid: rec.task.ppid,
            image: Arc::new(image),
            inherited: false,
            creds: None,
            comm: rec.task.comm,
            cgroup_id: rec.task.cgroup_id,
            refreshed: false,
        });
    }

    /// New credentials replace the entry's process (so identities built from it are rebuilt).
    pub(crate) fn on_creds(&mut self, rec: &CredsRecord) {
        let tick = self.tick_ns;
        let Some(list) = self.by_pid.get_mut(&rec.pid) else {
            return;
        };
        let creds = Some(Creds::of_record(rec));
        for e in list.iter_mut() {
            let same = e.process.start_ns == 0 || e.process.start_ns.abs_diff(rec.start_ns) < tick;
            if same && e.exited.is_none() && e.process.creds != creds {
                e.process = Arc::new(Process {
                    creds,
                    ..(*e.process).clone()
                });
            }
        }
    }

    pub(crate) fn on_fork(&mut self, rec: &ForkRecord) {
        let parent = self.lookup(rec.parent_pid, rec.parent_start_ns);
        self.insert(Process {
            pid: rec.child_pid,
            start_ns: rec.child_start_ns,
            ppid: rec.parent_pid,
            image: parent.as_ref().map(|p| p.image.clone()).unwrap_or_default(),
            inherited: true,
            // A fork has its parent's credentials, comm and cgroup.
            creds: parent.as_ref().and_then(|p| p.creds),
            comm: parent.as_ref().map_or([0; COMM_LEN], |p| p.comm),
            cgroup_id: parent.map_or(0, |p| p.cgroup_id),
            refreshed: false,
        });
    }

    pub(crate) fn on_exit(&mut self, rec: &ExitRecord) {
        let now = Instant::now();
        let tick = self.tick_ns;
        if let Some(list) = self.by_pid.get_mut(&rec.pid) {
            for e in list.iter_mut() {
                if e.process.start_ns.abs_diff(rec.start_ns) < tick {
                    e.exited = Some(now);
                }
            }
        }
    }

    /// The process with this pid and start time; read from /proc if the kernel never told us.
    pub(crate) fn lookup(&mut self, pid: u32, start_ns: u64) -> Option<Arc<Process>> {
        if pid == 0 {
            return None;
        }
        if let Some(list) = self.by_pid.get(&pid) {
            let found = list.iter().rev().find(|e| {
                start_ns == 0
                    || e.process.start_ns == 0
                    || self.same_start(e.process.start_ns, start_ns)
            });
            if let Some(e) = found {
                return Some(e.process.clone());
            }
        }
        let p = read_proc(&self.proc_root, pid, self.tick_ns)?;
        if start_ns != 0 && !self.same_start(p.start_ns, start_ns) {
            // The pid now belongs to another process.
            return None;
        }
        Some(self.insert(p))
    }

    /// A task of `p` shows another comm than `p`'s: an exec whose record was lost (the ring
    /// was full), or a name the process or one of its threads gave itself. /proc tells which:
    /// another executable replaces the entry (marked `refreshed`); the same one keeps it, and
    /// the name is remembered so that /proc is not read for it again.
    pub(crate) fn check_comm(&mut self, p: &Process, comm: [u8; COMM_LEN]) -> CommCheck {
        if p.comm == comm || p.comm[0] == 0 {
            return CommCheck::Same;
        }
        let tick = self.tick_ns;
        let entry = |list: &mut Vec<Entry>| -> Option<usize> {
            list.iter()
                .position(|e| e.process.start_ns.abs_diff(p.start_ns) < tick)
        };
        if let Some(list) = self.by_pid.get_mut(&p.pid) {
            if let Some(i) = entry(list) {
                if list[i].other_names.contains(&comm) {
                    return CommCheck::Same;
                }
            }
        }
        let Some(now) = read_proc(&self.proc_root, p.pid, tick)
            .filter(|n| p.start_ns == 0 || self.same_start(n.start_ns, p.start_ns))
        else {
            return CommCheck::Unverified;
        };
        if now.image.path == p.image.path {
            let list = self.by_pid.get_mut(&p.pid);
            if let Some((list, i)) = list.and_then(|l| entry(l).map(|i| (l, i))) {
                if list[i].other_names.len() < MAX_OTHER_NAMES {
                    list[i].other_names.push(comm);
                }
            }
            return CommCheck::Same;
        }
        let replaced = self.insert(Process {
            refreshed: true,
            creds: now.creds.or(p.creds),
            cgroup_id: p.cgroup_id,
            ..now
        });
        CommCheck::Replaced(replaced)
    }

    /// Reads every running process: the table is complete from the agent's first record.
    pub(crate) fn scan_proc(&mut self) -> Vec<Arc<Process>> {
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir(&self.proc_root) else {
            return out;
        };
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some(p) = read_proc(&self.proc_root, pid, self.tick_ns) {
                out.push(self.insert(p));
            }
        }
        out
    }

    /// Forgets processes that exited longer ago than the linger time.
    pub(crate) fn expire(&mut self) {
        let linger = self.linger;
        let (mut n, mut b) = (0, 0);
        self.by_pid.retain(|_, list| {
            list.retain(|e| {
                let keep = e.exited.is_none_or(|t| t.elapsed() < linger);
                if !keep {
                    (n, b) = (n + 1, b + e.bytes);
                }
                keep
            });
            !list.is_empty()
        });
        (self.count, self.bytes) = (self.count - n, self.bytes - b);
    }

    /// One slice of the reconciliation with /proc: at most [`RECONCILE_BATCH`] pids are
    /// checked, and a new pass over the table starts at most every [`RECONCILE_PERIOD`].
    /// Entries whose process is gone, or whose pid now belongs to a process with another
    /// start time, are marked exited: their exit record was lost. Returns how many.
    pub(crate) fn reconcile(&mut self) -> u64 {
        if !self.host_pids {
            return 0;
        }
        if self.to_check.is_empty() {
            if self
                .pass_started
                .is_some_and(|t| t.elapsed() < self.reconcile_period)
            {
                return 0;
            }
            self.pass_started = Some(Instant::now());
            self.to_check = self.by_pid.keys().copied().collect();
        }
        let from = self.to_check.len().saturating_sub(RECONCILE_BATCH);
        let batch = self.to_check.split_off(from);
        let now = Instant::now();
        let mut gone = 0;
        for pid in batch {
            let Some(list) = self.by_pid.get(&pid) else {
                continue;
            };
            if list.iter().all(|e| e.exited.is_some()) {
                continue;
            }
            let running = running(&self.proc_root, pid, self.tick_ns);
            let tick = self.tick_ns;
            let Some(list) = self.by_pid.get_mut(&pid) else {
                continue;
            };
            for e in list.iter_mut().filter(|e| e.exited.is_none()) {
                let stale = match running {
                    Running::Gone => true,
                    Running::Since(start) => {
                        e.process.start_ns != 0 && e.process.start_ns.abs_diff(start) >= tick
                    }
                    Running::Unknown => false,
                };
                if stale {
                    e.exited = Some(now);
                    gone += 1;
                }
            }
        }
        self.stats.reconciled += gone;
        gone
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Bytes counted against [`MAX_PROCESS_BYTES`].
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Whether /proc shows the initial pid namespace's pids, which the kernel records carry: the
/// `NSpid` line of /proc/self/status names one pid there, more in a nested namespace.
fn in_initial_pid_namespace(proc_root: &Path) -> bool {
    let Ok(status) = std::fs::read(proc_root.join("self/status")) else {
        return false;
    };
    status
        .split(|b| *b == b'\n')
        .find_map(|l| l.strip_prefix(b"NSpid:"))
        .is_some_and(|pids| {
            pids.split(|b| b.is_ascii_whitespace())
                .filter(|p| !p.is_empty())
                .count()
                == 1
        })
}

/// `proc_root/PID`, opened once: the files read from it are of that one process.
fn proc_dir(proc_root: &Path, pid: u32) -> ProcResult<ProcDir> {
    ProcDir::new_with_root(proc_root.join(pid.to_string()))
}

/// Whether `pid` runs, from /proc/PID/stat.
fn running(proc_root: &Path, pid: u32, tick_ns: u64) -> Running {
    match proc_dir(proc_root, pid).and_then(|p| p.stat()) {
        Ok(stat) => Running::Since(stat.starttime.saturating_mul(tick_ns)),
        // ENOENT and ESRCH alike.
        Err(ProcError::NotFound(_)) => Running::Gone,
        Err(_) => Running::Unknown,
    }
}

/// /proc/PID: stat for parent and start time, exe and cmdline. None if the process is gone.
fn read_proc(proc_root: &Path, pid: u32, tick_ns: u64) -> Option<Process> {
    let proc = proc_dir(proc_root, pid).ok()?;
    let Stat {
        ppid, starttime, ..
    } = proc.stat().ok()?;
    // `exe()` is a PathBuf: the link's bytes, kept exactly.
    let (path, deleted) = match proc.exe() {
        Ok(p) => {
            let (path, deleted) = procfs::exe_link(p.as_os_str().as_bytes());
            (Some(path), deleted)
        }
        Err(_) => (None, false),
    };
    // Read by hand: the crate's `cmdline()` is Strings, failing on bytes that are not UTF-8.
    let dir = proc_root.join(pid.to_string());
    let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
    let (args, args_truncated) = procfs::cmdline_args(&cmdline, MAX_COMMAND_LINE);
    let mut image = Image::new(path, &args, args_truncated);
    image.deleted = deleted;
    Some(Process {
        pid,
        start_ns: starttime.saturating_mul(tick_ns),
        ppid: u32::try_from(ppid).unwrap_or(0),
        image: Arc::new(image),
        inherited: false,
        creds: read_creds(&dir),
        // The raw name, as the kernel's records carry it: the crate's `comm` is decoded lossily.
        comm: procfs::stat_comm(&std::fs::read(dir.join("stat")).unwrap_or_default()),
        cgroup_id: 0,
        refreshed: false,
    })
}

/// Real and effective ids from /proc/PID/status, login uid and session from their files.
/// `status` is read by hand: its `Name:` line is the process's name unescaped, and the crate's
/// `Status` fails on a name that is not UTF-8 (and builds a map of every line).
fn read_creds(dir: &Path) -> Option<Creds> {
    let status = std::fs::read(dir.join("status")).ok()?;
    let (uid, euid) = procfs::status_ids(&status, b"Uid:")?;
    let (gid, egid) = procfs::status_ids(&status, b"Gid:")?;
    let number = |file: &str| -> Option<u32> {
        let text = std::fs::read_to_string(dir.join(file)).ok()?;
        text.trim().parse().ok().filter(|v| *v != UNSET)
    };
    Some(Creds {
        uid,
        gid,
        euid,
        egid,
        auid: number("loginuid"),
        session_id: number("sessionid"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process_from_proc() {
        let mut t = ProcessTable::new();
        let me = t.lookup(std::process::id(), 0).expect("own process");
        let exe = std::env::current_exe().unwrap();
        assert_eq!(me.image.path.as_deref(), Some(exe.as_os_str().as_bytes()));
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert!(me.start_ns > 0);
        // A start time a second off is another process: no match.
        assert!(t
            .lookup(std::process::id(), me.start_ns + 1_000_000_000)
            .is_none());
    }

    #[test]
    fn fork_shares_its_parents_image_and_exit_expires() {
        let mut t = ProcessTable::new();
        t.linger = Duration::ZERO;
        let image = Arc::new(Image::new(
            Some(b"/usr/sbin/daemon".to_vec()),
            &[b"daemon".to_vec(), b"-f".to_vec()],
            false,
        ));
        t.insert(Process {
            pid: 4_000_001,
            start_ns: 5_000_000_000,
            image: image.clone(),
            ..Process::default()
        });
        let fork = ForkRecord {
            header: Default::default(),
            child_start_ns: 6_000_000_000,
            parent_start_ns: 5_000_000_000,
            child_pid: 4_000_002,
            parent_pid: 4_000_001,
        };
        t.on_fork(&fork);
        let child = t.lookup(4_000_002, 6_000_000_000).unwrap();
        assert_eq!(child.image.path.as_deref(), Some(&b"/usr/sbin/daemon"[..]));
        assert!(Arc::ptr_eq(&child.image, &image), "shared, not copied");
        assert_eq!(child.ppid, 4_000_001);
        t.on_exit(&ExitRecord {
            header: Default::default(),
            start_ns: 6_000_000_000,
            pid: 4_000_002,
            exit_code: 0,
        });
        t.expire();
        assert!(!t.by_pid.contains_key(&4_000_002));
        assert_eq!(t.len(), 1);
        assert_eq!(t.bytes(), ENTRY_BYTES + image.bytes());
    }

    #[test]
    fn arguments_are_kept_exactly() {
        let args = |a: &[&[u8]]| {
            let owned: Vec<Vec<u8>> = a.iter().map(|x| x.to_vec()).collect();
            let image = Image::new(None, &owned, false);
            assert_eq!(image.has_args(), !a.is_empty());
            image.args().map(<[u8]>::to_vec).collect::<Vec<_>>()
        };
        assert_eq!(args(&[]), Vec::<Vec<u8>>::new());
        assert_eq!(args(&[b""]), vec![b"".to_vec()]);
        assert_eq!(
            args(&[b"a", b"", b"b c\xff"]),
            vec![b"a".to_vec(), b"".to_vec(), b"b c\xff".to_vec()]
        );
        assert_eq!(args(&[b"a", b""]), vec![b"a".to_vec(), b"".to_vec()]);
    }

    /// A /proc of our own: `self/status` in the initial pid namespace, and `PID/stat` files.
    struct FakeProc(PathBuf);

    impl FakeProc {
        fn new(name: &str) -> Self {
            let root =
                std::env::temp_dir().join(format!("flow-agent-proc-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(root.join("self")).unwrap();
            std::fs::write(root.join("self/status"), "Name:\tx\nNSpid:\t4242\n").unwrap();
            Self(root)
        }

        /// A running process started `start_ticks` clock ticks after boot.
        fn run(&self, pid: u32, start_ticks: u64) {
            let dir = self.0.join(pid.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            let stat = format!(
                "{pid} (p) S 1 {pid} {pid} 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 {start_ticks} {}",
                ["0"; 17].join(" ")
            );
            std::fs::write(dir.join("stat"), stat).unwrap();
        }

        fn end(&self, pid: u32) {
            std::fs::remove_dir_all(self.0.join(pid.to_string())).unwrap();
        }
    }

    impl Drop for FakeProc {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn exec(pid: u32, start_ns: u64) -> Process {
        Process {
            pid,
            start_ns,
            ppid: 1,
            image: Arc::new(Image::new(
                Some(b"/bin/x".to_vec()),
                &[b"x".to_vec()],
                false,
            )),
            ..Process::default()
        }
    }

    fn exited(t: &ProcessTable, pid: u32) -> Vec<bool> {
        t.by_pid[&pid].iter().map(|e| e.exited.is_some()).collect()
    }

    #[test]
    fn reconciliation_marks_exited_what_proc_no_longer_runs() {
        let proc = FakeProc::new("reconcile");
        let mut t = ProcessTable::with_proc_root(proc.0.clone());
        assert!(t.host_pids);
        let tick = t.tick_ns;
        // 10: still running. 11: gone, its exit record lost. 12: the pid now belongs to a
        // process started later. 13: exited with its record (left alone).
        for (pid, ticks) in [(10, 100), (12, 300)] {
            proc.run(pid, ticks);
        }
        proc.run(14, 500);
        for (pid, ticks) in [(10, 100), (11, 200), (12, 250), (13, 400)] {
            t.insert(exec(pid, ticks * tick));
        }
        t.on_exit(&ExitRecord {
            header: Default::default(),
            start_ns: 400 * tick,
            pid: 13,
            exit_code: 0,
        });
        // A process whose start the kernel gave exactly: /proc's rounding is not a mismatch.
        t.insert(exec(14, 500 * tick + tick / 2));

        assert_eq!(t.reconcile(), 2);
        assert_eq!(exited(&t, 10), [false]);
        assert_eq!(exited(&t, 11), [true]);
        assert_eq!(exited(&t, 12), [true]);
        assert_eq!(exited(&t, 13), [true]);
        assert_eq!(exited(&t, 14), [false]);
        assert_eq!(t.stats.reconciled, 2);

        // The next pass waits for its period; then what ended since is found.
        proc.end(10);
        assert_eq!(t.reconcile(), 0, "a pass at most every period");
        t.pass_started = Some(Instant::now() - RECONCILE_PERIOD);
        assert_eq!(t.reconcile(), 1);
        assert_eq!(exited(&t, 10), [true]);

        // Marked entries expire like any other exited process.
        t.linger = Duration::ZERO;
        t.expire();
        assert_eq!(t.len(), 1);
        assert_eq!(t.stats.reconciled, 3);
    }

    #[test]
    fn reconciliation_is_amortised_over_ticks() {
        let proc = FakeProc::new("slices");
        let mut t = ProcessTable::with_proc_root(proc.0.clone());
        let n = RECONCILE_BATCH as u32 * 2 + 10;
        for pid in 1..=n {
            t.insert(exec(pid, u64::from(pid) * t.tick_ns));
        }
        // None of them runs: each tick marks one slice.
        assert_eq!(t.reconcile(), RECONCILE_BATCH as u64);
        assert_eq!(t.reconcile(), RECONCILE_BATCH as u64);
        assert_eq!(t.reconcile(), 10);
        assert_eq!(t.reconcile(), 0, "the pass is over, the next waits");
        assert_eq!(t.stats.reconciled, u64::from(n));
    }

    #[test]
    fn no_reconciliation_in_a_nested_pid_namespace() {
        let proc = FakeProc::new("nested");
        std::fs::write(proc.0.join("self/status"), "NSpid:\t4242\t7\n").unwrap();
        let mut t = ProcessTable::with_proc_root(proc.0.clone());
        t.insert(exec(11, 200 * t.tick_ns));
        assert_eq!(t.reconcile(), 0);
        assert_eq!(exited(&t, 11), [false]);
    }

    #[test]
    fn a_full_table_drops_its_oldest_entries() {
        let proc = FakeProc::new("cap");
        let mut t = ProcessTable::with_proc_root(proc.0.clone());
        t.max_entries = 32;
        for pid in 1..=32 {
            t.insert(exec(pid, u64::from(pid) * t.tick_ns));
        }
        assert_eq!((t.len(), t.stats.evicted), (32, 0));
        // One more: the two oldest go (a sixteenth of the cap is made free).
        t.insert(exec(33, 33 * t.tick_ns));
        assert_eq!((t.len(), t.stats.evicted), (31, 2));
        assert!(!t.by_pid.contains_key(&1) && !t.by_pid.contains_key(&2));
        assert!(t.by_pid.contains_key(&3) && t.by_pid.contains_key(&33));
        for pid in 34..1000 {
            t.insert(exec(pid, u64::from(pid) * t.tick_ns));
            assert!(t.len() <= 32);
        }
        assert_eq!(t.len(), t.by_pid.values().map(Vec::len).sum::<usize>());
        assert!(t.by_pid.contains_key(&999));
    }

    #[test]
    fn command_lines_are_capped_in_bytes() {
        let proc = FakeProc::new("bytes");
        let mut t = ProcessTable::with_proc_root(proc.0.clone());
        t.max_bytes = 64 * 1024;
        // Processes with a 4 KiB command line each, as an attacker may exec them.
        let big = vec![b'A'; MAX_COMMAND_LINE - 1];
        for pid in 1..=200 {
            t.insert(Process {
                pid,
                start_ns: u64::from(pid) * t.tick_ns,
                ppid: 1,
                image: Arc::new(Image::new(None, std::slice::from_ref(&big), false)),
                ..Process::default()
            });
            assert!(t.bytes() <= 64 * 1024, "{} bytes", t.bytes());
        }
        let held: usize = t.by_pid.values().flatten().map(|e| e.bytes).sum();
        assert_eq!(held, t.bytes());
        assert!(t.len() >= 10, "{} entries", t.len());
        assert!(t.by_pid.contains_key(&200));
        assert!(t.stats.evicted > 150);
    }

    #[test]
    fn evicted_processes_that_still_run_are_read_again() {
        let proc = FakeProc::new("again");
        let mut t = ProcessTable::with_proc_root(proc.0.clone());
        t.max_entries = 16;
        proc.run(1, 100);
        let first = t.lookup(1, 0).expect("from the fake /proc");
        assert_eq!(first.start_ns, 100 * t.tick_ns);
        for pid in 2..40 {
            t.insert(exec(pid, u64::from(pid) * t.tick_ns));
        }
        assert!(!t.by_pid.contains_key(&1), "evicted");
        let again = t.lookup(1, 100 * t.tick_ns).expect("read again");
        assert_eq!(again.start_ns, 100 * t.tick_ns);
    }

    #[test]
    fn a_comm_that_is_not_the_entrys_is_checked_in_proc() {
        let proc = FakeProc::new("comm");
        let mut t = ProcessTable::with_proc_root(proc.0.clone());
        let tick = t.tick_ns;
        let named = |n: &[u8]| {
            let mut c = [0; COMM_LEN];
            c[..n.len()].copy_from_slice(n);
            c
        };
        let forked = |pid: u32, path: Option<&[u8]>| Process {
            pid,
            start_ns: 100 * tick,
            image: Arc::new(Image::new(path.map(<[u8]>::to_vec), &[], false)),
            inherited: true,
            comm: named(b"python3"),
            ..Process::default()
        };
        // The parent's image, and another program running now (the fake /proc has no exe
        // link: its image has no path): the exec record was lost.
        proc.run(20, 100);
        let p = t.insert(forked(20, Some(b"/usr/bin/python3")));
        assert_eq!(t.check_comm(&p, p.comm), CommCheck::Same);
        let CommCheck::Replaced(now) = t.check_comm(&p, named(b"curl")) else {
            panic!("not replaced");
        };
        assert!(now.refreshed && !now.inherited && now.image.path.is_none());
        assert!(t.lookup(20, 100 * tick).is_some_and(|e| e.refreshed));
        // The same executable under another name (a thread's, prctl's): the entry stands, and
        // the name is remembered.
        proc.run(21, 100);
        let same = t.insert(forked(21, None));
        assert_eq!(t.check_comm(&same, named(b"worker")), CommCheck::Same);
        proc.end(21);
        assert_eq!(
            t.check_comm(&same, named(b"worker")),
            CommCheck::Same,
            "remembered"
        );
        // Gone from /proc: nothing can be told.
        assert_eq!(t.check_comm(&same, named(b"other")), CommCheck::Unverified);
    }
}
