//! Who a flow's process is, exactly, on the real kernel: the SHA-256 of its executable (also
//! of one deleted while it runs), and user and group names known only through NSS.
mod common;

use std::{path::Path, process::Command, time::Duration};

use anyhow::{ensure, Context, Result};
use common::{agent, finish, python, setup, spawn_py, wait_for_line, EVENT_TIMEOUT, SINK_SERVER};
use flow_agent_tests::TestHost;

/// Client, run by a private copy of the interpreter: unlinks that copy when asked, connects,
/// stays connected for 8 s (updates every second: the digest is computed off the event path
/// and reaches the flow's next event once known, seconds later on a busy host), then closes.
const CLIENT: &str = r#"
import os, socket, sys, time
if sys.argv[4] == "unlink": os.unlink(sys.argv[3])
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
print("port", c.getsockname()[1], flush=True)
c.sendall(b"z" * 10); time.sleep(8); c.close()
"#;

/// `sha256sum FILE`'s digest.
fn sha256sum(file: &Path) -> Result<String> {
    let out = Command::new("sha256sum").arg(file).output()?;
    ensure!(out.status.success(), "sha256sum {}", file.display());
    let text = String::from_utf8(out.stdout)?;
    Ok(text
        .split_whitespace()
        .next()
        .context("no digest")?
        .to_string())
}

/// Runs the client from a copy of python (unlinked first when `unlink`), and returns its flow's
/// first event with a digest and the copy's `sha256sum`.
fn flow_of_a_copy(name: &str, port: u16, unlink: bool) -> Result<(serde_json::Value, String)> {
    setup()?;
    let (client, server) = TestHost::pair()?;
    let addr = server.ns_addr_v4().to_string();
    let agent = agent(&["--update-interval", "1"])?;
    let srv = spawn_py(&server, SINK_SERVER, &[addr.clone(), port.to_string()])?;
    wait_for_line(&srv, "listening", Duration::from_secs(10))?;
    let copy = std::env::temp_dir().join(format!("flowtest-{name}-{}", std::process::id()));
    std::fs::copy(std::fs::canonicalize(python()?)?, &copy).context("copying python")?;
    let want = sha256sum(&copy)?;
    let cli = client
        .cmd(&copy.display().to_string())
        .arg("-c")
        .arg(CLIENT)
        .args([addr.clone(), port.to_string(), copy.display().to_string()])
        .arg(if unlink { "unlink" } else { "keep" })
        .spawn()?;
    let pid = cli.pid();
    let src_port: u16 = wait_for_line(&cli, "port", Duration::from_secs(10))?[5..]
        .trim()
        .parse()?;
    let end = agent.wait_for(
        |e| {
            e["src_port"] == src_port
                && e["dest_ip"] == addr.as_str()
                && e["pid"] == pid
                && e.get("image_sha256").is_some()
        },
        EVENT_TIMEOUT,
    );
    finish(cli, Duration::from_secs(20))?;
    let _ = std::fs::remove_file(&copy);
    let _ = srv.kill();
    let end = end?;
    ensure!(
        end["image_path"] == copy.display().to_string(),
        "image_path: {end:#}"
    );
    Ok((end, want))
}

#[test]
fn image_sha256_is_the_sha256sum_of_the_executable() -> Result<()> {
    let (end, want) = flow_of_a_copy("hash", 9331, false)?;
    ensure!(end["image_deleted"] == false, "image_deleted: {end:#}");
    ensure!(
        end["image_sha256"] == want.as_str(),
        "image_sha256 should be {want}: {end:#}"
    );
    Ok(())
}

#[test]
fn image_sha256_of_a_deleted_executable_is_of_the_file_it_ran() -> Result<()> {
    let (end, want) = flow_of_a_copy("hash-deleted", 9332, true)?;
    ensure!(end["image_deleted"] == true, "image_deleted: {end:#}");
    ensure!(
        end["image_sha256"] == want.as_str(),
        "image_sha256 should be {want}: {end:#}"
    );
    Ok(())
}

