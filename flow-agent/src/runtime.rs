//! The agent's main loop: drain the ring buffer in batches, feed the flow table, hand events to
//! the outputs, reload the configuration on SIGHUP, and on SIGTERM/SIGINT end every open flow
//! before exiting.
use std::{
    collections::{HashMap, HashSet},
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuHashMap};
use flow_common::{ProcessInfo, TcpDetail, UdpCounters, UdpFlowKey, LOSS_KINDS};
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, SignalKind},
};

use crate::{
    capture::{loader::TcpDetailMaps, sock_diag, Capture, CaptureConfig, Record},
    config::Config,
    enrich::clock::{boot_ns_now, rfc3339_micros},
    flows::{
        table::sum_udp_counters, table::UdpCounterSource, tcp_detail::TcpDetailSource, FlowEvent,
        FlowTable, FlowTableConfig,
    },
    health::{KernelLosses, StatsEvent},
    sink::Outputs,
};

pub struct RunOptions {
    pub capture: CaptureConfig,
    pub flows: FlowTableConfig,
    /// How often the ring buffer is drained when no wake-up comes.
    pub poll_interval: Duration,
    /// Outputs, filters and health reporting.
    pub config: Config,
    /// Reads the configuration again on SIGHUP; without it SIGHUP only logs.
    pub reload: Option<Box<dyn FnMut() -> Result<Config>>>,
}

struct KernelUdp<'a>(&'a mut PerCpuHashMap<MapData, UdpFlowKey, UdpCounters>);

impl UdpCounterSource for KernelUdp<'_> {
    fn read(&self, key: &UdpFlowKey) -> Option<UdpCounters> {
        self.0.get(key, 0).ok().map(|v| sum_udp_counters(v.iter()))
    }
    fn remove(&mut self, key: &UdpFlowKey) {
        let _ = self.0.remove(key);
    }
}

impl TcpDetailSource for TcpDetailMaps {
    fn read(&self, cookie: u64) -> Option<TcpDetail> {
        self.sockets.get(&cookie, 0).ok()
    }
    fn take_late(&mut self, cookie: u64) -> Option<TcpDetail> {
        let late = self.late.get(&cookie, 0).ok()?;
        let _ = self.late.remove(&cookie);
        Some(late)
    }
}

fn write_events(outputs: &mut Outputs, events: &mut Vec<FlowEvent>, total: &mut u64) {
    outputs.publish(events);
    *total += events.len() as u64;
    events.clear();
}

/// Swaps in the outputs of a new configuration. The old sinks close first (network sinks move
/// what they hold to their disk buffers), so the new ones find every undelivered record; if
/// the new outputs cannot start, the old configuration's start again.
async fn apply_config(outputs: &mut Option<Outputs>, current: &mut Config, new: Config) {
    if let Some(old) = outputs.take() {
        old.close().await;
    }
    match Outputs::start(&new.outputs, new.filter.clone()) {
        Ok(o) => {
            *outputs = Some(o);
            *current = new;
            log::info!("configuration reloaded");
        }
        Err(e) => {
            log::error!("reloaded configuration rejected, the previous one stays in force: {e}");
            match Outputs::start(&current.outputs, current.filter.clone()) {
                Ok(o) => *outputs = Some(o),
                Err(e) => log::error!("restarting the previous outputs failed: {e}"),
            }
        }
    }
}

fn stats_event(
    started: Instant,
    table: &FlowTable,
    losses: &[u64],
    events_total: u64,
    outputs: &Outputs,
) -> StatsEvent {
    let loss = |i: usize| losses.get(i).copied().unwrap_or(0);
    StatsEvent {
        timestamp: rfc3339_micros(std::time::SystemTime::now()),
        event_action: "stats",
        hostname: table.config().host.hostname.clone(),
        agent_version: env!("CARGO_PKG_VERSION"),
        uptime: started.elapsed().as_secs_f64(),
        flows_open: table.open_flows() as u64,
        events_total,
        kernel_losses: KernelLosses {
            ring_full: loss(0),
            tcp_table_full: loss(1),
            udp_table_full: loss(2),
            read_failed: loss(3),
            owner_table_full: loss(4),
            tcp_detail_lost: loss(5),
            tcp_closes_missed: table.missed_closes,
        },
        sinks: outputs.stats().iter().map(|s| s.report()).collect(),
    }
}

