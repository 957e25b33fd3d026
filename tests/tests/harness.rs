//! Self-tests of the harness: namespaces, commands and the agent runner (with a fake agent).
//! Needs root, iproute2, python3 and curl; never the real flow-agent.

use anyhow::{ensure, Context, Result};
use flow_agent_tests::{
    require_root, require_tools, slowed, wait_for_tcp_listen_timeout, Agent, Cmd, TempDir, TestHost,
};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const HTTP_PORT: u16 = 8080;
const SECOND: Duration = Duration::from_secs(1);

fn setup() -> Result<()> {
    require_root()?;
    require_tools(&["ip", "ss", "python3", "curl"])
}

/// Payload served over HTTP: big enough for several segments, recognisable on arrival.
fn payload() -> Vec<u8> {
    (0..200_000u32).map(|i| (i % 251) as u8).collect()
}

/// `python3 -m http.server` on [::]:8080 (dual stack) inside `host`, serving `dir`.
fn http_server(host: &TestHost, dir: &TempDir) -> Result<flow_agent_tests::Spawned> {
    let server = host
        .cmd("python3")
        .args([
            "-m",
            "http.server",
            &HTTP_PORT.to_string(),
            "--bind",
            "::",
            "--directory",
        ])
        .arg(dir.path())
        .spawn()?;
    host.wait_for_tcp_listen(HTTP_PORT)?;
    Ok(server)
}

fn url(addr: IpAddr, port: u16, path: &str) -> String {
    format!("http://{}{path}", SocketAddr::new(addr, port))
}

/// curl inside `host`; `--noproxy` because CI may set http_proxy.
fn curl(host: &TestHost, url: &str) -> Result<Vec<u8>> {
    let max_time = slowed(10 * SECOND).as_secs().to_string();
    let out = host
        .cmd("curl")
        .args([
            "-sS",
            "--fail",
            "-g",
            "--noproxy",
            "*",
            "--max-time",
            &max_time,
            url,
        ])
        .run()?;
    Ok(out.stdout)
}

#[test]
fn pair_serves_http_over_v4_and_v6() -> Result<()> {
    setup()?;
    let (client, server) = TestHost::pair()?;
    ensure!(
        client.host_addr_v4() == server.ns_addr_v4()
            && server.host_addr_v6() == client.ns_addr_v6()
    );
    let dir = TempDir::new("fat-http")?;
    dir.write("blob", payload())?;
    let srv = http_server(&server, &dir)?;
    for addr in [
        IpAddr::V4(server.ns_addr_v4()),
        IpAddr::V6(server.ns_addr_v6()),
    ] {
        let body = curl(&client, &url(addr, HTTP_PORT, "/blob"))?;
        ensure!(
            body == payload(),
            "got {} bytes from {addr}, want {}",
            body.len(),
            payload().len()
        );
    }
    // The server logs the peer: proof the traffic crossed the veth between the namespaces.
    let log = srv.kill().stderr_str();
    ensure!(
        log.contains(&client.ns_addr_v4().to_string()),
        "server log lacks v4 client: {log}"
    );
    ensure!(
        log.contains(&client.ns_addr_v6().to_string()),
        "server log lacks v6 client: {log}"
    );
    Ok(())
}

