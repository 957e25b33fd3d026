//! An agent started from an arbitrary command line (as a unit would start it: through setpriv,
//! with the manager's environment), its stdout events and stderr collected.
use anyhow::{bail, Context, Result};
use flow_agent_tests::{describe_bound, slowed};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    events: Vec<Value>,
    stderr: String,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

/// Killed on drop unless it already exited.
pub struct Running {
    child: Child,
    shared: Arc<Shared>,
}

impl Running {
    pub fn spawn(cmd: Command) -> Result<Running> {
        Running::spawn_with(cmd, true)
    }

    /// Like [`Running::spawn`]; without `events`, stdout goes to /dev/null (load tests).
    pub fn spawn_with(mut cmd: Command, events: bool) -> Result<Running> {
        let stdout = if events {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {cmd:?}"))?;
        let shared = Arc::new(Shared::default());
        read_lines(child.stdout.take(), shared.clone(), |s, line| {
            if let Ok(v) = serde_json::from_str(&line) {
                s.events.push(v);
            }
        });
        read_lines(child.stderr.take(), shared.clone(), |s, line| {
            s.stderr.push_str(&line);
            s.stderr.push('\n');
        });
        Ok(Running { child, shared })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.shared.state.lock().unwrap().stderr.clone()
    }

    /// The stderr captured once it holds `needle`, or all of it after `timeout`: a log line
    /// written right before a notification may reach the pipe's reader after it.
    pub fn stderr_once_it_has(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let stderr = self.stderr();
            if stderr.contains(needle) || Instant::now() >= deadline {
                return stderr;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn events(&self) -> Vec<Value> {
        self.shared.state.lock().unwrap().events.clone()
    }

    /// The first `n` events matching `pred`, waiting up to `timeout` (× FLOW_TEST_SLOW).
    pub fn wait_for_events(
        &self,
        pred: impl Fn(&Value) -> bool,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Value>> {
        let deadline = Instant::now() + slowed(timeout);
        let mut state = self.shared.state.lock().unwrap();
        loop {
            let found: Vec<Value> = state.events.iter().filter(|e| pred(e)).cloned().collect();
            if found.len() >= n {
                return Ok(found);
            }
            let now = Instant::now();
            if now >= deadline {
                bail!(
                    "{}/{n} matching events within {}; stderr:\n{}",
                    found.len(),
                    describe_bound(timeout),
                    state.stderr
                );
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap()
                .0;
        }
    }

    pub fn signal(&self, sig: i32) -> Result<()> {
        // SAFETY: kill(2) on our own un-reaped child.
        if unsafe { libc::kill(self.child.id() as i32, sig) } != 0 {
            bail!(
                "signal {sig} to {}: {}",
                self.child.id(),
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Waits up to `timeout` (× FLOW_TEST_SLOW) for the exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + slowed(timeout);
        loop {
            if let Some(status) = self.child.try_wait()? {
                // Let the readers take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "still running after {}; stderr:\n{}",
                    describe_bound(timeout),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ok while running; the exit status and stderr as an error once it exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            std::thread::sleep(Duration::from_millis(100));
            bail!("exited with {status}; stderr:\n{}", self.stderr());
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_lines(
    pipe: Option<impl Read + Send + 'static>,
    shared: Arc<Shared>,
    on_line: fn(&mut State, String),
) {
    std::thread::spawn(move || {
        let Some(pipe) = pipe else { return };
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        while matches!(reader.read_until(b'\n', &mut buf), Ok(1..)) {
            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
            on_line(&mut shared.state.lock().unwrap(), line);
            shared.changed.notify_all();
            buf.clear();
        }
    });
}
