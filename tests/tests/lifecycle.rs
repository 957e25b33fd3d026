//! Flow lifecycle and process enrichment on real flows: update intervals that add up to the end
//! totals, a process whose executable is deleted, a process that changed user, a process in a
//! new cgroup.
mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::{
    agent, finish, python, setup, spawn_py, start_capture, stop_capture, wait_for_line,
    EVENT_TIMEOUT,
};
use flow_agent_tests::TestHost;
use serde_json::Value;

fn u(ev: &Value, field: &str) -> u64 {
    ev[field].as_u64().unwrap_or(0)
}

fn iv(ev: &Value, field: &str) -> u64 {
    ev["interval"][field].as_u64().unwrap_or(0)
}

/// Server: accept one connection and read until EOF, then reply with the byte count.
const SINK_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen()
print("listening", flush=True)
c, _ = s.accept(); n = 0
while True:
    b = c.recv(65536)
    if not b: break
    n += len(b)
c.sendall(str(n).encode()); c.close()
"#;

/// Client: sends `chunks` chunks of `size` bytes, one every `gap` seconds, then half-closes.
const DRIP_CLIENT: &str = r#"
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
print("port", c.getsockname()[1], flush=True)
for _ in range(int(sys.argv[3])):
    c.sendall(b"x" * int(sys.argv[4])); time.sleep(float(sys.argv[5]))
c.shutdown(socket.SHUT_WR); print("reply", c.recv(100).decode(), flush=True); c.close()
"#;

#[test]
fn tcp_updates_add_up_to_the_end_totals() -> Result<()> {
    setup()?;
    let (client, server) = TestHost::pair()?;
    let addr = server.ns_addr_v4().to_string();
    let agent = agent(&["--update-interval", "1"])?;
    let srv = spawn_py(&server, SINK_SERVER, &[addr.clone(), "9301".into()])?;
    wait_for_line(&srv, "listening", Duration::from_secs(10))?;
    // 12 chunks 0.5 s apart: 6 s open, at least three 1 s updates even when the agent's tick
    // drifts on a slow (emulated) machine.
    let args = [
        addr.clone(),
        "9301".into(),
        "12".into(),
        "1000".into(),
        "0.5".into(),
    ];
    let cli = spawn_py(&client, DRIP_CLIENT, &args)?;
    let port: u16 = wait_for_line(&cli, "port", Duration::from_secs(10))?[5..]
        .trim()
        .parse()?;
    let out = finish(cli, Duration::from_secs(30))?;
    ensure!(
        out.contains("reply 12000"),
        "server did not get 12000 bytes: {out}"
    );
    let mine = |e: &Value| e["src_port"] == port && e["dest_ip"] == addr.as_str();
    let end = agent.wait_for(
        |e| mine(e) && e["event_action"] == "end" && e["attribution"] == "connector",
        EVENT_TIMEOUT,
    )?;
    let events = agent.events();
    let updates: Vec<&Value> = events
        .iter()
        .filter(|e| mine(e) && e["event_action"] == "update" && e["flow_id"] == end["flow_id"])
        .collect();
    ensure!(
        updates.len() >= 3,
        "expected at least 3 updates, got {}: {updates:#?}",
        updates.len()
    );
    for (field, total) in [
        ("out_bytes", "out_bytes"),
        ("in_bytes", "in_bytes"),
        ("out_pkts", "orig_pkts"),
        ("in_pkts", "resp_pkts"),
    ] {
        let sum: u64 = updates.iter().map(|e| iv(e, field)).sum::<u64>() + iv(&end, field);
        ensure!(
            sum == u(&end, total),
            "interval {field} of {} updates + end = {sum}, end total {total} = {}\nupdates: {updates:#?}\nend: {end:#}",
            updates.len(),
            u(&end, total)
        );
    }
    ensure!(u(&end, "out_bytes") == 12000, "out_bytes: {end:#}");
    ensure!(
        u(&end, "in_bytes") == 5,
        "in_bytes (the reply \"12000\"): {end:#}"
    );
    // Totals only grow from one update to the next.
    for pair in updates.windows(2) {
        ensure!(
            u(pair[1], "out_bytes") >= u(pair[0], "out_bytes"),
            "{pair:#?}"
        );
    }
    finish(srv, Duration::from_secs(10))?;
    Ok(())
}

