use std::{io::Read, os::fd::FromRawFd};

use super::*;

/// The kernel's classic BPF, for the instructions the program uses, on one `seccomp_data`.
fn run(prog: &[libc::sock_filter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_ne_bytes());
    data[4..8].copy_from_slice(&arch.to_ne_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
    }
    let (mut a, mut pc) = (0u32, 0usize);
    loop {
        let ins = prog[pc];
        pc += 1;
        match ins.code {
            LD_ABS => {
                let k = ins.k as usize;
                a = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
            }
            JEQ => pc += usize::from(if a == ins.k { ins.jt } else { ins.jf }),
            JGE => pc += usize::from(if a >= ins.k { ins.jt } else { ins.jf }),
            RET => return ins.k,
            other => panic!("instruction {other:#x} at {}", pc - 1),
        }
    }
}

const ARCH_X86_64: u32 = 0xC000_003E;
const ARCH_I386: u32 = 0x4000_0003;
const ARCH_AARCH64: u32 = 0xC000_00B7;
const ARCH_ARM: u32 = 0x4000_0028;

fn denied_numbers() -> Vec<u32> {
    DENIED.iter().map(|(_, nr)| *nr as u32).collect()
}

#[test]
fn exactly_the_denied_calls_and_prog_load_are_refused() {
    for (arch, x32) in [(ARCH_X86_64, Some(0x4000_0000)), (ARCH_AARCH64, None)] {
        let prog = program(arch, x32);
        let denied = denied_numbers();
        let bpf = libc::SYS_bpf as u32;
        for nr in 0..1024u32 {
            let want = if denied.contains(&nr) {
                RET_EPERM
            } else {
                RET_ALLOW
            };
            // bpf with a command other than BPF_PROG_LOAD in its first argument.
            let args = [if nr == bpf { 1 } else { 5 }, 0, 0, 0, 0, 0];
            assert_eq!(run(&prog, nr, arch, args), want, "system call {nr}");
        }
        // Every bpf(2) command but BPF_PROG_LOAD: map lookups, updates, deletes, iteration,
        // BPF_OBJ_GET_INFO_BY_FD, links.
        for cmd in (0..64u64).filter(|c| *c != u64::from(BPF_PROG_LOAD)) {
            assert_eq!(
                run(&prog, bpf, arch, [cmd, 1, 2, 0, 0, 0]),
                RET_ALLOW,
                "cmd {cmd}"
            );
        }
        let load = u64::from(BPF_PROG_LOAD);
        assert_eq!(run(&prog, bpf, arch, [load, 0, 0, 0, 0, 0]), RET_EPERM);
        // The kernel reads `int cmd`: upper bits do not hide the command.
        for upper in [1u64 << 32, 0xffff_ffff_0000_0000] {
            assert_eq!(
                run(&prog, bpf, arch, [load | upper, 0, 0, 0, 0, 0]),
                RET_EPERM
            );
        }
        assert_eq!(run(&prog, bpf, arch, [1 << 32, 0, 0, 0, 0, 0]), RET_ALLOW);
    }
}

#[test]
fn other_abis_are_refused_whatever_the_call() {
    let x86 = program(ARCH_X86_64, Some(0x4000_0000));
    let getpid = 39; // x86-64 and x32; 20 on i386
    assert_eq!(run(&x86, getpid, ARCH_X86_64, [0; 6]), RET_ALLOW);
    // x32: mount and getpid under their x32 numbers.
    assert_eq!(run(&x86, 0x4000_0000 | 165, ARCH_X86_64, [0; 6]), RET_EPERM);
    assert_eq!(run(&x86, 0x4000_0000 | 39, ARCH_X86_64, [0; 6]), RET_EPERM);
    // i386 through int 0x80, and the -1 a tracer sets to skip a call.
    assert_eq!(run(&x86, 20, ARCH_I386, [0; 6]), RET_EPERM);
    assert_eq!(run(&x86, u32::MAX, ARCH_X86_64, [0; 6]), RET_EPERM);
    let arm = program(ARCH_AARCH64, None);
    assert_eq!(run(&arm, 172, ARCH_AARCH64, [0; 6]), RET_ALLOW);
    assert_eq!(run(&arm, 20, ARCH_ARM, [0; 6]), RET_EPERM);
    assert_eq!(run(&arm, 172, ARCH_X86_64, [0; 6]), RET_EPERM);
}

#[test]
fn the_program_is_well_formed() {
    let filter = Filter::after_attach().expect("this architecture has a filter");
    let prog = filter.instructions();
    assert!(prog.len() < 64);
    for (i, ins) in prog.iter().enumerate() {
        if ins.code == JEQ || ins.code == JGE {
            let last = i + 1 + usize::from(ins.jt.max(ins.jf));
            assert!(last < prog.len(), "jump out of the program at {i}");
        }
    }
    assert_eq!(prog.last().map(|i| i.code), Some(RET));
    // The numbers are this architecture's (libc's), and no two entries are the same call.
    let mut nrs = denied_numbers();
    nrs.sort_unstable();
    nrs.dedup();
    assert_eq!(nrs.len(), DENIED.len());
    assert!(!nrs.contains(&(libc::SYS_bpf as u32)));
}

