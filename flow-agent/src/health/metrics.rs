//! Prometheus text exposition format 0.0.4: `# HELP` and `# TYPE` before each metric family,
//! then one `name{labels} value` line per series.
use std::fmt::Write;

use super::process::ProcessStats;
use crate::event::{SinkReport, StatsEvent};

/// What one scrape shows.
pub(crate) struct Snapshot<'a> {
    pub(crate) stats: &'a StatsEvent,
    pub(crate) sinks: &'a [SinkReport],
    pub(crate) uptime: f64,
    pub(crate) start_time: f64,
    pub(crate) process: ProcessStats,
}

pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

type SinkField = fn(&SinkReport) -> u64;

/// Per-output series: (name suffix, type, help, field).
const SINK_METRICS: &[(&str, &str, &str, SinkField)] = &[
    (
        "accepted_total",
        "counter",
        "Records handed to the output.",
        |s| s.accepted,
    ),
    (
        "sent_total",
        "counter",
        "Records the destination took.",
        |s| s.sent,
    ),
    (
        "dropped_total",
        "counter",
        "Records given up (limits reached or refused for good).",
        |s| s.dropped,
    ),
    (
        "reconnects_total",
        "counter",
        "Connections opened again after the first.",
        |s| s.reconnects,
    ),
    (
        "errors_total",
        "counter",
        "Failed writes or deliveries (each retried or counted as dropped).",
        |s| s.errors,
    ),
    (
        "worker_panics_total",
        "counter",
        "Times the output's delivery worker panicked and was restarted.",
        |s| s.worker_panics,
    ),
    ("queued", "gauge", "Records waiting in memory.", |s| {
        s.queued
    }),
    (
        "buffered",
        "gauge",
        "Records waiting in the disk buffer.",
        |s| s.buffered,
    ),
];

pub(crate) fn render(snap: &Snapshot) -> String {
    let mut out = Out(String::with_capacity(4096));
    let stats = snap.stats;
    out.family(
        "flow_agent_build_info",
        "gauge",
        "Version of the running agent; always 1.",
    );
    out.sample(
        "flow_agent_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    out.single(
        "flow_agent_start_time_seconds",
        "gauge",
        "Start time of the agent, seconds since the Unix epoch.",
        format!("{:.3}", snap.start_time),
    );
    out.single(
        "flow_agent_uptime_seconds",
        "gauge",
        "Seconds since the agent started.",
        format!("{:.3}", snap.uptime),
    );
    out.single(
        "flow_agent_flows_open",
        "gauge",
        "Flows open in the flow table.",
        stats.flows_open,
    );
    out.single(
        "flow_agent_events_total",
        "counter",
        "Flow events produced since start (before output filters).",
        stats.events_total,
    );
    let losses = &stats.kernel_losses;
    out.family(
        "flow_agent_kernel_losses_total",
        "counter",
        "Records or flows lost in the kernel since start, by kind.",
    );
    for (kind, value) in [
        ("ring_full", losses.ring_full),
        ("tcp_table_full", losses.tcp_table_full),
        ("udp_table_full", losses.udp_table_full),
        ("read_failed", losses.read_failed),
        ("owner_table_full", losses.owner_table_full),
        ("tcp_detail_lost", losses.tcp_detail_lost),
        ("process_ring_full", losses.process_ring_full),
        ("dns_ring_full", losses.dns_ring_full),
    ] {
        out.sample("flow_agent_kernel_losses_total", &[("kind", kind)], value);
    }
    out.single(
        "flow_agent_tcp_closes_missed_total",
        "counter",
        "TCP connections whose close the kernel did not report (ended as close_missed).",
        losses.tcp_closes_missed,
    );
    let enrich = &stats.enrich_losses;
    out.family(
        "flow_agent_enrich_losses_total",
        "counter",
        "What the enrichment stage refused or gave up since start (names, application facts, dns_query events; never a flow event), by kind.",
    );
    for (kind, value) in [
        ("payload_table_full", enrich.payload_table_full),
        ("dns_answers_malformed", enrich.dns_answers_malformed),
        ("dns_answers_unsolicited", enrich.dns_answers_unsolicited),
        ("dns_answers_mismatched", enrich.dns_answers_mismatched),
        ("dns_queries_evicted", enrich.dns_queries_evicted),
        ("dns_events_dropped", enrich.dns_events_dropped),
    ] {
        out.sample("flow_agent_enrich_losses_total", &[("kind", kind)], value);
    }
    state_metrics(&mut out, stats);
    let rl = &stats.rate_limit;
    out.family(
        "flow_agent_rate_limited_flows_total",
        "counter",
        "Flows [rate_limit] suppressed (no event written; summarized in rate_limited events), by limiter.",
    );
    for (limiter, value) in [
        ("process", rl.suppressed_process),
        ("global", rl.suppressed_global),
    ] {
        out.sample(
            "flow_agent_rate_limited_flows_total",
            &[("limiter", limiter)],
            value,
        );
    }
    out.single(
        "flow_agent_rate_limit_summaries_total",
        "counter",
        "rate_limited summary events written.",
        rl.summaries,
    );
    out.single(
        "flow_agent_rate_limit_processes_evicted_total",
        "counter",
        "Processes whose limit state was forgotten at rate_limit.max_processes.",
        rl.processes_evicted,
    );
    out.single(
        "flow_agent_rate_limit_tracked_processes",
        "gauge",
        "Processes whose limit state is kept.",
        rl.processes,
    );
    for (suffix, kind, help, field) in SINK_METRICS {
        let name = format!("flow_agent_sink_{suffix}");
        out.family(&name, kind, help);
        for s in snap.sinks {
            let labels = [
                ("output", s.name.as_str()),
                ("kind", s.kind),
                ("format", s.format),
            ];
            out.sample(&name, &labels, field(s));
        }
    }
    process(&mut out, &snap.process);
    out.0
}

