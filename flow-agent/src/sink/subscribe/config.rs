//! `[live]`: the local subscription socket that `flow-agent tail` and `top` read.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The default socket: under the unit's RuntimeDirectory.
pub const DEFAULT_SOCKET: &str = "/run/flow-agent/events.sock";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LiveConfig {
    /// Path of the unix socket; empty turns the live view off.
    pub(crate) socket: PathBuf,
    /// Group given the socket (mode 0660); empty: the agent's own group.
    pub(crate) group: String,
    /// Bytes each subscriber may fall behind before it is dropped.
    pub(crate) queue_bytes: u64,
    /// Subscribers at once; more are refused.
    pub(crate) max_subscribers: u32,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from(DEFAULT_SOCKET),
            group: String::new(),
            queue_bytes: 4 << 20,
            max_subscribers: 16,
        }
    }
}

impl LiveConfig {
    pub(crate) fn enabled(&self) -> bool {
        !self.socket.as_os_str().is_empty()
    }

    /// Problems by key, for the configuration check.
    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.enabled() && !self.socket.is_absolute() {
            out.push((
                "socket",
                format!(
                    "{:?} is not an absolute path (expected e.g. {DEFAULT_SOCKET:?}, or \"\" for off)",
                    self.socket.display().to_string()
                ),
            ));
        }
        if !(64 << 10..=1 << 30).contains(&self.queue_bytes) {
            out.push((
                "queue_bytes",
                format!(
                    "{} is out of range (expected 65536 to 1073741824)",
                    self.queue_bytes
                ),
            ));
        }
        if !(1..=1024).contains(&self.max_subscribers) {
            out.push((
                "max_subscribers",
                format!(
                    "{} is out of range (expected 1 to 1024)",
                    self.max_subscribers
                ),
            ));
        }
        if !self.group.is_empty() && group_id(&self.group).is_none() {
            out.push((
                "group",
                format!("no group named {:?} on this host", self.group),
            ));
        }
        out
    }
}

/// The `[live] socket` a configuration file's text sets (the default when it sets none), for
/// `tail` and `top`; the rest of the file is the agent's to check. Empty: the live view is off.
pub fn socket_in(text: &str) -> Result<PathBuf, toml::de::Error> {
    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        live: LiveConfig,
    }
    Ok(toml::from_str::<File>(text)?.live.socket)
}

/// The id of the group called `name`.
pub(super) fn group_id(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getgrnam returns a pointer into static storage or null; read at once.
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    (!g.is_null()).then(|| unsafe { (*g).gr_gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_named() {
        let cfg: LiveConfig = toml::from_str(
            "socket = \"events.sock\"\nqueue_bytes = 10\nmax_subscribers = 0\ngroup = \"no-such-group-x\"",
        )
        .unwrap();
        let keys: Vec<&str> = cfg.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["socket", "queue_bytes", "max_subscribers", "group"]);
        assert!(LiveConfig::default().problems().is_empty());
        let off: LiveConfig = toml::from_str("socket = \"\"").unwrap();
        assert!(!off.enabled() && off.problems().is_empty());
    }

    #[test]
    fn the_socket_is_read_from_a_whole_file() {
        let file = "[agent]\nlog_level = \"debug\"\n[live]\nsocket = \"/run/x.sock\"\n";
        assert_eq!(socket_in(file).unwrap(), PathBuf::from("/run/x.sock"));
        assert_eq!(socket_in("").unwrap(), PathBuf::from(DEFAULT_SOCKET));
        let err = socket_in("[live]\nsockt = 1").unwrap_err().to_string();
        assert!(err.contains("sockt"), "{err}");
    }
}
