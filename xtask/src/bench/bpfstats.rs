//! Kernel-side cost of a sensor: the run time of its eBPF programs. The kernel counts it only
//! while run-time statistics are enabled; BPF_ENABLE_STATS enables them for as long as the
//! returned descriptor is open (no sysctl to change and restore), and each program's
//! `run_time_ns` then shows in the fdinfo of the sensor's program descriptors.
use std::{
    os::fd::{FromRawFd, OwnedFd},
    time::Duration,
};

const BPF_ENABLE_STATS: libc::c_long = 32;
const BPF_STATS_RUN_TIME: u32 = 0;

/// Enables eBPF run-time statistics until the descriptor is dropped; `None` (with the reason
/// printed) where the kernel refuses.
pub fn enable() -> Option<OwnedFd> {
    // union bpf_attr for BPF_ENABLE_STATS: { __u32 type; }, the rest zero.
    let attr: [u32; 4] = [BPF_STATS_RUN_TIME, 0, 0, 0];
    // SAFETY: attr is a valid, zero-padded bpf_attr of the given size, alive for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_ENABLE_STATS,
            attr.as_ptr(),
            std::mem::size_of_val(&attr) as u32,
        )
    };
    if fd < 0 {
        eprintln!(
            "bench: eBPF run-time statistics unavailable ({}); kernel-side time not measured",
            std::io::Error::last_os_error()
        );
        return None;
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Total run time of the eBPF programs `pid` holds open; `None` if it holds none.
pub fn run_time(pid: u32) -> Option<Duration> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut total = None;
    for entry in dir.flatten() {
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        if !target.to_string_lossy().contains("bpf-prog") {
            continue;
        }
        let fd = entry.file_name();
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.to_string_lossy()))
            .unwrap_or_default();
        if let Some(ns) = fdinfo_run_time(&info) {
            *total.get_or_insert(0) += ns;
        }
    }
    total.map(Duration::from_nanos)
}

fn fdinfo_run_time(info: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix("run_time_ns:"))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_time_from_fdinfo() {
        let info = "pos:\t0\nprog_type:\t5\nprog_id:\t10731\nrun_time_ns:\t123456\nrun_cnt:\t7\n";
        assert_eq!(fdinfo_run_time(info), Some(123_456));
        assert_eq!(fdinfo_run_time("pos:\t0\n"), None);
    }
}
