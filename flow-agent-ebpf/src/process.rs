//! The process table: exec, fork and exit from the sched tracepoints. Exec records carry the
//! executable's path and command line read in the kernel, so a process that lives 5 ms is still
//! named exactly.
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task,
        generated::{
            bpf_probe_read_kernel as probe_read_kernel_raw, bpf_probe_read_kernel_str,
            bpf_probe_read_user,
        },
    },
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use flow_common::{
    ExecRecord, ExitRecord, ForkRecord, ProcessInfo, RecordKind, ARGS_BUF_LEN, PATH_BUF_LEN,
    PATH_FLAG_DELETED, PATH_FLAG_TRUNCATED, PATH_FLAG_UNREADABLE, PATH_MAX_DEPTH, PATH_SLOT_LEN,
};

use crate::{
    creds::emit_creds,
    emit::{header, output, reserve, submit, Ring},
    kernel::{config, current_task, read, read_ptr, task_info},
    maps::{EXEC_SCRATCH, PROCESSES},
};

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn sched_process_exec(_ctx: TracePointContext) -> u32 {
    on_exec();
    // After the exec record: a set-user-ID executable has changed the effective ids.
    emit_creds();
    0
}

#[inline(always)]
fn on_exec() -> Option<()> {
    let task = current_task(true);
    let info = ProcessInfo {
        start_ns: task.start_ns,
        ppid: task.ppid,
        netns: task.netns,
    };
    let _ = PROCESSES.insert(task.pid, info, 0);

    let r = EXEC_SCRATCH.get_ptr_mut(0)?;
    let o = &config().offsets;
    let mm = read_ptr(unsafe { bpf_get_current_task() }, o.task_mm);
    unsafe {
        (*r).header = header(RecordKind::Exec);
        (*r).task = task;
        let exe = read_ptr(mm, o.mm_exe_file);
        let (len, flags) = write_path(&mut (*r).path, exe);
        (*r).path_len = len;
        (*r).path_flags = flags;
        let start = read::<u64>(mm, o.mm_arg_start).unwrap_or(0);
        let end = read::<u64>(mm, o.mm_arg_end).unwrap_or(0);
        let total = end.saturating_sub(start);
        let n = if total > ARGS_BUF_LEN as u64 {
            ARGS_BUF_LEN as u64
        } else {
            total
        };
        (*r).args_total = total as u32;
        (*r).args_len = 0;
        if n > 0
            && bpf_probe_read_user((*r).args.as_mut_ptr().cast(), n as u32, start as *const _) == 0
        {
            (*r).args_len = n as u32;
        }
    }
    // Only the command line's bytes go out: most are far shorter than the 4 KiB kept for it.
    // In [1, ARGS_BUF_LEN] by construction (a power of two), as the verifier must see it; an
    // empty command line sends the whole buffer, which userspace ignores past `args_len`.
    let used = unsafe { core::ptr::read_volatile(&raw const (*r).args_len) };
    let n = EXEC_HEAD + ((used.wrapping_sub(1) & (ARGS_BUF_LEN as u32 - 1)) + 1) as usize;
    // SAFETY: the slot holds a whole ExecRecord, and n is at most its size.
    output(
        unsafe { core::slice::from_raw_parts(r.cast::<u8>(), n) },
        Ring::Process,
    );
    Some(())
}

/// Bytes of an exec record before its command line.
const EXEC_HEAD: usize = core::mem::offset_of!(ExecRecord, args);

