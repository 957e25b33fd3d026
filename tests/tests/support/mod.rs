//! Shared by the service and package tests: the manager's notification socket, an agent run
//! from any command line, /proc credentials, the unit file and the documented capability sets.
#![allow(dead_code)]

pub mod notify;
pub mod running;

use anyhow::{bail, ensure, Context, Result};
use flow_agent_tests::{describe_bound, find_tool, slowed, READY_TIMEOUT};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use notify::NotifyListener;
use running::Running;

/// Bound for an event or a notification to arrive (× FLOW_TEST_SLOW). Generous: a debug build
/// of the agent on a host busy with other tests can be far behind the traffic.
pub const WAIT: Duration = Duration::from_secs(60);
pub const EVENT_TIMEOUT: Duration = WAIT;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Waits for READY=1 (index and message), failing early with the agent's stderr if it exits.
pub fn wait_ready(listener: &NotifyListener, agent: &mut Running) -> Result<(usize, String)> {
    let deadline = Instant::now() + slowed(READY_TIMEOUT);
    loop {
        agent.check_running().context("agent before READY=1")?;
        if let Ok(found) = listener.wait_for(0, "READY=1", Duration::from_millis(200)) {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            bail!(
                "no READY=1 within {}; notifications {:?}; stderr:\n{}",
                describe_bound(READY_TIMEOUT),
                listener.messages(),
                agent.stderr()
            );
        }
    }
}

/// Credentials of one task as /proc/<pid>/status reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    pub uid: Vec<u32>,
    pub gid: Vec<u32>,
    pub groups: Vec<u32>,
    pub inh: u64,
    pub prm: u64,
    pub eff: u64,
    pub bnd: u64,
    pub amb: u64,
    pub no_new_privs: bool,
}

impl Creds {
    pub fn parse(status: &str) -> Result<Creds> {
        let field = |key: &str| -> Result<&str> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .map(str::trim)
                .with_context(|| format!("no {key} in status"))
        };
        let ids = |key: &str| -> Result<Vec<u32>> {
            Ok(field(key)?
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect())
        };
        let mask = |key: &str| -> Result<u64> {
            u64::from_str_radix(field(key)?, 16).with_context(|| format!("{key} is not hex"))
        };
        Ok(Creds {
            uid: ids("Uid")?,
            gid: ids("Gid")?,
            groups: ids("Groups")?,
            inh: mask("CapInh")?,
            prm: mask("CapPrm")?,
            eff: mask("CapEff")?,
            bnd: mask("CapBnd")?,
            amb: mask("CapAmb")?,
            no_new_privs: field("NoNewPrivs")? == "1",
        })
    }
}

/// Credentials of every thread of `pid`.
pub fn thread_creds(pid: u32) -> Result<Vec<(u32, Creds)>> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let tid: u32 = e?.file_name().to_string_lossy().parse()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))?;
        all.push((tid, Creds::parse(&status)?));
    }
    ensure!(!all.is_empty(), "process {pid} has no threads");
    Ok(all)
}

/// Capability names of a mask (`cap_sys_admin`), decoded by libcap's capsh, not by the agent.
pub fn decode_caps(mask: u64) -> Result<BTreeSet<String>> {
    let out = Command::new(find_tool("capsh")?)
        .arg(format!("--decode={mask:016x}"))
        .output()?;
    ensure!(out.status.success(), "capsh --decode failed");
    let text = String::from_utf8(out.stdout)?;
    let names = text.trim().split_once('=').map_or("", |(_, n)| n);
    Ok(names
        .split(',')
        .filter(|n| !n.is_empty())
        .map(|n| n.to_ascii_uppercase())
        .collect())
}

/// The capability table of docs/security-privileges.md: (start-up set, kept set), names as
/// `CAP_SYS_ADMIN`.
pub fn documented_capabilities() -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let doc = std::fs::read_to_string(workspace().join("docs/security-privileges.md"))?;
    let table = doc
        .split("<!-- capability-table -->")
        .nth(1)
        .and_then(|t| t.split("<!-- /capability-table -->").next())
        .context("docs/security-privileges.md has no capability-table block")?;
    let (mut startup, mut kept) = (BTreeSet::new(), BTreeSet::new());
    for row in table.lines().filter(|l| l.starts_with("| `CAP_")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_string();
        match cells[2] {
            "yes" => startup.insert(name.clone()),
            "no" => false,
            other => bail!("{name}: start-up column is {other:?}, expected yes or no"),
        };
        match cells[3] {
            "kept" => kept.insert(name),
            "dropped" => false,
            other => bail!("{name}: after-attach column is {other:?}, expected kept or dropped"),
        };
    }
    ensure!(!kept.is_empty(), "no kept capability in the table");
    Ok((startup, kept))
}

