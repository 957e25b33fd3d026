//! The watchdog for silence ("loud when blind", issue 22): every `[health] watchdog_interval`
//! it compares what the kernel counted (TCP opens and UDP datagrams in /proc/net/snmp and
//! snmp6, processes that appeared in /proc) with the records the agent received from each
//! program family. A family the kernel shows active and that delivered nothing is a silence:
//! logged at error level naming the check, counted, and the self-check is run again.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::event::WatchdogStats;

/// The program families the watchdog checks, by the name a silence is reported under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Family {
    Tcp,
    Udp,
    Process,
    Exec,
}

impl Family {
    const ALL: [Family; 4] = [Family::Tcp, Family::Udp, Family::Process, Family::Exec];

    pub(super) fn name(self) -> &'static str {
        match self {
            Family::Tcp => "tcp",
            Family::Udp => "udp",
            Family::Process => "process",
            Family::Exec => "exec",
        }
    }

    /// What the kernel counts for this family, in words for the log.
    fn activity(self) -> &'static str {
        match self {
            Family::Tcp => "TCP connections opened (/proc/net/snmp ActiveOpens + PassiveOpens)",
            Family::Udp => "UDP datagrams (/proc/net/snmp and snmp6 In + OutDatagrams)",
            Family::Process => "processes started (new user-space pids in /proc)",
            Family::Exec => {
                "programs executed (new processes in /proc named otherwise than their parent)"
            }
        }
    }
}

/// Records received since start, by family (counted by the stages as they come).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Received {
    /// TCP opens, accepts and closes.
    pub(crate) tcp: u64,
    /// UDP flow starts and socket releases.
    pub(crate) udp: u64,
    /// Forks, execs and exits.
    pub(crate) process: u64,
    /// Execs alone.
    pub(crate) exec: u64,
}

impl Received {
    fn of(&self, f: Family) -> u64 {
        match f {
            Family::Tcp => self.tcp,
            Family::Udp => self.udp,
            Family::Process => self.process,
            Family::Exec => self.exec,
        }
    }
}

/// The kernel's own counters, since boot, and the processes running; None where unreadable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Activity {
    tcp: Option<u64>,
    udp: Option<u64>,
    /// /proc's pids (thread-group leaders). Not /proc/stat's `processes`: that counts
    /// threads and kernel threads too, of which the agent reports nothing.
    pids: Option<BTreeSet<u32>>,
    /// When it was read: clock ticks since boot, as /proc's start times.
    ticks: u64,
}

impl Activity {
    fn read(proc_root: &Path) -> Self {
        let snmp = std::fs::read_to_string(proc_root.join("net/snmp")).unwrap_or_default();
        let snmp6 = std::fs::read_to_string(proc_root.join("net/snmp6")).unwrap_or_default();
        let tcp = sum(&[
            snmp_value(&snmp, "Tcp", "ActiveOpens"),
            snmp_value(&snmp, "Tcp", "PassiveOpens"),
        ]);
        let udp4 = sum(&[
            snmp_value(&snmp, "Udp", "InDatagrams"),
            snmp_value(&snmp, "Udp", "OutDatagrams"),
        ]);
        // IPv6 may be off: then only IPv4 counts.
        let udp6 = sum(&[
            snmp6_value(&snmp6, "Udp6InDatagrams"),
            snmp6_value(&snmp6, "Udp6OutDatagrams"),
        ]);
        Self {
            tcp,
            udp: udp4.map(|v| v + udp6.unwrap_or(0)),
            pids: pids(proc_root),
            ticks: crate::clock::boot_ns_now() / tick_ns(),
        }
    }

    /// What the kernel did from `then` to `self` in family `f`. Processes count when they
    /// started in the interval and `settle` before its end (their records may still wait in
    /// the ring), so that neither a race with /proc nor the ring's delay is a silence.
    fn since(&self, then: &Activity, f: Family, proc_root: &Path, settle: u64) -> Option<u64> {
        match f {
            Family::Tcp => Some(self.tcp?.saturating_sub(then.tcp?)),
            Family::Udp => Some(self.udp?.saturating_sub(then.udp?)),
            Family::Process | Family::Exec => {
                let (now, was) = (self.pids.as_ref()?, then.pids.as_ref()?);
                let new = now
                    .difference(was)
                    .filter_map(|p| ProcStat::read(proc_root, *p));
                let window = then.ticks..=self.ticks.saturating_sub(settle);
                let new = new.filter(|p| !p.kernel_thread() && window.contains(&p.start_ticks));
                let n = match f {
                    Family::Exec => new.filter(|p| p.executed(proc_root)).count(),
                    _ => new.count(),
                };
                Some(n as u64)
            }
        }
    }
}

