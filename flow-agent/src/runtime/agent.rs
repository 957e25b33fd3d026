//! The running agent: everything the main loop owns, with one method per wake-up cause (the
//! ring buffer readable or the poll interval, the 1 s tick, SIGHUP, SIGTERM/SIGINT).
use std::{
    collections::HashMap,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use flow_common::LOSS_KINDS;
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, Signal, SignalKind},
};

use super::{
    kernel::{refresh_open_tcp, scan_existing_tcp, seed_processes, snapshot_tcp, KernelUdp},
    self_check::Exec,
    stages::Stages,
    watchdog::Watchdog,
    write::{summaries, Pending},
    RunOptions,
};
use crate::{
    capture::{
        drain::{self, drain, DrainBudget, Ring},
        sock_diag, Capture,
    },
    clock::{boot_ns_now, rfc3339_micros},
    config::{CaptureSettings, Config},
    enrich::Enricher,
    event::{EnrichLosses, Event, KernelLosses, StatsEvent},
    filter::kernel::{FilterSkipped, KernelPlan},
    flows::FlowTable,
    health::Health,
    ratelimit::RateLimiter,
    service::Service,
    sink::{
        subscribe::{Bound, LiveConfig, DEFAULT_SOCKET},
        Outputs,
    },
};

/// How long records written before SIGTERM are still processed; what is left then is given up
/// and counted (`ring_full`), so that SIGTERM is honoured under any storm on any CPU.
const SHUTDOWN_DRAIN_TIME: Duration = Duration::from_secs(5);
/// How long records written before SIGHUP go to the old outputs; later ones go to the new.
const RELOAD_DRAIN_TIME: Duration = Duration::from_secs(5);

/// Least time between two warnings about enrichment losses (DNS answers refused, first bytes
/// or `dns_query` events dropped): a stream of forged answers must not fill the log.
const ENRICH_LOSSES_LOG_EVERY: Duration = Duration::from_secs(60);

/// What the last stats event reported, so that a change is never left unsaid at shutdown.
#[derive(Default)]
struct Reported {
    losses: KernelLosses,
    enrich: EnrichLosses,
    suppressed: u64,
}

impl Reported {
    fn of(stats: &StatsEvent) -> Self {
        Self {
            losses: stats.kernel_losses.clone(),
            enrich: stats.enrich_losses.clone(),
            suppressed: suppressed(stats),
        }
    }
}

pub(super) struct Agent {
    service: Service,
    started: Instant,
    config: Config,
    /// `[capture]` as loaded: kernel table sizes are fixed while the programs are loaded.
    loaded_capture: CaptureSettings,
    reload: Option<Box<dyn FnMut() -> Result<Config>>>,
    health: Health,
    outputs: Option<Outputs>,
    capture: Capture,
    kernel_plan: KernelPlan,
    stages: Stages,
    namespaces: HashMap<u64, PathBuf>,
    limiter: RateLimiter,
    pending: Pending,
    poll_interval: Duration,
    ring_bytes: usize,
    last_stats: Instant,
    reported: Reported,
    last_losses: [u64; LOSS_KINDS as usize],
    last_missed: (u64, crate::flows::table::Evicted),
    last_skipped: FilterSkipped,
    /// Enrichment losses last logged, and when.
    logged_enrich: (EnrichLosses, Option<Instant>),
    /// A self-check result the next stats event carries.
    self_check: Option<crate::event::SelfCheckReport>,
    watchdog: Watchdog,
}

/// The signals the agent answers, registered before it reports ready.
pub(super) struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    pub(super) fn new() -> Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// How far [`Agent::drain_until`] got.
struct DrainedUntil {
    /// When the signal was handled (CLOCK_BOOTTIME).
    signal_ns: u64,
    /// Ring bytes read.
    bytes: usize,
    /// Stopped by its time limit with records of before the signal possibly still waiting.
    timed_out: bool,
}