/// The bounds on the agent's state and the watchdog.
fn state_metrics(out: &mut Out, stats: &StatsEvent) {
    let b = &stats.state_bounds;
    out.family(
        "flow_agent_state_bounds_total",
        "counter",
        "Entries the caps and reconciliations took out of the agent's tables since start, by kind.",
    );
    for (kind, value) in [
        ("processes_reconciled", b.processes_reconciled),
        ("processes_evicted", b.processes_evicted),
        ("cgroup_paths_dropped", b.cgroup_paths_dropped),
        ("tcp_flows_reconciled", b.tcp_flows_reconciled),
        ("udp_flows_reconciled", b.udp_flows_reconciled),
        ("tcp_flows_refused", b.tcp_flows_refused),
        ("udp_flows_refused", b.udp_flows_refused),
    ] {
        out.sample("flow_agent_state_bounds_total", &[("kind", kind)], value);
    }
    let w = &stats.watchdog;
    out.family(
        "flow_agent_watchdog_silences_total",
        "counter",
        "Intervals in which the kernel showed activity and a program family delivered no record, by check.",
    );
    for (check, value) in [
        ("tcp", w.tcp_silences),
        ("udp", w.udp_silences),
        ("process", w.process_silences),
        ("exec", w.exec_silences),
    ] {
        out.sample(
            "flow_agent_watchdog_silences_total",
            &[("check", check)],
            value,
        );
    }
    out.family(
        "flow_agent_self_check_reruns_total",
        "counter",
        "Self-checks the watchdog ran again after a silence, by result.",
    );
    let passed = w.self_check_reruns - w.self_check_reruns_failed;
    for (result, value) in [("passed", passed), ("failed", w.self_check_reruns_failed)] {
        out.sample(
            "flow_agent_self_check_reruns_total",
            &[("result", result)],
            value,
        );
    }
}

