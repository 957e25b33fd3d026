//! The glue between the kernel's maps and the flow table: counters the table reads, the
//! process table the kernel needs seeded, and sock_diag snapshots of open TCP connections.
use std::{
    collections::{HashMap, HashSet},
    fs::File,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuHashMap};
use flow_common::{ProcessInfo, TcpDetail, UdpCounters, UdpFlowKey};

use super::stages::Stages;
use crate::{
    capture::{loader::TcpDetailMaps, sock_diag, Capture},
    enrich::Enricher,
    event::FlowEvent,
    flows::{
        table::{sum_udp_counters, UdpCounterSource},
        tcp_detail::TcpDetailSource,
        FlowTable, Tracked,
    },
};

/// The kernel's per-CPU UDP counters, as the flow table reads them.
pub(super) struct KernelUdp<'a>(pub(crate) &'a mut PerCpuHashMap<MapData, UdpFlowKey, UdpCounters>);

impl UdpCounterSource for KernelUdp<'_> {
    fn read(&self, key: &UdpFlowKey) -> Option<UdpCounters> {
        self.0.get(key, 0).ok().map(|v| sum_udp_counters(v.iter()))
    }
    fn remove(&mut self, key: &UdpFlowKey) {
        let _ = self.0.remove(key);
    }
}

impl TcpDetailSource for TcpDetailMaps {
    fn attached_ns(&self) -> u64 {
        self.attached_ns
    }
    fn read(&self, cookie: u64) -> Option<TcpDetail> {
        self.sockets.get(&cookie, 0).ok()
    }
    fn take_late(&mut self, cookie: u64) -> Option<TcpDetail> {
        let late = self.late.get(&cookie, 0).ok()?;
        let _ = self.late.remove(&cookie);
        Some(late)
    }
}

/// Fills the kernel's process table with processes that started before the agent, so the
/// cgroup programs know their start times and parents.
pub(super) fn seed_processes(capture: &mut Capture, enricher: &mut Enricher) -> Result<usize> {
    let map = capture
        .ebpf
        .map_mut("PROCESSES")
        .context("PROCESSES map missing")?;
    let mut kernel: BpfHashMap<&mut MapData, u32, ProcessInfo> = BpfHashMap::try_from(map)?;
    let procs = enricher.identities.processes.scan_proc();
    for p in &procs {
        let netns = std::fs::metadata(format!("/proc/{}/ns/net", p.pid)).map_or(0, |m| m.ino());
        let info = ProcessInfo {
            start_ns: p.start_ns,
            ppid: p.ppid,
            netns: netns as u32,
        };
        // BPF_NOEXIST: an exec or fork the kernel already recorded is more exact.
        let _ = kernel.insert(p.pid, info, 1);
    }
    Ok(procs.len())
}

/// Connections open before the agent started: reported as flows whose start was not observed.
pub(super) fn scan_existing_tcp(
    stages: &mut Stages,
    namespaces: &HashMap<u64, PathBuf>,
    events: &mut Vec<FlowEvent>,
) {
    let owners = sock_diag::socket_owners();
    for (inode, path) in namespaces {
        let sockets = match sock_diag::tcp_sockets_in(path) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("listing TCP connections in {}: {e}", path.display());
                continue;
            }
        };
        let listen = sock_diag::state_bit(sock_diag::tcp_state::LISTEN);
        let listening: HashSet<u16> = sock_diag::tcp_sockets_in_with_states(path, listen)
            .unwrap_or_default()
            .iter()
            .map(|s| s.local.port())
            .collect();
        stages.add_existing(*inode as u32, &sockets, &listening, &owners, events);
    }
}

/// Update events for TCP flows whose interval is due, from a sock_diag snapshot per namespace.
pub(super) fn snapshot_tcp(
    stages: &mut Stages,
    namespaces: &HashMap<u64, PathBuf>,
    due: &HashSet<u32>,
    now: u64,
    events: &mut Vec<FlowEvent>,
) {
    for ns in due {
        let Some(path) = namespaces.get(&u64::from(*ns)) else {
            continue;
        };
        match sock_diag::tcp_sockets_in(path) {
            Ok(sockets) => stages.snapshot(*ns, &sockets, now, events),
            Err(e) => log::warn!("TCP counters in {}: {e}", path.display()),
        }
    }
}