impl Agent {
    /// Starts the outputs, loads and attaches the kernel programs, seeds the process table and
    /// reports the connections already open.
    pub(super) fn start(
        opts: RunOptions,
        mut service: Service,
        loader: &mut crate::capture::Loader,
    ) -> Result<Self> {
        let started = Instant::now();
        let config = opts.config;
        crate::logger::configure(&config.agent);
        let health = Health::start(started, &config.health)?;
        let mut outputs = Outputs::start(&config.outputs).context("starting the outputs")?;
        // Bound before the drop (it may need root), served by threads started after it.
        let live = bind_live(&config.live)?;
        let mut capture =
            Capture::load(&opts.capture, loader).context("starting kernel capture")?;
        let mut table = FlowTable::new(opts.flows.clone(), flow_id_prefix());
        if let Some(maps) = capture.tcp_detail.take() {
            table.set_tcp_detail(Box::new(maps));
        }
        let mut enricher = Enricher::new(opts.enrich.clone());
        let seeded = seed_processes(&mut capture, &mut enricher)?;
        log::info!("process table seeded with {seeded} running processes");
        let mut stages = Stages::new(table, enricher);
        let namespaces = sock_diag::network_namespaces();
        let limiter = RateLimiter::new(config.rate_limit.clone(), boot_ns_now());
        let mut pending = Pending::default();
        scan_existing_tcp(&mut stages, &namespaces, &mut pending.flows);
        // Before the kernel filter (it could drop the check's loopback flows) and before the
        // capabilities are dropped (the check runs one exec).
        let self_check =
            super::self_check::run(&mut capture, &mut stages, &mut pending.flows, Exec::Once);
        super::report_self_check(&self_check, config.agent.allow_degraded)?;
        let mut kernel_plan = KernelPlan::default();
        capture.apply_filter(&mut kernel_plan, &config.filter);
        service.attached()?;
        if let Some(live) = live {
            outputs.attach_live(live.start().context("starting the live socket")?);
        }
        let watchdog = Watchdog::new(
            Duration::from_secs(config.health.watchdog_interval),
            stages.received,
        );
        Ok(Self {
            service,
            started,
            loaded_capture: config.capture.clone(),
            config,
            reload: opts.reload,
            health,
            outputs: Some(outputs),
            capture,
            kernel_plan,
            stages,
            namespaces,
            limiter,
            pending,
            poll_interval: opts.poll_interval,
            ring_bytes: (opts.capture.ring_buffer_bytes
                + opts.capture.process_ring_bytes
                + opts.capture.dns_ring_bytes) as usize,
            last_stats: Instant::now(),
            reported: Reported::default(),
            last_losses: [0; LOSS_KINDS as usize],
            last_missed: (0, Default::default()),
            last_skipped: FilterSkipped::default(),
            logged_enrich: (EnrichLosses::default(), None),
            self_check: Some(self_check),
            watchdog,
        })
    }

    pub(super) fn cgroup_root(&self) -> &Path {
        &self.capture.cgroup_root
    }

    /// Runs until SIGTERM or SIGINT, then ends every open flow.
    pub(super) async fn run(mut self, mut signals: Signals) -> Result<()> {
        // SAFETY: the descriptor belongs to `self.capture`, which outlives this registration
        // (dropped at the end of this function, before `self`) and never closes or replaces it
        // while the loop runs.
        let [process_fd, dns_fd, flows_fd] = Ring::ALL.map(|ring| {
            let fd = ring.buf(&mut self.capture).as_raw_fd();
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
        });
        let ring_fd = flows_fd
            .map_err(|e| anyhow::anyhow!("registering the ring buffer with the event loop: {e}"))?;
        let process_fd =
            process_fd.map_err(|e| anyhow::anyhow!("registering the process ring: {e}"))?;
        let dns_fd = dns_fd.map_err(|e| anyhow::anyhow!("registering the DNS ring: {e}"))?;
        let mut poll = tokio::time::interval(self.poll_interval);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // A slow iteration must not make the tick ready on every following one (it goes first).
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // Records may still wait in the ring: the last drain stopped at its cap.
        let mut backlog = false;
        loop {
            if backlog {
                // Lets the runtime poll its drivers (signals, timers) between two portions.
                tokio::task::yield_now().await;
            }
            tokio::select! {
                // Signals and the tick first: a storm of records must not starve them.
                biased;
                _ = signals.term.recv() => return self.shutdown().await,
                _ = signals.int.recv() => return self.shutdown().await,
                _ = tick.tick() => self.on_tick(),
                _ = signals.hup.recv() => self.on_reload().await,
                guard = ring_fd.readable() => { if let Ok(mut g) = guard { g.clear_ready(); } }
                guard = process_fd.readable() => { if let Ok(mut g) = guard { g.clear_ready(); } }
                guard = dns_fd.readable() => { if let Ok(mut g) = guard { g.clear_ready(); } }
                _ = poll.tick() => {}
                _ = std::future::ready(()), if backlog => {}
            }
            backlog = self.on_ring();
        }
    }

