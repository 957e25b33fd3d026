//! Runs the configurations interleaved and rotated (A B C, B C A, C A B, ...): a session is
//! affected by the one before it (a storm leaves thousands of TIME_WAIT sockets, caches are
//! cold after a build), so no configuration always follows the same one; with as many
//! repetitions as configurations each takes every place once. Each session starts one sensor,
//! drives every workload against it, measures it from /proc, stops it and reads what it wrote.
use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{
    bpfstats,
    configurations::{Agents, Configuration, Kind, Sensor},
    events::{self, OutputFormat},
    latency::{self, LatencySummary, Tailer},
    procfs,
    workloads::{concurrency, connections, exec_storm, iperf, ports},
};

/// Durations and sizes of one bench run.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub reps: u32,
    /// Client/server pairs of the connection workloads.
    pub lanes: usize,
    pub storm_s: f64,
    pub burst_s: f64,
    /// Client processes started one after the other per lane, one connection each.
    pub exec_storm_s: f64,
    /// iperf3 TCP; UDP runs `udp_s`.
    pub iperf_s: u64,
    pub udp_s: u64,
    pub concurrency: u64,
    pub latency_rate: f64,
    pub latency_s: f64,
    /// The output is quiet when it grew by less than `quiet_bytes` in this long.
    pub quiet_window_s: f64,
    pub quiet_bytes: u64,
    /// Longest wait for a sensor to write out what a workload caused.
    pub drain_limit_s: f64,
}

impl Plan {
    pub fn full(reps: u32) -> Plan {
        Plan {
            reps,
            lanes: 4,
            storm_s: 5.0,
            burst_s: 10.0,
            exec_storm_s: 5.0,
            iperf_s: 10,
            udp_s: 5,
            concurrency: 100_000,
            latency_rate: 1000.0,
            latency_s: 5.0,
            quiet_window_s: 0.6,
            // A stats record or two; flow events come by the hundred.
            quiet_bytes: 4096,
            drain_limit_s: 60.0,
        }
    }

    pub fn quick(reps: u32) -> Plan {
        Plan {
            storm_s: 2.0,
            burst_s: 3.0,
            exec_storm_s: 2.0,
            iperf_s: 3,
            udp_s: 3,
            concurrency: 20_000,
            latency_s: 2.0,
            ..Plan::full(reps)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    Latency,
    Storm,
    Burst,
    ExecStorm,
    IperfTcp,
    IperfUdp64,
    Concurrency,
}

impl Workload {
    pub fn port(self) -> u16 {
        match self {
            Workload::Latency => ports::LATENCY,
            Workload::Storm => ports::STORM,
            Workload::Burst => ports::BURST,
            Workload::ExecStorm => ports::EXEC_STORM,
            Workload::IperfTcp => ports::IPERF_TCP,
            Workload::IperfUdp64 => ports::IPERF_UDP,
            Workload::Concurrency => ports::CONCURRENCY,
        }
    }

    /// Whether every connection of it must show up as end events (two per connection: the
    /// client's flow and the server's).
    fn counted(self) -> bool {
        ports::COUNTED.contains(&self.port())
    }
}

/// One workload in one session.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadSample {
    pub workload: Workload,
    /// The load phase.
    pub elapsed_s: f64,
    pub connections: u64,
    pub failures: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bits_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp_lost_percent: Option<f64>,
    /// Sensor CPU (user + system) from the load's start until its output was quiet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensor_cpu_s: Option<f64>,
    /// Run time of the sensor's eBPF programs over the same span (in the kernel, on the
    /// workload's CPU time, not the sensor's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensor_bpf_s: Option<f64>,
    /// The same per program, by name, with how often each ran (the kernel's run_time_ns and
    /// run_cnt): per packet for the cgroup_skb programs, per call for the others.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sensor_bpf_programs: BTreeMap<String, bpfstats::ProgramRuns>,
    /// From the load's end until the sensor's output was quiet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_end_events: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_events: Option<u64>,
    /// Sensor RSS while every connection was open (concurrency).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensor_rss_kib: Option<u64>,
}

impl WorkloadSample {
    pub(super) fn new(workload: Workload) -> Self {
        WorkloadSample {
            workload,
            elapsed_s: 0.0,
            connections: 0,
            failures: 0,
            first_error: None,
            connections_per_s: None,
            bits_per_second: None,
            packets_per_second: None,
            udp_lost_percent: None,
            sensor_cpu_s: None,
            sensor_bpf_s: None,
            sensor_bpf_programs: BTreeMap::new(),
            drain_s: None,
            expected_end_events: None,
            end_events: None,
            sensor_rss_kib: None,
        }
    }

