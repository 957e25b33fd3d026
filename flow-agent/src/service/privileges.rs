//! Least privilege: which capabilities the agent needs to start, which it keeps once its
//! kernel programs are attached (docs/security-privileges.md says why for each), the drop, and
//! running as a dedicated user.
use std::ffi::{CStr, CString};

use super::{
    caps::{self, cap, CapSet, ThreadCaps},
    threads::{self, ThreadsError},
};

/// Needed from start until the drop: load and attach the kernel programs (BPF, PERFMON,
/// NET_ADMIN; SYS_ADMIN stands in for the first two before Linux 5.8), read tracefs and other
/// users' `/proc/<pid>/fd` (DAC_READ_SEARCH), read other processes' /proc links (SYS_PTRACE),
/// list sockets in other network namespaces (SYS_ADMIN) and shrink the bounding set at the
/// drop (SETPCAP). Also the unit's AmbientCapabilities.
pub(crate) const STARTUP: CapSet = CapSet::of(&[
    cap::DAC_READ_SEARCH,
    cap::SETPCAP,
    cap::NET_ADMIN,
    cap::SYS_PTRACE,
    cap::SYS_ADMIN,
    cap::PERFMON,
    cap::BPF,
]);

/// Kept after the drop, in the effective, permitted and bounding sets; everything else goes.
/// - SYS_PTRACE: open `/proc/<pid>/ns/net` of any process (to find network namespaces) and
///   read `/proc/<pid>/exe` of processes of other users or that are not dumpable.
/// - SYS_ADMIN: setns(2) into other network namespaces for the sock_diag snapshots behind TCP
///   update events and end totals of containers' flows; it also passes the bpf(2) privilege
///   check on map reads of kernels before 5.19 with unprivileged BPF disabled.
///
/// Not kept, found unneeded after attach: DAC_READ_SEARCH (tracefs and `/proc/<pid>/fd` are
/// read before the drop only), BPF and PERFMON (the ring buffer and maps are read through
/// descriptors already open), NET_ADMIN (inet_diag dumps need none).
pub(crate) const KEPT: CapSet = CapSet::of(&[cap::SYS_PTRACE, cap::SYS_ADMIN]);

/// Environment variable naming the user to run as (until the configuration file has the
/// setting): `FLOW_AGENT_USER=flow-agent`.
pub(crate) const USER_ENV: &str = "FLOW_AGENT_USER";

#[derive(Debug, thiserror::Error)]
pub(crate) enum PrivilegeError {
    #[error("user {0:?} does not exist")]
    NoSuchUser(String),
    #[error("looking up user {name:?}: {source}")]
    Lookup {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("becoming user {name:?} (uid {uid}, gid {gid}) needs CAP_SETUID and CAP_SETGID (start the agent as root): {step}: {source}")]
    Switch {
        name: String,
        uid: u32,
        gid: u32,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("dropping capabilities: {0}")]
    Drop(#[from] ThreadsError),
}

/// A user the agent runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl User {
    /// Looks `name` up through NSS (getpwnam_r).
    pub(crate) fn lookup(name: &str) -> Result<User, PrivilegeError> {
        let cname = CString::new(name).map_err(|_| PrivilegeError::NoSuchUser(name.to_string()))?;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // SAFETY: getpwnam_r fills `pwd` with pointers into `buf`, which outlives their use.
            let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
            let mut found: *mut libc::passwd = std::ptr::null_mut();
            let rc = unsafe {
                libc::getpwnam_r(
                    cname.as_ptr(),
                    &mut pwd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut found,
                )
            };
            if rc == libc::ERANGE && buf.len() < 1 << 20 {
                buf.resize(buf.len() * 4, 0);
                continue;
            }
            if rc != 0 {
                return Err(PrivilegeError::Lookup {
                    name: name.to_string(),
                    source: std::io::Error::from_raw_os_error(rc),
                });
            }
            if found.is_null() {
                return Err(PrivilegeError::NoSuchUser(name.to_string()));
            }
            // SAFETY: pw_name points into `buf`, NUL-terminated by getpwnam_r.
            let pw_name = unsafe { CStr::from_ptr(pwd.pw_name) };
            return Ok(User {
                name: pw_name.to_string_lossy().into_owned(),
                uid: pwd.pw_uid,
                gid: pwd.pw_gid,
            });
        }
    }
}

