//! `ocsf`: OCSF Network Activity events (class 4001), one per flow event. Field mapping:
//! docs/formats.md. `rate_limited` summaries are activity 99 `Other` of the same class
//! (rate_limit.rs); `dns_query` events are DNS Activity (class 4003, dns.rs). Stats events have
//! no OCSF class here and are not written.
use std::{borrow::Cow, fmt, net::IpAddr};

use serde::{Serialize, Serializer};

use super::{common, time, time::Rfc3339, Encoder};
use crate::event::{Event, FlowEvent, HostInfo, IntervalCounters, Transport};

mod dns;
mod process;
mod rate_limit;
mod vocabulary;

use vocabulary::{Activity, Boundary, Direction};

/// The OCSF schema release the events follow.
pub const OCSF_VERSION: &str = "1.8.0";
const CATEGORY_UID: u32 = 4;
const CLASS_UID: u32 = 4001;

pub struct OcsfEncoder;

impl Encoder for OcsfEncoder {
    fn encode(&mut self, event: &Event, out: &mut Vec<u8>) -> bool {
        match event {
            Event::Flow(ev) => serde_json::to_writer(&mut *out, &NetworkActivity::new(ev)).is_ok(),
            Event::Dns(d) => serde_json::to_writer(&mut *out, &dns::DnsActivity::new(d)).is_ok(),
            Event::RateLimited(s) => {
                serde_json::to_writer(&mut *out, &rate_limit::RateLimited::new(s)).is_ok()
            }
            Event::Stats(_) => false,
        }
    }
}

/// Serializes a value as the string its `Display` writes, straight into the record.
pub(crate) fn display<T: fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// `connection_info.protocol_ver_id` and `protocol_ver` of an address's family.
pub(crate) fn ip_version(ip: IpAddr) -> (u32, &'static str) {
    if ip.is_ipv6() {
        (6, "Internet Protocol version 6 (IPv6)")
    } else {
        (4, "Internet Protocol version 4 (IPv4)")
    }
}

/// The product every event names in `metadata.product`.
pub(crate) const PRODUCT: Product = Product {
    name: "flow-agent",
    vendor_name: "flow-agent",
    version: env!("CARGO_PKG_VERSION"),
};

#[derive(Serialize)]
struct NetworkActivity<'a> {
    activity_id: u32,
    activity_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    class_uid: u32,
    class_name: &'static str,
    type_uid: u32,
    type_name: &'static str,
    severity_id: u32,
    severity: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_detail: Option<&'a str>,
    time: i64,
    timezone_offset: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<i64>,
    /// Milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<i64>,
    #[serde(serialize_with = "display")]
    message: FlowMessage,
    metadata: Metadata<'a>,
    src_endpoint: NetEndpoint<'a>,
    dst_endpoint: NetEndpoint<'a>,
    connection_info: ConnectionInfo<'a>,
    /// The application protocol (native `application_protocol`).
    #[serde(skip_serializing_if = "Option::is_none")]
    app_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<Tls<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traffic: Option<Traffic>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cumulative_traffic: Option<Traffic>,
    is_src_dst_assignment_known: bool,
    observation_point_id: u32,
    observation_point: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<process::Actor<'a>>,
    device: Device<'a>,
    observables: Vec<Observable<'a>>,
    unmapped: Unmapped<'a>,
}

/// `Close tcp 127.0.0.1:33596 -> 127.0.0.1:18080`.
struct FlowMessage {
    activity: &'static str,
    transport: Transport,
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
}

impl fmt::Display for FlowMessage {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{} {} {}:{} -> {}:{}",
            self.activity,
            self.transport.as_str(),
            self.src.0,
            self.src.1,
            self.dst.0,
            self.dst.1
        )
    }
}

#[derive(Serialize)]
struct Metadata<'a> {
    version: &'static str,
    product: Product,
    /// The flow: every event of one flow carries it.
    correlation_uid: &'a str,
    original_time: Rfc3339,
    log_name: &'static str,
}

#[derive(Serialize)]
pub(crate) struct Product {
    name: &'static str,
    vendor_name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct NetEndpoint<'a> {
    ip: IpAddr,
    port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<&'a str>,
}

#[derive(Serialize)]
struct ConnectionInfo<'a> {
    uid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    community_uid: Option<&'a str>,
    direction_id: u32,
    direction: &'static str,
    boundary_id: u32,
    boundary: &'static str,
    protocol_num: u8,
    protocol_name: &'static str,
    protocol_ver_id: u32,
    protocol_ver: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_flags: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flag_history: Option<&'a str>,
}

/// The TLS object: `version` is required, so it is written only when the version is known.
#[derive(Serialize)]
struct Tls<'a> {
    version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cipher: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sni: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ja3_hash: Option<Fingerprint<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ja3s_hash: Option<Fingerprint<'a>>,
}

/// A fingerprint object: JA3 and JA3S are MD5 digests.
#[derive(Serialize)]
struct Fingerprint<'a> {
    algorithm_id: u32,
    algorithm: &'static str,
    value: &'a str,
}