    /// One portion of the ring; true when records are still waiting.
    fn on_ring(&mut self) -> bool {
        let more = self.drain(DrainBudget::batch()).more;
        self.write();
        more
    }

    fn drain(&mut self, budget: DrainBudget) -> drain::Drained {
        let Self {
            stages,
            pending,
            capture,
            ..
        } = self;
        drain(capture, budget, |record, capture| {
            let mut udp = KernelUdp(&mut capture.udp_flows);
            stages.handle(record, &mut udp, &mut pending.flows);
        })
    }

    fn write(&mut self) {
        self.pending
            .dns
            .append(&mut self.stages.enricher.take_dns_events());
        self.pending
            .processes
            .append(&mut self.stages.enricher.take_process_events());
        self.pending.write(
            self.outputs.as_mut(),
            &self.config.filter,
            &mut self.limiter,
        );
    }

    /// Periodic work: flow table timers, TCP updates, loss reports, summaries, stats.
    fn on_tick(&mut self) {
        self.service.tick();
        self.capture.flush_kernel_log();
        let now = boot_ns_now();
        let mut udp = KernelUdp(&mut self.capture.udp_flows);
        self.stages.tick(now, &mut udp, &mut self.pending.flows);
        let due = self.stages.table.tcp_updates_due(now);
        if !due.is_empty() {
            if due
                .iter()
                .any(|ns| !self.namespaces.contains_key(&u64::from(*ns)))
            {
                self.namespaces = sock_diag::network_namespaces();
            }
            snapshot_tcp(
                &mut self.stages,
                &self.namespaces,
                &due,
                now,
                &mut self.pending.flows,
            );
        }
        self.run_watchdog();
        let losses = self.capture.losses();
        self.log_losses(losses);
        self.log_enrich_losses();
        let skipped = self.capture.filter_skipped();
        if skipped != self.last_skipped {
            skipped.log(log::Level::Debug);
            self.last_skipped = skipped;
        }
        // Events the tick produced go out before the summaries that may count them.
        self.write();
        self.write_summaries(false);
        if self.outputs.is_none() {
            return;
        }
        // Metrics follow every tick; stats events every stats_interval.
        let mut stats = self.stats_event(&losses);
        let Some(outputs) = self.outputs.as_mut() else {
            return;
        };
        self.health.update(&stats, outputs.stats());
        let every = self.config.health.stats_interval;
        if every > 0 && self.last_stats.elapsed() >= Duration::from_secs(every) {
            self.last_stats = Instant::now();
            self.reported = Reported::of(&stats);
            stats.self_check = self.self_check.take();
            self.pending
                .write_now(outputs, std::iter::once(Event::Stats(Box::new(stats))));
        }
    }

    /// A silence is logged and counted, and the self-check runs again (without its exec);
    /// its result goes out with the next stats event.
    fn run_watchdog(&mut self) {
        let lost: u64 = self.capture.losses().iter().sum();
        let silences = self.watchdog.check(self.stages.received, lost);
        if silences.is_empty() {
            return;
        }
        for s in &silences {
            log::error!("{}; running the self-check again", s.describe());
        }
        let report = super::self_check::run(
            &mut self.capture,
            &mut self.stages,
            &mut self.pending.flows,
            Exec::Never,
        );
        self.watchdog.rerun(report.ok);
        if report.ok {
            log::warn!(
                "watchdog: the self-check run again passed ({} checks in {:.0} ms): the programs deliver what the agent makes itself",
                report.checks.len(),
                report.duration_ms
            );
        } else {
            log::error!(
                "watchdog: the self-check run again FAILED ({} records lost meanwhile): {}",
                report.records_lost,
                report.describe_failures()
            );
        }
        self.self_check = Some(report);
        let lost: u64 = self.capture.losses().iter().sum();
        self.watchdog.restart(self.stages.received, lost);
    }

