//! The start-up self-check ("loud when blind", issue 22): before the agent says it is ready it
//! makes traffic it knows all about over loopback (a TCP connection and a UDP exchange, IPv4
//! and IPv6 when `::1` exists) and runs one short-lived exec of its own binary, then reads the
//! records that come back through the real pipeline (kernel programs, ring buffer, flow
//! tracker, enricher) and compares them field by field with what it did. A hook that attached
//! but sees nothing, a counter read from the wrong offset, a process table that names the
//! wrong process: each shows as a failed check naming the field, the expected value and what
//! came back.
//!
//! The check drains the ring itself (the main loop has not started) and keeps its own flows:
//! they are the agent's traffic to itself, reported in the first stats event's `self_check`
//! section, never written to the outputs. Every other record read meanwhile goes through the
//! stages as usual and its events to the outputs.
use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    ops::RangeInclusive,
    time::{Duration, Instant},
};

use super::{kernel::KernelUdp, stages::Stages};
use crate::{
    capture::{
        drain::{drain, DrainBudget},
        records::exec_path,
        Capture, Record,
    },
    event::{FlowAction, FlowEvent, Transport},
    event::{SelfCheck, SelfCheckReport},
};

/// How long the records of the check's traffic may take to come back. The check ends as soon
/// as they are all in (4–20 ms on a host), so only a failing check waits this long; it is
/// generous because a slow machine (an emulated VM: over a second for the child's exec alone)
/// must not fail a check whose records are merely late.
const DEADLINE: Duration = Duration::from_secs(6);
/// Socket operations of the check's traffic never block longer than this.
const IO_TIMEOUT: Duration = Duration::from_secs(1);
/// Payload sizes: TCP client to server and back; UDP datagrams.
const TCP_REQUEST: usize = 100;
const TCP_RESPONSE: usize = 200;
const UDP_REQUEST: usize = 50;
const UDP_REQUESTS: u64 = 3;
const UDP_RESPONSE: usize = 80;
/// TCP segments each way of one short connection (handshake, data, FIN, ACKs): how many
/// depends on delayed and piggybacked ACKs, so a range.
const TCP_PKTS: RangeInclusive<u64> = 3..=12;
/// A fault for the tests: in debug builds only, this variable names a fault that makes the
/// check expect a wrong value (`expect_wrong_bytes`: one TCP byte more than it sent).
#[cfg(debug_assertions)]
const FAULT_ENV: &str = "FLOW_AGENT_TEST_SELF_CHECK_FAULT";

/// One flow the check made, and what its end event must say.
struct Expected {
    /// `tcp4.client`, `udp6.server`...
    name: String,
    transport: Transport,
    local: SocketAddr,
    remote: SocketAddr,
    in_bytes: u64,
    out_bytes: u64,
    in_pkts: RangeInclusive<u64>,
    out_pkts: RangeInclusive<u64>,
}

impl Expected {
    fn matches(&self, ev: &FlowEvent) -> bool {
        ev.transport == self.transport
            && ev.local.1 == self.local.port()
            && ev.remote.1 == self.remote.port()
    }
}

/// This process, as its flows must name it.
struct Me {
    pid: u32,
    ppid: u32,
    uid: u32,
    image_path: String,
}

impl Me {
    fn read() -> Self {
        Self {
            pid: std::process::id(),
            ppid: std::os::unix::process::parent_id(),
            // SAFETY: getuid(2) cannot fail and touches no memory.
            uid: unsafe { libc::getuid() },
            image_path: std::fs::read_link("/proc/self/exe")
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        }
    }
}

/// Whether a run of the check execs a child: at start-up only, never when the watchdog runs
/// it again (the agent spawns nothing once it is ready).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Exec {
    Once,
    Never,
}