impl<'a> Fingerprint<'a> {
    fn md5(value: &'a str) -> Self {
        Fingerprint {
            algorithm_id: 1,
            algorithm: "MD5",
            value,
        }
    }
}

fn tls(ev: &FlowEvent) -> Option<Tls<'_>> {
    let t = ev.tls()?;
    let (_, version) = common::tls_version_parts(t.version.as_deref()?)?;
    Some(Tls {
        version,
        cipher: t.cipher.map(common::cipher_display),
        sni: t.server_name.as_deref(),
        ja3_hash: t.ja3.as_deref().map(Fingerprint::md5),
        ja3s_hash: t.ja3s.as_deref().map(Fingerprint::md5),
    })
}

/// `in` is from the destination (responder) to the source (initiator), `out` the reverse.
#[derive(Serialize)]
struct Traffic {
    bytes: u64,
    bytes_in: u64,
    bytes_out: u64,
    packets: u64,
    packets_in: u64,
    packets_out: u64,
}

impl Traffic {
    fn new(orig_bytes: u64, resp_bytes: u64, orig_pkts: u64, resp_pkts: u64) -> Self {
        Traffic {
            bytes: orig_bytes + resp_bytes,
            bytes_in: resp_bytes,
            bytes_out: orig_bytes,
            packets: orig_pkts + resp_pkts,
            packets_in: resp_pkts,
            packets_out: orig_pkts,
        }
    }

    /// Since the previous event: the interval counts from this host's side.
    fn interval(ev: &FlowEvent, i: &IntervalCounters) -> Self {
        let (ob, rb) = ev.by_role(i.out_bytes, i.in_bytes);
        let (op, rp) = ev.by_role(i.out_pkts, i.in_pkts);
        Traffic::new(ob, rb, op, rp)
    }

    fn cumulative(ev: &FlowEvent) -> Option<Self> {
        let (ob, rb, op, rp) = ev.orig_resp()?;
        Some(Traffic::new(ob, rb, op, rp))
    }
}

/// This host, as every event's `device`.
#[derive(Serialize)]
pub(crate) struct Device<'a> {
    hostname: &'a str,
    name: &'a str,
    type_id: u32,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl<'a> Device<'a> {
    /// `hostname`: the name the event gives this host (flow events: its fqdn when known, see
    /// [`host_name`]); `name` is always the host's own hostname.
    pub(crate) fn of(host: &'a HostInfo, hostname: &'a str) -> Self {
        Device {
            hostname,
            name: &host.hostname,
            type_id: 0,
            kind: "Unknown",
        }
    }
}

/// This host's fully qualified name when known, else its hostname.
fn host_name(host: &HostInfo) -> &str {
    host.fqdn.as_deref().unwrap_or(&host.hostname)
}

#[derive(Serialize)]
pub(crate) struct Observable<'a> {
    name: &'static str,
    type_id: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    value: ObservableValue<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum ObservableValue<'a> {
    Text(&'a str),
    Ip(IpAddr),
}

impl<'a> Observable<'a> {
    pub(crate) fn ip(name: &'static str, value: IpAddr) -> Self {
        Observable {
            name,
            type_id: 2,
            kind: "IP Address",
            value: ObservableValue::Ip(value),
        }
    }

    pub(crate) fn hostname(name: &'static str, value: &'a str) -> Self {
        Observable {
            name,
            type_id: 1,
            kind: "Hostname",
            value: ObservableValue::Text(value),
        }
    }

    /// `actor.process.name`, when the actor's name is known.
    pub(crate) fn process_name(actor: Option<&process::Actor<'a>>) -> Option<Self> {
        Some(Observable {
            name: "actor.process.name",
            type_id: 9,
            kind: "Process Name",
            value: ObservableValue::Text(actor?.process.name?),
        })
    }

    /// `actor.user.name`, when the actor's user name is known.
    pub(crate) fn user_name(actor: Option<&process::Actor<'a>>) -> Option<Self> {
        Some(Observable {
            name: "actor.user.name",
            type_id: 4,
            kind: "User Name",
            value: ObservableValue::Text(actor?.user.name?),
        })
    }
}

/// Native fields OCSF has no attribute for.
#[derive(Serialize)]
struct Unmapped<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    rtt_us: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retransmits: Option<u32>,
    network_locality: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    attribution: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_line_truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup_path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_runtime: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    systemd_unit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_protocol_source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proto_info: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_alpn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_client_hello_truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ja4: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ja4s: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orig_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resp_content: Option<&'a str>,
}

