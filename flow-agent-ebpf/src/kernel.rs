//! Reading kernel structs through offsets that userspace computed from the running kernel's BTF.
use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
    bpf_get_current_task, bpf_get_current_uid_gid, bpf_probe_read_kernel,
};
use flow_common::{offsets::OFFSET_ABSENT, Loss, ProcessInfo, ProgramConfig, Task};

use crate::{emit::count_loss, maps::PROCESSES};

/// Set by userspace before load (`EbpfLoader::set_global`).
#[unsafe(no_mangle)]
static CONFIG: ProgramConfig = unsafe { core::mem::zeroed() };

#[inline(always)]
pub fn config() -> &'static ProgramConfig {
    // A volatile read of the address keeps the compiler from folding the zeroed initialiser.
    unsafe { &*core::ptr::read_volatile(&&raw const CONFIG) }
}

/// Reads a `T` at `base + off`, or `None` when the field is absent or the read fails.
#[inline(always)]
pub fn read<T>(base: u64, off: u32) -> Option<T> {
    if base == 0 || off == OFFSET_ABSENT {
        return None;
    }
    match unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) } {
        Ok(v) => Some(v),
        Err(_) => {
            count_loss(Loss::KernelReadFailed);
            None
        }
    }
}

#[inline(always)]
pub fn read_ptr(base: u64, off: u32) -> u64 {
    read::<u64>(base, off).unwrap_or(0)
}

/// Start time, parent and network namespace of a task, read from its `task_struct`.
#[inline(always)]
pub fn task_info(task: u64) -> ProcessInfo {
    let o = &config().offsets;
    let leader = read_ptr(task, o.task_group_leader);
    let parent = read_ptr(task, o.task_real_parent);
    let net = read_ptr(read_ptr(task, o.task_nsproxy), o.nsproxy_net_ns);
    ProcessInfo {
        start_ns: read::<u64>(leader, o.task_start_boottime).unwrap_or(0),
        ppid: read::<u32>(parent, o.task_tgid).unwrap_or(0),
        netns: read::<u32>(net, o.net_ns_inum).unwrap_or(0),
    }
}

/// The current process, as its own syscall sees it. In tracing programs the task struct is read
/// directly; elsewhere (`from_task_struct == false`) start time and parent come from the process
/// table the sched programs keep.
#[inline(always)]
pub fn current_task(from_task_struct: bool) -> Task {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    let pid = (pid_tgid >> 32) as u32;
    let info = if from_task_struct {
        task_info(unsafe { bpf_get_current_task() })
    } else {
        unsafe { PROCESSES.get(pid) }.copied().unwrap_or_default()
    };
    Task {
        start_ns: info.start_ns,
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        pid,
        tid: pid_tgid as u32,
        ppid: info.ppid,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        netns: info.netns,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    }
}

/// `PF_EXITING` of `task_struct.flags`: set by do_exit() before the descriptors are closed.
const PF_EXITING: u32 = 0x4;

/// Whether the current task is exiting.
#[inline(always)]
pub fn current_exiting() -> bool {
    let task = unsafe { bpf_get_current_task() };
    read::<u32>(task, config().offsets.task_flags).is_some_and(|f| f & PF_EXITING != 0)
}

/// Network namespace inode of a socket.
#[inline(always)]
pub fn sock_netns(sk: u64) -> u32 {
    let o = &config().offsets;
    let net = read_ptr(sk, o.sock_common_skc_net);
    read::<u32>(net, o.net_ns_inum).unwrap_or(0)
}
