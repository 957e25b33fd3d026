//! Hostile input: what whoever starts a process chooses (its command line, its executable's
//! name and path, how it is executed) reaches the events intact, losslessly, and never breaks
//! the output; processes that vanish while the agent reads /proc do not disturb it.
//!
//! The faults (SIGKILL, a full ring, full tables) are in `hardening_faults.rs`, the storm in
//! `overload.rs`; hostile strings in every output format in `encoders.rs`.
//!
//! Needs root, kernel BTF, iproute2, python3 and bash.

mod common;

use anyhow::{ensure, Context, Result};
use common::*;
use flow_agent_tests::{require_tools, Agent, TempDir, TestHost};
use serde_json::Value;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Accepts connections one after another and reads each to EOF. Args: address, port.
const SERVER: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    while c.recv(4096):
        pass
    c.close()
"#;

/// Connects to argv[1]:argv[2], prints `port N`, sends a byte and closes. Further arguments
/// are only there to be seen.
const CONNECT: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
print("port", c.getsockname()[1], flush=True)
c.sendall(b"x")
c.close()
"#;

const PORT: u16 = 9410;

/// The start of the connection from client port `port` to this test's server at `addr`. Every
/// test here serves PORT in its own namespaces, where client ports may coincide: the server's
/// address is what is the test's own.
fn is_start_of(e: &Value, addr: &str, port: u16) -> bool {
    e["dest_ip"] == addr
        && e["dest_port"] == PORT
        && e["src_port"] == port
        && e["event_action"] == "start"
}

/// A server in its own namespace and a client namespace to run hostile programs in.
struct Stage {
    client: TestHost,
    _server: TestHost,
    _server_proc: flow_agent_tests::Spawned,
    addr: String,
    agent: Agent,
}

impl Stage {
    fn new() -> Result<Stage> {
        setup()?;
        require_tools(&["bash"])?;
        let (client, server) = TestHost::pair()?;
        let addr = server.ns_addr_v4().to_string();
        let agent = agent(&[])?;
        let server_proc = spawn_py(&server, SERVER, &[addr.clone(), PORT.to_string()])?;
        wait_for_line(&server_proc, "listening", Duration::from_secs(10))?;
        Ok(Stage {
            client,
            _server: server,
            _server_proc: server_proc,
            addr,
            agent,
        })
    }

    /// Runs `program ARGS...` in the client namespace (through `env`, which takes a path of
    /// any bytes), where ARGS make it connect to the server and print `port N`; returns the
    /// start event of its connection.
    fn connect_with(&self, program: &Path, args: &[&[u8]]) -> Result<Value> {
        let p = self
            .client
            .cmd("env")
            .arg(program)
            .args(args.iter().map(|a| OsStr::from_bytes(a)))
            .spawn()?;
        let pid = p.pid();
        let port: u16 = wait_for_line(&p, "port", Duration::from_secs(20))?[5..]
            .trim()
            .parse()?;
        finish(p, Duration::from_secs(20))?;
        let start = self
            .agent
            .wait_for(|e| is_start_of(e, &self.addr, port), EVENT_TIMEOUT)?;
        ensure!(
            start["pid"] == pid,
            "the connection of pid {pid} was attributed to another process: {start}"
        );
        Ok(start)
    }

    /// Stops the agent; every line it printed must have been one JSON object.
    fn finish(self) -> Result<()> {
        let bad = self.agent.non_json_lines();
        ensure!(bad.is_empty(), "stdout lines that are not JSON: {bad:?}");
        self.agent.stop()?;
        Ok(())
    }
}

/// The bytes bash gives for each word of `words` (a shell line): `printf '%s\0' WORDS`.
fn bash_words(words: &str) -> Result<Vec<Vec<u8>>> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("printf '%s\\0' {words}"))
        .output()
        .context("running bash")?;
    ensure!(out.status.success(), "bash rejected {words:?}: {out:?}");
    let mut v: Vec<Vec<u8>> = out.stdout.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
    v.pop();
    Ok(v)
}

