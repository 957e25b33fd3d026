//! The `rate_limited` event: what one limiter suppressed of one process's flows during one
//! summary interval.
use std::{net::IpAddr, sync::Arc};

use super::{HostInfo, ProcessIdentity, WallTime};

/// Which limit suppressed the flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Limiter {
    Global,
    Process,
}

impl Limiter {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Global => "global",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SuppressedEvent {
    pub(crate) time: WallTime,
    pub(crate) limiter: Limiter,
    /// The limit in force when the summary was written: flows a second, and burst.
    pub(crate) rate: f64,
    pub(crate) burst: u32,
    /// Flows whose start was suppressed in this interval, by transport.
    pub(crate) suppressed_tcp: u64,
    pub(crate) suppressed_udp: u64,
    /// Start times of the first and last of them (none when none started in the interval).
    pub(crate) first_suppressed: Option<WallTime>,
    pub(crate) last_suppressed: Option<WallTime>,
    /// Suppressed flows that ended in this interval and what their end events would have
    /// counted.
    pub(crate) suppressed_ended: u64,
    pub(crate) suppressed_in_bytes: u64,
    pub(crate) suppressed_out_bytes: u64,
    pub(crate) suppressed_packets: u64,
    /// Distinct remote addresses and responder ports, bounded, in order.
    pub(crate) remote_ips: Vec<IpAddr>,
    pub(crate) remote_ips_truncated: bool,
    pub(crate) dest_ports: Vec<u16>,
    pub(crate) dest_ports_truncated: bool,
    /// As the first suppressed flow of the summary had it; none for flows no process owned,
    /// or the summary of processes beyond the cap.
    pub(crate) process: Option<Arc<ProcessIdentity>>,
    pub(crate) host: Arc<HostInfo>,
}

impl SuppressedEvent {
    pub(crate) fn suppressed_flows(&self) -> u64 {
        self.suppressed_tcp + self.suppressed_udp
    }
}
