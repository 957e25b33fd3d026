//! The Debian package end to end, the way docs/install.md has an administrator use it: build it
//! (`cargo xtask deb`), check what it holds, install it, start the service as its unit says,
//! see events, reload it (and fail to reload an invalid file), see the dropped capabilities in
//! /proc, stop it, remove and purge it (which keeps the system user, as Debian does).
//!
//! Where systemd runs (PID 1) the service is started with systemctl; elsewhere the unit's
//! ExecStart runs with the unit's credentials applied by setpriv (User, Group, ambient and
//! bounding capabilities, NoNewPrivileges), its UMask and LimitMEMLOCK, and the manager's
//! environment (NOTIFY_SOCKET to a socket this test reads, WATCHDOG_USEC from WatchdogSec).
//!
//! The test installs into /usr, /etc and /var: it takes a lock so that two runs never overlap,
//! refuses to touch a flow-agent it did not install, and purges what it installed even when it
//! fails; the system user too when its installation created it.
//!
//! While the package is installed, /etc/flow-agent/config.toml exists on this machine: the
//! harness passes `--no-config` to every agent started without `--config`, so that other tests
//! running meanwhile do not pick it up as their default configuration.
mod support;

use anyhow::{anyhow, bail, ensure, Context, Result};
use flow_agent_tests::{
    find_tool, require_root_and_bpf, require_tools, slowed, Agent, TempDir, DEFAULT_CONFIG_ENV,
};
use std::collections::{BTreeSet, HashMap};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::notify::{has, value, NotifyListener};
use support::running::Running;
use support::WAIT;
use support::{
    assert_dropped, assert_own_flow, documented_capabilities, is_own_connector_end,
    loopback_connection, setting, timespan_usec, unit_service_settings, wait_ready, workspace,
};

const PACKAGE: &str = "flow-agent";
const UNIT: &str = "/usr/lib/systemd/system/flow-agent.service";
const CONFIG: &str = "/etc/flow-agent/config.toml";
/// The events' JSON Schema; /usr/share/doc/flow-agent links to it.
const SCHEMA: &str = "/usr/share/flow-agent/events.schema.json";
/// Held for the whole test: one run at a time on a machine, whichever worktree it comes from.
const LOCK: &str = "/run/lock/flow-agent-package-test.lock";
/// Exists while this test has the package installed; a leftover means an earlier run died
/// before purging, and its installation may be purged.
const MARKER: &str = "/var/lib/flow-agent-package-test.installed";

/// The configuration the test writes, as an administrator would: events on stdout (the journal
/// under systemd), no stats events until the reload turns them on.
const CONFIG_BEFORE: &str = "[health]\nstats_interval = 0\n\n\
    [[outputs]]\nname = \"journal\"\nformat = \"native\"\n[outputs.stdout]\n";
const CONFIG_AFTER: &str = "[health]\nstats_interval = 1\n\n\
    [[outputs]]\nname = \"journal\"\nformat = \"native\"\n[outputs.stdout]\n";
/// A change the agent would reject: `systemctl reload` must fail on it.
const CONFIG_INVALID: &str = "[health]\nstats_interval = \"often\"\n";
/// The unit's ExecReload lines, in order.
const RELOAD_CHECK: &str = "/usr/bin/flow-agent check-config /etc/flow-agent/config.toml";
const RELOAD_SIGNAL: &str = "/bin/kill -HUP $MAINPID";

#[test]
fn deb_installs_runs_as_its_unit_says_and_purges_clean() -> Result<()> {
    require_root_and_bpf()?;
    require_tools(&[
        "dpkg",
        "dpkg-deb",
        "dpkg-statoverride",
        "setpriv",
        "man",
        "systemd-analyze",
        "capsh",
        "lintian",
    ])?;
    let _lock = lock()?;
    let (startup, kept) = documented_capabilities()?;
    let scratch = TempDir::new("flow-package")?;
    let deb = build_deb(scratch.path())?;
    check_deb(&deb)?;

    let mut installed = Installed::install(&deb)?;
    check_installed(&startup)?;
    let user = passwd_entry(PACKAGE)?;
    std::fs::write(CONFIG, CONFIG_BEFORE)?;
    check_mode(CONFIG, 0o640, 0, user.gid)?;
    // docs/install.md's step 4: without an argument, check-config checks the installed file.
    let checked = stdout_of(
        Command::new("/usr/bin/flow-agent")
            .arg("check-config")
            .env_remove(DEFAULT_CONFIG_ENV),
    )?;
    ensure!(
        checked == format!("{CONFIG}: ok\n"),
        "check-config: {checked:?}"
    );
    if Path::new("/run/systemd/system").is_dir() {
        run_with_systemd(&kept, &user)?;
    } else {
        run_as_the_unit_says(&kept, &user, scratch.path())?;
    }

    dpkg(&["--remove", PACKAGE])?;
    check_removed()?;
    dpkg(&["--purge", PACKAGE])?;
    installed.purged();
    check_purged()
}

