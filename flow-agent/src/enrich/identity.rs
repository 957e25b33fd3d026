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
    image_hash::{ImageHash, ImageHasher},
    process::{CommCheck, Process, ProcessTable},
    users::NameDb,
};
use crate::{
    clock::BootClock,
    event::{Ancestor, ProcessIdentity},
};

/// How long a built identity is reused without looking at its sources again.
const REFRESH: Duration = Duration::from_secs(1);
/// Identities kept at most; beyond it the cache starts over.
const CAPACITY: usize = 16_384;
/// Bytes of the cached identities' strings kept at most; beyond it the cache starts over. A
/// process chooses its command line (4 KiB kept, up to four times that once escaped, and again
/// in `args`): 16,384 such identities would hold half a gigabyte.
const CAPACITY_BYTES: usize = 32 << 20;
/// Ancestors named at most (`[enrich] ancestry_depth`).
pub(crate) const MAX_ANCESTRY_DEPTH: usize = 16;
/// Processes whose deleted-executable check is remembered at most.
const DELETED_CAPACITY: usize = 65_536;

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
    /// User and group lookups answered when it was built ([`Identities::names_answered`]).
    names_answered: u64,
}

pub(crate) struct Identities {
    pub(crate) processes: ProcessTable,
    users: NameDb,
    groups: NameDb,
    pub(crate) cgroups: CgroupPaths,
    deleted: DeletedExes,
    pub(crate) hasher: ImageHasher,
    /// Ancestors named beyond the parent's fields (0: none).
    pub(crate) ancestry_depth: usize,
    machine_id: String,
    cache: HashMap<Key, Cached>,
    /// What the cached identities hold, as [`identity_bytes`] counts it.
    cache_bytes: usize,
}

impl Identities {
    /// `hash_max_bytes`: executables larger than this are not hashed (0: none is).
    pub(crate) fn new(machine_id: String, hash_max_bytes: u64) -> Self {
        Self {
            processes: ProcessTable::new(),
            users: NameDb::passwd(),
            groups: NameDb::group(),
            cgroups: CgroupPaths::new(crate::kernel::mounts::cgroup2_mount()),
            deleted: DeletedExes::default(),
            hasher: ImageHasher::new(hash_max_bytes),
            ancestry_depth: 0,
            machine_id,
            cache: HashMap::new(),
            cache_bytes: 0,
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
        let mut source = self.processes.lookup(t.pid, t.start_ns);
        if let Some(c) = self.cache.get(&key) {
            let same_source = match (&c.source, &source) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            // A digest that arrived since is shown at once.
            let hash_arrived = c.identity.image_sha256.is_none()
                && c.identity.image_hash_skipped.is_none()
                && source
                    .as_ref()
                    .is_some_and(|p| p.image.hash.get().is_some());
            // So is a name whose first lookup was still running.
            let name_arrived =
                c.names_answered != self.names_answered() && lacks_a_name(&c.identity);
            if same_source && !hash_arrived && !name_arrived && c.built.elapsed() < REFRESH {
                return Some(c.identity.clone());
            }
        }
        // A comm that is not the entry's may be an exec whose record was lost. Checked when an
        // identity is built: once a second at most per task (its comm is in the key).
        let mut unverified = false;
        if let Some(p) = source.clone() {
            match self.processes.check_comm(&p, t.comm) {
                CommCheck::Same => {}
                CommCheck::Replaced(now) => source = Some(now),
                CommCheck::Unverified => unverified = true,
            }
        }
        let names_answered = self.names_answered();
        let mut identity = self.build(t, source.as_deref(), clock, unverified);
        identity.image_unverified = unverified;
        let identity = Arc::new(identity);
        let bytes = identity_bytes(&identity);
        if let Some(old) = self.cache.remove(&key) {
            self.cache_bytes -= identity_bytes(&old.identity);
        }
        if self.cache.len() >= CAPACITY || self.cache_bytes + bytes > CAPACITY_BYTES {
            self.cache.clear();
            self.cache_bytes = 0;
        }
        self.cache_bytes += bytes;
        self.cache.insert(
            key,
            Cached {
                built: Instant::now(),
                source,
                identity: identity.clone(),
                names_answered,
            },
        );
        Some(identity)
    }

    /// Answers of both name lookups so far: a change may name an identity that lacked a name.
    fn names_answered(&self) -> u64 {
        self.users.answered() + self.groups.answered()
    }

    /// `unverified`: the task's comm says its entry's image is not its own, and /proc could
    /// not tell what runs: no image, command line or parent is named rather than a wrong one.
    fn build(
        &mut self,
        t: &Task,
        proc: Option<&Process>,
        clock: &BootClock,
        unverified: bool,
    ) -> ProcessIdentity {
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
            if !unverified {
                self.image(p, &mut id);
            }
            self.creds(p, &mut id);
        }
        id
    }

