//! The start-up self-check (docs/health.md, issue 22): the real agent makes known loopback
//! traffic and one exec before it is ready and compares what its pipeline reports with it.
//! Checked here: every check passes on this kernel with real values (the agent's own pid and
//! binary) in the first stats event and in `probe --self-check --json`; a broken check (a
//! debug-build fault that makes it expect a wrong value) ends the agent with status 3 naming
//! the check, the expected value and what came back; with `allow_degraded` it runs on.
//!
//! Needs root, kernel BTF, iproute2 and python3 (the harness's usual set).

mod common;

use anyhow::{ensure, Context, Result};
use common::*;
use flow_agent_tests::{slowed, Agent, Cmd, Output, TempDir};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const EXIT_KERNEL: i32 = 3;
const FAULT_ENV: &str = "FLOW_AGENT_TEST_SELF_CHECK_FAULT";

fn config(dir: &TempDir, extra: &str) -> Result<String> {
    let p = dir.write(
        "agent.toml",
        format!("{extra}\n[health]\nstats_interval = 1\nmetrics_listen = \"\"\n"),
    )?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
    Ok(p.display().to_string())
}

fn flow_agent(args: &[&str], fault: Option<&str>) -> Result<Output> {
    let mut cmd = Cmd::host(&Agent::binary()?.display().to_string())
        .args(args)
        .timeout(slowed(Duration::from_secs(30)));
    if let Some(f) = fault {
        cmd = cmd.env(FAULT_ENV, f);
    }
    cmd.output()
}

/// Every check ok, the flows of both protocols and the exec there, and real values in them.
fn all_ok(report: &Value, pid: u32, exe: &str) -> Result<()> {
    let checks = report["checks"].as_array().context("no checks")?;
    let failed: Vec<&Value> = checks.iter().filter(|c| c["ok"] != true).collect();
    ensure!(
        report["ok"] == true && failed.is_empty(),
        "failed: {failed:#?}"
    );
    let got = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["got"].as_str().unwrap_or_default().to_string())
    };
    for flow in ["tcp4.client", "tcp4.server", "udp4.client", "udp4.server"] {
        ensure!(
            got(&format!("{flow}.pid")) == Some(pid.to_string()),
            "{flow}.pid: {:?}, the agent is {pid}",
            got(&format!("{flow}.pid"))
        );
        ensure!(got(&format!("{flow}.image_path")).as_deref() == Some(exe));
    }
    ensure!(got("tcp4.client.bytes").as_deref() == Some("in=200 out=100"));
    ensure!(got("udp4.server.packets").as_deref() == Some("in=3 out=1"));
    ensure!(got("tcp4.client.state").as_deref() == Some("end_reason=fin conn_state=SF"));
    ensure!(got("exec.image_path").as_deref() == Some(exe));
    ensure!(got("exec.pid").is_some_and(|p| p != pid.to_string()));
    let ms = report["duration_ms"].as_f64().context("duration_ms")?;
    ensure!(ms > 0.0 && ms < 2000.0, "took {ms} ms");
    Ok(())
}

#[test]
fn the_first_stats_event_carries_a_passed_self_check() -> Result<()> {
    setup()?;
    let dir = TempDir::new("self-check")?;
    let config = config(&dir, "")?;
    let agent = agent(&["--config", &config])?;
    let stats = agent.wait_for(
        |e| e["event_action"] == "stats",
        slowed(Duration::from_secs(10)),
    )?;
    let exe = exe_of(agent.pid())?;
    all_ok(&stats["self_check"], agent.pid(), &exe)?;
    // The log states the cost.
    ensure!(
        agent.stderr().contains("self-check passed: "),
        "{}",
        agent.stderr()
    );
    // Later stats events do not repeat it; the check's own flows never reach the outputs.
    let second = agent.wait_for(
        |e| e["event_action"] == "stats" && e["timestamp"] != stats["timestamp"],
        slowed(Duration::from_secs(10)),
    )?;
    ensure!(second.get("self_check").is_none(), "{second}");
    let events = agent.stop()?;
    let ports: Vec<u64> = stats["self_check"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"].as_str().unwrap().ends_with(".local"))
        .filter_map(|c| c["got"].as_str()?.rsplit(':').next()?.parse().ok())
        .collect();
    ensure!(!ports.is_empty());
    let leaked: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["event_action"] != "stats"
                && ports
                    .iter()
                    .any(|p| e["src_port"] == *p || e["dest_port"] == *p)
                && e["pid"] == agent_pid_json(&stats)
        })
        .collect();
    ensure!(leaked.is_empty(), "self-check flows written: {leaked:#?}");
    Ok(())
}