/// A user and group that only nss-systemd knows: systemd userdb drop-ins in /run/userdb,
/// removed when dropped.
struct NssOnlyUser {
    files: Vec<std::path::PathBuf>,
}

impl NssOnlyUser {
    fn create(name: &str, id: u32) -> Result<Self> {
        let nsswitch = std::fs::read_to_string("/etc/nsswitch.conf")?;
        ensure!(
            nsswitch
                .lines()
                .any(|l| l.starts_with("passwd:") && l.contains("systemd")),
            "nsswitch.conf does not ask nss-systemd (libnss-systemd, installed by xtask setup)"
        );
        let passwd = std::fs::read_to_string("/etc/passwd")?;
        ensure!(
            !passwd
                .lines()
                .any(|l| l.split(':').nth(2) == Some(&id.to_string())),
            "uid {id} is in /etc/passwd"
        );
        // userdb finds a record by name in NAME.user and by id in UID.user (a symlink).
        let dir = Path::new("/run/userdb");
        std::fs::create_dir_all(dir)?;
        let mut files = Vec::new();
        for (kind, record) in [
            (
                "user",
                format!(r#"{{"userName":"{name}","uid":{id},"gid":{id},"disposition":"regular"}}"#),
            ),
            (
                "group",
                format!(r#"{{"groupName":"{name}","gid":{id},"disposition":"regular"}}"#),
            ),
        ] {
            let file = dir.join(format!("{name}.{kind}"));
            std::fs::write(&file, record)?;
            let by_id = dir.join(format!("{id}.{kind}"));
            let _ = std::fs::remove_file(&by_id);
            std::os::unix::fs::symlink(&file, &by_id)?;
            files.extend([file, by_id]);
        }
        Ok(Self { files })
    }
}

impl Drop for NssOnlyUser {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

#[test]
fn a_user_known_only_through_nss_is_named() -> Result<()> {
    setup()?;
    flow_agent_tests::require_tools(&["setpriv", "curl", "getent"])?;
    // In systemd's dynamic user range, away from the packages' system users.
    let id = 61_184 + std::process::id() % 4000;
    let name = format!("flowtest{id}");
    let _user = NssOnlyUser::create(&name, id)?;
    let out = Command::new("getent")
        .args(["passwd", &id.to_string()])
        .output()?;
    ensure!(
        String::from_utf8_lossy(&out.stdout).starts_with(&format!("{name}:")),
        "getent does not name uid {id}: {out:?}"
    );
    let (client, server) = TestHost::pair()?;
    let addr = server.ns_addr_v4().to_string();
    let agent = agent(&[])?;
    let srv = spawn_py(&server, SINK_SERVER, &[addr.clone(), "9333".into()])?;
    wait_for_line(&srv, "listening", Duration::from_secs(10))?;
    let cli = client
        .cmd("setpriv")
        .args([
            &format!("--reuid={id}"),
            &format!("--regid={id}"),
            "--clear-groups",
            "curl",
            "-s",
            "-m",
            "3",
        ])
        .arg(format!("telnet://{addr}:9333"))
        .spawn()?;
    let pid = cli.pid();
    let start = agent.wait_for(
        |e| e["pid"] == pid && e["dest_port"] == 9333 && e["event_action"] == "start",
        EVENT_TIMEOUT,
    );
    let _ = cli.kill();
    let _ = srv.kill();
    let start = start?;
    ensure!(
        start["uid"] == id && start["gid"] == id,
        "uid/gid: {start:#}"
    );
    ensure!(
        start["user"] == name.as_str() && start["group"] == name.as_str(),
        "user and group should be {name}: {start:#}"
    );
    Ok(())
}

/// Client as root: drops the effective uid and gid to nobody (keeping the real ones), then
/// connects, as a daemon switching identity for one task would.
const SWITCHED_CLIENT: &str = r#"
import os, socket, sys, time
os.setresgid(0, 65534, 0); os.setresuid(0, 65534, 0)
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
print("port", c.getsockname()[1], flush=True)
c.sendall(b"e" * 10); time.sleep(0.5); c.close()
"#;

#[test]
fn a_root_process_that_switched_its_effective_uid_carries_both() -> Result<()> {
    setup()?;
    let (client, server) = TestHost::pair()?;
    let addr = server.ns_addr_v4().to_string();
    let agent = agent(&[])?;
    let srv = spawn_py(&server, SINK_SERVER, &[addr.clone(), "9334".into()])?;
    wait_for_line(&srv, "listening", Duration::from_secs(10))?;
    let cli = spawn_py(&client, SWITCHED_CLIENT, &[addr.clone(), "9334".into()])?;
    let pid = cli.pid();
    let loginuid = std::fs::read_to_string(format!("/proc/{pid}/loginuid"))?;
    let src_port: u16 = wait_for_line(&cli, "port", Duration::from_secs(10))?[5..]
        .trim()
        .parse()?;
    let start = agent.wait_for(
        |e| e["src_port"] == src_port && e["pid"] == pid && e["event_action"] == "start",
        EVENT_TIMEOUT,
    );
    finish(cli, Duration::from_secs(20))?;
    let _ = srv.kill();
    let start = start?;
    ensure!(
        start["uid"] == 0 && start["user"] == "root" && start["gid"] == 0,
        "real ids: {start:#}"
    );
    ensure!(
        start["euid"] == 65534 && start["effective_user"] == "nobody" && start["egid"] == 65534,
        "effective ids: {start:#}"
    );
    // The login uid is inherited from the session the tests run in; unset outside one.
    match loginuid.trim().parse::<u32>()? {
        u32::MAX => ensure!(start.get("auid").is_none(), "auid: {start:#}"),
        auid => ensure!(start["auid"] == auid, "auid {auid}: {start:#}"),
    }
    Ok(())
}

/// Forks a child that connects without exec; the parent connects too, after the child.
const FORKING_CLIENT: &str = r#"
import os, socket, sys, time
def go(tag):
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
    print(tag, os.getpid(), c.getsockname()[1], flush=True)
    c.sendall(b"f" * 10); time.sleep(0.3); c.close()
child = os.fork()
if child == 0:
    go("child"); os._exit(0)
os.waitpid(child, 0)
go("parent")
"#;

#[test]
fn a_fork_without_exec_is_marked_inherited() -> Result<()> {
    setup()?;
    let (client, server) = TestHost::pair()?;
    let addr = server.ns_addr_v4().to_string();
    let agent = agent(&[])?;
    let srv = spawn_py(&server, SINK_SERVER, &[addr.clone(), "9335".into()])?;
    wait_for_line(&srv, "listening", Duration::from_secs(10))?;
    let cli = spawn_py(&client, FORKING_CLIENT, &[addr.clone(), "9335".into()])?;
    let parse = |line: String| -> Result<(u32, u16)> {
        let mut f = line.split_whitespace().skip(1);
        Ok((
            f.next().context("pid")?.parse()?,
            f.next().context("port")?.parse()?,
        ))
    };
    let (child_pid, child_port) = parse(wait_for_line(&cli, "child", Duration::from_secs(10))?)?;
    let (parent_pid, parent_port) = parse(wait_for_line(&cli, "parent", Duration::from_secs(10))?)?;
    let start_of = |pid: u32, port: u16| {
        agent.wait_for(
            |e| e["src_port"] == port && e["pid"] == pid && e["event_action"] == "start",
            EVENT_TIMEOUT,
        )
    };
    let child = start_of(child_pid, child_port);
    let parent = start_of(parent_pid, parent_port);
    finish(cli, Duration::from_secs(20))?;
    let _ = srv.kill();
    let (child, parent) = (child?, parent?);
    ensure!(
        child["image_inherited"] == true && child["ppid"] == parent_pid,
        "the child forked without exec: {child:#}"
    );
    ensure!(
        child["image_path"] == parent["image_path"]
            && child["process_entity_id"] != parent["process_entity_id"],
        "the child has its parent's image and its own entity id: {child:#} {parent:#}"
    );
    ensure!(
        parent.get("image_inherited").is_none(),
        "the parent exec'd: {parent:#}"
    );
    Ok(())
}