/// Raw results of the child, -errno for a failed call.
const BEFORE_PROG_LOAD: usize = 0;
const BEFORE_MAP_CREATE: usize = 1;
const NO_NEW_PRIVS: usize = 2;
const INSTALL: usize = 3;
const PROG_LOAD: usize = 4;
const PROG_LOAD_UPPER: usize = 5;
const MAP_UPDATE: usize = 6;
const MAP_LOOKUP: usize = 7;
const LOOKED_UP: usize = 8;
const MAP_CREATE: usize = 9;
const PROG_INFO: usize = 10;
const X32_MOUNT_BEFORE: usize = 11;
const X32_MOUNT: usize = 12;
const DENIED_BEFORE: usize = 13;
const DENIED_AFTER: usize = DENIED_BEFORE + DENIED.len();
const SLOTS: usize = DENIED_AFTER + DENIED.len();

/// Arguments that make each denied call fail harmlessly when it is not refused (bad
/// pointers, descriptors, flags): the child calls each once before the filter too.
fn harmless_args(name: &str) -> [u64; 6] {
    let bad = u64::MAX;
    match name {
        // NULL paths and pointers: EFAULT; an empty module image: ENOEXEC.
        "mount" | "umount2" | "fsopen" | "perf_event_open" | "delete_module" | "init_module" => {
            [0; 6]
        }
        // Descriptor -1: EBADF; size or flags out of range: EINVAL.
        "open_tree" | "move_mount" | "fsconfig" | "fsmount" | "fspick" | "finit_module" => {
            [bad, 0, bad, 0, 0, 0]
        }
        "mount_setattr" => [bad, 0, 0, 0, 0, 0],
        // Request -1 (no such request, not PTRACE_TRACEME) on pid 0: ESRCH or EIO.
        "ptrace" => [bad, 0, 0, 0, 0, 0],
        "process_vm_writev" => [0, 0, 0, 0, 0, bad],
        "kexec_load" => [0, 0, 0, 0xffff_ffff, 0, 0],
        "kexec_file_load" => [bad, bad, 0, 0, 0xffff_ffff, 0],
        other => panic!("no harmless arguments for {other}"),
    }
}

fn sys(nr: libc::c_long, a: [u64; 6]) -> i64 {
    // SAFETY: raw system calls whose pointer arguments are NULL, invalid (the kernel checks
    // them) or point to live buffers of the caller.
    let rc = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if rc == -1 {
        -i64::from(crate::service::caps::errno())
    } else {
        rc
    }
}

fn bpf(cmd: u64, attr: &mut [u64; 16]) -> i64 {
    sys(libc::SYS_bpf, [cmd, attr.as_mut_ptr() as u64, 128, 0, 0, 0])
}

/// What the child does, system calls only (it runs after fork in a threaded process).
fn child(filter: &Filter, denied_args: &[[u64; 6]], out: &mut [i64; SLOTS]) {
    // `mov r0, 0; exit`, a socket filter.
    let insns: [u64; 2] = [0xb7, 0x95];
    let license = b"GPL\0";
    let prog_load = |cmd: u64| {
        let mut attr = [0u64; 16];
        attr[0] = 1 | (2 << 32);
        attr[1] = insns.as_ptr() as u64;
        attr[2] = license.as_ptr() as u64;
        bpf(cmd, &mut attr)
    };
    let map_create = || {
        let mut attr = [0u64; 16];
        attr[0] = 2 | (4 << 32); // BPF_MAP_TYPE_ARRAY, 4-byte keys
        attr[1] = 8 | (1 << 32); // 8-byte values, one entry
        bpf(0, &mut attr)
    };
    let x32_mount = (libc::SYS_mount | 0x4000_0000) as libc::c_long;
    out[BEFORE_PROG_LOAD] = prog_load(u64::from(BPF_PROG_LOAD));
    out[BEFORE_MAP_CREATE] = map_create();
    out[X32_MOUNT_BEFORE] = if cfg!(target_arch = "x86_64") {
        sys(x32_mount, [0; 6])
    } else {
        0
    };
    for (i, (_, nr)) in DENIED.iter().enumerate() {
        out[DENIED_BEFORE + i] = sys(*nr, denied_args[i]);
    }
    out[NO_NEW_PRIVS] = sys(
        libc::SYS_prctl,
        [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0],
    );
    out[INSTALL] = match filter.install() {
        Ok(()) => 0,
        Err(_) => -1,
    };
    out[PROG_LOAD] = prog_load(u64::from(BPF_PROG_LOAD));
    out[PROG_LOAD_UPPER] = prog_load(u64::from(BPF_PROG_LOAD) | 1 << 32);
    let (key, value, mut read) = (0u32, 0x5eed_u64, 0u64);
    let map = out[BEFORE_MAP_CREATE] as u64;
    let mut attr = [0u64; 16];
    attr[0] = map;
    attr[1] = &key as *const u32 as u64;
    attr[2] = &value as *const u64 as u64;
    out[MAP_UPDATE] = bpf(2, &mut attr);
    attr[2] = &mut read as *mut u64 as u64;
    out[MAP_LOOKUP] = bpf(1, &mut attr);
    out[LOOKED_UP] = read as i64;
    out[MAP_CREATE] = map_create();
    let mut info = [0u64; 32];
    let mut attr = [0u64; 16];
    attr[0] = out[BEFORE_PROG_LOAD] as u64 | (256 << 32);
    attr[1] = info.as_mut_ptr() as u64;
    out[PROG_INFO] = bpf(15, &mut attr); // BPF_OBJ_GET_INFO_BY_FD
    out[X32_MOUNT] = if cfg!(target_arch = "x86_64") {
        sys(x32_mount, [0; 6])
    } else {
        -i64::from(libc::EPERM)
    };
    for (i, (_, nr)) in DENIED.iter().enumerate() {
        out[DENIED_AFTER + i] = sys(*nr, denied_args[i]);
    }
}