impl<'a> NetworkActivity<'a> {
    fn new(ev: &'a FlowEvent) -> Self {
        let activity = Activity::of(ev);
        let direction = Direction::of(ev);
        let boundary = Boundary::of(ev);
        let (src, dst) = (ev.src(), ev.dest());
        let (protocol_ver_id, protocol_ver) = ip_version(src.0);
        // This host's side of the flow carries its name.
        let host = &*ev.host;
        let host_name = host_name(host);
        let (src_host, dst_host) = if ev.local_orig() {
            (Some(host_name), None)
        } else {
            (None, Some(host_name))
        };
        let status = (ev.action == crate::event::FlowAction::End).then(|| {
            if ev.connect_failed() {
                (2, "Failure")
            } else {
                (1, "Success")
            }
        });
        let p = ev.process.as_deref();
        let actor = p.map(|p| process::Actor::of(p, ev.tid));
        let mut observables = Vec::with_capacity(5);
        observables.push(Observable::ip("src_endpoint.ip", src.0));
        observables.push(Observable::ip("dst_endpoint.ip", dst.0));
        observables.push(Observable::hostname("device.hostname", host_name));
        observables.extend(Observable::process_name(actor.as_ref()));
        observables.extend(Observable::user_name(actor.as_ref()));
        let app = ev.app.as_deref();
        let tls_info = ev.tls();
        NetworkActivity {
            activity_id: activity.id(),
            activity_name: activity.caption(),
            category_uid: CATEGORY_UID,
            category_name: "Network Activity",
            class_uid: CLASS_UID,
            class_name: "Network Activity",
            type_uid: CLASS_UID * 100 + activity.id(),
            type_name: activity.type_name(),
            severity_id: 1,
            severity: "Informational",
            status_id: status.map(|s| s.0),
            status: status.map(|s| s.1),
            status_code: ev.conn_state,
            status_detail: ev.end_reason,
            time: ev.time.millis(),
            timezone_offset: 0,
            start_time: ev.start_time.map(|t| t.millis()),
            end_time: ev.end_time.map(|t| t.millis()),
            duration: ev
                .duration_ns
                .map(|ns| (time::seconds(ns) * 1000.0).round() as i64),
            message: FlowMessage {
                activity: activity.caption(),
                transport: ev.transport,
                src,
                dst,
            },
            metadata: Metadata {
                version: OCSF_VERSION,
                product: PRODUCT,
                correlation_uid: &ev.ids.flow_id,
                original_time: Rfc3339::new(ev.time),
                log_name: "flows",
            },
            src_endpoint: NetEndpoint {
                ip: src.0,
                port: src.1,
                hostname: src_host,
            },
            dst_endpoint: NetEndpoint {
                ip: dst.0,
                port: dst.1,
                hostname: dst_host,
            },
            connection_info: ConnectionInfo {
                uid: &ev.ids.flow_id,
                community_uid: ev.ids.community_id.as_deref(),
                direction_id: direction.id(),
                direction: direction.caption(),
                boundary_id: boundary.id(),
                boundary: boundary.caption(),
                protocol_num: ev.transport.iana(),
                protocol_name: ev.transport.as_str(),
                protocol_ver_id,
                protocol_ver,
                tcp_flags: ev.history.as_deref().map(vocabulary::tcp_flags),
                flag_history: ev.history.as_deref(),
            },
            app_name: ev.app_protocol().map(|(name, _)| name),
            tls: tls(ev),
            traffic: ev
                .counters
                .as_ref()
                .map(|c| Traffic::interval(ev, &c.interval)),
            cumulative_traffic: Traffic::cumulative(ev),
            is_src_dst_assignment_known: ev.start_observed,
            observation_point_id: if ev.local_orig() { 1 } else { 2 },
            observation_point: if ev.local_orig() {
                "Source"
            } else {
                "Destination"
            },
            actor,
            device: Device::of(host, host_name),
            observables,
            unmapped: Unmapped {
                rtt_us: ev.rtt_us,
                retransmits: ev.retransmits,
                network_locality: ev.locality.as_str(),
                attribution: ev.attribution.map(|a| a.as_str()),
                command_line_truncated: p.and_then(|p| p.command_line_truncated),
                gid: p.map(|p| p.gid),
                group: p.and_then(|p| p.group.as_deref()),
                cgroup_id: p.map(|p| p.cgroup_id).filter(|&id| id != 0),
                cgroup_path: p.and_then(|p| p.cgroup_path.as_deref()),
                container_id: p.and_then(|p| p.container_id.as_deref()),
                container_runtime: p.and_then(|p| p.container_runtime.as_deref()),
                systemd_unit: p.and_then(|p| p.systemd_unit.as_deref()),
                netns: ev.netns,
                app_protocol_source: ev.app_protocol().map(|(_, source)| source.as_str()),
                proto_info: app.and_then(|a| a.info.as_deref()),
                tls_alpn: tls_info.and_then(|t| t.alpn.as_deref()),
                tls_client_hello_truncated: tls_info.and_then(|t| t.client_hello_truncated),
                ja4: tls_info.and_then(|t| t.ja4.as_deref()),
                ja4s: tls_info.and_then(|t| t.ja4s.as_deref()),
                orig_content: app.and_then(|a| a.orig_content.as_deref()),
                resp_content: app.and_then(|a| a.resp_content.as_deref()),
            },
        }
    }
}

#[cfg(test)]
mod tests;
