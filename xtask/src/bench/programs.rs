//! Each eBPF program's cost from the kernel's own statistics (run_time_ns, run_cnt), per
//! configuration: per flow in the storm, and per run (a packet for the cgroup_skb programs, a
//! call for the others) in the storm and under iperf3 TCP and 64-byte UDP.
use std::collections::BTreeSet;

use serde::Serialize;

use super::{
    bpfstats::ProgramRuns,
    report::{median, Summary, TargetCheck},
    runner::{Session, Workload},
};

/// One program of one configuration: medians over its sessions.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ProgramCost {
    pub program: String,
    /// Storm: run time per flow (two flows per loopback connection), µs, and runs per flow.
    pub storm_us_per_flow: Option<f64>,
    pub storm_runs_per_flow: Option<f64>,
    /// Exec storm (a new process per connection): run time per flow, µs.
    pub exec_storm_us_per_flow: Option<f64>,
    /// Run time per run, ns, in the storm and under iperf3 TCP and 64-byte UDP.
    pub storm_ns_per_run: Option<f64>,
    pub tcp_ns_per_run: Option<f64>,
    pub udp64_ns_per_run: Option<f64>,
    /// Runs per second under iperf3 TCP and 64-byte UDP (packets/s for the cgroup_skb ones).
    pub tcp_runs_per_s: Option<f64>,
    pub udp64_runs_per_s: Option<f64>,
}

fn runs<'a>(s: &'a Session, w: Workload, program: &str) -> Option<(&'a ProgramRuns, f64, u64)> {
    let x = s.sample(w)?;
    Some((
        x.sensor_bpf_programs.get(program)?,
        x.elapsed_s,
        x.connections,
    ))
}

/// Every program the sessions saw, with its medians.
pub fn summarize(sessions: &[&Session]) -> Vec<ProgramCost> {
    let names: BTreeSet<&String> = sessions
        .iter()
        .flat_map(|s| s.workloads.iter())
        .flat_map(|x| x.sensor_bpf_programs.keys())
        .collect();
    names
        .into_iter()
        .map(|name| {
            let med = |w: Workload, f: &dyn Fn(&ProgramRuns, f64, u64) -> Option<f64>| {
                median(
                    sessions
                        .iter()
                        .filter_map(|s| runs(s, w, name).and_then(|(r, t, c)| f(r, t, c)))
                        .collect(),
                )
            };
            let per_run = |r: &ProgramRuns, _, _| {
                (r.run_cnt > 0).then(|| r.run_time_ns as f64 / r.run_cnt as f64)
            };
            let per_s = |r: &ProgramRuns, t: f64, _| (t > 0.0).then(|| r.run_cnt as f64 / t);
            ProgramCost {
                program: name.clone(),
                storm_us_per_flow: med(Workload::Storm, &|r, _, c| {
                    (c > 0).then(|| r.run_time_ns as f64 / 1e3 / (2 * c) as f64)
                }),
                storm_runs_per_flow: med(Workload::Storm, &|r, _, c| {
                    (c > 0).then(|| r.run_cnt as f64 / (2 * c) as f64)
                }),
                exec_storm_us_per_flow: med(Workload::ExecStorm, &|r, _, c| {
                    (c > 0).then(|| r.run_time_ns as f64 / 1e3 / (2 * c) as f64)
                }),
                storm_ns_per_run: med(Workload::Storm, &per_run),
                tcp_ns_per_run: med(Workload::IperfTcp, &per_run),
                udp64_ns_per_run: med(Workload::IperfUdp64, &per_run),
                tcp_runs_per_s: med(Workload::IperfTcp, &per_s),
                udp64_runs_per_s: med(Workload::IperfUdp64, &per_s),
            }
        })
        .collect()
}

/// The kernel-cost issue's target: the agent's eBPF time per flow in the storm no more than
/// tcplife's in the same run.
pub fn check_against_tcplife(summary: &[Summary]) -> Vec<TargetCheck> {
    let Some(peer) = summary
        .iter()
        .find(|s| s.configuration == "tcplife")
        .and_then(|s| s.bpf_us_per_flow)
    else {
        return Vec::new();
    };
    summary
        .iter()
        .filter(|s| s.configuration.starts_with("agent-") && !s.configuration.ends_with("@base"))
        .map(|s| TargetCheck {
            target: "eBPF time per flow in the storm ≤ tcplife's",
            configuration: s.configuration.clone(),
            value: format!(
                "{} µs (tcplife {peer:.2} µs)",
                s.bpf_us_per_flow.map_or("-".into(), |v| format!("{v:.2}"))
            ),
            status: match s.bpf_us_per_flow {
                Some(v) if v <= peer => "met",
                Some(_) => "MISSED",
                None => "not measured",
            },
        })
        .collect()
}