/// The bytes an event's text value stands for (docs/events.md, "Bytes that are not UTF-8"):
/// a value starting with `$'` is bash's ANSI-C quoting, any other is the bytes of its text.
fn value_bytes(v: &Value) -> Result<Vec<u8>> {
    let s = v.as_str().with_context(|| format!("not a string: {v}"))?;
    if !s.starts_with("$'") {
        return Ok(s.as_bytes().to_vec());
    }
    let mut words = bash_words(s)?;
    ensure!(words.len() == 1, "{s:?} is not one quoted word");
    Ok(words.remove(0))
}

/// A private copy of the system's python3 at `path` (made executable).
fn copy_python(path: &Path) -> Result<()> {
    std::fs::copy(std::fs::canonicalize(python()?)?, path)
        .with_context(|| format!("copying python3 to {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[test]
fn a_64_kib_command_line_is_cut_flagged_and_stays_one_json_line() -> Result<()> {
    let stage = Stage::new()?;
    // 64 KiB of what breaks naive encoders: quotes, backslashes, newlines, a NUL-free mix.
    let unit = b"a'b\"c\\d\n\te$(x)`y`;|&<>\r";
    let long: Vec<u8> = unit.iter().copied().cycle().take(64 * 1024).collect();
    let python = python()?;
    let port = PORT.to_string();
    let args: [&[u8]; 5] = [
        b"-c",
        CONNECT.as_bytes(),
        stage.addr.as_bytes(),
        port.as_bytes(),
        &long,
    ];
    let start = stage.connect_with(&python, &args)?;
    check(
        "start of the 64 KiB command line",
        &start,
        &[("command_line_truncated", true.into())],
    )?;
    let kept = start["process_args"]
        .as_array()
        .context("process_args")?
        .iter()
        .map(value_bytes)
        .collect::<Result<Vec<_>>>()?;
    // Arguments and the NULs between them.
    let kept_bytes: usize = kept.iter().map(|a| a.len() + 1).sum::<usize>() - 1;
    ensure!(
        kept_bytes <= 4096 && kept_bytes > 2048,
        "{kept_bytes} bytes of argv kept, want at most 4096 (and most of them)"
    );
    ensure!(
        kept.len() == 6 && kept[1] == b"-c" && kept[2] == CONNECT.as_bytes(),
        "the first arguments are not the ones given: {:?}",
        &start["process_args"]
    );
    ensure!(
        !kept[5].is_empty() && long.starts_with(&kept[5]) && kept[5].len() < long.len(),
        "the long argument is not cut to a prefix of itself ({} bytes kept)",
        kept[5].len()
    );
    // A shell reads the command line back into the same (cut) arguments.
    let line = start["command_line"].as_str().context("command_line")?;
    ensure!(
        bash_words(line)? == kept,
        "command_line does not read back into process_args: {line:?}"
    );
    stage.finish()
}

#[test]
fn names_and_arguments_that_are_not_utf8_are_reported_losslessly() -> Result<()> {
    let stage = Stage::new()?;
    let dir = TempDir::new("hardening-utf8")?;
    let sub = dir.path().join(OsStr::from_bytes(b"d\xff\x01ir"));
    std::fs::create_dir(&sub)?;
    // A name with a byte that is not UTF-8, a quote, a backslash and a newline.
    let name: &[u8] = b"py\xfe'\\\n";
    let exe = sub.join(OsStr::from_bytes(name));
    copy_python(&exe)?;
    let hostile_arg: &[u8] = b"\xff\xc3'\\$'x'\n\x1b[31m";
    let port = PORT.to_string();
    let args: [&[u8]; 5] = [
        b"-c",
        CONNECT.as_bytes(),
        stage.addr.as_bytes(),
        port.as_bytes(),
        hostile_arg,
    ];
    let start = stage.connect_with(&exe, &args)?;

    let real_path = std::fs::canonicalize(&exe)?;
    let want_path = real_path.as_os_str().as_bytes();
    ensure!(
        value_bytes(&start["image_path"])? == want_path,
        "image_path {} is not {:?}",
        start["image_path"],
        real_path
    );
    ensure!(
        value_bytes(&start["exe"])? == name,
        "exe {} is not the executable's name",
        start["exe"]
    );
    // comm: the name exec() was given, cut to 15 bytes.
    ensure!(
        value_bytes(&start["process_name"])? == name[..name.len().min(15)],
        "process_name {}",
        start["process_name"]
    );
    let mut want_args: Vec<Vec<u8>> = vec![exe.as_os_str().as_bytes().to_vec()];
    want_args.extend(args.iter().map(|a| a.to_vec()));
    let got: Vec<Vec<u8>> = start["process_args"]
        .as_array()
        .context("process_args")?
        .iter()
        .map(value_bytes)
        .collect::<Result<_>>()?;
    ensure!(
        got == want_args,
        "process_args do not give back argv: {}",
        start["process_args"]
    );
    let line = start["command_line"].as_str().context("command_line")?;
    ensure!(
        bash_words(line)? == want_args,
        "bash does not read command_line back into argv: {line:?}"
    );
    ensure!(
        start["command_line_truncated"] == false,
        "{}",
        start["command_line_truncated"]
    );
    stage.finish()
}

/// Execs a copy of python3 from a file descriptor and never from a path: a memfd (argv[3] =
/// "memfd") or a file deleted before the exec (argv[3] = its path). The new image runs
/// [`CONNECT`] with argv[1], argv[2].
const FD_EXEC: &str = r#"
import os, sys
addr, port, how = sys.argv[1], sys.argv[2], sys.argv[3]
image = open(os.path.realpath(sys.executable), "rb").read()
if how == "memfd":
    fd = os.memfd_create("payload", 0)
    with os.fdopen(os.dup(fd), "wb") as f:
        f.write(image)
else:
    with open(how, "wb") as f:
        f.write(image)
    os.chmod(how, 0o755)
    fd = os.open(how, os.O_RDONLY)
    os.unlink(how)
os.execve(fd, ["fileless", "-c", sys.argv[4], addr, port], os.environ)
"#;

#[test]
fn binaries_executed_from_memfd_and_deleted_files_are_named_and_flagged() -> Result<()> {
    let stage = Stage::new()?;
    let dir = TempDir::new("hardening-fd")?;
    let python = python()?;
    let port = PORT.to_string();

    let start = stage.connect_with(
        &python,
        &[
            b"-c",
            FD_EXEC.as_bytes(),
            stage.addr.as_bytes(),
            port.as_bytes(),
            b"memfd",
            CONNECT.as_bytes(),
        ],
    )?;
    check(
        "start of the program executed from a memfd",
        &start,
        &[
            ("image_path", "/memfd:payload".into()),
            ("exe", "memfd:payload".into()),
            ("image_deleted", true.into()),
        ],
    )?;

    let gone = dir.path().join("deleted-before-exec");
    let gone_text = gone.display().to_string();
    let start = stage.connect_with(
        &python,
        &[
            b"-c",
            FD_EXEC.as_bytes(),
            stage.addr.as_bytes(),
            port.as_bytes(),
            gone_text.as_bytes(),
            CONNECT.as_bytes(),
        ],
    )?;
    ensure!(!gone.exists(), "{gone_text} should be gone");
    check(
        "start of the program executed from a deleted file",
        &start,
        &[
            ("image_path", gone_text.clone().into()),
            ("exe", "deleted-before-exec".into()),
            ("image_deleted", true.into()),
        ],
    )?;
    stage.finish()
}

/// Longest name the kernel's path walk keeps whole (its slot, 128 bytes, holds the NUL too).
const LONGEST_NAME: usize = 127;
/// Components of the test's path: the walk has 32 steps (flow_common::PATH_MAX_DEPTH), and
/// each mount point crossed on the way (/tmp may be one) takes one.
const DEEP_PATH: usize = 28;

/// The exec path walk near its limits: an executable 28 components deep whose names all have
/// the longest length kept whole (some 3.5 KiB of path; a walk cut short by a kernel's
/// verifier or a slot too small would show here).
#[test]
fn an_executable_28_deep_with_the_longest_names_is_named_whole() -> Result<()> {
    let stage = Stage::new()?;
    let dir = TempDir::new("hardening-deep")?;
    let top = dir.path().components().count() - 1;
    let dirs = DEEP_PATH - 1 - top;
    let mut deep = dir.path().to_path_buf();
    for i in 0..dirs {
        deep.push(format!("{i:02}{}", "d".repeat(LONGEST_NAME - 2)));
    }
    std::fs::create_dir_all(&deep).with_context(|| format!("creating {}", deep.display()))?;
    let exe_name = "x".repeat(LONGEST_NAME);
    let exe = deep.join(&exe_name);
    copy_python(&exe)?;
    let port = PORT.to_string();
    let start = stage.connect_with(
        &exe,
        &[
            b"-c",
            CONNECT.as_bytes(),
            stage.addr.as_bytes(),
            port.as_bytes(),
        ],
    )?;
    check(
        "start of the program at the deep, long path",
        &start,
        &[
            ("image_path", exe.display().to_string().into()),
            ("exe", exe_name.into()),
            ("image_deleted", false.into()),
        ],
    )?;
    stage.finish()
}

#[test]
fn a_symlinked_executable_is_reported_by_its_real_path() -> Result<()> {
    let stage = Stage::new()?;
    let dir = TempDir::new("hardening-link")?;
    let real = std::fs::canonicalize(python()?)?;
    let link = dir.path().join("innocent");
    std::os::unix::fs::symlink(&real, &link)?;
    let port = PORT.to_string();
    let start = stage.connect_with(
        &link,
        &[
            b"-c",
            CONNECT.as_bytes(),
            stage.addr.as_bytes(),
            port.as_bytes(),
        ],
    )?;
    let real_name = real.file_name().context("file name")?;
    check(
        "start of the program run through a symlink",
        &start,
        &[
            ("image_path", real.display().to_string().into()),
            ("exe", real_name.to_string_lossy().into_owned().into()),
            ("image_deleted", false.into()),
            // comm is the name exec() was given: the link's.
            ("process_name", "innocent".into()),
        ],
    )?;
    ensure!(
        start["process_args"][0] == link.display().to_string(),
        "argv[0] is the link: {}",
        start["process_args"]
    );
    stage.finish()
}

/// Starts and ends processes as fast as it can until killed: /proc entries appear and vanish
/// while the agent reads them.
const CHURN: &str = "while :; do /bin/true; /bin/true & wait; done";

#[test]
fn processes_vanishing_while_the_agent_reads_proc_do_not_disturb_it() -> Result<()> {
    setup()?;
    require_tools(&["bash"])?;
    let (client, server) = TestHost::pair()?;
    let addr = server.ns_addr_v4().to_string();
    let churn: Vec<_> = (0..4)
        .map(|_| client.cmd("bash").arg("-c").arg(CHURN).spawn())
        .collect::<Result<_>>()?;
    // Start-up reads every /proc/PID while they come and go.
    let agent = agent(&[])?;
    let srv = spawn_py(&server, SERVER, &[addr.clone(), PORT.to_string()])?;
    wait_for_line(&srv, "listening", Duration::from_secs(10))?;
    let python = python()?;
    for i in 0..5 {
        let p = client
            .cmd(&python.display().to_string())
            .args([
                "-c",
                CONNECT,
                &addr,
                &PORT.to_string(),
                &format!("round-{i}"),
            ])
            .spawn()?;
        let pid = p.pid();
        let port: u16 = wait_for_line(&p, "port", Duration::from_secs(20))?[5..]
            .trim()
            .parse()?;
        finish(p, Duration::from_secs(20))?;
        let start = agent.wait_for(|e| is_start_of(e, &addr, port), EVENT_TIMEOUT)?;
        check(
            "start of a connection amid process churn",
            &start,
            &[
                ("pid", pid.into()),
                ("command_line_truncated", false.into()),
            ],
        )?;
        ensure!(
            start["process_args"].as_array().and_then(|a| a.last())
                == Some(&format!("round-{i}").into()),
            "wrong arguments: {start}"
        );
    }
    for c in churn {
        c.kill();
    }
    ensure!(agent.non_json_lines().is_empty(), "non-JSON output");
    agent.stop()?;
    Ok(())
}

/// `flow-agent ARGS...` without root or BPF: the command line and the file are judged first.
fn refused(args: &[&OsStr]) -> Result<String> {
    let out = Command::new(Agent::binary()?)
        .args(args)
        .output()
        .context("running flow-agent")?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        out.status.code() == Some(2) && out.stdout.is_empty(),
        "{args:?}: want exit status 2 and no output, got {} with stdout {:?} and stderr {stderr:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    ensure!(
        stderr.contains("error") && !stderr.contains("panicked") && stderr.lines().count() < 50,
        "{args:?}: not a clear error: {stderr:?}"
    );
    Ok(stderr)
}

#[test]
fn command_lines_and_files_wrong_in_every_way_are_refused_clearly() -> Result<()> {
    let dir = TempDir::new("hardening-config")?;
    let os = |s: &'static str| OsStr::new(s);
    let bad_lines: Vec<Vec<&OsStr>> = vec![
        vec![os("--bogus")],
        vec![os("nope")],
        vec![os("run"), os("--config")],
        vec![os("run"), os("--update-interval"), os("abc")],
        vec![os("run"), os("--update-interval"), os("-5")],
        vec![os("run"), os("--update-interval"), os("1e400")],
        vec![os("run"), os("--update-interval"), os("NaN")],
        vec![os("run"), os("--update-interval"), os("0")],
        vec![
            os("run"),
            os("--udp-idle-timeout"),
            os("99999999999999999999"),
        ],
        vec![
            os("run"),
            os("--log-level"),
            os("loud\nlevel=error msg=forged"),
        ],
        vec![os("run"), os("--output"), os("")],
        vec![os("run"), os("--output"), os("file:")],
        vec![os("run"), os("--output"), os("http:ftp://x/")],
        vec![
            os("run"),
            os("--output"),
            OsStr::from_bytes(b"file:/tmp/\xff\n"),
        ],
        vec![os("run"), OsStr::from_bytes(b"--\xff")],
    ];
    for args in &bad_lines {
        refused(args)?;
    }

    let nested = format!("a = {}{}", "[".repeat(100_000), "]".repeat(100_000));
    let garbage: Vec<u8> = (0..65536u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("nested.toml", nested.into_bytes()),
        (
            "not-utf8.toml",
            b"[agent]\nlog_level = \"\xff\xfe\"\n".to_vec(),
        ),
        ("nul.toml", b"[agent]\x00\nlog_level = \"info\"\n".to_vec()),
        ("garbage.toml", garbage),
        (
            "huge-numbers.toml",
            b"[capture]\nring_buffer_bytes = 99999999999999999999999\n".to_vec(),
        ),
        (
            "wrong-types.toml",
            b"agent = 3\nflows = \"x\"\n[[outputs]]\nname = 7\n".to_vec(),
        ),
        (
            "two-sinks.toml",
            b"[[outputs]]\n[outputs.stdout]\n[outputs.file]\npath = \"/tmp/x\"\n".to_vec(),
        ),
        (
            "forged-log.toml",
            b"[agent]\nlog_level = \"x\\nlevel=error msg=forged\"\n".to_vec(),
        ),
    ];
    for (name, bytes) in &files {
        let path = dir.write(name, bytes)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        for cmd in ["check-config", "run"] {
            let stderr = if cmd == "run" {
                refused(&[os("run"), os("--config"), path.as_os_str()])?
            } else {
                refused(&[os(cmd), path.as_os_str()])?
            };
            // No message forges a line of its own: each starts with the agent's prefix.
            ensure!(
                stderr.lines().all(|l| l.starts_with("flow-agent: error: ")),
                "{name}: {stderr:?}"
            );
        }
    }
    for special in ["/", "/dev/null", "/proc/self/status"] {
        refused(&[os("check-config"), os(special)])?;
    }
    Ok(())
}

#[test]
fn the_agent_starts_no_program_and_no_process() -> Result<()> {
    setup()?;
    require_tools(&["strace"])?;
    let stage_dir = TempDir::new("hardening-exec")?;
    let trace = stage_dir.path().join("trace");
    let config = stage_dir.write("agent.toml", "[health]\nmetrics_listen = \"\"\n")?;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600))?;
    // A PATH where every name a careless program might look up is a trap.
    let traps = stage_dir.path().join("bin");
    std::fs::create_dir(&traps)?;
    for name in [
        "sh", "bash", "mount", "modprobe", "ip", "ss", "python3", "cat",
    ] {
        let p = traps.join(name);
        std::fs::write(&p, "#!/bin/sh\nexit 1\n")?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    }
    let trace_arg = trace.display().to_string();
    let path_env = format!("PATH={}", traps.display());
    let config_arg = config.display().to_string();
    let agent = Agent::start_under(
        &[
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=execve,execveat,fork,vfork,clone,clone3",
            "-o",
            &trace_arg,
            "env",
            &path_env,
        ],
        &["--config", &config_arg],
    )?;
    // A session: flows, a reload, a shutdown.
    let (client, server) = TestHost::pair()?;
    let addr = server.ns_addr_v4().to_string();
    let srv = spawn_py(&server, SERVER, &[addr.clone(), PORT.to_string()])?;
    wait_for_line(&srv, "listening", Duration::from_secs(10))?;
    let p = client
        .cmd(&python()?.display().to_string())
        .args(["-c", CONNECT, &addr, &PORT.to_string()])
        .spawn()?;
    let port: u16 = wait_for_line(&p, "port", Duration::from_secs(20))?[5..]
        .trim()
        .parse()?;
    finish(p, Duration::from_secs(20))?;
    agent.wait_for(
        |e| {
            e["dest_ip"] == addr.as_str()
                && e["dest_port"] == PORT
                && e["src_port"] == port
                && is_end(e)
        },
        EVENT_TIMEOUT,
    )?;
    // SAFETY: kill(2) on the agent's pid while it runs.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) };
    let deadline = std::time::Instant::now() + flow_agent_tests::slowed(Duration::from_secs(30));
    while !agent.stderr().contains("configuration reloaded") {
        ensure!(
            std::time::Instant::now() < deadline,
            "no reload: {}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    agent.stop()?;

    let text = std::fs::read_to_string(&trace)?;
    // strace runs `env`, which execs the agent; the agent's start-up self-check runs its own
    // binary once (`flow-agent version`, by its absolute path, with no environment: the one
    // exception of promise 11, before the capabilities are dropped). Any other attempt, even
    // a failed one, is a program the agent tried to run.
    let execs: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("execve(") || l.contains("execveat("))
        .collect();
    let path = |l: &str| {
        l.split("execve(\"")
            .nth(1)?
            .split('"')
            .next()
            .map(str::to_owned)
    };
    ensure!(
        execs.len() == 3
            && execs[0].contains("/env\", [\"env\"")
            && execs[1].contains("/flow-agent\"")
            && execs[..2].iter().all(|l| l.ends_with("= 0"))
            // strace may split the child's exec (`<unfinished ...>`) and cuts long strings.
            && path(execs[2]).is_some()
            && path(execs[2]) == path(execs[1])
            && execs[2].contains("\"version\"], ")
            && execs[2].contains("/* 0 vars */"),
        "programs executed besides the agent itself and its self-check: {execs:#?}"
    );
    let processes: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains("fork(")
                || ((l.contains("clone(") || l.contains("clone3(")) && !l.contains("CLONE_THREAD"))
        })
        .collect();
    ensure!(
        processes.len() == 1,
        "the agent started processes besides its self-check's one exec: {processes:#?}"
    );
    drop(srv);
    Ok(())
}