/// The agent's pid as the stats event's self-check saw it.
fn agent_pid_json(stats: &Value) -> Value {
    stats["self_check"]["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "tcp4.client.pid"))
        .and_then(|c| c["got"].as_str()?.parse::<u64>().ok())
        .map_or(Value::Null, Value::from)
}

#[test]
fn probe_self_check_json_passes_every_check() -> Result<()> {
    setup()?;
    let out = flow_agent(&["probe", "--self-check", "--json"], None)?;
    ensure!(
        out.status.success(),
        "{}\n{}",
        out.stdout_str(),
        out.stderr_str()
    );
    let report: Value = serde_json::from_str(&out.stdout_str())?;
    let exe = std::fs::canonicalize(Agent::binary()?)?
        .display()
        .to_string();
    // The probe is its own process: its pid is in the checks, not known here; every check
    // passed and names the binary.
    let checks = report["checks"].as_array().context("checks")?;
    ensure!(checks.len() >= 39, "{report:#}");
    let pid = checks
        .iter()
        .find(|c| c["name"] == "tcp4.client.pid")
        .and_then(|c| c["expected"].as_str()?.parse::<u32>().ok())
        .context("tcp4.client.pid")?;
    all_ok(&report, pid, &exe)?;
    // The table form: one line per check.
    let text = flow_agent(&["probe", "--self-check"], None)?;
    ensure!(text.status.success());
    let lines = text.stdout_str();
    ensure!(
        lines.lines().filter(|l| l.starts_with("ok ")).count() == checks.len(),
        "{lines}"
    );
    Ok(())
}

#[test]
fn a_failed_check_ends_the_agent_with_status_3_naming_it() -> Result<()> {
    setup()?;
    let dir = TempDir::new("self-check-fault")?;
    let config = config(&dir, "")?;
    let out = flow_agent(&["--config", &config, "run"], Some("expect_wrong_bytes"))?;
    let stderr = out.stderr_str();
    ensure!(
        out.status.code() == Some(EXIT_KERNEL),
        "status {:?}: {stderr}",
        out.status.code()
    );
    ensure!(
        stderr.contains(
            "self-check failed, the agent would be blind or wrong: tcp4.client.bytes: expected in=200 out=101, got in=200 out=100"
        ),
        "{stderr}"
    );
    ensure!(!stderr.contains("flow-agent ready"), "{stderr}");
    // The probe says the same, with the same status.
    let probe = flow_agent(&["probe", "--self-check"], Some("expect_wrong_bytes"))?;
    ensure!(probe.status.code() == Some(EXIT_KERNEL));
    ensure!(
        probe
            .stdout_str()
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains("tcp4.client.bytes")),
        "{}",
        probe.stdout_str()
    );
    Ok(())
}

#[test]
fn allow_degraded_runs_on_after_a_failed_check_and_says_so() -> Result<()> {
    setup()?;
    let dir = TempDir::new("self-check-degraded")?;
    let config = config(&dir, "[agent]\nallow_degraded = true\n")?;
    // Through `timeout`, whose child `env` becomes the agent: the fault reaches only this
    // agent, not those of tests running alongside.
    let fault = format!("{FAULT_ENV}=expect_wrong_bytes");
    let agent = Agent::start_under(&["timeout", "600", "env", &fault], &["--config", &config])?;
    let stats = agent.wait_for(
        |e| e["event_action"] == "stats",
        slowed(Duration::from_secs(10)),
    )?;
    ensure!(stats["self_check"]["ok"] == false, "{stats}");
    let failed: Vec<&Value> = stats["self_check"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .collect();
    ensure!(
        failed.len() == 1
            && failed[0]["name"] == "tcp4.client.bytes"
            && failed[0]["expected"] == "in=200 out=101"
            && failed[0]["got"] == "in=200 out=100",
        "{failed:#?}"
    );
    ensure!(
        agent
            .stderr()
            .contains("SELF-CHECK FAILED, running degraded"),
        "{}",
        agent.stderr()
    );
    agent.stop()?;
    Ok(())
}