    fn from_connections(workload: Workload, run: &connections::ConnectionRun) -> Self {
        WorkloadSample {
            elapsed_s: run.elapsed_s,
            connections: run.connections,
            failures: run.failures,
            first_error: run.first_error.clone(),
            connections_per_s: Some(run.rate()),
            ..WorkloadSample::new(workload)
        }
    }
}

/// One configuration in one repetition.
#[derive(Clone, Debug, Serialize)]
pub struct Session {
    pub rep: u32,
    pub configuration: String,
    pub workloads: Vec<WorkloadSample>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_rss_kib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_kib: Option<u64>,
    /// Kernel-side loss counters the sensor reported at the end (agent: its last stats
    /// event; peers: events their perf buffers lost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_losses: Option<BTreeMap<String, u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySummary>,
    #[serde(skip)]
    pub latency_samples: Vec<Duration>,
    pub output_lines: u64,
    /// End events of flows that were not the bench's: other activity on the host, which the
    /// sensor captured too (and paid for) during the session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_end_events: Option<u64>,
    /// Agent records by schema: which encoder really wrote them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub record_schemas: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Session {
    pub fn new(rep: u32, configuration: &str) -> Session {
        Session {
            rep,
            configuration: configuration.into(),
            workloads: Vec::new(),
            idle_rss_kib: None,
            peak_rss_kib: None,
            kernel_losses: None,
            latency: None,
            latency_samples: Vec::new(),
            output_lines: 0,
            other_end_events: None,
            record_schemas: BTreeMap::new(),
            error: None,
        }
    }

