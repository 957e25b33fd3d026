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
use aya::maps::{HashMap as BpfHashMap, MapData};
use flow_common::{ProcessInfo, TcpDetail, LOSS_KINDS};
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, SignalKind},
};

use crate::{
    capture::{
        drain::{self, drain, DrainBudget, KernelUdp},
        loader::TcpDetailMaps,
        sock_diag, Capture, CaptureConfig, FilterSkipped,
    },
    config::Config,
    enrich::clock::{boot_ns_now, rfc3339_micros},
    filter::kernel::KernelPlan,
    flows::{tcp_detail::TcpDetailSource, FlowEvent, FlowTable, FlowTableConfig},
    health::{Health, KernelLosses, StatsEvent},
    ratelimit::RateLimiter,
    sink::Outputs,
};

/// The kernel lacks a hook the agent needs (exit status 3).
#[derive(Debug, thiserror::Error)]
#[error("this kernel lacks hooks the agent needs: {0}")]
pub struct KernelUnsupported(pub String);

pub struct RunOptions {
    pub capture: CaptureConfig,
    pub flows: FlowTableConfig,
    /// How often the ring buffer is drained when no wake-up comes.
    pub poll_interval: Duration,
    /// Outputs, filters, health reporting and the agent's log; `capture` and `flows` are
    /// derived from it.
    pub config: Config,
    /// Reads the configuration again on SIGHUP (outputs, filters, `[flows]`, `[enrich]` and
    /// `[agent]` change; `[capture]` needs a restart); without it SIGHUP only logs.
    pub reload: Option<Box<dyn FnMut() -> Result<Config>>>,
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

/// Suppressed flows' events leave the batch ([`RateLimiter`]); the rest go out.
fn write_events(
    outputs: &mut Outputs,
    events: &mut Vec<FlowEvent>,
    total: &mut u64,
    limiter: &mut RateLimiter,
) {
    limiter.apply(events, boot_ns_now());
    outputs.publish(events);
    *total += events.len() as u64;
    events.clear();
}

/// The `dns_query` events the table collected ([`FlowTable::dns_events`]).
fn write_dns(table: &mut FlowTable, outputs: Option<&mut Outputs>) {
    if table.dns_events_dropped > 0 {
        log::warn!(
            "{} dns_query events dropped: too many answers between two writes",
            table.dns_events_dropped
        );
        table.dns_events_dropped = 0;
    }
    let events = std::mem::take(&mut table.dns_events);
    if let Some(o) = outputs {
        o.publish_dns(&events);
    }
}

/// Swaps in the outputs of a new configuration. The old sinks close first (network sinks move
/// what they hold to their disk buffers), so the new ones find every undelivered record; if
/// the new outputs cannot start, the old configuration's start again. True when the new
/// configuration is in force.
async fn apply_config(
    outputs: &mut Option<Outputs>,
    health: &mut Health,
    current: &mut Config,
    new: Config,
) -> bool {
    if let Err(e) = new.health.metrics_address() {
        log::error!("reloaded configuration rejected, the previous one stays in force: {e}");
        return false;
    }
    if let Some(old) = outputs.take() {
        old.close().await;
    }
    match Outputs::start(&new.outputs, new.filter.clone()) {
        Ok(o) => {
            *outputs = Some(o);
            // Checked above: cannot fail.
            let _ = health.apply(&new.health);
            *current = new;
            log::info!("configuration reloaded");
            true
        }
        Err(e) => {
            log::error!("reloaded configuration rejected, the previous one stays in force: {e}");
            match Outputs::start(&current.outputs, current.filter.clone()) {
                Ok(o) => *outputs = Some(o),
                Err(e) => log::error!("restarting the previous outputs failed: {e}"),
            }
            false
        }
    }
}

/// A reloaded configuration: outputs and filters first, then the flow table's settings and
/// the agent's log. Kernel table sizes are fixed while the programs are loaded.
#[allow(clippy::too_many_arguments)]
async fn reload_config(
    outputs: &mut Option<Outputs>,
    health: &mut Health,
    current: &mut Config,
    new: Config,
    table: &mut FlowTable,
    capture: &mut Capture,
    kernel_plan: &mut KernelPlan,
    loaded_capture: &crate::config::CaptureSettings,
) {
    let flows = new.flow_table_config(table.config().host.clone());
    let agent = new.agent.clone();
    let capture_changed = new.capture != *loaded_capture;
    if !apply_config(outputs, health, current, new).await {
        return;
    }
    // After the outputs: the new userspace filter is in force before the kernel's changes.
    capture.apply_filter(kernel_plan, &current.filter);
    table.reconfigure(flows);
    crate::logger::configure(&agent);
    if capture_changed {
        log::warn!(
            "[capture] changed: kernel table sizes are fixed while the agent runs; the new ones take effect at the next start (restart the agent)"
        );
    }
}

fn stats_event(
    started: Instant,
    table: &FlowTable,
    losses: &[u64],
    events_total: u64,
    outputs: &Outputs,
    limiter: &RateLimiter,
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
            tcp_table_full: loss(1) + table.evicted.tcp,
            udp_table_full: loss(2) + table.evicted.udp,
            read_failed: loss(3),
            owner_table_full: loss(4),
            tcp_detail_lost: loss(5),
            tcp_closes_missed: table.missed_closes,
        },
        sinks: outputs.stats().iter().map(|s| s.report()).collect(),
        rate_limit: limiter.stats(),
    }
}

