//! Loads the embedded kernel programs with this kernel's offsets and attaches the baseline hook
//! set: tracepoints, one raw tracepoint and cgroup v2 programs on the root cgroup.
use std::{fs::File, path::PathBuf};

use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, ProgramError,
        RawTracePoint, TracePoint,
    },
    Ebpf, EbpfLoader,
};
use aya_log::EbpfLogger;
use flow_common::{ProgramConfig, TcpDetail, UdpCounters, UdpFlowKey, LOSS_KINDS};

use super::object::EBPF_OBJECT;
use crate::kernel::{btf::Btf, mounts::cgroup2_mount, offsets, tracefs};

#[derive(Debug, thiserror::Error)]
pub(crate) enum CaptureError {
    #[error("reading the kernel's BTF: {0}")]
    Btf(#[from] crate::kernel::btf::BtfError),
    #[error("computing kernel struct offsets: {0}")]
    Offsets(#[from] offsets::OffsetsError),
    #[error("tracefs: {0}")]
    Tracefs(#[from] tracefs::TracefsError),
    #[error("no cgroup v2 hierarchy is mounted (none in /proc/self/mountinfo)")]
    NoCgroup2,
    #[error("opening the cgroup v2 root {path}: {source}")]
    CgroupOpen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: ProgramError,
    },
    #[error("program {0} is missing from the eBPF object")]
    MissingProgram(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("reading the kernel programs' log: {0}")]
    KernelLog(aya_log::Error),
}

/// Bytes of the process ring (exec, fork, exit): an exec record is its header and command
/// line, 4–8 KiB, so this holds 250 or more; the agent drains it every 20 ms.
const PROCESS_RING_BYTES: u32 = 2 << 20;
/// Bytes of the DNS ring: each record is its message (up to 1 KiB kept) and some 80 bytes, so
/// at least 1000 messages, some 8000 typical queries.
const DNS_RING_BYTES: u32 = 1 << 20;

/// Sizes of the kernel-side tables; nothing there grows without bound.
#[derive(Clone, Debug)]
pub struct CaptureConfig {
    pub(crate) ring_buffer_bytes: u32,
    /// Exec, fork, exit and credential records (`PROCESS_EVENTS`).
    pub(crate) process_ring_bytes: u32,
    /// DNS messages (`DNS_EVENTS`).
    pub(crate) dns_ring_bytes: u32,
    pub(crate) tcp_sockets: u32,
    pub(crate) udp_flows: u32,
    pub(crate) udp_owners: u32,
    pub(crate) processes: u32,
    pub(crate) listeners: u32,
    pub(crate) wakeup_bytes: u32,
    /// Count TCP packets per socket (IP bytes, flags, first payload times, history).
    pub(crate) tcp_detail: bool,
    /// TCP sockets whose packets are counted at once (`TCP_PKTS`).
    pub(crate) tcp_detail_sockets: u32,
    /// Copy the first payload segment of each TCP direction (needs `tcp_detail`, whose
    /// per-packet program finds it).
    pub(crate) payload_inspection: bool,
    /// Handshakes in progress on listening sockets (`TCP_HANDSHAKES`).
    pub(crate) tcp_handshakes: u32,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            ring_buffer_bytes: 8 << 20,
            process_ring_bytes: PROCESS_RING_BYTES,
            dns_ring_bytes: DNS_RING_BYTES,
            tcp_sockets: 131072,
            udp_flows: 65536,
            udp_owners: 65536,
            processes: 65536,
            listeners: 16384,
            wakeup_bytes: 256 << 10,
            tcp_detail: false,
            tcp_detail_sockets: 65536,
            payload_inspection: true,
            tcp_handshakes: 16384,
        }
    }
}

pub(crate) struct Capture {
    /// Owns the programs and their links: dropping it detaches everything.
    pub(crate) ebpf: Ebpf,
    /// Flow records (`EVENTS`), sized by `ring_buffer_bytes`.
    pub(crate) events: RingBuf<MapData>,
    /// Exec, fork and exit records (`PROCESS_EVENTS`, 2 MiB) and DNS messages (`DNS_EVENTS`,
    /// 1 MiB): rings of their own, so that a flood of one class never takes the room of flows.
    pub(crate) process_events: RingBuf<MapData>,
    pub(crate) dns_events: RingBuf<MapData>,
    pub(crate) losses: PerCpuArray<MapData, u64>,
    pub(crate) udp_flows: PerCpuHashMap<MapData, UdpFlowKey, UdpCounters>,
    /// Per-packet TCP counters by socket cookie (`TCP_PKTS`), and those of packets sent after
    /// a socket's close (`TCP_LATE`); `None` when TCP detail is off.
    pub(crate) tcp_detail: Option<TcpDetailMaps>,
    pub(crate) cgroup_root: PathBuf,
    /// The kernel programs' own log records (aya-log), read only at `--log-level trace`.
    kernel_log: Option<EbpfLogger<&'static dyn log::Log>>,
}

