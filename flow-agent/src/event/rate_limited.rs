//! The `rate_limited` event: what one limiter suppressed of one process's flows during one
//! summary interval.
use std::{net::IpAddr, sync::Arc};

use super::{HostInfo, ProcessIdentity, WallTime};

/// Which limit suppressed the flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Limiter {
    Global,
    Process,
}

impl Limiter {
    pub fn name(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Global => "global",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SuppressedEvent {
    pub time: WallTime,
    pub limiter: Limiter,
    /// The limit in force when the summary was written: flows a second, and burst.
    pub rate: f64,
    pub burst: u32,
    /// Flows whose start was suppressed in this interval, by transport.
    pub suppressed_tcp: u64,
    pub suppressed_udp: u64,
    /// Start times of the first and last of them (none when none started in the interval).
    pub first_suppressed: Option<WallTime>,
    pub last_suppressed: Option<WallTime>,
    /// Suppressed flows that ended in this interval and what their end events would have
    /// counted.
    pub suppressed_ended: u64,
    pub suppressed_in_bytes: u64,
    pub suppressed_out_bytes: u64,
    pub suppressed_packets: u64,
    /// Distinct remote addresses and responder ports, bounded, in order.
    pub remote_ips: Vec<IpAddr>,
    pub remote_ips_truncated: bool,
    pub dest_ports: Vec<u16>,
    pub dest_ports_truncated: bool,
    /// As the first suppressed flow of the summary had it; none for flows no process owned,
    /// or the summary of processes beyond the cap.
    pub process: Option<Arc<ProcessIdentity>>,
    pub host: Arc<HostInfo>,
}

impl SuppressedEvent {
    pub fn suppressed_flows(&self) -> u64 {
        self.suppressed_tcp + self.suppressed_udp
    }
}