    fn log_losses(&mut self, losses: [u64; LOSS_KINDS as usize]) {
        let table = &self.stages.table;
        let missed = (table.missed_closes, table.evicted);
        if losses != self.last_losses || missed != self.last_missed {
            log::warn!(
                "kernel-side losses (flow ring full, tcp table, udp table, read failed, owner table, tcp detail, process ring full, dns ring full): {losses:?}; TCP closes missed: {}; evicted while open (tcp, udp): ({}, {})",
                missed.0, missed.1.tcp, missed.1.udp
            );
            self.last_losses = losses;
            self.last_missed = missed;
        }
    }

    /// Enrichment losses, when they changed, at most once per [`ENRICH_LOSSES_LOG_EVERY`].
    fn log_enrich_losses(&mut self) {
        let now = self.enrich_losses();
        let (logged, at) = &self.logged_enrich;
        if now == *logged || at.is_some_and(|t| t.elapsed() < ENRICH_LOSSES_LOG_EVERY) {
            return;
        }
        log::warn!("enrichment losses since start: {}", describe_enrich(&now));
        self.logged_enrich = (now, Some(Instant::now()));
    }

    fn enrich_losses(&self) -> EnrichLosses {
        let e = &self.stages.enricher;
        let dns = e.dns_counters();
        EnrichLosses {
            payload_table_full: e.payloads_dropped(),
            dns_answers_malformed: dns.malformed,
            dns_answers_unsolicited: dns.unsolicited,
            dns_answers_mismatched: dns.mismatched,
            dns_queries_evicted: dns.queries_evicted,
            dns_events_dropped: e.dns_events_dropped(),
        }
    }

    /// The interval's `rate_limited` summaries (all of them when `force`).
    fn write_summaries(&mut self, force: bool) {
        let Some(outputs) = self.outputs.as_mut() else {
            return;
        };
        let summaries = summaries(&mut self.limiter, force);
        if !summaries.is_empty() {
            let events = summaries
                .into_iter()
                .map(|s| Event::RateLimited(Box::new(s)));
            self.pending.write_now(outputs, events);
        }
    }

    fn stats_event(&self, losses: &[u64]) -> StatsEvent {
        let loss = |i: usize| losses.get(i).copied().unwrap_or(0);
        let table = &self.stages.table;
        StatsEvent {
            timestamp: rfc3339_micros(std::time::SystemTime::now()),
            event_action: "stats",
            hostname: self.stages.enricher.config().host.hostname.clone(),
            agent_version: env!("CARGO_PKG_VERSION"),
            uptime: self.started.elapsed().as_secs_f64(),
            flows_open: table.open_flows() as u64,
            events_total: self.pending.flows_written,
            kernel_losses: KernelLosses {
                ring_full: loss(0),
                tcp_table_full: loss(1) + table.evicted.tcp,
                udp_table_full: loss(2) + table.evicted.udp,
                read_failed: loss(3),
                owner_table_full: loss(4),
                tcp_detail_lost: loss(5) + table.detail_lost,
                process_ring_full: loss(6),
                dns_ring_full: loss(7),
                tcp_closes_missed: table.missed_closes,
            },
            enrich_losses: self.enrich_losses(),
            sinks: self
                .outputs
                .iter()
                .flat_map(|o| o.stats())
                .map(|s| s.report())
                .collect(),
            rate_limit: self.limiter.stats(),
            state_bounds: self.stages.state_bounds(),
            watchdog: self.watchdog.stats,
            self_check: None,
        }
    }

