//! Who acted: a process identity built once per process from the kernel's task fields, the
//! process table, users, groups and cgroups, and shared by every event of that process until
//! it changes or a second has passed (names, cgroup moves and deleted executables are seen
//! within that second).
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use flow_common::Task;

use super::{
    cgroup::{container_of, systemd_unit, CgroupPaths},
    command_line::quote_args,
    escape::text_of,
    host::process_entity_id,
    process::{Process, ProcessTable},
    users::NameDb,
};
use crate::{clock::BootClock, event::ProcessIdentity};

/// How long a built identity is reused without looking at its sources again.
const REFRESH: Duration = Duration::from_secs(1);
/// Identities kept at most; beyond it the cache starts over.
const CAPACITY: usize = 16_384;

/// What makes two tasks the same identity (the thread id is per event, not in it).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    pid: u32,
    start_ns: u64,
    ppid: u32,
    uid: u32,
    gid: u32,
    cgroup_id: u64,
    comm: [u8; 16],
}

struct Cached {
    built: Instant,
    /// The process table's entry it was built from: an exec replaces it.
    source: Option<Arc<Process>>,
    identity: Arc<ProcessIdentity>,
}

pub(crate) struct Identities {
    pub(crate) processes: ProcessTable,
    users: NameDb,
    groups: NameDb,
    pub(crate) cgroups: CgroupPaths,
    deleted: DeletedExes,
    machine_id: String,
    cache: HashMap<Key, Cached>,
}

impl Identities {
    pub(crate) fn new(machine_id: String) -> Self {
        Self {
            processes: ProcessTable::new(),
            users: NameDb::passwd(),
            groups: NameDb::group(),
            cgroups: CgroupPaths::new(crate::kernel::mounts::cgroup2_mount()),
            deleted: DeletedExes::default(),
            machine_id,
            cache: HashMap::new(),
        }
    }

    /// The identity of the task `t`; None for no task (pid 0).
    pub(crate) fn of(&mut self, t: &Task, clock: &BootClock) -> Option<Arc<ProcessIdentity>> {
        if t.pid == 0 {
            return None;
        }
        let key = Key {
            pid: t.pid,
            start_ns: t.start_ns,
            ppid: t.ppid,
            uid: t.uid,
            gid: t.gid,
            cgroup_id: t.cgroup_id,
            comm: t.comm,
        };
        let source = self.processes.lookup(t.pid, t.start_ns);
        if let Some(c) = self.cache.get(&key) {
            let same_source = match (&c.source, &source) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if same_source && c.built.elapsed() < REFRESH {
                return Some(c.identity.clone());
            }
        }
        let identity = Arc::new(self.build(t, source.as_deref(), clock));
        if self.cache.len() >= CAPACITY {
            self.cache.clear();
        }
        self.cache.insert(
            key,
            Cached {
                built: Instant::now(),
                source,
                identity: identity.clone(),
            },
        );
        Some(identity)
    }

    fn build(&mut self, t: &Task, proc: Option<&Process>, clock: &BootClock) -> ProcessIdentity {
        let comm_len = t.comm.iter().position(|b| *b == 0).unwrap_or(t.comm.len());
        let mut id = ProcessIdentity {
            pid: t.pid,
            comm: text_of(&t.comm[..comm_len]),
            uid: t.uid,
            user: self.users.name(t.uid),
            gid: t.gid,
            group: self.groups.name(t.gid),
            cgroup_id: t.cgroup_id,
            ..ProcessIdentity::default()
        };
        self.cgroup(t.cgroup_id, &mut id);
        if t.start_ns > 0 {
            id.start_time = Some(clock.wall(t.start_ns));
            id.entity_id = Some(process_entity_id(&self.machine_id, t.start_ns, t.pid));
        }
        id.ppid = if t.ppid != 0 {
            t.ppid
        } else {
            proc.map_or(0, |p| p.ppid)
        };
        if let Some(p) = proc {
            self.image(p, &mut id);
        }
        id
    }

    fn cgroup(&mut self, cgroup_id: u64, id: &mut ProcessIdentity) {
        let Some(path) = (cgroup_id != 0)
            .then(|| self.cgroups.path(cgroup_id))
            .flatten()
        else {
            return;
        };
        if let Some(c) = container_of(&path) {
            id.container_id = Some(c.id);
            id.container_runtime = Some(c.runtime.to_string());
        }
        id.systemd_unit = systemd_unit(&path);
        id.cgroup_path = Some(path);
    }

    /// Executable, command line and parent from the process table's entry.
    fn image(&mut self, p: &Process, id: &mut ProcessIdentity) {
        if let Some(path) = &p.image_path {
            id.exe = path.rsplit(|b| *b == b'/').next().map(text_of);
            id.image_path = Some(text_of(path));
            // Deleted after exec (the kernel saw a linked file): /proc says so while it runs.
            id.image_deleted = Some(p.image_deleted || self.deleted.check(p.pid, p.start_ns));
        }
        if !p.args.is_empty() {
            id.command_line = Some(quote_args(&p.args));
            id.args = Some(p.args.iter().map(|a| text_of(a)).collect());
            id.command_line_truncated = Some(p.args_truncated);
        }
        if let Some(parent) = self.processes.lookup(p.ppid, 0) {
            id.parent_exe = parent.image_path.as_ref().map(|b| text_of(b));
            if parent.start_ns > 0 {
                id.parent_entity_id = Some(process_entity_id(
                    &self.machine_id,
                    parent.start_ns,
                    parent.pid,
                ));
            }
        }
    }
}

/// Whether a running process's executable has been deleted since it started, from
/// /proc/PID/exe, looked at once a second at most per process: a readlink per event was a
/// quarter of the agent's CPU under a connection storm.
#[derive(Default)]
struct DeletedExes {
    seen: HashMap<(u32, u64), (bool, Instant)>,
}

impl DeletedExes {
    const RECHECK: Duration = Duration::from_secs(1);

    fn check(&mut self, pid: u32, start_ns: u64) -> bool {
        if let Some((deleted, at)) = self.seen.get(&(pid, start_ns)) {
            if *deleted || at.elapsed() < Self::RECHECK {
                return *deleted;
            }
        }
        let deleted = std::fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|p| p.as_os_str().as_encoded_bytes().ends_with(b" (deleted)"));
        if self.seen.len() > 65_536 {
            self.seen.retain(|_, (_, at)| at.elapsed() < Self::RECHECK);
        }
        self.seen.insert((pid, start_ns), (deleted, Instant::now()));
        deleted
    }
}
