//! UDP flows between two test namespaces: a flow is one socket and one remote endpoint, with
//! exact payload bytes, packets and IP bytes, attributed to the process on each side.
//!
//! Needs root, kernel BTF, iproute2 and python3.

mod common;

use anyhow::{ensure, Context, Result};
use common::*;
use flow_agent_tests::{Agent, Spawned, TestHost};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::Duration;

/// Short, so server flows (whose sockets stay open) end within the test.
const IDLE_TIMEOUT: &str = "2";

/// Answers `count` datagrams, each with M bytes, then keeps its socket open (so its flows end
/// by idleness, not by close). Args: bind address, port, M, count.
const SERVER: &str = r#"
import socket, sys, time
addr, port, m, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind((addr, port))
print("ready", flush=True)
for _ in range(count):
    data, peer = s.recvfrom(65535)
    s.sendto(b"r" * m, peer)
print("done", flush=True)
time.sleep(120)
"#;

/// One unconnected socket: for each round, sends N_i bytes to each target with sendto() and
/// waits for its answer, then closes. Args: rounds, then (address, port, N_i) per target.
/// Prints `local PORT` and `got BYTES`.
const CLIENT: &str = r#"
import socket, sys
rounds = int(sys.argv[1])
t = sys.argv[2:]
targets = [(t[i], int(t[i + 1]), int(t[i + 2])) for i in range(0, len(t), 3)]
fam = socket.AF_INET6 if ":" in targets[0][0] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(10)
got = 0
for r in range(rounds):
    for addr, port, n in targets:
        s.sendto(b"q" * n, (addr, port))
        data, peer = s.recvfrom(65535)
        assert peer[1] == port, (peer, port)
        got += len(data)
        if r == 0 and (addr, port, n) == targets[0]:
            print("local", s.getsockname()[1], flush=True)
print("got", got, flush=True)
s.close()
"#;

/// One UDP server: its address, port, answer size and process.
struct Server {
    addr: IpAddr,
    port: u16,
    req: u64,
    resp: u64,
    proc: Spawned,
}

fn start_server(
    host: &TestHost,
    addr: IpAddr,
    port: u16,
    req: u64,
    resp: u64,
    count: u32,
) -> Result<Server> {
    let args = [
        addr.to_string(),
        port.to_string(),
        resp.to_string(),
        count.to_string(),
    ];
    let proc = spawn_py(host, SERVER, &args)?;
    wait_for_line(&proc, "ready", Duration::from_secs(10))?;
    Ok(Server {
        addr,
        port,
        req,
        resp,
        proc,
    })
}

/// IPv4 or IPv6 header plus the 8-byte UDP header.
fn headers(addr: IpAddr) -> u64 {
    8 + if addr.is_ipv4() { 20 } else { 40 }
}

/// Runs the client against `servers` for `rounds` rounds; returns (pid, local port).
fn run_client(host: &TestHost, rounds: u64, servers: &[Server]) -> Result<(u32, u16)> {
    let mut args = vec![rounds.to_string()];
    for s in servers {
        args.extend([s.addr.to_string(), s.port.to_string(), s.req.to_string()]);
    }
    let cli = spawn_py(host, CLIENT, &args)?;
    let pid = cli.pid();
    let out = finish(cli, Duration::from_secs(30))?;
    let want: u64 = servers.iter().map(|s| rounds * s.resp).sum();
    ensure!(value_after(&out, "got")? == want, "client output {out:?}");
    Ok((pid, value_after(&out, "local")? as u16))
}

/// Waits for the end event with this tuple on the given side (local_orig).
fn wait_end(
    agent: &Agent,
    src: (IpAddr, u16),
    dest: (IpAddr, u16),
    local_orig: bool,
) -> Result<Value> {
    let want = [
        ("event_action", json!("end")),
        ("transport_protocol", json!("udp")),
        ("src_ip", json!(src.0.to_string())),
        ("src_port", json!(src.1)),
        ("dest_ip", json!(dest.0.to_string())),
        ("dest_port", json!(dest.1)),
        ("local_orig", json!(local_orig)),
    ];
    agent
        .wait_for(|e| has(e, &want), EVENT_TIMEOUT)
        .with_context(|| format!("no UDP end event {src:?} -> {dest:?} (local_orig {local_orig})"))
}

/// UDP flows omit netns for now; when present it must be the socket's namespace.
fn check_netns(what: &str, ev: &Value, host: &TestHost) -> Result<()> {
    let netns = get(ev, "netns");
    ensure!(
        netns.is_null() || *netns == host.netns_inode()?,
        "{what}: netns {netns}, want {} or absent\nevent: {ev}",
        host.netns_inode()?
    );
    Ok(())
}