/// Walks the dentries of `file`'s path up to the root of the mount namespace, crossing mount
/// points, writing one component name per fixed slot, leaf first. Returns slots used and flags.
#[inline(always)]
unsafe fn write_path(buf: &mut [u8; PATH_BUF_LEN], file: u64) -> (u32, u32) {
    let o = &config().offsets;
    if file == 0 {
        return (0, PATH_FLAG_UNREADABLE);
    }
    let mut flags = 0;
    let mut dentry = raw(file + (o.file_f_path + o.path_dentry) as u64);
    let mut vfsmnt = raw(file + (o.file_f_path + o.path_mnt) as u64);
    let inode = raw(dentry + o.dentry_d_inode as u64);
    if read::<u32>(inode, o.inode_i_nlink) == Some(0) {
        flags |= PATH_FLAG_DELETED;
    }
    let mut mnt = vfsmnt.wrapping_sub(o.mount_mnt as u64);
    let mut slots = PATH_MAX_DEPTH as u32;
    let mut done = false;
    for i in 0..PATH_MAX_DEPTH {
        let slot = buf.as_mut_ptr().add(i * PATH_SLOT_LEN);
        *slot = 0;
        if dentry == raw(vfsmnt + o.vfsmount_mnt_root as u64) {
            // Top of this mount: continue from the mount point in the parent mount.
            let parent = raw(mnt + o.mount_mnt_parent as u64);
            if parent == mnt || parent == 0 {
                slots = i as u32;
                done = true;
                break;
            }
            dentry = raw(mnt + o.mount_mnt_mountpoint as u64);
            mnt = parent;
            vfsmnt = mnt + o.mount_mnt as u64;
            continue;
        }
        let parent = raw(dentry + o.dentry_d_parent as u64);
        let name = raw(dentry + o.dentry_d_name_name as u64);
        let n = bpf_probe_read_kernel_str(slot.cast(), PATH_SLOT_LEN as u32, name as *const _);
        // n is the length with its NUL, at most PATH_SLOT_LEN (truncated), or a negative
        // error: the flag without a branch of its own (5.10's verifier walks every branch of
        // every iteration; one more per iteration took it past its million instructions).
        const _: () = assert!(PATH_SLOT_LEN == 1 << 7);
        let t = n as u64;
        flags |= (((t >> 7) & !(t >> 63)) & 1) as u32 * PATH_FLAG_TRUNCATED;
        if parent == 0 || parent == dentry {
            // The top of the tree (or a failed read: the slot just read is not counted). A
            // dentry that is its own parent without being a mount's root belongs to no tree
            // (a memfd, an anonymous file): its name is all the path there is, as in
            // /proc/PID/exe ("/memfd:NAME (deleted)").
            slots = i as u32 + (parent != 0) as u32;
            done = true;
            break;
        }
        dentry = parent;
    }
    if !done {
        flags |= PATH_FLAG_TRUNCATED;
    }
    (slots, flags)
}

/// A pointer-sized kernel read with no bookkeeping and no branch: inside the path walk every
/// branch multiplies the verifier's work (a branch on the helper's result here, five per step,
/// made the exec program the slowest to load). The helper zeroes the value when the read
/// fails, and 0 ends the walk.
#[inline(always)]
fn raw(addr: u64) -> u64 {
    let mut value: u64 = 0;
    unsafe {
        probe_read_kernel_raw(
            (&mut value as *mut u64).cast(),
            core::mem::size_of::<u64>() as u32,
            addr as *const _,
        )
    };
    value
}

/// raw_tp because the child's tgid tells a new process from a new thread, and the stable
/// sched_process_fork record lacks it.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    on_fork(&ctx);
    0
}

#[inline(always)]
fn on_fork(ctx: &RawTracePointContext) -> Option<()> {
    let o = &config().offsets;
    let parent: u64 = ctx.arg(0);
    let child: u64 = ctx.arg(1);
    let child_pid = read::<u32>(child, o.task_pid)?;
    let child_tgid = read::<u32>(child, o.task_tgid)?;
    if child_pid != child_tgid {
        return None;
    }
    let info = task_info(child);
    let child_start = info.start_ns;
    let parent_start = task_info(parent).start_ns;
    let _ = PROCESSES.insert(child_tgid, info, 0);
    let mut entry = reserve::<ForkRecord>(Ring::Process)?;
    let r = entry.as_mut_ptr();
    unsafe {
        (*r).header = header(RecordKind::Fork);
        (*r).child_start_ns = child_start;
        (*r).parent_start_ns = parent_start;
        (*r).child_pid = child_tgid;
        (*r).parent_pid = read::<u32>(parent, o.task_tgid).unwrap_or(0);
    }
    submit(entry, Ring::Process);
    Some(())
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    on_exit();
    0
}

#[inline(always)]
fn on_exit() -> Option<()> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let pid = (pid_tgid >> 32) as u32;
    if pid != pid_tgid as u32 {
        return None;
    }
    let task = unsafe { bpf_get_current_task() };
    let start_ns = task_info(task).start_ns;
    let exit_code = read::<u32>(task, config().offsets.task_exit_code).unwrap_or(0);
    let _ = PROCESSES.remove(pid);
    let mut entry = reserve::<ExitRecord>(Ring::Process)?;
    let r = entry.as_mut_ptr();
    unsafe {
        (*r).header = header(RecordKind::Exit);
        (*r).start_ns = start_ns;
        (*r).pid = pid;
        (*r).exit_code = exit_code;
    }
    submit(entry, Ring::Process);
    Some(())
}
