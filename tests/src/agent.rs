//! Runs the `flow-agent` binary and collects the JSON events it prints on stdout.

use crate::speed::{describe_bound, slowed};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The agent logs this to stderr once its probes are attached.
pub const READY_MARKER: &str = "flow-agent ready";
/// Bound for the agent to become ready (loading and verifying eBPF can be slow); like every
/// bound here, stretched by `FLOW_TEST_SLOW` ([`crate::slowed`]).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for the agent to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Env var that overrides the binary path.
const BIN_ENV: &str = "FLOW_AGENT_BIN";
/// Without `--config` the agent reads /etc/flow-agent/config.toml when it exists (the package
/// test installs one): the harness passes this instead, so no test depends on the host's /etc.
pub const NO_CONFIG: &str = "--no-config";
/// For agent command lines the harness does not build, where a `--config` may follow: this
/// variable set to [`ABSENT_DEFAULT_CONFIG`] moves the default file to a path that does not
/// exist (the agent reads it for tests only).
pub const DEFAULT_CONFIG_ENV: &str = "FLOW_AGENT_DEFAULT_CONFIG";
pub const ABSENT_DEFAULT_CONFIG: &str = "/nonexistent/flow-agent-tests/config.toml";
/// How much context failure messages carry.
const TAIL_EVENTS: usize = 20;
const TAIL_STDERR_LINES: usize = 40;

/// A running `flow-agent run ...`; SIGKILLed on drop unless [`Agent::stop`] was called.
#[derive(Debug)]
pub struct Agent {
    child: Child,
    /// The agent's own pid: the child's, or under a wrapper ([`Agent::start_under`]) the
    /// wrapper's child running the agent.
    pid: u32,
    shared: Arc<Shared>,
    readers: Vec<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

/// Receives each stdout line instead of the harness keeping it ([`Agent::start_streaming`]).
pub type LineSink = Box<dyn FnMut(&str) + Send>;

#[derive(Default)]
struct State {
    events: Vec<Value>,
    /// The stdout lines behind `events`, as printed (for byte-for-byte comparisons).
    json_lines: Vec<String>,
    /// Stdout lines that were not JSON: the agent's stdout must be pure JSON lines.
    non_json: Vec<String>,
    /// Every stdout line as printed (lossily decoded), for formats that are not JSON.
    lines: Vec<String>,
    stderr: String,
    ready: bool,
    stdout_eof: bool,
    stderr_eof: bool,
    /// When set, stdout lines go here and are not kept.
    stream: Option<LineSink>,
    /// Stdout lines seen (kept or streamed).
    stdout_lines: u64,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("events", &self.events.len())
            .field("stdout_lines", &self.stdout_lines)
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// The binary: `$FLOW_AGENT_BIN`, else `target/<profile>/flow-agent` next to the running
    /// test executable, else `<workspace>/target/debug/flow-agent`.
    pub fn binary() -> Result<PathBuf> {
        if let Some(p) = std::env::var_os(BIN_ENV) {
            let p = PathBuf::from(p);
            if !p.is_file() {
                bail!("{BIN_ENV}={} does not exist", p.display());
            }
            return Ok(p);
        }
        let mut candidates = Vec::new();
        // Test binaries live in target/<profile>/deps/; this follows CARGO_TARGET_DIR and --release.
        if let Some(profile_dir) = std::env::current_exe()
            .ok()
            .and_then(|e| Some(e.parent()?.parent()?.to_path_buf()))
        {
            candidates.push(profile_dir.join("flow-agent"));
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests/ has a parent");
        candidates.push(workspace.join("target/debug/flow-agent"));
        if let Some(found) = candidates.iter().find(|p| p.is_file()) {
            return Ok(found.clone());
        }
        let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        bail!("flow-agent binary not found: set {BIN_ENV} or build it (cargo build -p flow-agent); tried {}", tried.join(", "))
    }

    /// Starts `flow-agent run ARGS...` and waits until it is ready. Without a `--config` in
    /// ARGS, `--no-config` is added ([`NO_CONFIG`]); without `--tcp-detail`, `--tcp-detail on`
    /// (most tests check fields of the TCP detail tier, which is off by default; tests of the
    /// default tier say `--tcp-detail off`).
    pub fn start(args: &[&str]) -> Result<Agent> {
        Agent::start_bin(&Agent::binary()?, args)
    }

    /// Like [`Agent::start`], with these variables added to the agent's environment (test
    /// faults of debug builds).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Result<Agent> {
        let mut command = Command::new(Agent::binary()?);
        command.envs(env.iter().copied());
        Agent::spawn(command, args, None)
    }

