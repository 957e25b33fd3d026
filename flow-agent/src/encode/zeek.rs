//! `zeek`: Zeek conn.log records as Zeek's JSON writer prints them (`"id.orig_h"` keys, `ts`
//! in epoch seconds), one per flow, written at its end. Field mapping: docs/formats.md.
//!
//! `id.orig_*`/`id.resp_*` are the connection's originator and responder (for an inbound flow
//! the originator is the peer): the model's `src()`/`dest()`.
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use super::{time, Encoder};
use crate::event::{
    AppProtocolSource, Event, FlowAction, FlowEvent, Locality, Transport, WallTime,
};

pub(crate) struct ZeekEncoder {
    /// When the agent first reported each open flow whose start it did not see (open at
    /// start-up): conn.log's `ts` is the first packet seen, and its end event has no start.
    first_seen: HashMap<String, WallTime>,
}

impl ZeekEncoder {
    pub(crate) fn new() -> Self {
        Self {
            first_seen: HashMap::new(),
        }
    }

    /// Zeek's `local_orig`/`local_resp`: whether an address is in the local networks
    /// (`[enrich] local_networks`, which enrichment checked both addresses against).
    fn locals(&self, ev: &FlowEvent) -> (bool, bool) {
        let remote_local = ev.locality == Locality::Internal;
        let host_local = ev.local_locality == Locality::Internal;
        if ev.local_orig() {
            (host_local, remote_local)
        } else {
            (remote_local, host_local)
        }
    }

    fn encode_flow(&mut self, ev: &FlowEvent, out: &mut Vec<u8>) -> bool {
        if ev.action != FlowAction::End {
            if ev.action == FlowAction::Start && ev.start_time.is_none() {
                self.first_seen.insert(ev.ids.flow_id.clone(), ev.time);
            }
            return false;
        }
        let first_seen = if self.first_seen.is_empty() {
            None
        } else {
            self.first_seen.remove(&ev.ids.flow_id)
        };
        let start = ev.start_time.or(first_seen).unwrap_or(ev.time);
        let (local_orig, local_resp) = self.locals(ev);
        let (conn_state, history) = match ev.transport {
            Transport::Udp => udp_state(ev),
            Transport::Tcp => (ev.conn_state, ev.history.as_deref()),
        };
        let counts = ev.orig_resp();
        let (orig_ip_bytes, resp_ip_bytes) = ev.orig_resp_ip_bytes();
        let (src, dest) = (ev.src(), ev.dest());
        let record = Conn {
            ts: time::epoch_seconds(start),
            uid: ZeekUid::of(&ev.ids.flow_id),
            orig_h: src.0,
            orig_p: src.1,
            resp_h: dest.0,
            resp_p: dest.1,
            proto: ev.transport.as_str(),
            service: service(ev),
            duration: ev.duration_ns.map(time::seconds),
            orig_bytes: counts.map(|c| c.0),
            resp_bytes: counts.map(|c| c.1),
            conn_state,
            local_orig,
            local_resp,
            missed_bytes: 0,
            history,
            orig_pkts: counts.map(|c| c.2),
            orig_ip_bytes,
            resp_pkts: counts.map(|c| c.3),
            resp_ip_bytes,
            ip_proto: ev.transport.iana(),
            community_id: ev.ids.community_id.as_deref(),
        };
        serde_json::to_writer(&mut *out, &record).is_ok()
    }
}

impl Default for ZeekEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder for ZeekEncoder {
    /// conn.log only: no record for stats, for summaries of suppressed flows (they reach such
    /// outputs' readers through stats events of other outputs, the metrics and the agent's
    /// log) or for DNS queries (dns.log is another log).
    fn encode(&mut self, event: &Event, out: &mut Vec<u8>) -> bool {
        match event {
            Event::Flow(ev) => self.encode_flow(ev, out),
            // conn.log has no process records: process events have no Zeek form.
            Event::Dns(_) | Event::Process(_) | Event::Stats(_) | Event::RateLimited(_) => false,
        }
    }
}

/// A Zeek-shaped connection uid, as Zeek's `UID::Base62` writes its 96-bit ids: `C`, then the
/// base62 digits of the first 64 bits and of the last 32, each least significant digit first
/// and unpadded (Zeek's `uitoa_n`), so at most 18 characters. The bits are a hash of the flow id
/// (FNV-1a, 128 bits, mixed), so that every event of a flow, in every output and run, gives the same
/// uid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ZeekUid(u64, u32);

impl ZeekUid {
    pub(crate) fn of(flow_id: &str) -> Self {
        const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
        const PRIME: u128 = 0x0000000001000000000000000000013b;
        let h = flow_id
            .bytes()
            .fold(OFFSET, |h, b| (h ^ u128::from(b)).wrapping_mul(PRIME));
        // FNV's last bytes reach few bits: mix each half (splitmix64's finalizer).
        let mix = |mut z: u64| {
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let (hi, lo) = ((h >> 64) as u64, h as u64);
        ZeekUid(mix(hi ^ lo), mix(lo.rotate_left(32) ^ hi) as u32)
    }
}

impl fmt::Display for ZeekUid {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        // Zeek's digits (uitoa_n): 0-9, a-z, A-Z.
        const DIGITS: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut buf = [0u8; 18];
        buf[0] = b'C';
        let mut len = 1;
        for mut n in [self.0, u64::from(self.1)] {
            loop {
                buf[len] = DIGITS[(n % 62) as usize];
                len += 1;
                n /= 62;
                if n == 0 {
                    break;
                }
            }
        }
        f.write_str(std::str::from_utf8(&buf[..len]).unwrap_or_default())
    }
}

/// Zeek's UDP `conn_state` (`SF` both sides sent, `S0` only the originator, `SHR` only the
/// responder) and history (`D`/`d`: payload from the originator/responder), from the
/// counters; none when the counters are gone.
fn udp_state(ev: &FlowEvent) -> (Option<&'static str>, Option<&'static str>) {
    let Some((ob, rb, op, rp)) = ev.orig_resp() else {
        return (None, None);
    };
    let state = match (op > 0, rp > 0) {
        (true, true) => "SF",
        (true, false) => "S0",
        (false, true) => "SHR",
        (false, false) => "OTH",
    };
    let history = match (ob > 0, rb > 0) {
        (true, true) => Some("Dd"),
        (true, false) => Some("D"),
        (false, true) => Some("d"),
        (false, false) => None,
    };
    (Some(state), history)
}

/// Zeek's `service`: set only when the payload was recognised (Zeek's analyzers confirm a
/// protocol; a port alone does not), in Zeek's names (TLS is `ssl`).
fn service(ev: &FlowEvent) -> Option<&'static str> {
    match ev.app_protocol()? {
        ("tls", AppProtocolSource::Payload) => Some("ssl"),
        (proto, AppProtocolSource::Payload) => Some(proto),
        (_, AppProtocolSource::Port) => None,
    }
}

/// One conn.log line, fields in Zeek's order; `&optional` fields are omitted when unset, as
/// Zeek's JSON writer does.
#[derive(Serialize)]
struct Conn<'a> {
    ts: f64,
    #[serde(serialize_with = "super::ocsf::display")]
    uid: ZeekUid,
    #[serde(rename = "id.orig_h")]
    orig_h: IpAddr,
    #[serde(rename = "id.orig_p")]
    orig_p: u16,
    #[serde(rename = "id.resp_h")]
    resp_h: IpAddr,
    #[serde(rename = "id.resp_p")]
    resp_p: u16,
    proto: &'static str,
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
    history: Option<&'a str>,
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