/// Runs the check: traffic, exec, then the ring drained until every record came back or
/// [`DEADLINE`]. Events of flows that are not the check's go to `others`.
pub(super) fn run(
    capture: &mut Capture,
    stages: &mut Stages,
    others: &mut Vec<FlowEvent>,
    exec_mode: Exec,
) -> SelfCheckReport {
    let started = Instant::now();
    let lost_before: u64 = capture.losses().iter().sum();
    let me = Me::read();
    let mut checks = Vec::new();
    let child = (exec_mode == Exec::Once).then(|| exec_child(&me));
    let mut expected = Vec::new();
    for (tag, ip) in [
        ("4", IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ("6", IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ] {
        // IPv6 may be off on this host: then only IPv4 is checked, and the report says so.
        if tag == "6" && UdpSocket::bind((ip, 0)).is_err() {
            checks.push(check(
                "ipv6",
                true,
                "::1 available",
                "not available: skipped",
            ));
            continue;
        }
        match tcp_exchange(ip) {
            Ok(e) => expected.extend(named(e, &format!("tcp{tag}"))),
            Err(e) => checks.push(check(
                &format!("tcp{tag}.traffic"),
                false,
                "ok",
                &e.to_string(),
            )),
        }
        match udp_exchange(ip) {
            Ok(e) => expected.extend(named(e, &format!("udp{tag}"))),
            Err(e) => checks.push(check(
                &format!("udp{tag}.traffic"),
                false,
                "ok",
                &e.to_string(),
            )),
        }
    }
    apply_fault(&mut expected);

    let mut seen: Vec<Vec<FlowEvent>> = expected.iter().map(|_| Vec::new()).collect();
    let mut exec: Option<(u32, String)> = None;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut batch = Vec::new();
        drain(capture, DrainBudget::batch(), |record, capture| {
            if let Record::Exec(e) = &record {
                if e.task.ppid == me.pid
                    && child
                        .as_ref()
                        .is_some_and(|c| c.as_ref().is_ok_and(|c| c.0 == e.task.pid))
                {
                    exec = Some((
                        e.task.pid,
                        String::from_utf8_lossy(&exec_path(e)).into_owned(),
                    ));
                }
            }
            let mut udp = KernelUdp(&mut capture.udp_flows);
            stages.handle(record, &mut udp, &mut batch);
        });
        for ev in batch {
            match expected.iter().position(|x| x.matches(&ev)) {
                Some(i) => seen[i].push(ev),
                None => others.push(ev),
            }
        }
        let ended = seen
            .iter()
            .all(|evs| evs.iter().any(|e| e.action == FlowAction::End));
        let exec_done = exec.is_some() || !child.as_ref().is_some_and(|c| c.is_ok());
        if (ended && exec_done) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }

    match &child {
        None => {}
        Some(Ok((pid, path))) => {
            let got = exec.as_ref();
            checks.push(check(
                "exec.pid",
                got.is_some_and(|(p, _)| p == pid),
                &pid.to_string(),
                &got.map_or("no exec record".into(), |(p, _)| p.to_string()),
            ));
            checks.push(check(
                "exec.image_path",
                got.is_some_and(|(_, p)| p == path),
                path,
                &got.map_or("no exec record".into(), |(_, p)| p.clone()),
            ));
        }
        Some(Err(e)) => checks.push(check("exec", false, "a child ran", &e.to_string())),
    }
    for (x, evs) in expected.iter().zip(&seen) {
        verify(x, evs, &me, &mut checks);
    }
    let lost_after: u64 = capture.losses().iter().sum();
    SelfCheckReport {
        ok: checks.iter().all(|c| c.ok),
        duration_ms: started.elapsed().as_secs_f64() * 1e3,
        records_lost: lost_after.saturating_sub(lost_before),
        checks,
    }
}

fn check(name: &str, ok: bool, expected: &str, got: &str) -> SelfCheck {
    SelfCheck {
        name: name.to_string(),
        ok,
        expected: expected.to_string(),
        got: got.to_string(),
    }
}

/// Compares one flow's events with what the check did.
fn verify(x: &Expected, evs: &[FlowEvent], me: &Me, out: &mut Vec<SelfCheck>) {
    let n = &x.name;
    let actions: Vec<&str> = evs.iter().map(|e| e.action.as_str()).collect();
    let end = evs.iter().find(|e| e.action == FlowAction::End);
    let has_start = evs.iter().any(|e| e.action == FlowAction::Start);
    out.push(check(
        &format!("{n}.events"),
        has_start && end.is_some(),
        "start,end",
        &if actions.is_empty() {
            "none".into()
        } else {
            actions.join(",")
        },
    ));
    // Without its end event nothing else can be compared: the failure above says why.
    let Some(e) = end else { return };
    let mut field = |name: &str, ok: bool, expected: String, got: String| {
        out.push(check(&format!("{n}.{name}"), ok, &expected, &got));
    };
    let addr = |(ip, port): (IpAddr, u16)| SocketAddr::new(ip, port).to_string();
    field(
        "local",
        addr(e.local) == x.local.to_string(),
        x.local.to_string(),
        addr(e.local),
    );
    field(
        "remote",
        addr(e.remote) == x.remote.to_string(),
        x.remote.to_string(),
        addr(e.remote),
    );
    let c = e.counters.unwrap_or_default();
    field(
        "bytes",
        (c.in_bytes, c.out_bytes) == (x.in_bytes, x.out_bytes),
        format!("in={} out={}", x.in_bytes, x.out_bytes),
        format!("in={} out={}", c.in_bytes, c.out_bytes),
    );
    let range = |r: &RangeInclusive<u64>| {
        if r.start() == r.end() {
            r.start().to_string()
        } else {
            format!("{}..={}", r.start(), r.end())
        }
    };
    field(
        "packets",
        x.in_pkts.contains(&c.in_pkts) && x.out_pkts.contains(&c.out_pkts),
        format!("in={} out={}", range(&x.in_pkts), range(&x.out_pkts)),
        format!("in={} out={}", c.in_pkts, c.out_pkts),
    );
    let p = e.process.as_deref();
    let or_none = |v: Option<String>| v.unwrap_or_else(|| "no process".into());
    field(
        "pid",
        p.is_some_and(|p| p.pid == me.pid),
        me.pid.to_string(),
        or_none(p.map(|p| p.pid.to_string())),
    );
    field(
        "ppid",
        p.is_some_and(|p| p.ppid == me.ppid),
        me.ppid.to_string(),
        or_none(p.map(|p| p.ppid.to_string())),
    );
    field(
        "image_path",
        p.is_some_and(|p| p.image_path.as_deref() == Some(me.image_path.as_str())),
        me.image_path.clone(),
        or_none(p.map(|p| p.image_path.clone().unwrap_or_else(|| "none".into()))),
    );
    field(
        "uid",
        p.is_some_and(|p| p.uid == me.uid),
        me.uid.to_string(),
        or_none(p.map(|p| p.uid.to_string())),
    );
    if x.transport == Transport::Tcp {
        let got = format!(
            "end_reason={} conn_state={}",
            e.end_reason.unwrap_or("none"),
            e.conn_state.unwrap_or("none")
        );
        let want = "end_reason=fin conn_state=SF";
        field("state", got == want, want.into(), got);
    }
}

/// A flow each side of an exchange: (client, server).
type Pair = (Expected, Expected);

fn named((mut client, mut server): Pair, proto: &str) -> [Expected; 2] {
    client.name = format!("{proto}.client");
    server.name = format!("{proto}.server");
    [client, server]
}

/// One TCP connection over loopback, closed gracefully by both sides: the client sends
/// [`TCP_REQUEST`] bytes and shuts its side down, the server reads to the end, answers
/// [`TCP_RESPONSE`] bytes and closes, the client reads to the end and closes. One thread: the
/// kernel completes the handshake before `accept`, and the buffers hold every byte.
fn tcp_exchange(ip: IpAddr) -> std::io::Result<Pair> {
    let listener = TcpListener::bind((ip, 0))?;
    let server_addr = listener.local_addr()?;
    let mut client = TcpStream::connect_timeout(&server_addr, IO_TIMEOUT)?;
    let client_addr = client.local_addr()?;
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + IO_TIMEOUT;
    let (mut server, _) = loop {
        match listener.accept() {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => return Err(e),
        }
    };
    drop(listener);
    server.set_nonblocking(false)?;
    for s in [&client, &server] {
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
    }
    client.write_all(&[b'q'; TCP_REQUEST])?;
    client.shutdown(Shutdown::Write)?;
    let mut got = Vec::new();
    server.read_to_end(&mut got)?;
    server.write_all(&[b'r'; TCP_RESPONSE])?;
    drop(server);
    let mut answer = Vec::new();
    client.read_to_end(&mut answer)?;
    drop(client);
    if got.len() != TCP_REQUEST || answer.len() != TCP_RESPONSE {
        return Err(std::io::Error::other(format!(
            "loopback TCP exchange short: {} and {} bytes",
            got.len(),
            answer.len()
        )));
    }
    let flow = |local, remote, in_bytes: usize, out_bytes: usize| Expected {
        name: String::new(),
        transport: Transport::Tcp,
        local,
        remote,
        in_bytes: in_bytes as u64,
        out_bytes: out_bytes as u64,
        in_pkts: TCP_PKTS,
        out_pkts: TCP_PKTS,
    };
    Ok((
        flow(client_addr, server_addr, TCP_RESPONSE, TCP_REQUEST),
        flow(server_addr, client_addr, TCP_REQUEST, TCP_RESPONSE),
    ))
}

/// A UDP exchange over loopback: [`UDP_REQUESTS`] datagrams of [`UDP_REQUEST`] bytes from a
/// connected client, one answer of [`UDP_RESPONSE`] bytes; both sockets closed.
fn udp_exchange(ip: IpAddr) -> std::io::Result<Pair> {
    let server = UdpSocket::bind((ip, 0))?;
    let client = UdpSocket::bind((ip, 0))?;
    let (server_addr, client_addr) = (server.local_addr()?, client.local_addr()?);
    for s in [&client, &server] {
        s.set_read_timeout(Some(IO_TIMEOUT))?;
    }
    client.connect(server_addr)?;
    for _ in 0..UDP_REQUESTS {
        client.send(&[b'q'; UDP_REQUEST])?;
    }
    let mut buf = [0u8; 512];
    for _ in 0..UDP_REQUESTS {
        let (n, from) = server.recv_from(&mut buf)?;
        if n != UDP_REQUEST || from != client_addr {
            return Err(std::io::Error::other(format!(
                "loopback UDP exchange: {n} bytes from {from}"
            )));
        }
    }
    server.send_to(&[b'r'; UDP_RESPONSE], client_addr)?;
    let n = client.recv(&mut buf)?;
    if n != UDP_RESPONSE {
        return Err(std::io::Error::other(format!(
            "loopback UDP exchange: answer of {n} bytes"
        )));
    }
    drop((client, server));
    let request = UDP_REQUEST as u64 * UDP_REQUESTS;
    let flow = |local, remote, in_bytes, in_pkts, out_bytes, out_pkts| Expected {
        name: String::new(),
        transport: Transport::Udp,
        local,
        remote,
        in_bytes,
        out_bytes,
        in_pkts: in_pkts..=in_pkts,
        out_pkts: out_pkts..=out_pkts,
    };
    let response = UDP_RESPONSE as u64;
    Ok((
        flow(client_addr, server_addr, response, 1, request, UDP_REQUESTS),
        flow(server_addr, client_addr, request, UDP_REQUESTS, response, 1),
    ))
}

/// Runs the agent's own binary once (`flow-agent version`, output discarded, no environment):
/// its exec record must come back with the child's pid and the binary's path. Called before
/// the capabilities are dropped and before any seccomp filter, the one exception to "the agent
/// spawns nothing" (docs/security.md, promise 11). (child pid, image path).
fn exec_child(me: &Me) -> Result<(u32, String), ExecChildError> {
    let mut child = std::process::Command::new(&me.image_path)
        .arg("version")
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|source| ExecChildError::Spawn {
            path: me.image_path.clone(),
            source,
        })?;
    let pid = child.id();
    child.wait().map_err(|source| ExecChildError::Wait {
        path: me.image_path.clone(),
        source,
    })?;
    Ok((pid, me.image_path.clone()))
}

