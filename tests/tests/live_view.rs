//! The live view on a real agent: `flow-agent tail` prints the filtered stream and ends when
//! the agent stops; `flow-agent top` runs in a real terminal (tmux) and shows the talking
//! process; a subscriber that does not read is dropped and counted while the agent's file
//! output keeps every event. Each test runs its own agent with its own socket, and picks out
//! its own flows by port.
//!
//! Needs root, kernel BTF, python3 and tmux.

mod common;
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use common::*;
use flow_agent_tests::{require_tools, slowed, Agent, Cmd, TempDir, Tmux};
use serde_json::Value;
use support::connect_and_send;

/// A configuration with its own live socket and the given extra text.
fn config(dir: &TempDir, extra: &str) -> Result<std::path::PathBuf> {
    let socket = dir.path().join("events.sock");
    let text = format!("[live]\nsocket = \"{}\"\n{extra}", socket.display());
    let path = dir.write("config.toml", text)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(path)
}

fn agent_with(config: &Path) -> Result<Agent> {
    agent(&["--config", &config.display().to_string()])
}

/// Waits until the agent logged its `n`th subscriber.
fn wait_subscribed(agent: &Agent, n: usize) -> Result<()> {
    let deadline = Instant::now() + slowed(EVENT_TIMEOUT);
    while agent.stderr().matches("live subscriber connected").count() < n {
        ensure!(
            Instant::now() < deadline,
            "no subscriber connected; agent log:\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn validator() -> Result<jsonschema::Validator> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/events.schema.json"),
    )?;
    let schema: Value = serde_json::from_str(&text)?;
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| anyhow::anyhow!("compiling the schema: {e}"))
}

#[test]
fn tail_prints_only_the_filtered_flows_and_ends_with_the_agent() -> Result<()> {
    setup()?;
    let dir = TempDir::new("live-tail")?;
    let cfg = config(
        &dir,
        "[health]\nstats_interval = 1\n[[outputs]]\n[outputs.stdout]\n",
    )?;
    let agent = agent_with(&cfg)?;
    let socket = dir.path().join("events.sock");
    let mode = std::fs::metadata(&socket)?.permissions().mode();
    ensure!(mode & 0o777 == 0o660, "socket mode {:o}", mode & 0o777);
    let wanted = TcpListener::bind("127.0.0.1:0")?;
    let other = TcpListener::bind("127.0.0.1:0")?;
    let port = wanted.local_addr()?.port();
    // No --socket: `tail` reads `[live] socket` from the agent's file.
    let tail = Cmd::host(&Agent::binary()?.display().to_string())
        .args(["tail", "-c", &cfg.display().to_string()])
        .args([
            "--filter",
            &format!("remote_port = {port}, transport = \"tcp\""),
        ])
        .spawn()?;
    wait_subscribed(&agent, 1)?;
    // Without --filter a tail gets stats events too; with one, flows only.
    let unfiltered = Cmd::host(&Agent::binary()?.display().to_string())
        .args(["tail", "-c", &cfg.display().to_string()])
        .spawn()?;
    wait_subscribed(&agent, 2)?;
    let noise = connect_and_send(&other, 300)?;
    let client_port = connect_and_send(&wanted, 1234)?;
    // The end event reaches the agent's own output, then the agent stops.
    let own_end = |e: &Value| e["event_action"] == "end" && e["src_port"] == client_port;
    agent.wait_for(own_end, EVENT_TIMEOUT)?;
    agent.wait_for(|e| e["event_action"] == "stats", EVENT_TIMEOUT)?;
    agent.stop()?;
    let all = unfiltered.wait(slowed(EVENT_TIMEOUT))?.stdout_str();
    ensure!(
        all.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|e| e["event_action"] == "stats"),
        "no stats event without --filter:\n{all}"
    );
    let out = tail.wait(slowed(EVENT_TIMEOUT))?;
    ensure!(
        out.status.success(),
        "tail exited {} when the agent stopped: {}",
        out.status,
        out.stderr_str()
    );
    let validator = validator()?;
    let mut flows = Vec::new();
    for line in out.stdout_str().lines() {
        let ev: Value = serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
        ensure!(
            ev["event_action"] != "stats",
            "a stats event passed --filter: {line}"
        );
        if let Some(e) = validator.iter_errors(&ev).next() {
            bail!("{line}\ndoes not validate: {e} at {}", e.instance_path());
        }
        if ev.get("flow_id").is_some() && ev["event_action"] != "dns_query" {
            flows.push(ev);
        }
    }
    for ev in &flows {
        ensure!(ev["dest_port"] == port, "a flow the filter excludes: {ev}");
        ensure!(ev["src_port"] != noise, "the other listener's flow: {ev}");
    }
    let actions: Vec<&str> = flows
        .iter()
        .filter_map(|e| e["event_action"].as_str())
        .collect();
    ensure!(
        actions == ["start", "end"],
        "events of the own flow: {actions:?}"
    );
    let end = &flows[1];
    check(
        "the own flow's end",
        end,
        &[
            ("pid", std::process::id().into()),
            ("src_port", client_port.into()),
            ("dest_port", port.into()),
            ("orig_bytes", 1234.into()),
            ("resp_bytes", 0.into()),
            ("attribution", "connector".into()),
        ],
    )?;
    Ok(())
}

