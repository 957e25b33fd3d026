//! Figures per configuration (medians of the interleaved repetitions, ratios to the baseline of
//! the same repetition), the product's targets, each agent build against its `--baseline` twin,
//! the JSON results and the markdown table.
use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    baseline::Commit,
    configurations::{agent_format, base_name},
    latency::{self, LatencySummary},
    procfs::Machine,
    programs::{self, ProgramCost},
    runner::{Plan, Session, Workload, WorkloadSample},
};

/// A configuration and whether it runs here.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigStatus {
    pub name: String,
    pub runs: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// End events written against those expected (two per connection), summed over sessions.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Accounting {
    pub expected: u64,
    pub written: u64,
}

impl Accounting {
    pub fn missing(&self) -> u64 {
        self.expected.saturating_sub(self.written)
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub configuration: String,
    pub sessions: usize,
    pub storm_connections_per_s: Option<f64>,
    pub storm_ratio: Option<f64>,
    pub burst_connections_per_s: Option<f64>,
    pub burst_ratio: Option<f64>,
    /// A new process per connection (exec storm).
    pub exec_storm_connections_per_s: Option<f64>,
    pub exec_storm_ratio: Option<f64>,
    pub tcp_bits_per_second: Option<f64>,
    pub tcp_ratio: Option<f64>,
    pub udp64_bits_per_second: Option<f64>,
    pub udp64_packets_per_second: Option<f64>,
    pub udp64_ratio: Option<f64>,
    /// Sensor user+system CPU per flow (two flows per loopback connection), storm.
    pub cpu_us_per_flow: Option<f64>,
    /// The same at the moderate rate of the latency workload.
    pub cpu_us_per_flow_moderate: Option<f64>,
    /// The same in the exec storm: each flow's process is new (exec, exit, identity, hash).
    pub cpu_us_per_flow_exec: Option<f64>,
    /// Sensor CPU while iperf3 TCP ran, in percent of one core.
    pub cpu_percent_tcp_bulk: Option<f64>,
    /// Run time of the sensor's eBPF programs per flow, storm (kernel side: charged to the
    /// workload, not to the sensor process).
    pub bpf_us_per_flow: Option<f64>,
    /// Run time of its eBPF programs while iperf3 ran, in percent of one core.
    pub bpf_percent_tcp_bulk: Option<f64>,
    pub bpf_percent_udp64: Option<f64>,
    /// Each program's cost (kernel statistics), by name.
    pub bpf_programs: Vec<ProgramCost>,
    pub idle_rss_mib: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub concurrent_connections: Option<u64>,
    pub concurrency_rss_mib: Option<f64>,
    /// Sum over sessions of the loss counters each reported at its end.
    pub kernel_losses: BTreeMap<String, u64>,
    pub end_events: BTreeMap<Workload, Accounting>,
    pub latency: Option<LatencySummary>,
    pub burst_drain_s: Option<f64>,
    pub errors: Vec<String>,
    /// End events of other activity on the host, summed over sessions.
    pub other_end_events: Option<u64>,
    /// Agent records by schema over all sessions (`native`, `ecs`).
    pub record_schemas: BTreeMap<String, u64>,
}

impl Summary {
    pub fn kernel_losses_total(&self) -> u64 {
        self.kernel_losses.values().sum()
    }
}

pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn metric(
    s: &Session,
    w: Workload,
    f: impl Fn(&super::runner::WorkloadSample) -> Option<f64>,
) -> Option<f64> {
    s.sample(w).and_then(f)
}

/// Median over sessions of `f`, and median over repetitions of `f` / the baseline's `f` in
/// the same repetition.
fn value_and_ratio(
    mine: &[&Session],
    baseline: &[&Session],
    f: impl Fn(&Session) -> Option<f64>,
) -> (Option<f64>, Option<f64>) {
    let value = median(mine.iter().filter_map(|s| f(s)).collect());
    let ratios = mine
        .iter()
        .filter_map(|s| {
            let base = baseline
                .iter()
                .find(|b| b.rep == s.rep)
                .and_then(|b| f(b))?;
            Some(f(s)? / base).filter(|_| base > 0.0)
        })
        .collect();
    (value, median(ratios))
}

pub fn summarize(name: &str, sessions: &[Session]) -> Summary {
    let mine: Vec<&Session> = sessions
        .iter()
        .filter(|s| s.configuration == name)
        .collect();
    let baseline: Vec<&Session> = sessions
        .iter()
        .filter(|s| s.configuration == "baseline")
        .collect();
    // A failed session keeps what it measured before the failure.
    let ok = &mine;
    let rate = |w| move |s: &Session| metric(s, w, |x| x.connections_per_s);
    let bits = |w| move |s: &Session| metric(s, w, |x| x.bits_per_second);
    let (storm, storm_ratio) = value_and_ratio(ok, &baseline, rate(Workload::Storm));
    let (burst, burst_ratio) = value_and_ratio(ok, &baseline, rate(Workload::Burst));
    let (exec_storm, exec_storm_ratio) = value_and_ratio(ok, &baseline, rate(Workload::ExecStorm));
    let (tcp, tcp_ratio) = value_and_ratio(ok, &baseline, bits(Workload::IperfTcp));
    let (udp, udp_ratio) = value_and_ratio(ok, &baseline, bits(Workload::IperfUdp64));
    type Field = fn(&WorkloadSample) -> Option<f64>;
    let per_flow = |w, field: Field| {
        median(
            ok.iter()
                .filter_map(|s| {
                    let x = s.sample(w)?;
                    let used = field(x)?;
                    (x.connections > 0).then(|| used * 1e6 / (2 * x.connections) as f64)
                })
                .collect(),
        )
    };
    let percent = |w, field: Field| {
        median(
            ok.iter()
                .filter_map(|s| {
                    let x = s.sample(w)?;
                    Some(field(x)? * 100.0 / x.elapsed_s)
                })
                .collect(),
        )
    };
    let cpu: Field = |x| x.sensor_cpu_s;
    let bpf: Field = |x| x.sensor_bpf_s;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let concurrency = ok
        .iter()
        .filter_map(|s| s.sample(Workload::Concurrency))
        .max_by_key(|x| x.connections);
    let mut kernel_losses = BTreeMap::new();
    let mut end_events: BTreeMap<Workload, Accounting> = BTreeMap::new();
    for s in ok {
        for (k, v) in s.kernel_losses.iter().flatten() {
            *kernel_losses.entry(k.clone()).or_default() += v;
        }
        for x in &s.workloads {
            if let (Some(e), Some(w)) = (x.expected_end_events, x.end_events) {
                let a = end_events.entry(x.workload).or_default();
                a.expected += e;
                a.written += w;
            }
        }
    }
    let mut record_schemas = BTreeMap::new();
    for s in ok {
        for (k, v) in &s.record_schemas {
            *record_schemas.entry(k.clone()).or_default() += v;
        }
    }
    let pooled: Vec<_> = ok
        .iter()
        .flat_map(|s| s.latency_samples.iter().copied())
        .collect();
    Summary {
        configuration: name.into(),
        sessions: mine.len(),
        storm_connections_per_s: storm,
        storm_ratio,
        burst_connections_per_s: burst,
        burst_ratio,
        exec_storm_connections_per_s: exec_storm,
        exec_storm_ratio,
        tcp_bits_per_second: tcp,
        tcp_ratio,
        udp64_bits_per_second: udp,
        udp64_packets_per_second: median(
            ok.iter()
                .filter_map(|s| metric(s, Workload::IperfUdp64, |x| x.packets_per_second))
                .collect(),
        ),
        udp64_ratio: udp_ratio,
        cpu_us_per_flow: per_flow(Workload::Storm, cpu),
        cpu_us_per_flow_moderate: per_flow(Workload::Latency, cpu),
        cpu_us_per_flow_exec: per_flow(Workload::ExecStorm, cpu),
        cpu_percent_tcp_bulk: percent(Workload::IperfTcp, cpu),
        bpf_us_per_flow: per_flow(Workload::Storm, bpf),
        bpf_percent_tcp_bulk: percent(Workload::IperfTcp, bpf),
        bpf_percent_udp64: percent(Workload::IperfUdp64, bpf),
        bpf_programs: programs::summarize(ok),
        idle_rss_mib: median(ok.iter().filter_map(|s| s.idle_rss_kib.map(mib)).collect()),
        peak_rss_mib: ok
            .iter()
            .filter_map(|s| s.peak_rss_kib.map(mib))
            .reduce(f64::max),
        concurrent_connections: concurrency.map(|x| x.connections),
        concurrency_rss_mib: concurrency.and_then(|x| x.sensor_rss_kib.map(mib)),
        kernel_losses,
        end_events,
        latency: latency::summarize(&pooled),
        burst_drain_s: median(
            ok.iter()
                .filter_map(|s| metric(s, Workload::Burst, |x| x.drain_s))
                .collect(),
        ),
        errors: mine.iter().filter_map(|s| s.error.clone()).collect(),
        other_end_events: ok
            .iter()
            .filter_map(|s| s.other_end_events)
            .reduce(|a, b| a + b),
        record_schemas,
    }
}

/// One promise of the product, checked against a configuration's figures.
#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    pub target: &'static str,
    pub configuration: String,
    pub value: String,
    /// `met`, `MISSED` or `not measured`.
    pub status: &'static str,
}