/// An exclusive flock(2) on [`LOCK`], released when the file closes.
fn lock() -> Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .with_context(|| format!("opening {LOCK}"))?;
    // SAFETY: flock on a descriptor we own.
    ensure!(
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0,
        "locking {LOCK}: {}",
        std::io::Error::last_os_error()
    );
    Ok(file)
}

/// `cargo xtask deb --binary <the agent under test>`: the xtask is built in its own target
/// directory (the outer cargo holds the workspace's), so it is never stale.
fn build_deb(out: &Path) -> Result<PathBuf> {
    // cargo test sets CARGO to the cargo running it.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = workspace().join("target/package-test");
    let status = Command::new(&cargo)
        .current_dir(workspace())
        .args(["build", "--quiet", "-p", "xtask", "--target-dir"])
        .arg(&target)
        .status()
        .context("building xtask")?;
    ensure!(status.success(), "building xtask failed: {status}");
    let out = Command::new(target.join("debug/xtask"))
        .args(["deb", "--binary"])
        .arg(Agent::binary()?)
        .arg("--out")
        .arg(out)
        .output()
        .context("running xtask deb")?;
    ensure!(
        out.status.success(),
        "xtask deb failed (lintian errors and warnings fail it):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout)?;
    let deb = PathBuf::from(stdout.lines().last().unwrap_or_default());
    ensure!(deb.is_file(), "xtask deb printed no package path: {stdout}");
    Ok(deb)
}

fn output(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

fn stdout_of(cmd: &mut Command) -> Result<String> {
    Ok(String::from_utf8(output(cmd)?.stdout)?)
}

/// The package's fields and file list.
fn check_deb(deb: &Path) -> Result<()> {
    let field = |name: &str| -> Result<String> {
        Ok(
            stdout_of(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))?
                .trim()
                .to_string(),
        )
    };
    ensure!(field("Package")? == PACKAGE);
    let version = field("Version")?;
    ensure!(
        version.starts_with(&format!("{}-", env!("CARGO_PKG_VERSION"))),
        "Version {version}"
    );
    let arch = stdout_of(Command::new("dpkg").arg("--print-architecture"))?;
    ensure!(field("Architecture")? == arch.trim());
    let depends = field("Depends")?;
    ensure!(
        depends.starts_with("libc6 (>= 2.") && depends.contains("adduser"),
        "Depends: {depends}"
    );
    // The CA bundle the tls syslog transport and https outputs verify servers with.
    ensure!(
        field("Recommends")? == "ca-certificates",
        "Recommends: {}",
        field("Recommends")?
    );
    let list = stdout_of(Command::new("dpkg-deb").arg("-c").arg(deb))?;
    for (path, mode) in [
        ("./usr/bin/flow-agent", "-rwxr-xr-x"),
        ("./usr/lib/systemd/system/flow-agent.service", "-rw-r--r--"),
        ("./etc/flow-agent/config.toml", "-rw-r--r--"),
        ("./usr/share/man/man8/flow-agent.8.gz", "-rw-r--r--"),
        ("./usr/share/man/man8/flow-agent-run.8.gz", "-rw-r--r--"),
        (
            "./usr/share/man/man8/flow-agent-check-config.8.gz",
            "-rw-r--r--",
        ),
        (COMPLETION_BASH, "-rw-r--r--"),
        (
            "./usr/share/zsh/vendor-completions/_flow-agent",
            "-rw-r--r--",
        ),
        (
            "./usr/share/fish/vendor_completions.d/flow-agent.fish",
            "-rw-r--r--",
        ),
        ("./usr/share/doc/flow-agent/copyright", "-rw-r--r--"),
        (
            "./usr/share/doc/flow-agent/changelog.Debian.gz",
            "-rw-r--r--",
        ),
        ("./usr/share/doc/flow-agent/install.md", "-rw-r--r--"),
        ("./usr/share/doc/flow-agent/NOTICE", "-rw-r--r--"),
        ("./usr/share/doc/flow-agent/cli.md", "-rw-r--r--"),
        ("./usr/share/doc/flow-agent/configuration.md", "-rw-r--r--"),
        ("./usr/share/doc/flow-agent/events.md", "-rw-r--r--"),
        ("./usr/share/doc/flow-agent/sink-syslog.md", "-rw-r--r--"),
        (
            "./usr/share/doc/flow-agent/security-privileges.md",
            "-rw-r--r--",
        ),
        (&format!(".{SCHEMA}"), "-rw-r--r--"),
        (
            "./usr/share/doc/flow-agent/events.schema.json -> ../../flow-agent/events.schema.json",
            "lrwxrwxrwx",
        ),
    ] {
        ensure!(
            list.lines()
                .any(|l| l.starts_with(&format!("{mode} root/root")) && l.ends_with(path)),
            "{path} ({mode} root/root) not in the package:\n{list}"
        );
    }
    let ctrl = TempDir::new("flow-package-control")?;
    output(Command::new("dpkg-deb").arg("-e").arg(deb).arg(ctrl.path()))?;
    ensure!(std::fs::read_to_string(ctrl.path().join("conffiles"))? == format!("{CONFIG}\n"));
    Ok(())
}

/// Installs the package on creation; purges it on drop unless [`Installed::purged`] says the
/// test did. The purge keeps the system user and group (Debian practice); when the
/// installation created them, they are deleted on drop too, so that the machine is left as the
/// test found it. A user that was there before stays.
struct Installed {
    done: bool,
    created_user: bool,
}

/// In [`MARKER`] when the test's installation created the user.
const CREATED_USER: &str = "created-user";

impl Installed {
    fn install(deb: &Path) -> Result<Installed> {
        let earlier = std::fs::read_to_string(MARKER).ok();
        if package_status()?.is_some() {
            ensure!(
                earlier.is_some(),
                "{PACKAGE} is installed on this machine and not by this test: remove it first"
            );
            dpkg(&["--purge", PACKAGE]).context("purging an earlier run's installation")?;
        }
        if earlier.is_some_and(|m| m.lines().any(|l| l == CREATED_USER)) {
            delete_user().context("deleting an earlier run's user")?;
        }
        let created_user = passwd_entry(PACKAGE).is_err();
        let mut marker = "installed by tests/tests/package.rs\n".to_string();
        if created_user {
            marker += &format!("{CREATED_USER}\n");
        }
        std::fs::write(MARKER, marker)?;
        let guard = Installed {
            done: false,
            created_user,
        };
        dpkg(&["--install", &deb.display().to_string()])?;
        let status = package_status()?;
        ensure!(
            status.as_deref() == Some("install ok installed"),
            "dpkg status after install: {status:?}"
        );
        Ok(guard)
    }

    /// The test purged the package itself; the user goes on drop, after the checks.
    fn purged(&mut self) {
        self.done = true;
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if !self.done && dpkg(&["--purge", PACKAGE]).is_err() {
            return;
        }
        if self.created_user && delete_user().is_err() {
            return;
        }
        let _ = std::fs::remove_file(MARKER);
    }
}

/// Deletes the package's system user and group, as the purge no longer does.
fn delete_user() -> Result<()> {
    if passwd_entry(PACKAGE).is_ok() {
        output(Command::new(find_tool("deluser")?).args(["--system", "--quiet", PACKAGE]))?;
    }
    if group_exists(PACKAGE)? {
        output(Command::new(find_tool("delgroup")?).args(["--system", "--quiet", PACKAGE]))?;
    }
    Ok(())
}

fn group_exists(name: &str) -> Result<bool> {
    let group = std::fs::read_to_string("/etc/group")?;
    Ok(group.lines().any(|l| l.split(':').next() == Some(name)))
}

/// dpkg, waiting while another dpkg or apt holds the lock (apt installs run in parallel).
fn dpkg(args: &[&str]) -> Result<Output> {
    let deadline = Instant::now() + slowed(Duration::from_secs(300));
    loop {
        let out = Command::new("dpkg")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .context("running dpkg")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            return Ok(out);
        }
        if !(stderr.contains("lock") && Instant::now() < deadline) {
            bail!(
                "dpkg {} failed: {}\n{}{stderr}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// dpkg's status of the package, None when dpkg does not know it.
fn package_status() -> Result<Option<String>> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", PACKAGE])
        .output()?;
    let status = String::from_utf8(out.stdout)?;
    Ok((out.status.success() && !status.contains("not-installed")).then_some(status))
}

struct PasswdEntry {
    uid: u32,
    gid: u32,
    home: String,
    shell: String,
}

fn passwd_entry(name: &str) -> Result<PasswdEntry> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let line = passwd
        .lines()
        .find(|l| l.split(':').next() == Some(name))
        .with_context(|| format!("no user {name}"))?;
    let f: Vec<&str> = line.split(':').collect();
    ensure!(f.len() == 7, "passwd line {line:?}");
    Ok(PasswdEntry {
        uid: f[2].parse()?,
        gid: f[3].parse()?,
        home: f[5].into(),
        shell: f[6].into(),
    })
}

fn check_mode(path: &str, mode: u32, uid: u32, gid: u32) -> Result<()> {
    let m = std::fs::metadata(path).with_context(|| format!("{path} missing"))?;
    ensure!(
        (m.permissions().mode() & 0o7777, m.uid(), m.gid()) == (mode, uid, gid),
        "{path}: mode {:o} owner {}:{}, expected {mode:o} {uid}:{gid}",
        m.permissions().mode() & 0o7777,
        m.uid(),
        m.gid()
    );
    Ok(())
}

fn cap_set(value: &str) -> BTreeSet<String> {
    value.split_whitespace().map(str::to_string).collect()
}

const COMPLETION_BASH: &str = "./usr/share/bash-completion/completions/flow-agent";

/// An interactive bash with bash-completion, as an admin's: the packaged script is loaded on
/// demand for `flow-agent`, and `flow-agent check-c<TAB>` completes the command.
const BASH_COMPLETES: &str = r#"source /usr/share/bash-completion/bash_completion
_completion_loader flow-agent
func=$(complete -p flow-agent | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
COMP_WORDS=(flow-agent check-c); COMP_CWORD=1; COMP_LINE="flow-agent check-c"
COMP_POINT=${#COMP_LINE}
"$func" flow-agent check-c flow-agent
printf 'reply:%s\n' "${COMPREPLY[@]}"
"#;

/// The installed completions: bash completes a command; zsh's and fish's are for the binary.
fn check_completions() -> Result<()> {
    let out = output(
        Command::new(find_tool("bash")?)
            .args(["--norc", "-i", "-c", BASH_COMPLETES])
            .stdin(std::process::Stdio::null()),
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        stdout.lines().collect::<Vec<_>>() == ["reply:check-config"],
        "bash completion of `flow-agent check-c`: {stdout:?}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let zsh = std::fs::read_to_string("/usr/share/zsh/vendor-completions/_flow-agent")?;
    ensure!(zsh.starts_with("#compdef flow-agent"), "zsh: {zsh:.80}");
    let fish = std::fs::read_to_string("/usr/share/fish/vendor_completions.d/flow-agent.fish")?;
    ensure!(
        fish.contains("complete -c flow-agent") && fish.contains("check-config"),
        "fish: {fish:.200}"
    );
    Ok(())
}

/// Files, modes, owners, the user, the unit, the manual page, right after `dpkg -i`.
fn check_installed(startup: &BTreeSet<String>) -> Result<()> {
    let user = passwd_entry(PACKAGE)?;
    ensure!(
        user.uid < 1000 && user.shell == "/usr/sbin/nologin" && user.home == "/var/lib/flow-agent",
        "user {PACKAGE}: uid {} shell {} home {}",
        user.uid,
        user.shell,
        user.home
    );
    check_mode("/usr/bin/flow-agent", 0o755, 0, 0)?;
    check_mode(UNIT, 0o644, 0, 0)?;
    check_mode("/etc/flow-agent", 0o750, 0, user.gid)?;
    check_mode(CONFIG, 0o640, 0, user.gid)?;
    check_mode("/var/lib/flow-agent", 0o700, user.uid, user.gid)?;
    check_mode("/var/log/flow-agent", 0o750, user.uid, user.gid)?;
    let version = stdout_of(Command::new("/usr/bin/flow-agent").arg("--version"))?;
    ensure!(version.trim() == format!("flow-agent {}", env!("CARGO_PKG_VERSION")));

    let unit = std::fs::read_to_string(UNIT)?;
    ensure!(
        unit == std::fs::read_to_string(workspace().join("packaging/flow-agent.service"))?,
        "installed unit differs from packaging/flow-agent.service"
    );
    let s = unit_service_settings(&unit);
    for (key, want) in [
        ("Type", "notify"),
        (
            "ExecStart",
            "/usr/bin/flow-agent run --config /etc/flow-agent/config.toml",
        ),
        ("Restart", "on-failure"),
        // Configuration error, unsupported kernel: restarting helps nobody.
        ("RestartPreventExitStatus", "2 3"),
        ("User", PACKAGE),
        ("Group", PACKAGE),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("ReadWritePaths", "/var/lib/flow-agent /var/log/flow-agent"),
        ("StateDirectory", PACKAGE),
        ("LogsDirectory", PACKAGE),
        // The live socket's directory: its group may traverse it.
        ("RuntimeDirectory", PACKAGE),
        ("RuntimeDirectoryMode", "0750"),
        ("LimitMEMLOCK", "infinity"),
        ("UMask", "0077"),
    ] {
        ensure!(setting(&s, key)? == want, "{key}={}", setting(&s, key)?);
    }
    ensure!(timespan_usec(setting(&s, "WatchdogSec")?)? > 0);
    check_memory_limits(&s)?;
    // The file is checked before the signal, so that `systemctl reload` fails on a bad one.
    ensure!(
        s.get("ExecReload").map(Vec::as_slice)
            == Some(&[RELOAD_CHECK.to_string(), RELOAD_SIGNAL.to_string()][..]),
        "ExecReload={:?}",
        s.get("ExecReload")
    );
    for key in ["AmbientCapabilities", "CapabilityBoundingSet"] {
        ensure!(
            &cap_set(setting(&s, key)?) == startup,
            "{key}={} but docs/security-privileges.md's start-up set is {startup:?}",
            setting(&s, key)?
        );
    }
    output(Command::new(find_tool("systemd-analyze")?).args(["verify", UNIT]))?;
    // The hardening stays where docs/security-privileges.md says (exposure 3.3 of 10).
    output(Command::new(find_tool("systemd-analyze")?).args([
        "security",
        "--offline=true",
        "--threshold=35",
        UNIT,
    ]))?;

    // The manual page renders without warnings and documents the binary's own commands.
    let man = output(
        Command::new(find_tool("man")?)
            .args(["--warnings", "-E", "UTF-8", "-l"])
            .arg("/usr/share/man/man8/flow-agent.8.gz")
            .env("MANWIDTH", "100"),
    )?;
    ensure!(
        man.stderr.is_empty(),
        "man warnings: {}",
        String::from_utf8_lossy(&man.stderr)
    );
    let page = String::from_utf8_lossy(&man.stdout);
    for needle in [
        "flow-agent-run(8)",
        "--config",
        "SIGHUP",
        "CAP_SYS_PTRACE",
        "journalctl -u flow-agent -p err",
    ] {
        ensure!(page.contains(needle), "man page lacks {needle:?}:\n{page}");
    }
    check_completions()?;
    // The schema as the repository has it, also through the docs' link (events.md's).
    let schema = std::fs::read(workspace().join("docs/events.schema.json"))?;
    for path in [SCHEMA, "/usr/share/doc/flow-agent/events.schema.json"] {
        ensure!(
            std::fs::read(path).with_context(|| format!("reading {path}"))? == schema,
            "{path} differs from docs/events.schema.json"
        );
    }
    serde_json::from_slice::<serde_json::Value>(&schema).context("the schema is not JSON")?;
    let overrides = stdout_of(Command::new("dpkg-statoverride").arg("--list"))?;
    for line in [
        format!("root {PACKAGE} 750 /etc/flow-agent"),
        format!("root {PACKAGE} 640 {CONFIG}"),
    ] {
        ensure!(
            overrides.lines().any(|l| l == line),
            "no statoverride {line:?}:\n{overrides}"
        );
    }
    Ok(())
}

/// The unit's MemoryHigh and MemoryMax leave room for what systemd counts on this host: the
/// kernel tables at the default `[capture]` sizes (about 74 MiB, and the UDP counters' 4 MiB
/// per possible CPU) and the agent under 100,000 connections (about 140 MiB), below the point
/// where the kernel starts to slow it down.
fn check_memory_limits(s: &HashMap<String, Vec<String>>) -> Result<()> {
    let high = size_bytes(setting(s, "MemoryHigh")?)?;
    let max = size_bytes(setting(s, "MemoryMax")?)?;
    ensure!(high < max, "MemoryHigh={high} is not below MemoryMax={max}");
    let cpus = possible_cpus()?;
    let needed = (74 + 4 * cpus + 140) << 20;
    ensure!(
        high >= needed,
        "MemoryHigh={high} below the {needed} bytes the agent needs with {cpus} possible CPUs"
    );
    Ok(())
}

/// systemd's byte size (`768M`, `1G`, bare bytes; 1024-based).
fn size_bytes(value: &str) -> Result<u64> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (n, unit) = value.split_at(split);
    let n: u64 = n.parse().with_context(|| format!("size {value:?}"))?;
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        other => bail!("size unit {other:?} in {value:?}"),
    };
    Ok(n << shift)
}

/// CPUs the kernel allocates per-CPU map values for (`/sys/devices/system/cpu/possible`,
/// e.g. `0-1` or `0-3,8-11`).
fn possible_cpus() -> Result<u64> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let mut n = 0;
    for range in text.trim().split(',') {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        n += b.parse::<u64>()? - a.parse::<u64>()? + 1;
    }
    Ok(n)
}

/// The unit's credentials applied by setpriv (User, Group, ambient and bounding capabilities,
/// NoNewPrivileges) to `exec`, with the manager's clean environment; what systemd does for
/// ExecStart and ExecReload alike.
fn as_the_unit(s: &HashMap<String, Vec<String>>, exec: &[String]) -> Result<Command> {
    ensure!(
        !exec.iter().any(|a| a.contains(['"', '\'', '$'])),
        "the unit's command needs a real shell-like parser: {exec:?}"
    );
    let setpriv_caps = |key: &str| -> Result<String> {
        let caps: Vec<String> = setting(s, key)?
            .split_whitespace()
            .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_ascii_lowercase()))
            .collect();
        Ok(format!("-all,{}", caps.join(",")))
    };
    let ambient = setpriv_caps("AmbientCapabilities")?;
    let mut cmd = Command::new(find_tool("setpriv")?);
    cmd.arg(format!("--reuid={}", setting(s, "User")?))
        .arg(format!("--regid={}", setting(s, "Group")?))
        .arg("--init-groups")
        .arg(format!("--inh-caps={ambient}"))
        .arg(format!("--ambient-caps={ambient}"))
        .arg(format!(
            "--bounding-set={}",
            setpriv_caps("CapabilityBoundingSet")?
        ));
    if setting(s, "NoNewPrivileges")? == "yes" {
        cmd.arg("--no-new-privs");
    }
    cmd.arg("--").args(exec);
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .current_dir("/");
    Ok(cmd)
}