    /// Like [`Agent::start`], but every stdout line goes to `sink` (on the reader thread) and
    /// none is kept: for outputs too large to hold (storms). [`Agent::events`] stays empty.
    pub fn start_streaming(args: &[&str], sink: LineSink) -> Result<Agent> {
        Agent::start_inner(&Agent::binary()?, args, Some(sink))
    }

    /// Like [`Agent::start`] with an explicit binary (also used to test the harness itself).
    pub fn start_bin(bin: &Path, args: &[&str]) -> Result<Agent> {
        Agent::start_inner(bin, args, None)
    }

    /// Runs `WRAPPER... flow-agent run ARGS...` (e.g. `strace -f -o FILE`), where the wrapper
    /// runs the agent as its child and exits with it; signals go to the agent itself.
    pub fn start_under(wrapper: &[&str], args: &[&str]) -> Result<Agent> {
        let bin = Agent::binary()?;
        let (prog, rest) = wrapper.split_first().context("an empty wrapper")?;
        let mut cmd = Command::new(prog);
        cmd.args(rest).arg(&bin);
        let mut agent = Agent::spawn(cmd, args, None)?;
        let wrapper_pid = agent.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{wrapper_pid}/task/{wrapper_pid}/children"))
                .unwrap_or_default();
        let bin = std::fs::canonicalize(&bin)?;
        agent.pid = children
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .find(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == bin))
            .with_context(|| format!("no child of {prog} (pid {wrapper_pid}) runs the agent"))?;
        Ok(agent)
    }

    fn start_inner(bin: &Path, args: &[&str], stream: Option<LineSink>) -> Result<Agent> {
        Agent::spawn(Command::new(bin), args, stream)
    }

