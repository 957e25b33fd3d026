//! A `dns_query` event as an OCSF DNS Activity event (class 4003) of activity 2 `Response`:
//! the question in `query`, the answers in `answers`, the response code in `rcode_id`/`rcode`,
//! the client in `src_endpoint`, the resolver in `dst_endpoint`, the asking process in
//! `actor` (docs/formats.md, ocsf).
use std::{borrow::Cow, fmt, net::IpAddr};

use serde::{ser::SerializeSeq, Serialize, Serializer};

use super::{
    display, ip_version, process::Actor, vocabulary::Direction, Device, Observable, Product,
    OCSF_VERSION, PRODUCT,
};
use crate::{
    encode::time::Rfc3339,
    event::DnsEvent,
    proto::dns::{rcode_name, type_name},
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
    #[serde(serialize_with = "display")]
    message: DnsMessage<'a>,
    metadata: Metadata<'a>,
    src_endpoint: Endpoint,
    dst_endpoint: Endpoint,
    connection_info: ConnectionInfo<'a>,
    query: Query<'a>,
    answers: Answers<'a>,
    rcode_id: u32,
    rcode: Cow<'static, str>,
    /// When the answer arrived (the event's time).
    response_time: i64,
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
    profiles: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_uid: Option<&'a str>,
    original_time: Rfc3339,
    log_name: &'static str,
}

#[derive(Serialize)]
struct Endpoint {
    ip: IpAddr,
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
    protocol_name: &'static str,
    protocol_ver_id: u32,
    protocol_ver: &'static str,
}

#[derive(Serialize)]
struct Query<'a> {
    hostname: &'a str,
    #[serde(rename = "type")]
    kind: Cow<'static, str>,
    class: &'static str,
    packet_uid: u16,
}

/// The answer section, serialized from the event's answers as they are.
struct Answers<'a>(&'a DnsEvent);

impl Serialize for Answers<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.0;
        let mut seq = s.serialize_seq(Some(d.answers.len()))?;
        for a in &d.answers {
            seq.serialize_element(&Answer {
                rdata: a.data.as_deref().unwrap_or(""),
                kind: type_name(a.rtype),
                ttl: a.ttl,
                class: "IN",
                packet_uid: d.transaction_id,
            })?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct Answer<'a> {
    /// The address or CNAME target; empty for record types the agent does not decode.
    rdata: &'a str,
    #[serde(rename = "type")]
    kind: Cow<'static, str>,
    ttl: u32,
    class: &'static str,
    packet_uid: u16,
}

#[derive(Serialize)]
struct Unmapped<'a> {
    event_action: &'static str,
    answers_truncated: bool,
    resolved_ips: &'a [IpAddr],
    #[serde(skip_serializing_if = "Option::is_none")]
    gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup_path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_runtime: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    systemd_unit: Option<&'a str>,
}

/// `DNS A www.a.test answered NOERROR (2 answers)`.
struct DnsMessage<'a>(&'a DnsEvent);

impl fmt::Display for DnsMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let d = self.0;
        write!(
            f,
            "DNS {} {} answered {} ({} answers)",
            type_name(d.query_type),
            d.query_name,
            rcode_name(d.response_code),
            d.answers.len()
        )
    }
}

/// OCSF's `rcode_id` and `rcode` captions (DNS Activity's enum: the RCODEs IANA assigned,
/// 0-11 and 16-23; else 99 `Other`).
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
        11 => "DSOTYPENI",
        16 => "BADSIG_VERS",
        17 => "BADKEY",
        18 => "BADTIME",
        19 => "BADMODE",
        20 => "BADNAME",
        21 => "BADALG",
        22 => "BADTRUNC",
        23 => "BADCOOKIE",
        _ => return (99, None),
    };
    (u32::from(r), Some(name))
}

impl<'a> DnsActivity<'a> {
    pub(super) fn new(d: &'a DnsEvent) -> Self {
        let p = d.process.as_deref();
        // DNS events carry no thread.
        let actor = p.map(|p| Actor::of(p, None));
        let (rcode_id, rcode_caption) = rcode(d.response_code);
        let mut observables = Vec::with_capacity(2 + d.resolved_ips.len());
        observables.push(Observable::hostname("query.hostname", &d.query_name));
        for &ip in &d.resolved_ips {
            observables.push(Observable::ip("answers.rdata", ip));
        }
        observables.extend(Observable::process_name(actor.as_ref()));
        let ok = d.response_code == 0;
        // The client is this host, asking.
        let loopback = d.client.0.is_loopback() && d.resolver.0.is_loopback();
        let direction = Direction::new(loopback, d.locality, true);
        let (protocol_ver_id, protocol_ver) = ip_version(d.client.0);
        let flow = d.flow.as_deref();
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
            time: d.time.millis(),
            timezone_offset: 0,
            message: DnsMessage(d),
            metadata: Metadata {
                version: OCSF_VERSION,
                product: PRODUCT,
                profiles: super::PROFILES,
                correlation_uid: flow.map(|f| f.flow_id.as_str()),
                original_time: Rfc3339::new(d.time),
                log_name: "dns",
            },
            src_endpoint: Endpoint {
                ip: d.client.0,
                port: d.client.1,
            },
            dst_endpoint: Endpoint {
                ip: d.resolver.0,
                port: d.resolver.1,
            },
            connection_info: ConnectionInfo {
                uid: flow.map(|f| f.flow_id.as_str()),
                community_uid: flow.and_then(|f| f.community_id.as_deref()),
                direction_id: direction.id(),
                direction: direction.caption(),
                protocol_num: d.transport.iana(),
                protocol_name: d.transport.as_str(),
                protocol_ver_id,
                protocol_ver,
            },
            query: Query {
                hostname: &d.query_name,
                kind: type_name(d.query_type),
                class: "IN",
                packet_uid: d.transaction_id,
            },
            answers: Answers(d),
            rcode_id,
            rcode: match rcode_caption {
                Some(caption) => Cow::Borrowed(caption),
                None => rcode_name(d.response_code),
            },
            response_time: d.time.millis(),
            actor,
            // DNS events name this host by its hostname.
            device: Device::of(&d.host, &d.host.hostname),
            observables,
            unmapped: Unmapped {
                event_action: "dns_query",
                answers_truncated: d.answers_truncated,
                resolved_ips: &d.resolved_ips,
                gid: p.map(|p| p.gid),
                group: p.and_then(|p| p.group.as_deref()),
                cgroup_path: p.and_then(|p| p.cgroup_path.as_deref()),
                container_id: p.and_then(|p| p.container_id.as_deref()),
                container_runtime: p.and_then(|p| p.container_runtime.as_deref()),
                systemd_unit: p.and_then(|p| p.systemd_unit.as_deref()),
            },
        }
    }
}
