//! `ocsf`: OCSF Network Activity events (class 4001), one per flow event. Field mapping:
//! docs/formats.md. `rate_limited` summaries are activity 99 `Other` of the same class
//! (rate_limit.rs); `dns_query` events are DNS Activity (class 4003, dns.rs). Stats events have no OCSF class here and are not written.
use serde::Serialize;

use super::{common, time, Encoder};
use crate::{
    flows::{event::IntervalCounters, FlowEvent},
    health::StatsEvent,
};

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
    fn encode_flow(&mut self, event: &FlowEvent, out: &mut Vec<u8>) -> bool {
        serde_json::to_writer(&mut *out, &NetworkActivity::new(event)).is_ok()
    }

    fn encode_stats(&mut self, _stats: &StatsEvent, _out: &mut Vec<u8>) -> bool {
        false
    }

    fn encode_suppressed(
        &mut self,
        summary: &crate::ratelimit::SuppressedEvent,
        out: &mut Vec<u8>,
    ) -> bool {
        let fe = summary.as_flow_event();
        serde_json::to_writer(&mut *out, &rate_limit::RateLimited::new(summary, &fe)).is_ok()
    }

    fn encode_dns(&mut self, event: &crate::flows::dns_event::DnsEvent, out: &mut Vec<u8>) -> bool {
        let fe = event.as_flow_event();
        serde_json::to_writer(&mut *out, &dns::DnsActivity::new(event, &fe)).is_ok()
    }
}

#[derive(Serialize)]
struct NetworkActivity<'a> {
    activity_id: u32,
    activity_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    class_uid: u32,
    class_name: &'static str,
    type_uid: u32,
    type_name: String,
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
    message: String,
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

#[derive(Serialize)]
struct Metadata<'a> {
    version: &'static str,
    product: Product,
    /// The flow: every event of one flow carries it.
    correlation_uid: &'a str,
    original_time: &'a str,
    log_name: &'static str,
}