pub const FULL_CONCURRENCY: u64 = 100_000;

pub fn check_targets(s: &Summary) -> Vec<TargetCheck> {
    let status = |met: Option<bool>| match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    };
    let ends = |w: Workload| s.end_events.get(&w).cloned().unwrap_or_default();
    let storm_ends = ends(Workload::Storm);
    let burst_ends = ends(Workload::Burst);
    let mut checks = Vec::new();
    let mut add = |target, value: String, met: Option<bool>| {
        checks.push(TargetCheck {
            target,
            configuration: s.configuration.clone(),
            value,
            status: status(met),
        })
    };
    add(
        "connection-storm ratio ≥ 0.95 with every event written",
        format!(
            "{}, {} of {} end events",
            opt(s.storm_ratio, 3),
            storm_ends.written,
            storm_ends.expected
        ),
        s.storm_ratio
            .map(|r| r >= 0.95 && storm_ends.expected > 0 && storm_ends.missing() == 0),
    );
    add(
        "TCP throughput ratio ≥ 0.99",
        opt(s.tcp_ratio, 3),
        s.tcp_ratio.map(|r| r >= 0.99),
    );
    add(
        "small-packet UDP ratio ≥ 0.95",
        opt(s.udp64_ratio, 3),
        s.udp64_ratio.map(|r| r >= 0.95),
    );
    let measured = storm_ends.expected > 0;
    add(
        "zero losses at the maximum storm rate",
        format!(
            "{} kernel-side, {} end events missing (storm + burst)",
            s.kernel_losses_total(),
            storm_ends.missing() + burst_ends.missing()
        ),
        measured.then(|| {
            s.kernel_losses_total() == 0 && storm_ends.missing() + burst_ends.missing() == 0
        }),
    );
    add(
        "≤ 5 µs agent CPU per flow",
        format!("{} µs", opt(s.cpu_us_per_flow, 2)),
        s.cpu_us_per_flow.map(|c| c <= 5.0),
    );
    add(
        "≤ 20 MiB RSS idle",
        format!("{} MiB", opt(s.idle_rss_mib, 1)),
        s.idle_rss_mib.map(|m| m <= 20.0),
    );
    let full = s.concurrent_connections.unwrap_or(0) >= FULL_CONCURRENCY;
    add(
        "≤ 60 MiB RSS with 100,000 concurrent flows",
        match (s.concurrency_rss_mib, s.concurrent_connections) {
            (Some(m), Some(n)) => format!("{m:.1} MiB with {n} connections open"),
            _ => "-".into(),
        },
        if full {
            s.concurrency_rss_mib.map(|m| m <= 60.0)
        } else {
            None
        },
    );
    add(
        "p99 event latency ≤ 50 ms at moderate load",
        s.latency
            .as_ref()
            .map_or("-".into(), |l| format!("{:.1} ms", l.p99_ms)),
        s.latency.as_ref().map(|l| l.p99_ms <= 50.0),
    );
    checks
}

