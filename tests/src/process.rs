//! Running programs inside a namespace (`ip netns exec NS prog args...`).
//!
//! `ip netns exec` enters the namespace and then exec()s the program without forking,
//! so the pid of the spawned child *is* the program's pid — what the agent will report.
//!
//! Every bound here (a command's timeout, a listener, output draining) is stretched by
//! `FLOW_TEST_SLOW` ([`crate::slowed`]): callers give the bound that suits a normal machine.

use crate::speed::{describe_bound, slowed};
use crate::tools::ip_path;
use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Default bound for [`Cmd::output`] / [`Cmd::run`].
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for a listener in [`wait_for_tcp_listen`].
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// After exit, how long output readers may take (a grandchild can hold the pipe open).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(10);

/// A command to run in a namespace (or the root namespace), with captured output.
#[derive(Debug)]
pub struct Cmd {
    cmd: Command,
    desc: String,
    timeout: Duration,
}

/// Captured result of a finished command.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl Cmd {
    /// `prog` inside namespace `ns`.
    pub fn in_ns(ns: &str, prog: &str) -> Cmd {
        // A missing `ip` surfaces as a spawn error naming "ip"; TestHost checks for it earlier.
        let mut cmd = Command::new(ip_path().unwrap_or_else(|_| "ip".into()));
        cmd.args(["netns", "exec", ns, prog]);
        Cmd::from_command(cmd, format!("[netns {ns}] {prog}"))
    }

    /// `prog` in the test process's own (root) namespace.
    pub fn host(prog: &str) -> Cmd {
        Cmd::from_command(Command::new(prog), prog.to_string())
    }

    fn from_command(mut cmd: Command, desc: String) -> Cmd {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Cmd {
            cmd,
            desc,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.desc.push(' ');
        self.desc.push_str(&arg.as_ref().to_string_lossy());
        self.cmd.arg(arg);
        self
    }

    pub fn args<I, S>(self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        args.into_iter().fold(self, Cmd::arg)
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> Cmd {
        self.cmd.env(key, val);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Cmd {
        self.cmd.current_dir(dir);
        self
    }

    /// Bound for [`Cmd::output`] / [`Cmd::run`] (default 30 s), × `FLOW_TEST_SLOW`.
    pub fn timeout(mut self, timeout: Duration) -> Cmd {
        self.timeout = timeout;
        self
    }

    /// Runs to completion whatever the exit status; errors on spawn failure or timeout.
    pub fn output(self) -> Result<Output> {
        let timeout = self.timeout;
        self.spawn()?.wait(timeout)
    }

    /// Like [`Cmd::output`], but a non-zero exit is an error carrying stdout and stderr.
    pub fn run(self) -> Result<Output> {
        let desc = self.desc.clone();
        let out = self.output()?;
        if !out.status.success() {
            bail!(
                "`{desc}` failed ({})\nstdout: {}\nstderr: {}",
                out.status,
                out.stdout_str().trim(),
                out.stderr_str().trim()
            );
        }
        Ok(out)
    }

    /// Starts in the background; the returned guard kills the process on drop.
    pub fn spawn(mut self) -> Result<Spawned> {
        let mut child = self
            .cmd
            .spawn()
            .with_context(|| format!("spawning `{}`", self.desc))?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            drain(child.stdout.take(), stdout.clone()),
            drain(child.stderr.take(), stderr.clone()),
        ];
        Ok(Spawned {
            child,
            desc: self.desc,
            stdout,
            stderr,
            readers,
        })
    }
}

/// A background process; killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Spawned {
    child: Child,
    desc: String,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Spawned {
    /// The program's pid (same as the `ip netns exec` process, which exec()s it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Exit status if it has exited, without blocking.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .with_context(|| format!("polling `{}`", self.desc))
    }

    /// Sends `sig` (e.g. `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) -> Result<()> {
        // SAFETY: kill(2) on our own un-reaped child, so the pid cannot have been reused.
        if unsafe { libc::kill(self.child.id() as i32, sig) } != 0 {
            bail!(
                "kill({}, {sig}) for `{}`: {}",
                self.child.id(),
                self.desc,
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Waits for exit; after `timeout` (× `FLOW_TEST_SLOW`) kills it and errors with its output
    /// so far.
    pub fn wait(mut self, timeout: Duration) -> Result<Output> {
        let deadline = Instant::now() + slowed(timeout);
        let status = loop {
            if let Some(status) = self.try_status()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "`{}` still running after {}; killed\nstdout: {}\nstderr: {}",
                    self.desc,
                    describe_bound(timeout),
                    self.stdout_so_far().trim(),
                    self.stderr_so_far().trim()
                );
            }
            std::thread::sleep(POLL);
        };
        self.drain_readers();
        let stdout = std::mem::take(&mut *self.stdout.lock().unwrap());
        let stderr = std::mem::take(&mut *self.stderr.lock().unwrap());
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    /// Kills the process now and returns what it printed.
    pub fn kill(mut self) -> Output {
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait after kill");
        self.drain_readers();
        let stdout = std::mem::take(&mut *self.stdout.lock().unwrap());
        let stderr = std::mem::take(&mut *self.stderr.lock().unwrap());
        Output {
            status,
            stdout,
            stderr,
        }
    }

    fn drain_readers(&mut self) {
        let deadline = Instant::now() + slowed(DRAIN_TIMEOUT);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        // Finished ones are joined; a stuck one (pipe held by a grandchild) is detached.
        for r in std::mem::take(&mut self.readers) {
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies a pipe into a shared buffer until EOF, on its own thread.
fn drain(pipe: Option<impl Read + Send + 'static>, buf: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let Some(mut pipe) = pipe else { return };
        let mut chunk = [0u8; 8192];
        while let Ok(n @ 1..) = pipe.read(&mut chunk) {
            buf.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    })
}

/// Waits up to 10 s (× `FLOW_TEST_SLOW`) until something listens on TCP `port` inside
/// namespace `ns`.
pub fn wait_for_tcp_listen(ns: &str, port: u16) -> Result<()> {
    wait_for_tcp_listen_timeout(ns, port, LISTEN_TIMEOUT)
}

/// [`wait_for_tcp_listen`] with an explicit bound (× `FLOW_TEST_SLOW`).
pub fn wait_for_tcp_listen_timeout(ns: &str, port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + slowed(timeout);
    let filter = format!("sport = :{port}");
    loop {
        // -H: no header, so any output line is a matching listener.
        let out = Cmd::in_ns(ns, "ss").args(["-Hltn", &filter]).run()?;
        if !out.stdout_str().trim().is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let all = Cmd::in_ns(ns, "ss")
                .arg("-Hltn")
                .output()
                .map(|o| o.stdout_str())
                .unwrap_or_default();
            bail!(
                "nothing listens on TCP port {port} in netns {ns} after {}; listeners: [{}]",
                describe_bound(timeout),
                all.trim()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
