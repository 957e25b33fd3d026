//! Locating tracefs and reading tracepoint record layouts from its `format` files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use flow_common::SetStateLayout;

use super::mounts::{find_mount, MOUNTINFO};

const STANDARD_ROOT: &str = "/sys/kernel/tracing";

#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    #[error("tracefs is not mounted (neither tracefs nor debugfs appears in {MOUNTINFO})")]
    NotMounted,
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed field line in tracepoint format: {0:?}")]
    BadFormat(String),
    #[error("tracepoint {event} has no field `{field}`")]
    MissingField { event: String, field: &'static str },
    #[error("tracepoint {event} field `{field}` is {size} bytes, expected {expected}")]
    UnexpectedSize {
        event: String,
        field: &'static str,
        size: u32,
        expected: u32,
    },
}

/// Where one field sits in a tracepoint record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldLayout {
    pub offset: u32,
    pub size: u32,
}

/// The tracefs root, as mounted on this host: a tracefs mount, else `tracing` under debugfs.
pub fn tracefs_root() -> Result<PathBuf, TracefsError> {
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
pub fn mount_tracefs() -> Result<PathBuf, TracefsError> {
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
pub fn tracefs_root_or_mount() -> Result<PathBuf, TracefsError> {
    match tracefs_root() {
        Err(TracefsError::NotMounted) => mount_tracefs(),
        other => other,
    }
}

/// Whether the kernel has tracepoint `category:name`.
pub fn event_exists(root: &Path, category: &str, name: &str) -> bool {
    event_dir(root, category, name).is_dir()
}

fn event_dir(root: &Path, category: &str, name: &str) -> PathBuf {
    root.join("events").join(category).join(name)
}

/// Reads the field layout of tracepoint `category:name`.
pub fn read_format(
    root: &Path,
    category: &str,
    name: &str,
) -> Result<HashMap<String, FieldLayout>, TracefsError> {
    let path = event_dir(root, category, name).join("format");
    let text =
        std::fs::read_to_string(&path).map_err(|source| TracefsError::Io { path, source })?;
    parse_format(&text)
}

/// Parses a tracefs `format` file into field name → layout. Lines look like
/// `\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;`; other lines are ignored.
pub fn parse_format(text: &str) -> Result<HashMap<String, FieldLayout>, TracefsError> {
    let mut fields = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if !line.starts_with("field:") {
            continue;
        }
        let bad = || TracefsError::BadFormat(line.to_owned());
        let mut decl = None;
        let (mut offset, mut size) = (None, None);
        for part in line.split(';') {
            match part.trim().split_once(':') {
                Some(("field", d)) => decl = Some(d),
                Some(("offset", v)) => offset = v.trim().parse().ok(),
                Some(("size", v)) => size = v.trim().parse().ok(),
                _ => {}
            }
        }
        let name = decl.and_then(field_name).ok_or_else(bad)?;
        let (Some(offset), Some(size)) = (offset, size) else {
            return Err(bad());
        };
        fields.insert(name.to_owned(), FieldLayout { offset, size });
    }
    Ok(fields)
}

/// The identifier in a C declaration such as `const void * skaddr` or `__u8 saddr_v6[16]`.
fn field_name(decl: &str) -> Option<&str> {
    let decl = decl.trim();
    // Strip an array suffix, but not the `[]` of `__data_loc char[] name`.
    let decl = match decl.strip_suffix(']') {
        Some(rest) => rest.rsplit_once('[')?.0.trim_end(),
        None => decl,
    };
    let name = decl
        .rsplit(|c: char| c.is_whitespace() || c == '*')
        .next()?;
    (!name.is_empty()).then_some(name)
}

/// The record layout of `sock:inet_sock_set_state`, checked against the sizes the programs read.
pub fn inet_sock_set_state_layout(root: &Path) -> Result<SetStateLayout, TracefsError> {
    let fields = read_format(root, "sock", "inet_sock_set_state")?;
    set_state_layout(&fields)
}

fn set_state_layout(fields: &HashMap<String, FieldLayout>) -> Result<SetStateLayout, TracefsError> {
    let event = "sock:inet_sock_set_state";
    let get = |field: &'static str, expected: u32| {
        let f = fields
            .get(field)
            .ok_or_else(|| TracefsError::MissingField {
                event: event.to_owned(),
                field,
            })?;
        if f.size != expected {
            return Err(TracefsError::UnexpectedSize {
                event: event.to_owned(),
                field,
                size: f.size,
                expected,
            });
        }
        Ok(f.offset)
    };
    Ok(SetStateLayout {
        skaddr: get("skaddr", 8)?,
        oldstate: get("oldstate", 4)?,
        newstate: get("newstate", 4)?,
        sport: get("sport", 2)?,
        dport: get("dport", 2)?,
        family: get("family", 2)?,
        protocol: get("protocol", 2)?,
        saddr: get("saddr", 4)?,
        daddr: get("daddr", 4)?,
        saddr_v6: get("saddr_v6", 16)?,
        daddr_v6: get("daddr_v6", 16)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `events/sock/inet_sock_set_state/format` from a 6.x kernel.
    const SET_STATE_FORMAT: &str = "name: inet_sock_set_state
ID: 1502
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:26;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;

print fmt: \"family=%s protocol=%s ...\", REC->family
";

    fn expected_layout() -> SetStateLayout {
        SetStateLayout {
            skaddr: 8,
            oldstate: 16,
            newstate: 20,
            sport: 24,
            dport: 26,
            family: 28,
            protocol: 30,
            saddr: 32,
            daddr: 36,
            saddr_v6: 40,
            daddr_v6: 56,
        }
    }

    #[test]
    fn parses_a_format_file() {
        let fields = parse_format(SET_STATE_FORMAT).unwrap();
        assert_eq!(fields.len(), 15);
        assert_eq!(fields["common_pid"], FieldLayout { offset: 4, size: 4 });
        assert_eq!(
            fields["saddr_v6"],
            FieldLayout {
                offset: 40,
                size: 16
            }
        );
        assert_eq!(set_state_layout(&fields).unwrap(), expected_layout());
    }

    #[test]
    fn field_names() {
        assert_eq!(field_name("const void * skaddr"), Some("skaddr"));
        assert_eq!(field_name("void *ptr"), Some("ptr"));
        assert_eq!(field_name("__u8 saddr_v6[16]"), Some("saddr_v6"));
        assert_eq!(field_name("char comm[TASK_COMM_LEN]"), Some("comm"));
        assert_eq!(field_name("__data_loc char[] name"), Some("name"));
        assert_eq!(field_name("unsigned long"), Some("long"));
        assert_eq!(field_name(""), None);
        assert_eq!(field_name("x]"), None);
    }

    #[test]
    fn missing_and_malformed_fields_are_errors() {
        let without_dport: String = SET_STATE_FORMAT
            .lines()
            .filter(|l| !l.contains(" dport;"))
            .map(|l| format!("{l}\n"))
            .collect();
        let err = set_state_layout(&parse_format(&without_dport).unwrap()).unwrap_err();
        assert!(
            matches!(err, TracefsError::MissingField { field: "dport", .. }),
            "{err}"
        );

        let narrow = SET_STATE_FORMAT.replace("offset:32;\tsize:4", "offset:32;\tsize:16");
        let err = set_state_layout(&parse_format(&narrow).unwrap()).unwrap_err();
        assert!(
            matches!(err, TracefsError::UnexpectedSize { field: "saddr", .. }),
            "{err}"
        );

        for line in [
            "\tfield:int x;\toffset:zz;\tsize:4;",
            "\tfield:;\toffset:0;\tsize:4;",
        ] {
            assert!(
                matches!(parse_format(line), Err(TracefsError::BadFormat(_))),
                "{line}"
            );
        }
    }

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

    /// Mounts tracefs if nothing provides it yet (the test runs as root).
    fn mounted_root() -> Option<PathBuf> {
        if let Ok(root) = tracefs_root() {
            if root.join("events").is_dir() {
                return Some(root);
            }
        }
        let status = std::process::Command::new("mount")
            .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("skipped: tracefs is not mounted and mounting it failed: {status:?}");
            return None;
        }
        Some(tracefs_root().unwrap())
    }

    #[test]
    fn reads_the_running_kernel() {
        let Some(root) = mounted_root() else { return };
        assert!(event_exists(&root, "sock", "inet_sock_set_state"));
        assert!(event_exists(&root, "sched", "sched_process_exit"));
        assert!(!event_exists(&root, "sock", "no_such_event"));
        assert_eq!(
            inet_sock_set_state_layout(&root).unwrap(),
            expected_layout()
        );
    }
}
