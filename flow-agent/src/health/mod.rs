//! The agent's own health: periodic stats events through the outputs and Prometheus metrics
//! on a local port. The runtime builds a [`StatsEvent`] every second and hands it to
//! [`Health`], which the metrics endpoint reads.
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

mod metrics;
mod registry;
mod self_check;
mod server;

pub use registry::{Health, Registry};
pub use self_check::{SelfCheck, SelfCheckReport};

/// Where the metrics endpoint listens unless configured: loopback only, the port registered
/// for Prometheus exporters of this kind (9464).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

/// `[health]` of the configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Seconds between stats events written to the outputs; 0 writes none.
    pub stats_interval: u64,
    /// Address (IP:port) of the Prometheus metrics endpoint; empty disables it.
    pub metrics_listen: String,
    /// Lets `metrics_listen` be an address other than loopback; the endpoint has no
    /// authentication, so exposing it is a deliberate choice.
    pub metrics_allow_remote: bool,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            stats_interval: 60,
            metrics_listen: DEFAULT_METRICS_LISTEN.to_string(),
            metrics_allow_remote: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("health.metrics_listen {value:?}: {reason}")]
    Listen { value: String, reason: String },
}

impl HealthConfig {
    /// The metrics endpoint's address, None when disabled; an error for an address that is
    /// not IP:port, or not loopback without `metrics_allow_remote`.
    pub fn metrics_address(&self) -> Result<Option<SocketAddr>, HealthError> {
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
            .map_err(|_| err("expected IP:PORT, e.g. 127.0.0.1:9464 or [::1]:9464"))?;
        if !addr.ip().is_loopback() && !self.metrics_allow_remote {
            return Err(err(
                "not a loopback address; the endpoint has no authentication, set health.metrics_allow_remote = true to expose it",
            ));
        }
        Ok(Some(addr))
    }
}

/// One periodic health report (`event_action = "stats"`).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct StatsEvent {
    pub timestamp: String,
    pub event_action: &'static str,
    pub hostname: String,
    pub agent_version: &'static str,
    /// Seconds since the agent started.
    pub uptime: f64,
    /// Flows open in the flow table.
    pub flows_open: u64,
    /// Flow events produced since start.
    pub events_total: u64,
    /// Kernel-side losses since start, by kind.
    pub kernel_losses: KernelLosses,
    /// What the enrichment stage refused or gave up since start, by kind.
    pub enrich_losses: EnrichLosses,
    /// Per sink delivery counters since start.
    pub sinks: Vec<SinkReport>,
    /// Flows `[rate_limit]` suppressed since start, and the limiter's state.
    pub rate_limit: crate::ratelimit::RateLimitStats,
    /// The start-up self-check (first stats event only) or a re-run of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_check: Option<SelfCheckReport>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct KernelLosses {
    pub ring_full: u64,
    pub tcp_table_full: u64,
    pub udp_table_full: u64,
    pub read_failed: u64,
    pub owner_table_full: u64,
    pub tcp_closes_missed: u64,
    /// TCP connections whose per-packet counters were lost (LRU eviction): events without
    /// IP bytes, flags and packet-based history.
    pub tcp_detail_lost: u64,
}

/// What the enrichment stage (userspace, after the ring buffer) refused or gave up since
/// start. Nothing here loses a flow event: it loses a name, an application fact or a
/// `dns_query` event.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct EnrichLosses {
    /// First payload bytes not kept because the table of first bytes was full: those flows
    /// have no application protocol from their content (only from their port).
    pub payload_table_full: u64,
    /// DNS answers received that could not be parsed: they named nothing.
    pub dns_answers_malformed: u64,
    /// DNS answers to sockets with no query waiting (forged, duplicated or too late): they
    /// named nothing.
    pub dns_answers_unsolicited: u64,
    /// DNS answers to sockets whose waiting queries they do not answer (another resolver,
    /// transaction id or question): they named nothing.
    pub dns_answers_mismatched: u64,
    /// DNS queries forgotten before their answer because too many were waiting: their
    /// answers will name nothing.
    pub dns_queries_evicted: u64,
    /// `dns_query` events dropped because too many were made between two writes.
    pub dns_events_dropped: u64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct SinkReport {
    pub name: String,
    pub kind: &'static str,
    pub format: &'static str,
    /// Records handed to the sink.
    pub accepted: u64,
    /// Records the destination took (written, or acknowledged by the transport).
    pub sent: u64,
    /// Records waiting in memory now.
    pub queued: u64,
    /// Records waiting in the disk buffer now.
    pub buffered: u64,
    /// Records given up (caps reached, or rejected for good), never silently.
    pub dropped: u64,
    pub reconnects: u64,
    pub errors: u64,
    /// Times the delivery worker (network sinks) panicked and was restarted.
    pub worker_panics: u64,
}
