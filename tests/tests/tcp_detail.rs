//! TCP detail: the per-packet counters the kernel keeps per socket (IP bytes, packets, flags,
//! first payload times, Zeek history), checked against a capture of the veth between two test
//! namespaces. tshark is the packet oracle; Zeek's history rules are applied to its packets
//! (wire.rs). Both flows of each connection (the connector's and the acceptor's) are checked.
//!
//! Needs root, kernel BTF, iproute2, python3, dumpcap and tshark.

mod common;
#[path = "tcp_detail/wire.rs"]
mod wire;

use anyhow::{ensure, Context, Result};
use common::*;
use flow_agent_tests::{require_tools, Agent, Spawned, TestHost};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::Duration;
use wire::{Capture, Connection};

const PORT: u16 = 9200;

/// Accepts one connection and reads N bytes, then: `fin` sends M bytes, shuts its side down
/// and closes once the client's FIN came (a graceful close); `close` sends M bytes and closes
/// at once, without waiting for the client; `rst` closes with SO_LINGER {1, 0}, so the kernel
/// aborts the connection with a RST (sent after the socket closed). Args: address, port, N, M,
/// mode. Both scripts run on one CPU (see PIN_CPU).
const SERVER: &str = r#"
import os, socket, struct, sys, time
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
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
print("got", got, flush=True)
if mode == "rst":
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
else:
    c.sendall(b"r" * m)
if mode == "fin":
    c.shutdown(socket.SHUT_WR)
    while c.recv(65536):
        pass
c.close()
print("closed", flush=True)
time.sleep(60)
"#;

/// Connects, sends N bytes, waits HOLD seconds, reads to EOF (or a reset), closes. Args:
/// address, port, N, HOLD. Prints `local PORT`, then `got M` or `reset M`.
const CLIENT: &str = r#"
import os, socket, sys, time
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
addr, port, n, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(30)
s.connect((addr, port))
print("local", s.getsockname()[1], flush=True)
s.sendall(b"q" * n)
time.sleep(hold)
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

// PIN_CPU: a veth hands each packet to the receive queue of the CPU that sent it, so segments
// sent from two CPUs (the writer's, and the one handling the peer's ACKs) can reach the receiver
// out of order, which its history rightly reads as Zeek's `T` while the capture, taken at the
// sender, shows them in order. On one CPU the receiver sees the capture's order.

/// One exchange between a client and a server namespace, captured on the client's veth.
struct Exchange {
    client: TestHost,
    server: TestHost,
    v6: bool,
    /// Bytes the client sends, the server answers with, the server's mode, the client's hold.
    request: usize,
    response: usize,
    mode: &'static str,
    hold: f64,
    /// Whether GSO stays on (super-packets in the capture).
    gso: bool,
    agent_args: &'static [&'static str],
}

/// What an exchange produced: the connector's and acceptor's events, and the capture.
struct Outcome {
    events: Vec<Value>,
    connector: Value,
    acceptor: Value,
    wire: Connection,
    packets: Vec<wire::Packet>,
    client_out: String,
}

impl Exchange {
    fn new(v6: bool) -> Result<Exchange> {
        setup()?;
        require_tools(&["tshark", "dumpcap"])?;
        let (client, server) = TestHost::pair()?;
        Ok(Exchange {
            client,
            server,
            v6,
            request: 3000,
            response: 5000,
            mode: "fin",
            hold: 0.0,
            gso: false,
            agent_args: &[],
        })
    }

    fn addrs(&self) -> (IpAddr, IpAddr) {
        if self.v6 {
            (
                self.client.ns_addr_v6().into(),
                self.server.ns_addr_v6().into(),
            )
        } else {
            (
                self.client.ns_addr_v4().into(),
                self.server.ns_addr_v4().into(),
            )
        }
    }

