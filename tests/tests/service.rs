//! The agent as a service, from the built binary: systemd notifications (READY, STATUS,
//! WATCHDOG, RELOADING, STOPPING) over the manager's socket, the capability drop in every
//! thread, the agent's own system call filter after attach, running as another user, the
//! unit's system call filter against every call the agent makes, and log priorities in a real
//! journal (`journal`).
#[path = "service/journal.rs"]
mod journal;
mod support;

use anyhow::{ensure, Context, Result};
use flow_agent_tests::{
    find_tool, require_root_and_bpf, require_tools, Agent, TempDir, ABSENT_DEFAULT_CONFIG,
    DEFAULT_CONFIG_ENV,
};
use std::process::Command;
use std::time::Duration;
use support::notify::{has, value, NotifyListener};
use support::running::Running;
use support::WAIT;
use support::{
    assert_dropped, assert_own_flow, documented_capabilities, loopback_connection, wait_ready,
    workspace,
};

/// Every agent sees every flow of the host: the load test runs alone, the others together.
static LOAD: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    LOAD.read().unwrap_or_else(|e| e.into_inner())
}

fn agent_command(listener: &NotifyListener) -> Result<Command> {
    let mut cmd = Command::new(Agent::binary()?);
    // Some callers add --config: not --no-config, but no default file either.
    cmd.arg("run")
        .env(DEFAULT_CONFIG_ENV, ABSENT_DEFAULT_CONFIG)
        .env("NOTIFY_SOCKET", listener.address())
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env_remove("FLOW_AGENT_USER");
    Ok(cmd)
}

/// SIGTERM: STOPPING=1 arrives and the agent exits cleanly.
fn stop(listener: &NotifyListener, agent: &mut Running, from: usize) -> Result<()> {
    agent.signal(libc::SIGTERM)?;
    listener.wait_for(from, "STOPPING=1", WAIT)?;
    let status = agent.wait_exit(WAIT)?;
    ensure!(
        status.success(),
        "exit {status} after SIGTERM; stderr:\n{}",
        agent.stderr()
    );
    Ok(())
}

#[test]
fn watchdog_pings_arrive_at_half_of_watchdog_usec() -> Result<()> {
    require_root_and_bpf()?;
    let _shared = shared();
    let listener_dir = TempDir::new("flow-notify-watchdog")?;
    let listener = NotifyListener::bind_path(listener_dir.path())?;
    let mut cmd = agent_command(&listener)?;
    // 2 s: a ping every second, the main loop's tick.
    cmd.env("WATCHDOG_USEC", "2000000")
        .env("WATCHDOG_PID", std::process::id().to_string());
    // WATCHDOG_PID names the test, not the agent: the agent must ignore the watchdog then.
    let mut ignored = Running::spawn(cmd)?;
    let ignoring = wait_ready(&listener, &mut ignored)?;

    let listener2_dir = TempDir::new("flow-notify-watchdog2")?;
    let listener2 = NotifyListener::bind_path(listener2_dir.path())?;
    let mut cmd = agent_command(&listener2)?;
    cmd.env("WATCHDOG_USEC", "2000000");
    let mut agent = Running::spawn(cmd)?;
    let (ready, _) = wait_ready(&listener2, &mut agent)?;
    // Three pings, each after READY=1 (the loop pings from its first tick on).
    let mut at = ready;
    for _ in 0..3 {
        let (i, msg) = listener2.wait_for(at + 1, "WATCHDOG=1", WAIT)?;
        ensure!(msg == "WATCHDOG=1", "ping message {msg:?}");
        at = i;
    }
    ensure!(
        !listener2.messages()[..ready]
            .iter()
            .any(|m| has(m, "WATCHDOG=1")),
        "a ping before READY=1: {:?}",
        listener2.messages()
    );
    // The other agent has run for at least as long: no ping from it.
    ensure!(
        !listener.messages().iter().any(|m| has(m, "WATCHDOG=1")),
        "pinged for WATCHDOG_PID of another process: {:?} (ready at {})",
        listener.messages(),
        ignoring.0
    );
    stop(&listener2, &mut agent, at)?;
    stop(&listener, &mut ignored, ignoring.0)
}