/// The filter in force in a forked child (root needed to load a program): BPF_PROG_LOAD and
/// every denied call answer EPERM, while map creation, updates, lookups and object info
/// still work.
#[test]
fn a_child_with_the_filter_cannot_load_programs_or_mount_but_uses_maps() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: loading a BPF program needs root");
        return;
    }
    let filter = Filter::after_attach().unwrap();
    let denied_args: Vec<[u64; 6]> = DENIED.iter().map(|(n, _)| harmless_args(n)).collect();
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array; fork's child only makes system calls, then _exit.
    let pid = unsafe {
        assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
        libc::fork()
    };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        let mut out = [0i64; SLOTS];
        child(&filter, &denied_args, &mut out);
        // SAFETY: writing the results to the pipe and leaving without running destructors.
        unsafe {
            libc::write(fds[1], out.as_ptr().cast(), std::mem::size_of_val(&out));
            libc::_exit(0);
        }
    }
    // SAFETY: the parent owns the read end from here on; the write end is closed.
    let mut reader = unsafe {
        libc::close(fds[1]);
        std::fs::File::from_raw_fd(fds[0])
    };
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).unwrap();
    let mut status = 0;
    // SAFETY: waiting for the child forked above.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child status {status:#x}");
    assert_eq!(bytes.len(), SLOTS * 8, "the child's results");
    let out: Vec<i64> = bytes
        .chunks(8)
        .map(|c| i64::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    let eperm = -i64::from(libc::EPERM);
    assert!(
        out[BEFORE_PROG_LOAD] >= 0,
        "BPF_PROG_LOAD before the filter: {}",
        out[0]
    );
    assert!(out[BEFORE_MAP_CREATE] >= 0, "BPF_MAP_CREATE: {}", out[1]);
    assert_eq!(out[NO_NEW_PRIVS], 0, "PR_SET_NO_NEW_PRIVS");
    assert_eq!(out[INSTALL], 0, "installing the filter");
    assert_eq!(out[PROG_LOAD], eperm, "BPF_PROG_LOAD with the filter");
    assert_eq!(out[PROG_LOAD_UPPER], eperm, "BPF_PROG_LOAD | 1 << 32");
    assert_eq!(out[MAP_UPDATE], 0, "BPF_MAP_UPDATE_ELEM with the filter");
    assert_eq!(out[MAP_LOOKUP], 0, "BPF_MAP_LOOKUP_ELEM with the filter");
    assert_eq!(out[LOOKED_UP], 0x5eed, "the value looked up");
    assert!(
        out[MAP_CREATE] >= 0,
        "BPF_MAP_CREATE with the filter: {}",
        out[9]
    );
    assert_eq!(out[PROG_INFO], 0, "BPF_OBJ_GET_INFO_BY_FD with the filter");
    assert_ne!(out[X32_MOUNT_BEFORE], eperm, "x32 mount before the filter");
    assert_eq!(out[X32_MOUNT], eperm, "x32 mount with the filter");
    for (i, (name, _)) in DENIED.iter().enumerate() {
        let (before, after) = (out[DENIED_BEFORE + i], out[DENIED_AFTER + i]);
        assert!(before < 0, "{name} succeeded without the filter: {before}");
        assert_eq!(after, eperm, "{name} with the filter ({before} without)");
        // EPERM from the filter, not from the kernel's own checks, when the call failed
        // otherwise before (kexec and modules can be locked down: EPERM for root too).
        if before == eperm {
            eprintln!("{name}: EPERM without the filter too; the program test covers it");
        }
    }
}
