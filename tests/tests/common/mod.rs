//! Helpers shared by the agent integration tests: set-up checks, programs, event matching.
//!
//! Each test file is its own crate and uses a different subset of these.
#![allow(dead_code)]

use anyhow::{bail, ensure, Context, Result};
use flow_agent_tests::{
    describe_bound, find_tool, require_root_and_bpf, require_tools, slowed, Agent, Spawned,
    TestHost,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Generous bound for events to appear (the harness stretches it by `FLOW_TEST_SLOW`);
/// assertions on their contents are exact.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Root, BTF and the programs every agent test drives.
pub fn setup() -> Result<()> {
    require_root_and_bpf()?;
    require_tools(&["ip", "ss", "python3"])
}

/// Starts the agent and returns it once ready.
pub fn agent(args: &[&str]) -> Result<Agent> {
    Agent::start(args).context("starting flow-agent")
}

/// The Python interpreter to exec: the system one when present, because a `python3` found in
/// `$PATH` may be a wrapper script (pyenv shim) that execs something else, changing the image.
pub fn python() -> Result<PathBuf> {
    let system = PathBuf::from("/usr/bin/python3");
    if system.is_file() {
        return Ok(system);
    }
    find_tool("python3")
}

/// The path the kernel reports for a process exec()ing `prog` (symlinks resolved).
pub fn image_path(prog: &std::path::Path) -> Result<String> {
    Ok(std::fs::canonicalize(prog)
        .with_context(|| format!("resolving {}", prog.display()))?
        .display()
        .to_string())
}

/// `python3 -c SCRIPT ARGS...` inside `host`, in the background.
pub fn spawn_py(host: &TestHost, script: &str, args: &[String]) -> Result<Spawned> {
    host.cmd(&python()?.display().to_string())
        .arg("-c")
        .arg(script)
        .args(args)
        .spawn()
}

/// Waits until `proc` printed a line starting with `prefix` on stdout (within `timeout` ×
/// `FLOW_TEST_SLOW`); returns that line.
pub fn wait_for_line(proc: &Spawned, prefix: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + slowed(timeout);
    loop {
        let out = proc.stdout_so_far();
        // Only whole lines: a line may arrive in two reads.
        let complete = &out[..out.rfind('\n').map_or(0, |i| i + 1)];
        if let Some(line) = complete.lines().find(|l| l.starts_with(prefix)) {
            return Ok(line.to_string());
        }
        if Instant::now() > deadline {
            bail!(
                "pid {} printed no line starting with {prefix:?} within {}\nstdout: {}\nstderr: {}",
                proc.pid(),
                describe_bound(timeout),
                out.trim(),
                proc.stderr_so_far().trim()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for a process to exit successfully (within `timeout` × `FLOW_TEST_SLOW`) and returns
/// its stdout.
pub fn finish(proc: Spawned, timeout: Duration) -> Result<String> {
    let pid = proc.pid();
    let out = proc.wait(timeout)?;
    ensure!(
        out.status.success(),
        "pid {pid} failed ({})\nstdout: {}\nstderr: {}",
        out.status,
        out.stdout_str().trim(),
        out.stderr_str().trim()
    );
    Ok(out.stdout_str())
}

/// The value of `key` in a `key value` line of `out` (e.g. `local 40312`).
pub fn value_after(out: &str, key: &str) -> Result<u64> {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no `{key} N` line in output: {out:?}"))
}

/// Field `key` of an event, `Null` when absent.
pub fn get<'a>(ev: &'a Value, key: &str) -> &'a Value {
    ev.get(key).unwrap_or(&Value::Null)
}

/// Whether every `(field, value)` pair holds (a `Null` value means "absent").
pub fn has(ev: &Value, want: &[(&str, Value)]) -> bool {
    want.iter().all(|(k, v)| get(ev, k) == v)
}

/// Errors listing every field of `ev` that differs from `want` (a `Null` value means "absent"),
/// with the whole event for context.
pub fn check(what: &str, ev: &Value, want: &[(&str, Value)]) -> Result<()> {
    let bad: Vec<String> = want
        .iter()
        .filter(|(k, v)| get(ev, k) != v)
        .map(|(k, v)| format!("{k}: want {v}, got {}", get(ev, k)))
        .collect();
    ensure!(
        bad.is_empty(),
        "{what}: {} field(s) wrong:\n  {}\nevent: {ev}",
        bad.len(),
        bad.join("\n  ")
    );
    Ok(())
}

/// Events grouped by flow_id (in output order within each flow).
pub fn by_flow<'a>(events: impl IntoIterator<Item = &'a Value>) -> BTreeMap<String, Vec<Value>> {
    let mut flows: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in events {
        let id = get(e, "flow_id").as_str().unwrap_or_default().to_string();
        flows.entry(id).or_default().push(e.clone());
    }
    flows
}

/// Whether `ev` is an `end` event.
pub fn is_end(ev: &Value) -> bool {
    get(ev, "event_action") == "end"
}

/// Parent pid from `/proc/<pid>/stat` (field 4, after the parenthesised comm).
pub fn ppid_of(pid: u32) -> Result<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
        .with_context(|| format!("parsing /proc/{pid}/stat: {stat:?}"))
}

/// Path of `/proc/<pid>/exe` while the process runs.
pub fn exe_of(pid: u32) -> Result<String> {
    Ok(std::fs::read_link(format!("/proc/{pid}/exe"))
        .with_context(|| format!("reading /proc/{pid}/exe"))?
        .display()
        .to_string())
}

/// Errors when the agent reported losses in the kernel (ring buffer or tables full).
pub fn ensure_no_losses(agent: &Agent) -> Result<()> {
    let stderr = agent.stderr();
    let losses: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("kernel-side losses"))
        .collect();
    ensure!(
        losses.is_empty(),
        "agent reported losses:\n{}",
        losses.join("\n")
    );
    Ok(())
}

