//! What the agent reads from /proc and system files, much of it chosen by whoever named a
//! process, a file or a cgroup: stat, status, cmdline, the exe link, cgroup, mountinfo.
#![no_main]
use flow_agent::{
    enrich::procfs,
    kernel::mounts,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = procfs::stat_fields(data);
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
