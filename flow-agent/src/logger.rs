//! The agent's own log, never mixed into event output: one logfmt line per message on stderr,
//! or one entry per message in the systemd journal (native protocol, with the fields
//! PRIORITY, SYSLOG_IDENTIFIER, TARGET and MESSAGE). When the journal cannot be reached the
//! message goes to stderr instead: nothing is lost for want of a journal.
//!
//! When stderr itself is the journal's stream (a systemd service: `JOURNAL_STREAM` holds the
//! stream's device and inode), each line starts with its syslog priority as `<N>`
//! (sd-daemon(3)), which journald turns into the entry's PRIORITY: `journalctl -p err` then
//! shows the agent's errors.
use std::{
    io::Write,
    os::{fd::AsFd, unix::fs::MetadataExt, unix::net::UnixDatagram},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::{AgentConfig, LogTarget};

/// Where journald listens for native-protocol datagrams.
pub(crate) const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// Overrides [`JOURNAL_SOCKET`] (a journal in a non-standard place, or a test's listener).
pub(crate) const JOURNAL_SOCKET_ENV: &str = "FLOW_AGENT_JOURNAL_SOCKET";

struct AgentLogger {
    /// Set while the journal is the target.
    journal: Mutex<Option<UnixDatagram>>,
    journal_on: AtomicBool,
    /// stderr is the journal's stream: lines carry a `<N>` priority prefix.
    stderr_journal: AtomicBool,
}

static LOGGER: AgentLogger = AgentLogger {
    journal: Mutex::new(None),
    journal_on: AtomicBool::new(false),
    stderr_journal: AtomicBool::new(false),
};

/// The variable systemd sets to `DEVICE:INODE` of the stream it connects stdout/stderr to.
pub(crate) const JOURNAL_STREAM: &str = "JOURNAL_STREAM";

/// Whether stderr is the stream `JOURNAL_STREAM` names (not merely inherited from a parent
/// whose stderr was, which systemd.exec(5) warns of: the device and inode must match).
fn stderr_is_journal_stream() -> bool {
    let Some(expected) = std::env::var_os(JOURNAL_STREAM) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(m) => expected.to_str() == Some(&format!("{}:{}", m.dev(), m.ino())),
        Err(_) => false,
    }
}

/// The `<N>` prefix journald reads as the line's priority, or nothing off the journal.
fn stderr_prefix(level: Level) -> String {
    if LOGGER.stderr_journal.load(Ordering::Relaxed) {
        format!("<{}>", priority(level))
    } else {
        String::new()
    }
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// syslog priorities, as journald stores them.
fn priority(l: Level) -> u8 {
    match l {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// One native-protocol field: `KEY=value\n`, or the length-prefixed form for values with a
/// newline (which would otherwise end the field).
fn journal_field(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(key.as_bytes());
    if value.contains('\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
}

impl AgentLogger {
    fn write(&self, level: Level, target: &str, msg: &str) {
        if self.journal_on.load(Ordering::Relaxed) {
            let mut entry = Vec::with_capacity(msg.len() + 96);
            journal_field(&mut entry, "PRIORITY", &priority(level).to_string());
            journal_field(&mut entry, "SYSLOG_IDENTIFIER", "flow-agent");
            journal_field(&mut entry, "LEVEL", level_name(level));
            journal_field(&mut entry, "TARGET", target);
            journal_field(&mut entry, "MESSAGE", msg);
            let sent = self
                .journal
                .lock()
                .ok()
                .and_then(|j| j.as_ref().map(|s| s.send(&entry).is_ok()));
            if sent == Some(true) {
                return;
            }
        }
        // {:?} quotes and escapes the message: a hostile string cannot forge a log line.
        let line = format!(
            "{}level={} target={target} msg={msg:?}\n",
            stderr_prefix(level),
            level_name(level)
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

impl Log for AgentLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if self.enabled(r.metadata()) {
            self.write(r.level(), r.target(), &r.args().to_string());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger (stderr) at `level`.
pub fn init(level: LevelFilter) {
    LOGGER
        .stderr_journal
        .store(stderr_is_journal_stream(), Ordering::Relaxed);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

/// Applies `[agent]`: level and target (at start-up and after a reload).
pub fn configure(agent: &AgentConfig) {
    log::set_max_level(agent.log_level.filter());
    set_target(agent.log_target);
}

fn journal_path() -> PathBuf {
    std::env::var_os(JOURNAL_SOCKET_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(JOURNAL_SOCKET))
}

/// Switches the target; the journal falls back to stderr (with a warning) when absent.
pub(crate) fn set_target(target: LogTarget) {
    let mut journal = LOGGER.journal.lock().unwrap_or_else(|e| e.into_inner());
    match target {
        LogTarget::Stderr => {
            LOGGER.journal_on.store(false, Ordering::Relaxed);
            *journal = None;
        }
        LogTarget::Journald => {
            if journal.is_some() {
                return;
            }
            let path = journal_path();
            match UnixDatagram::unbound().and_then(|s| s.connect(&path).map(|_| s)) {
                Ok(s) => {
                    *journal = Some(s);
                    LOGGER.journal_on.store(true, Ordering::Relaxed);
                }
                Err(e) => {
                    drop(journal);
                    log::warn!(
                        "log_target journald: {}: {e}; logging to stderr",
                        path.display()
                    );
                }
            }
        }
    }
}

/// The error that ends the agent, on stderr (with the error priority in the journal).
pub fn fatal(line: &str) {
    let line = format!("{}flow-agent: error: {line}\n", stderr_prefix(Level::Error));
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// A message written whatever the level (start-up and shutdown milestones that people and
/// supervisors wait for).
pub(crate) fn notice(target: &str, msg: &str) {
    LOGGER.write(Level::Info, target, msg);
}

#[cfg(test)]
mod tests {
    use super::journal_field;

    #[test]
    fn journal_fields() {
        let mut out = Vec::new();
        journal_field(&mut out, "MESSAGE", "one line");
        assert_eq!(out, b"MESSAGE=one line\n");
        out.clear();
        journal_field(&mut out, "MESSAGE", "a\nb");
        let mut want = b"MESSAGE\n".to_vec();
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(b"a\nb\n");
        assert_eq!(out, want);
    }
}