#[test]
fn deleted_executable_is_reported_as_deleted() -> Result<()> {
    setup()?;
    let (client, server) = TestHost::pair()?;
    let addr = server.ns_addr_v4().to_string();
    let agent = agent(&[])?;
    let srv = spawn_py(&server, SINK_SERVER, &[addr.clone(), "9302".into()])?;
    wait_for_line(&srv, "listening", Duration::from_secs(10))?;
    // A private copy of the interpreter that unlinks itself before it connects.
    let copy = std::env::temp_dir().join(format!("flowtest-deleted-{}", std::process::id()));
    std::fs::copy(std::fs::canonicalize(python()?)?, &copy).context("copying python")?;
    let script = r#"
import os, socket, sys, time
os.unlink(sys.argv[3])
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
print("port", c.getsockname()[1], flush=True)
c.sendall(b"y" * 10); time.sleep(0.3); c.shutdown(socket.SHUT_WR); c.recv(10); c.close()
"#;
    let cli = client
        .cmd(&copy.display().to_string())
        .arg("-c")
        .arg(script)
        .args([addr.clone(), "9302".into(), copy.display().to_string()])
        .spawn()?;
    let pid = cli.pid();
    let port: u16 = wait_for_line(&cli, "port", Duration::from_secs(10))?[5..]
        .trim()
        .parse()?;
    let start = agent.wait_for(
        |e| {
            e["dest_ip"] == addr.as_str()
                && e["src_port"] == port
                && e["event_action"] == "start"
                && e["pid"] == pid
        },
        EVENT_TIMEOUT,
    )?;
    finish(cli, Duration::from_secs(20))?;
    ensure!(!copy.exists(), "the copy should be gone");
    ensure!(
        start["image_path"] == copy.display().to_string(),
        "image_path should be the path it ran from: {start:#}"
    );
    ensure!(start["image_deleted"] == true, "image_deleted: {start:#}");
    finish(srv, Duration::from_secs(10))?;
    Ok(())
}

#[test]
fn process_that_changed_user_is_reported_as_that_user() -> Result<()> {
    setup()?;
    flow_agent_tests::require_tools(&["setpriv", "curl"])?;
    let (client, server) = TestHost::pair()?;
    let addr = server.ns_addr_v4().to_string();
    let agent = agent(&[])?;
    let srv = spawn_py(&server, SINK_SERVER, &[addr.clone(), "9303".into()])?;
    wait_for_line(&srv, "listening", Duration::from_secs(10))?;
    // setpriv drops to nobody:nogroup and execs curl, as a daemon dropping privileges would.
    let cli = client
        .cmd("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "curl",
            "-s",
            "-m",
            "3",
        ])
        .arg(format!("telnet://{addr}:9303"))
        .spawn()?;
    let pid = cli.pid();
    let start = agent.wait_for(
        |e| e["pid"] == pid && e["dest_port"] == 9303 && e["event_action"] == "start",
        EVENT_TIMEOUT,
    )?;
    let _ = cli.kill();
    ensure!(
        start["uid"] == 65534 && start["gid"] == 65534,
        "uid/gid: {start:#}"
    );
    let user = passwd_name("/etc/passwd", 65534)?;
    let group = passwd_name("/etc/group", 65534)?;
    ensure!(
        start["user"] == user.as_str(),
        "user should be {user}: {start:#}"
    );
    ensure!(
        start["group"] == group.as_str(),
        "group should be {group}: {start:#}"
    );
    ensure!(start["exe"] == "curl", "exe: {start:#}");
    Ok(())
}

/// The name /etc/passwd or /etc/group gives an id.
fn passwd_name(file: &str, id: u32) -> Result<String> {
    let text = std::fs::read_to_string(file)?;
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == id.to_string()).then(|| f[0].to_string())
        })
        .with_context(|| format!("no id {id} in {file}"))
}

