//! The standard `process_*` metrics of Prometheus client libraries, for the agent itself: CPU
//! time, resident memory, open and allowed descriptors, start time. Read from /proc/self at
//! each scrape (procfs); a value that cannot be read is left out, not reported as zero.
use procfs::process::{LimitValue, Process};

#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ProcessStats {
    /// User and system CPU time, seconds.
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) resident_bytes: Option<u64>,
    pub(crate) open_fds: Option<u64>,
    /// The soft RLIMIT_NOFILE; None when unlimited or unreadable.
    pub(crate) max_fds: Option<u64>,
    /// Since the Unix epoch, seconds.
    pub(crate) start_time_seconds: Option<f64>,
}

impl ProcessStats {
    pub(crate) fn read() -> ProcessStats {
        let Ok(me) = Process::myself() else {
            return ProcessStats::default();
        };
        let ticks = procfs::ticks_per_second() as f64;
        let stat = me.stat().ok();
        let boot = procfs::boot_time_secs().ok();
        ProcessStats {
            cpu_seconds: stat.as_ref().map(|s| (s.utime + s.stime) as f64 / ticks),
            resident_bytes: stat.as_ref().map(|s| s.rss * procfs::page_size()),
            open_fds: me.fd_count().ok().map(|n| n as u64),
            max_fds: me
                .limits()
                .ok()
                .and_then(|l| match l.max_open_files.soft_limit {
                    LimitValue::Value(v) => Some(v),
                    LimitValue::Unlimited => None,
                }),
            start_time_seconds: stat
                .zip(boot)
                .map(|(s, boot)| boot as f64 + s.starttime as f64 / ticks),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let p = ProcessStats::read();
        let rss = p.resident_bytes.unwrap();
        assert!(rss > 1 << 20, "rss {rss}");
        // At least stdin, stdout, stderr and the descriptor listing /proc/self/fd.
        let fds = p.open_fds.unwrap();
        assert!(fds >= 3, "fds {fds}");
        // SAFETY: getrlimit writes the struct it is given.
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(p.max_fds, Some(lim.rlim_cur));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = p.start_time_seconds.unwrap();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0,
            "start {start} now {now}"
        );
        assert!(p.cpu_seconds.unwrap() >= 0.0);
    }
}
