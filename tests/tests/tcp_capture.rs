//! TCP flows between two test namespaces, checked field by field against what the test knows:
//! the processes it spawned, the bytes they exchanged, and a packet capture of the veth.
//!
//! Needs root, kernel BTF, iproute2, python3 and tshark (`apt-get install -y tshark`).

mod common;
#[path = "tcp_capture/oracle.rs"]
mod oracle;

use anyhow::{ensure, Context, Result};
use common::*;
use flow_agent_tests::{require_tools, Agent, Spawned, TestHost};
use oracle::{acceptor_end, directions, Capture, Direction};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::Duration;

const PORT: u16 = 9100;
/// Client → server payload and server → client payload: several segments each.
const REQ: usize = 5000;
const RESP: usize = 7000;

/// Accepts one connection, reads exactly N bytes, then either sends M bytes and closes
/// (`fin`) or closes with SO_LINGER {1, 0}, which sends a RST (`rst`).
/// Args: bind address, port, N, M, mode. Stays alive afterwards so its pid stays valid.
const SERVER: &str = r#"
import socket, struct, sys, time
addr, port, n, m, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
ls = socket.socket(fam, socket.SOCK_STREAM)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((addr, port))
ls.listen(16)
print("listening", flush=True)
c, peer = ls.accept()
got = 0
while got < n:
    b = c.recv(n - got)
    if not b:
        break
    got += len(b)
print("accepted", peer[1], "got", got, flush=True)
if mode == "rst":
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
else:
    c.sendall(b"r" * m)
c.close()
print("closed", flush=True)
time.sleep(120)
"#;

/// Connects, sends N bytes, reads to EOF (or RST), closes. Args: address, port, N, connect
/// timeout in seconds (0: the kernel's). Prints `local PORT` then `got M` / `reset M`, or
/// `connect_error NAME ERRNO` when connect() fails.
const CLIENT: &str = r#"
import socket, sys
addr, port, n, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
if timeout > 0:
    s.settimeout(timeout)
try:
    s.connect((addr, port))
except OSError as e:
    print("connect_error", type(e).__name__, e.errno, flush=True)
    s.close()
    sys.exit(0)
s.settimeout(30)
print("local", s.getsockname()[1], flush=True)
s.sendall(b"q" * n)
got = 0
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += len(b)
    print("got", got, flush=True)
except ConnectionResetError:
    print("reset", got, flush=True)
s.close()
"#;

fn server_args(addr: IpAddr, n: usize, m: usize, mode: &str) -> Vec<String> {
    vec![
        addr.to_string(),
        PORT.to_string(),
        n.to_string(),
        m.to_string(),
        mode.to_string(),
    ]
}

fn client_args(addr: IpAddr, port: u16, n: usize, timeout: f64) -> Vec<String> {
    vec![
        addr.to_string(),
        port.to_string(),
        n.to_string(),
        timeout.to_string(),
    ]
}

/// Starts the server and waits until it listens.
fn start_server(host: &TestHost, addr: IpAddr, n: usize, m: usize, mode: &str) -> Result<Spawned> {
    let server = spawn_py(host, SERVER, &server_args(addr, n, m, mode))?;
    wait_for_line(&server, "listening", Duration::from_secs(10))?;
    host.wait_for_tcp_listen(PORT)?;
    Ok(server)
}

/// One segment per packet on the veth: without GSO/TSO a single capture record can be a
/// 64 KB super-packet while the kernel counts the MSS-sized segments it stands for.
fn one_segment_per_packet(host: &TestHost) -> Result<()> {
    host.cmd("ip")
        .args(["link", "set", "dev", host.veth(), "gso_max_segs", "1"])
        .run()?;
    Ok(())
}

/// `history` is `want`, but for Zeek's `T`/`t`: present, wherever it came, exactly when the
/// capture shows that side resending payload.
fn check_history(ev: &Value, want: &str, orig: &Direction, resp: &Direction) -> Result<()> {
    let history = get(ev, "history").as_str().unwrap_or_default();
    let rest: String = history
        .chars()
        .filter(|c| !matches!(c, 'T' | 't'))
        .collect();
    for (side, letter) in [(orig, 'T'), (resp, 't')] {
        ensure!(
            history.contains(letter) == (side.payload_retransmits > 0),
            "history {history:?} and {} payload segments resent ({letter})",
            side.payload_retransmits
        );
    }
    ensure!(rest == want, "history {history:?}, want {want:?}");
    Ok(())
}

