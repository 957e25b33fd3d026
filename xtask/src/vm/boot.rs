//! Running the test script: in a VM booting a kernel with virtme-ng, or on the host.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use super::kernel::FetchedKernel;
use super::tools::find_vng;

const START_MARKER: &str = "VM-SCRIPT-START";
/// vCPUs of the guest: TCG runs each on a host thread, and CI machines have two cores.
pub const VM_CPUS: u32 = 2;
/// 9p tag of a second, read-only export of the host's root, which the guest mounts with page
/// caching at [`HOSTFS`]: vng's root mount is uncached, so every process start reads its
/// binary and libraries over 9p again, and the tests start thousands of processes.
const HOSTFS_TAG: &str = "flowhostfs";
/// Where the guest mounts the cached view of the host's root; the guest script's `$HOSTFS` is
/// this when the mount worked, else empty.
pub const HOSTFS: &str = "/run/hostfs";
const EXIT_MARKER: &str = "VM-EXIT-STATUS=";

/// One run of the test script, in a VM or on the host.
pub struct VmRun {
    /// The script's exit status; None when it never finished (no boot, crash, timeout).
    pub exit_status: Option<i32>,
    pub timed_out: bool,
    /// What the script printed: the console lines between its start and exit markers.
    pub stdout: String,
    /// The VM's whole console output, each line prefixed with the seconds since vng started
    /// (`[  123.4] `): the time between two `test NAME ... ok` lines is that test's.
    pub log: PathBuf,
    /// From starting vng to the script's start.
    pub boot_time: Option<Duration>,
    pub total_time: Duration,
    /// Why the VM was stopped before its script finished, other than the time limit: nothing
    /// but kernel messages on the console for [`STALL_LIMIT`] (a hung kernel under emulation).
    pub stalled: Option<String>,
}

/// A guest whose console shows nothing but kernel messages (a soft lockup repeats its report
/// every 20 s or so) for this long is taken for hung and stopped. The
/// slowest compat test prints its result after some 250 s under TCG on a loaded machine (and
/// libtest says when a test has run for 60 s), so this is well above any working test.
pub const STALL_LIMIT: Duration = Duration::from_secs(480);

