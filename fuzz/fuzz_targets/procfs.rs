//! What the agent reads from /proc and system files, much of it chosen by whoever named a
//! process, a file or a cgroup: stat, status, cmdline, the exe link, cgroup, mountinfo.
#![no_main]
use flow_agent::{
    enrich::procfs,
    kernel::mounts,
};
use libfuzzer_sys::fuzz_target;
use ::procfs::FromRead;

/// `stat` is read with the `procfs` crate; what a process chooses there is its name (any bytes
/// but NUL, 15 at most), and the fields after it must come out whatever the name.
fn stat_with_name(data: &[u8]) {
    let name = &data[..data.len().min(15)];
    if name.contains(&0) {
        return;
    }
    let mut stat = b"4242 (".to_vec();
    stat.extend_from_slice(name);
    stat.extend_from_slice(b") S 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654");
    stat.extend_from_slice(" 0".repeat(17).as_bytes());
    let s = ::procfs::process::Stat::from_read(&stat[..]).expect("a kernel-shaped stat line");
    assert_eq!((s.ppid, s.starttime), (17, 987654));
}

fuzz_target!(|data: &[u8]| {
    stat_with_name(data);
    let _ = procfs::status_real_gid(data);
    let _ = procfs::status_ids(data, b"Uid:");
    let _ = procfs::cgroup_v2_path(data);
    let (path, deleted) = procfs::exe_link(data);
    assert!(path.len() + if deleted { 10 } else { 0 } == data.len());
    let max = data.first().map_or(0, |b| usize::from(*b) * 16);
    let (args, truncated) = procfs::cmdline_args(data, max);
    assert!(args.iter().map(|a| a.len()).sum::<usize>() <= max);
    assert_eq!(truncated, data.len() > max);
    let text = String::from_utf8_lossy(data);
    let _ = mounts::find_mount(&text, "cgroup2");
    let _ = mounts::unescape(&text);
});