/// cgroup v2 id (the cgroup directory's inode) of `pid`, as bpf_get_current_cgroup_id() sees it.
pub fn cgroup_id_of(pid: u32) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let rel = cgroups
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .with_context(|| format!("no cgroup v2 line in /proc/{pid}/cgroup: {cgroups:?}"))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    // Fields: id parent dev root mountpoint ... - fstype source options
    let mount = mountinfo
        .lines()
        .find(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|t| t.starts_with("cgroup2 "))
        })
        .and_then(|l| l.split_whitespace().nth(4))
        .context("cgroup2 is not mounted")?;
    let dir = PathBuf::from(mount).join(rel.trim_start_matches('/'));
    Ok(std::fs::metadata(&dir)
        .with_context(|| format!("stat {}", dir.display()))?
        .ino())
}

/// Diagnostics for a failure: the agent's BPF programs the kernel skipped because another
/// BPF program was already running on that CPU (`recursion_misses`, as `bpftool prog show`
/// reports it). Programs are found through the agent's fds; empty without bpftool.
pub fn bpf_recursion_misses(agent: &Agent) -> String {
    let Ok(bpftool) = find_tool("bpftool") else {
        return "(bpftool not installed: recursion misses unknown)".into();
    };
    let Ok(fds) = std::fs::read_dir(format!("/proc/{}/fdinfo", agent.pid())) else {
        return String::new();
    };
    let mut ids: Vec<u32> = fds
        .flatten()
        .filter_map(|f| std::fs::read_to_string(f.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("prog_id:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut misses = Vec::new();
    for id in ids {
        let Ok(out) = flow_agent_tests::Cmd::host(&bpftool.display().to_string())
            .args(["-j", "prog", "show", "id", &id.to_string()])
            .run()
        else {
            continue;
        };
        let Ok(prog) = serde_json::from_slice::<Value>(&out.stdout) else {
            continue;
        };
        if let Some(n) = prog["recursion_misses"].as_u64().filter(|n| *n > 0) {
            misses.push(format!("{} (id {id}): {n}", get(&prog, "name")));
        }
    }
    if misses.is_empty() {
        "none".into()
    } else {
        misses.join(", ")
    }
}