/// The `process_*` families client libraries export, under their usual names and help.
fn process(out: &mut Out, p: &ProcessStats) {
    if let Some(v) = p.cpu_seconds {
        let help = "Total user and system CPU time spent in seconds.";
        out.single("process_cpu_seconds_total", "counter", help, v);
    }
    if let Some(v) = p.resident_bytes {
        let help = "Resident memory size in bytes.";
        out.single("process_resident_memory_bytes", "gauge", help, v);
    }
    if let Some(v) = p.open_fds {
        out.single(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            v,
        );
    }
    if let Some(v) = p.max_fds {
        let help = "Maximum number of open file descriptors.";
        out.single("process_max_fds", "gauge", help, v);
    }
    if let Some(v) = p.start_time_seconds {
        let help = "Start time of the process since unix epoch in seconds.";
        out.single(
            "process_start_time_seconds",
            "gauge",
            help,
            format!("{v:.2}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EnrichLosses, KernelLosses, RateLimitStats, StateBounds, WatchdogStats};

    #[test]
    fn renders_every_family_with_help_and_type() {
        let stats = StatsEvent {
            rate_limit: RateLimitStats {
                suppressed_process: 5,
                ..Default::default()
            },
            flows_open: 3,
            events_total: 42,
            kernel_losses: KernelLosses {
                ring_full: 7,
                tcp_closes_missed: 2,
                ..KernelLosses::default()
            },
            enrich_losses: EnrichLosses {
                payload_table_full: 11,
                dns_answers_malformed: 12,
                dns_answers_unsolicited: 13,
                dns_answers_mismatched: 14,
                dns_queries_evicted: 15,
                dns_events_dropped: 16,
            },
            state_bounds: StateBounds {
                processes_reconciled: 21,
                cgroup_paths_dropped: 22,
                tcp_flows_reconciled: 23,
                udp_flows_reconciled: 27,
                udp_flows_refused: 24,
                ..StateBounds::default()
            },
            watchdog: WatchdogStats {
                udp_silences: 2,
                self_check_reruns: 2,
                self_check_reruns_failed: 1,
                ..WatchdogStats::default()
            },
            ..StatsEvent::default()
        };
        let sinks = [SinkReport {
            name: "siem \"eu\"\\1".into(),
            kind: "http",
            format: "ecs",
            accepted: 40,
            sent: 38,
            queued: 2,
            worker_panics: 3,
            ..SinkReport::default()
        }];
        let text = render(&Snapshot {
            stats: &stats,
            sinks: &sinks,
            uptime: 12.5,
            start_time: 1700000000.25,
            process: ProcessStats {
                cpu_seconds: Some(1.5),
                resident_bytes: Some(4096),
                open_fds: Some(9),
                max_fds: Some(1024),
                start_time_seconds: Some(1700000000.25),
            },
        });
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "# TYPE flow_agent_events_total counter",
            "flow_agent_events_total 42",
            "flow_agent_flows_open 3",
            "flow_agent_uptime_seconds 12.500",
            "flow_agent_start_time_seconds 1700000000.250",
            "process_cpu_seconds_total 1.5",
            "process_resident_memory_bytes 4096",
            "process_open_fds 9",
            "process_max_fds 1024",
            "process_start_time_seconds 1700000000.25",
            "flow_agent_kernel_losses_total{kind=\"ring_full\"} 7",
            "flow_agent_tcp_closes_missed_total 2",
            r#"flow_agent_sink_sent_total{output="siem \"eu\"\\1",kind="http",format="ecs"} 38"#,
            r#"flow_agent_sink_queued{output="siem \"eu\"\\1",kind="http",format="ecs"} 2"#,
            "# TYPE flow_agent_sink_queued gauge",
            "flow_agent_rate_limited_flows_total{limiter=\"process\"} 5",
            "flow_agent_rate_limited_flows_total{limiter=\"global\"} 0",
            "# TYPE flow_agent_enrich_losses_total counter",
            "flow_agent_enrich_losses_total{kind=\"payload_table_full\"} 11",
            "flow_agent_enrich_losses_total{kind=\"dns_answers_malformed\"} 12",
            "flow_agent_enrich_losses_total{kind=\"dns_answers_unsolicited\"} 13",
            "flow_agent_enrich_losses_total{kind=\"dns_answers_mismatched\"} 14",
            "flow_agent_enrich_losses_total{kind=\"dns_queries_evicted\"} 15",
            "flow_agent_enrich_losses_total{kind=\"dns_events_dropped\"} 16",
            "# TYPE flow_agent_state_bounds_total counter",
            "flow_agent_state_bounds_total{kind=\"processes_reconciled\"} 21",
            "flow_agent_state_bounds_total{kind=\"processes_evicted\"} 0",
            "flow_agent_state_bounds_total{kind=\"cgroup_paths_dropped\"} 22",
            "flow_agent_state_bounds_total{kind=\"tcp_flows_reconciled\"} 23",
            "flow_agent_state_bounds_total{kind=\"udp_flows_reconciled\"} 27",
            "flow_agent_state_bounds_total{kind=\"udp_flows_refused\"} 24",
            "flow_agent_watchdog_silences_total{check=\"udp\"} 2",
            "flow_agent_watchdog_silences_total{check=\"tcp\"} 0",
            "flow_agent_self_check_reruns_total{result=\"passed\"} 1",
            "flow_agent_self_check_reruns_total{result=\"failed\"} 1",
            "# TYPE flow_agent_sink_worker_panics_total counter",
            r#"flow_agent_sink_worker_panics_total{output="siem \"eu\"\\1",kind="http",format="ecs"} 3"#,
        ] {
            assert!(lines.contains(&want), "missing {want:?} in\n{text}");
        }
        // Every family has exactly one HELP and one TYPE line.
        let types = lines.iter().filter(|l| l.starts_with("# TYPE")).count();
        let helps = lines.iter().filter(|l| l.starts_with("# HELP")).count();
        assert_eq!((types, helps), (28, 28));
        assert!(text.ends_with('\n'));
    }
}