/// Every event of the flow whose end event is `end`: exactly one start and one end.
fn start_and_end(events: &[Value], end: &Value) -> Result<Value> {
    let id = get(end, "flow_id");
    let flow: Vec<&Value> = events.iter().filter(|e| get(e, "flow_id") == id).collect();
    let starts: Vec<&&Value> = flow
        .iter()
        .filter(|e| get(e, "event_action") == "start")
        .collect();
    let ends = flow.iter().filter(|e| is_end(e)).count();
    ensure!(
        starts.len() == 1 && ends == 1,
        "flow {id}: want one start and one end event, got {} starts and {ends} ends: {flow:#?}",
        starts.len()
    );
    Ok((*starts[0]).clone())
}

/// Waits for the end event of the flow with this tuple and attribution.
fn wait_end(
    agent: &Agent,
    src: (IpAddr, u16),
    dest: (IpAddr, u16),
    attribution: &str,
) -> Result<Value> {
    let want = [
        ("event_action", json!("end")),
        ("src_ip", json!(src.0.to_string())),
        ("src_port", json!(src.1)),
        ("dest_ip", json!(dest.0.to_string())),
        ("dest_port", json!(dest.1)),
        ("attribution", json!(attribution)),
    ];
    agent
        .wait_for(|e| has(e, &want), EVENT_TIMEOUT)
        .with_context(|| format!("no {attribution} end event for {src:?} -> {dest:?}"))
}