    /// SIGHUP: records written before the signal go to the old outputs, then the new
    /// configuration takes over (or the old one stays, when the new is refused).
    async fn on_reload(&mut self) {
        self.service.reloading();
        self.drain_until(RELOAD_DRAIN_TIME);
        match self.reload.as_mut().map(|r| r()) {
            Some(Ok(new)) => {
                // What the old limits suppressed is told by the old outputs.
                self.write_summaries(true);
                self.apply_config(new).await;
            }
            Some(Err(e)) => log::error!(
                "SIGHUP: the configuration was not reloaded, the previous one stays in force: {e:#}"
            ),
            None => log::warn!("SIGHUP: no configuration file to reload"),
        }
        self.service.reloaded();
    }

    /// A reloaded configuration: outputs and filters first, then the flow table's settings,
    /// the rate limits and the agent's log.
    async fn apply_config(&mut self, new: Config) {
        let flows = new.flow_table_config();
        let enrich = new.enrich_config(self.stages.enricher.config().host.clone());
        let capture_changed = new.capture != self.loaded_capture;
        let live_changed = new.live != self.config.live;
        if !self.swap_outputs(new).await {
            return;
        }
        // After the outputs: the new userspace filter is in force before the kernel's changes.
        self.capture
            .apply_filter(&mut self.kernel_plan, &self.config.filter);
        self.stages.table.reconfigure(flows);
        self.stages.enricher.reconfigure(enrich);
        self.limiter.reconfigure(self.config.rate_limit.clone());
        self.watchdog
            .set_interval(Duration::from_secs(self.config.health.watchdog_interval));
        crate::logger::configure(&self.config.agent);
        if capture_changed {
            log::warn!(
                "[capture] changed: kernel table sizes are fixed while the agent runs; the new ones take effect at the next start (restart the agent)"
            );
        }
        if live_changed {
            log::warn!(
                "[live] changed: the live socket keeps its settings and subscribers; the new ones take effect at the next start (restart the agent)"
            );
        }
    }

    /// Swaps in the outputs of a new configuration: they start while the old ones still run,
    /// and the old ones close once the new ones started, so a configuration whose outputs
    /// cannot start (an unwritable file, a bad certificate) leaves the old outputs running
    /// without a gap. Old network sinks whose disk buffer directory a new output uses close
    /// first (a directory has one owner), so the new ones find every undelivered record;
    /// those are started again if the new outputs fail. True when the new configuration is
    /// in force.
    async fn swap_outputs(&mut self, new: Config) -> bool {
        if let Err(e) = new.health.metrics_address() {
            log::error!("reloaded configuration rejected, the previous one stays in force: {e}");
            return false;
        }
        let result = match self.outputs.as_mut() {
            Some(outputs) => outputs.replace(&self.config.outputs, &new.outputs).await,
            None => Outputs::start(&new.outputs).map(|o| self.outputs = Some(o)),
        };
        match result {
            Ok(()) => {
                // Checked above: cannot fail.
                let _ = self.health.apply(&new.health);
                self.config = new;
                log::info!("configuration reloaded");
                true
            }
            Err(e) => {
                log::error!(
                    "reloaded configuration rejected, the previous one stays in force: {e}"
                );
                false
            }
        }
    }

    /// Reads the records the kernel wrote before now (a signal's arrival), handing each
    /// portion's events to the outputs. Bounded: at most one ring's worth, since records
    /// written after now are left for later and a full ring cannot hold more, and at most
    /// `time`.
    fn drain_until(&mut self, time: Duration) -> DrainedUntil {
        let signal_ns = boot_ns_now();
        let deadline = Instant::now() + time;
        let mut read = 0;
        loop {
            let done = self.drain(DrainBudget::until(signal_ns, deadline));
            self.write();
            read += done.bytes;
            let timed_out = Instant::now() >= deadline;
            if !done.more || read >= self.ring_bytes || timed_out {
                return DrainedUntil {
                    signal_ns,
                    bytes: read,
                    timed_out: done.more && timed_out && read < self.ring_bytes,
                };
            }
        }
    }