/// The interval's `rate_limited` summaries (all of them when `force`), also logged: a
/// suppressed flow is never silent, whatever the outputs' formats.
fn write_summaries(limiter: &mut RateLimiter, outputs: &mut Outputs, force: bool) {
    let now = std::time::SystemTime::now();
    let summaries = limiter.take_summaries(boot_ns_now(), &rfc3339_micros(now), force);
    for s in &summaries {
        log::warn!(
            "rate limit ({}): {} flows suppressed (tcp {}, udp {}) of pid {} ({}); {} suppressed flows ended",
            s.limiter,
            s.suppressed_flows,
            s.suppressed_tcp,
            s.suppressed_udp,
            s.process.pid.map_or("-".to_string(), |p| p.to_string()),
            s.process.exe.as_deref().unwrap_or("-"),
            s.suppressed_ended,
        );
    }
    outputs.publish_suppressed(&summaries);
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
    let user = std::env::var(crate::service::USER_ENV)
        .ok()
        .or_else(|| Some(opts.config.agent.user.clone()).filter(|u| !u.is_empty()));
    // Joined while the agent may: after the drop, fchown gives files only its own groups.
    let groups =
        crate::sink::file::output_groups(&opts.config.outputs).context("starting the outputs")?;
    let mut service = crate::service::Service::start(user.as_deref(), &groups)?;
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
        return Err(KernelUnsupported(missing.join("; ")).into());
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
    crate::logger::configure(&config.agent);
    let loaded_capture = config.capture.clone();
    let mut reload = opts.reload;
    let mut health = Health::start(started, &config.health)?;
    let mut outputs = Some(
        Outputs::start(&config.outputs, config.filter.clone()).context("starting the outputs")?,
    );
    let mut capture = Capture::load(&opts.capture).context("starting kernel capture")?;
    let mut kernel_plan = KernelPlan::default();
    capture.apply_filter(&mut kernel_plan, &config.filter);
    let mut last_skipped = FilterSkipped::default();
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
    let mut limiter = RateLimiter::new(config.rate_limit.clone(), boot_ns_now());
    limiter.set_filter(config.filter.clone());
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
    // A slow iteration must not make the tick ready on every following one (it goes first).
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sighup = signal(SignalKind::hangup())?;
    let mut last_stats = Instant::now();
    // Kernel-side losses as the last stats event reported them.
    let mut reported_losses = KernelLosses::default();
    // Flows suppressed as the last stats event reported them.
    let mut reported_suppressed = 0u64;
    let mut events_total = 0u64;
    let mut last_losses = [0u64; LOSS_KINDS as usize];
    let mut last_missed = (0, Default::default());
    service.attached()?;
    crate::logger::notice(
        module_path!(),
        &format!(
            "flow-agent ready: kernel programs attached (cgroup v2 at {})",
            capture.cgroup_root.display()
        ),
    );

    // Records may still wait in the ring: the last drain stopped at its cap.
    let mut backlog = false;
    let ring_bytes = opts.capture.ring_buffer_bytes as usize;
    loop {
        let mut shutting_down = false;
        if backlog {
            // Lets the runtime poll its drivers (signals, timers) between two portions.
            tokio::task::yield_now().await;
        }
        tokio::select! {
            // Signals and the tick first: a storm of records must not starve them.
            biased;
            _ = sigterm.recv() => shutting_down = true,
            _ = sigint.recv() => shutting_down = true,
            _ = tick.tick() => {
                service.tick();
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
                if losses != last_losses || (table.missed_closes, table.evicted) != last_missed {
                    log::warn!(
                        "kernel-side losses (ring full, tcp table, udp table, read failed, owner table, tcp detail): {losses:?}; TCP closes missed: {}; evicted while open (tcp, udp): ({}, {})",
                        table.missed_closes, table.evicted.tcp, table.evicted.udp
                    );
                    last_losses = losses;
                    last_missed = (table.missed_closes, table.evicted);
                }
                let skipped = capture.filter_skipped();
                if skipped != last_skipped {
                    skipped.log(log::Level::Debug);
                    last_skipped = skipped;
                }
                if let Some(o) = outputs.as_mut() {
                    // Events the tick produced go out before the summaries that may count them.
                    write_events(o, &mut events, &mut events_total, &mut limiter);
                    write_dns(&mut table, Some(o));
                    write_summaries(&mut limiter, o, false);
                    // Metrics follow every tick; stats events every stats_interval.
                    let stats = stats_event(started, &table, &losses, events_total, o, &limiter);
                    health.update(&stats, o.stats());
                    let every = config.health.stats_interval;
                    if every > 0 && last_stats.elapsed() >= Duration::from_secs(every) {
                        last_stats = Instant::now();
                        o.publish_stats(&stats);
                        reported_losses = stats.kernel_losses.clone();
                        reported_suppressed = stats.rate_limit.suppressed_process
                            + stats.rate_limit.suppressed_global;
                    }
                }
            }
            _ = sighup.recv() => {
                service.reloading();
                // Records written before the signal go to the old outputs; later ones to the new.
                drain_until(
                    &mut capture,
                    &mut table,
                    &mut events,
                    &mut outputs,
                    &mut events_total,
                    &mut limiter,
                    ring_bytes,
                    RELOAD_DRAIN_TIME,
                );
                match reload.as_mut().map(|r| r()) {
                    Some(Ok(new)) => {
                        // What the old limits suppressed is told by the old outputs.
                        if let Some(o) = outputs.as_mut() {
                            write_summaries(&mut limiter, o, true);
                        }
                        reload_config(
                            &mut outputs,
                            &mut health,
                            &mut config,
                            new,
                            &mut table,
                            &mut capture,
                            &mut kernel_plan,
                            &loaded_capture,
                        )
                        .await;
                        limiter.reconfigure(config.rate_limit.clone());
                        limiter.set_filter(config.filter.clone());
                    }
                    Some(Err(e)) => log::error!(
                        "SIGHUP: the configuration was not reloaded, the previous one stays in force: {e:#}"
                    ),
                    None => log::warn!("SIGHUP: no configuration file to reload"),
                }
                service.reloaded();
            }
            guard = ring_fd.readable() => { if let Ok(mut g) = guard { g.clear_ready(); } }
            _ = poll.tick() => {}
            _ = std::future::ready(()), if backlog => {}
        }
        if shutting_down {
            service.stopping();
            // What the ring held when the signal came, in portions; records stamped after it
            // are not owed (at most one ring's worth is read, however fast the kernel writes).
            let drained = drain_until(
                &mut capture,
                &mut table,
                &mut events,
                &mut outputs,
                &mut events_total,
                &mut limiter,
                ring_bytes,
                SHUTDOWN_DRAIN_TIME,
            );
            let unread = if drained.timed_out {
                let n = drain::skip(
                    &mut capture,
                    drained.signal_ns,
                    ring_bytes.saturating_sub(drained.bytes),
                );
                log::warn!(
                    "shutdown: {n} kernel records written before the signal were still unprocessed after {SHUTDOWN_DRAIN_TIME:?}: given up, counted as ring_full losses"
                );
                n
            } else {
                0
            };
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
            let mut losses = capture.losses();
            losses[flow_common::Loss::RingBufferFull as usize] += unread;
            if let Some(mut o) = outputs.take() {
                write_events(&mut o, &mut events, &mut events_total, &mut limiter);
                write_dns(&mut table, Some(&mut o));
                write_summaries(&mut limiter, &mut o, true);
                // Losses since the last stats event are never left unsaid: one more report.
                let stats = stats_event(started, &table, &losses, events_total, &o, &limiter);
                health.update(&stats, o.stats());
                if config.health.stats_interval > 0
                    && (stats.kernel_losses != reported_losses
                        || stats.rate_limit.suppressed_process + stats.rate_limit.suppressed_global
                            != reported_suppressed)
                {
                    o.publish_stats(&stats);
                }
                o.close().await;
            }
            log::info!(
                "kernel-side losses at shutdown (ring full, tcp table, udp table, read failed, owner table, tcp detail): {losses:?}; TCP closes missed: {}; evicted while open (tcp, udp): ({}, {})",
                table.missed_closes, table.evicted.tcp, table.evicted.udp
            );
            let skipped = capture.filter_skipped();
            if kernel_plan.kernel_rules > 0 || skipped != FilterSkipped::default() {
                skipped.log(log::Level::Info);
            }
            log::info!("shut down: every open flow reported as ended");
            return Ok(());
        }
        backlog = drain(&mut capture, &mut table, &mut events, DrainBudget::batch()).more;
        if let Some(o) = outputs.as_mut() {
            write_events(o, &mut events, &mut events_total, &mut limiter);
        }
        write_dns(&mut table, outputs.as_mut());
    }
}