/// Fills the kernel's process table with processes that started before the agent, so the
/// cgroup programs know their start times and parents.
fn seed_processes(capture: &mut Capture, table: &mut FlowTable) -> Result<usize> {
    let map = capture
        .ebpf
        .map_mut("PROCESSES")
        .context("PROCESSES map missing")?;
    let mut kernel: BpfHashMap<&mut MapData, u32, ProcessInfo> = BpfHashMap::try_from(map)?;
    let procs = table.processes.scan_proc();
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

pub async fn run(opts: RunOptions) -> Result<()> {
    // The hooks come from the same probe `flow-agent probe` prints.
    let report = crate::probe::run();
    if !report.baseline_ok {
        let missing: Vec<String> = report
            .checks
            .iter()
            .filter(|c| c.baseline && !c.available)
            .map(|c| {
                format!(
                    "{} ({})",
                    c.name,
                    c.detail.as_deref().unwrap_or("unavailable")
                )
            })
            .collect();
        anyhow::bail!(
            "this kernel lacks hooks the agent needs: {}",
            missing.join("; ")
        );
    }
    log::info!(
        "hook tier: baseline (fentry/fexit {} on this kernel)",
        if report.fentry_ok {
            "allowed, not used yet"
        } else {
            "not allowed"
        }
    );
    let started = Instant::now();
    let mut config = opts.config;
    let mut reload = opts.reload;
    let mut outputs = Some(
        Outputs::start(&config.outputs, config.filter.clone()).context("starting the outputs")?,
    );
    let mut capture = Capture::load(&opts.capture).context("starting kernel capture")?;
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let prefix: String = boot_id
        .trim()
        .chars()
        .filter(|c| *c != '-')
        .take(8)
        .collect();
    let prefix = format!("{prefix}{:x}", std::process::id());
    let mut table = FlowTable::new(opts.flows.clone(), prefix);
    if let Some(maps) = capture.tcp_detail.take() {
        table.set_tcp_detail(Box::new(maps));
    }
    let seeded = seed_processes(&mut capture, &mut table)?;
    log::info!("process table seeded with {seeded} running processes");
    let mut namespaces = sock_diag::network_namespaces();
    let mut events = Vec::new();
    scan_existing_tcp(&mut table, &namespaces, &mut events);

    // SAFETY: the ring buffer's fd lives in `capture`, which outlives `ring_fd` (declared later,
    // dropped first) and is never closed or replaced while the loop runs.
    let ring_fd =
        unsafe { AsyncFd::register_with_interest(capture.events.as_raw_fd(), Interest::READABLE) }
            .map_err(|e| anyhow::anyhow!("registering the ring buffer with the event loop: {e}"))?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut poll = tokio::time::interval(opts.poll_interval);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut sighup = signal(SignalKind::hangup())?;
    let mut last_stats = Instant::now();
    let mut events_total = 0u64;
    let mut last_losses = [0u64; LOSS_KINDS as usize];
    let mut last_missed = 0;
    eprintln!(
        "flow-agent ready: kernel programs attached (cgroup v2 at {})",
        capture.cgroup_root.display()
    );

    loop {
        let mut shutting_down = false;
        tokio::select! {
            guard = ring_fd.readable() => { if let Ok(mut g) = guard { g.clear_ready(); } }
            _ = poll.tick() => {}
            _ = tick.tick() => {
                let mut udp = KernelUdp(&mut capture.udp_flows);
                let now = boot_ns_now();
                table.tick(now, &mut udp, &mut events);
                let due = table.tcp_updates_due(now);
                if !due.is_empty() {
                    if due.iter().any(|ns| !namespaces.contains_key(&u64::from(*ns))) {
                        namespaces = sock_diag::network_namespaces();
                    }
                    snapshot_tcp(&mut table, &namespaces, &due, now, &mut events);
                }
                let losses = capture.losses();
                if losses != last_losses || table.missed_closes != last_missed {
                    log::warn!(
                        "kernel-side losses (ring full, tcp table, udp table, read failed, owner table, tcp detail): {losses:?}; TCP closes missed: {}",
                        table.missed_closes
                    );
                    last_losses = losses;
                    last_missed = table.missed_closes;
                }
                let every = config.health.stats_interval;
                if every > 0 && last_stats.elapsed() >= Duration::from_secs(every) {
                    last_stats = Instant::now();
                    if let Some(o) = outputs.as_mut() {
                        let stats = stats_event(started, &table, &losses, events_total, o);
                        o.publish_stats(&stats);
                    }
                }
            }
            _ = sighup.recv() => {
                // Events drained so far go to the old outputs; later ones to the new.
                drain(&mut capture, &mut table, &mut events);
                if let Some(o) = outputs.as_mut() {
                    write_events(o, &mut events, &mut events_total);
                }
                match reload.as_mut().map(|r| r()) {
                    Some(Ok(new)) => apply_config(&mut outputs, &mut config, new).await,
                    Some(Err(e)) => log::error!(
                        "SIGHUP: the configuration was not reloaded, the previous one stays in force: {e:#}"
                    ),
                    None => log::warn!("SIGHUP: no configuration file to reload"),
                }
            }
            _ = sigterm.recv() => shutting_down = true,
            _ = sigint.recv() => shutting_down = true,
        }
        drain(&mut capture, &mut table, &mut events);
        if let Some(o) = outputs.as_mut() {
            write_events(o, &mut events, &mut events_total);
        }
        if shutting_down {
            drain(&mut capture, &mut table, &mut events);
            for ns in table.tcp_namespaces() {
                let Some(path) = namespaces.get(&u64::from(ns)) else {
                    continue;
                };
                if let Ok(sockets) = sock_diag::tcp_sockets_in(path) {
                    table.refresh_live_totals(ns, &sockets);
                }
            }
            let mut udp = KernelUdp(&mut capture.udp_flows);
            table.shutdown(&mut udp, &mut events);
            if let Some(mut o) = outputs.take() {
                write_events(&mut o, &mut events, &mut events_total);
                o.close().await;
            }
            log::info!("shut down: every open flow reported as ended");
            return Ok(());
        }
    }
}

/// Connections open before the agent started: reported as flows whose start was not observed.
fn scan_existing_tcp(
    table: &mut FlowTable,
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
        table.add_existing_tcp(*inode as u32, &sockets, &listening, &owners, events);
    }
}

/// Update events for TCP flows whose interval is due, from a sock_diag snapshot per namespace.
fn snapshot_tcp(
    table: &mut FlowTable,
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
            Ok(sockets) => table.apply_tcp_snapshot(*ns, &sockets, now, events),
            Err(e) => log::warn!("TCP counters in {}: {e}", path.display()),
        }
    }
}

fn drain(capture: &mut Capture, table: &mut FlowTable, events: &mut Vec<FlowEvent>) {
    let mut records = Vec::new();
    while let Some(item) = capture.events.next() {
        match Record::decode(&item) {
            Ok(r) => records.push(r),
            Err(e) => log::error!("dropping undecodable kernel record: {e}"),
        }
    }
    let mut udp = KernelUdp(&mut capture.udp_flows);
    for r in records {
        table.handle(r, &mut udp, events);
    }
}
