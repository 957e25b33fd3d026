//! Every output format against its specification, on a real agent.
//!
//! One agent runs with five outputs (native on stdout; ecs, ocsf, zeek and sysmon to files, as
//! one stdout output per agent is allowed; see [`CONFIG`])
//! while curl and python exchange TCP (HTTP) and UDP over IPv4 and IPv6 on the loopback of a
//! test namespace, a connection stays open long enough for updates, curl makes an HTTPS request
//! with SNI to `openssl s_server` (the TLS fields of every format: versions, cipher, offered
//! suites, JA3/JA4), and a copy of curl with a hostile name and hostile arguments connects too, and a noisy client makes more connections
//! than `[rate_limit]` admits, so that its `rate_limited` summaries are checked too (native, ECS
//! and OCSF records; none in Zeek or Sysmon), and a process resolves a name through a resolver
//! on the namespace's loopback with `[enrich] dns_events` on, so that its `dns_query` event is
//! checked too (native, ECS, OCSF DNS Activity, Sysmon event 22; none in Zeek). Every record of every format is then
//! checked against a table written from that format's specification (encoders/*_spec.rs),
//! paired with the native event it was encoded from, and compared value by value; the test
//! flows' records must carry the real pids and ports.
//!
//! The test waits for the test flows' native events, stops the agent (which ends every flow it
//! still knows) and takes all of stdout: each format's records then pair 1:1, in order, with
//! the native events they encode.
//!
//! Needs root, kernel BTF, iproute2, curl, openssl and python3.

mod common;
#[path = "encoders/ecs_spec.rs"]
mod ecs_spec;
#[path = "encoders/fixture.rs"]
mod fixture;
#[path = "encoders/ocsf_spec.rs"]
mod ocsf_spec;
#[path = "encoders/sysmon_spec.rs"]
mod sysmon_spec;
#[path = "encoders/times.rs"]
mod times;
#[path = "encoders/zeek_spec.rs"]
mod zeek_spec;

use anyhow::{anyhow, bail, ensure, Context, Result};
use common::*;
use flow_agent_tests::{
    describe_bound, find_tool, require_tools, slowed, Agent, TempDir, TestHost,
};
use serde_json::{json, Value};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const HTTP4: u16 = 18080;
const HTTP6: u16 = 18086;
const UDP4: u16 = 19999;
const UDP6: u16 = 19996;
/// The noisy client's server, and how many connections it makes.
const NOISY_PORT: u16 = 18090;
const NOISY: u32 = 40;
/// Bound for the test flows' events: generous, because the agent encodes every flow of a busy
/// host five times over.
const WAIT: Duration = Duration::from_secs(60);

/// Native on stdout (the test follows it); the other formats in files of `{dir}`.
const CONFIG: &str = r#"
[health]
stats_interval = 1

# Small enough that the noisy client (NOISY connections) and its server are limited, large
# enough for every other test process: their flows are all reported.
[rate_limit]
enabled = true
per_process_rate = 1
per_process_burst = 10
summary_interval = 1

[enrich]
dns_events = true

[[outputs]]
name = "native"
format = "native"
[outputs.stdout]

[[outputs]]
name = "ecs"
format = "ecs"
[outputs.file]
path = "{dir}/ecs.log"

[[outputs]]
name = "ocsf"
format = "ocsf"
[outputs.file]
path = "{dir}/ocsf.log"

[[outputs]]
name = "zeek"
format = "zeek"
[outputs.file]
path = "{dir}/zeek.log"

[[outputs]]
name = "sysmon"
format = "sysmon"
[outputs.file]
path = "{dir}/sysmon.log"
"#;

/// The executable's name for the hostile run (13 bytes, so `comm` keeps all of it): XML and
/// JSON metacharacters, a newline, control characters and a byte that is not UTF-8.
const HOSTILE_NAME: &[u8] = b"x<y&z\"q'\n\x01\x7f\xff>";
/// A hostile argument: an attempt to close the Data element and inject another.
const HOSTILE_ARG: &[u8] =
    b"</Data><Data Name=\"Image\">/bin/evil</Data>\r\n\t\x1b[31m\xfe&amp;]]>";

/// Answers one datagram with `m` bytes, then closes its socket and exits. Args: addr, port, m.
const UDP_SERVER: &str = r#"
import socket, sys
addr, port, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
print("ready", flush=True)
s.settimeout(30)
data, peer = s.recvfrom(65535)
s.sendto(b"r" * m, peer)
s.close()
"#;

/// Sends `n` bytes, waits for the answer, prints `local PORT`, closes. Args: addr, port, n.
const UDP_CLIENT: &str = r#"
import socket, sys
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
s.sendto(b"q" * n, (addr, port))
s.recvfrom(65535)
print("local", s.getsockname()[1], flush=True)
s.close()
"#;

/// A resolver on 127.0.0.1:53 of the test namespace: answers one query with a CNAME to
/// `cdn.flowtest` (TTL 30) and its A record 127.0.0.9 (TTL 20), then exits.
const DNS_SERVER: &str = r#"
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
print("ready", flush=True)
s.settimeout(30)
q, peer = s.recvfrom(512)
question = q[12:]
cdn = b"\x03cdn\x08flowtest\x00"
r = q[:2] + struct.pack(">HHHHH", 0x8180, 1, 2, 0, 0) + question
r += b"\xc0\x0c" + struct.pack(">HHIH", 5, 1, 30, len(cdn)) + cdn
r += cdn + struct.pack(">HHIH", 1, 1, 20, 4) + bytes([127, 0, 0, 9])
s.sendto(r, peer)
s.close()
"#;