    fn run(&self) -> Result<Outcome> {
        if !self.gso {
            // One segment per packet, so that each capture record is one packet on the wire.
            for host in [&self.client, &self.server] {
                host.cmd("ip")
                    .args(["link", "set", "dev", host.veth(), "gso_max_segs", "1"])
                    .run()?;
            }
        }
        let (caddr, saddr) = self.addrs();
        let agent = agent(self.agent_args)?;
        let server = spawn_py(
            &self.server,
            SERVER,
            &[
                saddr.to_string(),
                PORT.to_string(),
                self.request.to_string(),
                self.response.to_string(),
                self.mode.to_string(),
            ],
        )?;
        wait_for_line(&server, "listening", Duration::from_secs(10))?;
        self.server.wait_for_tcp_listen(PORT)?;
        let capture = Capture::start(&self.client, &format!("tcp port {PORT}"))?;
        let client = spawn_py(
            &self.client,
            CLIENT,
            &[
                saddr.to_string(),
                PORT.to_string(),
                self.request.to_string(),
                self.hold.to_string(),
            ],
        )?;
        let client_out = finish(client, Duration::from_secs(60))?;
        let cport = value_after(&client_out, "local")? as u16;
        let packets = capture.stop(&self.client)?;
        let wire = wire::connection(&packets, cport);
        let end_of = |attribution: &str| {
            let want = [
                ("event_action", json!("end")),
                ("src_ip", json!(caddr.to_string())),
                ("src_port", json!(cport)),
                ("dest_ip", json!(saddr.to_string())),
                ("dest_port", json!(PORT)),
                ("attribution", json!(attribution)),
            ];
            agent
                .wait_for(|e| has(e, &want), EVENT_TIMEOUT)
                .with_context(|| format!("no {attribution} end event"))
        };
        let connector = end_of("connector")?;
        let acceptor = end_of("acceptor")?;
        let events = stop(agent, server)?;
        Ok(Outcome {
            events,
            connector,
            acceptor,
            wire,
            packets,
            client_out,
        })
    }
}

/// Every event so far (the flows' updates came before their ends). The agent is killed, not
/// stopped: on a host busy with other traffic, its orderly shutdown can take longer than the
/// test's bound, and nothing here depends on it.
fn stop(agent: Agent, server: Spawned) -> Result<Vec<Value>> {
    let events = agent.events();
    drop(agent);
    drop(server);
    Ok(events)
}

/// The per-packet fields both flows of a connection share with the capture: packets and IP
/// bytes each way, flags, history.
fn check_counts(what: &str, ev: &Value, wire: &Connection) -> Result<()> {
    let (o, r) = (&wire.orig, &wire.resp);
    check(
        what,
        ev,
        &[
            ("orig_pkts", json!(o.pkts)),
            ("resp_pkts", json!(r.pkts)),
            ("packet_count", json!(o.pkts + r.pkts)),
            ("orig_ip_bytes", json!(o.ip_bytes)),
            ("resp_ip_bytes", json!(r.ip_bytes)),
            ("orig_tcp_flags", json!(wire::flag_letters(o.flags))),
            ("resp_tcp_flags", json!(wire::flag_letters(r.flags))),
            ("tcp_flags", json!(wire::flag_letters(o.flags | r.flags))),
            ("history", json!(wire.history)),
        ],
    )
}

fn text<'a>(ev: &'a Value, key: &str) -> Result<&'a str> {
    get(ev, key)
        .as_str()
        .with_context(|| format!("{key} missing: {ev}"))
}

/// `a <= b` for event times (fixed-width RFC 3339, so text order is time order).
fn ensure_order(names: &[(&str, &Value, &str)]) -> Result<()> {
    for pair in names.windows(2) {
        let (a, b) = (text(pair[0].1, pair[0].2)?, text(pair[1].1, pair[1].2)?);
        ensure!(
            a <= b,
            "{} {} = {a} is after {} {} = {b}",
            pair[0].0,
            pair[0].2,
            pair[1].0,
            pair[1].2
        );
    }
    Ok(())
}

