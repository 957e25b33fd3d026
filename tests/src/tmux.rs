//! A program in a detached tmux terminal of a given size, on a private tmux server (`-L`), so
//! that nothing else's sessions are touched: how the tests drive `flow-agent top` (send-keys,
//! capture-pane) and how the bench keeps one attached. The server is killed on drop.
use anyhow::{ensure, Context, Result};
use std::process::Command;
use std::time::{Duration, Instant};

/// The session every [`Tmux`] runs its program in.
const SESSION: &str = "main";

pub struct Tmux {
    server: String,
}

impl Tmux {
    /// Runs `command` (a shell command line) in a new `cols`×`rows` terminal, on a server named
    /// `server` and this process's id.
    pub fn start(server: &str, (cols, rows): (u16, u16), command: &str) -> Result<Tmux> {
        let tmux = Tmux {
            server: format!("{server}-{}", std::process::id()),
        };
        let (cols, rows) = (cols.to_string(), rows.to_string());
        tmux.cmd(&[
            "new-session",
            "-d",
            "-s",
            SESSION,
            "-x",
            &cols,
            "-y",
            &rows,
            command,
        ])
        .with_context(|| format!("starting {command:?} in tmux"))?;
        Ok(tmux)
    }

    /// `tmux ARGS` on this server; its stdout.
    pub fn cmd(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.server)
            .args(args)
            .output()?;
        ensure!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Types `keys` (tmux key names: `q`, `Enter`).
    pub fn send_keys(&self, keys: &str) -> Result<()> {
        self.cmd(&["send-keys", "-t", SESSION, keys]).map(drop)
    }

    /// Resizes the terminal to `cols`×`rows`.
    pub fn resize(&self, (cols, rows): (u16, u16)) -> Result<()> {
        let (cols, rows) = (cols.to_string(), rows.to_string());
        self.cmd(&["resize-window", "-t", SESSION, "-x", &cols, "-y", &rows])
            .map(drop)
    }

    /// Whether the program still runs (its session ends with it).
    pub fn running(&self) -> bool {
        self.cmd(&["has-session", "-t", SESSION]).is_ok()
    }

    /// The terminal's text.
    pub fn screen(&self) -> Result<String> {
        self.cmd(&["capture-pane", "-p", "-t", SESSION])
    }

    /// Waits up to `timeout` until the screen satisfies `pred`; returns it.
    pub fn wait(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen()?;
            if pred(&screen) {
                return Ok(screen);
            }
            ensure!(Instant::now() < deadline, "never {what}; screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.server)
            .arg("kill-server")
            .output();
    }
}