/// Length of a clock tick in ns (/proc's start times are in ticks).
fn tick_ns() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    1_000_000_000 / hz
}

fn sum(values: &[Option<u64>]) -> Option<u64> {
    values.iter().copied().sum()
}

fn pids(proc_root: &Path) -> Option<BTreeSet<u32>> {
    let dir = std::fs::read_dir(proc_root).ok()?;
    Some(
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
    )
}

/// What the watchdog reads of /proc/PID/stat.
struct ProcStat {
    comm: String,
    ppid: u32,
    flags: u64,
    start_ticks: u64,
}

impl ProcStat {
    /// None for a process gone meanwhile (nothing can be said of it). The crate decodes the
    /// name lossily: one that is not UTF-8 still leaves the fields after it.
    fn read(proc_root: &Path, pid: u32) -> Option<Self> {
        let dir = procfs::process::Process::new_with_root(proc_root.join(pid.to_string()));
        let stat = dir.ok()?.stat().ok()?;
        Some(Self {
            comm: stat.comm,
            ppid: u32::try_from(stat.ppid).ok()?,
            flags: u64::from(stat.flags),
            start_ticks: stat.starttime,
        })
    }

    fn kernel_thread(&self) -> bool {
        const PF_KTHREAD: u64 = 0x0020_0000;
        self.flags & PF_KTHREAD != 0
    }

    /// A process named otherwise than its parent ran a program after its fork. Not said of
    /// orphans (their parent is init or a reaper, named otherwise whatever they did).
    fn executed(&self, proc_root: &Path) -> bool {
        self.ppid > 1
            && ProcStat::read(proc_root, self.ppid).is_some_and(|parent| parent.comm != self.comm)
    }
}

/// A counter of /proc/net/snmp: a header line `Proto: Name...` then `Proto: values...`.
fn snmp_value(text: &str, proto: &str, name: &str) -> Option<u64> {
    let prefix = format!("{proto}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let header = lines.next()?;
    let values = lines.next()?;
    let i = header.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// A counter of /proc/net/snmp6: `Name value` lines.
fn snmp6_value(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == name).then(|| it.next()?.parse().ok())?
    })
}

/// One silence found: the family, what the kernel counted and the interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Silence {
    pub(super) family: Family,
    pub(super) kernel_delta: u64,
    pub(super) interval: Duration,
    /// Kernel records lost in the interval (ring or tables full): the family's records may
    /// be among them.
    pub(super) records_lost: u64,
}

impl Silence {
    pub(super) fn describe(&self) -> String {
        let lost = match self.records_lost {
            0 => String::new(),
            n => format!(" ({n} kernel records lost meanwhile: they may have been among them)"),
        };
        format!(
            "watchdog: check {} failed: the kernel counted {} {} in the last {:.0} s and the agent received no {} record{lost}",
            self.family.name(),
            self.kernel_delta,
            self.family.activity(),
            self.interval.as_secs_f64(),
            self.family.name()
        )
    }
}

pub(super) struct Watchdog {
    every: Duration,
    proc_root: PathBuf,
    window_start: Instant,
    kernel: Activity,
    received: Received,
    /// Kernel records lost since start, at the start of the interval.
    lost: u64,
    /// Ticks a new process must have run before the check counts it (1 s).
    settle: u64,
    pub(super) stats: WatchdogStats,
}

impl Watchdog {
    /// `every`: the interval; zero turns the watchdog off.
    pub(super) fn new(every: Duration, received: Received) -> Self {
        Self::with_proc_root(every, received, PathBuf::from("/proc"))
    }

    fn with_proc_root(every: Duration, received: Received, proc_root: PathBuf) -> Self {
        Self {
            every,
            kernel: Activity::read(&proc_root),
            proc_root,
            window_start: Instant::now(),
            received,
            lost: 0,
            settle: 1_000_000_000 / tick_ns(),
            stats: WatchdogStats::default(),
        }
    }

