//! Process events on the real kernel (`[enrich] process_events`): a short program that
//! connects on loopback gets a `process_start` written before its flow, with the flow's
//! process entity id, and a `process_end` with its real exit code, in every format.
mod common;
// The spec checks of the encoders test, on this test's records.
#[allow(dead_code)]
#[path = "encoders/ecs_spec.rs"]
mod ecs_spec;
#[allow(dead_code)]
#[path = "encoders/fixture.rs"]
mod fixture;
#[allow(dead_code)]
#[path = "encoders/ocsf_spec.rs"]
mod ocsf_spec;
#[allow(dead_code)]
#[path = "encoders/sysmon_spec.rs"]
mod sysmon_spec;
#[allow(dead_code)]
#[path = "encoders/times.rs"]
mod times;

/// What the ECS checks ask of the encoders test's crate.
pub fn is_stats(e: &Value) -> bool {
    e["event_action"] == "stats"
}

use std::{path::Path, time::Duration};

use anyhow::{ensure, Context, Result};
use common::{
    agent, exec_flood_as_nobody, image_path, python, setup, signal, spawn_py, wait_for_line,
    EVENT_TIMEOUT, SINK_SERVER,
};
use flow_agent_tests::{Agent, TempDir, TestHost};
use serde_json::Value;

const PORT: u16 = 9341;

const CONFIG: &str = r#"
[enrich]
process_events = true
ancestry_depth = 3

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
name = "sysmon"
format = "sysmon"
[outputs.file]
path = "{dir}/sysmon.log"
"#;

/// Client: connects, sends, closes, and exits with status 3.
const CLIENT: &str = r#"
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
c.sendall(b"hello"); c.close()
sys.exit(3)
"#;

fn schema() -> Result<jsonschema::Validator> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/events.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| anyhow::anyhow!("compiling the schema: {e}"))
}

/// The lines of `file` once one matches `done` (within the event timeout).
fn lines_until(file: &Path, done: impl Fn(&str) -> bool) -> Result<Vec<String>> {
    let deadline = std::time::Instant::now() + flow_agent_tests::slowed(EVENT_TIMEOUT);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.iter().any(|l| done(l)) {
            return Ok(lines);
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "{}: no line of ours in time:\n{text}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Index of the first JSON line matching `pred`, and that line.
fn first(lines: &[String], what: &str, pred: impl Fn(&Value) -> bool) -> Result<(usize, Value)> {
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| Some((i, serde_json::from_str::<Value>(l).ok()?)))
        .find(|(_, v)| pred(v))
        .with_context(|| format!("no {what}:\n{}", lines.join("\n")))
}

/// The text of `<Data Name="NAME">` in a Sysmon record.
fn data<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<Data Name=\"{name}\">");
    let rest = &line[line.find(&open)? + open.len()..];
    Some(&rest[..rest.find("</Data>")?])
}