/// Last counters of every TCP flow still open, for their shutdown end events.
pub(super) fn refresh_open_tcp(
    table: &mut crate::flows::FlowTable,
    namespaces: &HashMap<u64, PathBuf>,
) {
    for ns in table.tcp_namespaces() {
        let Some(path) = namespaces.get(&u64::from(ns)) else {
            continue;
        };
        if let Ok(sockets) = sock_diag::tcp_sockets_in(path) {
            table.refresh_live_totals(ns, &sockets);
        }
    }
}

/// The TCP flows whose close record was lost end (`close_missed`): each network namespace
/// holding TCP flows is listed by sock_diag and the table reconciled with it
/// (`flows/tcp_live.rs`). `namespaces` (nsfs inode to a path to open it) is refreshed when a
/// namespace is not found in it; a namespace not found even then no longer exists.
pub(super) fn reconcile_tcp(
    table: &mut FlowTable,
    namespaces: &mut HashMap<u64, PathBuf>,
    now: u64,
    out: &mut Vec<Tracked>,
) {
    let mut refreshed = false;
    for ns in table.tcp_namespaces() {
        if ns == 0 {
            continue;
        }
        match in_namespace(ns, namespaces, &mut refreshed, sock_diag::tcp_sockets_in) {
            Listing::Found(sockets) => {
                table.reconcile_tcp(ns, Some(&sockets), now, out);
            }
            Listing::Gone => {
                table.reconcile_tcp(ns, None, now, out);
            }
            Listing::Failed(e) => log::warn!("listing TCP sockets in network namespace {ns}: {e}"),
        }
    }
}

/// The UDP flows whose release record was lost end (`release_missed`), as [`reconcile_tcp`]
/// ends TCP flows (`flows/udp_live.rs`).
pub(super) fn reconcile_udp(
    table: &mut FlowTable,
    namespaces: &mut HashMap<u64, PathBuf>,
    now: u64,
    udp: &mut impl UdpCounterSource,
    out: &mut Vec<Tracked>,
) {
    let mut refreshed = false;
    for ns in table.udp_namespaces() {
        if ns == 0 {
            continue;
        }
        match in_namespace(ns, namespaces, &mut refreshed, sock_diag::udp_cookies_in) {
            Listing::Found(cookies) => {
                table.reconcile_udp(ns, Some(&cookies), now, udp, out);
            }
            Listing::Gone => {
                table.reconcile_udp(ns, None, now, udp, out);
            }
            Listing::Failed(e) => log::warn!("listing UDP sockets in network namespace {ns}: {e}"),
        }
    }
}

enum Listing<T> {
    Found(T),
    /// No process is in it and no name holds it: gone, with its sockets.
    Gone,
    Failed(sock_diag::DiagError),
}

/// What `list` finds in network namespace `ns`. A path that opens another namespace (its
/// process exited and the pid was reused) is never listed.
fn in_namespace<T>(
    ns: u32,
    namespaces: &mut HashMap<u64, PathBuf>,
    refreshed: &mut bool,
    list: impl Fn(&Path) -> Result<T, sock_diag::DiagError>,
) -> Listing<T> {
    loop {
        if let Some(file) = namespaces
            .get(&u64::from(ns))
            .and_then(|p| open_namespace(p, ns))
        {
            // Listed through our own descriptor: what was checked is what is entered.
            let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
            return match list(&path) {
                Ok(found) => Listing::Found(found),
                Err(e) => Listing::Failed(e),
            };
        }
        if *refreshed {
            return Listing::Gone;
        }
        *namespaces = sock_diag::network_namespaces();
        *refreshed = true;
    }
}

/// The namespace file at `path`, if it is network namespace `ns` (the nsfs inode).
fn open_namespace(path: &Path, ns: u32) -> Option<File> {
    let file = File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    let nsfs = std::fs::metadata("/proc/self/ns/net").ok()?;
    (meta.ino() == u64::from(ns) && meta.dev() == nsfs.dev()).then_some(file)
}