    pub(super) fn set_interval(&mut self, every: Duration) {
        self.every = every;
    }

    /// At the end of each interval: the families the kernel shows active that delivered no
    /// record in it (counted); empty otherwise, and before the interval is over.
    pub(super) fn check(&mut self, received: Received, lost: u64) -> Vec<Silence> {
        let elapsed = self.window_start.elapsed();
        if self.every.is_zero() || elapsed < self.every {
            return Vec::new();
        }
        let kernel = Activity::read(&self.proc_root);
        let kernel_delta = |f| kernel.since(&self.kernel, f, &self.proc_root, self.settle);
        let mut silences = silences(kernel_delta, &self.received, &received, elapsed);
        for s in &mut silences {
            s.records_lost = lost.saturating_sub(self.lost);
            self.stats.count(s.family);
        }
        self.window_start = Instant::now();
        self.kernel = kernel;
        self.received = received;
        self.lost = lost;
        silences
    }

    /// A self-check the watchdog ran again, and its result.
    pub(super) fn rerun(&mut self, ok: bool) {
        self.stats.self_check_reruns += 1;
        if !ok {
            self.stats.self_check_reruns_failed += 1;
        }
    }

    /// Starts a new interval after the self-check's own traffic (so that it does not count).
    pub(super) fn restart(&mut self, received: Received, lost: u64) {
        self.window_start = Instant::now();
        self.kernel = Activity::read(&self.proc_root);
        self.received = received;
        self.lost = lost;
    }
}

impl WatchdogStats {
    fn count(&mut self, f: Family) {
        match f {
            Family::Tcp => self.tcp_silences += 1,
            Family::Udp => self.udp_silences += 1,
            Family::Process => self.process_silences += 1,
            Family::Exec => self.exec_silences += 1,
        }
    }
}

