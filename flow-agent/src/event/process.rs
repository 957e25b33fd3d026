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