pub(crate) struct TcpDetailMaps {
    pub(crate) sockets: BpfHashMap<MapData, u64, TcpDetail>,
    pub(crate) late: BpfHashMap<MapData, u64, TcpDetail>,
    /// When the per-packet programs were attached (CLOCK_BOOTTIME ns): a socket opened before
    /// that may have missed its first packets without any loss.
    pub(crate) attached_ns: u64,
}

const TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("sys_exit_accept4", "syscalls", "sys_exit_accept4"),
    ("sys_exit_accept", "syscalls", "sys_exit_accept"),
    ("sched_process_exec", "sched", "sched_process_exec"),
    ("sched_process_exit", "sched", "sched_process_exit"),
    ("creds_setuid", "syscalls", "sys_exit_setuid"),
    ("creds_setreuid", "syscalls", "sys_exit_setreuid"),
    ("creds_setresuid", "syscalls", "sys_exit_setresuid"),
    ("creds_setgid", "syscalls", "sys_exit_setgid"),
    ("creds_setregid", "syscalls", "sys_exit_setregid"),
    ("creds_setresgid", "syscalls", "sys_exit_setresgid"),
];

const CGROUP_SOCK: &[&str] = &["udp_sock_create", "udp_sock_release"];
const CGROUP_SOCK_ADDR: &[&str] = &[
    "udp_connect4",
    "udp_connect6",
    "udp_sendmsg4",
    "udp_sendmsg6",
    "udp_recvmsg4",
    "udp_recvmsg6",
];

/// The kernel's BTF, read once per start: this crate's reading of it (struct offsets) and aya's
/// loader, which parses it again when made (some 0.25 s on a fast host, seconds under
/// emulation). The start-up probe and the capture both load through this one loader.
pub(crate) struct Loader {
    pub(crate) aya: EbpfLoader<'static>,
    btf: Btf,
}

impl Loader {
    pub(crate) fn new() -> Result<Self, crate::kernel::btf::BtfError> {
        let btf = Btf::from_sys_fs()?;
        Ok(Self {
            aya: EbpfLoader::new(),
            btf,
        })
    }
}

impl Capture {
    /// Loads with a loader of its own (the self-check run alone).
    pub(crate) fn load_alone(cfg: &CaptureConfig) -> Result<Self, CaptureError> {
        Self::load(cfg, &mut Loader::new()?)
    }