/// Boots `kernel` over the host's root filesystem (read-only, with tmpfs overlays on /etc,
/// /tmp, /var, ...) and runs `script` with /bin/sh as root; the VM is killed after `timeout`.
pub fn run_in_vm(kernel: &FetchedKernel, script: &str, timeout: Duration) -> Result<VmRun> {
    let vng = find_vng().context("no `vng`: run ensure_vm_tools first")?;
    // The guest sees the host's files, so the script is passed as a path.
    // One script per run: two runs of the same kernel at once must not share it.
    let script_path = kernel.dir.join(format!("guest-{}.sh", std::process::id()));
    fs::write(&script_path, guest_script(script))?;
    let log = kernel.dir.join("console.log");
    let mut cmd = Command::new(vng);
    cmd.arg("--run")
        .arg(&kernel.vmlinuz)
        // KVM guests fail on this machine. 9p because no virtiofsd is packaged for bookworm:
        // vng would wait seconds for one before falling back to 9p anyway.
        .args([
            "--disable-kvm",
            "--disable-microvm",
            "--force-9p",
            "--disable-monitor",
        ])
        .args(["--memory", "2G", "--cpus", &VM_CPUS.to_string(), "--user", "root"])
        // `=`: a separate argument starting with '-' would be taken for an option of vng's.
        .arg(format!(
            "--qemu-opts=-fsdev local,id={HOSTFS_TAG},path=/,security_model=none,readonly=on,multidevs=remap \
             -device virtio-9p-pci,fsdev={HOSTFS_TAG},mount_tag={HOSTFS_TAG}"
        ))
        // Without --verbose vng shows nothing of the guest console, the script's output included.
        .arg("--verbose")
        .arg("--exec")
        .arg(format!("/bin/sh {}", script_path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let run = run_console(cmd, log, timeout, Some(STALL_LIMIT));
    let _ = fs::remove_file(&script_path);
    run
}

/// Runs `script` on the host with /bin/sh, as [`run_in_vm`] runs it in a VM (same markers, same
/// log format), without the VM's mounts: for the host kernel's column of the matrix.
pub fn run_on_host(dir: &Path, script: &str, timeout: Duration) -> Result<VmRun> {
    fs::create_dir_all(dir)?;
    let script_path = dir.join("host.sh");
    fs::write(
        &script_path,
        format!("echo {START_MARKER}\n(\n{script}\n)\necho {EXIT_MARKER}$?\n"),
    )?;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg(&script_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run_console(cmd, dir.join("console.log"), timeout, None)
}

/// Runs `cmd` (stdin, stdout and stderr set up) in its own process group, logging its output
/// line by line, killed with its whole group after `timeout`, or when it prints nothing but
/// kernel messages for `stall` (VMs: see [`STALL_LIMIT`]).
fn run_console(
    mut cmd: Command,
    log: PathBuf,
    timeout: Duration,
    stall: Option<Duration>,
) -> Result<VmRun> {
    // Its own process group, so that a timeout kills qemu along with vng (or the host
    // script's tests along with the script).
    cmd.process_group(0);
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let console = Arc::new(Mutex::new(Console {
        log: File::create(&log)?,
        lines: Vec::new(),
        started: None,
        last_line: start,
        lockup: None,
    }));
    let pipes: [Option<Box<dyn Read + Send>>; 2] = [
        child.stdout.take().map(|p| Box::new(p) as _),
        child.stderr.take().map(|p| Box::new(p) as _),
    ];
    let readers: Vec<_> = pipes
        .into_iter()
        .flatten()
        .map(|pipe| {
            let console = Arc::clone(&console);
            thread::spawn(move || read_console(pipe, &console, start))
        })
        .collect();
    let mut timed_out = false;
    let mut stalled = None;
    let group = format!("-{}", child.id());
    let kill_group = || {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
    };
    while child.try_wait()?.is_none() {
        if start.elapsed() > timeout {
            timed_out = true;
            kill_group();
            child.wait()?;
        } else if let Some(why) = stall.and_then(|limit| stall_reason(&console, limit)) {
            stalled = Some(why);
            kill_group();
            child.wait()?;
        }
        thread::sleep(Duration::from_millis(100));
    }
    // What the script left running (a test's server on the host) would hold the pipes open.
    kill_group();
    let drained = Instant::now();
    while readers.iter().any(|r| !r.is_finished()) && drained.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(50));
    }
    let console = console
        .lock()
        .map_err(|_| anyhow!("console reader panicked"))?;
    let (stdout, exit_status) = script_output(&console.lines);
    Ok(VmRun {
        exit_status,
        timed_out,
        stdout,
        log,
        boot_time: console.started,
        total_time: start.elapsed(),
        stalled,
    })
}

struct Console {
    log: File,
    lines: Vec<String>,
    started: Option<Duration>,
    /// When the last line that was not a kernel message came.
    last_line: Instant,
    /// The first line of a kernel soft-lockup report, if any came.
    lockup: Option<String>,
}

/// Why a console whose script has been silent too long is taken for hung, naming the kernel's
/// soft-lockup report when there was one.
fn stall_reason(console: &Mutex<Console>, limit: Duration) -> Option<String> {
    let console = console.lock().ok()?;
    let silent = console.last_line.elapsed();
    (silent > limit).then(|| match &console.lockup {
        Some(report) => format!(
            "no test output for {} s; the kernel reported: {report}",
            silent.as_secs()
        ),
        None => format!("no test output for {} s", silent.as_secs()),
    })
}

/// A kernel message on the console: `[   12.345678] ...`.
fn is_kernel_message(line: &str) -> bool {
    line.strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .is_some_and(|(stamp, _)| {
            let stamp = stamp.trim_start();
            !stamp.is_empty() && stamp.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
}

fn read_console(pipe: Box<dyn Read + Send>, console: &Mutex<Console>, start: Instant) {
    for line in BufReader::new(pipe).split(b'\n').map_while(|l| l.ok()) {
        // The serial console ends lines with \r\n.
        let line = String::from_utf8_lossy(&line)
            .trim_end_matches('\r')
            .to_string();
        let Ok(mut console) = console.lock() else {
            return;
        };
        let _ = writeln!(
            console.log,
            "[{:7.1}] {line}",
            start.elapsed().as_secs_f64()
        );
        if line == START_MARKER && console.started.is_none() {
            console.started = Some(start.elapsed());
        }
        if !is_kernel_message(&line) {
            console.last_line = Instant::now();
        }
        if line.contains("soft lockup") && console.lockup.is_none() {
            console.lockup = Some(line.trim().to_string());
        }
        console.lines.push(line);
    }
}

/// Wraps the caller's script: mounts what the tests expect, puts the cached view of the host's
/// root (see [`HOSTFS_TAG`]) on /usr's programs and libraries, and prints the exit status on
/// the console, because vng's own exit status does not carry the script's. The cache assumes
/// the host's files do not change while the VM runs.
fn guest_script(script: &str) -> String {
    format!(
        r#"# Kernel messages would interleave with the script's output on the one console.
echo 1 > /proc/sys/kernel/printk
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
mkdir -p /run/netns {HOSTFS}
HOSTFS={HOSTFS}
if mount -t 9p -o ro,trans=virtio,version=9p2000.L,access=any,msize=524288,cache=loose \
    {HOSTFS_TAG} {HOSTFS}; then
    # Programs, libraries, data; not /usr as a whole: vng links the kernel's modules into
    # /usr/lib/modules. Each with a tmpfs overlay, writable as vng's /usr is (the package
    # test installs into /usr).
    n=0
    for dir in /usr/bin /usr/sbin /usr/libexec /usr/share /usr/local /usr/lib/*-linux-gnu \
        /usr/lib/python3*; do
        [ -d "$dir" ] || continue
        n=$((n + 1)); mkdir -p /run/hostfs-rw/$n/upper /run/hostfs-rw/$n/work
        mount -t overlay overlay -o \
            lowerdir="{HOSTFS}$dir",upperdir=/run/hostfs-rw/$n/upper,workdir=/run/hostfs-rw/$n/work \
            "$dir" || echo "vm: no cached view of $dir"
    done
else
    echo "vm: no cached view of the host's files at {HOSTFS}: tests run from the uncached root"
    HOSTFS=
fi
echo {START_MARKER}
(
{script}
)
echo {EXIT_MARKER}$?
# Into the console log only (after the marker): the kernel messages the tests provoked.
echo VM-DMESG; dmesg | tail -n 300
"#
    )
}

fn script_output(lines: &[String]) -> (String, Option<i32>) {
    let mut out = String::new();
    let mut inside = false;
    for line in lines {
        if let Some(status) = line.strip_prefix(EXIT_MARKER).filter(|_| inside) {
            return (out, status.trim().parse().ok());
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
        inside |= line == START_MARKER;
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_output_between_markers() {
        let lines: Vec<String> = [
            "[ 1.0] boot",
            START_MARKER,
            "hello",
            "VM-EXIT-STATUS=3",
            "[ 2.0] off",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(script_output(&lines), ("hello\n".to_string(), Some(3)));
        assert_eq!(script_output(&lines[..3]), ("hello\n".to_string(), None));
    }

    #[test]
    fn kernel_messages_are_told_from_the_scripts_output() {
        assert!(is_kernel_message(
            "[  812.104021] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [ip:4711]"
        ));
        assert!(is_kernel_message(
            "[    0.000000] Linux version 5.10.0-32-amd64"
        ));
        assert!(!is_kernel_message("test udp_v4_request_response ... ok"));
        assert!(!is_kernel_message("[] empty"));
        assert!(!is_kernel_message("[ok] a bracketed word"));
    }
}