    pub fn sample(&self, w: Workload) -> Option<&WorkloadSample> {
        self.workloads.iter().find(|s| s.workload == w)
    }
}

/// Every configuration, `plan.reps` times, interleaved and rotated.
pub fn run_all(
    plan: &Plan,
    configs: &[Configuration],
    agents: &Agents,
    dir: &Path,
) -> Vec<Session> {
    let mut sessions = Vec::new();
    for rep in 0..plan.reps {
        for config in rotated(configs, rep as usize) {
            eprintln!(
                "bench: repetition {}/{}, {}",
                rep + 1,
                plan.reps,
                config.name
            );
            let session = run_session(plan, rep, config, agents, dir);
            if let Some(e) = &session.error {
                eprintln!("bench: {} failed: {e}", config.name);
            }
            sessions.push(session);
        }
    }
    sessions
}

/// `items` starting at position `by` (modulo its length), wrapping around.
fn rotated<T>(items: &[T], by: usize) -> impl Iterator<Item = &T> {
    let start = if items.is_empty() {
        0
    } else {
        by % items.len()
    };
    items[start..].iter().chain(&items[..start])
}

/// One session; what was measured before a failure is kept, the failure is in `error`.
fn run_session(
    plan: &Plan,
    rep: u32,
    config: &Configuration,
    agents: &Agents,
    dir: &Path,
) -> Session {
    let mut session = Session::new(rep, &config.name);
    let mut sensor = match config.start(agents, dir) {
        Ok(s) => s,
        Err(e) => {
            session.error = Some(format!("starting: {e:#}"));
            return session;
        }
    };
    if let Some(s) = sensor.as_mut() {
        if let Err(e) = s.wait_ready(Duration::from_secs(60)) {
            session.error = Some(format!("{e:#}"));
            let _ = sensor.map(|s| s.stop(Duration::from_secs(10)));
            return session;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut errors = Vec::new();
    if let Err(e) = drive(plan, rep, config, sensor.as_ref(), &mut session) {
        errors.push(format!("{e:#}"));
    }
    if let Some(s) = sensor {
        session.peak_rss_kib = procfs::memory(s.pid).ok().map(|m| m.peak_kib);
        let events_path = s.events.clone();
        let stderr_path = s.stderr.clone();
        let format = s.format;
        if let Err(e) = s.stop(Duration::from_secs(60)) {
            errors.push(format!("stopping: {e:#}"));
        }
        if let Err(e) = read_output(&mut session, &events_path, &stderr_path, format) {
            errors.push(format!("reading its output: {e:#}"));
        }
        let _ = std::fs::remove_file(&events_path);
    }
    if !errors.is_empty() {
        session.error = Some(errors.join("; "));
    }
    session
}

/// Every workload against one (or no) sensor.
fn drive(
    plan: &Plan,
    rep: u32,
    config: &Configuration,
    sensor: Option<&Sensor>,
    session: &mut Session,
) -> Result<()> {
    let watch = sensor.map(|s| Watch { sensor: s, plan });
    session.idle_rss_kib = match &watch {
        Some(w) => Some(procfs::memory(w.sensor.pid)?.rss_kib),
        None => None,
    };
    let is_agent = matches!(config.kind, Kind::Agent { .. });

    if let Some(w) = &watch {
        // Event latency at a moderate rate (only the agent writes sub-second end times).
        let tailer = is_agent.then(|| Tailer::start(w.sensor.events.clone(), ports::LATENCY));
        let cpu0 = w.cpu()?;
        let run = connections::run(
            ports::LATENCY,
            plan.lanes,
            Duration::from_secs_f64(plan.latency_s),
            Some(plan.latency_rate),
        )?;
        let mut sample = WorkloadSample::from_connections(Workload::Latency, &run);
        w.settle(&mut sample, cpu0)?;
        if let Some(t) = tailer {
            session.latency_samples = t.finish();
            session.latency = latency::summarize(&session.latency_samples);
        }
        report(&sample);
        session.workloads.push(sample);
    }

    for (workload, seconds) in [
        (Workload::Storm, plan.storm_s),
        (Workload::Burst, plan.burst_s),
    ] {
        let cpu0 = watch.as_ref().map(Watch::cpu).transpose()?;
        let run = connections::run(
            workload.port(),
            plan.lanes,
            Duration::from_secs_f64(seconds),
            None,
        )?;
        let mut sample = WorkloadSample::from_connections(workload, &run);
        if let (Some(w), Some(cpu0)) = (&watch, cpu0) {
            w.settle(&mut sample, cpu0)?;
        }
        report(&sample);
        session.workloads.push(sample);
    }

    let exe = std::env::current_exe().context("finding the bench binary")?;
    let cpu0 = watch.as_ref().map(Watch::cpu).transpose()?;
    let run = exec_storm::run(
        &exe,
        ports::EXEC_STORM,
        plan.lanes,
        Duration::from_secs_f64(plan.exec_storm_s),
    )?;
    let mut sample = WorkloadSample::from_connections(Workload::ExecStorm, &run);
    if let (Some(w), Some(cpu0)) = (&watch, cpu0) {
        w.settle(&mut sample, cpu0)?;
    }
    report(&sample);
    session.workloads.push(sample);

    for (workload, mode, seconds) in [
        (Workload::IperfTcp, iperf::Mode::Tcp, plan.iperf_s),
        (Workload::IperfUdp64, iperf::Mode::UdpSmall, plan.udp_s),
    ] {
        let cpu0 = watch.as_ref().map(Watch::cpu).transpose()?;
        let started = Instant::now();
        let run = iperf::run(workload.port(), mode, Duration::from_secs(seconds))?;
        let mut sample = WorkloadSample {
            elapsed_s: started.elapsed().as_secs_f64(),
            bits_per_second: Some(run.bits_per_second),
            packets_per_second: run.packets_per_second,
            udp_lost_percent: run.lost_percent,
            ..WorkloadSample::new(workload)
        };
        if let (Some(w), Some(cpu0)) = (&watch, cpu0) {
            w.settle(&mut sample, cpu0)?;
        }
        report(&sample);
        session.workloads.push(sample);
    }

    // Once per sensor: opening and closing 100,000 connections takes a while.
    if let (Some(w), 0) = (&watch, rep) {
        let cpu0 = w.cpu()?;
        let mut rss = None;
        let mut hold_error = None;
        let run = concurrency::run(&exe, ports::CONCURRENCY, plan.concurrency, |_| {
            // Every start written, then the sensor's memory with all of them open.
            if let Err(e) = w.wait_quiet(Instant::now()) {
                hold_error = Some(e);
            }
            rss = procfs::memory(w.sensor.pid).ok().map(|m| m.rss_kib);
        })?;
        if let Some(e) = hold_error {
            return Err(e);
        }
        let mut sample = WorkloadSample {
            elapsed_s: run.establish_s + run.close_s,
            connections: run.connections,
            failures: run.failures,
            first_error: run.first_error.clone(),
            sensor_rss_kib: rss,
            ..WorkloadSample::new(Workload::Concurrency)
        };
        w.settle(&mut sample, cpu0)?;
        report(&sample);
        session.workloads.push(sample);
    }
    Ok(())
}

/// What a sensor had used at one moment.
#[derive(Clone)]
struct Usage {
    cpu: procfs::CpuTimes,
    bpf: Option<BTreeMap<String, bpfstats::ProgramRuns>>,
}

/// The sensor under measurement.
struct Watch<'a> {
    sensor: &'a Sensor,
    plan: &'a Plan,
}

impl Watch<'_> {
    fn cpu(&self) -> Result<Usage> {
        Ok(Usage {
            cpu: procfs::cpu_times(self.sensor.pid)?,
            bpf: bpfstats::programs(self.sensor.pid),
        })
    }

    /// Waits until the sensor has written what the load caused; returns when its output last
    /// grew (by more than a stats record).
    fn wait_quiet(&self, load_end: Instant) -> Result<Instant> {
        let window = Duration::from_secs_f64(self.plan.quiet_window_s);
        let limit = load_end + Duration::from_secs_f64(self.plan.drain_limit_s);
        let mut last_growth = load_end;
        let mut mark = procfs::file_len(&self.sensor.events);
        let mut mark_at = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let len = procfs::file_len(&self.sensor.events);
            if len >= mark + self.plan.quiet_bytes {
                last_growth = Instant::now();
                mark = len;
                mark_at = last_growth;
            } else if mark_at.elapsed() >= window {
                return Ok(last_growth);
            }
            if Instant::now() > limit {
                anyhow::bail!(
                    "the sensor kept writing {:.0} s after the load ended",
                    self.plan.drain_limit_s
                );
            }
        }
    }

