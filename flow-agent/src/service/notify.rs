//! Notifications to the service manager (sd_notify(3)) through the `sd-notify` crate:
//! `NOTIFY_SOCKET` names the socket, `WATCHDOG_USEC` (with `WATCHDOG_PID`) asks for
//! `WATCHDOG=1` pings. The crate connects to a path socket for each message, so a manager's
//! socket must stay reachable after the switch to a dedicated user (systemd's
//! `/run/systemd/notify` is writable by every user); it has no abstract-namespace (`@name`)
//! sockets, which the agent then reports once at start-up.
use std::{
    io,
    time::{Duration, Instant},
};

use sd_notify::NotifyState;

pub(crate) const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends to the manager named by `NOTIFY_SOCKET`, when there is one.
pub(crate) struct Notifier {
    address: String,
    failed: bool,
}

impl Notifier {
    /// None when the agent was not started by a service manager that wants notifications,
    /// or names a socket the crate cannot reach (reported here, once).
    pub(crate) fn from_env() -> Option<Notifier> {
        let address = std::env::var(NOTIFY_SOCKET)
            .ok()
            .filter(|v| !v.is_empty())?;
        if !address.starts_with('/') {
            log::warn!(
                "service notifications off: {NOTIFY_SOCKET}={address:?} is not an absolute \
                 path (abstract sockets are not supported)"
            );
            return None;
        }
        Some(Notifier {
            address,
            failed: false,
        })
    }

    /// Sends one message. A failure is logged once and otherwise ignored: capture goes on
    /// whether or not the manager listens.
    pub(crate) fn send(&mut self, states: &[NotifyState]) -> io::Result<()> {
        let result = sd_notify::notify(states);
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
    /// From `WATCHDOG_USEC`, when `WATCHDOG_PID` is unset or ours.
    pub(crate) fn from_env() -> Option<Watchdog> {
        sd_notify::watchdog_enabled()
            .filter(|timeout| !timeout.is_zero())
            .map(Watchdog::with_timeout)
    }

    pub(crate) fn with_timeout(timeout: Duration) -> Watchdog {
        Watchdog {
            interval: timeout / 2,
            last: None,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_pings_at_half_the_timeout() {
        let mut w = Watchdog::with_timeout(Duration::from_secs(4));
        assert_eq!(w.interval, Duration::from_secs(2));
        let t0 = Instant::now();
        assert!(w.due(t0), "the first tick pings");
        assert!(!w.due(t0 + Duration::from_millis(1999)));
        assert!(w.due(t0 + Duration::from_secs(2)));
        assert!(!w.due(t0 + Duration::from_secs(3)));
        assert!(w.due(t0 + Duration::from_secs(4)));
    }
}
