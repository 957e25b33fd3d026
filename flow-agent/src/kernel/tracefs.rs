//! Locating tracefs, mounting it when nothing did.

use std::path::PathBuf;

use super::mounts::{find_mount, MOUNTINFO};

const STANDARD_ROOT: &str = "/sys/kernel/tracing";

#[derive(Debug, thiserror::Error)]
pub(crate) enum TracefsError {
    #[error("tracefs is not mounted (neither tracefs nor debugfs appears in {MOUNTINFO})")]
    NotMounted,
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The tracefs root, as mounted on this host: a tracefs mount, else `tracing` under debugfs.
pub(crate) fn tracefs_root() -> Result<PathBuf, TracefsError> {
    let mountinfo = std::fs::read_to_string(MOUNTINFO).map_err(|source| TracefsError::Io {
        path: MOUNTINFO.into(),
        source,
    })?;
    find_tracefs(&mountinfo).ok_or(TracefsError::NotMounted)
}

/// Picks the tracefs root out of `/proc/<pid>/mountinfo` text.
fn find_tracefs(mountinfo: &str) -> Option<PathBuf> {
    find_mount(mountinfo, "tracefs")
        .or_else(|| find_mount(mountinfo, "debugfs").map(|p| p.join("tracing")))
}

/// Mounts tracefs at its standard place when nothing provides it (we run as root).
pub(crate) fn mount_tracefs() -> Result<PathBuf, TracefsError> {
    let target = PathBuf::from(STANDARD_ROOT);
    let c_target = std::ffi::CString::new(STANDARD_ROOT).expect("no NUL");
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            c_target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(TracefsError::Io {
            path: target,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(target)
}

/// The tracefs root, mounting tracefs if it is not mounted yet.
pub(crate) fn tracefs_root_or_mount() -> Result<PathBuf, TracefsError> {
    match tracefs_root() {
        Err(TracefsError::NotMounted) => mount_tracefs(),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tracefs_in_mountinfo() {
        let tracefs = "22 30 0:20 / /sys rw,nosuid shared:7 - sysfs sysfs rw
31 22 0:7 / /sys/kernel/debug rw,nosuid shared:15 - debugfs debugfs rw
40 22 0:12 / /my\\040trace rw,nosuid shared:16 - tracefs nodev rw
";
        assert_eq!(find_tracefs(tracefs), Some(PathBuf::from("/my trace")));
        let debugfs_only = "31 22 0:7 / /sys/kernel/debug rw - debugfs debugfs rw\n";
        assert_eq!(
            find_tracefs(debugfs_only),
            Some(PathBuf::from("/sys/kernel/debug/tracing"))
        );
        assert_eq!(
            find_tracefs("22 30 0:20 / /sys rw - sysfs sysfs rw\n"),
            None
        );
        assert_eq!(find_tracefs("garbage\n\n - \n"), None);
    }
}
