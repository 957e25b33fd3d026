//! The process table: filled from the kernel's exec, fork and exit records, so a process is known
//! exactly even after it has gone; /proc is read only for processes older than the agent.
use std::{
    collections::HashMap,
    os::unix::ffi::OsStrExt,
    sync::Arc,
    time::{Duration, Instant},
};

use flow_common::{ExecRecord, ExitRecord, ForkRecord, PATH_FLAG_DELETED, PATH_FLAG_TRUNCATED};

use super::procfs::{self, StatFields};
use crate::capture::records::{exec_args, exec_path};

/// Longest command line kept, in bytes (longer ones are cut and marked).
pub(crate) const MAX_COMMAND_LINE: usize = 4096;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Process {
    pub(crate) pid: u32,
    /// CLOCK_BOOTTIME ns of the process start (0 when unknown).
    pub(crate) start_ns: u64,
    pub(crate) ppid: u32,
    /// Full path of the executable, raw bytes (paths need not be UTF-8).
    pub(crate) image_path: Option<Vec<u8>>,
    /// The executable was deleted or replaced after it was started.
    pub(crate) image_deleted: bool,
    pub(crate) image_truncated: bool,
    pub(crate) args: Vec<Vec<u8>>,
    pub(crate) args_truncated: bool,
}

struct Entry {
    process: Arc<Process>,
    exited: Option<Instant>,
}

pub(crate) struct ProcessTable {
    by_pid: HashMap<u32, Vec<Entry>>,
    /// Length of a clock tick in ns: /proc reports start times in ticks.
    tick_ns: u64,
    /// How long an exited process stays known, for records still in flight.
    linger: Duration,
}

impl Default for ProcessTable {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessTable {
    pub(crate) fn new() -> Self {
        // SAFETY: sysconf has no memory-safety preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Self {
            by_pid: HashMap::new(),
            tick_ns: 1_000_000_000 / hz,
            linger: Duration::from_secs(120),
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
        let list = self.by_pid.entry(p.pid).or_default();
        list.retain(|e| e.process.start_ns.abs_diff(p.start_ns) >= tick);
        list.push(Entry {
            process: p.clone(),
            exited: None,
        });
        p
    }

    pub(crate) fn on_exec(&mut self, rec: &ExecRecord) {
        let total = rec.args_total as usize;
        self.insert(Process {
            pid: rec.task.pid,
            start_ns: rec.task.start_ns,
            ppid: rec.task.ppid,
            image_path: (rec.path_len > 0).then(|| exec_path(rec)),
            image_deleted: rec.path_flags & PATH_FLAG_DELETED != 0,
            image_truncated: rec.path_flags & PATH_FLAG_TRUNCATED != 0,
            args: exec_args(rec),
            args_truncated: total > rec.args_len as usize,
        });
    }

    pub(crate) fn on_fork(&mut self, rec: &ForkRecord) {
        let parent = self.lookup(rec.parent_pid, rec.parent_start_ns);
        let mut child = parent.map(|p| (*p).clone()).unwrap_or_default();
        child.pid = rec.child_pid;
        child.start_ns = rec.child_start_ns;
        child.ppid = rec.parent_pid;
        self.insert(child);
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
        let p = read_proc(pid, self.tick_ns)?;
        if start_ns != 0 && !self.same_start(p.start_ns, start_ns) {
            // The pid now belongs to another process.
            return None;
        }
        Some(self.insert(p))
    }

    /// Reads every running process: the table is complete from the agent's first record.
    pub(crate) fn scan_proc(&mut self) -> Vec<Arc<Process>> {
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return out;
        };
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some(p) = read_proc(pid, self.tick_ns) {
                out.push(self.insert(p));
            }
        }
        out
    }

    /// Forgets processes that exited longer ago than the linger time.
    pub(crate) fn expire(&mut self) {
        let linger = self.linger;
        self.by_pid.retain(|_, list| {
            list.retain(|e| e.exited.is_none_or(|t| t.elapsed() < linger));
            !list.is_empty()
        });
    }
}

/// /proc/PID: stat for parent and start time, exe and cmdline. None if the process is gone.
fn read_proc(pid: u32, tick_ns: u64) -> Option<Process> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let StatFields { ppid, start_ticks } = procfs::stat_fields(&stat)?;
    let (image_path, image_deleted) = match std::fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(p) => {
            let (path, deleted) = procfs::exe_link(p.as_os_str().as_bytes());
            (Some(path), deleted)
        }
        Err(_) => (None, false),
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let (args, args_truncated) = procfs::cmdline_args(&cmdline, MAX_COMMAND_LINE);
    Some(Process {
        pid,
        start_ns: start_ticks.saturating_mul(tick_ns),
        ppid,
        image_path,
        image_deleted,
        image_truncated: false,
        args,
        args_truncated,
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
        assert_eq!(me.image_path.as_deref(), Some(exe.as_os_str().as_bytes()));
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert!(me.start_ns > 0);
        // A start time a second off is another process: no match.
        assert!(t
            .lookup(std::process::id(), me.start_ns + 1_000_000_000)
            .is_none());
    }

    #[test]
    fn fork_inherits_parent_image_and_exit_expires() {
        let mut t = ProcessTable::new();
        t.linger = Duration::ZERO;
        t.insert(Process {
            pid: 4_000_001,
            start_ns: 5_000_000_000,
            image_path: Some(b"/usr/sbin/daemon".to_vec()),
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
        assert_eq!(child.image_path.as_deref(), Some(&b"/usr/sbin/daemon"[..]));
        assert_eq!(child.ppid, 4_000_001);
        t.on_exit(&ExitRecord {
            header: Default::default(),
            start_ns: 6_000_000_000,
            pid: 4_000_002,
            exit_code: 0,
        });
        t.expire();
        assert!(!t.by_pid.contains_key(&4_000_002));
    }
}
