//! Overload: a storm of TCP connections, as many as this machine can make, against the real
//! agent. Whatever the agent cannot keep up with, it must count; meanwhile its memory stays
//! bounded, its metrics endpoint answers and SIGTERM stops it promptly.
//!
//! The storm runs 30 s (× `FLOW_TEST_SCALE`, at least 5 s) from threads of this test process
//! inside a test network namespace (`storm/mod.rs`); the agent's output is streamed and
//! counted, not kept. Needs root and kernel BTF.

mod common;
mod storm;

use anyhow::{ensure, Context, Result};
use common::{setup, EVENT_TIMEOUT};
use flow_agent_tests::{scale, slowed, unused_port, Agent, TempDir, TestHost, STOP_TIMEOUT};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storm::Storm;

/// The agent's peak resident memory (VmHWM) under the storm stays below this, with the
/// default `[capture]` sizes; docs/security.md states it.
const RSS_BOUND_KIB: u64 = 256 * 1024;

/// Counts of the agent's streamed output.
#[derive(Default)]
struct Seen {
    /// End events of flows in the storm's namespace.
    storm_ends: u64,
    /// The last stats event.
    last_stats: Option<Value>,
    stats_events: u64,
    /// The most flows open in any stats event.
    max_flows_open: u64,
}

/// Highest VmHWM of `pid` until its /proc entry no longer says (exit), sampled every 50 ms.
fn sample_peak_rss(pid: u32, peak: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Some(kib) = vm_hwm_kib(pid) else {
                return;
            };
            peak.fetch_max(kib, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// One GET /metrics on a fresh connection, bounded; returns the body.
fn scrape(port: u16) -> Result<String> {
    let bound = slowed(Duration::from_secs(10));
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), bound)
        .context("connecting to the metrics endpoint")?;
    s.set_read_timeout(Some(bound))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .context("reading the metrics answer")?;
    ensure!(out.starts_with("HTTP/1.1 200"), "metrics answered {out:?}");
    Ok(out)
}

/// A counter of the metrics exposition (first series whose line starts with `prefix`).
fn metric(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

#[test]
fn connection_storm_is_survived_bounded_responsive_and_counted() -> Result<()> {
    setup()?;
    let host = TestHost::new()?;
    let netns = host.netns_inode()?;
    let dir = TempDir::new("overload")?;
    let port = unused_port()?;
    let config = dir.write(
        "agent.toml",
        format!(
            "[health]\nstats_interval = 1\nmetrics_listen = \"127.0.0.1:{port}\"\n\n\
             [[outputs]]\nname = \"out\"\nformat = \"native\"\n[outputs.stdout]\n"
        ),
    )?;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let sink_seen = seen.clone();
    let ns_field = format!("\"netns\":{netns},");
    let agent = Agent::start_streaming(
        &["--config", &config.display().to_string()],
        Box::new(move |line: &str| {
            let mut s = sink_seen.lock().unwrap();
            if line.contains("\"event_action\":\"end\"") && line.contains(&ns_field) {
                s.storm_ends += 1;
            } else if line.contains("\"event_action\":\"stats\"") {
                s.stats_events += 1;
                s.last_stats = serde_json::from_str(line).ok();
                let open = s.last_stats.as_ref().and_then(|v| v["flows_open"].as_u64());
                s.max_flows_open = s.max_flows_open.max(open.unwrap_or(0));
            }
        }),
    )?;
    let pid = agent.pid();
    let (peak, stop_sampling) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    sample_peak_rss(pid, peak.clone(), stop_sampling.clone());

    let duration = Duration::from_secs_f64((30.0 * scale()).max(5.0));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let storm = Storm::tcp(host.name(), threads)?;
    let started = Instant::now();
    let mut scrapes = Vec::new();
    while started.elapsed() < duration {
        std::thread::sleep(Duration::from_secs(1));
        ensure!(!storm.failed(), "a storm thread stopped early");
        let asked = Instant::now();
        let body = scrape(port).context("the metrics endpoint during the storm")?;
        scrapes.push(asked.elapsed());
        ensure!(
            metric(&body, "flow_agent_uptime_seconds").is_some(),
            "no uptime in the metrics: {body}"
        );
    }

    // Losses counted so far are in the log too.
    let lost_before_term = seen
        .lock()
        .unwrap()
        .last_stats
        .as_ref()
        .map_or(0, |s| s["kernel_losses"]["ring_full"].as_u64().unwrap_or(0));
    // Logged before the stats event that counts them, yet it may reach stderr's reader later.
    let log_before_term = if lost_before_term > 0 {
        agent.stderr_once_it_has("kernel-side losses", EVENT_TIMEOUT)
    } else {
        agent.stderr()
    };
    // SIGTERM while the storm still runs: connections made so far are owed, later ones not.
    let made_before_term = storm.made();
    let asked = Instant::now();
    let stopped = agent.stop_lines();
    let stop_took = asked.elapsed();
    let report = storm.stop()?;
    stopped.context("stopping the agent during the storm")?;
    stop_sampling.store(true, Ordering::Relaxed);

    let seen = seen.lock().unwrap();
    let stats = seen
        .last_stats
        .clone()
        .context("no stats event was printed")?;
    let losses = &stats["kernel_losses"];
    let lost = |k: &str| losses[k].as_u64().unwrap_or(0);
    let counted = lost("ring_full") + lost("tcp_table_full") + lost("read_failed");
    let flows_made = 2 * made_before_term;
    eprintln!(
        "storm: {} connections in {:?} ({:.0}/s, {threads} threads), {made_before_term} before SIGTERM; \
         agent: {} end events of storm flows, losses {losses}, at most {} flows open, {} stats events, \
         stopped {stop_took:?} after SIGTERM, peak RSS {} KiB, slowest scrape {:?}",
        report.made,
        report.elapsed,
        report.per_second(),
        seen.storm_ends,
        seen.max_flows_open,
        seen.stats_events,
        peak.load(Ordering::Relaxed),
        scrapes.iter().max()
    );
    ensure!(made_before_term > 0, "the storm made no connection at all");
    // Each flow either has its end event or lost at least one kernel record, which is counted.
    ensure!(
        seen.storm_ends + counted >= flows_made,
        "{} end events + {counted} counted losses < {flows_made} flows made ({made_before_term} connections): \
         flows were lost without being counted (losses: {losses})",
        seen.storm_ends
    );
    ensure!(
        seen.storm_ends <= flows_made + 2 * (report.made - made_before_term),
        "more end events ({}) than flows made",
        seen.storm_ends
    );
    ensure!(
        lost_before_term == 0 || log_before_term.contains("kernel-side losses"),
        "{lost_before_term} ring losses in the stats events, none in the log:\n{log_before_term}"
    );
    ensure!(
        stop_took < slowed(STOP_TIMEOUT),
        "the agent took {stop_took:?} to stop"
    );
    let peak = peak.load(Ordering::Relaxed);
    ensure!(peak > 0, "VmHWM of the agent was never read");
    ensure!(
        peak < RSS_BOUND_KIB,
        "peak RSS {peak} KiB above the bound of {RSS_BOUND_KIB} KiB"
    );
    Ok(())
}
