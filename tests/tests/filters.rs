//! Filters on real traffic between two test namespaces: a global filter (include by CIDR,
//! exclude by port and by CIDR with port) and an output's own filter (exclude by process name
//! and by user). Every connection makes two flows, the client's (outbound) and the server's
//! (inbound); the test asserts exactly which of them appear, each whole (start and end).
//!
//! Needs root, kernel BTF, iproute2 and python3.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::{ensure, Result};
use common::*;
use flow_agent_tests::{TempDir, TestHost};
use serde_json::{json, Value};

/// Server: accepts on every port given, reads each connection to EOF, replies, closes.
const SERVER: &str = r#"
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], port)); s.listen(16)
    while True:
        c, _ = s.accept()
        while c.recv(65536): pass
        c.sendall(b"ok"); c.close()
for p in sys.argv[2:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
print("listening", flush=True)
threading.Event().wait()
"#;

/// Client: optionally becomes another user first, connects, sends, closes after the reply.
/// Args: address, port, [uid].
const CLIENT: &str = r#"
import os, socket, sys
if len(sys.argv) > 3:
    uid = int(sys.argv[3]); os.setgroups([]); os.setgid(uid); os.setuid(uid)
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
print("port", c.getsockname()[1], flush=True)
c.sendall(b"hello\n"); c.shutdown(socket.SHUT_WR)
while c.recv(100): pass
c.close()
"#;

const NOBODY: u32 = 65534;

const CONFIG: &str = r#"
[filter]
# Only the test's own flows: other traffic on this host is not the test's business.
include = [{ remote_cidr = "SERVER/32" }, { local_cidr = "SERVER/32" }]
exclude = [
  { remote_port = 9602 },
  { remote_cidr = "CLIENT/32", local_port = 9603, transport = "tcp" },
]

[[outputs]]
[outputs.stdout]
[outputs.filter]
exclude = [{ process_name = "pyfiltered" }, { user = "nobody", direction = "outbound" }]
"#;

#[test]
fn global_and_output_filters_on_port_cidr_process_name_and_user() -> Result<()> {
    setup()?;
    let dir = TempDir::new("filters")?;
    let (client, server) = TestHost::pair()?;
    let (caddr, saddr) = (
        client.ns_addr_v4().to_string(),
        server.ns_addr_v4().to_string(),
    );
    let cfg = dir.write(
        "c.toml",
        CONFIG.replace("SERVER", &saddr).replace("CLIENT", &caddr),
    )?;
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644))?;
    // A Python whose process name (comm, from the name it was exec'd by) is "pyfiltered".
    let renamed = dir.path().join("pyfiltered");
    std::os::unix::fs::symlink(std::fs::canonicalize(python()?)?, &renamed)?;

    let agent = agent(&["--config", &cfg.display().to_string()])?;
    let ports = ["9601", "9602", "9603", "9604", "9605"];
    let mut args = vec![saddr.clone()];
    args.extend(ports.iter().map(|p| p.to_string()));
    let srv = spawn_py(&server, SERVER, &args)?;
    wait_for_line(&srv, "listening", Duration::from_secs(10))?;

    let run = |prog: &str, port: &str, extra: &[String]| -> Result<u64> {
        let p = client
            .cmd(prog)
            .arg("-c")
            .arg(CLIENT)
            .args([saddr.as_str(), port])
            .args(extra)
            .spawn()?;
        let out = finish(p, Duration::from_secs(20))?;
        value_after(&out, "port")
    };
    let py = python()?.display().to_string();
    let mut client_ports = std::collections::BTreeMap::new();
    for port in ["9601", "9602", "9603"] {
        client_ports.insert(port, run(&py, port, &[])?);
    }
    client_ports.insert("9604", run(&renamed.display().to_string(), "9604", &[])?);
    client_ports.insert("9605", run(&py, "9605", &[NOBODY.to_string()])?);

    let present: BTreeSet<(u16, &str)> = [
        (9601, "outbound"),
        (9601, "inbound"),
        (9602, "inbound"),
        (9603, "outbound"),
        (9604, "inbound"),
        (9605, "inbound"),
    ]
    .into_iter()
    .collect();
    for (port, direction) in &present {
        agent.wait_for(
            |e| {
                has(
                    e,
                    &[
                        ("dest_port", json!(port)),
                        ("network_direction", json!(direction)),
                        ("event_action", json!("end")),
                    ],
                )
            },
            EVENT_TIMEOUT,
        )?;
    }
    let events = agent.stop()?;

    let ours: Vec<&Value> = events
        .iter()
        .filter(|e| e["src_ip"] == saddr.as_str() || e["dest_ip"] == saddr.as_str())
        .collect();
    let flows = by_flow(ours.iter().copied());
    let mut seen: BTreeSet<(u16, &str)> = BTreeSet::new();
    for (id, evs) in &flows {
        let first = &evs[0];
        let key = (
            first["dest_port"].as_u64().unwrap_or(0) as u16,
            if first["network_direction"] == "outbound" {
                "outbound"
            } else {
                "inbound"
            },
        );
        let actions: Vec<&str> = evs
            .iter()
            .map(|e| e["event_action"].as_str().unwrap_or(""))
            .collect();
        ensure!(
            actions == ["start", "end"],
            "flow {id} {key:?}: {actions:?}"
        );
        ensure!(
            evs[0]["src_port"].as_u64() == Some(client_ports[&*key.0.to_string()]),
            "flow {id} {key:?} is not the test client's connection: {evs:?}"
        );
        ensure!(seen.insert(key), "flow {key:?} appears twice");
    }
    ensure!(
        seen == present,
        "flows that appear: {seen:?}\nwant exactly: {present:?}"
    );
    Ok(())
}