fn silences(
    kernel_delta: impl Fn(Family) -> Option<u64>,
    received_then: &Received,
    received_now: &Received,
    interval: Duration,
) -> Vec<Silence> {
    Family::ALL
        .into_iter()
        .filter_map(|family| {
            let kernel_delta = kernel_delta(family)?;
            let records = received_now.of(family) - received_then.of(family);
            (kernel_delta > 0 && records == 0).then_some(Silence {
                family,
                kernel_delta,
                interval,
                records_lost: 0,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
        Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails\n\
        Tcp: 1 200 120000 -1 TCP_ACTIVE TCP_PASSIVE 3\n\
        Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\n\
        Udp: UDP_IN 0 0 UDP_OUT 0\n";

    /// A /proc with these counters and processes (pid, is a kernel thread); pid 1 is `init`,
    /// pids from 100 on are named `exe<pid>`, the others `sh`, all children of pid 5.
    fn fake_proc(dir: &Path, tcp: (u64, u64), udp: (u64, u64), udp6: u64, procs: &[(u32, bool)]) {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("net")).unwrap();
        let snmp = SNMP
            .replace("TCP_ACTIVE", &tcp.0.to_string())
            .replace("TCP_PASSIVE", &tcp.1.to_string())
            .replace("UDP_IN", &udp.0.to_string())
            .replace("UDP_OUT", &udp.1.to_string());
        std::fs::write(dir.join("net/snmp"), snmp).unwrap();
        let snmp6 = format!("Udp6InDatagrams                 \t{udp6}\nUdp6OutDatagrams \t0\n");
        std::fs::write(dir.join("net/snmp6"), snmp6).unwrap();
        for (pid, kthread) in procs {
            let flags = if *kthread { 0x0020_8040 } else { 0x0040_0100 };
            let d = dir.join(pid.to_string());
            std::fs::create_dir_all(&d).unwrap();
            let comm = match pid {
                1 => "init".to_string(),
                100.. => format!("exe{pid} (x)"),
                _ => "sh".to_string(),
            };
            let start = crate::clock::boot_ns_now() / tick_ns();
            let stat = format!(
                "{pid} ({comm}) S 5 {pid} {pid} 0 -1 {flags} 0 0 0 0 1 2 0 0 20 0 1 0 {start}{}\n",
                " 0".repeat(17)
            );
            std::fs::write(d.join("stat"), stat).unwrap();
        }
    }

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("flow-agent-{name}-{}", std::process::id()))
    }

    #[test]
    fn reads_the_kernel_counters_of_each_family() {
        let dir = temp("watchdog-read");
        fake_proc(&dir, (7, 5), (100, 40), 3, &[(1, false), (2, true)]);
        let a = Activity::read(&dir);
        assert_eq!((a.tcp, a.udp), (Some(12), Some(143)));
        assert_eq!(a.pids, Some(BTreeSet::from([1, 2])));
        let stat = |pid| ProcStat::read(&dir, pid).unwrap();
        assert!(stat(2).kernel_thread() && !stat(1).kernel_thread());
        assert_eq!((stat(1).comm.as_str(), stat(1).ppid), ("init", 5));
        let now = crate::clock::boot_ns_now() / tick_ns();
        assert!(stat(1).start_ticks <= now && stat(1).start_ticks + 100 > now);
        // A /proc without these files: no check of those families.
        let none = Activity::read(&dir.join("missing"));
        assert_eq!((none.tcp, none.udp, none.pids), (None, None, None));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_family_the_kernel_shows_active_without_records_is_a_silence() {
        let dir = temp("watchdog-silence");
        let (tcp, udp) = ((9, 5), (103, 42));
        fake_proc(&dir, (7, 5), (100, 40), 0, &[(1, false), (5, false)]);
        let start = Received {
            tcp: 10,
            udp: 4,
            process: 50,
            exec: 20,
        };
        let mut w = Watchdog::with_proc_root(Duration::from_millis(1), start, dir.clone());
        w.settle = 0;
        std::thread::sleep(Duration::from_millis(20));
        // TCP, processes and execs active and delivering; UDP active (5 datagrams) and silent.
        let procs = [(1, false), (5, false), (107, false)];
        fake_proc(&dir, tcp, udp, 0, &procs);
        let now = Received {
            tcp: 12,
            udp: 4,
            process: 70,
            exec: 30,
        };
        let found = w.check(now, 0);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].family, found[0].kernel_delta), (Family::Udp, 5));
        assert!(found[0].describe().contains("check udp failed"));
        assert_eq!(w.stats.udp_silences, 1);
        assert_eq!((w.stats.tcp_silences, w.stats.process_silences), (0, 0));

        // A quiet kernel with no records is no silence; nor is a new kernel thread.
        fake_proc(
            &dir,
            tcp,
            udp,
            0,
            &[procs.as_slice(), &[(8, true)]].concat(),
        );
        std::thread::sleep(Duration::from_millis(2));
        let found = w.check(now, 0);
        assert!(found.is_empty(), "{found:?}");

        // A process forked (named as its parent), none reported: the process family is
        // silent, not the exec family.
        fake_proc(
            &dir,
            tcp,
            udp,
            0,
            &[procs.as_slice(), &[(9, false)]].concat(),
        );
        std::thread::sleep(Duration::from_millis(2));
        let found = w.check(now, 0);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].family, found[0].kernel_delta),
            (Family::Process, 1)
        );
        assert_eq!(w.stats.process_silences, 1);

        // Two new processes ran another program; forks and exits reported, execs not: the
        // exec family is silent.
        let forks = Received { process: 80, ..now };
        let procs = [
            (1, false),
            (5, false),
            (9, false),
            (120, false),
            (121, false),
        ];
        fake_proc(&dir, tcp, udp, 0, &procs);
        std::thread::sleep(Duration::from_millis(2));
        let found = w.check(forks, 7);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].family, found[0].kernel_delta), (Family::Exec, 2));
        // Records lost meanwhile are said: the exec records may be among them.
        let said = found[0].describe();
        assert!(said.contains("check exec failed") && said.contains("(7 kernel records lost"));
        assert_eq!(w.stats.exec_silences, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn nothing_is_checked_before_the_interval_or_when_off() {
        let dir = temp("watchdog-off");
        fake_proc(&dir, (1, 1), (1, 1), 0, &[(1, false)]);
        let mut off = Watchdog::with_proc_root(Duration::ZERO, Received::default(), dir.clone());
        let mut later =
            Watchdog::with_proc_root(Duration::from_secs(3600), Received::default(), dir.clone());
        fake_proc(&dir, (5, 5), (5, 5), 0, &[(1, false), (2, false)]);
        assert!(off.check(Received::default(), 0).is_empty());
        assert!(later.check(Received::default(), 0).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