    fn spawn(mut command: Command, args: &[&str], stream: Option<LineSink>) -> Result<Agent> {
        command.arg("run").args(args);
        if !names_config(args) {
            command.arg(NO_CONFIG);
        }
        if !args
            .iter()
            .any(|a| *a == "--tcp-detail" || a.starts_with("--tcp-detail="))
        {
            command.args(["--tcp-detail", "on"]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {command:?}"))?;
        let shared = Arc::new(Shared::default());
        shared.state.lock().unwrap().stream = stream;
        let readers = vec![
            read_lines(child.stdout.take(), shared.clone(), Stream::Stdout),
            read_lines(child.stderr.take(), shared.clone(), Stream::Stderr),
        ];
        let mut agent = Agent {
            pid: child.id(),
            child,
            shared,
            readers,
        };
        agent.wait_ready()?;
        Ok(agent)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// All JSON events printed so far.
    pub fn events(&self) -> Vec<Value> {
        self.lock().events.clone()
    }

    /// Events from index `start` on (cheap to poll on a busy agent: no copy of the rest).
    pub fn events_since(&self, start: usize) -> Vec<Value> {
        let state = self.lock();
        state.events.get(start..).unwrap_or_default().to_vec()
    }

    /// How many events were printed so far.
    pub fn event_count(&self) -> usize {
        self.lock().events.len()
    }

    /// The JSON lines printed so far, exactly as printed; `events()` are these parsed.
    pub fn json_lines(&self) -> Vec<String> {
        self.lock().json_lines.clone()
    }

    /// Stdout lines that failed to parse as JSON (should stay empty).
    pub fn non_json_lines(&self) -> Vec<String> {
        self.lock().non_json.clone()
    }

    /// The stdout lines from index `from` on: polls a long output without copying all of it
    /// each time (and without the per-line rescans of [`Agent::wait_for`]).
    pub fn stdout_lines_from(&self, from: usize) -> Vec<String> {
        self.lock()
            .lines
            .get(from..)
            .map(<[String]>::to_vec)
            .unwrap_or_default()
    }

    /// Stdout lines printed so far (kept or streamed).
    pub fn stdout_line_count(&self) -> u64 {
        self.lock().stdout_lines
    }

    /// Everything the agent wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.lock().stderr.clone()
    }

    /// The stderr once it holds `needle`, or all of it after `timeout` (× `FLOW_TEST_SLOW`): a
    /// line logged before an event was printed may reach its pipe's reader after the event.
    pub fn stderr_once_it_has(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + slowed(timeout);
        let mut state = self.lock();
        loop {
            let now = Instant::now();
            if state.stderr.contains(needle) || state.stderr_eof || now >= deadline {
                return state.stderr.clone();
            }
            state = self.wait_changed(state, deadline - now);
        }
    }

    /// First event (in output order) matching `pred`, waiting up to `timeout`.
    pub fn wait_for(&self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Result<Value> {
        Ok(self.wait_for_count(pred, 1, timeout)?.swap_remove(0))
    }

    /// The first `n` events matching `pred`, waiting up to `timeout` (× `FLOW_TEST_SLOW`) for
    /// that many.
    pub fn wait_for_count(
        &self,
        pred: impl Fn(&Value) -> bool,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Value>> {
        let deadline = Instant::now() + slowed(timeout);
        let mut state = self.lock();
        // Each event is judged once: a long output must not be rescanned on every new line.
        let mut found: Vec<Value> = Vec::new();
        let mut scanned = 0;
        loop {
            for e in &state.events[scanned..] {
                if found.len() >= n {
                    break;
                }
                if pred(e) {
                    found.push(e.clone());
                }
            }
            scanned = state.events.len();
            if found.len() >= n {
                return Ok(found);
            }
            let (have, now) = (found.len(), Instant::now());
            if state.stdout_eof {
                bail!(
                    "agent closed stdout (exited?) with {have}/{n} matching events{}",
                    context(&state)
                );
            }
            if now >= deadline {
                bail!(
                    "timed out after {} with {have}/{n} matching events{}",
                    describe_bound(timeout),
                    context(&state)
                );
            }
            state = self.wait_changed(state, deadline - now);
        }
    }

    /// SIGTERMs the agent, waits for it to exit, and returns every event it printed
    /// (including the end events it flushes on shutdown). A non-zero exit is an error.
    pub fn stop(self) -> Result<Vec<Value>> {
        Ok(self.stop_with_lines()?.0)
    }

    /// Like [`Agent::stop`], also returning the JSON lines exactly as printed.
    pub fn stop_with_lines(self) -> Result<(Vec<Value>, Vec<String>)> {
        let stopped = self.stop_with_output()?;
        Ok((stopped.events, stopped.json_lines))
    }

    /// Like [`Agent::stop_with_lines`], also returning everything it wrote to stderr (what
    /// it logged while closing its outputs, for one).
    pub fn stop_with_output(mut self) -> Result<Stopped> {
        // SAFETY: kill(2) on our own un-reaped child.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        let status = self.wait_exit(STOP_TIMEOUT)?;
        // The agent has exited; readers see EOF unless a descendant still holds the pipes.
        for r in std::mem::take(&mut self.readers) {
            let deadline = Instant::now() + slowed(Duration::from_secs(5));
            while !r.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if r.is_finished() {
                let _ = r.join();
            }
        }
        let state = self.lock();
        if !status.success() {
            bail!(
                "agent exited with {status} after SIGTERM{}",
                context(&state)
            );
        }
        Ok(Stopped {
            events: state.events.clone(),
            json_lines: state.json_lines.clone(),
            stderr: state.stderr.clone(),
        })
    }

    /// Like [`Agent::stop`], but returns every line the agent printed on stdout, in order,
    /// JSON or not (e.g. the XML records of the `sysmon` format).
    pub fn stop_lines(self) -> Result<Vec<String>> {
        let shared = self.shared.clone();
        self.stop()?;
        let lines = std::mem::take(&mut shared.state.lock().unwrap().lines);
        Ok(lines)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + slowed(READY_TIMEOUT);
        loop {
            {
                let state = self.lock();
                if state.ready {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    drop(state);
                    let _ = self.child.kill();
                    bail!(
                        "agent not ready ({READY_MARKER:?} on stderr) within {}{}",
                        describe_bound(READY_TIMEOUT),
                        context(&self.lock())
                    );
                }
                // Short waits: exit is noticed through try_wait, which no reader signals.
                let _ = self
                    .shared
                    .changed
                    .wait_timeout(state, Duration::from_millis(50))
                    .unwrap();
            }
            if let Some(status) = self.child.try_wait()? {
                // Let the readers catch the last words before reporting them.
                std::thread::sleep(Duration::from_millis(100));
                bail!(
                    "agent exited with {status} before becoming ready{}",
                    context(&self.lock())
                );
            }
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + slowed(timeout);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "agent did not exit within {} of SIGTERM; killed{}",
                    describe_bound(timeout),
                    context(&self.lock())
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }

    /// Waits (releasing the lock) until a reader adds a line or `timeout` passes.
    fn wait_changed<'a>(
        &self,
        state: MutexGuard<'a, State>,
        timeout: Duration,
    ) -> MutexGuard<'a, State> {
        self.shared.changed.wait_timeout(state, timeout).unwrap().0
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.pid != self.child.id() {
            // A wrapper's death would leave the agent running.
            // SAFETY: kill(2) on the agent, the wrapper's child, not reaped while it lives.
            unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// One stdout line: parsed before taking the lock, so waiters are not held up by parsing.
fn on_stdout_line(shared: &Shared, line: String) {
    let mut state = shared.state.lock().unwrap();
    state.stdout_lines += 1;
    if let Some(sink) = state.stream.as_mut() {
        sink(&line);
        return;
    }
    drop(state);
    let parsed = serde_json::from_str::<Value>(&line);
    let mut state = shared.state.lock().unwrap();
    match parsed {
        Ok(v) => {
            state.events.push(v);
            state.json_lines.push(line.clone());
        }
        Err(_) if line.trim().is_empty() => {}
        Err(_) => state.non_json.push(line.clone()),
    }
    state.lines.push(line);
}

fn on_stderr_line(shared: &Shared, line: String) {
    let mut state = shared.state.lock().unwrap();
    state.ready |= line.contains(READY_MARKER);
    state.stderr.push_str(&line);
    state.stderr.push('\n');
}

/// Feeds each line of a pipe to the state, on its own thread.
fn read_lines(
    pipe: Option<impl Read + Send + 'static>,
    shared: Arc<Shared>,
    stream: Stream,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        if let Some(pipe) = pipe {
            let mut reader = BufReader::with_capacity(1 << 16, pipe);
            let mut buf = Vec::new();
            // Byte lines + lossy decode: one bad UTF-8 byte must not stop collection.
            while matches!(reader.read_until(b'\n', &mut buf), Ok(1..)) {
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_string();
                match stream {
                    Stream::Stdout => on_stdout_line(&shared, line),
                    Stream::Stderr => on_stderr_line(&shared, line),
                }
                shared.changed.notify_all();
                buf.clear();
            }
        }
        let mut state = shared.state.lock().unwrap();
        match stream {
            Stream::Stdout => state.stdout_eof = true,
            Stream::Stderr => state.stderr_eof = true,
        }
        drop(state);
        shared.changed.notify_all();
    })
}

/// Whether `args` choose the configuration themselves (`--config FILE`, `-c FILE`,
/// `--config=FILE`, `-cFILE` or `--no-config`).
pub fn names_config(args: &[&str]) -> bool {
    args.iter().any(|a| {
        *a == NO_CONFIG
            || *a == "--config"
            || a.starts_with("--config=")
            || (a.starts_with("-c") && !a.starts_with("--"))
    })
}

/// What a stopped agent printed.
pub struct Stopped {
    pub events: Vec<Value>,
    /// The JSON lines exactly as printed.
    pub json_lines: Vec<String>,
    pub stderr: String,
}

/// Failure context: last events, non-JSON lines and the stderr tail.
fn context(state: &State) -> String {
    let skip = state.events.len().saturating_sub(TAIL_EVENTS);
    let events: Vec<String> = state.events[skip..].iter().map(Value::to_string).collect();
    let lines: Vec<&str> = state.stderr.lines().collect();
    let tail = &lines[lines.len().saturating_sub(TAIL_STDERR_LINES)..];
    let mut s = format!(
        "\n--- last {} of {} events ---\n{}",
        events.len(),
        state.events.len(),
        events.join("\n")
    );
    if !state.non_json.is_empty() {
        s += &format!(
            "\n--- non-JSON stdout lines ---\n{}",
            state.non_json.join("\n")
        );
    }
    s += &format!(
        "\n--- stderr (last {} lines) ---\n{}",
        tail.len(),
        tail.join("\n")
    );
    s
}

#[cfg(test)]
mod tests {
    use super::names_config;

    #[test]
    fn a_config_on_the_command_line_is_recognised() {
        for args in [
            &["--config", "/a.toml"][..],
            &["-c", "/a.toml"],
            &["--config=/a.toml"],
            &["-c/a.toml"],
            &["--update-interval", "1", "--no-config"],
        ] {
            assert!(names_config(args), "{args:?}");
        }
        for args in [
            &[][..],
            &["--update-interval", "1"],
            &["--output", "stdout"],
        ] {
            assert!(!names_config(args), "{args:?}");
        }
    }
}
