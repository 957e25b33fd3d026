//! Faults: the agent SIGKILLed and restarted (open flows found again, the disk buffer
//! replayed), a ring buffer too small for the traffic, kernel tables too small for the open
//! flows. Whatever is lost is counted, in stats events and in the log.
//!
//! Forwarder faults (down, slow, errors) are tested per sink: `http_sink.rs`,
//! `syslog_sink.rs`, `file_sink.rs`; the storm in `overload.rs`.
//!
//! Needs root, kernel BTF, iproute2 and python3.

mod common;
mod storm;

use anyhow::{bail, ensure, Context, Result};
use common::*;
use flow_agent_tests::{slowed, unused_port, Agent, Cmd, Spawned, TempDir, TestHost};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use storm::Storm;

/// Three tests here storm the host, which fills every agent's ring, the agents of this binary's
/// other tests too (their own flows' records lost): the tests run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// Accepts connections and reads each to EOF (on its own thread). Args: address, port.
const SERVER: &str = r#"
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(512)
print("listening", flush=True)
def serve(c):
    while c.recv(4096):
        pass
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// Opens N connections, prints `ports P1 P2 ...`, holds them until the file GO exists, then
/// sends each 5 bytes and closes them. Args: address, port, N, GO.
const HOLDER: &str = r#"
import os, socket, sys, time
addr, port, n, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cs = [socket.create_connection((addr, port)) for _ in range(n)]
print("ports", *[c.getsockname()[1] for c in cs], flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
for c in cs:
    c.sendall(b"hello")
    c.close()
print("closed", flush=True)
"#;

/// An event of the connection from client port `client_port` to this test's server at
/// `addr`:`port` (either end: both name the client's port as src_port). Client ports are only
/// unique within the client's namespace; the server's address is the test's own.
fn to_server(e: &Value, addr: &str, port: u16, client_port: u16) -> bool {
    e["dest_ip"] == addr && e["dest_port"] == port && e["src_port"] == client_port
}

fn ports_of(line: &str) -> Result<Vec<u16>> {
    line.split_whitespace()
        .skip(1)
        .map(|p| p.parse().context("port"))
        .collect()
}

/// The connections of a [`HOLDER`]: its process and its local ports.
struct Held {
    proc: Spawned,
    ports: Vec<u16>,
    go: std::path::PathBuf,
}

fn hold(client: &TestHost, addr: &str, port: u16, n: usize, dir: &TempDir) -> Result<Held> {
    static HOLDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = HOLDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let go = dir.path().join(format!("go-{port}-{k}"));
    let proc = spawn_py(
        client,
        HOLDER,
        &[
            addr.into(),
            port.to_string(),
            n.to_string(),
            go.display().to_string(),
        ],
    )?;
    let ports = ports_of(&wait_for_line(&proc, "ports", Duration::from_secs(30))?)?;
    Ok(Held { proc, ports, go })
}

impl Held {
    fn release(self) -> Result<()> {
        std::fs::write(&self.go, b"")?;
        finish(self.proc, Duration::from_secs(30)).map(drop)
    }
}

/// SIGKILLs the agent (no shutdown, no end events) and waits for it.
fn sigkill(agent: Agent) {
    // Dropping a harness agent SIGKILLs and reaps it.
    drop(agent);
}

#[test]
fn flows_open_across_a_sigkill_are_found_again_as_partial() -> Result<()> {
    let _serial = one_at_a_time();
    setup()?;
    let (client, server) = TestHost::pair()?;
    let addr = server.ns_addr_v4().to_string();
    let dir = TempDir::new("faults-kill")?;
    let port = 9420;
    let srv = spawn_py(&server, SERVER, &[addr.clone(), port.to_string()])?;
    wait_for_line(&srv, "listening", Duration::from_secs(10))?;

    let first = agent(&[])?;
    let held = hold(&client, &addr, port, 3, &dir)?;
    for p in &held.ports {
        first.wait_for(
            |e| to_server(e, &addr, port, *p) && e["event_action"] == "start",
            EVENT_TIMEOUT,
        )?;
    }
    sigkill(first);

    let second = agent(&[])?;
    let pid = held.proc.pid();
    for p in &held.ports {
        // Both ends (outbound and inbound: both name the client's port as src_port), found
        // at start-up, their start not observed.
        let starts = second.wait_for_count(
            |e| to_server(e, &addr, port, *p) && e["event_action"] == "start",
            2,
            EVENT_TIMEOUT,
        )?;
        let directions: BTreeSet<&str> = starts
            .iter()
            .filter_map(|e| e["network_direction"].as_str())
            .collect();
        ensure!(
            directions == BTreeSet::from(["inbound", "outbound"]),
            "both ends of port {p}: {starts:?}"
        );
        for start in &starts {
            check(
                "start of a flow open across the SIGKILL",
                start,
                &[("start_observed", false.into())],
            )?;
        }
    }
    let held_ports = held.ports.clone();
    held.release()?;
    for p in &held_ports {
        let end = second.wait_for(
            |e| to_server(e, &addr, port, *p) && is_end(e),
            EVENT_TIMEOUT,
        )?;
        check(
            "end of an outbound flow open across the SIGKILL",
            &end,
            &[
                ("start_observed", false.into()),
                ("network_direction", "outbound".into()),
                ("pid", pid.into()),
                ("end_reason", "fin".into()),
            ],
        )?;
        ensure!(
            end["out_bytes"].as_u64() == Some(5),
            "the 5 bytes sent after the restart: {end}"
        );
    }
    second.stop()?;
    drop(srv);
    Ok(())
}

/// Logs the body of every POST on stdout and answers 200. Args: port.
const RECEIVER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        sys.stdout.write(body.decode("utf-8", "replace"))
        sys.stdout.flush()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
print("listening", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

/// Waits until a stats event after index `from` says what `ok` wants of the sink `name`.
fn wait_sink(agent: &Agent, name: &str, ok: impl Fn(&Value) -> bool) -> Result<Value> {
    agent
        .wait_for(
            |e| {
                e["event_action"] == "stats"
                    && e["sinks"]
                        .as_array()
                        .is_some_and(|s| s.iter().any(|s| s["name"] == name && ok(s)))
            },
            Duration::from_secs(60),
        )
        .with_context(|| format!("waiting for the {name} output's counters"))
}

#[test]
fn the_disk_buffer_is_replayed_after_a_sigkill() -> Result<()> {
    let _serial = one_at_a_time();
    setup()?;
    let (client, server) = TestHost::pair()?;
    let addr = server.ns_addr_v4().to_string();
    let dir = TempDir::new("faults-replay")?;
    let port = 9421;
    let srv = spawn_py(&server, SERVER, &[addr.clone(), port.to_string()])?;
    wait_for_line(&srv, "listening", Duration::from_secs(10))?;
    let http_port = unused_port()?;
    let config = dir.write(
        "agent.toml",
        format!(
            r#"
[health]
stats_interval = 1
metrics_listen = ""

[[outputs]]
name = "events"
[outputs.stdout]

[[outputs]]
name = "siem"
[outputs.http]
url = "http://127.0.0.1:{http_port}/flows"
[outputs.http.delivery]
queue_records = 1
buffer_dir = "{}"
backoff_initial = 0.2
backoff_max = 1
"#,
            dir.path().join("buffer").display()
        ),
    )?;
    let config_arg = config.display().to_string();

    // Nothing listens. The first records fill memory (one queued, one in the failing
    // batch); every later one waits in the disk buffer.
    let first = agent(&["--config", &config_arg])?;
    let warm_up = hold(&client, &addr, port, 2, &dir)?;
    let warm_ports = warm_up.ports.clone();
    warm_up.release()?;
    for p in &warm_ports {
        first.wait_for(
            |e| to_server(e, &addr, port, *p) && is_end(e),
            EVENT_TIMEOUT,
        )?;
    }
    let held = hold(&client, &addr, port, 3, &dir)?;
    let ports = held.ports.clone();
    held.release()?;
    let mut ends = Vec::new();
    for p in &ports {
        ends.push(first.wait_for(
            |e| to_server(e, &addr, port, *p) && is_end(e),
            EVENT_TIMEOUT,
        )?);
    }
    let ids: BTreeSet<&str> = ends.iter().filter_map(|e| e["flow_id"].as_str()).collect();
    let last_end = first
        .events()
        .iter()
        .rposition(|e| is_end(e) && e["flow_id"].as_str().is_some_and(|id| ids.contains(id)))
        .with_context(|| format!("the end events {ids:?} in the output"))?;
    // Once a stats event after the last end says nothing is in memory, the ends are on disk.
    let printed_before = last_end + 1;
    let deadline = Instant::now() + slowed(Duration::from_secs(60));
    loop {
        let later: Vec<Value> = first.events()[printed_before..].to_vec();
        let settled = later.iter().any(|e| {
            e["event_action"] == "stats"
                && e["sinks"].as_array().is_some_and(|s| {
                    s.iter().any(|s| {
                        s["name"] == "siem"
                            && s["queued"].as_u64() <= Some(2)
                            && s["buffered"].as_u64() >= Some(ends.len() as u64)
                    })
                })
        });
        if settled {
            break;
        }
        if Instant::now() > deadline {
            let stats = last_stats(&first.events()).cloned().unwrap_or_default();
            bail!(
                "the http output never reported its records buffered on disk: last stats {}\n{}",
                stats["sinks"],
                first.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    sigkill(first);

    let receiver = Cmd::host(&python()?.display().to_string())
        .arg("-c")
        .arg(RECEIVER)
        .arg(http_port.to_string())
        .spawn()?;
    wait_for_line(&receiver, "listening", Duration::from_secs(10))?;
    let second = agent(&["--config", &config_arg])?;
    // Logged as the outputs start; a loaded host may show it late.
    let deadline = Instant::now() + slowed(Duration::from_secs(20));
    while !second.stderr().contains("earlier run") {
        ensure!(
            Instant::now() < deadline,
            "the restarted agent did not say it found an earlier run's records:\n{}",
            second.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let want: BTreeSet<String> = ends.iter().map(Value::to_string).collect();
    let deadline = Instant::now() + slowed(Duration::from_secs(60));
    loop {
        let got: BTreeSet<String> = receiver
            .stdout_so_far()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| v.to_string())
            .collect();
        if want.is_subset(&got) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the end events buffered before the SIGKILL did not all arrive after the restart: {} of {}",
                want.intersection(&got).count(),
                want.len()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_sink(&second, "siem", |s| s["sent"].as_u64() > Some(0))?;
    second.stop()?;
    drop(receiver);
    drop(srv);
    Ok(())
}

/// `[capture]` and `[health]` for a tiny kernel side.
fn tiny_config(dir: &TempDir, capture: &str) -> Result<std::path::PathBuf> {
    dir.write(
        "agent.toml",
        format!(
            "[health]\nstats_interval = 1\nmetrics_listen = \"\"\n\n[capture]\n{capture}\n\n\
             [[outputs]]\nname = \"events\"\n[outputs.stdout]\n"
        ),
    )
}

/// The last stats event printed.
fn last_stats(events: &[Value]) -> Result<&Value> {
    events
        .iter()
        .rev()
        .find(|e| e["event_action"] == "stats")
        .context("no stats event")
}

fn loss(stats: &Value, kind: &str) -> u64 {
    stats["kernel_losses"][kind].as_u64().unwrap_or(0)
}

/// Waits until the agent's log has a losses line whose counters `ok` accepts; returns it.
fn wait_losses_logged(agent: &Agent, ok: impl Fn(&[u64]) -> bool) -> Result<String> {
    let deadline = Instant::now() + slowed(Duration::from_secs(30));
    loop {
        let stderr = agent.stderr();
        let found = stderr.lines().find(|l| {
            l.contains("kernel-side losses")
                && l.split_once(": [")
                    .and_then(|(_, rest)| rest.split_once(']'))
                    .map(|(list, _)| {
                        list.split(", ")
                            .filter_map(|n| n.trim().parse().ok())
                            .collect::<Vec<u64>>()
                    })
                    .is_some_and(|v| ok(&v))
        });
        if let Some(l) = found {
            return Ok(l.to_string());
        }
        if Instant::now() > deadline {
            bail!("no such losses line in the log:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_ring_buffer_too_small_for_a_storm_counts_its_losses() -> Result<()> {
    let _serial = one_at_a_time();
    setup()?;
    let host = TestHost::new()?;
    let netns = host.netns_inode()?;
    let dir = TempDir::new("faults-ring")?;
    let config = tiny_config(&dir, "ring_buffer_bytes = 4096\nwakeup_bytes = 0")?;
    let agent = agent(&["--config", &config.display().to_string()])?;
    let storm = Storm::tcp(host.name(), 2)?;
    // Logged while running (ring full is the first counter).
    wait_losses_logged(&agent, |v| v.first().is_some_and(|n| *n > 0))?;
    let made = storm.made();
    let events = agent.stop()?;
    storm.stop()?;
    let stats = last_stats(&events)?;
    let ring_full = loss(stats, "ring_full");
    let ends = events
        .iter()
        .filter(|e| is_end(e) && e["netns"] == netns)
        .count() as u64;
    ensure!(
        ring_full > 0,
        "a 4 KiB ring under a storm lost nothing? {stats}"
    );
    // Every flow made before the SIGTERM has its end event or lost a record, counted.
    ensure!(
        ends + ring_full + loss(stats, "tcp_table_full") >= 2 * made,
        "{ends} end events + {ring_full} ring losses < {} flows made",
        2 * made
    );
    Ok(())
}

#[test]
fn full_kernel_tables_evict_and_count_what_they_pushed_out() -> Result<()> {
    let _serial = one_at_a_time();
    setup()?;
    let (client, server) = TestHost::pair()?;
    let addr = server.ns_addr_v4().to_string();
    let dir = TempDir::new("faults-tables")?;
    let config = tiny_config(&dir, "tcp_sockets = 16\nudp_flows = 16")?;
    let agent = agent(&["--config", &config.display().to_string()])?;

    // TCP: 100 connections held at once, both ends on this host: 200 sockets for 16 slots.
    let port = 9422;
    let srv = spawn_py(&server, SERVER, &[addr.clone(), port.to_string()])?;
    wait_for_line(&srv, "listening", Duration::from_secs(10))?;
    let held = hold(&client, &addr, port, 100, &dir)?;
    let ports = held.ports.clone();
    for p in &ports {
        agent.wait_for(
            |e| to_server(e, &addr, port, *p) && e["event_action"] == "start",
            EVENT_TIMEOUT,
        )?;
    }
    held.release()?;
    // Every connection still ends exactly once, under the id it started with.
    let ends = agent.wait_for_count(
        |e| {
            is_end(e)
                && e["dest_ip"] == addr.as_str()
                && e["dest_port"] == port
                && e["network_direction"] == "outbound"
        },
        ports.len(),
        EVENT_TIMEOUT,
    )?;
    let ended: BTreeSet<u64> = ends.iter().filter_map(|e| e["src_port"].as_u64()).collect();
    ensure!(
        ended.len() == ports.len(),
        "{} distinct outbound ends for {} connections",
        ended.len(),
        ports.len()
    );

    // UDP: one socket to 200 ports, for 16 flow slots.
    const UDP_PORTS: std::ops::Range<u64> = 20000..20200;
    let udp = Storm::udp(client.name(), 1, UDP_PORTS.start as u16, 200)?;
    std::thread::sleep(slowed(Duration::from_secs(3)));
    udp.stop()?;
    // One of this storm's flows (loopback ports no other test here uses; UDP flows may carry
    // no namespace).
    let evicted = agent.wait_for(
        |e| {
            is_end(e)
                && e["end_reason"] == "evicted"
                && e["transport_protocol"] == "udp"
                && e["dest_ip"] == "127.0.0.1"
                && e["dest_port"]
                    .as_u64()
                    .is_some_and(|p| UDP_PORTS.contains(&p))
        },
        EVENT_TIMEOUT,
    )?;
    ensure!(
        evicted.get("in_bytes").is_none(),
        "an evicted flow has no counters: {evicted}"
    );
    // Counted: in the log while running, and in the stats events.
    wait_losses_logged(&agent, |_| true)?;
    let stats = agent.wait_for(
        |e| {
            e["event_action"] == "stats"
                && loss(e, "tcp_table_full") > 0
                && loss(e, "udp_table_full") > 0
        },
        Duration::from_secs(30),
    )?;
    let stderr = agent.stderr();
    ensure!(
        stderr.contains("evicted while open"),
        "the log does not report the evictions:\n{stderr}"
    );
    eprintln!("losses: {}", stats["kernel_losses"]);
    agent.stop()?;
    drop(srv);
    Ok(())
}

/// Processes running `/bin/true` in a loop (a fork and an exec per turn) until dropped.
struct ExecFlood {
    children: Vec<std::process::Child>,
    stop: std::path::PathBuf,
}

impl ExecFlood {
    fn start(processes: usize, dir: &TempDir) -> Result<ExecFlood> {
        let stop = dir.path().join("stop-exec-flood");
        let mut children = Vec::new();
        for _ in 0..processes {
            let child = std::process::Command::new("/bin/sh")
                .args(["-c", "while [ ! -e \"$1\" ]; do /bin/true; done", "sh"])
                .arg(&stop)
                .spawn()
                .context("starting an exec flood process")?;
            children.push(child);
        }
        Ok(ExecFlood { children, stop })
    }
}

impl Drop for ExecFlood {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.stop, b"");
        for c in &mut self.children {
            let _ = c.wait();
        }
    }
}

/// Connections of the storm beside the exec flood: about 16,000 flow records, which the
/// default 8 MiB flow ring holds even if the agent read none of them meanwhile.
const FLOOD_STORM_CONNECTIONS: u64 = 4000;

/// Exec records have a ring of their own: several processes exec'ing as fast as they can beside
/// a connection storm take no room from the flows. In one shared ring, exec records of 8 KiB
/// each pushed flow records out: the release agent before the split wrote 6,375 of the 8,020
/// end events here.
#[test]
fn an_exec_flood_beside_a_connection_storm_loses_no_flow_record() -> Result<()> {
    let _serial = one_at_a_time();
    setup()?;
    let host = TestHost::new()?;
    let netns = host.netns_inode()?;
    let dir = TempDir::new("faults-exec-flood")?;
    let config = tiny_config(&dir, "")?;
    let agent = agent(&["--config", &config.display().to_string()])?;
    let flood = ExecFlood::start(4, &dir)?;
    let storm = Storm::tcp(host.name(), 2)?;
    let deadline = Instant::now() + slowed(Duration::from_secs(60));
    while storm.made() < FLOOD_STORM_CONNECTIONS && !storm.failed() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let made = storm.stop()?.made;
    drop(flood);
    // Both ends of every connection of this namespace, each exactly once.
    let ends = agent.wait_for_count(
        |e| is_end(e) && e["netns"] == netns,
        2 * made as usize,
        slowed(Duration::from_secs(30)),
    )?;
    let events = agent.stop()?;
    let all_ends = events
        .iter()
        .filter(|e| is_end(e) && e["netns"] == netns)
        .count() as u64;
    let stats = last_stats(&events)?;
    ensure!(made > 0, "the storm made no connection");
    ensure!(
        all_ends == 2 * made && ends.len() as u64 == 2 * made,
        "{all_ends} end events for {} flows made; losses: {}",
        2 * made,
        stats["kernel_losses"]
    );
    ensure!(
        stats["kernel_losses"]["process_ring_full"].is_u64()
            && stats["kernel_losses"]["dns_ring_full"].is_u64(),
        "losses are counted per ring: {}",
        stats["kernel_losses"]
    );
    Ok(())
}
