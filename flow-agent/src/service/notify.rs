//! The systemd notification protocol (sd_notify(3)) over a Unix datagram socket, without
//! libsystemd: `NOTIFY_SOCKET` names the socket (a path, or `@name` in the abstract namespace),
//! each datagram is newline-separated `KEY=VALUE` assignments. `WATCHDOG_USEC` asks for
//! `WATCHDOG=1` pings more often than that.
use std::{
    io,
    os::{
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr, UnixDatagram},
    },
    time::{Duration, Instant},
};

pub(crate) const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
pub(crate) const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
pub(crate) const WATCHDOG_PID: &str = "WATCHDOG_PID";

#[derive(Debug, thiserror::Error)]
pub(crate) enum NotifyError {
    #[error("{NOTIFY_SOCKET}={0:?}: expected an absolute path or @name of a Unix datagram socket")]
    Address(String),
    #[error("{NOTIFY_SOCKET}={address:?}: {source}")]
    Connect {
        address: String,
        #[source]
        source: io::Error,
    },
    #[error("{WATCHDOG_USEC}={0:?}: expected a positive number of microseconds")]
    Watchdog(String),
}

/// Parses `NOTIFY_SOCKET`'s value.
pub(crate) fn parse_address(value: &str) -> Result<SocketAddr, NotifyError> {
    let bad = || NotifyError::Address(value.to_string());
    if let Some(name) = value.strip_prefix('@') {
        if name.is_empty() {
            return Err(bad());
        }
        SocketAddr::from_abstract_name(name.as_bytes()).map_err(|_| bad())
    } else if value.starts_with('/') {
        SocketAddr::from_pathname(value).map_err(|_| bad())
    } else {
        Err(bad())
    }
}

/// A connected notification socket. Connecting once at start-up means later messages need no
/// access to the socket's path, which the agent may lose when it changes user.
pub(crate) struct Notifier {
    socket: UnixDatagram,
    address: String,
    failed: bool,
}

impl Notifier {
    /// None when the agent was not started by a service manager that wants notifications.
    pub(crate) fn from_env() -> Result<Option<Notifier>, NotifyError> {
        match std::env::var(NOTIFY_SOCKET) {
            Ok(v) if !v.is_empty() => Notifier::connect(&v).map(Some),
            _ => Ok(None),
        }
    }

    pub(crate) fn connect(address: &str) -> Result<Notifier, NotifyError> {
        let addr = parse_address(address)?;
        let failed = |source| NotifyError::Connect {
            address: address.to_string(),
            source,
        };
        let socket = UnixDatagram::unbound().map_err(failed)?;
        socket.connect_addr(&addr).map_err(failed)?;
        // A manager that stopped reading must not stall the capture loop.
        socket.set_nonblocking(true).map_err(failed)?;
        Ok(Notifier {
            socket,
            address: address.to_string(),
            failed: false,
        })
    }

    /// Sends one message (`KEY=VALUE` lines). A failure is logged once and otherwise ignored:
    /// capture goes on whether or not the manager listens.
    pub(crate) fn send(&mut self, message: &str) -> io::Result<()> {
        let result = self.socket.send(message.as_bytes()).map(drop);
        match &result {
            Err(e) if !self.failed => {
                self.failed = true;
                log::warn!("service notification to {} failed: {e}", self.address);
            }
            Ok(()) if self.failed => {
                self.failed = false;
                log::info!("service notifications to {} work again", self.address);
            }
            _ => {}
        }
        result
    }
}

/// When to send `WATCHDOG=1`: at half the manager's timeout, as sd_watchdog_enabled(3) advises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Watchdog {
    pub(crate) interval: Duration,
    last: Option<Instant>,
}

