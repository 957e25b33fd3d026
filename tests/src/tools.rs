//! Finding external programs (iproute2, curl, python3) and running `ip`.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Searched after `$PATH`: sbin directories are often missing from a test runner's PATH.
const EXTRA_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/sbin",
    "/sbin",
    "/usr/local/bin",
    "/usr/bin",
    "/bin",
];

/// Absolute path of `name`, from `$PATH` or the usual system directories.
pub fn find_tool(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(EXTRA_DIRS.iter().map(PathBuf::from));
    if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| is_executable(p)) {
        return Ok(found);
    }
    bail!(
        "required program `{name}` not found in $PATH or {EXTRA_DIRS:?}; install it (apt-get install -y {})",
        package_hint(name)
    )
}

/// Errors naming every missing program at once, so a CI log shows the full install list.
pub fn require_tools(names: &[&str]) -> Result<()> {
    let missing: Vec<String> = names
        .iter()
        .filter_map(|n| find_tool(n).err())
        .map(|e| e.to_string())
        .collect();
    if !missing.is_empty() {
        bail!("{}", missing.join("\n"));
    }
    Ok(())
}

fn is_executable(p: &Path) -> bool {
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn package_hint(name: &str) -> &str {
    match name {
        "ip" | "ss" | "tc" => "iproute2",
        "nc" => "netcat-openbsd",
        other => other,
    }
}

/// Path of the `ip` binary, looked up once.
pub(crate) fn ip_path() -> Result<PathBuf> {
    static IP: OnceLock<Result<PathBuf, anyhow::Error>> = OnceLock::new();
    match IP.get_or_init(|| find_tool("ip")) {
        Ok(path) => Ok(path.clone()),
        Err(e) => Err(anyhow::anyhow!("{e:#}")),
    }
}

/// Runs `ip ARGS`, returning stdout; the error carries the command line and stderr.
pub(crate) fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new(ip_path()?)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip [-n NS] OPTIONS -batch -` with one `ip` command per line on stdin, in order, and
/// returns their output; the first failing command fails the batch (unless `-force` is among
/// `options`, which runs every line). One process instead of one per command: starting `ip`
/// costs hundreds of milliseconds in an emulated VM.
pub(crate) fn ip_batch(ns: Option<&str>, options: &[&str], lines: &[String]) -> Result<String> {
    let mut cmd = Command::new(ip_path()?);
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    let desc = || {
        let ns = ns.map_or(String::new(), |ns| format!("-n {ns} "));
        format!("ip {ns}{} -batch: {}", options.join(" "), lines.join("; "))
    };
    let mut child = cmd
        .args(options)
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", desc()))?;
    // The script is small: it fits the pipe, so writing before reading cannot deadlock.
    let script = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(script.as_bytes());
    let out = child
        .wait_with_output()
        .with_context(|| format!("running {}", desc()))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            desc(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    written.with_context(|| format!("writing to {}", desc()))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Best-effort `ip ARGS` for cleanup paths, where the object may already be gone.
pub(crate) fn ip_quiet(args: &[&str]) -> bool {
    ip(args).is_ok()
}