#[test]
fn process_in_a_new_cgroup_carries_its_id_and_path() -> Result<()> {
    setup()?;
    let (client, server) = TestHost::pair()?;
    let addr = server.ns_addr_v4().to_string();
    let root = cgroup2_root()?;
    let name = format!("flowtest-{}", std::process::id());
    let dir = root.join(&name);
    std::fs::create_dir(&dir).context("creating a cgroup")?;
    let id = std::fs::metadata(&dir)?.ino();
    let agent = agent(&[])?;
    let srv = spawn_py(&server, SINK_SERVER, &[addr.clone(), "9304".into()])?;
    wait_for_line(&srv, "listening", Duration::from_secs(10))?;
    // The test moves the shell into the cgroup (inside `ip netns exec` /sys is the namespace's
    // own mount, without the cgroup tree); the shell waits for that, then execs the client.
    let script = format!(
        "while ! grep -q '/{name}$' /proc/$$/cgroup; do sleep 0.05; done; exec {} -c 'import socket; c=socket.create_connection((\"{addr}\", 9304)); c.sendall(b\"z\"); c.shutdown(1); c.recv(9)'",
        python()?.display()
    );
    let cli = client.cmd("sh").arg("-c").arg(&script).spawn()?;
    let pid = cli.pid();
    std::fs::write(dir.join("cgroup.procs"), pid.to_string()).context("moving the client")?;
    let result = (|| -> Result<()> {
        let end = agent.wait_for(
            |e| e["pid"] == pid && e["dest_port"] == 9304 && e["event_action"] == "end",
            EVENT_TIMEOUT,
        )?;
        ensure!(end["cgroup_id"] == id, "cgroup_id should be {id}: {end:#}");
        ensure!(
            end["cgroup_path"] == format!("/{name}"),
            "cgroup_path: {end:#}"
        );
        Ok(())
    })();
    finish(cli, Duration::from_secs(10))?;
    finish(srv, Duration::from_secs(10))?;
    std::fs::remove_dir(&dir).context("removing the test cgroup")?;
    result
}

fn cgroup2_root() -> Result<std::path::PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    info.lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(std::path::PathBuf::from))?
        })
        .context("no cgroup2 mount")
}

/// Community ID of every packet in a capture, as tshark computes it (one per flow here).
fn tshark_community_ids(pcap: &std::path::Path) -> Result<std::collections::BTreeSet<String>> {
    let out = flow_agent_tests::Cmd::host("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args([
            "--enable-protocol",
            "communityid",
            "-T",
            "fields",
            "-e",
            "communityid",
        ])
        .run()?;
    Ok(out
        .stdout_str()
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("1:"))
        .map(str::to_string)
        .collect())
}

#[test]
fn community_id_matches_tshark_on_captured_traffic() -> Result<()> {
    setup()?;
    flow_agent_tests::require_tools(&["tshark", "dumpcap"])?;
    let (client, server) = TestHost::pair()?;
    let addr = server.ns_addr_v4().to_string();
    let agent = agent(&["--udp-idle-timeout", "1"])?;
    let dir = flow_agent_tests::TempDir::new("ftcid")?;
    let pcap = dir.path().join("cid.pcap");
    let cap = start_capture(&client, &[], "port 9305", &pcap)?;
    let srv = spawn_py(&server, SINK_SERVER, &[addr.clone(), "9305".into()])?;
    wait_for_line(&srv, "listening", Duration::from_secs(10))?;
    let args = [
        addr.clone(),
        "9305".into(),
        "1".into(),
        "10".into(),
        "0".into(),
    ];
    let cli = spawn_py(&client, DRIP_CLIENT, &args)?;
    let port: u16 = wait_for_line(&cli, "port", Duration::from_secs(10))?[5..]
        .trim()
        .parse()?;
    finish(cli, Duration::from_secs(20))?;
    finish(srv, Duration::from_secs(10))?;
    let udp = "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'q', (sys.argv[1], 9305))";
    let u = spawn_py(&client, udp, std::slice::from_ref(&addr))?;
    finish(u, Duration::from_secs(10))?;
    // Port 9305 serves another test at the same time, in other namespaces: only flows to this
    // test's server.
    let tcp_end = agent.wait_for(
        |e| {
            e["dest_ip"] == addr.as_str()
                && e["src_port"] == port
                && e["event_action"] == "end"
                && e["attribution"] == "connector"
        },
        EVENT_TIMEOUT,
    )?;
    let udp_start = agent.wait_for(
        |e| {
            e["dest_ip"] == addr.as_str()
                && e["dest_port"] == 9305
                && e["transport_protocol"] == "udp"
                && e["local_orig"] == true
        },
        EVENT_TIMEOUT,
    )?;
    stop_capture(cap, &pcap, &client)?;
    let ids = tshark_community_ids(&pcap)?;
    for ev in [&tcp_end, &udp_start] {
        let id = ev["community_id"]
            .as_str()
            .context("event has no community_id")?;
        ensure!(
            ids.contains(id),
            "agent's {id} not among tshark's {ids:?}: {ev:#}"
        );
    }
    Ok(())
}

