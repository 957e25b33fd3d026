//! `flow-agent probe`: which hooks does the running kernel allow? Each is answered by loading and
//! attaching a minimal program of that kind, never by guessing from the version.
use std::{fs::File, path::PathBuf};

use aya::{
    programs::{
        BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock,
        CgroupSockAddr, FEntry, FExit, KProbe, Lsm, ProgramError, RawTracePoint, SockOps,
        TracePoint,
    },
    Btf, Ebpf, EbpfLoader,
};
use serde::Serialize;

use crate::{
    capture::object::PROBE_OBJECT,
    kernel::{mounts::cgroup2_mount, tracefs},
};

#[derive(Debug, Serialize)]
pub(crate) struct Check {
    pub(crate) name: &'static str,
    pub(crate) available: bool,
    /// Why not, when unavailable (the kernel's error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) detail: Option<String>,
    /// Whether the baseline hook set needs it.
    pub(crate) baseline: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub(crate) kernel: String,
    pub(crate) cgroup2_mount: Option<PathBuf>,
    pub(crate) tracefs: Option<PathBuf>,
    pub(crate) checks: Vec<Check>,
    /// Every check the baseline needs passed.
    pub baseline_ok: bool,
    /// fentry/fexit allowed: a faster tier could be used. None when not checked (the agent's
    /// start-up checks only what it uses).
    pub(crate) fentry_ok: Option<bool>,
}

/// Why a check failed: the detail its report gives.
#[derive(Clone, Debug, thiserror::Error)]
enum Unavailable {
    #[error("{0} missing from the probe object")]
    NoProgram(String),
    #[error("no cgroup2 mount in /proc/self/mountinfo")]
    NoCgroup2,
    #[error("tracefs not mounted and could not be mounted")]
    NoTracefs,
    /// The kernel's (or loader's) error, made [`short`]: aya's errors are not Clone, and a
    /// failed BTF or cgroup opening is the detail of several checks.
    #[error("{0}")]
    Failed(String),
}

/// One line from an error and its sources; the verifier's log (pages long) is cut off.
fn short<E: std::error::Error>(e: E) -> Unavailable {
    Unavailable::Failed(one_line(e))
}

fn one_line<E: std::error::Error>(e: E) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    let text = parts.join(": ");
    let text = text.split(" Verifier output:").next().unwrap_or_default();
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

fn check(name: &'static str, baseline: bool, r: Result<(), Unavailable>) -> Check {
    Check {
        name,
        available: r.is_ok(),
        detail: r.err().map(|e| e.to_string()),
        baseline,
    }
}

fn prog<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, Unavailable>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let p = ebpf
        .program_mut(name)
        .ok_or_else(|| Unavailable::NoProgram(name.into()))?;
    p.try_into().map_err(short)
}

/// Runs every check (`flow-agent probe`). Programs are detached again when the probe object is
/// dropped.
pub fn run() -> Report {
    let own_btf = crate::kernel::Btf::from_sys_fs().map(drop).map_err(short);
    let typed = Btf::from_sys_fs().map_err(short);
    run_checks(&mut EbpfLoader::new(), own_btf, Some(typed))
}

/// The checks the baseline needs, and kprobe, through the loader the capture then uses (the
/// agent's start reads the kernel's BTF once). The typed hooks (tp_btf, fentry, fexit, lsm)
/// need aya's parse of the BTF apart from its loader's: `flow-agent probe` checks those.
pub(crate) fn run_baseline(loader: &mut crate::capture::Loader) -> Report {
    run_checks(&mut loader.aya, Ok(()), None)
}

