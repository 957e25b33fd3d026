//! `zeek`: Zeek conn.log records as Zeek's JSON writer prints them (`"id.orig_h"` keys, `ts`
//! in epoch seconds), one per flow, written at its end. Field mapping: docs/formats.md.
//!
//! The native `src`/`dest` are already the connection's originator and responder (for an
//! inbound flow `src` is the peer), so they map to `id.orig_*`/`id.resp_*` as they are.
use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;

use super::{common, time, Encoder};
use crate::{
    enrich::networks::{default_local_networks, is_local, Cidr},
    flows::FlowEvent,
    health::StatsEvent,
};

pub struct ZeekEncoder {
    /// When the agent first reported each open flow whose start it did not see (open at
    /// start-up): conn.log's `ts` is the first packet seen, and its end event has no start.
    first_seen: HashMap<String, String>,
    local_networks: Vec<Cidr>,
}

impl ZeekEncoder {
    pub fn new() -> Self {
        Self {
            first_seen: HashMap::new(),
            local_networks: default_local_networks(),
        }
    }

    /// Zeek's `local_orig`/`local_resp`: whether an address is in the local networks. The peer
    /// is as the event's `network_locality` says; this host's own address is checked against
    /// the same built-in list.
    fn locals(&self, ev: &FlowEvent) -> (bool, bool) {
        let remote_local = ev.network_locality == "internal";
        let host_ip = if ev.local_orig {
            &ev.src_ip
        } else {
            &ev.dest_ip
        };
        let host_local = host_ip
            .parse::<IpAddr>()
            .is_ok_and(|ip| is_local(&self.local_networks, ip));
        if ev.local_orig {
            (host_local, remote_local)
        } else {
            (remote_local, host_local)
        }
    }
}

impl Default for ZeekEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder for ZeekEncoder {
    fn encode_flow(&mut self, ev: &FlowEvent, out: &mut Vec<u8>) -> bool {
        if ev.event_action != "end" {
            if ev.event_action == "start" && ev.start_time.is_none() {
                self.first_seen
                    .insert(ev.flow_id.clone(), ev.timestamp.clone());
            }
            return false;
        }
        let first_seen = self.first_seen.remove(&ev.flow_id);
        let start = ev
            .start_time
            .as_deref()
            .or(first_seen.as_deref())
            .unwrap_or(&ev.timestamp);
        let (local_orig, local_resp) = self.locals(ev);
        let (conn_state, history) = if ev.transport_protocol == "udp" {
            udp_state(ev)
        } else {
            (ev.conn_state, ev.history.clone())
        };
        let record = Conn {
            ts: time::epoch_seconds(start).unwrap_or_default(),
            uid: &ev.flow_id,
            orig_h: &ev.src_ip,
            orig_p: ev.src_port,
            resp_h: &ev.dest_ip,
            resp_p: ev.dest_port,
            proto: ev.transport_protocol,
            service: service(ev),
            duration: ev.duration,
            orig_bytes: ev.orig_bytes,
            resp_bytes: ev.resp_bytes,
            conn_state,
            local_orig,
            local_resp,
            missed_bytes: 0,
            history,
            orig_pkts: ev.orig_pkts,
            orig_ip_bytes: ev.orig_ip_bytes,
            resp_pkts: ev.resp_pkts,
            resp_ip_bytes: ev.resp_ip_bytes,
            ip_proto: common::iana_number(ev.transport_protocol),
            community_id: ev.community_id.as_deref(),
        };
        serde_json::to_writer(&mut *out, &record).is_ok()
    }

    fn encode_stats(&mut self, _stats: &StatsEvent, _out: &mut Vec<u8>) -> bool {
        false
    }

    /// No record of this format describes flows not seen: the summaries reach such outputs'
    /// readers through stats events of other outputs, the metrics and the agent's log.
    fn encode_suppressed(
        &mut self,
        _summary: &crate::ratelimit::SuppressedEvent,
        _out: &mut Vec<u8>,
    ) -> bool {
        false
    }

    /// dns.log is another log than conn.log: a zeek output writes conn.log only.
    fn encode_dns(
        &mut self,
        _event: &crate::flows::dns_event::DnsEvent,
        _out: &mut Vec<u8>,
    ) -> bool {
        false
    }
}

/// Zeek's UDP `conn_state` (`SF` both sides sent, `S0` only the originator, `SHR` only the
/// responder) and history (`D`/`d`: payload from the originator/responder), from the
/// counters; none when the counters are gone.
fn udp_state(ev: &FlowEvent) -> (Option<&'static str>, Option<String>) {
    let (Some(op), Some(rp)) = (ev.orig_pkts, ev.resp_pkts) else {
        return (None, None);
    };
    let state = match (op > 0, rp > 0) {
        (true, true) => "SF",
        (true, false) => "S0",
        (false, true) => "SHR",
        (false, false) => "OTH",
    };
    let mut history = String::new();
    if ev.orig_bytes.unwrap_or(0) > 0 {
        history.push('D');
    }
    if ev.resp_bytes.unwrap_or(0) > 0 {
        history.push('d');
    }
    (Some(state), (!history.is_empty()).then_some(history))
}

/// Zeek's `service`: set only when the payload was recognised (Zeek's analyzers confirm a
/// protocol; a port alone does not), in Zeek's names (TLS is `ssl`).
fn service(ev: &FlowEvent) -> Option<&str> {
    if ev.app_protocol_source != Some("payload") {
        return None;
    }
    let proto = ev.application_protocol?;
    Some(if proto == "tls" { "ssl" } else { proto })
}

/// One conn.log line, fields in Zeek's order; `&optional` fields are omitted when unset, as
/// Zeek's JSON writer does.
#[derive(Serialize)]
struct Conn<'a> {
    ts: f64,
    uid: &'a str,
    #[serde(rename = "id.orig_h")]
    orig_h: &'a str,
    #[serde(rename = "id.orig_p")]
    orig_p: u16,
    #[serde(rename = "id.resp_h")]
    resp_h: &'a str,
    #[serde(rename = "id.resp_p")]
    resp_p: u16,
    proto: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orig_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resp_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conn_state: Option<&'a str>,
    local_orig: bool,
    local_resp: bool,
    missed_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orig_pkts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orig_ip_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resp_pkts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resp_ip_bytes: Option<u64>,
    ip_proto: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    community_id: Option<&'a str>,
}

#[cfg(test)]
#[path = "zeek_tests.rs"]
mod tests;