/// The markdown section: one row per configuration and program.
pub fn markdown(summary: &[&Summary]) -> String {
    let rows: Vec<String> = summary
        .iter()
        .flat_map(|s| s.bpf_programs.iter().map(move |p| row(&s.configuration, p)))
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\neBPF programs, from the kernel's run_time_ns and run_cnt (per run: per packet for \
         skb_*, per call for the others; medians over repetitions):\n\n\
         | configuration | program | storm µs / flow | storm runs / flow | storm ns / run | \
         exec storm µs / flow | iperf3 TCP ns / run (runs/s) | UDP 64 B ns / run (runs/s) |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    out += &rows.concat();
    out
}

fn row(configuration: &str, p: &ProgramCost) -> String {
    let f = |v: Option<f64>, d: usize| v.map_or("-".into(), |x| format!("{x:.d$}"));
    let with_rate = |ns: Option<f64>, rate: Option<f64>| match (ns, rate) {
        (Some(n), Some(r)) => format!("{n:.0} ({r:.0})"),
        _ => "-".into(),
    };
    format!(
        "| {configuration} | {} | {} | {} | {} | {} | {} | {} |\n",
        p.program,
        f(p.storm_us_per_flow, 3),
        f(p.storm_runs_per_flow, 2),
        f(p.storm_ns_per_run, 0),
        f(p.exec_storm_us_per_flow, 3),
        with_rate(p.tcp_ns_per_run, p.tcp_runs_per_s),
        with_rate(p.udp64_ns_per_run, p.udp64_runs_per_s),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::bench::runner::WorkloadSample;

    fn sample(w: Workload, secs: f64, connections: u64, ns: u64, cnt: u64) -> WorkloadSample {
        let mut x = WorkloadSample::new(w);
        x.elapsed_s = secs;
        x.connections = connections;
        x.sensor_bpf_programs = BTreeMap::from([(
            "skb_egress".to_string(),
            ProgramRuns {
                run_time_ns: ns,
                run_cnt: cnt,
            },
        )]);
        x
    }

    #[test]
    fn per_flow_per_run_and_rate() {
        let mut s = Session::new(0, "agent-native");
        s.workloads = vec![
            sample(Workload::Storm, 2.0, 1000, 4_000_000, 20_000),
            sample(Workload::IperfUdp64, 5.0, 0, 50_000_000, 1_000_000),
            sample(Workload::ExecStorm, 2.0, 100, 1_000_000, 2_000),
        ];
        let costs = summarize(&[&s]);
        assert_eq!(costs.len(), 1);
        let p = &costs[0];
        assert_eq!(p.program, "skb_egress");
        assert_eq!(p.storm_us_per_flow, Some(2.0));
        assert_eq!(p.storm_runs_per_flow, Some(10.0));
        assert_eq!(p.storm_ns_per_run, Some(200.0));
        assert_eq!(p.udp64_ns_per_run, Some(50.0));
        assert_eq!(p.udp64_runs_per_s, Some(200_000.0));
        assert_eq!(p.exec_storm_us_per_flow, Some(5.0));
        assert_eq!(p.tcp_ns_per_run, None);
        assert!(row("agent-native", p)
            .contains("| skb_egress | 2.000 | 10.00 | 200 | 5.000 | - | 50 (200000) |"));
    }

    #[test]
    fn agent_against_tcplife() {
        let with = |name: &str, us: f64| Summary {
            configuration: name.into(),
            bpf_us_per_flow: Some(us),
            ..Summary::default()
        };
        let s = vec![
            with("tcplife", 3.0),
            with("agent-native", 2.5),
            with("agent-ecs", 3.5),
            with("agent-native@base", 9.0),
        ];
        let checks = check_against_tcplife(&s);
        let got: Vec<_> = checks
            .iter()
            .map(|c| (c.configuration.as_str(), c.status))
            .collect();
        assert_eq!(got, [("agent-native", "met"), ("agent-ecs", "MISSED")]);
        assert_eq!(checks[0].value, "2.50 µs (tcplife 3.00 µs)");
    }
}