    pub(crate) fn load(cfg: &CaptureConfig, loader: &mut Loader) -> Result<Self, CaptureError> {
        // Hash maps are allocated in full at load: unused detail tables get one entry.
        let detail_size = |n: u32| if cfg.tcp_detail { n.max(1) } else { 1 };
        let offsets = offsets::resolve(&loader.btf)?;
        // The syscall and sched tracepoints need tracefs mounted.
        tracefs::tracefs_root_or_mount()?;
        // The loader keeps a reference to the global's bytes for its whole life: one small
        // value per capture loaded (once per process) is leaked for it.
        let program_config: &'static ProgramConfig = Box::leak(Box::new(ProgramConfig {
            offsets,
            wakeup_bytes: cfg.wakeup_bytes,
            tcp_detail: u32::from(cfg.tcp_detail),
            payload_inspection: u32::from(cfg.tcp_detail && cfg.payload_inspection),
        }));
        // The programs' log calls are pruned by the verifier unless tracing (level 0: none).
        let kernel_log_level: &'static u8 = if log::log_enabled!(log::Level::Trace) {
            &(aya_log::Level::Trace as u8)
        } else {
            &0
        };
        let mut ebpf = loader
            .aya
            .override_global("CONFIG", program_config, true)
            .override_global(aya_log::LEVEL, kernel_log_level, true)
            .map_max_entries("EVENTS", cfg.ring_buffer_bytes)
            .map_max_entries("PROCESS_EVENTS", cfg.process_ring_bytes)
            .map_max_entries("DNS_EVENTS", cfg.dns_ring_bytes)
            .map_max_entries("TCP_SOCKS", cfg.tcp_sockets)
            .map_max_entries("FILTERED_SOCKS", cfg.tcp_sockets)
            .map_max_entries("UDP_FLOWS", cfg.udp_flows)
            .map_max_entries("UDP_OWNERS", cfg.udp_owners)
            .map_max_entries("PROCESSES", cfg.processes)
            .map_max_entries("LISTENERS", cfg.listeners)
            .map_max_entries("TCP_PKTS", detail_size(cfg.tcp_detail_sockets))
            .map_max_entries("TCP_HANDSHAKES", detail_size(cfg.tcp_handshakes))
            .map_max_entries("TCP_LATE", detail_size(4096))
            .load(EBPF_OBJECT)?;

        // Process table first, so that exec records precede the flows of those processes.
        for (name, category, event) in TRACEPOINTS.iter().rev() {
            let prog: &mut TracePoint = program(&mut ebpf, name)?;
            prog.load()
                .map_err(|source| CaptureError::Program { name, source })?;
            prog.attach(category, event)
                .map_err(|source| CaptureError::Program { name, source })?;
        }
        // Raw tracepoints do not share the per-CPU guard of classic tracepoint programs, under
        // which a state change in softirq is skipped whenever any tracing program runs on that
        // CPU: TCP state changes must not be lost that way.
        // The backup must be attached after the primary: it runs second on every call.
        for name in [
            "sched_process_fork",
            "inet_sock_set_state",
            "inet_sock_set_state_backup",
        ] {
            let prog: &mut RawTracePoint = program(&mut ebpf, name)?;
            prog.load()
                .map_err(|source| CaptureError::Program { name, source })?;
            let tracepoint = name.trim_end_matches("_backup");
            prog.attach(tracepoint)
                .map_err(|source| CaptureError::Program { name, source })?;
        }

        let cgroup_root = cgroup2_mount().ok_or(CaptureError::NoCgroup2)?;
        let cgroup = File::open(&cgroup_root).map_err(|source| CaptureError::CgroupOpen {
            path: cgroup_root.clone(),
            source,
        })?;
        // On 5.7+ aya attaches with bpf_link, which always coexists with other programs on the
        // cgroup and rejects any attach flag: the mode must be the default (0).
        let mode = CgroupAttachMode::default();
        for name in CGROUP_SOCK {
            let prog: &mut CgroupSock = program(&mut ebpf, name)?;
            prog.load()
                .map_err(|source| CaptureError::Program { name, source })?;
            prog.attach(&cgroup, mode)
                .map_err(|source| CaptureError::Program { name, source })?;
        }
        for name in CGROUP_SOCK_ADDR {
            let prog: &mut CgroupSockAddr = program(&mut ebpf, name)?;
            prog.load()
                .map_err(|source| CaptureError::Program { name, source })?;
            prog.attach(&cgroup, mode)
                .map_err(|source| CaptureError::Program { name, source })?;
        }
        for (name, kind) in [
            ("skb_egress", CgroupSkbAttachType::Egress),
            ("skb_ingress", CgroupSkbAttachType::Ingress),
        ] {
            let prog: &mut CgroupSkb = program(&mut ebpf, name)?;
            prog.load()
                .map_err(|source| CaptureError::Program { name, source })?;
            prog.attach(&cgroup, kind, mode)
                .map_err(|source| CaptureError::Program { name, source })?;
        }
        let skb_attached_ns = crate::clock::boot_ns_now();
        let kernel_log = if *kernel_log_level == 0 {
            None
        } else {
            log::trace!("the kernel programs' log records are read (AYA_LOGS)");
            Some(EbpfLogger::init(&mut ebpf).map_err(CaptureError::KernelLog)?)
        };

        let ring = |ebpf: &mut Ebpf, name: &'static str| {
            RingBuf::try_from(take_map(ebpf, name)?)
                .map_err(|source| CaptureError::Map { name, source })
        };
        let events = ring(&mut ebpf, "EVENTS")?;
        let process_events = ring(&mut ebpf, "PROCESS_EVENTS")?;
        let dns_events = ring(&mut ebpf, "DNS_EVENTS")?;
        let losses = PerCpuArray::try_from(take_map(&mut ebpf, "LOSSES")?).map_err(|source| {
            CaptureError::Map {
                name: "LOSSES",
                source,
            }
        })?;
        let udp_flows =
            PerCpuHashMap::try_from(take_map(&mut ebpf, "UDP_FLOWS")?).map_err(|source| {
                CaptureError::Map {
                    name: "UDP_FLOWS",
                    source,
                }
            })?;
        let tcp_detail = if cfg.tcp_detail {
            let hash = |ebpf: &mut Ebpf, name: &'static str| {
                BpfHashMap::try_from(take_map(ebpf, name)?)
                    .map_err(|source| CaptureError::Map { name, source })
            };
            Some(TcpDetailMaps {
                sockets: hash(&mut ebpf, "TCP_PKTS")?,
                late: hash(&mut ebpf, "TCP_LATE")?,
                attached_ns: skb_attached_ns,
            })
        } else {
            None
        };
        Ok(Self {
            ebpf,
            events,
            process_events,
            dns_events,
            losses,
            udp_flows,
            tcp_detail,
            cgroup_root,
            kernel_log,
        })
    }

    /// Writes the kernel programs' log records waiting in their ring to the agent's log.
    pub(crate) fn flush_kernel_log(&mut self) {
        if let Some(logger) = &mut self.kernel_log {
            logger.flush();
        }
    }

    /// Kernel-side loss counters, summed over CPUs, indexed by `flow_common::Loss`.
    pub(crate) fn losses(&self) -> [u64; LOSS_KINDS as usize] {
        let mut out = [0; LOSS_KINDS as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            if let Ok(values) = self.losses.get(&(i as u32), 0) {
                *slot = values.iter().sum();
            }
        }
        out
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, CaptureError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or(CaptureError::MissingProgram(name))?;
    prog.try_into()
        .map_err(|source| CaptureError::Program { name, source })
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, CaptureError> {
    ebpf.take_map(name).ok_or(CaptureError::Map {
        name,
        source: aya::maps::MapError::InvalidName { name: name.into() },
    })
}