#[test]
fn root_namespace_reaches_host_both_ways() -> Result<()> {
    setup()?;
    let host = TestHost::new()?;
    let dir = TempDir::new("fat-http")?;
    dir.write("blob", payload())?;
    let _srv = http_server(&host, &dir)?;
    // root -> namespace, plain std sockets over v4 and v6.
    for addr in [IpAddr::V4(host.ns_addr_v4()), IpAddr::V6(host.ns_addr_v6())] {
        let body = http_get(SocketAddr::new(addr, HTTP_PORT), "/blob")?;
        ensure!(
            body.ends_with(&payload()),
            "short body from {addr}: {} bytes",
            body.len()
        );
    }
    // namespace -> root, to a listener on the root end of the veth.
    for addr in [
        IpAddr::V4(host.host_addr_v4()),
        IpAddr::V6(host.host_addr_v6()),
    ] {
        let listener = TcpListener::bind((addr, 0))?;
        let port = listener.local_addr()?.port();
        let responder = std::thread::spawn(move || serve_one(listener, b"hello from root"));
        let body = curl(&host, &url(addr, port, "/"))?;
        responder.join().unwrap()?;
        ensure!(
            body == b"hello from root",
            "got {:?}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

#[test]
fn blackhole_addresses_never_answer() -> Result<()> {
    setup()?;
    let host = TestHost::new()?;
    // From the root namespace: the SYN leaves, nobody answers (not refused, not unreachable).
    for addr in [
        IpAddr::V4(host.blackhole_addr_v4()),
        IpAddr::V6(host.blackhole_addr_v6()),
    ] {
        let start = Instant::now();
        let err = TcpStream::connect_timeout(&SocketAddr::new(addr, 80), SECOND)
            .expect_err("blackhole answered");
        ensure!(
            err.kind() == std::io::ErrorKind::TimedOut,
            "{addr}: want timeout, got {err}"
        );
        ensure!(start.elapsed() >= SECOND - Duration::from_millis(50));
    }
    // From inside the namespace: curl's exit code 28 is "operation timed out".
    for addr in [
        IpAddr::V4(host.blackhole_addr_v4()),
        IpAddr::V6(host.blackhole_addr_v6()),
    ] {
        let out = host
            .cmd("curl")
            .args(["-sS", "-g", "--noproxy", "*", "--connect-timeout", "1"])
            .arg(url(addr, 80, "/"))
            .output()?;
        ensure!(
            out.status.code() == Some(28),
            "{addr}: curl {} {}",
            out.status,
            out.stderr_str()
        );
    }
    Ok(())
}

#[test]
fn drop_removes_namespace_veth_and_processes() -> Result<()> {
    setup()?;
    let host = TestHost::new()?;
    let (name, root_veth) = (host.name().to_string(), host.peer_veth().to_string());
    // Outlives the host on purpose: a stray process must not keep the namespace alive.
    let sleeper = host.cmd("sleep").arg("600").spawn()?;
    ensure!(netns_list()?.contains(&name), "{name} missing before drop");
    drop(host);
    ensure!(
        !netns_list()?.contains(&name),
        "{name} still listed after drop"
    );
    ensure!(
        !Path::new("/sys/class/net").join(&root_veth).exists(),
        "{root_veth} still exists"
    );
    ensure!(
        !Path::new(&format!("/proc/{}/comm", sleeper.pid())).exists() || is_zombie(sleeper.pid()),
        "sleeper survived"
    );

    let (client, server) = TestHost::pair()?;
    let names = [client.name().to_string(), server.name().to_string()];
    drop(server);
    drop(client);
    let list = netns_list()?;
    ensure!(
        names.iter().all(|n| !list.contains(n)),
        "pair namespaces left: {list}"
    );
    Ok(())
}

#[test]
fn hosts_work_in_parallel_threads() -> Result<()> {
    setup()?;
    let threads: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || -> Result<(u8, String)> {
                let host = TestHost::new()?;
                let listener = TcpListener::bind((host.host_addr_v4(), 0))?;
                let port = listener.local_addr()?.port();
                let msg = format!("thread {i}");
                let bytes = msg.clone().into_bytes();
                let responder = std::thread::spawn(move || serve_one(listener, &bytes));
                let body = curl(&host, &url(IpAddr::V4(host.host_addr_v4()), port, "/"))?;
                responder.join().unwrap()?;
                ensure!(
                    body == msg.as_bytes(),
                    "thread {i} got {:?}",
                    String::from_utf8_lossy(&body)
                );
                Ok((host.index(), host.name().to_string()))
            })
        })
        .collect();
    let mut seen = Vec::new();
    for t in threads {
        seen.push(t.join().unwrap()?);
    }
    let (mut idx, mut names): (Vec<u8>, Vec<String>) = seen.into_iter().unzip();
    idx.sort();
    idx.dedup();
    names.sort();
    names.dedup();
    ensure!(
        idx.len() == 4 && names.len() == 4,
        "indexes {idx:?} / names {names:?} not unique"
    );
    Ok(())
}