/// Becomes `user` (its primary group and `groups`, no other supplementary groups) and keeps
/// the [`STARTUP`] capabilities it held, effective again. Called before anything opens files,
/// so that outputs and buffers belong to that user. When already running as `user`, only
/// joins `groups` ([`join_groups`]).
///
/// `groups` are those the file outputs give their files: without CAP_CHOWN (dropped after
/// attach) fchown can give a file only a group its owner is a member of.
pub(crate) fn become_user(user: &User, groups: &[u32]) -> Result<(), PrivilegeError> {
    // SAFETY: these getters cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == user.uid && gid == user.gid {
        join_groups(groups);
        return Ok(());
    }
    let mut member_of = vec![user.gid];
    member_of.extend(groups.iter().filter(|g| **g != user.gid));
    let held = caps::get().unwrap_or_default().permitted;
    let fail = |step: &'static str, source: std::io::Error| PrivilegeError::Switch {
        name: user.name.clone(),
        uid: user.uid,
        gid: user.gid,
        step,
        source,
    };
    let os = |e: i32| std::io::Error::from_raw_os_error(e);
    raise_memlock_limit();
    caps::set_keep_caps(true).map_err(|e| fail("PR_SET_KEEPCAPS", os(e)))?;
    // glibc applies setgroups/setresgid/setresuid to every thread of the process.
    // SAFETY: plain syscalls with valid arguments.
    unsafe {
        if libc::setgroups(member_of.len(), member_of.as_ptr()) != 0 {
            return Err(fail("setgroups", std::io::Error::last_os_error()));
        }
        if libc::setresgid(user.gid, user.gid, user.gid) != 0 {
            return Err(fail("setresgid", std::io::Error::last_os_error()));
        }
        if libc::setresuid(user.uid, user.uid, user.uid) != 0 {
            return Err(fail("setresuid", std::io::Error::last_os_error()));
        }
    }
    caps::set_keep_caps(false).map_err(|e| fail("PR_SET_KEEPCAPS", os(e)))?;
    // The uid change emptied the effective set; permitted survived (keepcaps).
    let keep = held.intersect(STARTUP);
    caps::set(ThreadCaps {
        effective: keep,
        permitted: keep,
        inheritable: CapSet::EMPTY,
    })
    .map_err(|e| fail("capset", os(e)))?;
    log::info!(
        "running as user {} (uid {}, gid {}, groups {member_of:?}) with {keep}",
        user.name,
        user.uid,
        user.gid
    );
    Ok(())
}

/// Adds `groups` to the agent's supplementary groups, those it is not a member of yet, while
/// it may (CAP_SETGID, before the drop), so that the file sink can still give new files these
/// groups once CAP_CHOWN is gone. When it cannot (an agent started without CAP_SETGID, as the
/// unit starts it), it warns: a file sink then refuses a file it cannot give its group, with
/// an error that says what to do, unless the directory's set-group-ID bit gives it already.
pub(crate) fn join_groups(groups: &[u32]) {
    if groups.is_empty() {
        return;
    }
    let mut member_of = supplementary_groups();
    // SAFETY: getegid cannot fail.
    let egid = unsafe { libc::getegid() };
    let missing: Vec<u32> = groups
        .iter()
        .copied()
        .filter(|g| *g != egid && !member_of.contains(g))
        .collect();
    if missing.is_empty() {
        return;
    }
    member_of.extend(&missing);
    // SAFETY: a valid array of member_of.len() gids; glibc applies it to every thread.
    if unsafe { libc::setgroups(member_of.len(), member_of.as_ptr()) } != 0 {
        log::warn!(
            "cannot join groups {missing:?} named by file outputs ({}): their files get these groups only if the agent's user is a member (usermod -aG, or SupplementaryGroups= in the unit) or the directory is set-group-ID with that group",
            std::io::Error::last_os_error()
        );
        return;
    }
    log::info!(
        "joined groups {missing:?} named by file outputs, to give their files these groups after the capability drop"
    );
}