#[test]
fn process_events_precede_their_flows_and_carry_the_exit_code_in_every_format() -> Result<()> {
    setup()?;
    let dir = TempDir::new("flow-process-events")?;
    let d = dir.path().display().to_string();
    let config = dir.write("config.toml", CONFIG.replace("{dir}", &d))?;
    let host = TestHost::new()?;
    let agent = agent(&["--config", &config.display().to_string()])?;
    let srv = spawn_py(&host, SINK_SERVER, &["127.0.0.1".into(), PORT.to_string()])?;
    wait_for_line(&srv, "listening", Duration::from_secs(10))?;
    let py = image_path(&python()?)?;
    let cli = spawn_py(&host, CLIENT, &[PORT.to_string()])?;
    let pid = cli.pid();
    let out = cli.wait(Duration::from_secs(20))?;
    ensure!(out.status.code() == Some(3), "client: {:?}", out.status);
    let end = agent.wait_for(
        |e| e["event_action"] == "process_end" && e["pid"] == pid,
        EVENT_TIMEOUT,
    );
    let _ = srv.kill();
    let end = end?;
    let lines = agent.json_lines();

    // Native: the start (of python, after `ip netns exec`'s own exec) precedes the flow.
    let is_start = |e: &Value| {
        e["event_action"] == "process_start" && e["pid"] == pid && e["image_path"] == py.as_str()
    };
    let (s, start) = first(&lines, "native process_start", is_start)?;
    let (f, flow) = first(&lines, "native flow", |e| {
        e["event_action"] == "start" && e["pid"] == pid && e["dest_port"] == PORT
    })?;
    ensure!(s < f, "process_start (line {s}) after its flow (line {f})");
    let entity = start["process_entity_id"]
        .as_str()
        .context("no entity id")?;
    ensure!(flow["process_entity_id"] == entity, "{start:#} {flow:#}");
    ensure!(
        start["command_line"]
            .as_str()
            .is_some_and(|c| c.contains("sys.exit(3)")),
        "command_line: {start:#}"
    );
    ensure!(
        end["exit_code"] == 3 && end.get("exit_signal").is_none(),
        "exit code: {end:#}"
    );
    ensure!(end["process_entity_id"] == entity, "end: {end:#}");
    // Its parent is this test (`ip netns exec` became the client by exec).
    let me = std::env::current_exe()?.display().to_string();
    let parent = &start["ancestors"][0];
    ensure!(
        parent["pid"] == std::process::id()
            && parent["image_path"] == me.as_str()
            && parent["entity_id"] == start["parent_entity_id"],
        "ancestors: {start:#}"
    );
    ensure!(
        start["ancestors"]
            .as_array()
            .is_some_and(|a| (2..=3).contains(&a.len())),
        "up to 3 ancestors: {start:#}"
    );
    ensure!(end["duration"].as_f64().is_some_and(|d| d > 0.0), "{end:#}");
    let validator = schema()?;
    for ev in [&start, &end] {
        let errs: Vec<String> = validator.iter_errors(ev).map(|e| e.to_string()).collect();
        ensure!(errs.is_empty(), "{ev:#}: {errs:?}");
    }

    // ECS: event.category process, start before the flow, process.exit_code at the end.
    let ecs = lines_until(&dir.path().join("ecs.log"), |l| {
        l.contains("process_end") && l.contains(&format!("\"pid\":{pid}"))
    })?;
    let pid_is = |v: &Value| v["process"]["pid"] == pid;
    let (s, start) = first(&ecs, "ecs start", |v| {
        pid_is(v)
            && v["event"]["type"][0] == "start"
            && v["event"]["category"][0] == "process"
            && v["process"]["executable"] == py.as_str()
    })?;
    let (f, flow) = first(&ecs, "ecs flow", |v| {
        pid_is(v) && v["event"]["category"][0] == "network"
    })?;
    let (_, end) = first(&ecs, "ecs end", |v| {
        pid_is(v) && v["event"]["type"][0] == "end"
    })?;
    ensure!(s < f, "ecs: start at {s}, flow at {f}");
    ensure!(start["process"]["entity_id"] == entity && flow["process"]["entity_id"] == entity);
    ensure!(end["process"]["exit_code"] == 3, "ecs end: {end:#}");
    for doc in [&start, &end] {
        let problems = ecs_spec::check_document(doc);
        ensure!(problems.is_empty(), "ecs {doc:#}: {problems:?}");
    }

    // OCSF: Process Activity Launch before Network Activity, Terminate with exit_code.
    let ocsf = lines_until(&dir.path().join("ocsf.log"), |l| {
        l.contains("\"activity_id\":2,")
            && l.contains("\"class_uid\":1007")
            && l.contains(&format!("\"pid\":{pid}"))
    })?;
    let (s, start) = first(&ocsf, "ocsf launch", |v| {
        v["class_uid"] == 1007
            && v["activity_id"] == 1
            && v["process"]["pid"] == pid
            && v["process"]["file"]["path"] == py.as_str()
    })?;
    let (f, flow) = first(&ocsf, "ocsf flow", |v| {
        v["class_uid"] == 4001 && v["actor"]["process"]["pid"] == pid
    })?;
    let (_, end) = first(&ocsf, "ocsf terminate", |v| {
        v["class_uid"] == 1007 && v["activity_id"] == 2 && v["process"]["pid"] == pid
    })?;
    ensure!(s < f, "ocsf: launch at {s}, flow at {f}");
    ensure!(start["process"]["uid"] == entity && flow["actor"]["process"]["uid"] == entity);
    ensure!(
        start["process"]["ancestry"][0]["pid"] == std::process::id(),
        "ocsf ancestry: {start:#}"
    );
    ensure!(
        end["exit_code"] == 3 && end["type_uid"] == 100702,
        "ocsf end: {end:#}"
    );
    for ev in [&start, &end] {
        let problems = ocsf_spec::check_event(ev);
        ensure!(problems.is_empty(), "ocsf {ev:#}: {problems:?}");
    }

    // Sysmon: event 1 before event 3 with the same ProcessGuid, then event 5.
    let pid_text = pid.to_string();
    let ours = |l: &str, id: &str| {
        l.contains(&format!("<EventID>{id}</EventID>")) && data(l, "ProcessId") == Some(&pid_text)
    };
    let sysmon = lines_until(&dir.path().join("sysmon.log"), |l| ours(l, "5"))?;
    let s = sysmon
        .iter()
        .position(|l| ours(l, "1") && data(l, "Image") == Some(py.as_str()))
        .context("no event 1")?;
    let f = sysmon
        .iter()
        .position(|l| ours(l, "3"))
        .context("no event 3")?;
    ensure!(s < f, "sysmon: event 1 at {s}, event 3 at {f}");
    ensure!(
        data(&sysmon[s], "ProcessGuid") == data(&sysmon[f], "ProcessGuid"),
        "ProcessGuid differs: {}\n{}",
        sysmon[s],
        sysmon[f]
    );
    ensure!(data(&sysmon[s], "CommandLine").is_some_and(|c| c.contains("sys.exit(3)")));
    let e = sysmon
        .iter()
        .position(|l| ours(l, "5"))
        .context("no event 5")?;
    ensure!(f < e, "sysmon: event 3 at {f}, event 5 at {e}");
    let euid = unsafe { libc::geteuid() };
    for i in [s, f, e] {
        let rec = sysmon_spec::parse(&sysmon[i])?;
        // Records are numbered from 1 in the file's order.
        let problems = sysmon_spec::check_record(&rec, agent.pid(), i as u64 + 1, euid);
        ensure!(problems.is_empty(), "sysmon {}: {problems:?}", sysmon[i]);
    }
    Ok(())
}