/// Runs `rounds` rounds from one client socket to every server and checks both sides' flows.
fn exchange(
    client: &TestHost,
    caddr: IpAddr,
    server_host: &TestHost,
    servers: &[Server],
    rounds: u64,
    agent: Agent,
) -> Result<()> {
    let (cli_pid, cport) = run_client(client, rounds, servers)?;
    let me = std::process::id();
    let py_image = image_path(&python()?)?;
    let mut ends = Vec::new();
    for s in servers {
        let hdr = headers(s.addr);
        let (req, resp) = (rounds * s.req, rounds * s.resp);
        let (req_ip, resp_ip) = (req + rounds * hdr, resp + rounds * hdr);
        let sums = |orig_first: bool| {
            vec![
                ("transport_protocol", json!("udp")),
                ("src_ip", json!(caddr.to_string())),
                ("src_port", json!(cport)),
                ("dest_ip", json!(s.addr.to_string())),
                ("dest_port", json!(s.port)),
                ("orig_bytes", json!(req)),
                ("resp_bytes", json!(resp)),
                ("orig_pkts", json!(rounds)),
                ("resp_pkts", json!(rounds)),
                ("orig_ip_bytes", json!(req_ip)),
                ("resp_ip_bytes", json!(resp_ip)),
                ("packet_count", json!(2 * rounds)),
                ("out_bytes", json!(if orig_first { req } else { resp })),
                ("in_bytes", json!(if orig_first { resp } else { req })),
                ("local_orig", json!(orig_first)),
                (
                    "network_direction",
                    json!(if orig_first { "outbound" } else { "inbound" }),
                ),
                ("ppid", json!(me)),
                ("process_name", json!("python3")),
                ("image_path", json!(py_image)),
                ("uid", json!(0)),
                ("user", json!("root")),
                ("gid", json!(0)),
                ("group", json!("root")),
            ]
        };
        let dest = (s.addr, s.port);

        // The client closes its socket: its flows end at once.
        let ev = wait_end(&agent, (caddr, cport), dest, true)?;
        let mut want = sums(true);
        want.extend([
            ("pid", json!(cli_pid)),
            ("tid", json!(cli_pid)),
            ("end_reason", json!("socket_closed")),
        ]);
        let what = format!("client flow to {dest:?}");
        check(&what, &ev, &want)?;
        check_netns(&what, &ev, client)?;
        ends.push(ev);

        // The server keeps its socket open: its flow ends when idle for IDLE_TIMEOUT.
        let ev = wait_end(&agent, (caddr, cport), dest, false)?;
        let mut want = sums(false);
        want.extend([
            ("pid", json!(s.proc.pid())),
            ("tid", json!(s.proc.pid())),
            ("end_reason", json!("idle")),
        ]);
        let what = format!("server flow on {dest:?}");
        check(&what, &ev, &want)?;
        check_netns(&what, &ev, server_host)?;
        ends.push(ev);
    }

    // Nothing else about these sockets: exactly one start and one end event per flow.
    let events = agent.stop()?;
    let ours = events.iter().filter(|e| {
        get(e, "transport_protocol") == "udp"
            && get(e, "src_ip") == caddr.to_string().as_str()
            && get(e, "src_port") == cport
    });
    let flows = by_flow(ours);
    ensure!(
        flows.len() == 2 * servers.len(),
        "want {} UDP flows from {caddr}:{cport} (one per socket and peer), got {}: {flows:#?}",
        2 * servers.len(),
        flows.len()
    );
    for (id, evs) in &flows {
        let actions: Vec<&str> = evs
            .iter()
            .map(|e| get(e, "event_action").as_str().unwrap_or("?"))
            .collect();
        ensure!(
            actions == ["start", "end"],
            "flow {id}: events {actions:?}: {evs:#?}"
        );
        ensure!(
            evs[0]["pid"] == evs[1]["pid"],
            "flow {id}: start names pid {}, end pid {}",
            evs[0]["pid"],
            evs[1]["pid"]
        );
    }
    Ok(())
}

fn request_response(v6: bool) -> Result<()> {
    setup()?;
    let (client, server) = TestHost::pair()?;
    let (caddr, saddr): (IpAddr, IpAddr) = if v6 {
        (client.ns_addr_v6().into(), server.ns_addr_v6().into())
    } else {
        (client.ns_addr_v4().into(), server.ns_addr_v4().into())
    };
    const ROUNDS: u64 = 3;
    let agent = agent(&["--udp-idle-timeout", IDLE_TIMEOUT])?;
    let servers = [start_server(
        &server,
        saddr,
        9200,
        100,
        1000,
        ROUNDS as u32,
    )?];
    exchange(&client, caddr, &server, &servers, ROUNDS, agent)
}

#[test]
fn udp_v4_request_response() -> Result<()> {
    request_response(false)
}

#[test]
fn udp_v6_request_response() -> Result<()> {
    request_response(true)
}

#[test]
fn udp_one_socket_three_peers_gives_three_flows() -> Result<()> {
    setup()?;
    let (client, server) = TestHost::pair()?;
    let (caddr, saddr) = (
        IpAddr::from(client.ns_addr_v4()),
        IpAddr::from(server.ns_addr_v4()),
    );
    const ROUNDS: u64 = 2;
    let agent = agent(&["--udp-idle-timeout", IDLE_TIMEOUT])?;
    // Different sizes per peer, so bytes cannot be credited to the wrong flow unnoticed.
    let servers = [
        start_server(&server, saddr, 9201, 11, 111, ROUNDS as u32)?,
        start_server(&server, saddr, 9202, 22, 222, ROUNDS as u32)?,
        start_server(&server, saddr, 9203, 33, 333, ROUNDS as u32)?,
    ];
    exchange(&client, caddr, &server, &servers, ROUNDS, agent)
}