/// Why the check's child could not run.
#[derive(Debug, thiserror::Error)]
enum ExecChildError {
    #[error("running {path}: {source}")]
    Spawn {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("waiting for {path}: {source}")]
    Wait {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Test builds only: a fault named by [`FAULT_ENV`] makes the check expect a wrong value, so
/// that the tests can see a failed check end the agent. Release builds have no such variable.
fn apply_fault(expected: &mut [Expected]) {
    #[cfg(debug_assertions)]
    if std::env::var(FAULT_ENV).as_deref() == Ok("expect_wrong_bytes") {
        if let Some(x) = expected.iter_mut().find(|x| x.name == "tcp4.client") {
            x.out_bytes += 1;
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = expected;
}

/// A failed self-check ends the agent (exit status 3, as a missing hook does) unless
/// `[agent] allow_degraded`.
#[derive(Debug, thiserror::Error)]
#[error("self-check failed, the agent would be blind or wrong: {0} (set [agent] allow_degraded = true to run anyway)")]
pub struct SelfCheckFailed(pub String);

/// Logs the result (its cost too); an error when it failed and degraded running is not allowed.
pub fn report(report: &SelfCheckReport, allow_degraded: bool) -> Result<(), SelfCheckFailed> {
    if report.ok {
        log::info!(
            "self-check passed: {} checks in {:.0} ms",
            report.checks.len(),
            report.duration_ms
        );
        return Ok(());
    }
    let failures = report.describe_failures();
    if report.records_lost > 0 {
        // The check's own records may be among those lost: it cannot tell blind from full.
        log::warn!(
            "self-check inconclusive: {} kernel records were lost while it ran (ring buffer or tables too small for this host's load; the losses are counted in the stats); unverified: {failures}",
            report.records_lost
        );
        return Ok(());
    }
    if !allow_degraded {
        return Err(SelfCheckFailed(failures));
    }
    log::error!(
        "SELF-CHECK FAILED, running degraded ([agent] allow_degraded): the agent's own traffic did not come back as it was made ({:.0} ms): {failures}",
        report.duration_ms
    );
    Ok(())
}

/// `flow-agent probe --self-check`: loads the capture as `run` would, runs the check, and
/// detaches again. No outputs, no capability drop.
pub fn standalone(config: &crate::config::Config) -> anyhow::Result<SelfCheckReport> {
    use anyhow::Context;
    let mut capture = Capture::load_alone(&config.capture.to_capture_config())
        .context("starting kernel capture")?;
    let mut table = crate::flows::FlowTable::new(config.flow_table_config(), "selfcheck".into());
    if let Some(maps) = capture.tcp_detail.take() {
        table.set_tcp_detail(Box::new(maps));
    }
    let host = std::sync::Arc::new(crate::event::HostInfo::read());
    let mut enricher = crate::enrich::Enricher::new(config.enrich_config(host));
    super::kernel::seed_processes(&mut capture, &mut enricher)?;
    let mut stages = Stages::new(table, enricher);
    Ok(run(&mut capture, &mut stages, &mut Vec::new(), Exec::Once))
}