#[test]
fn tail_names_the_socket_the_file_and_the_bad_rule() -> Result<()> {
    let bin = Agent::binary()?.display().to_string();
    let dir = TempDir::new("live-errors")?;
    let cfg = config(&dir, "")?.display().to_string();
    // No agent on the file's socket, or on --socket's (which the file does not override).
    let missing = "/nonexistent/flow-agent-live.sock";
    let from_file = dir.path().join("events.sock").display().to_string();
    for (args, socket) in [
        (vec!["tail", "-c", &cfg], from_file.as_str()),
        (vec!["tail", "-c", &cfg, "--socket", missing], missing),
        (vec!["top", "-c", &cfg, "--socket", missing], missing),
    ] {
        let out = Cmd::host(&bin).args(&args).output()?;
        ensure!(
            out.status.code() == Some(1),
            "{args:?}: status {}",
            out.status
        );
        ensure!(
            out.stderr_str()
                .contains(&format!("no agent listens on {socket}")),
            "{args:?}: {}",
            out.stderr_str()
        );
    }
    // A file with the live view off is named.
    let off = dir.write("off.toml", "[live]\nsocket = \"\"\n")?;
    std::fs::set_permissions(&off, std::fs::Permissions::from_mode(0o600))?;
    let out = Cmd::host(&bin)
        .args(["tail", "-c", &off.display().to_string()])
        .output()?;
    ensure!(out.status.code() == Some(2), "status {}", out.status);
    ensure!(
        out.stderr_str().contains(&off.display().to_string())
            && out.stderr_str().contains("live view is off"),
        "{}",
        out.stderr_str()
    );
    let out = Cmd::host(&bin)
        .args(["tail", "--socket", missing, "--filter", "remote_prot = 1"])
        .output()?;
    ensure!(out.status.code() == Some(2), "status {}", out.status);
    ensure!(
        out.stderr_str().contains("remote_prot"),
        "{}",
        out.stderr_str()
    );
    Ok(())
}

