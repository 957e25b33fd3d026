//! `[rate_limit]` on real traffic: one process makes 500 connections in a burst, another 5.
//! The quiet process's flows are all reported with every event; the noisy one's admitted
//! flows stay within burst + rate × time; its `rate_limited` summaries plus its admitted
//! flows are exactly the 500 connections it made. A reload then changes the limit. Every flow
//! event and summary of the run validates against docs/events.schema.json.
//!
//! Traffic stays on the loopback of a namespace the test creates. Needs root, kernel BTF,
//! iproute2 and python3.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::{agent, by_flow, finish, is_end, setup, spawn_py, wait_for_line, EVENT_TIMEOUT};
use flow_agent_tests::{slowed, Agent, TempDir, TestHost};
use serde_json::Value;

const PORT: u16 = 19637;
const NOISY: u64 = 500;
const QUIET: u64 = 5;
const RATE: f64 = 2.0;
const BURST: u64 = 50;

/// Only the test's connections (client side) are considered, so that other traffic of the
/// host takes no token; limits per process only.
const CONFIG: &str = r#"
[health]
stats_interval = 1
[filter]
include = [{ remote_port = PORT, direction = "outbound" }]
[rate_limit]
enabled = true
per_process_rate = RATE
per_process_burst = BURST
summary_interval = 1
"#;

/// Accepts and closes connections until killed.
const SERVER: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(4096)
print("listening", flush=True)
while True:
    c, _ = s.accept(); c.close()
"#;

/// Makes N connections one after the other, as fast as it can; prints its pid, then "done".
const CLIENT: &str = r#"
import os, socket, sys
print("pid", os.getpid(), flush=True)
for _ in range(int(sys.argv[2])):
    c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
    c.close()
print("done", flush=True)
"#;

fn config(rate: f64, burst: u64) -> String {
    CONFIG
        .replace("PORT", &PORT.to_string())
        .replace("RATE", &rate.to_string())
        .replace("BURST", &burst.to_string())
}

fn write_config(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, path).context("replacing the configuration")
}

/// Runs a client making `n` connections; returns its pid.
fn connections(host: &TestHost, n: u64) -> Result<u32> {
    let p = spawn_py(host, CLIENT, &[PORT.to_string(), n.to_string()])?;
    let pid: u32 = wait_for_line(&p, "pid", Duration::from_secs(10))?[4..]
        .trim()
        .parse()?;
    let out = finish(p, Duration::from_secs(120))?;
    ensure!(out.contains("done"), "client {pid} did not finish: {out}");
    Ok(pid)
}

/// What the events say about one process: its flows (by id, with their actions), and the
/// suppressed counts of its summaries.
#[derive(Debug, Default)]
struct Seen {
    flows: std::collections::BTreeMap<String, Vec<String>>,
    suppressed: u64,
    suppressed_ended: u64,
    summaries: Vec<Value>,
}

fn seen(events: &[Value], pid: u32) -> Seen {
    let mut s = Seen::default();
    for e in events.iter().filter(|e| e["pid"] == pid) {
        if e["event_action"] == "rate_limited" {
            s.suppressed += e["suppressed_flows"].as_u64().unwrap_or(0);
            s.suppressed_ended += e["suppressed_ended"].as_u64().unwrap_or(0);
            s.summaries.push(e.clone());
        } else if e["dest_port"] == PORT && e["network_direction"] == "outbound" {
            let id = e["flow_id"].as_str().unwrap_or_default().to_string();
            let action = e["event_action"].as_str().unwrap_or_default().to_string();
            s.flows.entry(id).or_default().push(action);
        }
    }
    s
}

/// Waits until every one of `n` connections of `pid` is either an ended flow or counted in a
/// summary.
fn wait_accounted(agent: &Agent, pid: u32, n: u64) -> Result<()> {
    let deadline = Instant::now() + slowed(EVENT_TIMEOUT);
    loop {
        let s = seen(&agent.events(), pid);
        let ended = s
            .flows
            .values()
            .filter(|a| a.iter().any(|a| a == "end"))
            .count() as u64;
        if ended + s.suppressed >= n {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "pid {pid}: {ended} flows ended and {} suppressed, {n} connections made\nstderr:\n{}",
            s.suppressed,
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn admitted_whole(s: &Seen, pid: u32) -> Result<u64> {
    for (id, actions) in &s.flows {
        ensure!(
            actions.first().map(String::as_str) == Some("start")
                && actions.last().map(String::as_str) == Some("end"),
            "pid {pid}: flow {id} was cut: {actions:?}"
        );
    }
    Ok(s.flows.len() as u64)
}

/// Every flow event and `rate_limited` summary of the run validates against
/// docs/events.schema.json (stats events are described by docs/health.md), and there are
/// summaries among them.
fn schema_valid(events: &[Value]) -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/events.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| anyhow::anyhow!("compiling {}: {e}", path.display()))?;
    let mut summaries = 0;
    let mut failures = Vec::new();
    for ev in events.iter().filter(|e| e["event_action"] != "stats") {
        summaries += usize::from(ev["event_action"] == "rate_limited");
        let errs: Vec<String> = validator
            .iter_errors(ev)
            .map(|e| format!("  at {:?}: {e}", e.instance_path().as_str()))
            .collect();
        if !errs.is_empty() {
            failures.push(format!("{}\n  event: {ev}", errs.join("\n")));
        }
    }
    ensure!(
        failures.is_empty(),
        "{} events do not match docs/events.schema.json (first 10):\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n\n")
    );
    ensure!(summaries > 0, "no rate_limited summary to validate");
    Ok(())
}

