//! The agent's reports on itself: a periodic [`StatsEvent`] (built by the runtime, written by
//! every encoder, read by the metrics endpoint) and the counters it is made of.
use serde::Serialize;

/// One periodic health report (`event_action = "stats"`).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct StatsEvent {
    pub(crate) timestamp: String,
    pub(crate) event_action: &'static str,
    pub(crate) hostname: String,
    pub(crate) agent_version: &'static str,
    /// Seconds since the agent started.
    pub(crate) uptime: f64,
    /// Flows open in the flow table.
    pub(crate) flows_open: u64,
    /// Flow events produced since start.
    pub(crate) events_total: u64,
    /// Kernel-side losses since start, by kind.
    pub(crate) kernel_losses: KernelLosses,
    /// What the enrichment stage refused or gave up since start, by kind.
    pub(crate) enrich_losses: EnrichLosses,
    /// Per sink delivery counters since start.
    pub(crate) sinks: Vec<SinkReport>,
    /// Flows `[rate_limit]` suppressed since start, and the limiter's state.
    pub(crate) rate_limit: RateLimitStats,
    /// What the caps and reconciliations on the agent's own state took out since start.
    pub(crate) state_bounds: StateBounds,
    /// Silences the watchdog found since start, and the self-checks it ran again.
    pub(crate) watchdog: WatchdogStats,
    /// The start-up self-check (first stats event only) or a re-run of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) self_check: Option<super::SelfCheckReport>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub(crate) struct KernelLosses {
    pub(crate) ring_full: u64,
    pub(crate) tcp_table_full: u64,
    pub(crate) udp_table_full: u64,
    pub(crate) read_failed: u64,
    pub(crate) owner_table_full: u64,
    pub(crate) tcp_closes_missed: u64,
    /// TCP connections whose per-packet counters were lost (LRU eviction): events without
    /// IP bytes, flags and packet-based history.
    pub(crate) tcp_detail_lost: u64,
    /// Exec, fork and exit records the process ring had no room for: those processes are
    /// named from /proc, or not at all if they were gone. Flows are never lost to it.
    pub(crate) process_ring_full: u64,
    /// DNS messages the DNS ring had no room for: those answers name nothing.
    pub(crate) dns_ring_full: u64,
}

/// What the enrichment stage (userspace, after the ring buffer) refused or gave up since
/// start. Nothing here loses a flow event: it loses a name, an application fact or a
/// `dns_query` event.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub(crate) struct EnrichLosses {
    /// First payload bytes not kept because the table of first bytes was full: those flows
    /// have no application protocol from their content (only from their port).
    pub(crate) payload_table_full: u64,
    /// DNS answers received that could not be parsed: they named nothing.
    pub(crate) dns_answers_malformed: u64,
    /// DNS answers to sockets with no query waiting (forged, duplicated or too late): they
    /// named nothing.
    pub(crate) dns_answers_unsolicited: u64,
    /// DNS answers to sockets whose waiting queries they do not answer (another resolver,
    /// transaction id or question): they named nothing.
    pub(crate) dns_answers_mismatched: u64,
    /// DNS queries forgotten before their answer because too many were waiting: their
    /// answers will name nothing.
    pub(crate) dns_queries_evicted: u64,
    /// `dns_query` events dropped because too many were made between two writes.
    pub(crate) dns_events_dropped: u64,
}

/// Entries the caps and reconciliations took out of the agent's tables before their time
/// (their kernel record was lost, or the table was full), since start.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub(crate) struct StateBounds {
    /// Process entries found gone in /proc (their exit record was lost) or reused.
    pub(crate) processes_reconciled: u64,
    /// Process entries dropped because the process table was full.
    pub(crate) processes_evicted: u64,
    /// Cgroup paths not kept because the cgroup cache was full.
    pub(crate) cgroup_paths_dropped: u64,
    /// TCP flows ended `close_missed` because sock_diag no longer showed their socket.
    pub(crate) tcp_flows_reconciled: u64,
    /// UDP flows ended `release_missed` because sock_diag no longer showed their socket.
    pub(crate) udp_flows_reconciled: u64,
    /// New TCP flows the full flow table did not track (reported at their close).
    pub(crate) tcp_flows_refused: u64,
    /// New UDP flows the full flow table lost.
    pub(crate) udp_flows_refused: u64,
}

/// The watchdog for silence (runtime/watchdog.rs), since start.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub(crate) struct WatchdogStats {
    /// Intervals in which the kernel opened TCP connections and no TCP record came.
    pub(crate) tcp_silences: u64,
    /// Intervals in which the kernel counted UDP datagrams and no UDP record came.
    pub(crate) udp_silences: u64,
    /// Intervals in which processes started and no process record came.
    pub(crate) process_silences: u64,
    /// Intervals in which processes ran another program and no exec record came.
    pub(crate) exec_silences: u64,
    /// Self-checks run again after a silence, and those of them that failed.
    pub(crate) self_check_reruns: u64,
    pub(crate) self_check_reruns_failed: u64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub(crate) struct SinkReport {
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    pub(crate) format: &'static str,
    /// Records handed to the sink.
    pub(crate) accepted: u64,
    /// Records the destination took (written, or acknowledged by the transport).
    pub(crate) sent: u64,
    /// Records waiting in memory now.
    pub(crate) queued: u64,
    /// Records waiting in the disk buffer now.
    pub(crate) buffered: u64,
    /// Records given up (caps reached, or rejected for good), never silently.
    pub(crate) dropped: u64,
    pub(crate) reconnects: u64,
    pub(crate) errors: u64,
    /// Times the delivery worker (network sinks) panicked and was restarted.
    pub(crate) worker_panics: u64,
}

/// Counters since start, for stats events and metrics.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub(crate) struct RateLimitStats {
    /// Flows suppressed by a process's limit.
    pub(crate) suppressed_process: u64,
    /// Flows suppressed by the global limit.
    pub(crate) suppressed_global: u64,
    /// `rate_limited` summaries written.
    pub(crate) summaries: u64,
    /// Processes whose limit state was forgotten at the cap (each restarts with a burst).
    pub(crate) processes_evicted: u64,
    /// Processes whose limit state is kept now.
    pub(crate) processes: u64,
    /// Suppressed flows still open (their end is awaited to count their bytes).
    pub(crate) suppressed_open: u64,
}