#[test]
fn a_subscriber_that_does_not_read_is_dropped_and_the_file_keeps_everything() -> Result<()> {
    setup()?;
    let dir = TempDir::new("live-slow")?;
    let file = dir.path().join("events.json");
    let cfg = config(
        &dir,
        &format!(
            "queue_bytes = 65536\n[health]\nstats_interval = 1\n[[outputs]]\n[outputs.file]\npath = \"{}\"\n",
            file.display()
        ),
    )?;
    let agent = agent_with(&cfg)?;
    let mut slow = UnixStream::connect(dir.path().join("events.sock"))?;
    slow.write_all(b"{\"format\":\"native\"}\n")?;
    wait_subscribed(&agent, 1)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut ports = Vec::new();
    let deadline = Instant::now() + slowed(EVENT_TIMEOUT);
    while !agent.stderr().contains("live subscriber dropped") {
        ensure!(
            Instant::now() < deadline,
            "never dropped:\n{}",
            agent.stderr()
        );
        for _ in 0..50 {
            ports.push(connect_and_send(&listener, 100)?);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its stream ends with why, after what was written before.
    slow.set_read_timeout(Some(slowed(EVENT_TIMEOUT)))?;
    let last = BufReader::new(&slow)
        .lines()
        .map_while(Result::ok)
        .last()
        .unwrap_or_default();
    ensure!(last.starts_with("#dropped: "), "last line {last:?}");
    // Every flow reached the file, and the stats count the dropped subscriber.
    let server_port = listener.local_addr()?.port();
    let deadline = Instant::now() + slowed(EVENT_TIMEOUT);
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let events: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let ended: std::collections::BTreeSet<u64> = events
            .iter()
            .filter(|e| e["event_action"] == "end" && e["dest_port"] == server_port)
            .filter_map(|e| e["src_port"].as_u64())
            .collect();
        let counted = events.iter().any(|e| {
            e["event_action"] == "stats"
                && e["sinks"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["name"] == "live" && s["errors"] == 1))
        });
        let missing = ports
            .iter()
            .filter(|p| !ended.contains(&(**p as u64)))
            .count();
        if missing == 0 && counted {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{missing} of {} flows missing from the file; stats counted the drop: {counted}",
            ports.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    agent.stop()?;
    Ok(())
}

/// Waits until `top`'s screen satisfies `pred`; returns it.
fn wait_screen(tmux: &Tmux, what: &str, pred: impl Fn(&str) -> bool) -> Result<String> {
    tmux.wait(what, slowed(EVENT_TIMEOUT), pred)
}

/// Keeps up to 4 connections to PORT open, a new one every 0.2 s (for 5 minutes), each sending
/// 2000 bytes.
const CLIENT: &str = r#"
import socket, sys, time
port = int(sys.argv[1]); open_ = []
for _ in range(1500):
    c = socket.create_connection(("127.0.0.1", port)); c.sendall(b"x" * 2000)
    open_.append(c)
    if len(open_) > 4: open_.pop(0).close()
    time.sleep(0.2)
"#;

#[test]
fn top_in_a_terminal_shows_the_talker_sorts_resizes_and_quits() -> Result<()> {
    setup()?;
    require_tools(&["tmux"])?;
    let dir = TempDir::new("live-top")?;
    let cfg = config(&dir, "[[outputs]]\n[outputs.stdout]\n")?;
    let agent = agent_with(&cfg)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for c in listener.incoming().flatten() {
            std::thread::spawn(move || std::io::copy(&mut &c, &mut std::io::sink()));
        }
    });
    let top = format!(
        "{} top -c {} --filter 'remote_port = {port}'",
        Agent::binary()?.display(),
        cfg.display()
    );
    let tmux = Tmux::start("flow-agent-test", (80, 24), &top)?;
    wait_subscribed(&agent, 1)?;
    let client = python()?.display().to_string();
    let talker = Cmd::host(&client)
        .args(["-c", CLIENT, &port.to_string()])
        .spawn()?;
    let pid = talker.pid().to_string();
    let remote = format!("127.0.0.1:{port}");
    let row = |s: &str| {
        s.lines()
            .any(|l| l.contains("python3") && l.contains(&pid) && l.contains(&remote))
    };
    let screen = wait_screen(&tmux, "the talker's row", row)?;
    ensure!(screen.lines().count() == 24, "not 24 lines:\n{screen}");
    ensure!(
        screen.lines().all(|l| l.chars().count() <= 80),
        "wider than 80:\n{screen}"
    );
    // Sorting by pid marks the column.
    tmux.send_keys("2")?;
    wait_screen(&tmux, "sorted by pid", |s| s.contains("PID▼"))?;
    tmux.send_keys("2")?;
    wait_screen(&tmux, "sorted by pid, reversed", |s| s.contains("PID▲"))?;
    // The detail pane lists the process's flows to the port.
    tmux.send_keys("Enter")?;
    wait_screen(&tmux, "the detail pane", |s| {
        s.contains("open flows of pid") && s.lines().filter(|l| l.contains(&remote)).count() >= 2
    })?;
    // A larger terminal gets the space.
    tmux.resize((120, 40))?;
    let screen = wait_screen(&tmux, "the larger size", |s| {
        s.lines().count() == 40 && row(s)
    })?;
    let capture = dir.path().join("top.txt");
    std::fs::write(&capture, &screen)?;
    eprintln!("top at 120x40 ({}):\n{screen}", capture.display());
    // The agent restarts: `top` says it reconnects, then shows the talker from the new agent.
    agent.stop()?;
    wait_screen(&tmux, "reconnecting", |s| s.contains("reconnecting in"))?;
    let agent = agent_with(&cfg)?;
    wait_screen(&tmux, "the talker after the restart", |s| {
        row(s) && !s.contains("reconnecting")
    })?;
    tmux.send_keys("q")?;
    let deadline = Instant::now() + slowed(EVENT_TIMEOUT);
    while tmux.running() {
        ensure!(Instant::now() < deadline, "top did not quit on q");
        std::thread::sleep(Duration::from_millis(100));
    }
    talker.kill();
    agent.stop()?;
    Ok(())
}