/// Connections as fast as three threads can make them, until dropped.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl Load {
    fn start() -> Result<Load> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut threads = Vec::new();
        let s = stop.clone();
        listener.set_nonblocking(true)?;
        threads.push(std::thread::spawn(move || {
            let mut n = 0;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok(_) => n += 1,
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
            n
        }));
        for _ in 0..3 {
            let s = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut n = 0;
                while !s.load(std::sync::atomic::Ordering::Relaxed) {
                    if std::net::TcpStream::connect(addr).is_ok() {
                        n += 1;
                    }
                }
                n
            }));
        }
        Ok(Load { stop, threads })
    }

    /// Stops the load; returns how many connections it made.
    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.threads
            .into_iter()
            .skip(1)
            .map(|t| t.join().unwrap_or(0))
            .sum()
    }
}

/// More flows than the agent can process: its loop must still ping the watchdog and answer
/// SIGTERM while the load goes on (it once drained the ring until it was empty, which under
/// such load it never is).
#[test]
fn pings_and_answers_sigterm_under_sustained_load() -> Result<()> {
    require_root_and_bpf()?;
    let _alone = LOAD.write().unwrap_or_else(|e| e.into_inner());
    let listener_dir = TempDir::new("flow-notify-load")?;
    let listener = NotifyListener::bind_path(listener_dir.path())?;
    let mut cmd = agent_command(&listener)?;
    cmd.env("WATCHDOG_USEC", "2000000");
    let mut agent = Running::spawn_with(cmd, false)?;
    let (ready, _) = wait_ready(&listener, &mut agent)?;
    let first = listener.wait_for(ready + 1, "WATCHDOG=1", WAIT)?.0;
    let load = Load::start()?;
    // Two more pings with the load running.
    let mut at = first;
    for _ in 0..2 {
        at = listener.wait_for(at + 1, "WATCHDOG=1", WAIT)?.0;
    }
    agent.signal(libc::SIGTERM)?;
    let stopping = listener.wait_for(at + 1, "STOPPING=1", WAIT);
    let made = load.stop();
    stopping.with_context(|| format!("under a load of {made} connections"))?;
    let status = agent.wait_exit(WAIT)?;
    ensure!(status.success(), "exit {status}:\n{}", agent.stderr());
    Ok(())
}

#[test]
fn notifies_ready_reload_and_stop_with_capabilities_dropped() -> Result<()> {
    require_root_and_bpf()?;
    let _shared = shared();
    let (_, kept) = documented_capabilities()?;
    let dir = TempDir::new("flow-service-notify")?;
    let config = dir.write("config.toml", "[health]\nstats_interval = 0\n")?;
    let listener = NotifyListener::bind_path(dir.path())?;
    let mut cmd = agent_command(&listener)?;
    cmd.arg("--config").arg(&config);
    let mut agent = Running::spawn(cmd)?;
    let (ready, msg) = wait_ready(&listener, &mut agent)?;
    let kept_names: Vec<&str> = ["CAP_SYS_PTRACE", "CAP_SYS_ADMIN"]
        .into_iter()
        .filter(|c| kept.contains(*c))
        .collect();
    ensure!(
        value(&msg, "STATUS")
            == Some(
                &format!(
                    "capturing flows; capabilities kept: {}",
                    kept_names.join(" ")
                )[..]
            ),
        "READY message {msg:?}"
    );
    // Root with every capability before: exactly the documented set after, in every thread.
    let creds = assert_dropped(agent.pid(), &kept)?;
    ensure!(creds.uid == [0, 0, 0, 0], "uid changed: {:?}", creds.uid);
    assert_own_flow(&agent, loopback_connection(1234)?, 1234)?;

    // Reload into a configuration with stats events every second.
    std::fs::write(&config, "[health]\nstats_interval = 1\n")?;
    agent.signal(libc::SIGHUP)?;
    let (reloading, msg) = listener.wait_for(ready + 1, "RELOADING=1", WAIT)?;
    let stamp: u64 = value(&msg, "MONOTONIC_USEC")
        .context("RELOADING=1 without MONOTONIC_USEC")?
        .parse()?;
    ensure!(
        stamp > 0 && stamp <= monotonic_usec(),
        "MONOTONIC_USEC={stamp} is not a past CLOCK_MONOTONIC time"
    );
    let (reloaded, _) = listener.wait_for(reloading + 1, "READY=1", WAIT)?;
    agent.wait_for_events(|e| e["event_action"] == "stats", 1, WAIT)?;
    let stderr = agent.stderr_once_it_has("configuration reloaded", WAIT);
    ensure!(
        stderr.contains("configuration reloaded"),
        "stderr:\n{stderr}"
    );
    // Capture goes on after the reload, still without the dropped capabilities.
    assert_own_flow(&agent, loopback_connection(777)?, 777)?;
    assert_dropped(agent.pid(), &kept)?;
    stop(&listener, &mut agent, reloaded)
}