/// Asks 127.0.0.1:53 for the A record of www.flowtest (message id 0x2345), then sends a
/// datagram to the address it got (127.0.0.9:NAMED_PORT: a flow to a name the host resolved),
/// prints "done".
const DNS_CLIENT: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
s.connect(("127.0.0.1", 53))
s.send(struct.pack(">HHHHHH", 0x2345, 0x0100, 1, 0, 0, 0) + b"\x03www\x08flowtest\x00\x00\x01\x00\x01")
s.recv(512)
s.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(b"named", ("127.0.0.9", int(sys.argv[1])))
u.close()
print("done", flush=True)
"#;
/// Where the DNS client sends to the address it resolved.
const NAMED_PORT: u16 = 19993;
/// `openssl s_server`'s port, and the name curl asks it for (its SNI).
const TLS_PORT: u16 = 18443;
const TLS_NAME: &str = "tls.flowtest";

/// Accepts and closes connections until killed.
const ACCEPT_CLOSE: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(4096)
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.close()
"#;

/// Makes N connections one after the other. Args: port, N.
const NOISY_CLIENT: &str = r#"
import socket, sys
for _ in range(int(sys.argv[2])):
    c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
    c.close()
"#;

/// Holds a TCP connection open for a while (update events), then closes it.
const TCP_HOLD: &str = r#"
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print("local", c.getsockname()[1], flush=True)
time.sleep(float(sys.argv[3]))
c.close()
"#;

/// The processes of the test flows.
#[derive(Debug)]
pub struct Ours {
    pub netns: u64,
    pub curl4: u32,
    pub curl6: u32,
    pub server4: u32,
    pub server6: u32,
    pub hold: u32,
    pub hostile: u32,
    pub udp4_client: u32,
    pub udp4_server: u32,
    pub udp6_client: u32,
    pub udp6_server: u32,
    /// The rate-limited client.
    pub noisy: u32,
    /// The process that resolved www.flowtest (a `dns_query` event).
    pub dns_client: u32,
    /// curl's TLS connection to `openssl s_server` (the TLS fields of every format).
    pub tls_client: u32,
}

/// What one agent run printed, sorted by format.
#[derive(Debug)]
pub struct Run {
    pub agent_pid: u32,
    /// Native flow and stats events, in output order.
    pub native: Vec<Value>,
    pub ecs: Vec<Value>,
    pub ocsf: Vec<Value>,
    pub zeek: Vec<Value>,
    /// The Zeek records as printed (their field order).
    pub zeek_lines: Vec<String>,
    /// Raw lines.
    pub sysmon: Vec<String>,
    pub ours: Ours,
}

impl Run {
    pub fn native_flows(&self) -> impl Iterator<Item = &Value> {
        self.native.iter().filter(|e| !is_stats(e))
    }

    /// Whether the run has a `rate_limited` summary of the noisy client (so that every format's
    /// rendering of one is checked).
    pub fn has_summaries(&self) -> bool {
        self.native
            .iter()
            .any(|e| e["event_action"] == "rate_limited" && e["pid"] == self.ours.noisy)
    }

    /// The native flow events of one of our processes.
    /// The native `dns_query` event of the test's DNS client.
    pub fn dns_of_ours(&self) -> Result<&Value> {
        self.native
            .iter()
            .find(|e| e["event_action"] == "dns_query" && e["pid"] == self.ours.dns_client)
            .context("no native dns_query event of the DNS client")
    }

    pub fn flow_of(&self, pid: u32, proto: &str, local_orig: bool) -> Result<Vec<&Value>> {
        let evs: Vec<&Value> = self
            .native_flows()
            .filter(|e| {
                e["pid"] == pid
                    && e["transport_protocol"] == proto
                    && e["local_orig"] == local_orig
                    && e["netns"].as_u64().is_none_or(|n| n == self.ours.netns)
            })
            .collect();
        ensure!(
            !evs.is_empty(),
            "no native {proto} event of pid {pid} (local_orig {local_orig})"
        );
        Ok(evs)
    }
}

pub fn is_stats(e: &Value) -> bool {
    e["event_action"] == "stats"
}

/// The one agent run all tests here share (each test checks one format).
fn run() -> Result<&'static Run> {
    static RUN: OnceLock<Result<Run>> = OnceLock::new();
    RUN.get_or_init(capture)
        .as_ref()
        .map_err(|e| anyhow!("the shared agent run failed: {e:#}"))
}