/// `flow-agent tail ARGS` as another user (`setpriv`), with only the groups given.
fn tail_as(uid: u32, gid: u32, socket: &Path) -> Result<flow_agent_tests::Spawned> {
    Cmd::host("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg(Agent::binary()?)
        .args(["tail", "--socket", &socket.display().to_string()])
        .spawn()
}

#[test]
fn the_sockets_group_needs_no_root_and_others_are_told_whom_to_ask() -> Result<()> {
    setup()?;
    require_tools(&["setpriv"])?;
    const NOBODY: u32 = 65534;
    let dir = TempDir::new("live-group")?;
    // Others may pass through the test's directory; the agent makes `run` (0750, its group).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
    let socket = dir.path().join("run/events.sock");
    let text = format!(
        "[live]\nsocket = \"{}\"\ngroup = \"nogroup\"\n[[outputs]]\n[outputs.stdout]\n",
        socket.display()
    );
    let cfg = dir.write("config.toml", text)?;
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600))?;
    let agent = agent_with(&cfg)?;
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&socket)?;
        ensure!(
            meta.gid() == NOBODY && meta.mode() & 0o777 == 0o660,
            "{meta:?}"
        );
    }
    // A user outside the group: denied, and told which socket.
    let denied = tail_as(NOBODY, 0, &socket)?.wait(slowed(EVENT_TIMEOUT))?;
    ensure!(denied.status.code() == Some(1), "status {}", denied.status);
    ensure!(
        denied.stderr_str().contains("permission denied")
            && denied.stderr_str().contains(&socket.display().to_string()),
        "{}",
        denied.stderr_str()
    );
    // A member of the group, not root: subscribed, and sees this test's flow.
    let member = tail_as(NOBODY, NOBODY, &socket)?;
    wait_subscribed(&agent, 1)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client_port = connect_and_send(&listener, 77)?;
    let line = wait_for_line(&member, "{", EVENT_TIMEOUT).and_then(|_| {
        let deadline = Instant::now() + slowed(EVENT_TIMEOUT);
        loop {
            let out = member.stdout_so_far();
            if let Some(l) = out.lines().find(|l| {
                serde_json::from_str::<Value>(l)
                    .is_ok_and(|e| e["event_action"] == "end" && e["src_port"] == client_port)
            }) {
                return Ok(l.to_string());
            }
            ensure!(
                Instant::now() < deadline,
                "no end event of port {client_port}:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    })?;
    let ev: Value = serde_json::from_str(&line)?;
    ensure!(
        ev["orig_bytes"] == 77 && ev["pid"] == std::process::id(),
        "{ev}"
    );
    agent.stop()?;
    let out = member.wait(slowed(EVENT_TIMEOUT))?;
    ensure!(out.status.success(), "tail as a member: {}", out.status);
    Ok(())
}