/// Forks a child that stops itself; once continued, the child execs `argv[1]` (another
/// program than its parent) with the connecting client. Args: program, port.
const FORKER: &str = r#"
import os, signal, sys
pid = os.fork()
if pid == 0:
    os.kill(os.getpid(), signal.SIGSTOP)
    client = "import socket, sys, time\nc = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\nprint('port', c.getsockname()[1], flush=True)\nc.sendall(b'x'); time.sleep(4); c.close()\n"
    os.execv(sys.argv[1], [sys.argv[1], "-c", client, sys.argv[2]])
print("child", pid, flush=True)
os.waitpid(pid, 0)
"#;

#[test]
fn a_lost_exec_record_is_found_by_the_comm_and_the_flow_flagged() -> Result<()> {
    setup()?;
    flow_agent_tests::require_tools(&["setpriv"])?;
    let dir = TempDir::new("flow-lost-exec")?;
    // A 1 MiB process ring: some 200 exec records fill it, which the flood below outnumbers
    // while the agent is stopped, but the host's other processes seldom do while it runs.
    // Stats each second tell whether a record was lost before the test meant to lose one.
    let config = dir.write(
        "config.toml",
        "[capture]\nprocess_ring_bytes = 1048576\n\n[health]\nstats_interval = 1\n\n\
         [[outputs]]\nname = \"events\"\n[outputs.stdout]\n",
    )?;
    let host = TestHost::new()?;
    let agent = agent(&["--config", &config.display().to_string()])?;
    let srv = spawn_py(
        &host,
        SINK_SERVER,
        &["127.0.0.1".into(), (PORT + 1).to_string()],
    )?;
    wait_for_line(&srv, "listening", Duration::from_secs(10))?;
    // The child's program: a copy of python under another name (another comm).
    let copy = dir.path().join("lostexec-cli");
    std::fs::copy(std::fs::canonicalize(python()?)?, &copy)?;
    // The whole host's exec records share this small ring: when other processes filled it
    // while the child forked, the fork record may be lost too, and the child is then simply
    // unknown (read from /proc, rightly unflagged). Such a try proves nothing: try again.
    let mut tries = 0;
    let (flow, lost) = loop {
        tries += 1;
        if let Some(found) = lose_the_childs_exec(&agent, &host, &copy)? {
            break found;
        }
        ensure!(
            tries < 5,
            "records were lost around the child's fork in {tries} tries: the host is too busy"
        );
    };
    let _ = srv.kill();
    agent.stop()?;
    ensure!(
        lost > 0,
        "no process record was lost: the test proves nothing"
    );
    let want = image_path(&copy)?;
    ensure!(
        flow["image_refreshed"] == true && flow["image_path"] == want.as_str(),
        "the flow names the program that runs, flagged: {flow:#}"
    );
    ensure!(flow.get("image_inherited").is_none(), "{flow:#}");
    ensure!(
        flow["command_line"]
            .as_str()
            .is_some_and(|c| c.contains("create_connection")),
        "{flow:#}"
    );
    Ok(())
}