impl Watchdog {
    /// From `WATCHDOG_USEC` (and `WATCHDOG_PID`, which must be ours when set).
    pub(crate) fn from_env() -> Result<Option<Watchdog>, NotifyError> {
        let usec = std::env::var(WATCHDOG_USEC).ok();
        let pid = std::env::var(WATCHDOG_PID).ok();
        Watchdog::from_values(usec.as_deref(), pid.as_deref(), std::process::id())
    }

    pub(crate) fn from_values(
        usec: Option<&str>,
        pid: Option<&str>,
        own_pid: u32,
    ) -> Result<Option<Watchdog>, NotifyError> {
        let Some(usec) = usec.filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        // Meant for another process (our parent's watchdog leaking into our environment).
        if let Some(pid) = pid.filter(|p| !p.is_empty()) {
            if pid.trim().parse::<u32>().ok() != Some(own_pid) {
                return Ok(None);
            }
        }
        let micros: u64 = usec
            .trim()
            .parse()
            .ok()
            .filter(|u| *u > 0)
            .ok_or_else(|| NotifyError::Watchdog(usec.to_string()))?;
        Ok(Some(Watchdog {
            interval: Duration::from_micros(micros / 2),
            last: None,
        }))
    }

    /// Whether a ping is due at `now`; if so, counts it as sent.
    pub(crate) fn due(&mut self, now: Instant) -> bool {
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= self.interval);
        if due {
            self.last = Some(now);
        }
        due
    }
}

/// CLOCK_MONOTONIC in microseconds, for `MONOTONIC_USEC=` next to `RELOADING=1`.
pub(crate) fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn parses_paths_and_abstract_names() {
        let path = parse_address("/run/systemd/notify").unwrap();
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        let abs = parse_address("@flow-test/notify").unwrap();
        assert_eq!(abs.as_abstract_name(), Some(&b"flow-test/notify"[..]));
        for bad in ["", "@", "relative/path", "vsock:2:1234"] {
            assert!(
                matches!(parse_address(bad), Err(NotifyError::Address(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn sends_datagrams_to_an_abstract_socket() {
        let name = format!("flow-agent-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        let mut n = Notifier::connect(&format!("@{name}")).unwrap();
        n.send("READY=1\nSTATUS=capturing flows").unwrap();
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=capturing flows");
    }

    #[test]
    fn sends_datagrams_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("flow-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        let mut n = Notifier::connect(path.to_str().unwrap()).unwrap();
        n.send("WATCHDOG=1").unwrap();
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
        drop(listener);
        // The manager went away: reported, never fatal.
        assert!(n.send("WATCHDOG=1").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_socket_is_a_clear_error() {
        let err = Notifier::connect("/nonexistent/flow-agent/notify")
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/flow-agent/notify"));
    }

    #[test]
    fn watchdog_pings_at_half_the_timeout() {
        let own = 4242;
        let mut w = Watchdog::from_values(Some("4000000"), None, own)
            .unwrap()
            .unwrap();
        assert_eq!(w.interval, Duration::from_secs(2));
        let t0 = Instant::now();
        assert!(w.due(t0), "the first tick pings");
        assert!(!w.due(t0 + Duration::from_millis(1999)));
        assert!(w.due(t0 + Duration::from_secs(2)));
        assert!(!w.due(t0 + Duration::from_secs(3)));
        assert!(w.due(t0 + Duration::from_secs(4)));
    }

    #[test]
    fn watchdog_for_another_pid_or_unset_is_off() {
        assert_eq!(Watchdog::from_values(None, None, 1).unwrap(), None);
        assert_eq!(Watchdog::from_values(Some(""), None, 1).unwrap(), None);
        assert_eq!(
            Watchdog::from_values(Some("1000000"), Some("77"), 78).unwrap(),
            None
        );
        assert!(Watchdog::from_values(Some("1000000"), Some("78"), 78)
            .unwrap()
            .is_some());
        for bad in ["0", "-5", "soon"] {
            assert!(matches!(
                Watchdog::from_values(Some(bad), None, 1),
                Err(NotifyError::Watchdog(_))
            ));
        }
    }
}
