//! Linux capabilities of the calling thread, over the raw syscalls (capget, capset, prctl): no
//! libcap. Every call here acts on ONE thread — the kernel keeps credentials per thread — which
//! is why [`super::threads`] repeats them in every thread of the agent.
use std::fmt;

/// A set of capabilities as the kernel's bit mask (bit n = capability number n).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct CapSet(pub(crate) u64);

/// Capability names by number, as in `<linux/capability.h>` without the `CAP_` prefix.
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Capability numbers the agent names.
pub(crate) mod cap {
    pub(crate) const DAC_READ_SEARCH: u32 = 2;
    #[cfg(test)]
    pub(crate) const SETGID: u32 = 6;
    #[cfg(test)]
    pub(crate) const SETUID: u32 = 7;
    pub(crate) const SETPCAP: u32 = 8;
    pub(crate) const NET_ADMIN: u32 = 12;
    pub(crate) const SYS_PTRACE: u32 = 19;
    pub(crate) const SYS_ADMIN: u32 = 21;
    #[cfg(test)]
    pub(crate) const SYS_RESOURCE: u32 = 24;
    pub(crate) const PERFMON: u32 = 38;
    pub(crate) const BPF: u32 = 39;
}

impl CapSet {
    pub(crate) const EMPTY: CapSet = CapSet(0);

    pub(crate) const fn of(caps: &[u32]) -> CapSet {
        let mut bits = 0u64;
        let mut i = 0;
        while i < caps.len() {
            bits |= 1 << caps[i];
            i += 1;
        }
        CapSet(bits)
    }

    pub(crate) fn contains(self, cap: u32) -> bool {
        cap < 64 && self.0 & (1 << cap) != 0
    }

    pub(crate) fn intersect(self, other: CapSet) -> CapSet {
        CapSet(self.0 & other.0)
    }

    pub(crate) fn minus(self, other: CapSet) -> CapSet {
        CapSet(self.0 & !other.0)
    }

    #[cfg(test)]
    pub(crate) fn is_subset_of(self, other: CapSet) -> bool {
        self.0 & !other.0 == 0
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Capability numbers in the set, ascending.
    pub(crate) fn iter(self) -> impl Iterator<Item = u32> {
        (0..64).filter(move |c| self.contains(*c))
    }

    /// `CAP_SYS_ADMIN`-style name; `CAP_<n>` for numbers newer than this table.
    pub(crate) fn name(cap: u32) -> String {
        match NAMES.get(cap as usize) {
            Some(n) => format!("CAP_{n}"),
            None => format!("CAP_{cap}"),
        }
    }

    /// Parses a name with or without `CAP_`, any case (`sys_admin`, `CAP_BPF`).
    #[cfg(test)]
    pub(crate) fn number(name: &str) -> Option<u32> {
        let upper = name.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        NAMES.iter().position(|n| *n == bare).map(|i| i as u32)
    }

    /// Parses a hex mask as /proc/<pid>/status prints it (`CapEff:\t00000000a80425fb`).
    pub(crate) fn from_hex(hex: &str) -> Option<CapSet> {
        u64::from_str_radix(hex.trim(), 16).ok().map(CapSet)
    }
}

impl fmt::Display for CapSet {
    /// Space-separated names, as systemd writes them (`CAP_DAC_READ_SEARCH CAP_SYS_ADMIN`);
    /// `none` for the empty set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<String> = self.iter().map(CapSet::name).collect();
        f.write_str(&names.join(" "))
    }
}

/// The capability sets of one thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ThreadCaps {
    pub(crate) effective: CapSet,
    pub(crate) permitted: CapSet,
    pub(crate) inheritable: CapSet,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn join(lo: u32, hi: u32) -> CapSet {
    CapSet(u64::from(lo) | (u64::from(hi) << 32))
}

