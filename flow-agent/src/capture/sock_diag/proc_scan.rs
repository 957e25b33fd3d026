//! /proc scans: network namespaces and socket owners.
use std::{
    collections::HashMap,
    fs,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::{Path, PathBuf},
};

/// At most this many `/proc/[pid]/fd` entries are read per `socket_owners` call, so a host with
/// millions of descriptors costs a bounded scan rather than an unbounded one.
pub(crate) const MAX_FD_ENTRIES: usize = 1 << 20;

/// Process ids under `proc_root`, ascending, so "first pid wins" prefers long-lived processes.
fn pids(proc_root: &Path) -> Vec<u32> {
    let Ok(dir) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids
}

pub(super) fn network_namespaces(proc_root: &Path, named_dir: &Path) -> HashMap<u64, PathBuf> {
    let mut out = HashMap::new();
    // Namespace files all live on the one nsfs superblock: its device tells them apart from
    // stale files left in /run/netns.
    let own = fs::metadata(proc_root.join("self/ns/net")).ok();
    let nsfs_dev = own.as_ref().map(|m| m.dev());
    for pid in pids(proc_root) {
        let path = proc_root.join(format!("{pid}/ns/net"));
        if let Ok(md) = fs::metadata(&path) {
            out.entry(md.ino()).or_insert(path);
        }
    }
    // Our own, even when /proc hides other processes (hidepid) or the scan raced.
    if let Some(md) = &own {
        out.entry(md.ino())
            .or_insert_with(|| proc_root.join(format!("{}/ns/net", std::process::id())));
    }
    // Named namespaces (ip netns add) may hold no process at all.
    if let (Ok(dir), Some(dev)) = (fs::read_dir(named_dir), nsfs_dev) {
        for entry in dir.flatten() {
            let path = entry.path();
            if let Ok(md) = fs::metadata(&path) {
                if md.dev() == dev {
                    out.entry(md.ino()).or_insert(path);
                }
            }
        }
    }
    out
}

/// `socket:[12345]` -> 12345.
pub(super) fn socket_inode(link: &[u8]) -> Option<u64> {
    let digits = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

pub(super) fn socket_owners(proc_root: &Path, max_entries: usize) -> HashMap<u64, u32> {
    let mut out = HashMap::new();
    let mut budget = max_entries;
    'pids: for pid in pids(proc_root) {
        // Threads share their process's descriptor table: the process directory is enough.
        let Ok(fds) = fs::read_dir(proc_root.join(format!("{pid}/fd"))) else {
            continue;
        };
        for entry in fds.flatten() {
            if budget == 0 {
                log::warn!(
                    "socket owner scan stopped after {max_entries} descriptors; \
                     some sockets stay unattributed"
                );
                break 'pids;
            }
            budget -= 1;
            let Ok(target) = fs::read_link(entry.path()) else {
                continue;
            };
            if let Some(inode) = socket_inode(target.as_os_str().as_bytes()) {
                out.entry(inode).or_insert(pid);
            }
        }
    }
    out
}
