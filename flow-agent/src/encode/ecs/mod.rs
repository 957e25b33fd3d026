//! `ecs`: Elastic Common Schema documents (nested JSON objects), one per flow event, and a
//! metric document per stats event. Field mapping: docs/formats.md.
use serde::Serialize;

use super::{common, Encoder};
use crate::{
    flows::{dns_event::DnsEvent, FlowEvent},
    health::StatsEvent,
    ratelimit::SuppressedEvent,
};

mod dns;
mod rate_limit;
mod stats;

/// The ECS release the documents follow.
pub const ECS_VERSION: &str = "9.4.0";
/// `event.module`: the source of the data.
const MODULE: &str = "flow_agent";

pub struct EcsEncoder;

impl Encoder for EcsEncoder {
    fn encode_flow(&mut self, event: &FlowEvent, out: &mut Vec<u8>) -> bool {
        serde_json::to_writer(&mut *out, &FlowDoc::new(event)).is_ok()
    }

    fn encode_stats(&mut self, stats: &StatsEvent, out: &mut Vec<u8>) -> bool {
        serde_json::to_writer(&mut *out, &stats::StatsDoc::new(stats)).is_ok()
    }

    fn encode_suppressed(&mut self, summary: &SuppressedEvent, out: &mut Vec<u8>) -> bool {
        let fe = summary.as_flow_event();
        serde_json::to_writer(&mut *out, &rate_limit::RateLimitDoc::new(summary, &fe)).is_ok()
    }

    fn encode_dns(&mut self, event: &DnsEvent, out: &mut Vec<u8>) -> bool {
        let fe = event.as_flow_event();
        serde_json::to_writer(&mut *out, &dns::DnsDoc::new(event, &fe)).is_ok()
    }
}

#[derive(Serialize)]
struct Ecs {
    version: &'static str,
}

#[derive(Serialize)]
struct Agent {
    #[serde(rename = "type")]
    kind: &'static str,
    version: &'static str,
}

const AGENT: Agent = Agent {
    kind: "flow-agent",
    version: env!("CARGO_PKG_VERSION"),
};

#[derive(Serialize)]
struct FlowDoc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: &'a str,
    ecs: Ecs,
    agent: Agent,
    event: Event<'a>,
    source: Endpoint<'a>,
    destination: Endpoint<'a>,
    network: Network<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<Tls<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<Process<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<Named<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<Named<'a>>,
    host: Host<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<Container<'a>>,
    related: Related<'a>,
    flow_agent: Custom<'a>,
}

#[derive(Serialize)]
struct Event<'a> {
    kind: &'static str,
    category: [&'static str; 1],
    #[serde(rename = "type")]
    types: [&'static str; 2],
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    module: &'static str,
    dataset: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<&'a str>,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<u64>,
}

#[derive(Serialize)]
struct Endpoint<'a> {
    address: &'a str,
    ip: &'a str,
    port: u16,
    /// Sent by this endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    packets: Option<u64>,
}

#[derive(Serialize)]
struct Network<'a> {
    transport: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    iana_number: String,
    direction: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    community_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    packets: Option<u64>,
}

#[derive(Serialize)]
struct Tls<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cipher: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_protocol: Option<&'a str>,
    client: TlsClient<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<TlsServer<'a>>,
}

#[derive(Serialize)]
struct TlsClient<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    server_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ja3: Option<&'a str>,
}

#[derive(Serialize)]
struct TlsServer<'a> {
    ja3s: &'a str,
}

fn tls(ev: &FlowEvent) -> Option<Tls<'_>> {
    if ev.application_protocol != Some("tls") {
        return None;
    }
    let version = ev
        .tls_version
        .as_deref()
        .and_then(common::tls_version_parts);
    Some(Tls {
        version: version.map(|v| v.1),
        version_protocol: version.map(|v| v.0),
        cipher: ev.tls_cipher.as_deref(),
        next_protocol: ev.tls_alpn.as_deref(),
        client: TlsClient {
            server_name: ev.tls_server_name.as_deref(),
            ja3: ev.ja3.as_deref(),
        },
        server: ev.ja3s.as_deref().map(|ja3s| TlsServer { ja3s }),
    })
}

#[derive(Serialize)]
struct Process<'a> {
    pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    entity_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    executable: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_line: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args_count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread: Option<Thread<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<Parent<'a>>,
}

#[derive(Serialize)]
struct Thread<'a> {
    id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

#[derive(Serialize)]
struct Parent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    entity_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    executable: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// `user` and `group`: ids are keywords in ECS.
#[derive(Serialize)]
struct Named<'a> {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

#[derive(Serialize)]
struct Host<'a> {
    hostname: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    os: HostOs<'a>,
}

#[derive(Serialize)]
struct HostOs<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel: Option<&'a str>,
}

#[derive(Serialize)]
struct Container<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    runtime: Option<&'a str>,
}

#[derive(Serialize)]
struct Related<'a> {
    ip: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    user: Vec<&'a str>,
}

/// Native fields ECS has no place for, under the agent's own name (ECS custom fields).
#[derive(Serialize)]
struct Custom<'a> {
    flow_id: &'a str,
    start_observed: bool,
    network_locality: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    conn_state: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rtt_us: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retransmits: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<&'a crate::flows::event::IntervalCounters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attribution: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_deleted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_line_truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup_path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    systemd_unit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_protocol_source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proto_info: Option<&'a str>,
    /// ECS has JA3 and JA3S only.
    #[serde(skip_serializing_if = "Option::is_none")]
    ja4: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ja4s: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orig_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resp_content: Option<&'a str>,
}

