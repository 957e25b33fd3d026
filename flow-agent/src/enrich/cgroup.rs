//! cgroup id → cgroup path, and what the path says: container id and runtime, systemd unit.
//! The kernel gives the cgroup v2 id (the inode of the cgroup's directory); the path is found
//! by walking the cgroup2 mount, cached, and walked again only when an unknown id appears.
//!
//! Bounded: a user may create and remove cgroups at will (a delegated subtree). A walk that
//! covers the whole hierarchy marks the cached cgroups it no longer finds as removed; they stay
//! known [`REMOVED_LINGER`] for records still in flight, then go. At most [`CAPACITY`] paths are
//! kept: a full cache first drops its removed cgroups, then starts over.
use std::{
    collections::HashMap,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// Directories walked at most per refresh: a bound on the cost of a host with huge hierarchies.
const MAX_DIRS: usize = 100_000;
/// An unknown id triggers a new walk at most this often.
const MIN_REFRESH: Duration = Duration::from_millis(500);
/// Paths kept at most (a walk finds at most [`MAX_DIRS`]; the rest are removed cgroups still
/// lingering and paths read for processes).
pub(crate) const CAPACITY: usize = 131_072;
/// How long a removed cgroup stays known.
pub(crate) const REMOVED_LINGER: Duration = Duration::from_secs(120);

struct Entry {
    path: String,
    /// When a walk first missed it: the cgroup was removed.
    removed: Option<Instant>,
}

pub(crate) struct CgroupPaths {
    root: Option<PathBuf>,
    by_id: HashMap<u64, Entry>,
    last_walk: Option<Instant>,
    /// Entries marked removed (so that pruning costs nothing when there are none).
    removed: usize,
    capacity: usize,
    linger: Duration,
    min_refresh: Duration,
    /// Paths dropped because the cache was full.
    pub(crate) dropped: u64,
}

impl CgroupPaths {
    pub(crate) fn new(root: Option<PathBuf>) -> Self {
        Self {
            root,
            by_id: HashMap::new(),
            last_walk: None,
            removed: 0,
            capacity: CAPACITY,
            linger: REMOVED_LINGER,
            min_refresh: MIN_REFRESH,
            dropped: 0,
        }
    }

    /// The cgroup v2 id (inode of its directory) of a running process, from /proc/PID/cgroup;
    /// for processes that started before the agent, whose id the kernel never reported.
    pub(crate) fn id_of_process(&mut self, pid: u32) -> Option<u64> {
        let root = self.root.clone()?;
        let text = std::fs::read(format!("/proc/{pid}/cgroup")).ok()?;
        let rel = super::procfs::cgroup_v2_path(&text)?;
        let rel = rel.strip_prefix(b"/").unwrap_or(rel);
        let dir = root.join(std::ffi::OsStr::from_bytes(rel));
        let id = std::fs::metadata(&dir).ok()?.ino();
        self.insert(id, relative(&root, &dir));
        Some(id)
    }

    /// The cgroup's path relative to the cgroup2 root ("/" for the root itself).
    pub(crate) fn path(&mut self, id: u64) -> Option<String> {
        if let Some(e) = self.by_id.get(&id) {
            return Some(e.path.clone());
        }
        let due = self
            .last_walk
            .is_none_or(|t| t.elapsed() >= self.min_refresh);
        if due {
            self.walk();
        }
        self.by_id.get(&id).map(|e| e.path.clone())
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Forgets the cgroups removed longer ago than the linger time (on the tick).
    pub(crate) fn prune(&mut self) {
        if self.removed == 0 {
            return;
        }
        let linger = self.linger;
        self.by_id
            .retain(|_, e| e.removed.is_none_or(|t| t.elapsed() < linger));
        self.removed = self.by_id.values().filter(|e| e.removed.is_some()).count();
    }

    fn insert(&mut self, id: u64, path: String) {
        if let Some(e) = self.by_id.get_mut(&id) {
            if e.removed.take().is_some() {
                self.removed -= 1;
            }
            e.path = path;
            return;
        }
        if self.by_id.len() >= self.capacity {
            self.make_room();
        }
        self.by_id.insert(
            id,
            Entry {
                path,
                removed: None,
            },
        );
    }

    /// Full: removed cgroups go first; if that is not enough, everything (walks find again
    /// what still exists).
    fn make_room(&mut self) {
        let before = self.by_id.len();
        if self.removed > 0 {
            self.by_id.retain(|_, e| e.removed.is_none());
            self.removed = 0;
        }
        if self.by_id.len() >= self.capacity {
            self.by_id.clear();
        }
        self.dropped += (before - self.by_id.len()) as u64;
    }

    /// Walks the hierarchy (at most [`MAX_DIRS`] directories, and no more than the cache
    /// holds). The paths found replace the cache; the cached ones not found are kept after
    /// them while there is room, marked removed when the walk covered the whole hierarchy.
    fn walk(&mut self) {
        self.last_walk = Some(Instant::now());
        let Some(root) = self.root.clone() else {
            return;
        };
        let limit = MAX_DIRS.min(self.capacity);
        let mut fresh: HashMap<u64, Entry> = HashMap::new();
        let mut stack = vec![root.clone()];
        let mut seen = 0;
        let mut complete = true;
        while let Some(dir) = stack.pop() {
            seen += 1;
            if seen > limit {
                log::warn!("cgroup walk stopped after {limit} directories");
                complete = false;
                break;
            }
            if let Ok(meta) = std::fs::metadata(&dir) {
                let path = relative(&root, &dir);
                fresh.insert(
                    meta.ino(),
                    Entry {
                        path,
                        removed: None,
                    },
                );
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        let now = Instant::now();
        let mut rest: Vec<(u64, Entry)> = self
            .by_id
            .drain()
            .filter(|(id, _)| !fresh.contains_key(id))
            .collect();
        // Room goes to the paths still current first, then to the most recently removed.
        rest.sort_by_key(|(_, e)| std::cmp::Reverse(e.removed.map_or(now, |t| t)));
        for (id, mut e) in rest {
            if fresh.len() >= self.capacity {
                self.dropped += 1;
                continue;
            }
            if complete && e.removed.is_none() {
                e.removed = Some(now);
            }
            fresh.insert(id, e);
        }
        self.removed = fresh.values().filter(|e| e.removed.is_some()).count();
        self.by_id = fresh;
    }
}

/// The path of `dir` under `root`, as text without loss (cgroup names need not be UTF-8).
fn relative(root: &Path, dir: &Path) -> String {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    let mut bytes = b"/".to_vec();
    bytes.extend_from_slice(rel.as_os_str().as_bytes());
    super::escape::text_of(&bytes)
}

/// A container the cgroup path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Container {
    pub(crate) id: String,
    pub(crate) runtime: &'static str,
}

fn hex64(s: &str) -> Option<&str> {
    let s = s.get(..64)?;
    s.bytes().all(|b| b.is_ascii_hexdigit()).then_some(s)
}

/// Recognises docker, containerd (CRI), CRI-O and podman cgroup names, under systemd or
/// cgroupfs drivers, e.g. `/system.slice/docker-<id>.scope`, `/docker/<id>`,
/// `/kubepods.slice/.../cri-containerd-<id>.scope`, `/machine.slice/libpod-<id>.scope`.
pub(crate) fn container_of(path: &str) -> Option<Container> {
    const PREFIXES: &[(&str, &str)] = &[
        ("docker-", "docker"),
        ("cri-containerd-", "containerd"),
        ("crio-", "cri-o"),
        ("libpod-", "podman"),
    ];
    for part in path.split('/').rev() {
        for (prefix, runtime) in PREFIXES {
            if let Some(id) = part.strip_prefix(prefix).and_then(hex64) {
                return Some(Container {
                    id: id.to_string(),
                    runtime,
                });
            }
        }
    }
    let parts: Vec<&str> = path.split('/').collect();
    for pair in parts.windows(2) {
        let runtime = match pair[0] {
            "docker" => "docker",
            "libpod_parent" => "podman",
            p if p.starts_with("kubepods") || p.starts_with("pod") => "containerd",
            _ => continue,
        };
        if let Some(id) = hex64(pair[1]) {
            return Some(Container {
                id: id.to_string(),
                runtime,
            });
        }
    }
    None
}

/// The systemd unit a cgroup path belongs to: its last `.service` or `.scope` component.
pub(crate) fn systemd_unit(path: &str) -> Option<String> {
    path.split('/')
        .rev()
        .find(|p| p.ends_with(".service") || p.ends_with(".scope"))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1c2b0e9d8a7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";

    #[test]
    fn recognises_runtimes() {
        let cases = [
            (format!("/system.slice/docker-{ID}.scope"), "docker"),
            (format!("/docker/{ID}"), "docker"),
            (format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-{ID}.scope"), "containerd"),
            (format!("/kubepods/besteffort/pod1234/{ID}"), "containerd"),
            (format!("/kubepods.slice/kubepods-pod1.slice/crio-{ID}.scope"), "cri-o"),
            (format!("/machine.slice/libpod-{ID}.scope/container"), "podman"),
        ];
        for (path, runtime) in cases {
            let c = container_of(&path).unwrap_or_else(|| panic!("{path}"));
            assert_eq!((c.id.as_str(), c.runtime), (ID, runtime), "{path}");
        }
        assert_eq!(
            container_of("/user.slice/user-0.slice/session-1.scope"),
            None
        );
        assert_eq!(container_of("/docker/not-an-id"), None);
    }

    #[test]
    fn finds_systemd_units() {
        assert_eq!(
            systemd_unit("/system.slice/nginx.service").as_deref(),
            Some("nginx.service")
        );
        assert_eq!(
            systemd_unit("/user.slice/user-0.slice/session-3.scope").as_deref(),
            Some("session-3.scope")
        );
        assert_eq!(systemd_unit("/"), None);
    }

    /// A directory tree standing in for the cgroup2 mount (ids are directory inodes on any
    /// file system).
    struct Tree(PathBuf);

    impl Tree {
        fn new(name: &str) -> Self {
            let root = std::env::temp_dir()
                .join(format!("flow-agent-cgroups-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(&root).unwrap();
            Self(root)
        }

        fn add(&self, rel: &str) -> u64 {
            let dir = self.0.join(rel);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::metadata(&dir).unwrap().ino()
        }

        fn remove(&self, rel: &str) {
            std::fs::remove_dir(self.0.join(rel)).unwrap();
        }

        fn paths(&self) -> CgroupPaths {
            let mut p = CgroupPaths::new(Some(self.0.clone()));
            p.min_refresh = Duration::ZERO;
            p
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn removed_cgroups_linger_then_go() {
        let tree = Tree::new("removed");
        let a = tree.add("system.slice/a.service");
        let b = tree.add("user.slice/b.scope");
        let mut paths = tree.paths();
        assert_eq!(paths.path(a).as_deref(), Some("/system.slice/a.service"));
        assert_eq!(paths.len(), 5, "root, two slices, two units");

        // Created first: a file system may give a removed directory's inode to the next one
        // (cgroup ids are never reused).
        let c = tree.add("user.slice/c.scope");
        tree.remove("user.slice/b.scope");
        // An unknown id walks again: b is marked removed, still named for records in flight.
        assert_eq!(paths.path(c).as_deref(), Some("/user.slice/c.scope"));
        assert_eq!(paths.removed, 1);
        assert_eq!(paths.path(b).as_deref(), Some("/user.slice/b.scope"));
        paths.prune();
        assert_eq!(paths.len(), 6, "within its linger");

        paths.linger = Duration::ZERO;
        paths.prune();
        assert_eq!((paths.len(), paths.removed), (5, 0));
        assert_eq!(paths.path(b), None);
        assert_eq!(paths.path(a).as_deref(), Some("/system.slice/a.service"));
    }

    #[test]
    fn a_full_cache_keeps_current_cgroups_first() {
        let tree = Tree::new("full");
        let mut paths = tree.paths();
        paths.capacity = 8;
        let ids: Vec<u64> = (0..6).map(|i| tree.add(&format!("g{i}"))).collect();
        assert!(paths.path(ids[0]).is_some());
        assert_eq!(paths.len(), 7, "the root and g0..g5");
        let more: Vec<u64> = (6..9).map(|i| tree.add(&format!("g{i}"))).collect();
        for i in 0..4 {
            tree.remove(&format!("g{i}"));
        }
        // The walk finds the root and g4..g8 (6); two of the four removed ones fit beside them.
        assert_eq!(paths.path(more[2]).as_deref(), Some("/g8"));
        assert_eq!((paths.len(), paths.removed, paths.dropped), (8, 2, 2));
        for (i, id) in ids
            .iter()
            .enumerate()
            .skip(4)
            .chain(more.iter().enumerate())
        {
            assert!(paths.path(*id).is_some(), "g{i}");
        }
        // A path read for a process when full: the removed ones make room.
        paths.insert(1, "/elsewhere".into());
        assert_eq!((paths.len(), paths.removed, paths.dropped), (7, 0, 4));

        // More live cgroups than the cache holds: it stays within its cap.
        let many: Vec<u64> = (9..30).map(|i| tree.add(&format!("g{i}"))).collect();
        for id in &many {
            let _ = paths.path(*id);
            assert!(paths.len() <= 8, "{} paths", paths.len());
        }
        assert!(paths.dropped > 4);
        paths.insert(2, "/again".into());
        assert!(paths.len() <= 8);
    }

    #[test]
    fn maps_ids_of_a_real_hierarchy() {
        let Some(root) = crate::kernel::mounts::cgroup2_mount() else {
            panic!("no cgroup2 mount: the agent needs one");
        };
        let dir = root.join(format!("flow-agent-test-{}", std::process::id()));
        std::fs::create_dir(&dir).expect("creating a cgroup (needs root)");
        let id = std::fs::metadata(&dir).unwrap().ino();
        let mut paths = CgroupPaths::new(Some(root.clone()));
        let found = paths.path(id);
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(
            found,
            Some(format!("/flow-agent-test-{}", std::process::id()))
        );
        let root_id = std::fs::metadata(&root).unwrap().ino();
        assert_eq!(paths.path(root_id).as_deref(), Some("/"));
    }
}