#[derive(Serialize)]
struct Product {
    name: &'static str,
    vendor_name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct NetEndpoint<'a> {
    ip: &'a str,
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
    protocol_name: &'a str,
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
    cipher: Option<&'a str>,
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
    let (_, version) = common::tls_version_parts(ev.tls_version.as_deref()?)?;
    Some(Tls {
        version,
        cipher: ev.tls_cipher.as_deref(),
        sni: ev.tls_server_name.as_deref(),
        ja3_hash: ev.ja3.as_deref().map(Fingerprint::md5),
        ja3s_hash: ev.ja3s.as_deref().map(Fingerprint::md5),
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

    /// Since the previous event: the native interval counts from this host's side.
    fn interval(ev: &FlowEvent, i: &IntervalCounters) -> Self {
        if ev.local_orig {
            Traffic::new(i.out_bytes, i.in_bytes, i.out_pkts, i.in_pkts)
        } else {
            Traffic::new(i.in_bytes, i.out_bytes, i.in_pkts, i.out_pkts)
        }
    }

    fn cumulative(ev: &FlowEvent) -> Option<Self> {
        Some(Traffic::new(
            ev.orig_bytes?,
            ev.resp_bytes?,
            ev.orig_pkts?,
            ev.resp_pkts?,
        ))
    }
}

#[derive(Serialize)]
struct Device<'a> {
    hostname: &'a str,
    name: &'a str,
    type_id: u32,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Observable<'a> {
    name: &'static str,
    type_id: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    value: &'a str,
}

/// Native fields OCSF has no attribute for.
#[derive(Serialize)]
struct Unmapped<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    rtt_us: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retransmits: Option<u32>,
    network_locality: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    attribution: Option<&'a str>,
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
    app_protocol_source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proto_info: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_alpn: Option<&'a str>,
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
        let ipv6 = common::is_ipv6(&ev.src_ip);
        // This host's side of the flow carries its name.
        let host_name = ev.fqdn.as_deref().unwrap_or(&ev.hostname);
        let (src_host, dst_host) = if ev.local_orig {
            (Some(host_name), None)
        } else {
            (None, Some(host_name))
        };
        let status = (ev.event_action == "end").then(|| {
            if common::connect_failed(ev) {
                (2, "Failure")
            } else {
                (1, "Success")
            }
        });
        let actor = process::Actor::of(ev);
        let mut observables = vec![
            Observable::ip("src_endpoint.ip", &ev.src_ip),
            Observable::ip("dst_endpoint.ip", &ev.dest_ip),
            Observable {
                name: "device.hostname",
                type_id: 1,
                kind: "Hostname",
                value: host_name,
            },
        ];
        if let Some(name) = actor.as_ref().and_then(|a| a.process.name) {
            observables.push(Observable {
                name: "actor.process.name",
                type_id: 9,
                kind: "Process Name",
                value: name,
            });
        }
        if let Some(user) = ev.user.as_deref() {
            observables.push(Observable {
                name: "actor.user.name",
                type_id: 4,
                kind: "User Name",
                value: user,
            });
        }
        NetworkActivity {
            activity_id: activity.id(),
            activity_name: activity.caption(),
            category_uid: CATEGORY_UID,
            category_name: "Network Activity",
            class_uid: CLASS_UID,
            class_name: "Network Activity",
            type_uid: CLASS_UID * 100 + activity.id(),
            type_name: format!("Network Activity: {}", activity.caption()),
            severity_id: 1,
            severity: "Informational",
            status_id: status.map(|s| s.0),
            status: status.map(|s| s.1),
            status_code: ev.conn_state,
            status_detail: ev.end_reason,
            time: time::epoch_millis(&ev.timestamp).unwrap_or_default(),
            timezone_offset: 0,
            start_time: ev.start_time.as_deref().and_then(time::epoch_millis),
            end_time: ev.end_time.as_deref().and_then(time::epoch_millis),
            duration: ev.duration.map(|s| (s * 1000.0).round() as i64),
            message: format!(
                "{} {} {}:{} -> {}:{}",
                activity.caption(),
                ev.transport_protocol,
                ev.src_ip,
                ev.src_port,
                ev.dest_ip,
                ev.dest_port
            ),
            metadata: Metadata {
                version: OCSF_VERSION,
                product: Product {
                    name: "flow-agent",
                    vendor_name: "flow-agent",
                    version: env!("CARGO_PKG_VERSION"),
                },
                correlation_uid: &ev.flow_id,
                original_time: &ev.timestamp,
                log_name: "flows",
            },
            src_endpoint: NetEndpoint {
                ip: &ev.src_ip,
                port: ev.src_port,
                hostname: src_host,
            },
            dst_endpoint: NetEndpoint {
                ip: &ev.dest_ip,
                port: ev.dest_port,
                hostname: dst_host,
            },
            connection_info: ConnectionInfo {
                uid: &ev.flow_id,
                community_uid: ev.community_id.as_deref(),
                direction_id: direction.id(),
                direction: direction.caption(),
                boundary_id: boundary.id(),
                boundary: boundary.caption(),
                protocol_num: common::iana_number(ev.transport_protocol),
                protocol_name: ev.transport_protocol,
                protocol_ver_id: if ipv6 { 6 } else { 4 },
                protocol_ver: if ipv6 {
                    "Internet Protocol version 6 (IPv6)"
                } else {
                    "Internet Protocol version 4 (IPv4)"
                },
                tcp_flags: ev.history.as_deref().map(vocabulary::tcp_flags),
                flag_history: ev.history.as_deref(),
            },
            app_name: ev.application_protocol,
            tls: tls(ev),
            traffic: ev.interval.as_ref().map(|i| Traffic::interval(ev, i)),
            cumulative_traffic: Traffic::cumulative(ev),
            is_src_dst_assignment_known: ev.start_observed,
            observation_point_id: if ev.local_orig { 1 } else { 2 },
            observation_point: if ev.local_orig {
                "Source"
            } else {
                "Destination"
            },
            actor,
            device: Device {
                hostname: host_name,
                name: &ev.hostname,
                type_id: 0,
                kind: "Unknown",
            },
            observables,
            unmapped: Unmapped {
                rtt_us: ev.rtt_us,
                retransmits: ev.retransmits,
                network_locality: ev.network_locality,
                attribution: ev.attribution,
                command_line_truncated: ev.command_line_truncated,
                gid: ev.gid,
                group: ev.group.as_deref(),
                cgroup_id: ev.cgroup_id,
                cgroup_path: ev.cgroup_path.as_deref(),
                container_id: ev.container_id.as_deref(),
                container_runtime: ev.container_runtime.as_deref(),
                systemd_unit: ev.systemd_unit.as_deref(),
                netns: ev.netns,
                app_protocol_source: ev.app_protocol_source,
                proto_info: ev.proto_info.as_deref(),
                tls_alpn: ev.tls_alpn.as_deref(),
                ja4: ev.ja4.as_deref(),
                ja4s: ev.ja4s.as_deref(),
                orig_content: ev.orig_content.as_deref(),
                resp_content: ev.resp_content.as_deref(),
            },
        }
    }
}

impl<'a> Observable<'a> {
    fn ip(name: &'static str, value: &'a str) -> Self {
        Observable {
            name,
            type_id: 2,
            kind: "IP Address",
            value,
        }
    }
}

#[cfg(test)]
mod tests;
