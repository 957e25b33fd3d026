//! The system call filter installed once the kernel programs are attached (seccomp-bpf): from
//! then on the agent cannot load BPF programs, mount, open perf events, trace or write into
//! other processes, load kernel modules or kexec. These calls are refused with EPERM in every
//! thread; every other call is allowed (the unit's `SystemCallFilter=` is the allow list, this
//! is a deny list on top of it that holds outside systemd too).
//!
//! The filter is a classic BPF program written out here rather than built by a crate: it is
//! about thirty instructions, and a deny list must close by itself the other doors to the
//! same calls on x86-64: the x32 system call numbers (`nr | 0x40000000`) and the i386 ABI
//! (`int 0x80`, another architecture in `seccomp_data.arch`). Both are refused here; the unit
//! tests run the program on every case and install it in a child process.
//!
//! bpf(2) is refused for `BPF_PROG_LOAD` only: the agent reads its maps every second and
//! updates the kernel filter's maps on SIGHUP, through descriptors it already holds. The
//! command is compared on its low 32 bits, as the kernel reads it (`int cmd`): a caller
//! cannot hide `BPF_PROG_LOAD` in the upper bits of the register.
use std::{io, mem::offset_of};

/// `BPF_PROG_LOAD` of `<linux/bpf.h>`: the bpf(2) command that loads a program.
pub(crate) const BPF_PROG_LOAD: u32 = 5;

/// System calls refused outright. The new mount API (`fsopen` ... `mount_setattr`) is here
/// with `mount` and `umount2`: it mounts just as well.
pub(crate) const DENIED: &[(&str, libc::c_long)] = &[
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("open_tree", libc::SYS_open_tree),
    ("move_mount", libc::SYS_move_mount),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
];

/// `AUDIT_ARCH_*` of `<linux/audit.h>` for the architectures the filter knows: the machine
/// (`EM_*`) with the 64-bit and little-endian flags.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: Option<u32> = Some(0xC000_003E);
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: Option<u32> = Some(0xC000_00B7);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: Option<u32> = None;

/// x32 system calls are the x86-64 numbers with this bit set (`__X32_SYSCALL_BIT`).
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: Option<u32> = Some(0x4000_0000);
#[cfg(not(target_arch = "x86_64"))]
const X32_SYSCALL_BIT: Option<u32> = None;

const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

const LD_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

const NR: u32 = offset_of!(libc::seccomp_data, nr) as u32;
const ARCH: u32 = offset_of!(libc::seccomp_data, arch) as u32;
/// The low 32 bits of the first argument (both architectures are little-endian).
const ARG0_LOW: u32 = offset_of!(libc::seccomp_data, args) as u32;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SeccompError {
    #[error("the agent has no system call filter for this architecture")]
    Unsupported,
    #[error("the kernel does not support seccomp filters (CONFIG_SECCOMP_FILTER): {0}")]
    NoKernelSupport(io::Error),
    #[error("thread {0} has a different seccomp filter and cannot take this one")]
    Thread(libc::c_long),
    #[error("seccomp(SECCOMP_SET_MODE_FILTER) refused: {0}")]
    Refused(io::Error),
}

/// The filter, ready to install.
pub(crate) struct Filter {
    program: Vec<libc::sock_filter>,
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: usize, jf: usize) -> libc::sock_filter {
    libc::sock_filter {
        code,
        // Offsets stay far below 256: the program has about 25 instructions.
        jt: jt as u8,
        jf: jf as u8,
        k,
    }
}

impl Filter {
    /// The filter for the agent after attach: [`DENIED`] and `bpf(BPF_PROG_LOAD)` refused
    /// with EPERM, system calls of another ABI too, everything else allowed.
    pub(crate) fn after_attach() -> Result<Filter, SeccompError> {
        let arch = AUDIT_ARCH.ok_or(SeccompError::Unsupported)?;
        Ok(Filter {
            program: program(arch, X32_SYSCALL_BIT),
        })
    }

    #[cfg(test)]
    pub(crate) fn instructions(&self) -> &[libc::sock_filter] {
        &self.program
    }