/// First payload times and time to first byte of both flows, against the capture.
///
/// The hooks stamp a packet when it leaves this host's TCP/IP stack (before the veth, where
/// the capture stamps it) and when it reaches the receiving socket (after the capture). So the
/// client's request leaves, then the capture sees it, then the server's socket gets it; the
/// server's response leaves, the capture sees it, the client's socket gets it. Times of both
/// flows come from the same kernel clock, so they are ordered exactly that way, and the
/// capture's time to first byte (same wall clock rate, microsecond resolution) lies between
/// the server's and the client's.
fn check_first_bytes(out: &Outcome) -> Result<()> {
    let (con, acc) = (&out.connector, &out.acceptor);
    ensure_order(&[
        ("connector", con, "start_time"),
        ("connector", con, "orig_first_byte_time"),
        ("acceptor", acc, "orig_first_byte_time"),
        ("acceptor", acc, "resp_first_byte_time"),
        ("connector", con, "resp_first_byte_time"),
        ("connector", con, "end_time"),
    ])?;
    ensure_order(&[
        ("acceptor", acc, "start_time"),
        ("acceptor", acc, "orig_first_byte_time"),
        ("acceptor", acc, "resp_first_byte_time"),
        ("acceptor", acc, "end_time"),
    ])?;
    let o = out
        .wire
        .orig
        .first_payload_us
        .context("capture: no request")?;
    let r = out
        .wire
        .resp
        .first_payload_us
        .context("capture: no response")?;
    let wire_ttfb = (r - o) as f64 / 1e6;
    let ttfb = |ev: &Value| {
        get(ev, "time_to_first_byte")
            .as_f64()
            .with_context(|| format!("time_to_first_byte missing: {ev}"))
    };
    let (client, server) = (ttfb(con)?, ttfb(acc)?);
    // The capture's microseconds: each of its two times is cut to the microsecond.
    let resolution = 1e-6;
    ensure!(
        server <= wire_ttfb + resolution && wire_ttfb <= client + resolution,
        "time to first byte: server {server} s, capture {wire_ttfb} s, client {client} s: \
         want server <= capture <= client"
    );
    for (what, ev) in [("connector", con), ("acceptor", acc)] {
        let span = micros(text(ev, "resp_first_byte_time")?)? as f64
            - micros(text(ev, "orig_first_byte_time")?)? as f64;
        let t = ttfb(ev)? * 1e6;
        ensure!(
            (t - span).abs() <= 1.0,
            "{what}: time_to_first_byte {t} us is not resp - orig first byte time ({span} us)"
        );
    }
    Ok(())
}

/// Microseconds of the day in an RFC 3339 time `...THH:MM:SS.ffffffZ` (the test spans seconds).
fn micros(t: &str) -> Result<u64> {
    let clock = t
        .split_once('T')
        .and_then(|(_, c)| c.strip_suffix('Z'))
        .with_context(|| format!("time {t:?}"))?;
    let (hms, frac) = clock.split_once('.').context("no fraction")?;
    let mut s = 0u64;
    for part in hms.split(':') {
        s = s * 60 + part.parse::<u64>()?;
    }
    Ok(s * 1_000_000 + frac.parse::<u64>()?)
}

fn request_response(v6: bool) -> Result<()> {
    let mut x = Exchange::new(v6)?;
    // The client holds the connection open across an update interval: updates carry the
    // counters so far.
    x.hold = 2.5;
    x.agent_args = &["--update-interval", "1"];
    let out = x.run()?;
    let w = &out.wire;
    ensure!(
        (w.orig.payload, w.resp.payload) == (x.request as u64, x.response as u64),
        "capture saw payload {} / {}",
        w.orig.payload,
        w.resp.payload
    );
    // What Zeek prints for a request, a response and the server's close first.
    ensure!(
        w.history.starts_with("ShAD") && w.history.contains('d') && w.history.ends_with("fF"),
        "unexpected exchange on the wire: history {}",
        w.history
    );
    check_counts("connector end", &out.connector, w)?;
    check_counts("acceptor end", &out.acceptor, w)?;
    check_first_bytes(&out)?;

    // Updates: counters so far, never more than the end's, with the same per-packet fields.
    for end in [&out.connector, &out.acceptor] {
        let id = get(end, "flow_id");
        let updates: Vec<&Value> = out
            .events
            .iter()
            .filter(|e| get(e, "flow_id") == id && get(e, "event_action") == "update")
            .collect();
        ensure!(!updates.is_empty(), "no update event for {id}");
        for u in updates {
            for key in ["orig_ip_bytes", "resp_ip_bytes", "orig_pkts", "resp_pkts"] {
                let (now, last) = (get(u, key).as_u64(), get(end, key).as_u64());
                ensure!(
                    now.is_some() && now <= last,
                    "update {key} {now:?} vs end {last:?}: {u}"
                );
            }
            check(
                "update",
                u,
                &[
                    (
                        "orig_first_byte_time",
                        get(end, "orig_first_byte_time").clone(),
                    ),
                    ("time_to_first_byte", get(end, "time_to_first_byte").clone()),
                    ("history", Value::Null),
                ],
            )?;
            ensure!(
                get(u, "tcp_flags").is_string(),
                "update without tcp_flags: {u}"
            );
        }
    }
    Ok(())
}

