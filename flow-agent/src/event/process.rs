//! Who a flow's process is: built once per process (and refreshed when it changes), shared by
//! every event of that process.
use super::WallTime;

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
    pub command_line: Option<String>,
    pub args: Option<Vec<String>>,
    pub command_line_truncated: Option<bool>,
    pub start_time: Option<WallTime>,
    pub entity_id: Option<String>,
    pub parent_exe: Option<String>,
    pub parent_entity_id: Option<String>,
    pub uid: u32,
    pub user: Option<String>,
    pub gid: u32,
    pub group: Option<String>,
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
