//! accept() and accept4() return: the accepting process takes over the passive flow's
//! attribution. The returned fd is resolved to its socket through the task's file table.
use aya_ebpf::{helpers::bpf_get_current_task, macros::tracepoint, programs::TracePointContext};
use flow_common::{AcceptRecord, OwnerKind, RecordKind};

use crate::{
    emit::{header, reserve, submit, Ring},
    kernel::{config, current_task, read, read_ptr},
    maps::TCP_SOCKS,
};

/// `long ret` in every syscalls:sys_exit_* record (a stable layout).
const SYS_EXIT_RET: usize = 16;

#[tracepoint(category = "syscalls", name = "sys_exit_accept4")]
pub fn sys_exit_accept4(ctx: TracePointContext) -> u32 {
    on_accept(&ctx);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept")]
pub fn sys_exit_accept(ctx: TracePointContext) -> u32 {
    on_accept(&ctx);
    0
}

#[inline(always)]
fn on_accept(ctx: &TracePointContext) -> Option<()> {
    let fd = unsafe { ctx.read_at::<i64>(SYS_EXIT_RET) }.ok()?;
    if fd < 0 {
        return None;
    }
    let sk = fd_to_sock(fd as u64)?;
    let state = TCP_SOCKS.get_ptr_mut(sk)?;
    let owner = current_task(true);
    unsafe {
        (*state).owner = owner;
        (*state).owner_kind = OwnerKind::Acceptor as u8;
    }
    let mut entry = reserve::<AcceptRecord>(Ring::Flows)?;
    let r = entry.as_mut_ptr();
    unsafe {
        (*r).header = header(RecordKind::TcpAccept);
        (*r).sock = sk;
        (*r).owner = owner;
    }
    submit(entry, Ring::Flows);
    Some(())
}

/// current->files->fdt->fd[fd]->private_data (a struct socket)->sk
#[inline(always)]
fn fd_to_sock(fd: u64) -> Option<u64> {
    let o = &config().offsets;
    let task = unsafe { bpf_get_current_task() };
    let files = read_ptr(task, o.task_files);
    let fdt = read_ptr(files, o.files_fdt);
    let max_fds = read::<u32>(fdt, o.fdtable_max_fds)? as u64;
    if fd >= max_fds {
        return None;
    }
    let fd_array = read_ptr(fdt, o.fdtable_fd);
    if fd_array == 0 {
        return None;
    }
    let file = read::<u64>(fd_array + fd * 8, 0)?;
    let socket = read_ptr(file, o.file_private_data);
    let sk = read_ptr(socket, o.socket_sk);
    (sk != 0).then_some(sk)
}