fn capture() -> Result<Run> {
    setup()?;
    require_tools(&["curl", "env"])?;
    let dir = TempDir::new("flow-encoders")?;
    let config = dir.write(
        "config.toml",
        CONFIG.replace("{dir}", &dir.path().display().to_string()),
    )?;
    let host = TestHost::new()?;
    let agent = agent(&[
        "--config",
        &config.display().to_string(),
        "--update-interval",
        "2",
        "--udp-idle-timeout",
        "5",
    ])?;
    let www = dir.path().join("www");
    std::fs::create_dir(&www)?;
    std::fs::write(www.join("index.html"), "hello from the encoders test\n")?;
    let py = python()?.display().to_string();
    let http = |bind: &str, port: u16| {
        host.cmd(&py)
            .args(["-m", "http.server", &port.to_string(), "--bind", bind])
            .current_dir(&www)
            .spawn()
    };
    let server4 = http("127.0.0.1", HTTP4)?;
    let server6 = http("::1", HTTP6)?;
    host.wait_for_tcp_listen(HTTP4)?;
    host.wait_for_tcp_listen(HTTP6)?;

    let curl = |url: &str| -> Result<u32> {
        let p = host
            .cmd("curl")
            .args([
                "-sS",
                "-g",
                "--noproxy",
                "*",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                url,
            ])
            .spawn()?;
        let pid = p.pid();
        finish(p, Duration::from_secs(20))?;
        Ok(pid)
    };
    let curl4 = curl(&format!("http://127.0.0.1:{HTTP4}/"))?;
    let curl6 = curl(&format!("http://[::1]:{HTTP6}/"))?;

    let hold = spawn_py(
        &host,
        TCP_HOLD,
        &["127.0.0.1".into(), HTTP4.to_string(), "5".into()],
    )?;
    let hold_pid = hold.pid();

    let hostile = run_hostile_curl(&host, &dir)?;
    let tls_client = run_tls_curl(&host, &dir)?;

    let mut udp = Vec::new();
    for (addr, port) in [("127.0.0.1", UDP4), ("::1", UDP6)] {
        let server = spawn_py(
            &host,
            UDP_SERVER,
            &[addr.into(), port.to_string(), "300".into()],
        )?;
        wait_for_line(&server, "ready", Duration::from_secs(10))?;
        let client = spawn_py(
            &host,
            UDP_CLIENT,
            &[addr.into(), port.to_string(), "100".into()],
        )?;
        let client_pid = client.pid();
        let server_pid = server.pid();
        finish(client, Duration::from_secs(20))?;
        finish(server, Duration::from_secs(20))?;
        udp.push((client_pid, server_pid));
    }
    finish(hold, Duration::from_secs(20))?;

    let dns_server = spawn_py(&host, DNS_SERVER, &[])?;
    wait_for_line(&dns_server, "ready", Duration::from_secs(10))?;
    let dns_client = spawn_py(&host, DNS_CLIENT, &[NAMED_PORT.to_string()])?;
    let dns_client_pid = dns_client.pid();
    finish(dns_client, Duration::from_secs(20))?;
    finish(dns_server, Duration::from_secs(20))?;

    // Last, so that its server's and its own limits take no token from the flows above.
    let noisy_server = spawn_py(&host, ACCEPT_CLOSE, &[NOISY_PORT.to_string()])?;
    wait_for_line(&noisy_server, "ready", Duration::from_secs(10))?;
    let noisy = spawn_py(
        &host,
        NOISY_CLIENT,
        &[NOISY_PORT.to_string(), NOISY.to_string()],
    )?;
    let noisy_pid = noisy.pid();
    finish(noisy, Duration::from_secs(60))?;

    let ours = Ours {
        netns: host.netns_inode()?,
        curl4,
        curl6,
        server4: server4.pid(),
        server6: server6.pid(),
        hold: hold_pid,
        hostile,
        udp4_client: udp[0].0,
        udp4_server: udp[0].1,
        udp6_client: udp[1].0,
        udp6_server: udp[1].1,
        noisy: noisy_pid,
        dns_client: dns_client_pid,
        tls_client,
    };
    // Every test flow ended, the held one had an update, and a stats report came.
    let ended = |pid: u32, proto: &'static str, local_orig: bool| {
        move |e: &Value| {
            e["event_action"] == "end"
                && e["pid"] == pid
                && e["transport_protocol"] == proto
                && e["local_orig"] == local_orig
        }
    };
    let mut tail = Tail::new(&agent);
    for (pid, proto, local_orig, n) in [
        (ours.curl4, "tcp", true, 1),
        (ours.curl6, "tcp", true, 1),
        (ours.hold, "tcp", true, 1),
        (ours.hostile, "tcp", true, 1),
        (ours.tls_client, "tcp", true, 1),
        (ours.udp4_client, "udp", true, 1),
        (ours.udp6_client, "udp", true, 1),
        (ours.udp4_server, "udp", false, 1),
        (ours.udp6_server, "udp", false, 1),
        // curl's, the held connection's and the hostile curl's.
        (ours.server4, "tcp", false, 3),
        (ours.server6, "tcp", false, 1),
    ] {
        tail.wait_for(
            &format!("{n} {proto} end(s) of pid {pid}"),
            ended(pid, proto, local_orig),
            n,
        )?;
    }
    tail.wait_for(
        "an update of the held connection",
        |e| e["event_action"] == "update" && e["pid"] == ours.hold,
        1,
    )?;
    tail.wait_for("a stats event", is_stats, 1)?;
    tail.wait_for(
        "the dns_query event of the DNS client",
        |e| e["event_action"] == "dns_query" && e["pid"] == ours.dns_client,
        1,
    )?;
    tail.wait_for(
        "the start of the DNS client's flow to the name it resolved",
        |e| {
            e["event_action"] == "start"
                && e["pid"] == ours.dns_client
                && e["dest_port"] == NAMED_PORT
        },
        1,
    )?;
    tail.wait_for(
        "a rate_limited summary of the noisy client",
        |e| e["event_action"] == "rate_limited" && e["pid"] == ours.noisy,
        1,
    )?;
    let agent_pid = agent.pid();
    drop(server4);
    drop(server6);
    drop(noisy_server);
    let mut lines = agent.stop_lines()?;
    // Each format's file holds its records in the order they were encoded.
    for format in ["ecs", "ocsf", "zeek", "sysmon"] {
        let path = dir.path().join(format!("{format}.log"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the {format} output {}", path.display()))?;
        lines.extend(text.lines().map(str::to_string));
    }
    sort_lines(agent_pid, &lines, ours)
}

/// Follows the agent's stdout, parsing only the native records: with five outputs and a busy
/// host the harness's `wait_for` (a rescan of every parsed record per line) falls behind.
struct Tail<'a> {
    agent: &'a Agent,
    /// Stdout lines read so far.
    seen: usize,
    native: Vec<Value>,
}