/// `systemctl reload` without systemd: every ExecReload line in order, `$MAINPID` replaced,
/// as the unit's user; the first that fails fails the reload and the rest do not run.
fn reload_as_the_unit(
    s: &HashMap<String, Vec<String>>,
    pid: u32,
) -> Result<Result<(), anyhow::Error>> {
    for line in s.get("ExecReload").context("the unit has no ExecReload=")? {
        let exec: Vec<String> = line
            .split_whitespace()
            .map(|a| a.replace("$MAINPID", &pid.to_string()))
            .collect();
        let out = as_the_unit(s, &exec)?
            .output()
            .with_context(|| format!("running {line}"))?;
        if !out.status.success() {
            return Ok(Err(anyhow!(
                "{line}: {}\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
    }
    Ok(Ok(()))
}

/// No systemd here: the unit's ExecStart with the unit's credentials and environment.
fn run_as_the_unit_says(kept: &BTreeSet<String>, user: &PasswdEntry, scratch: &Path) -> Result<()> {
    let unit = std::fs::read_to_string(UNIT)?;
    let s = unit_service_settings(&unit);
    let exec: Vec<String> = setting(&s, "ExecStart")?
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let mut cmd = as_the_unit(&s, &exec)?;
    let notify_dir = scratch.join("notify");
    std::fs::create_dir(&notify_dir)?;
    let listener = NotifyListener::bind_path(&notify_dir)?;
    let watchdog = timespan_usec(setting(&s, "WatchdogSec")?)?;
    cmd.env("NOTIFY_SOCKET", listener.address())
        .env("WATCHDOG_USEC", watchdog.to_string());
    let umask = u32::from_str_radix(setting(&s, "UMask")?, 8)?;
    ensure!(setting(&s, "LimitMEMLOCK")? == "infinity");
    // MemoryHigh and MemoryMax, in a memory cgroup of its own as systemd would give it.
    let memory = MemoryCgroup::new(
        size_bytes(setting(&s, "MemoryHigh")?)?,
        size_bytes(setting(&s, "MemoryMax")?)?,
    )?;
    let join_fd = memory.as_ref().map(|m| m.procs.as_raw_fd());
    // SAFETY: umask, setrlimit and write are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = join_fd {
                // "0": the writing process itself.
                if libc::write(fd, b"0\n".as_ptr().cast(), 2) != 2 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            libc::umask(umask as libc::mode_t);
            let unlimited = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            // Raising the hard limit needs CAP_SYS_RESOURCE, which systemd has and a test
            // runner may not (kernels from 5.11 on do not count BPF memory against it).
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) != 0
                && std::io::Error::last_os_error().raw_os_error() != Some(libc::EPERM)
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let mut agent = Running::spawn(cmd)?;
    let (ready, msg) = wait_ready(&listener, &mut agent)?;
    let status = value(&msg, "STATUS").unwrap_or_default();
    ensure!(
        status.starts_with("capturing flows; capabilities kept: "),
        "STATUS={status}"
    );

    // In /proc: the service user, the documented kept set and nothing more, in every thread.
    let creds = assert_dropped(agent.pid(), kept)?;
    ensure!(
        creds.uid == [user.uid; 4] && creds.gid == [user.gid; 4] && creds.groups == [user.gid],
        "credentials {creds:?}, expected user {PACKAGE} ({}:{})",
        user.uid,
        user.gid
    );
    // Events for real traffic, attributed to this process.
    assert_own_flow(&agent, loopback_connection(1500)?, 1500)?;
    listener.wait_for(ready + 1, "WATCHDOG=1", WAIT)?;
    // What the memory cgroup counts (the agent and its kernel tables) is below MemoryHigh.
    if let Some(m) = &memory {
        let usage = m.usage()?;
        eprintln!(
            "memory cgroup of the running agent: {usage} bytes, MemoryHigh {}",
            m.high
        );
        ensure!(
            usage > 16 << 20 && usage < m.high,
            "the agent's memory cgroup counts {usage} bytes; MemoryHigh is {}",
            m.high
        );
    }

    // A file the agent would reject: the reload fails at check-config, and no signal is sent.
    std::fs::write(CONFIG, CONFIG_INVALID)?;
    match reload_as_the_unit(&s, agent.pid())? {
        Err(e)
            if e.to_string().starts_with(RELOAD_CHECK)
                && e.to_string().contains("health.stats_interval") => {}
        other => bail!("reload of an invalid file: {other:?}"),
    }
    // Reload the way the unit does it, into a configuration with stats events.
    std::fs::write(CONFIG, CONFIG_AFTER)?;
    if let Err(e) = reload_as_the_unit(&s, agent.pid())? {
        bail!("reload failed: {e}");
    }
    let (reloading, msg) = listener.wait_for(ready + 1, "RELOADING=1", WAIT)?;
    let reloads = listener
        .messages()
        .iter()
        .filter(|m| has(m, "RELOADING=1"))
        .count();
    ensure!(
        reloads == 1 && !agent.stderr().contains("not reloaded"),
        "the rejected file reached the agent ({reloads} reloads):\n{}",
        agent.stderr()
    );
    ensure!(value(&msg, "MONOTONIC_USEC").is_some(), "{msg:?}");
    let (reloaded, _) = listener.wait_for(reloading + 1, "READY=1", WAIT)?;
    agent.wait_for_events(|e| e["event_action"] == "stats", 1, WAIT)?;
    assert_own_flow(&agent, loopback_connection(900)?, 900)?;
    assert_dropped(agent.pid(), kept)?;

    // systemd's stop: SIGTERM, within TimeoutStopSec.
    agent.signal(libc::SIGTERM)?;
    listener.wait_for(reloaded + 1, "STOPPING=1", WAIT)?;
    let stop = Duration::from_micros(timespan_usec(setting(&s, "TimeoutStopSec")?)?);
    let exit = agent.wait_exit(stop)?;
    ensure!(exit.success(), "exit {exit}:\n{}", agent.stderr());
    drop(memory);
    Ok(())
}

/// A memory cgroup with the unit's limits, for the agent started without systemd: cgroup v2
/// (`memory.high`, `memory.max`) or the v1 memory controller (`memory.limit_in_bytes`). None
/// where no memory controller can be used.
struct MemoryCgroup {
    dir: PathBuf,
    /// `cgroup.procs`, opened before the fork: the child joins by writing to it.
    procs: std::fs::File,
    high: u64,
    /// The file of the charge: `memory.current` or `memory.usage_in_bytes`.
    usage_file: &'static str,
}

impl MemoryCgroup {
    fn new(high: u64, max: u64) -> Result<Option<Self>> {
        let name = format!("flow-agent-package-test-{}", std::process::id());
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers");
        let (dir, limits, usage_file): (PathBuf, Vec<(&str, u64)>, _) =
            if std::fs::read_to_string(v2)
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
            {
                let dir = Path::new("/sys/fs/cgroup").join(name);
                (
                    dir,
                    vec![("memory.high", high), ("memory.max", max)],
                    "memory.current",
                )
            } else if Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists() {
                let own = std::fs::read_to_string("/proc/self/cgroup")?
                    .lines()
                    .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))
                    .unwrap_or_default();
                let dir = Path::new("/sys/fs/cgroup/memory")
                    .join(own.trim_start_matches('/'))
                    .join(name);
                (
                    dir,
                    vec![("memory.limit_in_bytes", max)],
                    "memory.usage_in_bytes",
                )
            } else {
                eprintln!("no memory cgroup controller here: the unit's memory limits not applied");
                return Ok(None);
            };
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let cgroup = Self {
            procs: std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))?,
            dir,
            high,
            usage_file,
        };
        for (file, value) in limits {
            std::fs::write(cgroup.dir.join(file), value.to_string())
                .with_context(|| format!("setting {file} of {}", cgroup.dir.display()))?;
        }
        Ok(Some(cgroup))
    }

    fn usage(&self) -> Result<u64> {
        let path = self.dir.join(self.usage_file);
        Ok(std::fs::read_to_string(&path)?.trim().parse()?)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Empty once the agent has exited.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// systemd is PID 1: systemctl starts, reloads and stops the service; events come from the
/// journal (the test configuration writes them to stdout).
fn run_with_systemd(kept: &BTreeSet<String>, user: &PasswdEntry) -> Result<()> {
    let systemctl = |args: &[&str]| stdout_of(Command::new("systemctl").args(args));
    systemctl(&["daemon-reload"])?;
    // Type=notify: returns once READY=1 came.
    systemctl(&["restart", "flow-agent.service"])?;
    let show = |prop: &str| -> Result<String> {
        Ok(
            systemctl(&["show", "-p", prop, "--value", "flow-agent.service"])?
                .trim()
                .to_string(),
        )
    };
    let pid: u32 = show("MainPID")?.parse()?;
    ensure!(pid != 0, "no main PID");
    let status = show("StatusText")?;
    ensure!(
        status.starts_with("capturing flows; capabilities kept: "),
        "StatusText={status}"
    );
    let creds = assert_dropped(pid, kept)?;
    ensure!(creds.uid == [user.uid; 4], "uid {:?}", creds.uid);
    journal_event(pid, is_own_connector_end(loopback_connection(1500)?)?)?;
    // The running agent, its kernel tables included, stays below the point where the kernel
    // starts to slow it down.
    let current: u64 = show("MemoryCurrent")?.parse().context("MemoryCurrent")?;
    let high: u64 = show("MemoryHigh")?.parse().context("MemoryHigh")?;
    ensure!(
        current > 0 && current < high,
        "MemoryCurrent={current} MemoryHigh={high}"
    );
    // ExecReload checks the file first: a file the agent would reject fails the reload.
    std::fs::write(CONFIG, CONFIG_INVALID)?;
    let reload = Command::new("systemctl")
        .args(["reload", "flow-agent.service"])
        .output()?;
    ensure!(
        !reload.status.success(),
        "systemctl reload accepted an invalid file"
    );
    ensure!(
        show("ActiveState")? == "active" && show("MainPID")? == pid.to_string(),
        "a failed reload stopped the agent"
    );
    std::fs::write(CONFIG, CONFIG_AFTER)?;
    systemctl(&["reload", "flow-agent.service"])?;
    journal_event(pid, |e| e["event_action"] == "stats")?;
    ensure!(
        show("MainPID")? == pid.to_string(),
        "reload restarted the agent"
    );
    systemctl(&["stop", "flow-agent.service"])?;
    ensure!(show("ActiveState")? == "inactive");
    ensure!(show("Result")? == "success", "Result={}", show("Result")?);

    // A configuration error (exit status 2) is not restarted: the unit fails and stays so.
    std::fs::write(CONFIG, CONFIG_INVALID)?;
    let start = Command::new("systemctl")
        .args(["start", "flow-agent.service"])
        .output()?;
    ensure!(
        !start.status.success(),
        "the agent started on an invalid file"
    );
    let unit = unit_service_settings(&std::fs::read_to_string(UNIT)?);
    let restart_sec = Duration::from_micros(timespan_usec(setting(&unit, "RestartSec")?)?);
    std::thread::sleep(restart_sec + slowed(Duration::from_secs(3)));
    ensure!(
        show("NRestarts")? == "0" && show("ActiveState")? == "failed",
        "after exit status 2: NRestarts={} ActiveState={} ExecMainStatus={}",
        show("NRestarts")?,
        show("ActiveState")?,
        show("ExecMainStatus")?
    );
    ensure!(show("ExecMainStatus")? == "2");
    systemctl(&["reset-failed", "flow-agent.service"])?;
    std::fs::write(CONFIG, CONFIG_AFTER)?;
    Ok(())
}

fn journal_event(pid: u32, pred: impl Fn(&serde_json::Value) -> bool) -> Result<()> {
    let deadline = Instant::now() + slowed(support::EVENT_TIMEOUT);
    loop {
        let text = stdout_of(Command::new("journalctl").args([
            "-o",
            "cat",
            "--no-pager",
            &format!("_PID={pid}"),
        ]))?;
        if text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .any(|e: serde_json::Value| pred(&e))
        {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "event not in the journal of {pid}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// After `dpkg -r`: program, unit and manual gone; configuration, state, logs and user kept.
fn check_removed() -> Result<()> {
    for gone in [
        "/usr/bin/flow-agent",
        UNIT,
        "/usr/share/man/man8/flow-agent.8.gz",
        "/usr/share/doc/flow-agent",
        "/usr/share/flow-agent",
    ] {
        ensure!(!Path::new(gone).exists(), "{gone} still there after remove");
    }
    for kept in [CONFIG, "/var/lib/flow-agent", "/var/log/flow-agent"] {
        ensure!(Path::new(kept).exists(), "{kept} gone after remove");
    }
    let status = package_status()?;
    ensure!(
        status.as_deref() == Some("deinstall ok config-files"),
        "status after remove: {status:?}"
    );
    Ok(())
}

/// After `dpkg --purge`: nothing left of the package, its overrides or its unit's enablement;
/// its system user and group stay (Debian does not delete system users on purge).
fn check_purged() -> Result<()> {
    for gone in [
        "/etc/flow-agent",
        "/var/lib/flow-agent",
        "/var/log/flow-agent",
    ] {
        ensure!(!Path::new(gone).exists(), "{gone} still there after purge");
    }
    ensure!(package_status()?.is_none(), "dpkg still knows {PACKAGE}");
    ensure!(
        passwd_entry(PACKAGE).is_ok(),
        "purge deleted user {PACKAGE}"
    );
    ensure!(group_exists(PACKAGE)?, "purge deleted group {PACKAGE}");
    let overrides = stdout_of(Command::new("dpkg-statoverride").arg("--list"))?;
    ensure!(
        !overrides.contains("/etc/flow-agent"),
        "statoverrides left:\n{overrides}"
    );
    let mut leftover = Vec::new();
    for root in ["/etc/systemd/system", "/var/lib/systemd"] {
        find_named(Path::new(root), "flow-agent.service", &mut leftover);
    }
    ensure!(leftover.is_empty(), "unit enablement left: {leftover:?}");
    Ok(())
}

/// Paths under `dir` whose name starts with `prefix` (symlinks not followed).
fn find_named(dir: &Path, prefix: &str, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if e.file_name().to_string_lossy().starts_with(prefix) {
            found.push(path.clone());
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            find_named(&path, prefix, found);
        }
    }
}