/// UDP: answers every datagram on the port given.
const UDP_ECHO: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
while True:
    data, peer = s.recvfrom(2048); s.sendto(data, peer)
"#;

/// UDP: sends N datagrams from one socket, each waiting for its answer. Args: address, port, N.
const UDP_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(10)
for _ in range(int(sys.argv[3])):
    s.sendto(b"ping", (sys.argv[1], int(sys.argv[2]))); s.recvfrom(2048)
print("port", s.getsockname()[1], flush=True)
s.close()
"#;

/// Debug logs: the agent logs the kernel filter's counters whenever they change.
const KERNEL_CONFIG: &str = r#"
[agent]
log_level = "debug"
[filter]
include = [{ remote_cidr = "SERVER/32" }, { local_cidr = "SERVER/32" }]
exclude = [
  { remote_cidr = "SERVER/32", remote_port = 9711 },
  { remote_cidr = "SERVER/32", remote_port = 9712, transport = "udp" },
]
"#;

#[test]
fn remote_address_and_port_rules_are_decided_in_the_kernel() -> Result<()> {
    setup()?;
    let dir = TempDir::new("filters-kernel")?;
    let (client, server) = TestHost::pair()?;
    let saddr = server.ns_addr_v4().to_string();
    let cfg = dir.write("c.toml", KERNEL_CONFIG.replace("SERVER", &saddr))?;
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644))?;
    let agent = agent(&["--config", &cfg.display().to_string()])?;
    ensure!(
        agent
            .stderr()
            .contains("kernel filter: 2 of 2 global exclude rules decided in the kernel"),
        "{}",
        agent.stderr()
    );
    let srv = spawn_py(
        &server,
        SERVER,
        &[saddr.clone(), "9711".into(), "9713".into()],
    )?;
    wait_for_line(&srv, "listening", Duration::from_secs(10))?;
    let echo = spawn_py(&server, UDP_ECHO, &[saddr.clone(), "9712".into()])?;
    wait_for_line(&echo, "listening", Duration::from_secs(10))?;

    let tcp = |port: &str| -> Result<u64> {
        let p = spawn_py(&client, CLIENT, &[saddr.clone(), port.into()])?;
        value_after(&finish(p, Duration::from_secs(20))?, "port")
    };
    let skipped: Vec<u64> = (0..3).map(|_| tcp("9711")).collect::<Result<_>>()?;
    let kept = tcp("9713")?;
    let udp = spawn_py(
        &client,
        UDP_CLIENT,
        &[saddr.clone(), "9712".into(), "4".into()],
    )?;
    let udp_port = value_after(&finish(udp, Duration::from_secs(20))?, "port")?;
    drop(echo);
    // The server's UDP flow ends when its socket closes with the echo server.
    for (port, direction) in [(9713, "outbound"), (9713, "inbound"), (9711, "inbound")] {
        agent.wait_for(
            |e| {
                has(
                    e,
                    &[
                        ("dest_port", json!(port)),
                        ("network_direction", json!(direction)),
                        ("event_action", json!("end")),
                    ],
                )
            },
            EVENT_TIMEOUT,
        )?;
    }
    agent.wait_for(
        |e| {
            has(
                e,
                &[
                    ("transport_protocol", json!("udp")),
                    ("dest_port", json!(9712)),
                    ("event_action", json!("end")),
                ],
            )
        },
        EVENT_TIMEOUT,
    )?;
    // The kernel skipped exactly the client's three TCP connects to 9711 and the client's 8 UDP
    // packets with 9712 (4 out, 4 answers): no record, no event.
    let want = "kernel filter skipped 3 TCP flows and 8 UDP packets";
    let deadline = std::time::Instant::now() + flow_agent_tests::slowed(EVENT_TIMEOUT);
    while !agent.stderr().contains(want) {
        ensure!(
            std::time::Instant::now() < deadline,
            "no {want:?}; the counters logged: {:?}",
            agent
                .stderr()
                .lines()
                .filter(|l| l.contains("kernel filter skipped"))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let events = agent.stop()?;
    let ours: Vec<&Value> = events
        .iter()
        .filter(|e| e["src_ip"] == saddr.as_str() || e["dest_ip"] == saddr.as_str())
        .collect();
    let outbound_to = |port: u16| {
        ours.iter()
            .filter(|e| e["dest_port"] == port && e["network_direction"] == "outbound")
            .count()
    };
    ensure!(
        outbound_to(9711) == 0,
        "a skipped connect reached the output"
    );
    ensure!(
        outbound_to(9712) == 0,
        "the client's UDP flow (port {udp_port}) reached the output"
    );
    ensure!(
        outbound_to(9713) == 2,
        "the kept connection {kept}: start and end"
    );
    for p in &skipped {
        let server_side = ours
            .iter()
            .filter(|e| e["src_port"] == *p && e["network_direction"] == "inbound")
            .count();
        ensure!(server_side == 2, "server side of {p}: {server_side} events");
    }
    let udp_server: Vec<&&Value> = ours
        .iter()
        .filter(|e| e["transport_protocol"] == "udp" && e["src_port"] == udp_port)
        .collect();
    ensure!(
        udp_server.len() == 2
            && udp_server[1]["in_bytes"] == 16
            && udp_server[1]["out_bytes"] == 16,
        "the server's UDP flow, whole: {udp_server:?}"
    );
    Ok(())
}
