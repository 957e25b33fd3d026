//! The sections of the configuration file this module owns: `[agent]`, `[flows]`, `[enrich]`
//! and `[capture]`. (`[filter]`, `[health]` and `[[outputs]]` live with their stages.)
use std::{fmt, time::Duration};

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::{
    capture::CaptureConfig,
    enrich::networks::DEFAULT_LOCAL_NETWORKS,
    filter::values::{one_or_many, Network, Scalar},
};

/// `[agent]`: the agent's own logging.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub log_level: LogLevel,
    pub log_target: LogTarget,
    /// User to run as once the kernel programs are attached (empty: stay the starting user).
    pub user: String,
    /// Run on when the start-up self-check fails (logged as an error) instead of exiting
    /// with status 3.
    pub allow_degraded: bool,
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
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::deserialize(de::value::StrDeserializer::<de::value::Error>::new(s)).map_err(|_| {
            format!("unknown log level {s:?}: expected error, warn, info, debug or trace")
        })
    }
}

/// Where the agent's own log goes (never to stdout, where events go).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    /// One logfmt line per message on stderr.
    Stderr,
    /// The systemd journal's native protocol (fields LEVEL, TARGET), stderr when absent.
    Journald,
}

/// `[flows]`: the flow table's timing.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsConfig {
    pub update_interval: Seconds,
    pub udp_idle_timeout: Seconds,
    pub accept_wait: Seconds,
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
pub struct EnrichConfig {
    #[serde(deserialize_with = "one_or_many")]
    pub local_networks: Vec<Network>,
    pub community_id_seed: u16,
    /// Bytes of each direction's first payload shown as printable ASCII in `orig_content` and
    /// `resp_content` (0: none, the default: payload can be private).
    pub content_bytes: u32,
    /// Answered DNS queries this host asked as `dns_query` events (off by default).
    pub dns_events: bool,
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
        }
    }
}

/// `[capture]`: sizes of the kernel-side tables, fixed when the programs load.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureSettings {
    pub ring_buffer_bytes: u32,
    pub wakeup_bytes: u32,
    pub tcp_sockets: u32,
    pub udp_flows: u32,
    pub udp_owners: u32,
    pub processes: u32,
    pub listeners: u32,
    /// Per-packet TCP counters in the kernel (IP bytes, flags, first byte times, history).
    pub tcp_detail: bool,
    /// Sockets the per-packet TCP table holds.
    pub tcp_detail_sockets: u32,
    /// Copy the first payload segment of each TCP direction to recognise the application
    /// protocol (rides on tcp_detail's per-packet program: off when it is off).
    pub payload_inspection: bool,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        let c = CaptureConfig::default();
        Self {
            ring_buffer_bytes: c.ring_buffer_bytes,
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

/// A duration in seconds: an integer or a decimal number (`0.5`), never negative.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Seconds(pub f64);

impl Seconds {
    pub fn duration(self) -> Duration {
        Duration::from_secs_f64(self.0)
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} s", self.0)
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.fract() == 0.0 && self.0 < u32::MAX as f64 {
            s.serialize_u64(self.0 as u64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of seconds (e.g. 60 or 0.5)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                // Up to a year: anything longer is a mistake (and must fit a Duration).
                if !(0.0..=31_536_000.0).contains(&v) {
                    return Err(E::custom(format!(
                        "{v} is not a duration (expected a number of seconds from 0 to 31536000)"
                    )));
                }
                Ok(Seconds(v))
            }
        }
        d.deserialize_any(V)
    }
}