/// `typed`: the BTF for the typed hooks' checks, or None to leave them out.
fn run_checks(
    loader: &mut EbpfLoader,
    own_btf: Result<(), Unavailable>,
    typed: Option<Result<Btf, Unavailable>>,
) -> Report {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let cgroup2 = cgroup2_mount();
    let tracefs_root = tracefs::tracefs_root_or_mount().ok();
    let mut checks = vec![
        check("btf", true, own_btf),
        check(
            "cgroup2",
            true,
            cgroup2.clone().map(drop).ok_or(Unavailable::NoCgroup2),
        ),
        check(
            "tracefs",
            true,
            tracefs_root.clone().map(drop).ok_or(Unavailable::NoTracefs),
        ),
    ];
    let mut ebpf = match loader.load(PROBE_OBJECT) {
        Ok(e) => e,
        Err(e) => {
            // Maps (the ring buffer among them) are created at load: nothing else can run.
            checks.push(check("ringbuf", true, Err(short(e))));
            return finish(kernel, cgroup2, tracefs_root, checks, typed.is_some());
        }
    };
    checks.push(check("ringbuf", true, Ok(())));
    let cgroup = cgroup2
        .as_ref()
        .ok_or(Unavailable::NoCgroup2)
        .and_then(|p| File::open(p).map_err(short));
    let mode = CgroupAttachMode::default();

    let r = prog::<TracePoint>(&mut ebpf, "probe_tracepoint").and_then(|p| {
        p.load().map_err(short)?;
        p.attach("sock", "inet_sock_set_state")
            .map(drop)
            .map_err(short)
    });
    checks.push(check("tracepoint", true, r));
    let r = prog::<RawTracePoint>(&mut ebpf, "probe_raw_tp").and_then(|p| {
        p.load().map_err(short)?;
        p.attach("sched_process_fork").map(drop).map_err(short)
    });
    checks.push(check("raw_tp", true, r));
    let r = cgroup.as_ref().map_err(Clone::clone).and_then(|cg| {
        let p = prog::<CgroupSkb>(&mut ebpf, "probe_cgroup_skb")?;
        p.load().map_err(short)?;
        p.attach(cg, CgroupSkbAttachType::Egress, mode)
            .map(drop)
            .map_err(short)
    });
    checks.push(check("cgroup_skb", true, r));
    let r = cgroup.as_ref().map_err(Clone::clone).and_then(|cg| {
        let p = prog::<SockOps>(&mut ebpf, "probe_sock_ops")?;
        p.load().map_err(short)?;
        p.attach(cg, mode).map(drop).map_err(short)
    });
    checks.push(check("sock_ops", false, r));
    let r = cgroup.as_ref().map_err(Clone::clone).and_then(|cg| {
        let p = prog::<CgroupSockAddr>(&mut ebpf, "probe_sock_addr")?;
        p.load().map_err(short)?;
        p.attach(cg, mode).map(drop).map_err(short)
    });
    checks.push(check("cgroup_sock_addr", true, r));
    let r = cgroup.as_ref().map_err(Clone::clone).and_then(|cg| {
        let p = prog::<CgroupSock>(&mut ebpf, "probe_sock_release")?;
        p.load().map_err(short)?;
        p.attach(cg, mode).map(drop).map_err(short)
    });
    checks.push(check("cgroup_sock_release", true, r));
    let r = prog::<KProbe>(&mut ebpf, "probe_kprobe").and_then(|p| {
        p.load().map_err(short)?;
        p.attach("tcp_connect", 0).map(drop).map_err(short)
    });
    checks.push(check("kprobe", false, r));
    if let Some(btf) = &typed {
        typed_checks(&mut ebpf, btf, &mut checks);
    }
    finish(kernel, cgroup2, tracefs_root, checks, typed.is_some())
}

/// The hooks whose programs name a kernel function or type, found in aya's parse of the BTF.
fn typed_checks(ebpf: &mut Ebpf, btf: &Result<Btf, Unavailable>, checks: &mut Vec<Check>) {
    let r = btf.clone().and_then(|btf| {
        let p = prog::<BtfTracePoint>(ebpf, "probe_tp_btf")?;
        p.load("sched_process_fork", &btf).map_err(short)?;
        p.attach().map(drop).map_err(short)
    });
    checks.push(check("tp_btf", false, r));
    let r = btf.clone().and_then(|btf| {
        let p = prog::<FEntry>(ebpf, "probe_fentry")?;
        p.load("tcp_connect", &btf).map_err(short)?;
        p.attach().map(drop).map_err(short)
    });
    checks.push(check("fentry", false, r));
    let r = btf.clone().and_then(|btf| {
        let p = prog::<FExit>(ebpf, "probe_fexit")?;
        p.load("tcp_connect", &btf).map_err(short)?;
        p.attach().map(drop).map_err(short)
    });
    checks.push(check("fexit", false, r));
    let r = btf.clone().and_then(|btf| {
        let p = prog::<Lsm>(ebpf, "probe_lsm")?;
        p.load("socket_connect", &btf).map_err(short)?;
        p.attach().map(drop).map_err(short)
    });
    checks.push(check("lsm", false, r));
}

fn finish(
    kernel: String,
    cgroup2_mount: Option<PathBuf>,
    tracefs: Option<PathBuf>,
    checks: Vec<Check>,
    typed_checked: bool,
) -> Report {
    let baseline_ok = checks.iter().filter(|c| c.baseline).all(|c| c.available);
    let fentry_ok = typed_checked.then(|| {
        checks
            .iter()
            .filter(|c| c.name == "fentry" || c.name == "fexit")
            .all(|c| c.available)
    });
    Report {
        kernel,
        cgroup2_mount,
        tracefs,
        checks,
        baseline_ok,
        fentry_ok,
    }
}

/// The human-readable table.
pub fn render(r: &Report) -> String {
    let mut s = format!("kernel {}\n", r.kernel);
    let path = |p: &Option<PathBuf>| p.as_ref().map_or("-".into(), |p| p.display().to_string());
    s += &format!(
        "cgroup v2 mount: {}\ntracefs: {}\n\n",
        path(&r.cgroup2_mount),
        path(&r.tracefs)
    );
    s += &format!(
        "{:<20} {:<12} {:<9} {}\n",
        "hook", "status", "baseline", "detail"
    );
    for c in &r.checks {
        s += &format!(
            "{:<20} {:<12} {:<9} {}\n",
            c.name,
            if c.available {
                "available"
            } else {
                "UNAVAILABLE"
            },
            if c.baseline { "needed" } else { "optional" },
            c.detail.as_deref().unwrap_or("")
        );
    }
    s += &format!(
        "\nbaseline hook set: {}\nfaster tier (fentry/fexit): {}\n",
        if r.baseline_ok {
            "supported"
        } else {
            "NOT supported"
        },
        match r.fentry_ok {
            Some(true) => "allowed",
            Some(false) => "not allowed",
            None => "not checked",
        }
    );
    s
}