    /// Effective and login identity from the last credentials the kernel reported.
    fn creds(&mut self, p: &Process, id: &mut ProcessIdentity) {
        let Some(c) = p.creds else { return };
        id.euid = Some(c.euid);
        id.effective_user = self.users.name(c.euid);
        id.egid = Some(c.egid);
        id.auid = c.auid;
        id.login_user = c.auid.and_then(|auid| self.users.name(auid));
        id.session_id = c.session_id;
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
        let image = &p.image;
        id.image_inherited = p.inherited;
        id.image_refreshed = p.refreshed;
        if let Some(path) = &image.path {
            id.exe = path.rsplit(|b| *b == b'/').next().map(text_of);
            id.image_path = Some(text_of(path));
            // Deleted after exec (the kernel saw a linked file): /proc says so while it runs.
            id.image_deleted = Some(image.deleted || self.deleted.check(p.pid, p.start_ns));
            match image.hash.get() {
                Some(ImageHash::Sha256(d)) => id.image_sha256 = Some(d),
                Some(ImageHash::Skipped(why)) => id.image_hash_skipped = Some(why),
                None => self.hasher.request(p.pid, &image.hash),
            }
        }
        if image.has_args() {
            let args: Vec<&[u8]> = image.args().collect();
            id.command_line = Some(quote_args(&args));
            id.args = Some(args.iter().map(|a| text_of(a)).collect());
            id.command_line_truncated = Some(image.args_truncated);
        }
        if let Some(parent) = self.processes.lookup(p.ppid, 0) {
            id.parent_exe = parent.image.path.as_ref().map(|b| text_of(b));
            if parent.image.has_args() {
                let args: Vec<&[u8]> = parent.image.args().collect();
                id.parent_command_line = Some(quote_args(&args));
            }
            if parent.start_ns > 0 {
                id.parent_entity_id = Some(process_entity_id(
                    &self.machine_id,
                    parent.start_ns,
                    parent.pid,
                ));
            }
        }
        id.ancestors = self.ancestors(p.ppid);
    }

    /// Up to `ancestry_depth` ancestors from `ppid` up, as far as the table (or /proc) knows
    /// them: the walk stops at the first unknown one, at init, or at a loop.
    fn ancestors(&mut self, mut ppid: u32) -> Vec<Ancestor> {
        let mut out: Vec<Ancestor> = Vec::new();
        while out.len() < self.ancestry_depth.min(MAX_ANCESTRY_DEPTH) && ppid != 0 {
            let Some(a) = self.processes.lookup(ppid, 0) else {
                break;
            };
            if out.iter().any(|x| x.pid == a.pid) {
                break;
            }
            out.push(Ancestor {
                pid: a.pid,
                entity_id: (a.start_ns > 0)
                    .then(|| process_entity_id(&self.machine_id, a.start_ns, a.pid)),
                image_path: a.image.path.as_ref().map(|b| text_of(b)),
            });
            ppid = a.ppid;
        }
        out
    }
}

/// Whether an id of the identity has no name (yet): its lookup may have answered since.
fn lacks_a_name(id: &ProcessIdentity) -> bool {
    id.user.is_none()
        || id.group.is_none()
        || (id.euid.is_some() && id.effective_user.is_none())
        || (id.auid.is_some() && id.login_user.is_none())
}

/// Heap bytes an identity's strings hold (what makes identities differ in size).
fn identity_bytes(id: &ProcessIdentity) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
    std::mem::size_of::<ProcessIdentity>()
        + id.comm.capacity()
        + [
            &id.exe,
            &id.image_path,
            &id.command_line,
            &id.entity_id,
            &id.parent_exe,
            &id.parent_command_line,
            &id.parent_entity_id,
            &id.user,
            &id.group,
            &id.effective_user,
            &id.login_user,
            &id.cgroup_path,
            &id.container_id,
            &id.container_runtime,
            &id.systemd_unit,
        ]
        .into_iter()
        .map(opt)
        .sum::<usize>()
        + id.ancestors
            .iter()
            .map(|a| std::mem::size_of::<Ancestor>() + opt(&a.entity_id) + opt(&a.image_path))
            .sum::<usize>()
        + id.args.as_ref().map_or(0, |a| {
            a.iter()
                .map(|s| s.capacity() + std::mem::size_of::<String>())
                .sum()
        })
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
        if self.seen.len() >= DELETED_CAPACITY {
            self.seen.retain(|_, (_, at)| at.elapsed() < Self::RECHECK);
            // More processes than that checked within a second: start over.
            if self.seen.len() >= DELETED_CAPACITY {
                self.seen.clear();
            }
        }
        self.seen.insert((pid, start_ns), (deleted, Instant::now()));
        deleted
    }
}