#[test]
fn spawned_pid_is_the_program_inside_the_namespace() -> Result<()> {
    setup()?;
    let host = TestHost::new()?;
    let sleeper = host.cmd("sleep").arg("600").spawn()?;
    let pid = sleeper.pid();
    // `ip netns exec` exec()s, so the pid turns into `sleep` once it has entered the namespace.
    let want_ns = format!("net:[{}]", host.netns_inode()?);
    let deadline = Instant::now() + slowed(Duration::from_secs(5));
    loop {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let ns = std::fs::read_link(format!("/proc/{pid}/ns/net"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if comm.trim() == "sleep" && ns == want_ns {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "pid {pid}: comm {comm:?}, ns {ns:?}, want sleep in {want_ns}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = sleeper.kill();
    ensure!(
        out.status.code().is_none(),
        "sleep was not killed: {}",
        out.status
    );
    Ok(())
}

#[test]
fn cmd_captures_output_failures_and_timeouts() -> Result<()> {
    setup()?;
    let host = TestHost::new()?;
    let script = "echo out; echo err >&2; exit 3";
    let out = host.cmd("sh").args(["-c", script]).output()?;
    ensure!(
        out.status.code() == Some(3) && out.stdout_str() == "out\n" && out.stderr_str() == "err\n",
        "{out:?}"
    );
    let err = host
        .cmd("sh")
        .args(["-c", script])
        .run()
        .expect_err("exit 3 must fail");
    ensure!(
        format!("{err:#}").contains("err"),
        "error lacks stderr: {err:#}"
    );
    let err = host
        // Far longer than the bound, however much FLOW_TEST_SLOW stretches it.
        .cmd("sleep")
        .arg("600")
        .timeout(Duration::from_millis(200))
        .run()
        .expect_err("must time out");
    ensure!(format!("{err:#}").contains("still running"), "{err:#}");
    // The namespace has only lo and its veth: no route anywhere else.
    let routes = host
        .cmd("ip")
        .args(["route", "show", "default"])
        .run()?
        .stdout_str();
    ensure!(
        routes.trim().is_empty(),
        "namespace has a default route: {routes}"
    );
    let host_out = Cmd::host("sh").args(["-c", "echo root"]).run()?;
    ensure!(host_out.stdout_str() == "root\n");
    Ok(())
}

#[test]
fn wait_for_tcp_listen_fails_clearly() -> Result<()> {
    setup()?;
    let host = TestHost::new()?;
    let err = wait_for_tcp_listen_timeout(host.name(), 9, Duration::from_millis(200))
        .expect_err("nothing listens");
    ensure!(
        format!("{err:#}").contains("nothing listens on TCP port 9"),
        "{err:#}"
    );
    Ok(())
}

#[test]
fn reap_stale_removes_leftovers_of_dead_processes() -> Result<()> {
    setup()?;
    // A pid that just exited stands in for a test process killed mid-run.
    let child = std::process::Command::new("true").spawn()?;
    let pid = child.id();
    let _ = child.wait_with_output()?;
    let (ns, veth) = (format!("flowtest-{pid}-0"), format!("ft{pid}-0h"));
    Cmd::host("ip").args(["netns", "add", &ns]).run()?;
    // Both ends in the root namespace (the peer's name is no test's): the veth outlives the
    // namespace, so reap_stale must delete it itself. With the peer in the namespace, the
    // namespace's deletion could take the veth along first, or not yet, depending on timing.
    let peer = format!("stale{pid}");
    Cmd::host("ip")
        .args(["link", "add", &veth, "type", "veth", "peer", "name", &peer])
        .run()?;
    // Pin the namespace with a process, as a leaked server would.
    let _pin = Cmd::in_ns(&ns, "sleep").arg("600").spawn()?;
    // Other tests of this binary create hosts in parallel and reap too: whichever call gets
    // there first removes the leftovers, so check that they are gone, not who removed them.
    let reaped = TestHost::reap_stale()?;
    ensure!(
        !netns_list()?.contains(&ns),
        "{ns} survived (reaped here: {reaped:?})"
    );
    for link in [&veth, &peer] {
        ensure!(
            !Path::new("/sys/class/net").join(link).exists(),
            "{link} survived"
        );
    }
    Ok(())
}

#[test]
fn agent_runner_collects_events_with_a_fake_agent() -> Result<()> {
    let dir = TempDir::new("fat-agent")?;
    let bin = fake_agent(&dir, FAKE_AGENT)?;
    let agent = Agent::start_bin(&bin, &["--flag"])?;
    // No --config given: --no-config, so that the host's /etc/flow-agent does not count; no
    // --tcp-detail: the tier on, whose fields most tests check.
    ensure!(
        agent
            .stderr()
            .contains("args: run --flag --no-config --tcp-detail on\n"),
        "stderr: {}",
        agent.stderr()
    );
    let second = agent.wait_for(|e| e["n"] == 2, 5 * SECOND)?;
    ensure!(second["event"] == "start");
    let starts = agent.wait_for_count(|e| e["event"] == "start", 2, 5 * SECOND)?;
    ensure!(starts[0]["n"] == 1 && starts[1]["n"] == 2, "{starts:?}");
    ensure!(
        agent.non_json_lines() == ["not json"],
        "{:?}",
        agent.non_json_lines()
    );
    let err = agent
        .wait_for(|e| e["n"] == 99, Duration::from_millis(200))
        .expect_err("no such event");
    let msg = format!("{err:#}");
    ensure!(
        msg.contains("timed out") && msg.contains(r#""n":2"#) && msg.contains("flow-agent ready"),
        "{msg}"
    );
    let events = agent.stop()?;
    ensure!(
        events.last().is_some_and(|e| e["event"] == "end"),
        "no end event in {events:?}"
    );
    Ok(())
}

#[test]
fn agent_runner_reports_early_death() -> Result<()> {
    let dir = TempDir::new("fat-agent")?;
    let bin = fake_agent(&dir, "echo 'probe load failed: EPERM' >&2; exit 7")?;
    let err = Agent::start_bin(&bin, &[]).expect_err("must fail");
    let msg = format!("{err:#}");
    ensure!(
        msg.contains("before becoming ready") && msg.contains("EPERM"),
        "{msg}"
    );
    Ok(())
}

#[test]
fn require_root_and_bpf_matches_environment() -> Result<()> {
    // SAFETY: geteuid cannot fail.
    let expected =
        unsafe { libc::geteuid() } == 0 && Path::new(flow_agent_tests::VMLINUX_BTF).exists();
    ensure!(flow_agent_tests::require_root_and_bpf().is_ok() == expected);
    Ok(())
}

/// Stands in for flow-agent: JSON on stdout, readiness on stderr, end event on SIGTERM.
const FAKE_AGENT: &str = r#"
echo "args: $*" >&2
trap 'echo "{\"event\":\"end\",\"n\":3}"; exit 0' TERM
echo '{"event":"start","n":1}'
echo 'not json'
echo 'flow-agent ready' >&2
echo '{"event":"start","n":2}'
while :; do sleep 0.05; done
"#;

fn fake_agent(dir: &TempDir, body: &str) -> Result<std::path::PathBuf> {
    let src = dir.write("agent.sh", format!("#!/bin/sh\n{body}\n"))?;
    let bin = dir.path().join("flow-agent");
    // Written by a child process: had this multi-threaded process written it, a fork on
    // another test thread could inherit the write fd and make exec fail with ETXTBSY.
    Cmd::host("install")
        .args(["-m", "0755"])
        .arg(&src)
        .arg(&bin)
        .run()?;
    Ok(bin)
}

fn netns_list() -> Result<String> {
    Ok(Cmd::host("ip").args(["netns", "list"]).run()?.stdout_str())
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

/// Minimal HTTP/1.0 GET with std sockets (no client dependency); returns the raw response.
fn http_get(addr: SocketAddr, path: &str) -> Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, slowed(5 * SECOND))
        .with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(slowed(10 * SECOND)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n")?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    ensure!(
        body.starts_with(b"HTTP/1.0 200"),
        "bad response from {addr}: {:?}",
        String::from_utf8_lossy(&body[..body.len().min(100)])
    );
    Ok(body)
}

/// Answers one HTTP request on `listener` with `body`, bounded to 10 s (× `FLOW_TEST_SLOW`).
fn serve_one(listener: TcpListener, body: &[u8]) -> Result<()> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + slowed(10 * SECOND);
    let mut conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => return Err(e).context("accept"),
        }
    };
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(slowed(5 * SECOND)))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf)?;
        ensure!(n > 0, "client closed before finishing its request");
        req.extend_from_slice(&buf[..n]);
    }
    write!(
        conn,
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    conn.write_all(body)?;
    Ok(())
}
