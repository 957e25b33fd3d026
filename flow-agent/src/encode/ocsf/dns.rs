//! A `dns_query` event as an OCSF DNS Activity event (class 4003) of activity 2 `Response`:
//! the question in `query`, the answers in `answers`, the response code in `rcode_id`/`rcode`,
//! the client in `src_endpoint`, the resolver in `dst_endpoint`, the asking process in
//! `actor` (docs/formats.md, ocsf).
use serde::Serialize;

use super::{process::Actor, vocabulary::Direction, Device, Observable, Product, OCSF_VERSION};
use crate::{
    encode::{common, time},
    flows::{dns_event::DnsEvent, FlowEvent},
};

pub(super) const DNS_CLASS_UID: u32 = 4003;
/// `Response`: the event is written when the answer arrives.
const ACTIVITY_RESPONSE: u32 = 2;

#[derive(Serialize)]
pub(super) struct DnsActivity<'a> {
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
    status_id: u32,
    status: &'static str,
    time: i64,
    timezone_offset: i32,
    message: String,
    metadata: Metadata<'a>,
    src_endpoint: Endpoint<'a>,
    dst_endpoint: Endpoint<'a>,
    connection_info: ConnectionInfo<'a>,
    query: Query<'a>,
    answers: Vec<Answer<'a>>,
    rcode_id: u32,
    rcode: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<Actor<'a>>,
    device: Device<'a>,
    observables: Vec<Observable<'a>>,
    unmapped: Unmapped<'a>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    version: &'static str,
    product: Product,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_uid: Option<&'a str>,
    original_time: &'a str,
    log_name: &'static str,
}

#[derive(Serialize)]
struct Endpoint<'a> {
    ip: &'a str,
    port: u16,
}

#[derive(Serialize)]
struct ConnectionInfo<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    community_uid: Option<&'a str>,
    direction_id: u32,
    direction: &'static str,
    protocol_num: u8,
    protocol_name: &'a str,
    protocol_ver_id: u32,
    protocol_ver: &'static str,
}

#[derive(Serialize)]
struct Query<'a> {
    hostname: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    class: &'static str,
    packet_uid: u16,
}

#[derive(Serialize)]
struct Answer<'a> {
    /// The address or CNAME target; empty for record types the agent does not decode.
    rdata: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    ttl: u32,
    class: &'static str,
    packet_uid: u16,
}

#[derive(Serialize)]
struct Unmapped<'a> {
    event_action: &'static str,
    answers_truncated: bool,
    resolved_ips: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup_path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    systemd_unit: Option<&'a str>,
}

/// OCSF's `rcode_id` and `rcode` captions (0-10 as in RFC 1035/2136, else 99 `Other`).
fn rcode(r: u8) -> (u32, Option<&'static str>) {
    let name = match r {
        0 => "NoError",
        1 => "FormError",
        2 => "ServError",
        3 => "NXDomain",
        4 => "NotImp",
        5 => "Refused",
        6 => "YXDomain",
        7 => "YXRRSet",
        8 => "NXRRSet",
        9 => "NotAuth",
        10 => "NotZone",
        _ => return (99, None),
    };
    (u32::from(r), Some(name))
}

impl<'a> DnsActivity<'a> {
    /// `fe` is `d` as a flow event ([`DnsEvent::as_flow_event`]): the process maps as it does
    /// for flows.
    pub(super) fn new(d: &'a DnsEvent, fe: &'a FlowEvent) -> Self {
        let actor = Actor::of(fe);
        let (rcode_id, rcode_name) = rcode(d.response_code_id);
        let mut observables = vec![Observable {
            name: "query.hostname",
            type_id: 1,
            kind: "Hostname",
            value: &d.query_name,
        }];
        for ip in &d.resolved_ips {
            observables.push(Observable {
                name: "answers.rdata",
                type_id: 2,
                kind: "IP Address",
                value: ip,
            });
        }
        if let Some(name) = actor.as_ref().and_then(|a| a.process.name) {
            observables.push(Observable {
                name: "actor.process.name",
                type_id: 9,
                kind: "Process Name",
                value: name,
            });
        }
        let ok = d.response_code_id == 0;
        let direction = Direction::of(fe);
        DnsActivity {
            activity_id: ACTIVITY_RESPONSE,
            activity_name: "Response",
            category_uid: super::CATEGORY_UID,
            category_name: "Network Activity",
            class_uid: DNS_CLASS_UID,
            class_name: "DNS Activity",
            type_uid: DNS_CLASS_UID * 100 + ACTIVITY_RESPONSE,
            type_name: "DNS Activity: Response",
            severity_id: 1,
            severity: "Informational",
            status_id: if ok { 1 } else { 2 },
            status: if ok { "Success" } else { "Failure" },
            time: time::epoch_millis(&d.timestamp).unwrap_or_default(),
            timezone_offset: 0,
            message: format!(
                "DNS {} {} answered {} ({} answers)",
                d.query_type,
                d.query_name,
                d.response_code,
                d.answers.len()
            ),
            metadata: Metadata {
                version: OCSF_VERSION,
                product: Product {
                    name: "flow-agent",
                    vendor_name: "flow-agent",
                    version: env!("CARGO_PKG_VERSION"),
                },
                correlation_uid: d.flow_id.as_deref(),
                original_time: &d.timestamp,
                log_name: "dns",
            },
            src_endpoint: Endpoint {
                ip: &d.client_ip,
                port: d.client_port,
            },
            dst_endpoint: Endpoint {
                ip: &d.resolver_ip,
                port: d.resolver_port,
            },
            connection_info: ConnectionInfo {
                uid: d.flow_id.as_deref(),
                community_uid: d.community_id.as_deref(),
                direction_id: direction.id(),
                direction: direction.caption(),
                protocol_num: common::iana_number(d.transport_protocol),
                protocol_name: d.transport_protocol,
                protocol_ver_id: if common::is_ipv6(&d.client_ip) { 6 } else { 4 },
                protocol_ver: if common::is_ipv6(&d.client_ip) {
                    "Internet Protocol version 6 (IPv6)"
                } else {
                    "Internet Protocol version 4 (IPv4)"
                },
            },
            query: Query {
                hostname: &d.query_name,
                kind: &d.query_type,
                class: "IN",
                packet_uid: d.transaction_id,
            },
            answers: d
                .answers
                .iter()
                .map(|a| Answer {
                    rdata: a.data.as_deref().unwrap_or(""),
                    kind: &a.r#type,
                    ttl: a.ttl,
                    class: "IN",
                    packet_uid: d.transaction_id,
                })
                .collect(),
            rcode_id,
            rcode: rcode_name.unwrap_or(&d.response_code),
            actor,
            device: Device {
                hostname: &d.hostname,
                name: &d.hostname,
                type_id: 0,
                kind: "Unknown",
            },
            observables,
            unmapped: Unmapped {
                event_action: d.event_action,
                answers_truncated: d.answers_truncated,
                resolved_ips: &d.resolved_ips,
                cgroup_path: fe.cgroup_path.as_deref(),
                container_id: fe.container_id.as_deref(),
                systemd_unit: fe.systemd_unit.as_deref(),
            },
        }
    }
}
