//! Who a flow's process is: built once per process (and refreshed when it changes), shared by
//! every event of that process.
use std::fmt;

use serde::{Serialize, Serializer};

use super::WallTime;

/// A SHA-256 digest, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256(pub [u8; 32]);

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Sha256 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why an executable has no `image_sha256`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HashSkip {
    /// Larger than `enrich.hash_max_bytes`.
    TooLarge,
    /// Reading it failed, or took longer than the hasher allows one file.
    Unreadable,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessIdentity {
    pub pid: u32,
    /// The real parent's tgid (0 when unknown).
    pub ppid: u32,
    /// The thread's `comm` as the kernel had it.
    pub comm: String,
    /// Basename of the executable.
    pub exe: Option<String>,
    pub image_path: Option<String>,
    pub image_deleted: Option<bool>,
    /// The process forked and did not exec: image and command line are its parent's.
    pub image_inherited: bool,
    /// The exec record was lost (the task's comm showed another program): image, command
    /// line and parent were read again from /proc.
    pub image_refreshed: bool,
    /// The task's comm showed another program than the one recorded, and /proc could not tell
    /// which (the process was gone): image, command line and parent are left out.
    pub image_unverified: bool,
    /// SHA-256 of the executable as exec'd, once the hasher has it.
    pub image_sha256: Option<Sha256>,
    /// Why the executable was not hashed.
    pub image_hash_skipped: Option<HashSkip>,
    pub command_line: Option<String>,
    pub args: Option<Vec<String>>,
    pub command_line_truncated: Option<bool>,
    pub start_time: Option<WallTime>,
    pub entity_id: Option<String>,
    pub parent_exe: Option<String>,
    pub parent_command_line: Option<String>,
    pub parent_entity_id: Option<String>,
    /// The parent, its parent and so on, up to `[enrich] ancestry_depth` of them.
    pub ancestors: Vec<Ancestor>,
    pub uid: u32,
    pub user: Option<String>,
    pub gid: u32,
    pub group: Option<String>,
    /// Effective uid and gid, login uid and audit session, as the kernel last reported them
    /// before the event's record (None when unknown, or for the login ids, unset).
    pub euid: Option<u32>,
    pub effective_user: Option<String>,
    pub egid: Option<u32>,
    pub auid: Option<u32>,
    pub login_user: Option<String>,
    pub session_id: Option<u32>,
    /// 0 when unknown.
    pub cgroup_id: u64,
    pub cgroup_path: Option<String>,
    pub container_id: Option<String>,
    pub container_runtime: Option<String>,
    pub systemd_unit: Option<String>,
}

impl ProcessIdentity {
    /// The process's name as formats mean it (ECS `process.name`, OCSF `process.name`): the
    /// executable's basename when known, else the thread's `comm`.
    pub(crate) fn name(&self) -> &str {
        self.exe.as_deref().unwrap_or(&self.comm)
    }
}

/// One ancestor of a process, as the process table knows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Ancestor {
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_path: Option<String>,
}

/// What a process event tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessAction {
    /// The process exec'd (a new image; the same process entity).
    Start,
    /// The process exited.
    End,
}

impl ProcessAction {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Start => "process_start",
            Self::End => "process_end",
        }
    }
}

/// How a process ended, from the kernel's wait status (`task_struct.exit_code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitStatus {
    /// The status it passed to exit(), or 128 + the signal that killed it (the shell's
    /// convention).
    pub code: i32,
    /// The signal that killed it.
    pub signal: Option<u8>,
}

impl ExitStatus {
    pub fn of_wait_status(raw: u32) -> Self {
        match (raw & 0x7f) as u8 {
            0 => Self {
                code: ((raw >> 8) & 0xff) as i32,
                signal: None,
            },
            sig => Self {
                code: 128 + i32::from(sig),
                signal: Some(sig),
            },
        }
    }
}

/// A `process_start` (exec) or `process_end` (exit) event: the process as its flows name it.
#[derive(Clone, Debug)]
pub struct ProcessEvent {
    /// When the kernel saw the exec or the exit.
    pub time: WallTime,
    pub action: ProcessAction,
    pub process: std::sync::Arc<ProcessIdentity>,
    /// `process_end` only.
    pub exit: Option<ExitStatus>,
    /// `process_end` only: from the process's start (its fork) to its exit.
    pub duration_ns: Option<u64>,
    pub(crate) host: std::sync::Arc<super::HostInfo>,
}

#[cfg(test)]
mod tests {
    use super::ExitStatus;

    #[test]
    fn exit_status_from_the_kernels_wait_status() {
        let exited = ExitStatus::of_wait_status(3 << 8);
        assert_eq!((exited.code, exited.signal), (3, None));
        let killed = ExitStatus::of_wait_status(9);
        assert_eq!((killed.code, killed.signal), (137, Some(9)));
        // Killed with a core dump (0x80): the signal is the low seven bits.
        let dumped = ExitStatus::of_wait_status(0x80 | 11);
        assert_eq!((dumped.code, dumped.signal), (139, Some(11)));
    }
}
