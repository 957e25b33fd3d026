//! The watchdog for silence (docs/health.md, issue 22): capture is broken for real while the
//! agent runs (its cgroup programs, which make every UDP record, detached through the
//! kernel's own interface, `bpf(2)` BPF_LINK_DETACH on the agent's links) while UDP traffic goes on; within its interval
//! the watchdog logs an error naming the check, counts it in stats events and metrics, and
//! runs the self-check again, whose UDP checks fail.
//!
//! Needs root and kernel BTF.

mod common;

use anyhow::{bail, ensure, Context, Result};
use common::*;
use flow_agent_tests::{slowed, TempDir};
use serde_json::Value;
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

/// `[health] watchdog_interval` of the test's agent.
const INTERVAL_S: u64 = 3;

/// Attach types (enum bpf_attach_type) of the cgroup programs that make UDP records: the
/// per-packet ingress and egress programs (new flows), inet sock create/release, inet4/6
/// connect, udp4/6 sendmsg and recvmsg.
const UDP_ATTACH_TYPES: [u32; 10] = [0, 1, 2, 34, 10, 11, 14, 15, 19, 20];
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
const BPF_LINK_DETACH: libc::c_long = 34;

/// Link ids of the cgroup links process `pid` holds whose attach type is one of `types`, as
/// its fdinfo shows them.
fn cgroup_links(pid: u32, types: &[u32]) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let Ok(text) = std::fs::read_to_string(entry?.path()) else {
            continue;
        };
        let field = |name: &str| -> Option<&str> {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        if field("link_type") != Some("cgroup") {
            continue;
        }
        let attach: Option<u32> = field("attach_type").and_then(|v| v.parse().ok());
        if attach.is_some_and(|t| types.contains(&t)) {
            ids.push(field("link_id").context("link_id")?.parse()?);
        }
    }
    Ok(ids)
}

/// Detaches BPF link `id` from its hook (the link object lives on, its program no longer runs).
fn detach_link(id: u32) -> Result<()> {
    let attr: [u32; 3] = [id, 0, 0];
    // SAFETY: bpf(2) with a pointer to an initialised attribute buffer and its size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_GET_FD_BY_ID,
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd < 0 {
        bail!(
            "BPF_LINK_GET_FD_BY_ID {id}: {}",
            std::io::Error::last_os_error()
        );
    }
    let attr: [u32; 1] = [fd as u32];
    // SAFETY: as above; the descriptor is ours and closed right after.
    let rc = unsafe {
        let rc = libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_DETACH,
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        );
        libc::close(fd as i32);
        rc
    };
    if rc != 0 {
        bail!("BPF_LINK_DETACH {id}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// One datagram from a new socket to `to`: a new UDP flow of this process. Its source port.
fn datagram(to: &UdpSocket) -> Result<u16> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    s.send_to(b"watchdog", to.local_addr()?)?;
    let mut buf = [0u8; 16];
    to.recv_from(&mut buf)?;
    Ok(s.local_addr()?.port())
}

fn u64_at(v: &Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0)
}

#[test]
fn detached_udp_programs_are_reported_by_the_watchdog_naming_the_check() -> Result<()> {
    setup()?;
    let dir = TempDir::new("watchdog")?;
    let config = dir.write(
        "agent.toml",
        format!(
            "[health]\nstats_interval = 1\nmetrics_listen = \"\"\nwatchdog_interval = {INTERVAL_S}\n\n\
             [[outputs]]\nname = \"events\"\n[outputs.stdout]\n"
        ),
    )?;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600))?;
    let agent = agent(&["--config", &config.display().to_string()])?;
    let receiver = UdpSocket::bind("127.0.0.1:0")?;
    receiver.set_read_timeout(Some(Duration::from_secs(2)))?;
    let me = std::process::id();
    let ours = |port: u16| {
        move |e: &Value| {
            e["transport_protocol"] == "udp"
                && e["src_port"] == port
                && e["pid"] == me
                && e["event_action"] == "start"
        }
    };

    // Capture works: a datagram of this test becomes a flow of this process.
    let before = datagram(&receiver)?;
    agent.wait_for(ours(before), EVENT_TIMEOUT)?;
    let links = cgroup_links(agent.pid(), &UDP_ATTACH_TYPES)?;
    ensure!(
        links.len() == UDP_ATTACH_TYPES.len(),
        "the agent holds {} UDP cgroup links, want {}: {links:?}",
        links.len(),
        UDP_ATTACH_TYPES.len()
    );
    for id in &links {
        detach_link(*id)?;
    }
    let detached = Instant::now();
    let at_detach = agent.event_count();

    // UDP traffic goes on; the watchdog must say so within two intervals (the one running at
    // the detach, then a whole one) plus the self-check it runs again.
    let bound = slowed(Duration::from_secs(2 * INTERVAL_S + 5));
    let mut after = Vec::new();
    let silence = loop {
        after.push(datagram(&receiver)?);
        if let Some(line) = agent
            .stderr()
            .lines()
            .find(|l| l.contains("watchdog: check udp failed"))
        {
            break line.to_string();
        }
        if detached.elapsed() > bound {
            bail!(
                "no watchdog report {:?} after the UDP programs were detached:\n{}",
                detached.elapsed(),
                agent.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("{:?} after the detach: {silence}", detached.elapsed());
    ensure!(
        silence.contains("level=error") && silence.contains("UDP datagrams"),
        "{silence}"
    );

    // Counted in the stats, with the self-check run again: its UDP checks fail, TCP's pass.
    let stats = agent.wait_for(
        |e| {
            e["event_action"] == "stats"
                && u64_at(e, &["watchdog", "udp_silences"]) >= 1
                && e.get("self_check").is_some()
        },
        EVENT_TIMEOUT,
    )?;
    let w = &stats["watchdog"];
    ensure!(
        u64_at(w, &["self_check_reruns"]) >= 1 && u64_at(w, &["self_check_reruns_failed"]) >= 1,
        "{stats}"
    );
    // The families still attached are not silent, unless the host's load (other tests) made
    // the kernel lose records, which the watchdog then reports too.
    let lost: u64 = stats["kernel_losses"]
        .as_object()
        .map_or(0, |l| l.values().filter_map(Value::as_u64).sum());
    let others = ["tcp_silences", "process_silences", "exec_silences"].map(|k| u64_at(w, &[k]));
    ensure!(lost > 0 || others == [0, 0, 0], "{stats}");
    let checks = stats["self_check"]["checks"]
        .as_array()
        .context("self_check.checks")?;
    let check = |name: &str| checks.iter().find(|c| c["name"] == name).cloned();
    let udp = check("udp4.client.events").context("no udp4.client.events check")?;
    ensure!(
        udp["ok"] == false && udp["got"] == "none",
        "udp4.client.events: {udp}"
    );
    let tcp = check("tcp4.client.events").context("no tcp4.client.events check")?;
    ensure!(tcp["ok"] == true, "tcp4.client.events: {tcp}");
    ensure!(
        check("exec.pid").is_none(),
        "the re-run exec'd a child: {stats}"
    );
    let rerun = "watchdog: the self-check run again FAILED";
    let stderr = agent.stderr_once_it_has(rerun, EVENT_TIMEOUT);
    ensure!(stderr.contains(rerun), "{stderr}");

    // Capture really was broken: none of the datagrams sent after the detach made a flow.
    let seen: Vec<Value> = agent
        .events_since(at_detach)
        .into_iter()
        .filter(|e| after.iter().any(|p| ours(*p)(e)))
        .collect();
    ensure!(seen.is_empty(), "flows after the detach: {seen:?}");
    agent.stop()?;
    Ok(())
}
