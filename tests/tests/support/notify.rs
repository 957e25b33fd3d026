//! The service manager's side of sd_notify: a Unix datagram socket that collects what the agent
//! reports (READY=1, STATUS=, WATCHDOG=1, RELOADING=1, STOPPING=1).
use anyhow::{bail, Context, Result};
use flow_agent_tests::{describe_bound, slowed};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Shared {
    messages: Mutex<Vec<String>>,
    changed: Condvar,
    stop: AtomicBool,
}

/// Receives notifications until dropped; `address()` is the value for `NOTIFY_SOCKET`.
pub struct NotifyListener {
    address: String,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
}

impl NotifyListener {
    /// A socket file `notify` in `dir`, writable by anyone as systemd's is (the agent may run
    /// as another user).
    pub fn bind_path(dir: &Path) -> Result<NotifyListener> {
        let path = dir.join("notify");
        let socket =
            UnixDatagram::bind(&path).with_context(|| format!("binding {}", path.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))?;
        Ok(NotifyListener::start(socket, path.display().to_string()))
    }

    fn start(socket: UnixDatagram, address: String) -> NotifyListener {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("a positive timeout is valid");
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !s.stop.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    // sd_notify(3) allows a final newline; the agent's crate sends one.
                    let text = String::from_utf8_lossy(&buf[..n]);
                    let msg = text.trim_end_matches('\n').to_string();
                    s.messages.lock().unwrap().push(msg);
                    s.changed.notify_all();
                }
            }
        });
        NotifyListener {
            address,
            shared,
            reader: Some(reader),
        }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn messages(&self) -> Vec<String> {
        self.shared.messages.lock().unwrap().clone()
    }

    /// The first message at index `from` or later with the assignment `line` (e.g.
    /// `READY=1`), waiting up to `timeout` (× FLOW_TEST_SLOW); returns its index and text.
    pub fn wait_for(&self, from: usize, line: &str, timeout: Duration) -> Result<(usize, String)> {
        let deadline = Instant::now() + slowed(timeout);
        let mut messages = self.shared.messages.lock().unwrap();
        loop {
            if let Some((i, m)) = messages
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, m)| has(m, line))
            {
                return Ok((i, m.clone()));
            }
            let now = Instant::now();
            if now >= deadline {
                bail!(
                    "no {line:?} notification within {} (from message {from}); received: {:?}",
                    describe_bound(timeout),
                    *messages
                );
            }
            messages = self
                .shared
                .changed
                .wait_timeout(messages, deadline - now)
                .unwrap()
                .0;
        }
    }
}

impl Drop for NotifyListener {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// Whether `message` holds the assignment `line` (one of its newline-separated lines).
pub fn has(message: &str, line: &str) -> bool {
    message.lines().any(|l| l == line)
}

/// The value of `KEY=` in `message`.
pub fn value<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    message
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}