/// The calling thread's sets. Async-signal-safe (one syscall); Err holds the errno.
pub(crate) fn get() -> Result<ThreadCaps, i32> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two CapData for version 3, the array's size.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(errno());
    }
    Ok(ThreadCaps {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

/// Sets the calling thread's sets. Async-signal-safe; Err holds the errno.
pub(crate) fn set(caps: ThreadCaps) -> Result<(), i32> {
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let split = |s: CapSet| (s.0 as u32, (s.0 >> 32) as u32);
    let (e0, e1) = split(caps.effective);
    let (p0, p1) = split(caps.permitted);
    let (i0, i1) = split(caps.inheritable);
    let data = [
        CapData {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        CapData {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: capset reads two CapData for version 3, the array's size.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if rc != 0 {
        return Err(errno());
    }
    Ok(())
}

fn prctl(option: libc::c_int, arg: libc::c_ulong) -> Result<libc::c_long, i32> {
    // SAFETY: the prctl options used here take integer arguments only.
    let rc = unsafe { libc::syscall(libc::SYS_prctl, option, arg, 0usize, 0usize, 0usize) };
    if rc < 0 {
        Err(errno())
    } else {
        Ok(rc)
    }
}

/// Whether `cap` is in the calling thread's bounding set; None if the kernel does not know it.
pub(crate) fn in_bounding_set(cap: u32) -> Option<bool> {
    prctl(libc::PR_CAPBSET_READ, cap.into())
        .ok()
        .map(|r| r == 1)
}

/// The calling thread's bounding set (capabilities up to `last`).
pub(crate) fn bounding_set(last: u32) -> CapSet {
    CapSet(
        (0..=last.min(63))
            .filter(|c| in_bounding_set(*c) == Some(true))
            .fold(0, |bits, c| bits | 1 << c),
    )
}

/// Removes `cap` from the calling thread's bounding set (needs CAP_SETPCAP).
pub(crate) fn drop_bounding(cap: u32) -> Result<(), i32> {
    prctl(libc::PR_CAPBSET_DROP, cap.into()).map(drop)
}

/// Empties the calling thread's ambient set; kernels before 4.3 have none (EINVAL is fine).
pub(crate) fn clear_ambient() -> Result<(), i32> {
    match prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    ) {
        Err(libc::EINVAL) => Ok(()),
        other => other.map(drop),
    }
}

/// no_new_privs: no execve of this thread or its children can gain privileges again.
pub(crate) fn set_no_new_privs() -> Result<(), i32> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map(drop)
}

/// Keep the permitted set across a change of uid away from 0 (cleared again by the kernel
/// on the next execve).
pub(crate) fn set_keep_caps(keep: bool) -> Result<(), i32> {
    prctl(libc::PR_SET_KEEPCAPS, keep.into()).map(drop)
}

/// The highest capability number this kernel knows.
pub(crate) fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        // Linux 5.9+ (CAP_CHECKPOINT_RESTORE); older kernels answer EINVAL for the extra numbers.
        .unwrap_or(40)
}

pub(crate) fn errno() -> i32 {
    // SAFETY: errno is thread-local; reading it has no preconditions.
    unsafe { *libc::__errno_location() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for (i, n) in NAMES.iter().enumerate() {
            assert_eq!(CapSet::number(n), Some(i as u32));
            assert_eq!(CapSet::name(i as u32), format!("CAP_{n}"));
        }
        assert_eq!(CapSet::number("cap_sys_admin"), Some(cap::SYS_ADMIN));
        assert_eq!(CapSet::number("bpf"), Some(cap::BPF));
        assert_eq!(CapSet::number("CAP_NO_SUCH"), None);
        assert_eq!(CapSet::name(45), "CAP_45");
    }

    #[test]
    fn constants_match_the_table() {
        for (n, name) in [
            (cap::DAC_READ_SEARCH, "DAC_READ_SEARCH"),
            (cap::SETGID, "SETGID"),
            (cap::SETUID, "SETUID"),
            (cap::SETPCAP, "SETPCAP"),
            (cap::NET_ADMIN, "NET_ADMIN"),
            (cap::SYS_PTRACE, "SYS_PTRACE"),
            (cap::SYS_ADMIN, "SYS_ADMIN"),
            (cap::SYS_RESOURCE, "SYS_RESOURCE"),
            (cap::PERFMON, "PERFMON"),
            (cap::BPF, "BPF"),
        ] {
            assert_eq!(NAMES[n as usize], name);
        }
    }

    #[test]
    fn sets_print_and_parse_like_proc() {
        let set = CapSet::of(&[cap::SYS_ADMIN, cap::DAC_READ_SEARCH, cap::SYS_PTRACE]);
        assert_eq!(set.0, 0x0000_0000_0028_0004);
        assert_eq!(CapSet::from_hex("0000000000280004"), Some(set));
        assert_eq!(
            set.to_string(),
            "CAP_DAC_READ_SEARCH CAP_SYS_PTRACE CAP_SYS_ADMIN"
        );
        assert_eq!(CapSet::EMPTY.to_string(), "none");
        assert!(set.is_subset_of(CapSet(u64::MAX)));
        assert!(!CapSet::of(&[cap::BPF]).is_subset_of(set));
        assert_eq!(
            set.minus(CapSet::of(&[cap::SYS_ADMIN])),
            CapSet::of(&[2, 19])
        );
    }

    #[test]
    fn reads_this_threads_sets() {
        let caps = get().unwrap();
        assert!(caps.effective.is_subset_of(caps.permitted));
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(CapSet::from_hex)
                .unwrap()
        };
        assert_eq!(caps.effective, field("CapEff:"));
        assert_eq!(caps.permitted, field("CapPrm:"));
        assert_eq!(bounding_set(last_cap()), field("CapBnd:"));
    }
}