/// The supplementary groups of the process.
fn supplementary_groups() -> Vec<u32> {
    // SAFETY: getgroups with size 0 only counts; then fills a buffer of that size.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n <= 0 {
        return Vec::new();
    }
    let mut gids = vec![0; n as usize];
    let got = unsafe { libc::getgroups(n, gids.as_mut_ptr()) };
    gids.truncate(got.max(0) as usize);
    gids
}

/// Before Linux 5.11 BPF maps count against RLIMIT_MEMLOCK (64 KiB by default), and only a
/// process with CAP_SYS_RESOURCE may raise it: the switched user has not, so the limit is
/// lifted (soft and hard) while still privileged, as the unit's LimitMEMLOCK=infinity does.
/// Without it the agent started as root with FLOW_AGENT_USER failed on 5.10 ("failed to create
/// map: Operation not permitted"). A failure is left to the map creation to report.
fn raise_memlock_limit() {
    let infinity = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &infinity) } != 0 {
        log::debug!(
            "RLIMIT_MEMLOCK not raised: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// What [`drop_after_attach`] left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DropReport {
    /// Capabilities held after the drop ([`KEPT`] minus what the agent never had).
    pub(crate) kept: CapSet,
    /// Of [`KEPT`], those the agent did not have to begin with.
    pub(crate) missing: CapSet,
    /// Whether the bounding set shrank to [`KEPT`] (it cannot without CAP_SETPCAP).
    pub(crate) bounding_reduced: bool,
}

/// Drops every capability but [`KEPT`] from every thread (effective, permitted,
/// inheritable, ambient and bounding sets) and sets no_new_privs.
pub(crate) fn drop_after_attach() -> Result<DropReport, PrivilegeError> {
    let before = caps::get().unwrap_or_default();
    let result = threads::drop_everywhere(KEPT)?;
    let after = caps::get().unwrap_or_default();
    let report = DropReport {
        kept: after.permitted,
        missing: KEPT.minus(before.permitted),
        bounding_reduced: result.bounding_errno.is_none(),
    };
    log::info!(
        "capabilities dropped after attach: kept {} (effective, permitted, bounding), dropped {} others; no_new_privs set",
        report.kept,
        before.permitted.minus(report.kept).iter().count()
    );
    if let Some(e) = result.bounding_errno {
        log::warn!(
            "the bounding set still holds {} ({}): give the agent CAP_SETPCAP so it can drop them",
            caps::bounding_set(caps::last_cap()).minus(KEPT),
            std::io::Error::from_raw_os_error(e)
        );
    }
    for c in report.missing.iter() {
        log::warn!("{} was not granted: {}", CapSet::name(c), without(c));
    }
    Ok(report)
}

/// What the agent cannot do without a kept capability.
fn without(c: u32) -> &'static str {
    match c {
        cap::SYS_ADMIN => {
            "TCP flows in other network namespaces (containers) get no update events or end totals"
        }
        cap::SYS_PTRACE => {
            "network namespaces are not found and flows of other users' processes lose their executable details"
        }
        _ => "not used by the agent",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_set_is_part_of_the_startup_set() {
        assert!(KEPT.is_subset_of(STARTUP));
        assert_eq!(KEPT.to_string(), "CAP_SYS_PTRACE CAP_SYS_ADMIN");
    }

    #[test]
    fn looks_up_users() {
        let root = User::lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(matches!(
            User::lookup("no-such-user-flow-agent"),
            Err(PrivilegeError::NoSuchUser(_))
        ));
        assert!(matches!(
            User::lookup("nul\0byte"),
            Err(PrivilegeError::NoSuchUser(_))
        ));
    }

    #[test]
    fn every_kept_capability_says_what_it_is_for() {
        for c in KEPT.iter() {
            assert_ne!(without(c), "not used by the agent", "{}", CapSet::name(c));
        }
    }
}