/// Asserts that every thread of `pid` holds exactly `kept` (effective, permitted, bounding),
/// no ambient or inheritable capability, and no_new_privs; returns the main thread's creds.
pub fn assert_dropped(pid: u32, kept: &BTreeSet<String>) -> Result<Creds> {
    let main = thread_creds(pid)?
        .into_iter()
        .find(|(tid, _)| *tid == pid)
        .map(|(_, c)| c)
        .context("no main thread")?;
    for (tid, c) in thread_creds(pid)? {
        for (set, mask) in [("CapEff", c.eff), ("CapPrm", c.prm), ("CapBnd", c.bnd)] {
            let names = decode_caps(mask)?;
            ensure!(
                &names == kept,
                "thread {tid}: {set} is {names:?}, docs/security-privileges.md keeps {kept:?}"
            );
        }
        ensure!(
            c.amb == 0 && c.inh == 0,
            "thread {tid}: CapAmb {:x} CapInh {:x}",
            c.amb,
            c.inh
        );
        ensure!(c.no_new_privs, "thread {tid}: NoNewPrivs is 0");
    }
    Ok(main)
}

/// One TCP connection over loopback from this process: `bytes` sent by the client, then both
/// ends closed. Returns (server port, client port).
pub fn loopback_connection(bytes: usize) -> Result<(u16, u16)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client_port = connect_and_send(&listener, bytes)?;
    Ok((listener.local_addr()?.port(), client_port))
}

/// One TCP connection to `listener` (on 127.0.0.1) from this process: `bytes` sent by the
/// client, then both ends closed. Returns the client's port.
pub fn connect_and_send(listener: &TcpListener, bytes: usize) -> Result<u16> {
    let port = listener.local_addr()?.port();
    let mut client = TcpStream::connect(("127.0.0.1", port))?;
    let client_port = client.local_addr()?.port();
    let (mut server, _) = listener.accept()?;
    client.write_all(&vec![b'x'; bytes])?;
    client.shutdown(std::net::Shutdown::Write)?;
    let mut got = Vec::new();
    server.read_to_end(&mut got)?;
    ensure!(got.len() == bytes, "server read {} of {bytes}", got.len());
    drop(server);
    drop(client);
    Ok(client_port)
}

/// Whether an event is the connector's end of [`loopback_connection`]'s flow. Loopback ports
/// are only unique within a namespace, and other tests use theirs: this process's namespace.
pub fn is_own_connector_end(ports: (u16, u16)) -> Result<impl Fn(&Value) -> bool> {
    use std::os::unix::fs::MetadataExt;
    let (port, client_port) = ports;
    let netns = std::fs::metadata("/proc/self/ns/net")?.ino();
    Ok(move |e: &Value| {
        e["event_action"] == "end"
            && e["netns"] == netns
            && e["dest_ip"] == "127.0.0.1"
            && e["dest_port"] == port
            && e["src_port"] == client_port
            && e["attribution"] == "connector"
    })
}

/// The connector's end event of [`loopback_connection`]'s flow, checked against what this
/// process did: its pid, its executable, the bytes it sent.
pub fn assert_own_flow(agent: &Running, ports: (u16, u16), bytes: u64) -> Result<Value> {
    let is_end = is_own_connector_end(ports)?;
    let ev = agent.wait_for_events(is_end, 1, EVENT_TIMEOUT)?.remove(0);
    let exe = std::fs::canonicalize(std::env::current_exe()?)?;
    ensure!(
        ev["pid"] == std::process::id(),
        "pid {} is not this test's",
        ev["pid"]
    );
    ensure!(
        ev["image_path"] == exe.display().to_string(),
        "image_path {} is not {}",
        ev["image_path"],
        exe.display()
    );
    ensure!(
        ev["orig_bytes"] == bytes,
        "orig_bytes {} != {bytes}",
        ev["orig_bytes"]
    );
    ensure!(ev["resp_bytes"] == 0, "resp_bytes {}", ev["resp_bytes"]);
    Ok(ev)
}

/// The `[Service]` settings of a unit file: key → values, in order (a key may repeat).
pub fn unit_service_settings(text: &str) -> HashMap<String, Vec<String>> {
    let mut section = "";
    let mut settings: HashMap<String, Vec<String>> = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[Service]" && !line.starts_with('#') {
            if let Some((k, v)) = line.split_once('=') {
                settings
                    .entry(k.trim().to_string())
                    .or_default()
                    .push(v.trim().to_string());
            }
        }
    }
    settings
}

/// The single value of `key`, an error naming it when absent or repeated.
pub fn setting<'a>(settings: &'a HashMap<String, Vec<String>>, key: &str) -> Result<&'a str> {
    match settings.get(key).map(Vec::as_slice) {
        Some([one]) => Ok(one),
        Some(many) => bail!("{key}= is set {} times", many.len()),
        None => bail!("the unit has no {key}="),
    }
}

/// systemd's time span (`30s`, `2min`, `500ms`, bare seconds) in microseconds.
pub fn timespan_usec(value: &str) -> Result<u64> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (n, unit) = value.split_at(split);
    let n: u64 = n.parse().with_context(|| format!("time span {value:?}"))?;
    let per = match unit {
        "" | "s" | "sec" => 1_000_000,
        "ms" | "msec" => 1_000,
        "min" | "m" => 60_000_000,
        other => bail!("time span unit {other:?} in {value:?}"),
    };
    Ok(n * per)
}
