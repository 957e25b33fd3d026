//! The agent's own health: periodic stats events through the outputs and Prometheus metrics
//! on a local port.
use serde::{Deserialize, Serialize};

/// `[health]` of the configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Seconds between stats events written to the outputs; 0 writes none.
    pub stats_interval: u64,
    /// Address of the Prometheus metrics endpoint; empty disables it.
    pub metrics_listen: String,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            stats_interval: 60,
            metrics_listen: String::new(),
        }
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
    /// Per sink delivery counters since start.
    pub sinks: Vec<SinkReport>,
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
}