impl<'a> Tail<'a> {
    fn new(agent: &'a Agent) -> Self {
        Tail {
            agent,
            seen: 0,
            native: Vec::new(),
        }
    }

    /// Waits (up to [`WAIT`], stretched by `FLOW_TEST_SLOW`) for `n` native events matching
    /// `pred`.
    fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool, n: usize) -> Result<()> {
        let deadline = Instant::now() + slowed(WAIT);
        loop {
            for line in self.agent.stdout_lines_from(self.seen) {
                self.seen += 1;
                // Native records, and only they, start with their `timestamp` field.
                if line.starts_with("{\"timestamp\":") {
                    self.native.push(serde_json::from_str(&line)?);
                }
            }
            if self.native.iter().filter(|e| pred(e)).count() >= n {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "waited {} for {what}: {} native events among {} lines, {} matching; the last \
                 native event has timestamp {}\nstderr:\n{}",
                describe_bound(WAIT),
                self.native.len(),
                self.seen,
                self.native.iter().filter(|e| pred(e)).count(),
                self.native
                    .last()
                    .map(|e| e["timestamp"].clone())
                    .unwrap_or_default(),
                self.agent.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A copy of curl named [`HOSTILE_NAME`], run with [`HOSTILE_ARG`] in its command line;
/// returns its pid. `env` execs it, so the path needs no UTF-8.
fn run_hostile_curl(host: &TestHost, dir: &TempDir) -> Result<u32> {
    let exe = dir.path().join(OsStr::from_bytes(HOSTILE_NAME));
    std::fs::copy(find_tool("curl")?, &exe).context("copying curl")?;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755))?;
    let p = host
        .cmd("env")
        .arg(&exe)
        .args([
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
        ])
        .arg("--data-binary")
        .arg(OsStr::from_bytes(HOSTILE_ARG))
        .arg(format!("http://127.0.0.1:{HTTP4}/"))
        .spawn()?;
    let pid = p.pid();
    // http.server answers the POST with 501; curl still exits 0 without --fail.
    finish(p, Duration::from_secs(20))?;
    Ok(pid)
}

/// curl's HTTPS request (with SNI [`TLS_NAME`]) to `openssl s_server` on a fresh self-signed
/// certificate; returns curl's pid once the server has closed.
fn run_tls_curl(host: &TestHost, dir: &TempDir) -> Result<u32> {
    require_tools(&["openssl"])?;
    let (key, cert) = (dir.path().join("tls.key"), dir.path().join("tls.crt"));
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", &format!("/CN={TLS_NAME}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()?;
    ensure!(out.status.success(), "openssl req: {out:?}");
    let server = host
        .cmd("openssl")
        .args(["s_server", "-quiet", "-www", "-accept"])
        .arg(format!("127.0.0.1:{TLS_PORT}"))
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .spawn()?;
    host.wait_for_tcp_listen(TLS_PORT)?;
    let p = host
        .cmd("curl")
        .args([
            "-sS",
            "-k",
            "--noproxy",
            "*",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
        ])
        .arg("--resolve")
        .arg(format!("{TLS_NAME}:{TLS_PORT}:127.0.0.1"))
        .arg(format!("https://{TLS_NAME}:{TLS_PORT}/"))
        .spawn()?;
    let pid = p.pid();
    finish(p, Duration::from_secs(20))?;
    drop(server);
    Ok(pid)
}

/// Sorts stdout lines by format.
fn sort_lines(agent_pid: u32, lines: &[String], ours: Ours) -> Result<Run> {
    let mut run = Run {
        agent_pid,
        native: Vec::new(),
        ecs: Vec::new(),
        ocsf: Vec::new(),
        zeek: Vec::new(),
        zeek_lines: Vec::new(),
        sysmon: Vec::new(),
        ours,
    };
    for line in lines.iter().filter(|l| !l.is_empty()) {
        if line.starts_with('<') {
            run.sysmon.push(line.clone());
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("stdout line is neither XML nor JSON: {line:?}"))?;
        if v.get("ecs").is_some() {
            run.ecs.push(v);
        } else if v.get("class_uid").is_some() {
            run.ocsf.push(v);
        } else if v.get("id.orig_h").is_some() {
            run.zeek.push(v);
            run.zeek_lines.push(line.clone());
        } else if v.get("event_action").is_some() {
            run.native.push(v);
        } else {
            bail!("stdout line of no known format: {line}");
        }
    }
    Ok(run)
}

/// The native end of curl's TLS connection, with the TLS facts the agent read from it.
fn tls_end(run: &Run) -> Result<&Value> {
    let end = run
        .flow_of(run.ours.tls_client, "tcp", true)?
        .into_iter()
        .find(|e| is_end(e))
        .context("no end of the TLS flow")?;
    ensure!(
        end["application_protocol"] == "tls"
            && end["tls_server_name"] == TLS_NAME
            && end["tls_client_ciphers"]
                .as_array()
                .is_some_and(|c| c.len() > 1)
            && end["ja4"].is_string(),
        "native TLS facts of curl's connection: {end}"
    );
    Ok(end)
}

/// Up to 25 problems, one per line, with the count.
pub fn report(what: &str, problems: &[String]) -> Result<()> {
    let shown: Vec<&String> = problems.iter().take(25).collect();
    ensure!(
        problems.is_empty(),
        "{what}: {} problem(s):\n{}",
        problems.len(),
        shown
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}

/// Pairs each record with the native event it encodes: same length, same order.
pub fn pair<'a, T>(
    what: &str,
    records: &'a [T],
    natives: Vec<&'a Value>,
) -> Result<Vec<(&'a T, &'a Value)>> {
    ensure!(
        records.len() == natives.len(),
        "{what}: {} records for {} native events they encode",
        records.len(),
        natives.len()
    );
    Ok(records.iter().zip(natives).collect())
}

#[test]
fn ecs_records_follow_ecs_and_carry_the_native_values() -> Result<()> {
    let run = run()?;
    let natives: Vec<&Value> = run.native.iter().collect();
    let mut problems = Vec::new();
    for (i, (doc, native)) in pair("ecs", &run.ecs, natives)?.into_iter().enumerate() {
        let mut p = ecs_spec::check_document(doc);
        p.extend(ecs_spec::check_values(doc, native));
        problems.extend(
            p.into_iter()
                .map(|p| format!("ecs record {i}: {p}\n  {doc}")),
        );
    }
    report("ECS records", &problems)?;
    ensure!(
        run.ecs.iter().any(|d| d["event"]["kind"] == "metric"),
        "no ECS metric document for the stats events"
    );
    ensure!(
        run.ecs.iter().any(
            |d| d["event"]["action"] == "rate_limited" && d["process"]["pid"] == run.ours.noisy
        ),
        "no ECS rate_limited document of the noisy client"
    );
    let dns = run.dns_of_ours()?;
    check_our_dns(dns, &run.ours)?;
    let tls = tls_end(run)?;
    ensure!(
        run.ecs
            .iter()
            .any(|d| d["flow_agent"]["flow_id"] == tls["flow_id"]
                && d["tls"]["client"]["server_name"] == TLS_NAME
                && d["tls"]["client"]["supported_ciphers"]
                    .as_array()
                    .is_some_and(|c| c.len() > 1)),
        "no ECS document of the TLS flow with its SNI and offered suites"
    );
    ensure!(
        run.ecs.iter().any(|d| d["event"]["action"] == "dns_query"
            && d["process"]["pid"] == run.ours.dns_client
            && d["dns"]["question"]["name"] == "www.flowtest"
            && d["dns"]["resolved_ip"] == serde_json::json!(["127.0.0.9"])),
        "no ECS dns_query document of the DNS client"
    );
    let o = &run.ours;
    for (pid, proto, local_orig) in [
        (o.curl4, "tcp", true),
        (o.curl6, "tcp", true),
        (o.server4, "tcp", false),
        (o.udp6_client, "udp", true),
        (o.udp4_server, "udp", false),
    ] {
        for native in run.flow_of(pid, proto, local_orig)? {
            let doc = run
                .ecs
                .iter()
                .find(|d| {
                    d["flow_agent"]["flow_id"] == native["flow_id"]
                        && d["@timestamp"] == native["timestamp"]
                })
                .context("no ECS document for a test flow event")?;
            ensure!(doc["process"]["pid"] == pid, "pid {pid}: {doc}");
            ensure!(
                doc["network"]["transport"] == proto,
                "transport {proto}: {doc}"
            );
        }
    }
    Ok(())
}

#[test]
fn ocsf_records_follow_network_activity_and_carry_the_native_values() -> Result<()> {
    let run = run()?;
    let natives: Vec<&Value> = run.native_flows().collect();
    let mut problems = Vec::new();
    for (i, (ev, native)) in pair("ocsf", &run.ocsf, natives)?.into_iter().enumerate() {
        let mut p = ocsf_spec::check_event(ev);
        p.extend(ocsf_spec::check_values(ev, native));
        problems.extend(
            p.into_iter()
                .map(|p| format!("ocsf record {i}: {p}\n  {ev}")),
        );
    }
    report("OCSF records", &problems)?;
    ensure!(
        run.ocsf.iter().any(|e| e["activity_id"] == 99
            && e["unmapped"]["event_action"] == "rate_limited"
            && e["actor"]["process"]["pid"] == run.ours.noisy),
        "no OCSF rate_limited event of the noisy client"
    );
    ensure!(
        run.ocsf.iter().any(|e| e["class_uid"] == 4003
            && e["actor"]["process"]["pid"] == run.ours.dns_client
            && e["query"]["hostname"] == "www.flowtest"
            && e["rcode"] == "NoError"),
        "no OCSF DNS Activity event of the DNS client"
    );
    let tls = tls_end(run)?;
    ensure!(
        run.ocsf
            .iter()
            .any(|e| e["metadata"]["correlation_uid"] == tls["flow_id"]
                && e["tls"]["sni"] == TLS_NAME
                && e["tls"]["client_ciphers"]
                    .as_array()
                    .is_some_and(|c| c.len() > 1)),
        "no OCSF event of the TLS flow with its SNI and offered suites"
    );
    let o = &run.ours;
    for (pid, proto, local_orig) in [
        (o.curl4, "tcp", true),
        (o.server6, "tcp", false),
        (o.udp4_client, "udp", true),
        (o.udp6_server, "udp", false),
    ] {
        for native in run.flow_of(pid, proto, local_orig)? {
            let ev = run
                .ocsf
                .iter()
                .find(|e| {
                    e["metadata"]["correlation_uid"] == native["flow_id"]
                        && e["metadata"]["original_time"] == native["timestamp"]
                })
                .context("no OCSF event for a test flow event")?;
            ensure!(ev["actor"]["process"]["pid"] == pid, "pid {pid}: {ev}");
            ensure!(
                ev["connection_info"]["protocol_name"] == proto,
                "protocol {proto}: {ev}"
            );
        }
    }
    Ok(())
}

#[test]
fn zeek_records_follow_conn_log_and_carry_the_native_values() -> Result<()> {
    let run = run()?;
    let ends: Vec<&Value> = run.native_flows().filter(|e| is_end(e)).collect();
    let mut problems = Vec::new();
    for (i, (rec, native)) in pair("zeek", &run.zeek, ends)?.into_iter().enumerate() {
        let mut p = zeek_spec::check_record(rec, &run.zeek_lines[i]);
        p.extend(zeek_spec::check_values(rec, native));
        problems.extend(
            p.into_iter()
                .map(|p| format!("zeek record {i}: {p}\n  {rec}")),
        );
    }
    report("Zeek records", &problems)?;
    // Summaries have no conn.log record (the pairing with ends alone proves it too).
    ensure!(
        run.has_summaries() && !run.zeek_lines.iter().any(|l| l.contains("rate_limited")),
        "conn.log holds a rate_limited summary, or the run has none"
    );
    // Nor dns_query events (dns.log is another log).
    run.dns_of_ours()?;
    ensure!(
        !run.zeek_lines.iter().any(|l| l.contains("dns_query")),
        "conn.log holds a dns_query event"
    );
    // The server's side of curl's connection: the originator is curl (the peer), not the host.
    let o = &run.ours;
    let client_end = run
        .flow_of(o.curl4, "tcp", true)?
        .into_iter()
        .find(|e| is_end(e))
        .context("curl's end")?;
    let server_end = run
        .flow_of(o.server4, "tcp", false)?
        .into_iter()
        .find(|e| is_end(e) && e["src_port"] == client_end["src_port"])
        .context("the server side of curl's connection")?;
    for end in [client_end, server_end] {
        let rec = run
            .zeek
            .iter()
            .find(|r| r["uid"] == zeek_spec::zeek_uid(end["flow_id"].as_str().unwrap_or_default()))
            .context("no conn.log record for curl's connection")?;
        ensure!(
            rec["id.orig_p"] == client_end["src_port"]
                && rec["id.resp_p"] == HTTP4
                && rec["orig_bytes"] == client_end["out_bytes"]
                && rec["resp_bytes"] == client_end["in_bytes"]
                && rec["conn_state"] == "SF",
            "conn.log record of curl's connection, from {}: {rec}",
            end["network_direction"]
        );
    }
    Ok(())
}

#[test]
fn sysmon_records_are_event_3_and_carry_the_native_values() -> Result<()> {
    let run = run()?;
    // Flow starts are event 3, dns_query events event 22.
    let starts: Vec<&Value> = run
        .native_flows()
        .filter(|e| e["event_action"] == "start" || e["event_action"] == "dns_query")
        .collect();
    let mut problems = Vec::new();
    let mut parsed = Vec::new();
    for (i, (line, native)) in pair("sysmon", &run.sysmon, starts)?.into_iter().enumerate() {
        match sysmon_spec::parse(line) {
            Ok(rec) => {
                // SAFETY: geteuid has no preconditions.
                let euid = unsafe { libc::geteuid() };
                let mut p = sysmon_spec::check_record(&rec, run.agent_pid, i as u64 + 1, euid);
                p.extend(sysmon_spec::check_values(&rec, native));
                problems.extend(
                    p.into_iter()
                        .map(|p| format!("sysmon record {i}: {p}\n  {line}")),
                );
                parsed.push(rec);
            }
            Err(e) => problems.push(format!("sysmon record {i}: {e:#}\n  {line}")),
        }
    }
    report("Sysmon records", &problems)?;
    // Summaries have no Sysmon event (the pairing with starts alone proves it too).
    ensure!(
        run.has_summaries() && !run.sysmon.iter().any(|l| l.contains("rate_limited")),
        "Sysmon output holds a rate_limited summary, or the run has none"
    );
    let o = &run.ours;
    let dns_pid = o.dns_client.to_string();
    ensure!(
        parsed.iter().any(|r| r.data("ProcessId") == dns_pid
            && r.data("QueryName") == "www.flowtest"
            && r.data("QueryStatus") == "0"
            && r.data("QueryResults") == "type:  5 cdn.flowtest;::ffff:127.0.0.9;"),
        "no Sysmon event 22 of the DNS client"
    );
    for (pid, proto, initiated) in [
        (o.curl4, "tcp", "true"),
        (o.curl6, "tcp", "true"),
        (o.server4, "tcp", "false"),
        (o.udp4_client, "udp", "true"),
        (o.udp6_server, "udp", "false"),
    ] {
        let pid = pid.to_string();
        ensure!(
            parsed.iter().any(|r| r.data("ProcessId") == pid
                && r.data("Protocol") == proto
                && r.data("Initiated") == initiated),
            "no Sysmon event 3 for pid {pid} ({proto}, Initiated {initiated})"
        );
    }
    Ok(())
}

/// The hostile process's strings reach every format intact (or, in XML, with the characters
/// XML cannot carry replaced) and never break a record or add a field.
#[test]
fn hostile_process_strings_stay_data_in_every_format() -> Result<()> {
    let run = run()?;
    let natives = run.flow_of(run.ours.hostile, "tcp", true)?;
    let start = natives
        .iter()
        .find(|e| e["event_action"] == "start")
        .context("the hostile process's start")?;
    let name = start["exe"].as_str().context("exe")?;
    let cmd = start["command_line"].as_str().context("command_line")?;
    let image = start["image_path"].as_str().context("image_path")?;
    // The native event carries what the process did: values that are not UTF-8 in bash's
    // ANSI-C quoting, byte for byte (docs/events.md, "Bytes that are not UTF-8").
    ensure!(
        name == r#"$'x<y&z"q\'\n\x01\x7f\xff>'"#,
        "the native event lost the hostile name: {start}"
    );
    ensure!(
        cmd.contains(r#"$'</Data><Data Name="Image">/bin/evil</Data>\r\n\t\x1b[31m\xfe&amp;]]>'"#),
        "the native event lost the hostile argument: {cmd:?}"
    );
    for native in &natives {
        let doc = run
            .ecs
            .iter()
            .find(|d| {
                d["flow_agent"]["flow_id"] == native["flow_id"]
                    && d["@timestamp"] == native["timestamp"]
            })
            .context("ECS document of the hostile flow")?;
        check(
            "ECS document of the hostile process",
            &doc["process"],
            &[
                ("name", json!(name)),
                ("executable", json!(image)),
                ("command_line", json!(cmd)),
                (
                    "thread",
                    json!({"id": native["tid"], "name": native["process_name"]}),
                ),
            ],
        )?;
        let ev = run
            .ocsf
            .iter()
            .find(|e| {
                e["metadata"]["correlation_uid"] == native["flow_id"]
                    && e["metadata"]["original_time"] == native["timestamp"]
            })
            .context("OCSF event of the hostile flow")?;
        let p = &ev["actor"]["process"];
        ensure!(
            p["name"] == name && p["cmd_line"] == cmd && p["file"]["path"] == image,
            "OCSF process of the hostile flow: {p}"
        );
    }
    let end = natives.iter().find(|e| is_end(e)).context("hostile end")?;
    ensure!(
        run.zeek
            .iter()
            .any(|r| r["uid"] == zeek_spec::zeek_uid(end["flow_id"].as_str().unwrap_or_default())),
        "no conn.log record of the hostile flow"
    );
    let rec = run
        .sysmon
        .iter()
        .filter_map(|l| sysmon_spec::parse(l).ok())
        .find(|r| r.data("ProcessId") == run.ours.hostile.to_string())
        .context("no well-formed Sysmon record of the hostile process")?;
    ensure!(
        rec.data("Image") == sysmon_spec::xml_text(image),
        "Sysmon Image {:?}, want {:?}",
        rec.data("Image"),
        sysmon_spec::xml_text(image)
    );
    Ok(())
}

/// A flow to a name the host resolved carries the name in every format that has a place for
/// it: native `dest_fqdn`, ECS `destination.domain` and `related.hosts`, OCSF
/// `dst_endpoint.hostname` and `domain`, Sysmon `DestinationHostname` (conn.log has none).
#[test]
fn resolved_names_reach_every_format() -> Result<()> {
    let run = run()?;
    let pid = run.ours.dns_client;
    let natives: Vec<&Value> = run
        .native_flows()
        .filter(|e| e["pid"] == pid && e["dest_port"] == NAMED_PORT)
        .collect();
    ensure!(
        !natives.is_empty(),
        "no native event of the flow to the resolved name"
    );
    for native in natives {
        ensure!(
            native["dest_ip"] == "127.0.0.9"
                && native["dest_fqdn"] == "www.flowtest"
                && native["dest_hostname"] == "www"
                && native["dns_chain"] == json!(["www.flowtest", "cdn.flowtest"]),
            "native names: {native}"
        );
        let same_event =
            |id: &Value, time: &Value| *id == native["flow_id"] && *time == native["timestamp"];
        let doc = run
            .ecs
            .iter()
            .find(|d| same_event(&d["flow_agent"]["flow_id"], &d["@timestamp"]))
            .context("no ECS document of the named flow")?;
        ensure!(
            doc["destination"]["domain"] == "www.flowtest"
                && doc["source"]["domain"].is_string()
                && doc["related"]["hosts"]
                    .as_array()
                    .is_some_and(|h| h.contains(&json!("www.flowtest"))),
            "ECS names: {doc}"
        );
        let ev = run
            .ocsf
            .iter()
            .find(|e| {
                same_event(
                    &e["metadata"]["correlation_uid"],
                    &e["metadata"]["original_time"],
                )
            })
            .context("no OCSF event of the named flow")?;
        ensure!(
            ev["dst_endpoint"]["hostname"] == "www.flowtest"
                && ev["dst_endpoint"]["domain"] == "flowtest"
                && ev["src_endpoint"]["hostname"].is_string(),
            "OCSF names: {ev}"
        );
    }
    let (pid, port) = (pid.to_string(), NAMED_PORT.to_string());
    let sysmon: Vec<_> = run
        .sysmon
        .iter()
        .map(|l| sysmon_spec::parse(l))
        .collect::<Result<_>>()?;
    let rec = sysmon
        .iter()
        .find(|r| r.data("ProcessId") == pid && r.data("DestinationPort") == port)
        .context("no Sysmon event 3 of the named flow")?;
    ensure!(
        rec.data("DestinationHostname") == "www.flowtest" && rec.data("SourceHostname") != "-",
        "Sysmon names: {rec:?}"
    );
    Ok(())
}

/// The samples in docs/formats.md are real records: each follows its format's specification.
#[test]
fn docs_samples_follow_the_specs() -> Result<()> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/formats.md");
    let md =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let (mut section, mut block, mut counts) = (String::new(), None::<String>, [0; 4]);
    let mut problems = Vec::new();
    for line in md.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            section = h.trim().to_string();
            continue;
        }
        match (&mut block, line.trim_start().starts_with("```")) {
            (None, true) => block = Some(String::new()),
            (Some(b), true) => {
                let text = b.trim().to_string();
                block = None;
                let records: Vec<String> = if text.starts_with("{\n") || text.contains("\n  ") {
                    vec![text]
                } else {
                    text.lines().map(str::to_string).collect()
                };
                for r in records
                    .iter()
                    .filter(|r| r.starts_with('{') || r.starts_with('<'))
                {
                    let mut p = match section.as_str() {
                        "ecs" => {
                            counts[0] += 1;
                            ecs_spec::check_document(&serde_json::from_str(r)?)
                        }
                        "ocsf" => {
                            counts[1] += 1;
                            ocsf_spec::check_event(&serde_json::from_str(r)?)
                        }
                        "zeek" => {
                            counts[2] += 1;
                            zeek_spec::check_record(&serde_json::from_str(r)?, r)
                        }
                        "sysmon" if r.starts_with('<') => {
                            counts[3] += 1;
                            let rec = sysmon_spec::parse(r)?;
                            let num = |e: &str, a: Option<&str>| -> u64 {
                                let el = rec.system(e);
                                let v = match a {
                                    Some(a) => el.and_then(|el| el.attr(a)),
                                    None => el.map(|el| el.text.as_str()),
                                };
                                v.and_then(|v| v.parse().ok()).unwrap_or(u64::MAX)
                            };
                            let (pid, id, uid) = (
                                num("Execution", Some("ProcessID")),
                                num("EventRecordID", None),
                                num("Security", Some("UserId")),
                            );
                            sysmon_spec::check_record(&rec, pid as u32, id, uid as u32)
                        }
                        _ => Vec::new(),
                    };
                    problems.extend(p.drain(..).map(|p| format!("{section} sample: {p}")));
                }
            }
            (Some(b), false) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, false) => {}
        }
    }
    report("docs/formats.md samples", &problems)?;
    ensure!(
        counts.iter().all(|n| *n > 0),
        "docs/formats.md lacks samples: ecs, ocsf, zeek, sysmon have {counts:?}"
    );
    Ok(())
}

/// The native `dns_query` event of the test's resolution says what happened.
fn check_our_dns(ev: &Value, ours: &Ours) -> Result<()> {
    let want = serde_json::json!({
        "query_name": "www.flowtest", "query_type": "A", "transaction_id": 0x2345,
        "response_code": "NOERROR", "client_ip": "127.0.0.1", "resolver_ip": "127.0.0.1",
        "resolver_port": 53, "transport_protocol": "udp", "pid": ours.dns_client,
        "answers": [
            {"name": "www.flowtest", "type": "CNAME", "ttl": 30, "data": "cdn.flowtest"},
            {"name": "cdn.flowtest", "type": "A", "ttl": 20, "data": "127.0.0.9"}
        ],
        "resolved_ips": ["127.0.0.9"],
    });
    for (k, v) in want.as_object().context("object")? {
        ensure!(&ev[k] == v, "{k}: want {v}: {ev}");
    }
    Ok(())
}
