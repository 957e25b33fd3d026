//! Kernel-side cost of a sensor: the run time of its eBPF programs. The kernel counts it only
//! while run-time statistics are enabled; BPF_ENABLE_STATS enables them for as long as the
//! returned descriptor is open (no sysctl to change and restore), and each program's
//! `run_time_ns` and `run_cnt` then show in the fdinfo of the sensor's program descriptors.
use std::{
    collections::BTreeMap,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Duration,
};

const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_ENABLE_STATS: libc::c_long = 32;
const BPF_STATS_RUN_TIME: u32 = 0;
/// `struct bpf_prog_info` up to and including `name[16]` (at offset 64).
const PROG_INFO_NAME_END: usize = 80;

/// Enables eBPF run-time statistics until the descriptor is dropped; `None` (with the reason
/// printed) where the kernel refuses.
pub fn enable() -> Option<OwnedFd> {
    // union bpf_attr for BPF_ENABLE_STATS: { __u32 type; }, the rest zero.
    let attr: [u32; 4] = [BPF_STATS_RUN_TIME, 0, 0, 0];
    match bpf(BPF_ENABLE_STATS, &attr) {
        Ok(fd) => Some(fd),
        Err(e) => {
            eprintln!(
                "bench: eBPF run-time statistics unavailable ({e}); kernel-side time not measured"
            );
            None
        }
    }
}

/// The `bpf()` system call for a command that returns a new descriptor.
fn bpf<A>(cmd: libc::c_long, attr: &A) -> std::io::Result<OwnedFd> {
    // SAFETY: attr is a valid, zero-padded bpf_attr prefix of the given size, alive for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const A,
            std::mem::size_of::<A>() as u32,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// What the kernel counted for one program (or the sum over programs of one name).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct ProgramRuns {
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

impl ProgramRuns {
    pub fn since(&self, before: &ProgramRuns) -> ProgramRuns {
        ProgramRuns {
            run_time_ns: self.run_time_ns.saturating_sub(before.run_time_ns),
            run_cnt: self.run_cnt.saturating_sub(before.run_cnt),
        }
    }
}

/// The eBPF programs `pid` holds open, by name (programs of one name summed); `None` if it
/// holds none.
pub fn programs(pid: u32) -> Option<BTreeMap<String, ProgramRuns>> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut by_name: Option<BTreeMap<String, ProgramRuns>> = None;
    for entry in dir.flatten() {
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        if !target.to_string_lossy().contains("bpf-prog") {
            continue;
        }
        let fd = entry.file_name();
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.to_string_lossy()))
            .unwrap_or_default();
        let Some(runs) = fdinfo_runs(&info) else {
            continue;
        };
        let name = fdinfo_field(&info, "prog_id:")
            .and_then(|id| program_name(id as u32))
            .unwrap_or_else(|| "unnamed".into());
        let sum = by_name
            .get_or_insert_with(BTreeMap::new)
            .entry(name)
            .or_default();
        sum.run_time_ns += runs.run_time_ns;
        sum.run_cnt += runs.run_cnt;
    }
    by_name
}

/// Total run time of the eBPF programs `pid` holds open; `None` if it holds none.
pub fn total(programs: &BTreeMap<String, ProgramRuns>) -> Duration {
    Duration::from_nanos(programs.values().map(|p| p.run_time_ns).sum())
}

/// A program's name (the kernel keeps its first 15 bytes), from its id.
fn program_name(id: u32) -> Option<String> {
    // bpf_attr for BPF_PROG_GET_FD_BY_ID: { prog_id, next_id, open_flags }.
    let fd = bpf(BPF_PROG_GET_FD_BY_ID, &[id, 0, 0, 0]).ok()?;
    let mut info = [0u8; PROG_INFO_NAME_END];
    // bpf_attr for BPF_OBJ_GET_INFO_BY_FD: { bpf_fd, info_len, info (u64) }.
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: info.len() as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: attr points at `info`, writable for info_len bytes during the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &attr as *const InfoAttr,
            std::mem::size_of::<InfoAttr>() as u32,
        )
    };
    (rc == 0).then(|| name_from_info(&info))
}

fn name_from_info(info: &[u8; PROG_INFO_NAME_END]) -> String {
    let name = &info[64..];
    let len = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    String::from_utf8_lossy(&name[..len]).into_owned()
}

fn fdinfo_field(info: &str, key: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .parse()
        .ok()
}

fn fdinfo_runs(info: &str) -> Option<ProgramRuns> {
    Some(ProgramRuns {
        run_time_ns: fdinfo_field(info, "run_time_ns:")?,
        run_cnt: fdinfo_field(info, "run_cnt:").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_from_fdinfo() {
        let info = "pos:\t0\nprog_type:\t5\nprog_id:\t10731\nrun_time_ns:\t123456\nrun_cnt:\t7\n";
        assert_eq!(
            fdinfo_runs(info),
            Some(ProgramRuns {
                run_time_ns: 123_456,
                run_cnt: 7
            })
        );
        assert_eq!(fdinfo_field(info, "prog_id:"), Some(10731));
        assert_eq!(fdinfo_runs("pos:\t0\n"), None);
    }

    #[test]
    fn name_ends_at_its_nul() {
        let mut info = [0u8; PROG_INFO_NAME_END];
        info[64..74].copy_from_slice(b"skb_egress");
        assert_eq!(name_from_info(&info), "skb_egress");
    }
}
