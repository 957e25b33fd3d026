//! One `rate_limited` summary being collected (docs/events.md, "Rate-limited flows").
use std::{collections::BTreeSet, net::IpAddr, sync::Arc};

use crate::event::{
    FlowEvent, HostInfo, Limiter, ProcessIdentity, SuppressedEvent, Transport, WallTime,
};

/// Distinct remote addresses and destination ports one summary lists at most.
pub(crate) const MAX_DISTINCT: usize = 16;

/// One summary being collected.
#[derive(Debug, Default)]
pub(super) struct Summary {
    pub(super) process: Option<Arc<ProcessIdentity>>,
    pub(super) tcp: u64,
    pub(super) udp: u64,
    pub(super) first: Option<WallTime>,
    pub(super) last: Option<WallTime>,
    pub(super) ended: u64,
    pub(super) in_bytes: u64,
    pub(super) out_bytes: u64,
    pub(super) packets: u64,
    pub(super) remote_ips: BTreeSet<IpAddr>,
    pub(super) ips_truncated: bool,
    pub(super) dest_ports: BTreeSet<u16>,
    pub(super) ports_truncated: bool,
    /// The host of the events summarized.
    pub(super) host: Arc<HostInfo>,
}

impl Summary {
    pub(super) fn new(process: Option<Arc<ProcessIdentity>>, ev: &FlowEvent) -> Self {
        Self {
            process,
            host: ev.host.clone(),
            ..Self::default()
        }
    }

    /// A flow's start, suppressed.
    pub(super) fn started(&mut self, ev: &FlowEvent) {
        if ev.transport == Transport::Tcp {
            self.tcp += 1;
        } else {
            self.udp += 1;
        }
        let at = ev.start_time.unwrap_or(ev.time);
        if self.first.is_none_or(|f| at < f) {
            self.first = Some(at);
        }
        if self.last.is_none_or(|l| at > l) {
            self.last = Some(at);
        }
        let remote = ev.remote.0;
        if !self.remote_ips.contains(&remote) {
            if self.remote_ips.len() < MAX_DISTINCT {
                self.remote_ips.insert(remote);
            } else {
                self.ips_truncated = true;
            }
        }
        let dest_port = ev.dest().1;
        if !self.dest_ports.contains(&dest_port) {
            if self.dest_ports.len() < MAX_DISTINCT {
                self.dest_ports.insert(dest_port);
            } else {
                self.ports_truncated = true;
            }
        }
    }

    /// A suppressed flow's end: what its end event would have counted.
    pub(super) fn ended(&mut self, ev: &FlowEvent) {
        self.ended += 1;
        if let Some(c) = ev.counters {
            self.in_bytes += c.in_bytes;
            self.out_bytes += c.out_bytes;
            self.packets += c.in_pkts + c.out_pkts;
        }
    }

    pub(super) fn into_event(
        self,
        limiter: Limiter,
        limit: super::Limit,
        time: WallTime,
    ) -> SuppressedEvent {
        SuppressedEvent {
            time,
            limiter,
            rate: limit.rate,
            burst: limit.burst,
            suppressed_tcp: self.tcp,
            suppressed_udp: self.udp,
            first_suppressed: self.first,
            last_suppressed: self.last,
            suppressed_ended: self.ended,
            suppressed_in_bytes: self.in_bytes,
            suppressed_out_bytes: self.out_bytes,
            suppressed_packets: self.packets,
            remote_ips: self.remote_ips.into_iter().collect(),
            remote_ips_truncated: self.ips_truncated,
            dest_ports: self.dest_ports.into_iter().collect(),
            dest_ports_truncated: self.ports_truncated,
            process: self.process,
            host: self.host,
        }
    }
}