/// Server: accepts connections, sends each one byte and holds them open until killed.
const HOLD_SERVER: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen()
print("listening", flush=True)
held = []
while True:
    c, _ = s.accept(); c.sendall(b"x"); held.append(c)
"#;

/// Client: opens three connections; closes the first itself, then exits leaving the second
/// (nothing unread: the kernel sends a FIN) and the third (a byte unread: the kernel sends a
/// RST) for the kernel to close.
const EXIT_CLIENT: &str = r#"
import os, socket, sys, time
conns = [socket.create_connection((sys.argv[1], int(sys.argv[2]))) for _ in range(3)]
for c in conns[:2]:
    c.recv(1)
time.sleep(0.3)
print("ports", *[c.getsockname()[1] for c in conns], flush=True)
conns[0].close()
time.sleep(0.3)
os._exit(0)
"#;

#[test]
fn connections_closed_by_process_exit_say_so() -> Result<()> {
    setup()?;
    let (client, server) = TestHost::pair()?;
    let addr = server.ns_addr_v4().to_string();
    let agent = agent(&[])?;
    let srv = spawn_py(&server, HOLD_SERVER, &[addr.clone(), "9305".into()])?;
    wait_for_line(&srv, "listening", Duration::from_secs(10))?;
    let cli = spawn_py(&client, EXIT_CLIENT, &[addr.clone(), "9305".into()])?;
    let pid = cli.pid();
    let ports: Vec<u16> = wait_for_line(&cli, "ports", Duration::from_secs(10))?[6..]
        .split(' ')
        .map(|p| p.trim().parse())
        .collect::<Result<_, _>>()?;
    ensure!(ports.len() == 3, "ports: {ports:?}");
    finish(cli, Duration::from_secs(20))?;
    // Client ports are only unique in the client's namespace: the flows to this test's server.
    let end_of = |port: u16| {
        agent.wait_for(
            |e| {
                e["dest_ip"] == addr.as_str()
                    && e["src_port"] == port
                    && e["event_action"] == "end"
                    && e["attribution"] == "connector"
            },
            EVENT_TIMEOUT,
        )
    };
    let closed = end_of(ports[0])?;
    let left_open = end_of(ports[1])?;
    let unread = end_of(ports[2])?;
    ensure!(
        closed["end_reason"] == "fin" && closed["pid"] == pid,
        "closed by the process itself: {closed:#}"
    );
    ensure!(
        left_open["end_reason"] == "process_exit" && left_open["pid"] == pid,
        "left open at exit: {left_open:#}"
    );
    // Unread data at close: the kernel resets the connection instead of a FIN.
    ensure!(
        unread["end_reason"] == "process_exit"
            && unread["conn_state"] == "RSTO"
            && unread["pid"] == pid,
        "left open with unread data at exit: {unread:#}"
    );
    let _ = srv.kill();
    Ok(())
}