#[test]
fn a_noisy_process_is_limited_summarized_exactly_and_a_reload_changes_the_limit() -> Result<()> {
    setup()?;
    let dir = TempDir::new("rate-limit")?;
    let host = TestHost::new()?;
    let cfg = dir.path().join("c.toml");
    write_config(&cfg, &config(RATE, BURST))?;
    let agent = agent(&["--config", &cfg.display().to_string()])?;
    let server = spawn_py(&host, SERVER, &[PORT.to_string()])?;
    wait_for_line(&server, "listening", Duration::from_secs(10))?;

    let began = Instant::now();
    let noisy = connections(&host, NOISY)?;
    let quiet = connections(&host, QUIET)?;
    wait_accounted(&agent, noisy, NOISY)?;
    wait_accounted(&agent, quiet, QUIET)?;
    let window = began.elapsed().as_secs_f64();

    // A reload: a burst of 10 and (practically) no refill. A process making 30 connections
    // got them all before (burst 50); after, exactly 10.
    let before = connections(&host, 30)?;
    wait_accounted(&agent, before, 30)?;
    write_config(&cfg, &config(0.001, 10))?;
    // SAFETY: kill(2) on the agent's pid, a child the harness has not reaped.
    ensure!(unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) } == 0);
    let deadline = Instant::now() + slowed(EVENT_TIMEOUT);
    while !agent.stderr().contains("configuration reloaded") {
        ensure!(Instant::now() < deadline, "no reload:\n{}", agent.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = connections(&host, 30)?;
    wait_accounted(&agent, after, 30)?;
    drop(server);
    let events = agent.stop()?;
    schema_valid(&events)?;

    // The quiet process: every flow, whole.
    let q = seen(&events, quiet);
    ensure!(
        admitted_whole(&q, quiet)? == QUIET && q.suppressed == 0,
        "quiet process: {q:?}"
    );
    // The noisy one: within burst + rate × time, and exactly accounted for.
    let n = seen(&events, noisy);
    let admitted = admitted_whole(&n, noisy)?;
    let bound = BURST as f64 + RATE * window;
    ensure!(
        admitted >= BURST && admitted as f64 <= bound,
        "noisy process: {admitted} flows admitted, expected {BURST} to {bound:.1} ({window:.1} s)"
    );
    ensure!(
        admitted + n.suppressed == NOISY,
        "noisy process: {admitted} admitted + {} suppressed != {NOISY} connections",
        n.suppressed
    );
    // Every suppressed connection ended (at the latest at shutdown) and was counted so.
    ensure!(
        n.suppressed_ended == n.suppressed,
        "noisy process: {} suppressed, {} of them ended",
        n.suppressed,
        n.suppressed_ended
    );
    let entity = events
        .iter()
        .find(|e| e["pid"] == noisy && e["event_action"] == "start")
        .context("a start of the noisy process")?["process_entity_id"]
        .clone();
    for s in &n.summaries {
        ensure!(
            s["limiter"] == "process"
                && s["process_entity_id"] == entity
                && s["exe"].as_str().is_some_and(|e| e.starts_with("python"))
                && s["remote_ips"] == serde_json::json!(["127.0.0.1"])
                && s["dest_ports"] == serde_json::json!([PORT])
                && s["suppressed_tcp"] == s["suppressed_flows"]
                && s["suppressed_udp"] == 0,
            "summary of the noisy process: {s}"
        );
    }
    ensure!(
        n.summaries
            .iter()
            .any(|s| s["first_suppressed_time"].is_string()),
        "no summary with first_suppressed_time: {:?}",
        n.summaries
    );
    // Totals in the stats events: at least ours (other processes may add to them).
    let last_stats = events
        .iter()
        .rev()
        .find(|e| e["event_action"] == "stats")
        .context("no stats event")?;
    let total = last_stats["rate_limit"]["suppressed_process"]
        .as_u64()
        .unwrap_or(0);
    ensure!(
        total >= n.suppressed + 20,
        "stats rate_limit.suppressed_process {total} < {} + 20",
        n.suppressed
    );

    // The reload changed the limit.
    let b = seen(&events, before);
    ensure!(
        admitted_whole(&b, before)? == 30 && b.suppressed == 0,
        "before the reload: {} admitted, {} suppressed",
        b.flows.len(),
        b.suppressed
    );
    let a = seen(&events, after);
    ensure!(
        admitted_whole(&a, after)? == 10 && a.suppressed == 20,
        "after the reload: {} admitted, {} suppressed",
        a.flows.len(),
        a.suppressed
    );
    Ok(())
}

/// Makes N1 connections to port P1, then N2 to port P2, one after the other; prints its pid,
/// then "done".
const TWO_PORTS_CLIENT: &str = r#"
import os, socket, sys
print("pid", os.getpid(), flush=True)
for port, n in ((int(sys.argv[1]), int(sys.argv[2])), (int(sys.argv[3]), int(sys.argv[4]))):
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        c.close()
print("done", flush=True)
"#;

/// Item 7 of issue 16 on the real agent: the global filter decides once per event, before the
/// rate limiter and for every output at once. A process makes 5 connections the global
/// filter drops, then 5 it passes, under a per-process burst of 3: the dropped ones take no
/// token (exactly 3 of the passed ones are admitted, whole, and 2 summarized), and the stdout
/// and file outputs carry exactly the same events.
#[test]
fn the_global_filter_decides_before_the_limiter_and_once_for_every_output() -> Result<()> {
    setup()?;
    let (dropped_port, passed_port, n, burst) = (19638u16, 19639u16, 5u64, 3u64);
    let host = TestHost::new()?;
    let dir = TempDir::new("filter-once")?;
    let file = dir.path().join("flows.json");
    let config = dir.path().join("agent.toml");
    write_config(
        &config,
        &format!(
            "[filter]\n\
             include = [{{ remote_port = [{dropped_port}, {passed_port}], direction = \"outbound\" }}]\n\
             exclude = [{{ remote_port = {dropped_port} }}]\n\
             [rate_limit]\nenabled = true\nper_process_rate = 0.001\nper_process_burst = {burst}\n\
             summary_interval = 1\n\
             [[outputs]]\nname = \"events\"\n[outputs.stdout]\n\
             [[outputs]]\nname = \"archive\"\n[outputs.file]\npath = \"{}\"\n",
            file.display()
        ),
    )?;
    let agent = agent(&["--config", &config.display().to_string()])?;
    let mut servers = Vec::new();
    for port in [dropped_port, passed_port] {
        let s = spawn_py(&host, SERVER, &[port.to_string()])?;
        wait_for_line(&s, "listening", Duration::from_secs(10))?;
        servers.push(s);
    }
    let client = spawn_py(
        &host,
        TWO_PORTS_CLIENT,
        &[dropped_port, n as u16, passed_port, n as u16].map(|v| v.to_string()),
    )?;
    let pid: u32 = wait_for_line(&client, "pid", Duration::from_secs(10))?[4..]
        .trim()
        .parse()?;
    let out = finish(client, Duration::from_secs(60))?;
    ensure!(out.contains("done"), "client {pid} did not finish: {out}");

    // Every passed connection accounted for: ended, or in a summary.
    let mine = |e: &Value| e["pid"] == pid;
    let deadline = Instant::now() + slowed(EVENT_TIMEOUT);
    let (admitted, suppressed) = loop {
        let events: Vec<Value> = agent.events().into_iter().filter(mine).collect();
        let ends = events
            .iter()
            .filter(|e| e["event_action"] == "end" && e["dest_port"] == passed_port)
            .count() as u64;
        let suppressed: u64 = events
            .iter()
            .filter(|e| e["event_action"] == "rate_limited")
            .map(|e| e["suppressed_flows"].as_u64().unwrap_or(0))
            .sum();
        if ends + suppressed >= n {
            break (ends, suppressed);
        }
        ensure!(
            Instant::now() < deadline,
            "{ends} ended and {suppressed} suppressed of {n}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for s in servers {
        s.kill();
    }
    let events = agent.stop()?;
    ensure!(
        (admitted, suppressed) == (burst, n - burst),
        "admitted {admitted}, suppressed {suppressed}: the filtered flows took tokens"
    );
    ensure!(
        !events
            .iter()
            .any(|e| mine(e) && e["dest_port"] == dropped_port),
        "a flow the global filter drops was written"
    );
    let flows = by_flow(
        events
            .iter()
            .filter(|e| mine(e) && e["flow_id"].is_string()),
    );
    ensure!(flows.len() as u64 == burst, "{flows:?}");
    for (id, evs) in &flows {
        ensure!(
            evs.first().is_some_and(|e| e["event_action"] == "start") && evs.iter().any(is_end),
            "flow {id} was cut: {evs:?}"
        );
    }

    // The file output got exactly the same events of this process, summaries included.
    let archived: Vec<Value> = std::fs::read_to_string(&file)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let archived: Vec<&Value> = archived.iter().filter(|e| mine(e)).collect();
    let printed: Vec<&Value> = events.iter().filter(|e| mine(e)).collect();
    ensure!(
        archived == printed,
        "stdout and the file differ:\n{printed:?}\n{archived:?}"
    );
    Ok(())
}
