//! Credentials: who a process is (real, effective, login), written at exec and after every
//! successful call of the setuid and setgid families, read from `task_struct.cred` at BTF
//! offsets. Records are processed in order, so a flow carries the identity its process had
//! when it acted.
use aya_ebpf::{helpers::bpf_get_current_task, macros::tracepoint, programs::TracePointContext};
use flow_common::{CredsRecord, RecordKind};

use crate::{
    emit::{header, reserve, submit, Ring},
    kernel::{config, current_task, read, read_ptr},
};

/// `long ret` in every syscalls:sys_exit_* record (a stable layout).
const SYS_EXIT_RET: usize = 16;

/// Writes the current process's credentials.
#[inline(always)]
pub fn emit_creds() -> Option<()> {
    let o = &config().offsets;
    let task = unsafe { bpf_get_current_task() };
    let me = current_task(true);
    let cred = read_ptr(task, o.task_cred);
    let mut entry = reserve::<CredsRecord>(Ring::Process)?;
    let r = entry.as_mut_ptr();
    unsafe {
        (*r).header = header(RecordKind::Creds);
        (*r).start_ns = me.start_ns;
        (*r).pid = me.pid;
        (*r).uid = read::<u32>(cred, o.cred_uid).unwrap_or(me.uid);
        (*r).gid = read::<u32>(cred, o.cred_gid).unwrap_or(me.gid);
        (*r).euid = read::<u32>(cred, o.cred_euid).unwrap_or(u32::MAX);
        (*r).egid = read::<u32>(cred, o.cred_egid).unwrap_or(u32::MAX);
        (*r).auid = read::<u32>(task, o.task_loginuid).unwrap_or(u32::MAX);
        (*r).session_id = read::<u32>(task, o.task_sessionid).unwrap_or(u32::MAX);
        (*r)._pad = 0;
    }
    submit(entry, Ring::Process);
    Some(())
}

/// After a set*id call: only a successful one changed anything.
#[inline(always)]
fn on_set_id(ctx: &TracePointContext) -> u32 {
    if unsafe { ctx.read_at::<i64>(SYS_EXIT_RET) } == Ok(0) {
        emit_creds();
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_setuid")]
pub fn creds_setuid(ctx: TracePointContext) -> u32 {
    on_set_id(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_setreuid")]
pub fn creds_setreuid(ctx: TracePointContext) -> u32 {
    on_set_id(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_setresuid")]
pub fn creds_setresuid(ctx: TracePointContext) -> u32 {
    on_set_id(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_setgid")]
pub fn creds_setgid(ctx: TracePointContext) -> u32 {
    on_set_id(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_setregid")]
pub fn creds_setregid(ctx: TracePointContext) -> u32 {
    on_set_id(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_setresgid")]
pub fn creds_setresgid(ctx: TracePointContext) -> u32 {
    on_set_id(&ctx)
}
