//! The sections of the configuration file this module owns: `[agent]`, `[flows]`, `[enrich]`
//! and `[capture]`. (`[filter]`, `[health]` and `[[outputs]]` live with their stages.)
use serde::{de, Deserialize, Serialize};

use crate::{
    capture::CaptureConfig,
    enrich::networks::DEFAULT_LOCAL_NETWORKS,
    filter::values::{one_or_many, Network, Scalar},
    units::Seconds,
};

/// `[agent]`: the agent's own logging.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub(crate) log_level: LogLevel,
    pub(crate) log_target: LogTarget,
    /// User to run as once the kernel programs are attached (empty: stay the starting user).
    pub(crate) user: String,
    /// Run on when the start-up self-check fails (logged as an error) instead of exiting
    /// with status 3.
    pub(crate) allow_degraded: bool,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            log_level: LogLevel::Info,
            log_target: LogTarget::Stderr,
            user: String::new(),
            allow_degraded: false,
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn filter(self) -> log::LevelFilter {
        match self {
            Self::Error => log::LevelFilter::Error,
            Self::Warn => log::LevelFilter::Warn,
            Self::Info => log::LevelFilter::Info,
            Self::Debug => log::LevelFilter::Debug,
            Self::Trace => log::LevelFilter::Trace,
        }
    }
}

impl std::str::FromStr for LogLevel {
    type Err = UnknownLogLevel;
    fn from_str(s: &str) -> Result<Self, UnknownLogLevel> {
        Self::deserialize(de::value::StrDeserializer::<de::value::Error>::new(s))
            .map_err(|_| UnknownLogLevel(s.into()))
    }
}

/// A log level name that is none of the five.
#[derive(Debug, thiserror::Error)]
#[error("unknown log level {0:?}: expected error, warn, info, debug or trace")]
pub struct UnknownLogLevel(pub String);

/// Where the agent's own log goes (never to stdout, where events go).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogTarget {
    /// One logfmt line per message on stderr.
    Stderr,
    /// The systemd journal's native protocol (fields LEVEL, TARGET), stderr when absent.
    Journald,
}

/// `[flows]`: the flow table's timing.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FlowsConfig {
    pub(crate) update_interval: Seconds,
    pub(crate) udp_idle_timeout: Seconds,
    pub(crate) accept_wait: Seconds,
}

impl Default for FlowsConfig {
    fn default() -> Self {
        Self {
            update_interval: Seconds(60.0),
            udp_idle_timeout: Seconds(60.0),
            accept_wait: Seconds(1.0),
        }
    }
}

/// `[enrich]`: what events add to the kernel's facts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct EnrichConfig {
    #[serde(deserialize_with = "one_or_many")]
    pub(crate) local_networks: Vec<Network>,
    pub(crate) community_id_seed: u16,
    /// Bytes of each direction's first payload shown as printable ASCII in `orig_content` and
    /// `resp_content` (0: none, the default: payload can be private).
    pub(crate) content_bytes: u32,
    /// Answered DNS queries this host asked as `dns_query` events (off by default).
    pub(crate) dns_events: bool,
    /// Every exec and exit as `process_start` and `process_end` events (off by default).
    pub(crate) process_events: bool,
    /// Ancestors named beyond the parent's fields (`ancestors`), nearest first (0: none).
    pub(crate) ancestry_depth: u32,
    /// Executables larger than this many bytes are not hashed (0: no hashing).
    pub(crate) hash_max_bytes: u64,
    /// JA4S server fingerprints (off by default: JA4S is under the FoxIO License 1.1, NOTICE).
    pub(crate) ja4s: bool,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        Self {
            local_networks: DEFAULT_LOCAL_NETWORKS
                .iter()
                .map(|c| Network::from_text(c).expect("built-in CIDRs are valid"))
                .collect(),
            community_id_seed: 0,
            content_bytes: 0,
            dns_events: false,
            process_events: false,
            ancestry_depth: 0,
            hash_max_bytes: crate::enrich::image_hash::DEFAULT_MAX_BYTES,
            ja4s: false,
        }
    }
}

/// `[capture]`: sizes of the kernel-side tables, fixed when the programs load.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureSettings {
    pub(crate) ring_buffer_bytes: u32,
    pub(crate) process_ring_bytes: u32,
    pub(crate) dns_ring_bytes: u32,
    pub(crate) wakeup_bytes: u32,
    pub(crate) tcp_sockets: u32,
    pub(crate) udp_flows: u32,
    pub(crate) udp_owners: u32,
    pub(crate) processes: u32,
    pub(crate) listeners: u32,
    /// Per-packet TCP counters in the kernel (IP bytes, flags, first byte times, history).
    pub(crate) tcp_detail: bool,
    /// Sockets the per-packet TCP table holds.
    pub(crate) tcp_detail_sockets: u32,
    /// Copy the first payload segment of each TCP direction to recognise the application
    /// protocol (rides on tcp_detail's per-packet program: off when it is off).
    pub(crate) payload_inspection: bool,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        let c = CaptureConfig::default();
        Self {
            ring_buffer_bytes: c.ring_buffer_bytes,
            process_ring_bytes: c.process_ring_bytes,
            dns_ring_bytes: c.dns_ring_bytes,
            wakeup_bytes: c.wakeup_bytes,
            tcp_sockets: c.tcp_sockets,
            udp_flows: c.udp_flows,
            udp_owners: c.udp_owners,
            processes: c.processes,
            listeners: c.listeners,
            tcp_detail: c.tcp_detail,
            tcp_detail_sockets: c.tcp_detail_sockets,
            payload_inspection: c.payload_inspection,
        }
    }
}

impl CaptureSettings {
    pub fn to_capture_config(&self) -> CaptureConfig {
        CaptureConfig {
            ring_buffer_bytes: self.ring_buffer_bytes,
            process_ring_bytes: self.process_ring_bytes,
            dns_ring_bytes: self.dns_ring_bytes,
            wakeup_bytes: self.wakeup_bytes,
            tcp_sockets: self.tcp_sockets,
            udp_flows: self.udp_flows,
            udp_owners: self.udp_owners,
            processes: self.processes,
            listeners: self.listeners,
            tcp_detail: self.tcp_detail,
            tcp_detail_sockets: self.tcp_detail_sockets,
            payload_inspection: self.payload_inspection,
            ..CaptureConfig::default()
        }
    }
}
