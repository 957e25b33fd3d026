//! Parsers of /proc files the `procfs` crate cannot read exactly, apart from their reading: what
//! a process puts there (its arguments in `cmdline`, its executable's name, its name in
//! `status`) is chosen by whoever started it, so every parser takes any bytes without panicking
//! (fuzzed: `fuzz/fuzz_targets/procfs.rs`). `stat` and the exe link are read with the crate
//! (`enrich/process.rs`); docs/architecture.md says why the rest is not.

/// The comm of /proc/PID/stat (between the first `(` and the last `)`), NUL-padded.
pub fn stat_comm(stat: &[u8]) -> [u8; flow_common::COMM_LEN] {
    let mut comm = [0; flow_common::COMM_LEN];
    let open = stat.iter().position(|b| *b == b'(');
    let close = stat.iter().rposition(|b| *b == b')');
    if let (Some(o), Some(c)) = (open, close) {
        let name = stat.get(o + 1..c).unwrap_or_default();
        let n = name.len().min(comm.len() - 1);
        comm[..n].copy_from_slice(&name[..n]);
    }
    comm
}

/// Splits `/proc/PID/cmdline` (NUL-terminated arguments) into at most `max` bytes of
/// arguments; true when some were cut off.
pub fn cmdline_args(cmdline: &[u8], max: usize) -> (Vec<Vec<u8>>, bool) {
    let truncated = cmdline.len() > max;
    let mut raw = &cmdline[..cmdline.len().min(max)];
    if let Some(stripped) = raw.strip_suffix(&[0]) {
        raw = stripped;
    }
    if raw.is_empty() {
        return (Vec::new(), truncated);
    }
    (
        raw.split(|b| *b == 0).map(<[u8]>::to_vec).collect(),
        truncated,
    )
}

/// The target of `/proc/PID/exe`: the path, and whether the kernel marked it ` (deleted)`.
pub fn exe_link(target: &[u8]) -> (Vec<u8>, bool) {
    match target.strip_suffix(b" (deleted)") {
        Some(path) => (path.to_vec(), true),
        None => (target.to_vec(), false),
    }
}

/// The real group id from `/proc/PID/status` (`Gid:\treal\teffective\tsaved\tfs`). The
/// file also holds the process's name, which need not be UTF-8.
pub fn status_real_gid(status: &[u8]) -> Option<u32> {
    let line = status
        .split(|b| *b == b'\n')
        .find_map(|l| l.strip_prefix(b"Gid:"))?;
    std::str::from_utf8(line)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The real and effective id of a `Uid:` or `Gid:` line of `/proc/PID/status`.
pub fn status_ids(status: &[u8], key: &[u8]) -> Option<(u32, u32)> {
    let line = status
        .split(|b| *b == b'\n')
        .find_map(|l| l.strip_prefix(key))?;
    let mut ids = std::str::from_utf8(line).ok()?.split_whitespace();
    Some((ids.next()?.parse().ok()?, ids.next()?.parse().ok()?))
}

/// The cgroup v2 path (relative to the cgroup2 mount) from `/proc/PID/cgroup`: the `0::`
/// line, as bytes (cgroup names need not be UTF-8).
pub fn cgroup_v2_path(cgroup: &[u8]) -> Option<&[u8]> {
    cgroup
        .split(|b| *b == b'\n')
        .find_map(|l| l.strip_prefix(b"0::"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The crate's `stat` parser, with a name holding spaces, parentheses, a newline and bytes
    /// that are not UTF-8: the fields after it are found from the last `)`.
    #[test]
    fn crate_stat_with_a_hostile_command_name() {
        use ::procfs::FromRead;
        let mut stat =
            b"4242 (a) b) (\xff\n) S 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654"
                .to_vec();
        stat.extend_from_slice(" 0".repeat(17).as_bytes());
        let s = ::procfs::process::Stat::from_read(&stat[..]).unwrap();
        assert_eq!((s.ppid, s.starttime), (17, 987654));
    }

    #[test]
    fn crate_stat_of_this_process() {
        let s = ::procfs::process::Process::myself()
            .unwrap()
            .stat()
            .unwrap();
        assert_eq!(s.ppid as u32, std::os::unix::process::parent_id());
        assert!(s.starttime > 0);
    }

    #[test]
    fn cmdline_is_split_and_cut() {
        assert_eq!(
            cmdline_args(b"a\0b c\0\0", 100),
            (vec![b"a".to_vec(), b"b c".to_vec(), b"".to_vec()], false)
        );
        assert_eq!(cmdline_args(b"abcdef\0", 3), (vec![b"abc".to_vec()], true));
        assert_eq!(cmdline_args(b"", 10), (vec![], false));
        assert_eq!(cmdline_args(b"\0", 10), (vec![], false));
    }

    #[test]
    fn deleted_executables_are_recognised() {
        assert_eq!(exe_link(b"/tmp/x (deleted)"), (b"/tmp/x".to_vec(), true));
        assert_eq!(
            exe_link(b"/memfd:payload (deleted)"),
            (b"/memfd:payload".to_vec(), true)
        );
        assert_eq!(
            exe_link(b"/usr/bin/curl"),
            (b"/usr/bin/curl".to_vec(), false)
        );
    }

    #[test]
    fn gid_and_cgroup_lines() {
        assert_eq!(
            status_real_gid(b"Name:\t\xff\nUid:\t0\t0\t0\t0\nGid:\t100\t0\t0\t0\n"),
            Some(100)
        );
        assert_eq!(status_real_gid(b"Gid:\n"), None);
        assert_eq!(
            status_ids(b"Name:\t\xff\nUid:\t0\t1000\t0\t0\n", b"Uid:"),
            Some((0, 1000))
        );
        assert_eq!(status_ids(b"Uid:\t0\n", b"Uid:"), None);
        assert_eq!(
            cgroup_v2_path(b"1:name=systemd:/x\n0::/system.slice/\xff.service\n"),
            Some(&b"/system.slice/\xff.service"[..])
        );
        assert_eq!(cgroup_v2_path(b"1:cpu:/x\n"), None);
    }
}