/// `event.action`: Elastic Defend's names for the start and end of a connection, so rules
/// written against them match, and ours for updates.
fn action(ev: &FlowEvent) -> &'static str {
    match (ev.event_action, ev.local_orig) {
        ("start", true) => "connection_attempted",
        ("start", false) => "connection_accepted",
        ("update", _) => "connection_updated",
        _ => "disconnect_received",
    }
}

/// `event.type`: connection plus start/info/end.
fn types(ev: &FlowEvent) -> [&'static str; 2] {
    let phase = match ev.event_action {
        "start" => "start",
        "update" => "info",
        _ => "end",
    };
    ["connection", phase]
}

/// `event.outcome` on ends: a connect that never got through failed; every other end of a
/// flow that carried traffic succeeded.
fn outcome(ev: &FlowEvent) -> Option<&'static str> {
    (ev.event_action == "end").then_some(if common::connect_failed(ev) {
        "failure"
    } else {
        "success"
    })
}

impl<'a> FlowDoc<'a> {
    fn new(ev: &'a FlowEvent) -> Self {
        let mut related_ip = vec![ev.src_ip.as_str()];
        if ev.dest_ip != ev.src_ip {
            related_ip.push(&ev.dest_ip);
        }
        FlowDoc {
            timestamp: &ev.timestamp,
            ecs: Ecs {
                version: ECS_VERSION,
            },
            agent: AGENT,
            event: Event {
                kind: "event",
                category: ["network"],
                types: types(ev),
                action: action(ev),
                outcome: outcome(ev),
                reason: ev.end_reason,
                module: MODULE,
                dataset: "flow_agent.flow",
                start: ev.start_time.as_deref(),
                end: ev.end_time.as_deref(),
                duration: ev.duration.map(common::duration_ns),
            },
            source: Endpoint {
                address: &ev.src_ip,
                ip: &ev.src_ip,
                port: ev.src_port,
                bytes: ev.orig_bytes,
                packets: ev.orig_pkts,
            },
            destination: Endpoint {
                address: &ev.dest_ip,
                ip: &ev.dest_ip,
                port: ev.dest_port,
                bytes: ev.resp_bytes,
                packets: ev.resp_pkts,
            },
            network: Network {
                transport: ev.transport_protocol,
                kind: if common::is_ipv6(&ev.src_ip) {
                    "ipv6"
                } else {
                    "ipv4"
                },
                iana_number: common::iana_number(ev.transport_protocol).to_string(),
                // Host-based monitoring: the host's point of view.
                direction: if ev.local_orig { "egress" } else { "ingress" },
                community_id: ev.community_id.as_deref(),
                bytes: ev.in_bytes.zip(ev.out_bytes).map(|(i, o)| i + o),
                packets: ev.packet_count,
                protocol: ev.application_protocol,
            },
            tls: tls(ev),
            process: process(ev),
            user: ev.uid.map(|uid| Named {
                id: uid.to_string(),
                name: ev.user.as_deref(),
            }),
            group: ev.gid.map(|gid| Named {
                id: gid.to_string(),
                name: ev.group.as_deref(),
            }),
            host: Host {
                hostname: &ev.hostname,
                name: ev.fqdn.as_deref().unwrap_or(&ev.hostname),
                id: ev.host_id.as_deref(),
                os: HostOs {
                    kind: "linux",
                    name: ev.os_name.as_deref(),
                    version: ev.os_version.as_deref(),
                    kernel: ev.kernel_version.as_deref(),
                },
            },
            container: ev.container_id.as_deref().map(|id| Container {
                id,
                runtime: ev.container_runtime.as_deref(),
            }),
            related: Related {
                ip: related_ip,
                user: ev.user.as_deref().into_iter().collect(),
            },
            flow_agent: Custom {
                flow_id: &ev.flow_id,
                start_observed: ev.start_observed,
                network_locality: ev.network_locality,
                conn_state: ev.conn_state,
                history: ev.history.as_deref(),
                rtt_us: ev.rtt_us,
                retransmits: ev.retransmits,
                interval: ev.interval.as_ref(),
                attribution: ev.attribution,
                image_deleted: ev.image_deleted,
                command_line_truncated: ev.command_line_truncated,
                cgroup_id: ev.cgroup_id,
                cgroup_path: ev.cgroup_path.as_deref(),
                systemd_unit: ev.systemd_unit.as_deref(),
                netns: ev.netns,
                app_protocol_source: ev.app_protocol_source,
                proto_info: ev.proto_info.as_deref(),
                ja4: ev.ja4.as_deref(),
                ja4s: ev.ja4s.as_deref(),
                orig_content: ev.orig_content.as_deref(),
                resp_content: ev.resp_content.as_deref(),
            },
        }
    }
}

fn process(ev: &FlowEvent) -> Option<Process<'_>> {
    let pid = ev.pid?;
    let args: Option<Vec<&str>> = ev
        .process_args
        .as_ref()
        .map(|a| a.iter().map(String::as_str).collect());
    let parent = (ev.ppid.is_some() || ev.parent_exe.is_some()).then(|| Parent {
        entity_id: ev.parent_entity_id.as_deref(),
        pid: ev.ppid,
        executable: ev.parent_exe.as_deref(),
        name: ev.parent_exe.as_deref().map(common::basename),
    });
    Some(Process {
        pid,
        entity_id: ev.process_entity_id.as_deref(),
        name: common::process_name(ev),
        executable: ev.image_path.as_deref(),
        command_line: ev.command_line.as_deref(),
        args_count: args.as_ref().map(Vec::len),
        args,
        start: ev.process_start_time.as_deref(),
        thread: ev.tid.map(|id| Thread {
            id,
            name: ev.process_name.as_deref(),
        }),
        parent,
    })
}

#[cfg(test)]
mod tests;