/// `Seccomp` and `Seccomp_filters` of /proc/<pid>/task/<tid>/status (the second is None
/// before Linux 5.9).
fn seccomp_fields(status: &str) -> Result<(u32, Option<u32>)> {
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(|v| v.trim().parse::<u32>())
    };
    let mode = field("Seccomp")
        .context("no Seccomp field (kernel without CONFIG_SECCOMP)")?
        .context("Seccomp")?;
    let filters = field("Seccomp_filters")
        .transpose()
        .context("Seccomp_filters")?;
    Ok((mode, filters))
}

/// Asserts that every thread of `pid` is in seccomp filter mode (2) with one filter more
/// than this test process has (the agent inherits the test's own, if any).
fn assert_system_call_filter(pid: u32) -> Result<usize> {
    let (_, own) = seccomp_fields(&std::fs::read_to_string("/proc/self/status")?)?;
    let mut threads = 0;
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let tid = e?.file_name().to_string_lossy().into_owned();
        let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))?;
        let (mode, filters) = seccomp_fields(&status)?;
        ensure!(
            mode == 2,
            "thread {tid}: Seccomp: {mode}, expected 2 (filter)"
        );
        if let (Some(filters), Some(own)) = (filters, own) {
            ensure!(
                filters > own,
                "thread {tid}: Seccomp_filters: {filters}, this test has {own}"
            );
        }
        threads += 1;
    }
    Ok(threads)
}