/// One exchange between two namespaces, checked field by field against the capture; `detail`:
/// with the per-packet TCP detail tier, else with the counts the socket keeps.
fn exchange(v6: bool, detail: bool) -> Result<()> {
    setup()?;
    require_tools(&["tshark", "dumpcap"])?;
    let (client, server) = TestHost::pair()?;
    one_segment_per_packet(&client)?;
    one_segment_per_packet(&server)?;
    let (caddr, saddr): (IpAddr, IpAddr) = if v6 {
        (client.ns_addr_v6().into(), server.ns_addr_v6().into())
    } else {
        (client.ns_addr_v4().into(), server.ns_addr_v4().into())
    };
    let agent = agent(&["--tcp-detail", if detail { "on" } else { "off" }])?;
    let srv = start_server(&server, saddr, REQ, RESP, "fin")?;
    let srv_pid = srv.pid();
    let srv_image = exe_of(srv_pid)?;
    let capture = Capture::start(&client, &format!("tcp port {PORT}"))?;

    let cli = spawn_py(&client, CLIENT, &client_args(saddr, PORT, REQ, 0.0))?;
    let cli_pid = cli.pid();
    let out = finish(cli, Duration::from_secs(30))?;
    let cport = value_after(&out, "local")? as u16;
    ensure!(
        value_after(&out, "got")? == RESP as u64,
        "client output {out:?}"
    );
    let segments = capture.stop(&client, cport)?;
    let (orig, resp) = directions(&segments);
    // What the server's socket saw of it, and Zeek's state for that.
    let served = acceptor_end(&segments);
    let acceptor_state = if served < segments.len() { "S3" } else { "SF" };
    let (served_orig, served_resp) = directions(&segments[..served]);
    // The capture itself must agree with what the programs exchanged.
    ensure!(
        (orig.payload, resp.payload) == (REQ as u64, RESP as u64),
        "capture saw payload {orig:?} / {resp:?}"
    );

    let con = wait_end(&agent, (caddr, cport), (saddr, PORT), "connector")?;
    let acc = wait_end(&agent, (caddr, cport), (saddr, PORT), "acceptor")?;
    let events = agent.stop()?;

    let me = std::process::id();
    let cgroup = cgroup_id_of(me)?;
    let py_image = image_path(&python()?)?;
    let py_exe = py_image.rsplit('/').next().unwrap_or_default().to_string();
    // Without the detail tier the accepting socket's counters begin when it is made: a SYN
    // or SYN-ACK the handshake resent is not in them (docs/events.md, `orig_pkts`).
    let resent = |d: &Direction| if detail { 0 } else { d.handshake_retransmits };
    let common = |pid: u32, image: &str, wire: (&Direction, &Direction), retransmits: u64| {
        let (orig_pkts, resp_pkts) = (wire.0.pkts, wire.1.pkts);
        let mut fields = vec![
            ("transport_protocol", json!("tcp")),
            ("src_ip", json!(caddr.to_string())),
            ("src_port", json!(cport)),
            ("dest_ip", json!(saddr.to_string())),
            ("dest_port", json!(PORT)),
            ("start_observed", json!(true)),
            ("end_reason", json!("fin")),
            ("orig_bytes", json!(REQ)),
            ("resp_bytes", json!(RESP)),
            ("orig_pkts", json!(orig_pkts)),
            ("resp_pkts", json!(resp_pkts)),
            ("packet_count", json!(orig_pkts + resp_pkts)),
            // What this side resent: the capture's count.
            ("retransmits", json!(retransmits)),
            ("pid", json!(pid)),
            ("tid", json!(pid)),
            // `ip netns exec` exec()s the program: its parent is this test process.
            ("ppid", json!(me)),
            ("process_name", json!("python3")),
            ("image_path", json!(image)),
            ("exe", json!(py_exe)),
            ("image_deleted", json!(false)),
            ("uid", json!(0)),
            ("user", json!("root")),
            ("gid", json!(0)),
            ("group", json!("root")),
            ("cgroup_id", json!(cgroup)),
        ];
        if detail {
            fields.extend([
                ("orig_ip_bytes", json!(wire.0.ip_bytes)),
                ("resp_ip_bytes", json!(wire.1.ip_bytes)),
            ]);
        }
        fields
    };
    // Without the detail tier IP bytes and flags are never estimated.
    let no_packet_fields = |what: &str, ev: &Value| -> Result<()> {
        for field in ["orig_ip_bytes", "resp_ip_bytes", "tcp_flags"] {
            ensure!(
                detail == ev.get(field).is_some(),
                "{what}: {field} with TCP detail {detail}: {ev:#}"
            );
        }
        Ok(())
    };

    let mut want = common(cli_pid, &py_image, (&orig, &resp), orig.retransmits);
    want.extend([
        ("conn_state", json!("SF")),
        ("attribution", json!("connector")),
        ("network_direction", json!("outbound")),
        ("local_orig", json!(true)),
        ("local_resp", json!(false)),
        ("out_bytes", json!(REQ)),
        ("in_bytes", json!(RESP)),
        ("netns", json!(client.netns_inode()?)),
    ]);
    check("connector end", &con, &want)?;
    if detail {
        // From the packets, as Zeek prints it: the server ACKs the request before it answers,
        // and closes first.
        check_history(&con, "ShADadfF", &orig, &resp)?;
    }
    no_packet_fields("connector end", &con)?;
    let start = start_and_end(&events, &con)?;
    check(
        "connector start",
        &start,
        &[
            ("pid", json!(cli_pid)),
            ("attribution", json!("connector")),
            ("src_port", json!(cport)),
        ],
    )?;

    let (mut served_orig, mut served_resp) = (served_orig, served_resp);
    served_orig.pkts -= resent(&served_orig);
    served_resp.pkts -= resent(&served_resp);
    let mut want = common(
        srv_pid,
        &srv_image,
        (&served_orig, &served_resp),
        served_resp.retransmits,
    );
    want.extend([
        ("conn_state", json!(acceptor_state)),
        ("attribution", json!("acceptor")),
        ("network_direction", json!("inbound")),
        ("local_orig", json!(false)),
        ("local_resp", json!(true)),
        ("in_bytes", json!(REQ)),
        ("out_bytes", json!(RESP)),
        ("netns", json!(server.netns_inode()?)),
    ]);
    check("acceptor end", &acc, &want)?;
    no_packet_fields("acceptor end", &acc)?;
    let start = start_and_end(&events, &acc)?;
    check(
        "acceptor start",
        &start,
        &[("pid", json!(srv_pid)), ("attribution", json!("acceptor"))],
    )?;
    drop(srv);
    Ok(())
}