/// An agent configuration against its `@base` twin (the `--baseline` build) in the same run:
/// each figure before (the twin's) and after (this build's).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Comparison {
    pub configuration: String,
    pub base: String,
    /// Agent CPU per flow in the storm, µs.
    pub cpu_us_per_flow_before: Option<f64>,
    pub cpu_us_per_flow_after: Option<f64>,
    /// After / before: below 1 is cheaper.
    pub cpu_ratio: Option<f64>,
    /// End events of the storm and the burst.
    pub end_events_before: Accounting,
    pub end_events_after: Accounting,
    pub kernel_losses_before: u64,
    pub kernel_losses_after: u64,
    pub storm_ratio_before: Option<f64>,
    pub storm_ratio_after: Option<f64>,
}

impl Comparison {
    fn new(after: &Summary, before: &Summary) -> Comparison {
        let cpu_ratio = match (after.cpu_us_per_flow, before.cpu_us_per_flow) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        Comparison {
            configuration: after.configuration.clone(),
            base: before.configuration.clone(),
            cpu_us_per_flow_before: before.cpu_us_per_flow,
            cpu_us_per_flow_after: after.cpu_us_per_flow,
            cpu_ratio,
            end_events_before: storm_and_burst(before),
            end_events_after: storm_and_burst(after),
            kernel_losses_before: before.kernel_losses_total(),
            kernel_losses_after: after.kernel_losses_total(),
            storm_ratio_before: before.storm_ratio,
            storm_ratio_after: after.storm_ratio,
        }
    }