#[cfg(test)]
mod tests {
    use flow_common::{ExecRecord, ARGS_BUF_LEN};

    use super::*;

    #[test]
    fn the_identity_cache_is_bounded_in_bytes() {
        let mut ids = Identities::new("m".into(), 0);
        let clock = BootClock::now();
        // SAFETY: ExecRecord is plain old data; all-zero is valid.
        let mut rec: Box<ExecRecord> = Box::new(unsafe { std::mem::zeroed() });
        // One argument of 4 KiB that is not UTF-8: each byte is written as `\xff`, twice (the
        // command line and `args`).
        rec.args[..ARGS_BUF_LEN - 1].fill(0xff);
        rec.args_len = ARGS_BUF_LEN as u32;
        rec.args_total = ARGS_BUF_LEN as u32;
        let mut largest = 0;
        for pid in 4_190_000..4_192_000 {
            rec.task.pid = pid;
            rec.task.start_ns = u64::from(pid) * 1_000_000_000;
            ids.processes.on_exec(&rec);
            let task = Task {
                pid,
                tid: pid,
                start_ns: rec.task.start_ns,
                ..Task::default()
            };
            let id = ids.of(&task, &clock).expect("an identity");
            assert!(id.command_line.as_ref().is_some_and(|c| c.len() > 16_000));
            largest = largest.max(identity_bytes(&id));
            assert!(
                ids.cache_bytes <= CAPACITY_BYTES,
                "{} bytes",
                ids.cache_bytes
            );
            let held: usize = ids
                .cache
                .values()
                .map(|c| identity_bytes(&c.identity))
                .sum();
            assert_eq!(held, ids.cache_bytes);
        }
        // About 32 KiB each: the byte cap, not the count, started the cache over.
        assert!(largest > 32_000, "{largest}");
        assert!(ids.cache.len() < CAPACITY_BYTES / 32_000 + 1);
        // Within the second, the same task is the same identity.
        let task = Task {
            pid: 4_191_999,
            tid: 4_191_999,
            start_ns: 4_191_999 * 1_000_000_000,
            ..Task::default()
        };
        let a = ids.of(&task, &clock).unwrap();
        assert!(Arc::ptr_eq(&a, &ids.of(&task, &clock).unwrap()));
    }

    /// A user database slower than the pipeline's first wait.
    fn slow_user(uid: u32) -> Option<String> {
        std::thread::sleep(Duration::from_millis(300));
        (uid == 4_321).then(|| "late".to_string())
    }

    #[test]
    fn a_name_that_answers_late_names_the_next_event_within_the_second() {
        let mut ids = Identities::new("m".into(), 0);
        ids.users = NameDb::new(slow_user);
        let clock = BootClock::now();
        let task = Task {
            pid: 4_192_001,
            tid: 4_192_001,
            start_ns: 1,
            uid: 4_321,
            ..Task::default()
        };
        let first = ids.of(&task, &clock).unwrap();
        assert_eq!(first.user, None, "the lookup outlasts the first wait");
        // Both answers (the priming lookup of uid 0, then this one) have come in.
        let deadline = Instant::now() + Duration::from_secs(10);
        while ids.users.answered() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // As if within the second: only the answer can make it build the identity again.
        for c in ids.cache.values_mut() {
            c.built = Instant::now();
        }
        let later = ids.of(&task, &clock).unwrap();
        assert_eq!(later.user.as_deref(), Some("late"));
        // Named now: the cache serves it again.
        assert!(Arc::ptr_eq(&later, &ids.of(&task, &clock).unwrap()));
    }

    #[test]
    fn deleted_executable_checks_are_bounded() {
        let mut d = DeletedExes::default();
        for pid in 0..(DELETED_CAPACITY as u32 + 10) {
            d.check(4_000_000 + pid, 1);
            assert!(d.seen.len() <= DELETED_CAPACITY);
        }
    }
}