/// How long records written before SIGTERM are still processed; what is left then is given up
/// and counted (`ring_full`), so that SIGTERM is honoured under any storm on any CPU.
const SHUTDOWN_DRAIN_TIME: Duration = Duration::from_secs(5);
/// How long records written before SIGHUP go to the old outputs; later ones go to the new.
const RELOAD_DRAIN_TIME: Duration = Duration::from_secs(5);

/// How far [`drain_until`] got.
struct DrainedUntil {
    /// When the signal was handled (CLOCK_BOOTTIME).
    signal_ns: u64,
    /// Ring bytes read.
    bytes: usize,
    /// Stopped by its time limit with records of before the signal possibly still waiting.
    timed_out: bool,
}

/// Reads the records the kernel wrote before now (a signal's arrival), handing each portion's
/// events to the outputs. Bounded: at most one ring's worth, since records written after now
/// are left for later and a full ring cannot hold more, and at most `time`.
#[allow(clippy::too_many_arguments)]
fn drain_until(
    capture: &mut Capture,
    table: &mut FlowTable,
    events: &mut Vec<FlowEvent>,
    outputs: &mut Option<Outputs>,
    events_total: &mut u64,
    limiter: &mut RateLimiter,
    ring_bytes: usize,
    time: Duration,
) -> DrainedUntil {
    let signal_ns = boot_ns_now();
    let deadline = Instant::now() + time;
    let mut read = 0;
    loop {
        let done = drain(
            capture,
            table,
            events,
            DrainBudget::until(signal_ns, deadline),
        );
        if let Some(o) = outputs.as_mut() {
            write_events(o, events, events_total, limiter);
        }
        write_dns(table, outputs.as_mut());
        read += done.bytes;
        let timed_out = Instant::now() >= deadline;
        if !done.more || read >= ring_bytes || timed_out {
            return DrainedUntil {
                signal_ns,
                bytes: read,
                timed_out: done.more && timed_out && read < ring_bytes,
            };
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