    /// One line of the markdown report.
    pub fn line(&self) -> String {
        let events = |a: &Accounting| format!("{} / {}", a.written, a.expected);
        format!(
            "{} against {}: agent CPU per flow, storm {} → {} µs (× {}); end events written / \
             expected, storm + burst {} → {}; kernel-side losses {} → {}; storm ratio {} → {}",
            self.configuration,
            self.base,
            opt(self.cpu_us_per_flow_before, 2),
            opt(self.cpu_us_per_flow_after, 2),
            opt(self.cpu_ratio, 2),
            events(&self.end_events_before),
            events(&self.end_events_after),
            self.kernel_losses_before,
            self.kernel_losses_after,
            opt(self.storm_ratio_before, 3),
            opt(self.storm_ratio_after, 3),
        )
    }
}

fn storm_and_burst(s: &Summary) -> Accounting {
    [Workload::Storm, Workload::Burst]
        .iter()
        .filter_map(|w| s.end_events.get(w))
        .fold(Accounting::default(), |sum, a| Accounting {
            expected: sum.expected + a.expected,
            written: sum.written + a.written,
        })
}

/// Every configuration that has an `@base` twin in `summary`, against it.
pub fn comparisons(summary: &[Summary]) -> Vec<Comparison> {
    summary
        .iter()
        .filter_map(|after| {
            let twin = base_name(&after.configuration);
            let before = summary.iter().find(|s| s.configuration == twin)?;
            Some(Comparison::new(after, before))
        })
        .collect()
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |x| format!("{x:.digits$}"))
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub date: String,
    pub agent_commit: String,
    pub agent_subject: String,
    /// The commit the `@base` configurations' agent was built from (`--baseline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<Commit>,
    pub machine: Machine,
    pub quick: bool,
    pub plan: Plan,
    pub duration_s: f64,
    pub configurations: Vec<ConfigStatus>,
    pub summary: Vec<Summary>,
    pub targets: Vec<TargetCheck>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub comparisons: Vec<Comparison>,
    pub sessions: Vec<Session>,
}