/// The system call filter the agent installs after attach, seen from outside: every thread
/// of the ready agent is in seccomp filter mode, and the agent still does what it does after
/// attach under it: reads its maps and the ring (flows, end totals), and on SIGHUP rewrites
/// the kernel filter's maps, which the kernel then applies. That the filter refuses
/// BPF_PROG_LOAD and mount is `service::seccomp::tests` (a forked child cannot tell its own
/// refusals from outside).
#[test]
fn the_system_call_filter_is_in_force_after_attach_and_capture_and_reload_still_work() -> Result<()>
{
    require_root_and_bpf()?;
    let _shared = shared();
    let dir = TempDir::new("flow-service-seccomp")?;
    // Debug: the kernel filter's counters are logged when they change.
    let base = "[agent]\nlog_level = \"debug\"\n[health]\nstats_interval = 0\n";
    let config = dir.write("config.toml", base)?;
    let listener = NotifyListener::bind_path(dir.path())?;
    let mut cmd = agent_command(&listener)?;
    cmd.arg("--config").arg(&config);
    let mut agent = Running::spawn(cmd)?;
    let (ready, _) = wait_ready(&listener, &mut agent)?;
    let threads = assert_system_call_filter(agent.pid())?;
    // Logged when the filter is installed; the line reaches this test through the agent's
    // stderr and a reader thread, which may not have read it by READY=1.
    let stderr = agent.stderr_once_it_has("system call filter installed in every thread", WAIT);
    ensure!(
        stderr.contains("system call filter installed in every thread"),
        "{threads} threads filtered, but no log line; stderr:\n{stderr}"
    );
    assert_own_flow(&agent, loopback_connection(1500)?, 1500)?;

    // A kernel filter rule on reload: the port of a server of this test.
    let server = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = server.local_addr()?.port();
    std::fs::write(
        &config,
        format!("{base}[filter]\nexclude = [{{ remote_port = {port}, transport = \"tcp\" }}]\n"),
    )?;
    agent.signal(libc::SIGHUP)?;
    let (reloading, _) = listener.wait_for(ready + 1, "RELOADING=1", WAIT)?;
    let (reloaded, _) = listener.wait_for(reloading + 1, "READY=1", WAIT)?;
    let stderr = agent.stderr_once_it_has(
        "kernel filter: 1 of 1 global exclude rules decided in the kernel",
        WAIT,
    );
    ensure!(
        stderr.contains("kernel filter: 1 of 1 global exclude rules decided in the kernel")
            && !stderr.contains("kernel filter not updated"),
        "the reload did not update the kernel filter's maps; stderr:\n{stderr}"
    );
    // The connect to it is skipped in the kernel: the maps hold the rule.
    let client = std::net::TcpStream::connect(("127.0.0.1", port))?;
    let (accepted, _) = server.accept()?;
    drop((client, accepted));
    let deadline = std::time::Instant::now() + flow_agent_tests::slowed(WAIT);
    while !agent
        .stderr()
        .lines()
        .any(|l| l.contains("kernel filter skipped") && !l.contains("skipped 0 TCP"))
    {
        ensure!(
            std::time::Instant::now() < deadline,
            "the kernel filter skipped no TCP flow; stderr:\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Flows after the reload, and the threads started since (new outputs) filtered too.
    assert_own_flow(&agent, loopback_connection(2500)?, 2500)?;
    assert_system_call_filter(agent.pid())?;
    ensure!(
        !agent.stderr().contains("Operation not permitted"),
        "a call the agent makes was refused; stderr:\n{}",
        agent.stderr()
    );
    stop(&listener, &mut agent, reloaded)
}

#[test]
fn runs_as_the_user_named_in_flow_agent_user() -> Result<()> {
    require_root_and_bpf()?;
    let _shared = shared();
    let (_, kept) = documented_capabilities()?;
    let listener_dir = TempDir::new("flow-notify-user")?;
    let listener = NotifyListener::bind_path(listener_dir.path())?;
    let mut cmd = agent_command(&listener)?;
    cmd.env("FLOW_AGENT_USER", "nobody");
    let mut agent = Running::spawn(cmd)?;
    let (ready, _) = wait_ready(&listener, &mut agent)?;
    let nobody = user_ids("nobody")?;
    let creds = assert_dropped(agent.pid(), &kept)?;
    ensure!(
        creds.uid == [nobody.0; 4] && creds.gid == [nobody.1; 4],
        "uid {:?} gid {:?}, expected nobody's {nobody:?}",
        creds.uid,
        creds.gid
    );
    ensure!(
        creds.groups == [nobody.1],
        "supplementary groups {:?}",
        creds.groups
    );
    // As that user the agent still attributes this (root) process's flow.
    assert_own_flow(&agent, loopback_connection(4321)?, 4321)?;
    stop(&listener, &mut agent, ready)
}

#[test]
fn an_unknown_user_is_a_clear_error() -> Result<()> {
    require_root_and_bpf()?;
    let _shared = shared();
    let out = Command::new(Agent::binary()?)
        .args(["run", "--no-config"])
        .env("FLOW_AGENT_USER", "no-such-user-flow-test")
        .env_remove("NOTIFY_SOCKET")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success(),
        "started as a user that does not exist"
    );
    ensure!(
        stderr.contains("user \"no-such-user-flow-test\" does not exist"),
        "stderr:\n{stderr}"
    );
    Ok(())
}

/// The unit's SystemCallFilter (expanded by systemd-analyze) against what the agent does:
/// strace, with seccomp doing the selection, stops only on calls outside the filter.
#[test]
fn unit_system_call_filter_allows_every_call_the_agent_makes() -> Result<()> {
    require_root_and_bpf()?;
    let _shared = shared();
    require_tools(&["strace", "systemd-analyze", "ip"])?;
    let unit = std::fs::read_to_string(workspace().join("packaging/flow-agent.service"))?;
    let settings = support::unit_service_settings(&unit);
    let filter = support::setting(&settings, "SystemCallFilter")?;
    let allowed = expand_filter(filter)?;
    ensure!(
        allowed.contains("openat") && allowed.contains("read"),
        "expansion of {filter:?} looks wrong"
    );
    let dir = TempDir::new("flow-service-strace")?;
    let trace = dir.path().join("trace");
    let listener_dir = TempDir::new("flow-notify-strace")?;
    let listener = NotifyListener::bind_path(listener_dir.path())?;
    let not_allowed: Vec<String> = allowed.iter().map(|s| format!("?{s}")).collect();
    let mut cmd = Command::new(find_tool("strace")?);
    cmd.args(["-f", "-qq", "--seccomp-bpf", "-e", "signal=none", "-e"])
        .arg(format!("trace=!{}", not_allowed.join(",")))
        .arg("-o")
        .arg(&trace)
        .arg(Agent::binary()?)
        .args(["run", "--no-config", "--update-interval", "1"])
        .env("NOTIFY_SOCKET", listener.address())
        .env("WATCHDOG_USEC", "2000000")
        // The user switch's calls too.
        .env("FLOW_AGENT_USER", "nobody");
    let mut tracer = Running::spawn(cmd)?;
    let (ready, _) = wait_ready(&listener, &mut tracer)?;
    // Signals go to the agent itself, strace's child.
    let agent_pid = child_of(tracer.pid())?;
    let signal = |sig| -> Result<()> {
        // SAFETY: kill(2) with a signal number.
        ensure!(
            unsafe { libc::kill(agent_pid as i32, sig) } == 0,
            "kill {agent_pid}"
        );
        Ok(())
    };
    // Flows, a TCP flow in another network namespace (setns for its update events), a reload.
    assert_own_flow(&tracer, loopback_connection(100)?, 100)?;
    let host = flow_agent_tests::TestHost::new()?;
    host.cmd("python3")
        .args([
            "-c",
            "import socket,time\n\
             s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen()\n\
             c=socket.create_connection(s.getsockname()); a,_=s.accept()\n\
             for i in range(6):\n    c.send(b'x'*100); a.recv(100); time.sleep(0.5)\n",
        ])
        .run()?;
    signal(libc::SIGHUP)?;
    listener.wait_for(ready + 1, "RELOADING=1", WAIT)?;
    listener.wait_for(ready + 1, "WATCHDOG=1", WAIT)?;
    signal(libc::SIGTERM)?;
    let status = tracer.wait_exit(WAIT)?;
    ensure!(status.success(), "exit {status}:\n{}", tracer.stderr());
    let calls = std::fs::read_to_string(&trace)?;
    let outside: Vec<&str> = calls
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(20)
        .collect();
    ensure!(
        outside.is_empty(),
        "system calls outside SystemCallFilter={filter}:\n{}",
        outside.join("\n")
    );
    Ok(())
}

/// Every system call a SystemCallFilter= allow list names, groups expanded recursively.
fn expand_filter(filter: &str) -> Result<std::collections::BTreeSet<String>> {
    let out = Command::new(find_tool("systemd-analyze")?)
        .arg("syscall-filter")
        .output()?;
    ensure!(
        out.status.success(),
        "systemd-analyze syscall-filter failed"
    );
    let text = String::from_utf8(out.stdout)?;
    let mut groups: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut current = None;
    for line in text.lines() {
        if line.starts_with('@') {
            current = Some(line.trim().to_string());
            groups.insert(line.trim().to_string(), Vec::new());
        } else if let Some(g) = &current {
            let item = line.trim();
            if !item.is_empty() && !item.starts_with('#') {
                groups.get_mut(g).unwrap().push(item.to_string());
            }
        }
    }
    fn add(
        name: &str,
        groups: &std::collections::HashMap<String, Vec<String>>,
        out: &mut std::collections::BTreeSet<String>,
    ) {
        match groups.get(name) {
            Some(members) => members.iter().for_each(|m| add(m, groups, out)),
            None => {
                out.insert(name.to_string());
            }
        }
    }
    let mut allowed = Default::default();
    for item in filter.split_whitespace() {
        ensure!(
            !item.starts_with('@') || groups.contains_key(item),
            "unknown group {item}"
        );
        add(item, &groups, &mut allowed);
    }
    Ok(allowed)
}

/// The first child of `pid`.
fn child_of(pid: u32) -> Result<u32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))?;
    children
        .split_whitespace()
        .next()
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("process {pid} has no child"))
}

fn user_ids(name: &str) -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name))
                .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
        })
        .with_context(|| format!("no user {name} in /etc/passwd"))
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}
