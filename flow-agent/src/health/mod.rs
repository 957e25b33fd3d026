//! The agent's own health: periodic stats events through the outputs and Prometheus metrics
//! on a local port. The runtime builds a [`StatsEvent`](crate::event::StatsEvent) every second
//! and hands it to [`Health`], which the metrics endpoint reads.
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

mod metrics;
mod process;
mod registry;
mod server;

pub(crate) use registry::{Health, Registry};

/// Where the metrics endpoint listens unless configured: loopback only. Not 9464, the
/// OpenTelemetry Prometheus exporter's default, nor 9100-9999, which Prometheus's port list
/// has given out in full (docs/health.md).
pub(crate) const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:39464";

/// `[health]` of the configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct HealthConfig {
    /// Seconds between stats events written to the outputs; 0 writes none.
    pub(crate) stats_interval: u64,
    /// Address (IP:port) of the Prometheus metrics endpoint; empty disables it.
    pub(crate) metrics_listen: String,
    /// Lets `metrics_listen` be an address other than loopback; the endpoint has no
    /// authentication, so exposing it is a deliberate choice.
    pub(crate) metrics_allow_remote: bool,
    /// Seconds of kernel activity without records from a program family before the
    /// watchdog reports a silence and runs the self-check again; 0 turns it off.
    pub(crate) watchdog_interval: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            stats_interval: 60,
            metrics_listen: DEFAULT_METRICS_LISTEN.to_string(),
            metrics_allow_remote: false,
            watchdog_interval: 60,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum HealthError {
    #[error("health.metrics_listen {value:?}: {reason}")]
    Listen { value: String, reason: String },
}

impl HealthConfig {
    /// The metrics endpoint's address, None when disabled; an error for an address that is
    /// not IP:port, or not loopback without `metrics_allow_remote`.
    pub(crate) fn metrics_address(&self) -> Result<Option<SocketAddr>, HealthError> {
        let value = self.metrics_listen.trim();
        if value.is_empty() {
            return Ok(None);
        }
        let err = |reason: &str| HealthError::Listen {
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let addr: SocketAddr = value
            .parse()
            .map_err(|_| err("expected IP:PORT, e.g. 127.0.0.1:39464 or [::1]:39464"))?;
        if !addr.ip().is_loopback() && !self.metrics_allow_remote {
            return Err(err(
                "not a loopback address; the endpoint has no authentication, set health.metrics_allow_remote = true to expose it",
            ));
        }
        Ok(Some(addr))
    }
}