    /// After a load: waits for the output to be quiet, then records the sensor's CPU and the
    /// drain time into `sample`.
    fn settle(&self, sample: &mut WorkloadSample, before: Usage) -> Result<()> {
        let load_end = Instant::now();
        let last = self.wait_quiet(load_end)?;
        sample.drain_s = Some(last.duration_since(load_end).as_secs_f64());
        let after = self.cpu()?;
        sample.sensor_cpu_s = Some(after.cpu.since(&before.cpu).as_secs_f64());
        if let (Some(b), Some(a)) = (&before.bpf, &after.bpf) {
            sample.sensor_bpf_programs = a
                .iter()
                .map(|(name, runs)| {
                    let earlier = b.get(name).copied().unwrap_or_default();
                    (name.clone(), runs.since(&earlier))
                })
                .collect();
            sample.sensor_bpf_s = Some(bpfstats::total(&sample.sensor_bpf_programs).as_secs_f64());
        }
        Ok(())
    }
}

fn report(s: &WorkloadSample) {
    let mut line = format!("bench:   {:?}", s.workload);
    if let Some(r) = s.connections_per_s {
        line += &format!(" {:.0} conn/s ({} connections", r, s.connections);
        if s.failures > 0 {
            line += &format!(
                ", {} failed: {}",
                s.failures,
                s.first_error.as_deref().unwrap_or("")
            );
        }
        line += ")";
    } else if s.workload == Workload::Concurrency {
        line += &format!(" {} open at once", s.connections);
    }
    if let Some(b) = s.bits_per_second {
        line += &format!(" {:.2} Gbit/s", b / 1e9);
    }
    if let Some(p) = s.packets_per_second {
        line += &format!(" {:.0} packets/s received", p);
    }
    if let Some(c) = s.sensor_cpu_s {
        line += &format!(", sensor CPU {c:.2} s");
    }
    if let Some(b) = s.sensor_bpf_s {
        line += &format!(", its eBPF {b:.2} s");
    }
    if let Some(d) = s.drain_s {
        line += &format!(", output quiet {d:.1} s after the load");
    }
    if let Some(r) = s.sensor_rss_kib {
        line += &format!(", sensor RSS {} MiB", r / 1024);
    }
    eprintln!("{line}");
}

/// Counts end events per workload and reads the loss counters from what the sensor wrote.
fn read_output(
    session: &mut Session,
    events_path: &Path,
    stderr_path: &Path,
    format: OutputFormat,
) -> Result<()> {
    let summary = events::summarize(events_path, format, &ports::ALL)?;
    session.output_lines = summary.lines;
    session.other_end_events = Some(summary.other_ends);
    session.record_schemas = summary
        .schemas
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    for sample in &mut session.workloads {
        if sample.workload.counted() {
            sample.expected_end_events = Some(2 * sample.connections);
            sample.end_events = Some(
                summary
                    .ends_by_port
                    .get(&sample.workload.port())
                    .copied()
                    .unwrap_or(0),
            );
        }
    }
    session.kernel_losses = match format {
        OutputFormat::AgentJson => summary.kernel_losses,
        OutputFormat::TcplifeText => {
            let stderr = std::fs::read_to_string(stderr_path).unwrap_or_default();
            Some(BTreeMap::from([(
                "perf_buffer_lost".to_string(),
                events::peer_lost_events(&stderr),
            )]))
        }
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::rotated;

    #[test]
    fn each_configuration_takes_every_place_once_over_as_many_repetitions() {
        let order = |by| rotated(&['a', 'b', 'c'], by).collect::<String>();
        assert_eq!(
            [order(0), order(1), order(2), order(3)],
            ["abc", "bca", "cab", "abc"]
        );
        assert_eq!(rotated::<u8>(&[], 5).count(), 0);
    }
}