    /// Installs the filter in every thread of the process (SECCOMP_FILTER_FLAG_TSYNC), with
    /// refusals logged by the kernel's audit (SECCOMP_FILTER_FLAG_LOG) where it can. Needs
    /// no_new_privs or CAP_SYS_ADMIN. Makes nothing but the seccomp(2) calls: safe in a child
    /// after fork.
    pub(crate) fn install(&self) -> Result<(), SeccompError> {
        let prog = libc::sock_fprog {
            len: self.program.len() as libc::c_ushort,
            filter: self.program.as_ptr().cast_mut(),
        };
        let tsync = libc::SECCOMP_FILTER_FLAG_TSYNC;
        let mut rc = seccomp_set_filter(tsync | libc::SECCOMP_FILTER_FLAG_LOG, &prog);
        if rc == -1 && super::caps::errno() == libc::EINVAL {
            // Kernels before 4.14 have no FLAG_LOG.
            rc = seccomp_set_filter(tsync, &prog);
        }
        match rc {
            0 => Ok(()),
            // With TSYNC, a positive result is the thread that could not be synchronized.
            tid if tid > 0 => Err(SeccompError::Thread(tid)),
            _ => {
                let e = io::Error::from_raw_os_error(super::caps::errno());
                Err(match e.raw_os_error() {
                    Some(libc::ENOSYS) | Some(libc::EINVAL) => SeccompError::NoKernelSupport(e),
                    _ => SeccompError::Refused(e),
                })
            }
        }
    }
}

fn seccomp_set_filter(flags: libc::c_ulong, prog: &libc::sock_fprog) -> libc::c_long {
    // SAFETY: `prog` points to `len` valid instructions for the duration of the call; the
    // kernel copies them.
    unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            prog as *const libc::sock_fprog,
        )
    }
}

/// The program for architecture `arch` (and, on x86-64, the x32 bit to refuse).
fn program(arch: u32, x32_bit: Option<u32>) -> Vec<libc::sock_filter> {
    let mut p = vec![
        stmt(LD_ABS, ARCH),
        // Another ABI (i386 through int 0x80 on x86-64, arm32 on arm64): refused.
        jump(JEQ, arch, 1, 0),
        stmt(RET, RET_EPERM),
        stmt(LD_ABS, NR),
    ];
    if let Some(bit) = x32_bit {
        p.push(jump(JGE, bit, 0, 1));
        p.push(stmt(RET, RET_EPERM));
    }
    // Then: one comparison per denied call, the bpf check, ALLOW, EPERM.
    let base = p.len();
    let deny = base + DENIED.len() + 4;
    for (i, (_, nr)) in DENIED.iter().enumerate() {
        let at = base + i;
        p.push(jump(JEQ, *nr as u32, deny - (at + 1), 0));
    }
    p.push(jump(JEQ, libc::SYS_bpf as u32, 0, 2));
    p.push(stmt(LD_ABS, ARG0_LOW));
    p.push(jump(JEQ, BPF_PROG_LOAD, 1, 0));
    p.push(stmt(RET, RET_ALLOW));
    p.push(stmt(RET, RET_EPERM));
    debug_assert_eq!(p.len(), deny + 1);
    p
}

/// Installs [`Filter::after_attach`] in every thread, once the programs are attached and the
/// capabilities dropped (which set no_new_privs). Capture matters more than this extra wall:
/// a kernel or an outer sandbox that does not allow it gets an error in the log, not a stop.
/// Returns whether the filter is in force.
pub(crate) fn install_after_attach() -> bool {
    match Filter::after_attach().and_then(|f| f.install()) {
        Ok(()) => {
            let names: Vec<&str> = DENIED.iter().map(|(n, _)| *n).collect();
            log::info!(
                "system call filter installed in every thread: bpf(BPF_PROG_LOAD), {} refused with EPERM",
                names.join(", ")
            );
            true
        }
        Err(e) => {
            log::error!(
                "system call filter NOT installed, the agent runs without it: {e}{}",
                match e {
                    SeccompError::Refused(_) =>
                        " (under systemd, add seccomp to the unit's SystemCallFilter=)",
                    _ => "",
                }
            );
            false
        }
    }
}

#[cfg(test)]
mod tests;