    /// SIGTERM/SIGINT: what the ring held when the signal came, then every open flow ends
    /// (`agent_shutdown`), a last stats event if anything changed, and the outputs close.
    async fn shutdown(mut self) -> Result<()> {
        self.service.stopping();
        // Records stamped after the signal are not owed (at most one ring's worth is read,
        // however fast the kernel writes).
        let drained = self.drain_until(SHUTDOWN_DRAIN_TIME);
        let unread = if drained.timed_out {
            let n = drain::skip(
                &mut self.capture,
                drained.signal_ns,
                self.ring_bytes.saturating_sub(drained.bytes),
            );
            log::warn!(
                "shutdown: {n} kernel records written before the signal were still unprocessed after {SHUTDOWN_DRAIN_TIME:?}: given up, counted as ring_full losses"
            );
            n
        } else {
            0
        };
        refresh_open_tcp(&mut self.stages.table, &self.namespaces);
        let mut udp = KernelUdp(&mut self.capture.udp_flows);
        self.stages.shutdown(&mut udp, &mut self.pending.flows);
        let mut losses = self.capture.losses();
        losses[flow_common::Loss::RingBufferFull as usize] += unread;
        self.write();
        self.write_summaries(true);
        if let Some(mut outputs) = self.outputs.take() {
            // Losses since the last stats event are never left unsaid: one more report.
            let stats = self.stats_event_with(&losses, &outputs);
            self.health.update(&stats, outputs.stats());
            let reported = &self.reported;
            let changed = stats.kernel_losses != reported.losses
                || stats.enrich_losses != reported.enrich
                || suppressed(&stats) != reported.suppressed;
            if self.config.health.stats_interval > 0 && changed {
                self.pending
                    .write_now(&mut outputs, std::iter::once(Event::Stats(Box::new(stats))));
            }
            outputs.close().await;
        }
        log::info!(
            "kernel-side losses at shutdown (flow ring full, tcp table, udp table, read failed, owner table, tcp detail, process ring full, dns ring full): {losses:?}; TCP closes missed: {}; evicted while open (tcp, udp): ({}, {})",
            self.stages.table.missed_closes,
            self.stages.table.evicted.tcp,
            self.stages.table.evicted.udp
        );
        let enrich = self.enrich_losses();
        if enrich != EnrichLosses::default() {
            log::info!(
                "enrichment losses at shutdown: {}",
                describe_enrich(&enrich)
            );
        }
        let skipped = self.capture.filter_skipped();
        if self.kernel_plan.kernel_rules > 0 || skipped != FilterSkipped::default() {
            skipped.log(log::Level::Info);
        }
        Ok(())
    }

    /// A stats event while `outputs` are taken out of the agent (shutdown).
    fn stats_event_with(&mut self, losses: &[u64], outputs: &Outputs) -> StatsEvent {
        let mut stats = self.stats_event(losses);
        stats.sinks = outputs.stats().iter().map(|s| s.report()).collect();
        stats
    }
}

fn describe_enrich(e: &EnrichLosses) -> String {
    format!(
        "first payloads dropped (table full) {}; DNS answers malformed {}, unsolicited {}, mismatched {}; DNS queries evicted {}; dns_query events dropped {}",
        e.payload_table_full,
        e.dns_answers_malformed,
        e.dns_answers_unsolicited,
        e.dns_answers_mismatched,
        e.dns_queries_evicted,
        e.dns_events_dropped
    )
}

fn suppressed(stats: &StatsEvent) -> u64 {
    stats.rate_limit.suppressed_process + stats.rate_limit.suppressed_global
}

/// The live socket, bound. The default path failing (no /run/flow-agent writable by this
/// user, say) costs only the live view, logged; a path the configuration names must work.
fn bind_live(cfg: &LiveConfig) -> Result<Option<Bound>> {
    match Bound::bind(cfg) {
        Ok(bound) => Ok(bound),
        Err(e) if cfg.socket.as_os_str() == DEFAULT_SOCKET => {
            log::warn!("{e}: running without a live view ([live] socket = \"\" turns it off)");
            Ok(None)
        }
        Err(e) => Err(e).context("starting the live socket"),
    }
}

/// Flow ids are this prefix and a counter: the boot id's first 8 hex digits and the agent's
/// pid, unique on this host across restarts.
fn flow_id_prefix() -> String {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let boot: String = boot_id
        .trim()
        .chars()
        .filter(|c| *c != '-')
        .take(8)
        .collect();
    format!("{boot}{:x}", std::process::id())
}
