//! Mount points read from /proc/self/mountinfo: the cgroup v2 hierarchy (/sys/fs/cgroup on most
//! systems, /sys/fs/cgroup/unified on hybrid ones) and tracefs are found, never assumed.
use std::path::PathBuf;

pub(crate) const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The first mount point of filesystem type `fstype` in `mountinfo` text.
pub fn find_mount(mountinfo: &str, fstype: &str) -> Option<PathBuf> {
    // Fields: id parent major:minor root mount-point options [optional...] - fstype source ...
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let ty = right.split_whitespace().next()?;
        let mount_point = left.split_whitespace().nth(4)?;
        (ty == fstype).then(|| PathBuf::from(unescape(mount_point)))
    })
}

pub(crate) fn cgroup2_mount_in(mountinfo: &str) -> Option<PathBuf> {
    find_mount(mountinfo, "cgroup2")
}

pub(crate) fn cgroup2_mount() -> Option<PathBuf> {
    cgroup2_mount_in(&std::fs::read_to_string(MOUNTINFO).ok()?)
}

/// mountinfo escapes space, tab, newline and backslash as octal (\040...).
pub fn unescape(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // Three octal digits of a byte: the first at most 3 (\377), anything else is literal.
        if b[i] == b'\\'
            && i + 3 < b.len()
            && (b'0'..=b'3').contains(&b[i + 1])
            && b[i + 2..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hybrid_and_unified_mounts() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount_in(hybrid),
            Some("/sys/fs/cgroup/unified".into())
        );
        let unified = "30 24 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount_in(unified), Some("/sys/fs/cgroup".into()));
        assert_eq!(
            cgroup2_mount_in("1 2 0:1 / / rw - ext4 /dev/vda rw\n"),
            None
        );
    }

    #[test]
    fn unescapes_octal() {
        let line = "41 31 0:38 / /mnt/my\\040cg rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount_in(line), Some("/mnt/my cg".into()));
        // Not a byte: kept as written (found by fuzzing: \777 overflowed).
        assert_eq!(unescape("a\\777b\\134"), "a\\777b\\");
    }
}
