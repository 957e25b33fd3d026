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