#[test]
fn tcp_detail_v4_request_response_matches_capture() -> Result<()> {
    request_response(false)
}

#[test]
fn tcp_detail_v6_request_response_matches_capture() -> Result<()> {
    request_response(true)
}

/// The server aborts after the request: its RST leaves after its socket closed, and is still
/// counted on its side; the client's side sees it arrive.
#[test]
fn tcp_detail_abort_counts_the_rst_sent_after_close() -> Result<()> {
    let mut x = Exchange::new(false)?;
    x.mode = "rst";
    x.response = 0;
    let out = x.run()?;
    ensure!(
        out.client_out.contains("reset"),
        "client was not reset: {}",
        out.client_out
    );
    let w = &out.wire;
    ensure!(
        w.resp.flags & wire::RST != 0 && w.history.ends_with('r'),
        "no RST from the server on the wire: history {}",
        w.history
    );
    check_counts("connector end", &out.connector, w)?;
    check_counts("acceptor end", &out.acceptor, w)?;
    for ev in [&out.connector, &out.acceptor] {
        check(
            "reset",
            ev,
            &[
                ("end_reason", json!("rst")),
                ("time_to_first_byte", Value::Null),
            ],
        )?;
    }
    Ok(())
}

/// A server that closes without waiting for the client's FIN leaves its socket once its own FIN
/// is acknowledged: the kernel hands the connection to a TIME_WAIT mini-socket, and ends the
/// flow. The client's FIN and the server's ACK of it, which that mini-socket handles, are not
/// in the server's flow (docs/events.md, TCP detail); the client's flow has every packet.
#[test]
fn tcp_detail_orphaned_close_ends_before_the_peers_fin() -> Result<()> {
    let mut x = Exchange::new(false)?;
    x.mode = "close";
    x.hold = 1.0;
    let out = x.run()?;
    check_counts("connector end", &out.connector, &out.wire)?;
    // The capture without its last two packets: the client's FIN, the server's final ACK.
    let n = out.packets.len();
    let (fin, ack) = (&out.packets[n - 2], &out.packets[n - 1]);
    ensure!(
        fin.flags & wire::FIN != 0 && fin.dport == PORT && ack.sport == PORT && ack.len == 0,
        "capture does not end with the client's FIN and its ACK: {:?}",
        &out.packets[n - 2..]
    );
    let cport = fin.sport;
    let served = wire::connection(&out.packets[..n - 2], cport);
    check_counts("acceptor end", &out.acceptor, &served)?;
    Ok(())
}

/// With GSO on, the capture shows super-packets of up to 64 KB; the agent counts the packets
/// and IP bytes the wire carries once they are cut into MSS-sized segments.
#[test]
fn tcp_detail_counts_gso_super_packets_as_segments() -> Result<()> {
    let mut x = Exchange::new(false)?;
    x.gso = true;
    x.request = 1 << 20;
    x.response = 100;
    x.mode = "fin";
    let out = x.run()?;
    let w = &out.wire;
    ensure!(
        w.orig.records < w.orig.pkts && w.orig.payload == x.request as u64,
        "the capture should hold super-packets and the whole request: {w:?}"
    );
    check_counts("connector end", &out.connector, w)?;
    check_counts("acceptor end", &out.acceptor, w)?;
    Ok(())
}