/// Which commit each agent binary was built from.
fn builds(r: &Results) -> String {
    let agent = format!("{} ({})", r.agent_commit, r.agent_subject);
    match &r.base {
        Some(b) => format!(
            "Agent builds: {agent} in the columns without @base; {} ({}) in the @base \
             columns.\n\n",
            b.commit, b.subject
        ),
        None => format!("Agent build: {agent}.\n\n"),
    }
}

/// The results as markdown: machine, figures per configuration, targets.
pub fn markdown(r: &Results) -> String {
    let m = &r.machine;
    let mut out = format!(
        "Run {} (flow-agent {}), {} mode, {} interleaved repetitions, {:.0} s.\n\n\
         Machine: {} × {}, {} MiB, Linux {}, {}; load average {:.2} at the start.\n\n",
        r.date,
        r.agent_commit,
        if r.quick { "--quick" } else { "full" },
        r.plan.reps,
        r.duration_s,
        m.cores,
        m.cpu_model,
        m.memory_mib,
        m.kernel,
        m.os,
        m.load_average_at_start,
    );
    out += &builds(r);
    if !m.other_bpf_processes.is_empty() {
        out += &format!(
            "Other eBPF programs were loaded during the run (their kernel cost is in every \
             column, the baseline's too): {}.\n\n",
            m.other_bpf_processes.join(", ")
        );
    }
    let running: Vec<&Summary> = r
        .summary
        .iter()
        .filter(|s| {
            r.configurations
                .iter()
                .any(|c| c.name == s.configuration && c.runs)
        })
        .collect();
    out += "| |";
    for s in &running {
        out += &format!(" {} |", s.configuration);
    }
    out += "\n|---|";
    out += &"---|".repeat(running.len());
    out += "\n";
    let row = |label: &str, f: &dyn Fn(&Summary) -> String| {
        let mut line = format!("| {label} |");
        for s in &running {
            line += &format!(" {} |", f(s));
        }
        line + "\n"
    };
    let with_ratio = |v: Option<f64>, scale: f64, digits: usize, ratio: Option<f64>, base: bool| {
        match (v, ratio) {
            (Some(v), _) if base => format!("{:.digits$}", v / scale),
            (Some(v), Some(q)) => format!("{:.digits$} ({q:.3})", v / scale),
            (Some(v), None) => format!("{:.digits$}", v / scale),
            _ => "-".into(),
        }
    };
    let is_base = |s: &Summary| s.configuration == "baseline";
    out += &row("connection storm, conn/s (ratio)", &|s| {
        with_ratio(s.storm_connections_per_s, 1.0, 0, s.storm_ratio, is_base(s))
    });
    out += &row(
        &format!("burst {:.0} s, conn/s (ratio)", r.plan.burst_s),
        &|s| with_ratio(s.burst_connections_per_s, 1.0, 0, s.burst_ratio, is_base(s)),
    );
    out += &row(
        "exec storm (a process per connection), conn/s (ratio)",
        &|s| {
            with_ratio(
                s.exec_storm_connections_per_s,
                1.0,
                0,
                s.exec_storm_ratio,
                is_base(s),
            )
        },
    );
    out += &row("iperf3 TCP, Gbit/s (ratio)", &|s| {
        with_ratio(s.tcp_bits_per_second, 1e9, 2, s.tcp_ratio, is_base(s))
    });
    out += &row("iperf3 UDP 64 B received, Mbit/s (ratio)", &|s| {
        with_ratio(s.udp64_bits_per_second, 1e6, 1, s.udp64_ratio, is_base(s))
    });
    out += &row("sensor CPU per flow, storm, µs", &|s| {
        opt(s.cpu_us_per_flow, 2)
    });
    out += &row(
        &format!(
            "sensor CPU per flow at {:.0} conn/s, µs",
            r.plan.latency_rate
        ),
        &|s| opt(s.cpu_us_per_flow_moderate, 2),
    );
    out += &row("sensor CPU per flow, exec storm, µs", &|s| {
        opt(s.cpu_us_per_flow_exec, 2)
    });
    out += &row("sensor CPU during iperf3 TCP, % of a core", &|s| {
        opt(s.cpu_percent_tcp_bulk, 1)
    });
    out += &row("its eBPF programs per flow, storm, µs", &|s| {
        opt(s.bpf_us_per_flow, 2)
    });
    out += &row(
        "its eBPF programs during iperf3 TCP / UDP, % of a core",
        &|s| match (s.bpf_percent_tcp_bulk, s.bpf_percent_udp64) {
            (Some(t), Some(u)) => format!("{t:.1} / {u:.1}"),
            _ => "-".into(),
        },
    );
    out += &row(
        "RSS idle / peak, MiB",
        &|s| match (s.idle_rss_mib, s.peak_rss_mib) {
            (Some(i), Some(p)) => format!("{i:.1} / {p:.1}"),
            _ => "-".into(),
        },
    );
    out += &row("RSS with N connections open, MiB (N)", &|s| match (
        s.concurrency_rss_mib,
        s.concurrent_connections,
    ) {
        (Some(m), Some(n)) => format!("{m:.1} ({n})"),
        _ => "-".into(),
    });
    out += &row("kernel-side losses", &|s| {
        if is_base(s) {
            "-".into()
        } else {
            let nonzero: Vec<String> = s
                .kernel_losses
                .iter()
                .filter(|(_, v)| **v > 0)
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            if nonzero.is_empty() {
                "0".into()
            } else {
                nonzero.join(", ")
            }
        }
    });
    for (w, label) in [
        (Workload::Storm, "end events / expected, storm"),
        (Workload::Burst, "end events / expected, burst"),
        (Workload::ExecStorm, "end events / expected, exec storm"),
        (Workload::Latency, "end events / expected, moderate"),
        (Workload::Concurrency, "end events / expected, concurrency"),
    ] {
        out += &row(label, &|s| match s.end_events.get(&w) {
            Some(a) if a.missing() > 0 => format!("**{} / {}**", a.written, a.expected),
            Some(a) => format!("{} / {}", a.written, a.expected),
            None => "-".into(),
        });
    }
    out += &row(
        &format!(
            "event latency p50 / p99 at {:.0} conn/s, ms",
            r.plan.latency_rate
        ),
        &|s| {
            s.latency
                .as_ref()
                .map_or("-".into(), |l| format!("{:.1} / {:.1}", l.p50_ms, l.p99_ms))
        },
    );
    out += &row("output quiet after the burst, s", &|s| {
        opt(s.burst_drain_s, 1)
    });
    out += &row("end events of other activity on the host", &|s| {
        s.other_end_events.map_or("-".into(), |n| n.to_string())
    });
    for s in &running {
        let Some(wanted) = agent_format(&s.configuration) else {
            continue;
        };
        let other: Vec<String> = s
            .record_schemas
            .iter()
            .filter(|(k, v)| k.as_str() != wanted && **v > 0)
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        if !other.is_empty() {
            out += &format!(
                "\n{}: the agent wrote {} records instead: this build has no {wanted} encoder \
                 yet, so the column measures the native encoder again.\n",
                s.configuration,
                other.join(", ")
            );
        }
    }
    out += &programs::markdown(&running);
    if !r.comparisons.is_empty() {
        out += "\nBefore → after (each agent configuration against its @base twin):\n\n";
        for c in &r.comparisons {
            out += &format!("- {}\n", c.line());
        }
    }
    let notes: Vec<&ConfigStatus> = r.configurations.iter().filter(|c| !c.runs).collect();
    if !notes.is_empty() {
        out += "\nNot run:\n\n";
        for c in notes {
            out += &format!("- {}: {}\n", c.name, c.note.as_deref().unwrap_or("-"));
        }
    }
    let errors: Vec<String> = r
        .summary
        .iter()
        .flat_map(|s| {
            s.errors
                .iter()
                .map(move |e| format!("- {}: {e}\n", s.configuration))
        })
        .collect();
    if !errors.is_empty() {
        out += "\nSessions that failed:\n\n";
        out += &errors.concat();
    }
    if !r.targets.is_empty() {
        out += "\nTargets:\n\n| target | configuration | value | status |\n|---|---|---|---|\n";
        for t in &r.targets {
            let status = if t.status == "MISSED" {
                "**MISSED**"
            } else {
                t.status
            };
            out += &format!(
                "| {} | {} | {} | {} |\n",
                t.target, t.configuration, t.value, status
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(config: &str, rep: u32, storm: f64, cpu: f64) -> Session {
        let sensor = config != "baseline";
        let sample = WorkloadSample {
            workload: Workload::Storm,
            elapsed_s: 1.0,
            connections: storm as u64,
            failures: 0,
            first_error: None,
            connections_per_s: Some(storm),
            bits_per_second: None,
            packets_per_second: None,
            udp_lost_percent: None,
            sensor_cpu_s: sensor.then_some(cpu),
            sensor_bpf_s: None,
            sensor_bpf_programs: BTreeMap::new(),
            drain_s: Some(0.1),
            expected_end_events: sensor.then_some(2 * storm as u64),
            end_events: sensor.then_some(2 * storm as u64),
            sensor_rss_kib: None,
        };
        Session {
            rep,
            configuration: config.into(),
            workloads: vec![sample],
            idle_rss_kib: sensor.then_some(10 * 1024),
            peak_rss_kib: sensor.then_some(20 * 1024),
            kernel_losses: Some(BTreeMap::from([("ring_full".into(), 0)])),
            latency: None,
            latency_samples: Vec::new(),
            output_lines: 0,
            other_end_events: None,
            record_schemas: BTreeMap::new(),
            error: None,
        }
    }

    #[test]
    fn ratios_pair_each_repetition_with_its_own_baseline() {
        let sessions = vec![
            session("baseline", 0, 1000.0, 0.0),
            session("agent-native", 0, 900.0, 0.009),
            session("baseline", 1, 2000.0, 0.0),
            session("agent-native", 1, 1900.0, 0.0019),
            session("baseline", 2, 1000.0, 0.0),
            session("agent-native", 2, 990.0, 0.0099),
        ];
        let s = summarize("agent-native", &sessions);
        assert_eq!(s.storm_connections_per_s, Some(990.0));
        assert_eq!(s.storm_ratio, Some(0.95));
        // 9 ms over 1800 flows = 5 µs; 1.9 ms / 3800 = 0.5 µs; 9.9 ms / 1980 = 5 µs.
        let cpu = s.cpu_us_per_flow.unwrap();
        assert!((cpu - 5.0).abs() < 1e-9, "{cpu}");
        assert_eq!(
            s.end_events[&Workload::Storm],
            Accounting {
                expected: 2 * (900 + 1900 + 990),
                written: 2 * (900 + 1900 + 990)
            }
        );
        let checks = check_targets(&s);
        let storm = checks
            .iter()
            .find(|c| c.target.starts_with("connection-storm"))
            .unwrap();
        assert_eq!(storm.status, "met");
        let rss = checks
            .iter()
            .find(|c| c.target.contains("100,000"))
            .unwrap();
        assert_eq!(rss.status, "not measured");
    }

    /// The results of a run of `sessions`, with `bpftrace-tcplife` not run.
    fn results(sessions: Vec<Session>, base: Option<Commit>) -> Results {
        let mut names: Vec<String> = Vec::new();
        for s in &sessions {
            if !names.contains(&s.configuration) {
                names.push(s.configuration.clone());
            }
        }
        let summary: Vec<Summary> = names.iter().map(|n| summarize(n, &sessions)).collect();
        let mut configurations: Vec<ConfigStatus> = names
            .iter()
            .map(|n| ConfigStatus {
                name: n.clone(),
                runs: true,
                note: None,
            })
            .collect();
        configurations.push(ConfigStatus {
            name: "bpftrace-tcplife".into(),
            runs: false,
            note: Some("does not run here: no kprobes".into()),
        });
        Results {
            date: "2026-11-23 17:31 UTC".into(),
            agent_commit: "abc1234".into(),
            agent_subject: "Cache the user database".into(),
            base,
            machine: Machine {
                cpu_model: "Test CPU".into(),
                cores: 2,
                memory_mib: 1024,
                kernel: "6.18".into(),
                os: "Debian".into(),
                load_average_at_start: 0.5,
                other_bpf_processes: vec!["42 flow-agent".into()],
            },
            quick: false,
            plan: Plan::full(1),
            duration_s: 60.0,
            configurations,
            targets: check_targets(&summary[1]),
            comparisons: comparisons(&summary),
            summary,
            sessions,
        }
    }

    #[test]
    fn markdown_shows_every_figure_and_the_missed_targets() {
        let sessions = vec![
            session("baseline", 0, 1000.0, 0.0),
            session("agent-native", 0, 800.0, 0.016),
        ];
        let md = markdown(&results(sessions, None));
        for label in [
            "Agent build: abc1234 (Cache the user database).",
            "connection storm, conn/s (ratio)",
            "| 800 (0.800) |",
            "sensor CPU per flow, storm, µs | - | 10.00 |",
            "its eBPF programs per flow, storm, µs",
            "its eBPF programs during iperf3 TCP / UDP",
            "RSS idle / peak, MiB | - | 10.0 / 20.0 |",
            "kernel-side losses | - | 0 |",
            "end events / expected, storm | - | 1600 / 1600 |",
            "end events of other activity on the host",
            "42 flow-agent",
            "- bpftrace-tcplife: does not run here: no kprobes",
            "| ≤ 5 µs agent CPU per flow | agent-native | 10.00 µs | **MISSED** |",
            "| ≤ 20 MiB RSS idle | agent-native | 10.0 MiB | met |",
        ] {
            assert!(md.contains(label), "{label:?} not in:\n{md}");
        }
        assert!(!md.contains("Before → after"), "{md}");
    }

    #[test]
    fn each_agent_configuration_against_its_base_twin() {
        let mut lossy = session("agent-native@base", 0, 500.0, 0.02);
        lossy.workloads[0].end_events = Some(600);
        lossy.kernel_losses = Some(BTreeMap::from([("ring_full".into(), 400)]));
        let sessions = vec![
            session("baseline", 0, 1000.0, 0.0),
            session("agent-native", 0, 800.0, 0.008),
            lossy,
        ];
        let results = results(
            sessions,
            Some(Commit {
                commit: "def5678".into(),
                subject: "Typed event model".into(),
            }),
        );
        assert_eq!(results.comparisons.len(), 1);
        let c = &results.comparisons[0];
        // 20 ms / 1000 flows = 20 µs before; 8 ms / 1600 flows = 5 µs after.
        assert_eq!(c.cpu_us_per_flow_before, Some(20.0));
        assert_eq!(c.cpu_us_per_flow_after, Some(5.0));
        assert_eq!(c.cpu_ratio, Some(0.25));
        assert_eq!(
            c.line(),
            "agent-native against agent-native@base: agent CPU per flow, storm 20.00 → 5.00 µs \
             (× 0.25); end events written / expected, storm + burst 600 / 1000 → 1600 / 1600; \
             kernel-side losses 400 → 0; storm ratio 0.500 → 0.800"
        );
        let md = markdown(&results);
        for label in [
            "Agent builds: abc1234 (Cache the user database) in the columns without @base; \
             def5678 (Typed event model) in the @base columns.",
            "| | baseline | agent-native | agent-native@base |",
            "connection storm, conn/s (ratio) | 1000 | 800 (0.800) | 500 (0.500) |",
            "\n- agent-native against agent-native@base: agent CPU per flow",
        ] {
            assert!(md.contains(label), "{label:?} not in:\n{md}");
        }
        let json = serde_json::to_value(&results).unwrap();
        assert_eq!(json["base"]["commit"], "def5678");
        assert_eq!(json["comparisons"][0]["kernel_losses_before"], 400);
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
