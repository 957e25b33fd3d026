//! cgroup id → cgroup path, and what the path says: container id and runtime, systemd unit.
//! The kernel gives the cgroup v2 id (the inode of the cgroup's directory); the path is found
//! by walking the cgroup2 mount, cached, and walked again only when an unknown id appears.
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

pub(crate) struct CgroupPaths {
    root: Option<PathBuf>,
    by_id: HashMap<u64, String>,
    last_walk: Option<Instant>,
}

impl CgroupPaths {
    pub(crate) fn new(root: Option<PathBuf>) -> Self {
        Self {
            root,
            by_id: HashMap::new(),
            last_walk: None,
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
        self.by_id.insert(id, relative(&root, &dir));
        Some(id)
    }

    /// The cgroup's path relative to the cgroup2 root ("/" for the root itself).
    pub(crate) fn path(&mut self, id: u64) -> Option<String> {
        if let Some(p) = self.by_id.get(&id) {
            return Some(p.clone());
        }
        let due = self.last_walk.is_none_or(|t| t.elapsed() >= MIN_REFRESH);
        if due {
            self.walk();
        }
        self.by_id.get(&id).cloned()
    }

    fn walk(&mut self) {
        self.last_walk = Some(Instant::now());
        let Some(root) = self.root.clone() else {
            return;
        };
        let mut stack = vec![root.clone()];
        let mut seen = 0;
        while let Some(dir) = stack.pop() {
            seen += 1;
            if seen > MAX_DIRS {
                log::warn!("cgroup walk stopped after {MAX_DIRS} directories");
                break;
            }
            if let Ok(meta) = std::fs::metadata(&dir) {
                self.by_id.insert(meta.ino(), relative(&root, &dir));
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