/// The agent's process-ring losses in its next stats event.
fn next_ring_losses(agent: &Agent) -> Result<u64> {
    let n = agent.events().iter().filter(|e| is_stats(e)).count();
    let stats = agent
        .wait_for_count(is_stats, n + 1, EVENT_TIMEOUT)?
        .pop()
        .context("no stats event")?;
    Ok(stats["kernel_losses"]["process_ring_full"]
        .as_u64()
        .unwrap_or(0))
}

/// A child forks (the agent reads its fork record: its parent's image), then execs `copy`
/// while the agent is stopped and an unprivileged user's execs fill the process ring, so the
/// exec record is lost. Its flow's start event and the ring's losses by then; None when
/// records were lost before the agent had the fork record.
fn lose_the_childs_exec(
    agent: &Agent,
    host: &TestHost,
    copy: &Path,
) -> Result<Option<(Value, u64)>> {
    let before = next_ring_losses(agent)?;
    let parent = spawn_py(
        host,
        FORKER,
        &[copy.display().to_string(), (PORT + 1).to_string()],
    )?;
    let child: u32 = wait_for_line(&parent, "child", Duration::from_secs(10))?[6..]
        .trim()
        .parse()?;
    std::thread::sleep(Duration::from_secs(2));
    let after = next_ring_losses(agent)?;
    eprintln!("ring losses before {before}, after {after}");
    if after != before {
        let _ = signal(child, "KILL");
        let _ = parent.wait(Duration::from_secs(20));
        return Ok(None);
    }
    signal(agent.pid(), "STOP")?;
    let flood = exec_flood_as_nobody(1500);
    signal(child, "CONT")?;
    let port_line = wait_for_line(&parent, "port", Duration::from_secs(10));
    signal(agent.pid(), "CONT")?;
    flood?;
    let src_port: u16 = port_line?[5..].trim().parse()?;
    let flow = agent.wait_for(
        |e| e["event_action"] == "start" && e["pid"] == child && e["src_port"] == src_port,
        EVENT_TIMEOUT,
    );
    let _ = parent.wait(Duration::from_secs(20));
    let flow = flow?;
    Ok(Some((flow, next_ring_losses(agent)?)))
}