#[test]
fn tcp_v4_exchange_is_attributed_and_counted() -> Result<()> {
    exchange(false, true)
}

#[test]
fn tcp_v6_exchange_is_attributed_and_counted() -> Result<()> {
    exchange(true, true)
}

#[test]
fn tcp_v4_exchange_without_tcp_detail_is_counted_from_the_socket() -> Result<()> {
    exchange(false, false)
}

#[test]
fn tcp_v6_exchange_without_tcp_detail_is_counted_from_the_socket() -> Result<()> {
    exchange(true, false)
}

/// The only flow to `dest`: exactly one flow id, with one start and one end event.
fn only_flow_to(events: &[Value], dest: (IpAddr, u16)) -> Result<Value> {
    let to_dest: Vec<&Value> = events
        .iter()
        .filter(|e| {
            get(e, "dest_ip") == dest.0.to_string().as_str() && get(e, "dest_port") == dest.1
        })
        .collect();
    let flows = by_flow(to_dest.iter().copied());
    ensure!(
        flows.len() == 1,
        "want exactly one flow to {dest:?}, got {}: {flows:#?}",
        flows.len()
    );
    let end = to_dest.iter().find(|e| is_end(e)).context("no end event")?;
    start_and_end(events, end)?;
    Ok((*end).clone())
}

/// A client whose connect() fails, the single flow the agent reports for it, and what a
/// capture on the client's veth saw: (packets to `dest`, packets from `dest`).
fn failed_connect(
    client: &TestHost,
    dest: (IpAddr, u16),
    timeout: f64,
    want_error: &str,
) -> Result<(u32, Value, Direction, Direction)> {
    require_tools(&["tshark", "dumpcap"])?;
    let agent = agent(&[])?;
    let capture = Capture::start(client, &format!("tcp port {}", dest.1))?;
    let cli = spawn_py(client, CLIENT, &client_args(dest.0, dest.1, 10, timeout))?;
    let pid = cli.pid();
    let out = finish(cli, Duration::from_secs(60))?;
    ensure!(
        out.trim() == want_error,
        "client printed {out:?}, want {want_error:?}"
    );
    let (from_dest, to_dest) = directions(&capture.stop(client, dest.1)?);
    let want = [
        ("event_action", json!("end")),
        ("dest_ip", json!(dest.0.to_string())),
        ("dest_port", json!(dest.1)),
    ];
    agent.wait_for(|e| has(e, &want), EVENT_TIMEOUT)?;
    let events = agent.stop()?;
    Ok((pid, only_flow_to(&events, dest)?, to_dest, from_dest))
}

/// Fields every failed connect shares; packet counts come from the capture.
fn failed_flow_fields(
    client: &TestHost,
    pid: u32,
    orig: Direction,
    resp: Direction,
) -> Result<Vec<(&'static str, Value)>> {
    Ok(vec![
        ("transport_protocol", json!("tcp")),
        ("src_ip", json!(client.ns_addr_v4().to_string())),
        ("attribution", json!("connector")),
        ("local_orig", json!(true)),
        ("pid", json!(pid)),
        ("ppid", json!(std::process::id())),
        ("process_name", json!("python3")),
        ("netns", json!(client.netns_inode()?)),
        ("in_bytes", json!(0)),
        ("out_bytes", json!(0)),
        ("orig_pkts", json!(orig.pkts)),
        ("resp_pkts", json!(resp.pkts)),
    ])
}

#[test]
fn tcp_refused_connect() -> Result<()> {
    setup()?;
    let (client, server) = TestHost::pair()?;
    // Nothing listens on this port in the server namespace: its kernel answers the SYN with RST.
    let dest = (IpAddr::from(server.ns_addr_v4()), 9101);
    let want_err = "connect_error ConnectionRefusedError 111";
    let (pid, end, orig, resp) = failed_connect(&client, dest, 0.0, want_err)?;
    ensure!(
        (orig.pkts, resp.pkts) == (1, 1),
        "capture: want one SYN and one RST, saw {orig:?} / {resp:?}"
    );
    let mut want = failed_flow_fields(&client, pid, orig, resp)?;
    want.extend([
        ("end_reason", json!("refused")),
        ("conn_state", json!("REJ")),
        ("history", json!("Sr")),
    ]);
    check("refused connect", &end, &want)
}

