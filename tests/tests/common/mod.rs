//! Helpers shared by the agent integration tests: set-up checks, programs, event matching.
//!
//! Each test file is its own crate and uses a different subset of these.
#![allow(dead_code)]

use anyhow::{bail, ensure, Context, Result};
use flow_agent_tests::{
    describe_bound, find_tool, require_root_and_bpf, require_tools, slowed, Agent, Output, Spawned,
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

/// Errors when the agent reported losses in the kernel (ring buffers or tables full, closes
/// missed, flows evicted while open, TCP counters lost by sockets opened after the attach).
pub fn ensure_no_losses(agent: &Agent) -> Result<()> {
    ensure_no_losses_in(&agent.stderr())
}

/// [`ensure_no_losses`] on an agent's captured stderr.
pub fn ensure_no_losses_in(stderr: &str) -> Result<()> {
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

/// What a dumpcap capture filter needs besides the test's own traffic for
/// [`stop_capture`]'s marker: `format!("({filter}) {CAPTURE_MARKER_FILTER}")`.
pub const CAPTURE_MARKER_FILTER: &str = "or icmp";

/// Starts dumpcap on `host`'s veth with `options` (snap length, buffer, format), taking
/// `filter` and [`stop_capture`]'s marker, writing to `file`; returns once dumpcap reports the
/// interface open and the filter set.
pub fn start_capture(
    host: &TestHost,
    options: &[&str],
    filter: &str,
    file: &std::path::Path,
) -> Result<Spawned> {
    let proc = host
        .cmd("dumpcap")
        .arg("-q")
        .args(options)
        .args(["-i", host.veth(), "-f"])
        .arg(format!("({filter}) {CAPTURE_MARKER_FILTER}"))
        .arg("-w")
        .arg(file)
        .spawn()?;
    let bound = Duration::from_secs(120);
    let deadline = Instant::now() + slowed(bound);
    while !proc.stderr_so_far().contains("Capturing on") {
        ensure!(
            Instant::now() < deadline,
            "dumpcap did not start capturing within {}: {}",
            describe_bound(bound),
            proc.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The kernel may still be attaching the filter's socket after the report.
    std::thread::sleep(Duration::from_millis(300));
    Ok(proc)
}

/// Stops a dumpcap capture (SIGINT, so the file is complete) of `host`'s veth written to `file`
/// once it holds every packet sent through that veth before the call; returns dumpcap's output.
///
/// dumpcap only gets packets when the kernel hands over a block (after up to its 250 ms
/// timeout, later on a loaded host), and SIGINT discards what it has not got yet: no fixed
/// sleep is ever long enough. Instead an ICMP echo request with a unique marker goes out
/// through the veth after the test's packets, and the capture stops once dumpcap wrote it
/// (dumpcap keeps the order and flushes the file as it reports new packets). The filter must
/// take ICMP ([`CAPTURE_MARKER_FILTER`]); readers of the file skip that packet.
pub fn stop_capture(proc: Spawned, file: &std::path::Path, host: &TestHost) -> Result<Output> {
    let marker = send_capture_marker(host)?;
    let bound = Duration::from_secs(60);
    let deadline = Instant::now() + slowed(bound);
    loop {
        let written = std::fs::read(file).unwrap_or_default();
        if written
            .windows(marker.len())
            .any(|w| w == marker.as_slice())
        {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "dumpcap did not write the capture's end marker to {} within {}: {}",
            file.display(),
            describe_bound(bound),
            proc.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    proc.signal(libc::SIGINT)?;
    proc.wait(Duration::from_secs(20))
}

/// Sends one ICMP echo request carrying a marker unique to this call from inside `host`'s
/// namespace to its blackhole address: it leaves through the host's veth after every packet
/// sent before it, nothing answers it, and the agent, which follows TCP and UDP, ignores it.
/// Returns the marker.
pub fn send_capture_marker(host: &TestHost) -> Result<Vec<u8>> {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicU32, Ordering};
    static SENT: AtomicU32 = AtomicU32::new(0);
    let marker = format!(
        "flowtest-capture-end-{}-{}",
        std::process::id(),
        SENT.fetch_add(1, Ordering::Relaxed)
    )
    .into_bytes();
    let ns = format!("/run/netns/{}", host.name());
    let dest = host.blackhole_addr_v4();
    let mut packet = vec![8u8, 0, 0, 0, 0x66, 0x74, 0, 1];
    packet.extend_from_slice(&marker);
    let sum = internet_checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    // setns() moves only the calling thread: a thread of its own, gone afterwards.
    std::thread::spawn(move || -> Result<()> {
        let f = std::fs::File::open(&ns).with_context(|| format!("opening {ns}"))?;
        // SAFETY: setns on a valid namespace fd; affects only this thread.
        ensure!(
            unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } == 0,
            "setns({ns}): {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: socket(2) with constant arguments.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
        ensure!(
            fd >= 0,
            "raw ICMP socket: {}",
            std::io::Error::last_os_error()
        );
        let to = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(dest).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: sendto(2) with a live buffer and a sockaddr_in of the size given.
        let sent = unsafe {
            libc::sendto(
                fd,
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&to as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        let err = std::io::Error::last_os_error();
        // SAFETY: closing the socket opened above.
        unsafe { libc::close(fd) };
        ensure!(
            sent == packet.len() as isize,
            "sending the capture marker to {dest}: {err}"
        );
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the capture marker's thread panicked"))??;
    Ok(marker)
}

/// The Internet checksum (RFC 1071) of `data`.
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Server: accept connections and read each until EOF. Args: address, port.
pub const SINK_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen()
print("listening", flush=True)
while True:
    c, _ = s.accept()
    while c.recv(65536): pass
    c.close()
"#;

/// Sends `kill -SIG` to `pid`.
pub fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill -{sig} {pid} failed");
    Ok(())
}

/// `n` execs of /bin/true by an unprivileged user (not filtered as the agent's own): enough to
/// fill a small process ring while the agent is stopped.
pub fn exec_flood_as_nobody(n: usize) -> Result<()> {
    let status = std::process::Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg(format!(
            "i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done"
        ))
        .status()?;
    ensure!(status.success(), "the exec flood as nobody failed");
    Ok(())
}