#[test]
fn tcp_connect_abandoned_by_client() -> Result<()> {
    setup()?;
    let client = TestHost::new()?;
    let dest = (IpAddr::from(client.blackhole_addr_v4()), 9102);
    // The client gives up after 0.5 s and closes the socket while it is still in SYN_SENT,
    // long before the kernel's SYN retries (about 127 s by default) run out: the socket
    // closes with no error set, so the flow was aborted by its owner, not timed out.
    let want_err = "connect_error TimeoutError None";
    let (pid, end, orig, resp) = failed_connect(&client, dest, 0.5, want_err)?;
    ensure!(
        orig.pkts >= 1 && resp.pkts == 0,
        "capture: {orig:?} / {resp:?}"
    );
    let mut want = failed_flow_fields(&client, pid, orig, resp)?;
    want.extend([
        ("end_reason", json!("aborted")),
        ("conn_state", json!("S0")),
        ("history", json!("S")),
    ]);
    check("abandoned connect", &end, &want)
}

#[test]
fn tcp_connect_timed_out_by_kernel() -> Result<()> {
    setup()?;
    let client = TestHost::new()?;
    // One SYN retry in this namespace only: connect() itself fails with ETIMEDOUT after a
    // few seconds, and the kernel sets that error on the socket before closing it.
    client
        .cmd("sh")
        .args(["-c", "echo 1 > /proc/sys/net/ipv4/tcp_syn_retries"])
        .run()?;
    let dest = (IpAddr::from(client.blackhole_addr_v4()), 9103);
    let want_err = "connect_error TimeoutError 110";
    let (pid, end, orig, resp) = failed_connect(&client, dest, 0.0, want_err)?;
    ensure!(
        orig.pkts >= 2 && resp.pkts == 0,
        "capture: want the SYN and its retransmissions, saw {orig:?} / {resp:?}"
    );
    let mut want = failed_flow_fields(&client, pid, orig, resp)?;
    want.extend([
        ("end_reason", json!("timeout")),
        ("conn_state", json!("S0")),
        ("history", json!("S")),
    ]);
    check("timed-out connect", &end, &want)
}

#[test]
fn tcp_reset_by_server_mid_stream() -> Result<()> {
    setup()?;
    let (client, server) = TestHost::pair()?;
    let (caddr, saddr) = (
        IpAddr::from(client.ns_addr_v4()),
        IpAddr::from(server.ns_addr_v4()),
    );
    const SENT: usize = 300;
    let agent = agent(&[])?;
    let srv = start_server(&server, saddr, SENT, 0, "rst")?;
    let srv_pid = srv.pid();
    let cli = spawn_py(&client, CLIENT, &client_args(saddr, PORT, SENT, 0.0))?;
    let cli_pid = cli.pid();
    let out = finish(cli, Duration::from_secs(30))?;
    let cport = value_after(&out, "local")? as u16;
    ensure!(
        value_after(&out, "reset")? == 0,
        "client was not reset: {out:?}"
    );
    let con = wait_end(&agent, (caddr, cport), (saddr, PORT), "connector")?;
    let acc = wait_end(&agent, (caddr, cport), (saddr, PORT), "acceptor")?;
    agent.stop()?;
    // Both sides agree: the responder (server) reset the connection.
    check(
        "client side of the reset",
        &con,
        &[
            ("pid", json!(cli_pid)),
            ("end_reason", json!("rst")),
            ("conn_state", json!("RSTR")),
            ("out_bytes", json!(SENT)),
            ("in_bytes", json!(0)),
            ("netns", json!(client.netns_inode()?)),
        ],
    )?;
    check(
        "server side of the reset",
        &acc,
        &[
            ("pid", json!(srv_pid)),
            ("end_reason", json!("rst")),
            ("conn_state", json!("RSTR")),
            ("in_bytes", json!(SENT)),
            ("out_bytes", json!(0)),
            ("netns", json!(server.netns_inode()?)),
        ],
    )?;
    drop(srv);
    Ok(())
}
