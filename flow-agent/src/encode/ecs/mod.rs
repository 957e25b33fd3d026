//! `ecs`: Elastic Common Schema documents (nested JSON objects), one per flow event, and a
//! metric document per stats event. Field mapping: docs/formats.md.
use std::{fmt::Display, net::IpAddr};

use serde::{Serialize, Serializer};

use super::{common, time::Rfc3339, Encoder};
use crate::event::{
    Event as AnyEvent, FlowAction, FlowEvent, HostInfo, IntervalCounters, ProcessIdentity,
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
    fn encode(&mut self, event: &AnyEvent, out: &mut Vec<u8>) -> bool {
        match event {
            AnyEvent::Flow(ev) => serde_json::to_writer(&mut *out, &FlowDoc::new(ev)).is_ok(),
            AnyEvent::Dns(d) => serde_json::to_writer(&mut *out, &dns::DnsDoc::new(d)).is_ok(),
            AnyEvent::Stats(s) => {
                serde_json::to_writer(&mut *out, &stats::StatsDoc::new(s)).is_ok()
            }
            AnyEvent::RateLimited(s) => {
                serde_json::to_writer(&mut *out, &rate_limit::RateLimitDoc::new(s)).is_ok()
            }
        }
    }
}

#[derive(Serialize)]
struct Ecs {
    version: &'static str,
}

const ECS: Ecs = Ecs {
    version: ECS_VERSION,
};

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

/// A number written as a JSON string (ECS keywords: ids, `network.iana_number`), formatted
/// straight into the output.
struct Keyword<T>(T);

impl<T: Display> Serialize for Keyword<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// `network.type` of an address family.
fn ip_type(ip: IpAddr) -> &'static str {
    if ip.is_ipv6() {
        "ipv6"
    } else {
        "ipv4"
    }
}

#[derive(Serialize)]
struct FlowDoc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: Rfc3339,
    ecs: Ecs,
    agent: Agent,
    event: Event<'a>,
    source: Endpoint,
    destination: Endpoint,
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
    reason: Option<&'a str>,
    module: &'static str,
    dataset: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<Rfc3339>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<Rfc3339>,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<u64>,
}

#[derive(Serialize)]
struct Endpoint {
    address: IpAddr,
    ip: IpAddr,
    port: u16,
    /// Sent by this endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    packets: Option<u64>,
}

#[derive(Serialize)]
struct Network<'a> {
    transport: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    iana_number: Keyword<u8>,
    direction: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<&'static str>,
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
    cipher: Option<std::borrow::Cow<'static, str>>,
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
    if ev.app_protocol()?.0 != "tls" {
        return None;
    }
    let t = ev.tls();
    let version = t
        .and_then(|t| t.version.as_deref())
        .and_then(common::tls_version_parts);
    Some(Tls {
        version: version.map(|v| v.1),
        version_protocol: version.map(|v| v.0),
        cipher: t.and_then(|t| t.cipher).map(common::cipher_display),
        next_protocol: t.and_then(|t| t.alpn.as_deref()),
        client: TlsClient {
            server_name: t.and_then(|t| t.server_name.as_deref()),
            ja3: t.and_then(|t| t.ja3.as_deref()),
        },
        server: t
            .and_then(|t| t.ja3s.as_deref())
            .map(|ja3s| TlsServer { ja3s }),
    })
}

#[derive(Serialize)]
struct Process<'a> {
    pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    entity_id: Option<&'a str>,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    executable: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_line: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args_count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<Rfc3339>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread: Option<Thread<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<Parent<'a>>,
}

#[derive(Serialize)]
struct Thread<'a> {
    id: u32,
    name: &'a str,
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
    id: Keyword<u32>,
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
    ip: IpPair,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<[&'a str; 1]>,
}

/// `related.ip` of a flow: both ends, once when they are the same address.
struct IpPair(IpAddr, IpAddr);

impl Serialize for IpPair {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = if self.0 == self.1 { 1 } else { 2 };
        s.collect_seq(&[self.0, self.1][..n])
    }
}

/// Native fields ECS has no place for, under the agent's own name (ECS custom fields).
#[derive(Serialize)]
struct Custom<'a> {
    flow_id: &'a str,
    start_observed: bool,
    network_locality: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    conn_state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rtt_us: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retransmits: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<Interval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attribution: Option<&'static str>,
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
    app_protocol_source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proto_info: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_client_hello_truncated: Option<bool>,
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

/// `flow_agent.interval`: the counters since the flow's previous event.
#[derive(Serialize)]
struct Interval {
    in_bytes: u64,
    out_bytes: u64,
    in_pkts: u64,
    out_pkts: u64,
}

impl From<IntervalCounters> for Interval {
    fn from(c: IntervalCounters) -> Self {
        Self {
            in_bytes: c.in_bytes,
            out_bytes: c.out_bytes,
            in_pkts: c.in_pkts,
            out_pkts: c.out_pkts,
        }
    }
}

/// `event.action`: Elastic Defend's names for the start and end of a connection, so rules
/// written against them match, and ours for updates.
fn action(ev: &FlowEvent) -> &'static str {
    match (ev.action, ev.local_orig()) {
        (FlowAction::Start, true) => "connection_attempted",
        (FlowAction::Start, false) => "connection_accepted",
        (FlowAction::Update, _) => "connection_updated",
        (FlowAction::End, _) => "disconnect_received",
    }
}

/// `event.type`: connection plus start/info/end.
fn types(ev: &FlowEvent) -> [&'static str; 2] {
    let phase = match ev.action {
        FlowAction::Start => "start",
        FlowAction::Update => "info",
        FlowAction::End => "end",
    };
    ["connection", phase]
}

/// `event.outcome` on ends: a connect that never got through failed; every other end of a
/// flow that carried traffic succeeded.
fn outcome(ev: &FlowEvent) -> Option<&'static str> {
    (ev.action == FlowAction::End).then_some(if ev.connect_failed() {
        "failure"
    } else {
        "success"
    })
}

impl<'a> FlowDoc<'a> {
    fn new(ev: &'a FlowEvent) -> Self {
        let (src, dest) = (ev.src(), ev.dest());
        let orig_resp = ev.orig_resp();
        let p = ev.process.as_deref();
        let app = ev.app.as_deref();
        let tls_info = ev.tls();
        FlowDoc {
            timestamp: Rfc3339::new(ev.time),
            ecs: ECS,
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
                start: ev.start_time.map(Rfc3339::new),
                end: ev.end_time.map(Rfc3339::new),
                duration: ev.duration_ns,
            },
            source: Endpoint {
                address: src.0,
                ip: src.0,
                port: src.1,
                bytes: orig_resp.map(|c| c.0),
                packets: orig_resp.map(|c| c.2),
            },
            destination: Endpoint {
                address: dest.0,
                ip: dest.0,
                port: dest.1,
                bytes: orig_resp.map(|c| c.1),
                packets: orig_resp.map(|c| c.3),
            },
            network: Network {
                transport: ev.transport.as_str(),
                kind: ip_type(src.0),
                iana_number: Keyword(ev.transport.iana()),
                // Host-based monitoring: the host's point of view.
                direction: if ev.local_orig() { "egress" } else { "ingress" },
                community_id: ev.ids.community_id.as_deref(),
                bytes: ev.counters.map(|c| c.in_bytes + c.out_bytes),
                packets: ev.counters.map(|c| c.in_pkts + c.out_pkts),
                protocol: ev.app_protocol().map(|a| a.0),
            },
            tls: tls(ev),
            process: p.map(|p| process(p, ev.tid)),
            user: p.map(user),
            group: p.map(group),
            host: host(&ev.host),
            container: p.and_then(container),
            related: Related {
                ip: IpPair(src.0, dest.0),
                user: p.and_then(related_user),
            },
            flow_agent: Custom {
                flow_id: &ev.ids.flow_id,
                start_observed: ev.start_observed,
                network_locality: ev.locality.as_str(),
                conn_state: ev.conn_state,
                history: ev.history.as_deref(),
                rtt_us: ev.rtt_us,
                retransmits: ev.retransmits,
                interval: ev.counters.map(|c| c.interval.into()),
                attribution: ev.attribution.map(|a| a.as_str()),
                image_deleted: p.and_then(|p| p.image_deleted),
                command_line_truncated: p.and_then(|p| p.command_line_truncated),
                cgroup_id: p.and_then(|p| (p.cgroup_id != 0).then_some(p.cgroup_id)),
                cgroup_path: p.and_then(|p| p.cgroup_path.as_deref()),
                systemd_unit: p.and_then(|p| p.systemd_unit.as_deref()),
                netns: ev.netns,
                app_protocol_source: ev.app_protocol().map(|a| a.1.as_str()),
                proto_info: app.and_then(|a| a.info.as_deref()),
                tls_client_hello_truncated: tls_info.and_then(|t| t.client_hello_truncated),
                ja4: tls_info.and_then(|t| t.ja4.as_deref()),
                ja4s: tls_info.and_then(|t| t.ja4s.as_deref()),
                orig_content: app.and_then(|a| a.orig_content.as_deref()),
                resp_content: app.and_then(|a| a.resp_content.as_deref()),
            },
        }
    }
}

/// `process`: the process an event names, and the acting thread when the event has one.
/// Flow, DNS and rate-limit documents map it alike.
fn process(p: &ProcessIdentity, tid: Option<u32>) -> Process<'_> {
    let parent = (p.ppid != 0 || p.parent_exe.is_some()).then(|| Parent {
        entity_id: p.parent_entity_id.as_deref(),
        pid: (p.ppid != 0).then_some(p.ppid),
        executable: p.parent_exe.as_deref(),
        name: p.parent_exe.as_deref().map(common::basename),
    });
    Process {
        pid: p.pid,
        entity_id: p.entity_id.as_deref(),
        name: p.name(),
        executable: p.image_path.as_deref(),
        command_line: p.command_line.as_deref(),
        args: p.args.as_deref(),
        args_count: p.args.as_ref().map(Vec::len),
        start: p.start_time.map(Rfc3339::new),
        thread: tid.map(|id| Thread { id, name: &p.comm }),
        parent,
    }
}

/// `user`: the process's user.
fn user(p: &ProcessIdentity) -> Named<'_> {
    Named {
        id: Keyword(p.uid),
        name: p.user.as_deref(),
    }
}

/// `group`: the process's group.
fn group(p: &ProcessIdentity) -> Named<'_> {
    Named {
        id: Keyword(p.gid),
        name: p.group.as_deref(),
    }
}

/// `container`: where the process runs in one.
fn container(p: &ProcessIdentity) -> Option<Container<'_>> {
    p.container_id.as_deref().map(|id| Container {
        id,
        runtime: p.container_runtime.as_deref(),
    })
}

/// `related.user`: the process's user name.
fn related_user(p: &ProcessIdentity) -> Option<[&str; 1]> {
    p.user.as_deref().map(|u| [u])
}

/// `host`: this host, the same in every document.
fn host(h: &HostInfo) -> Host<'_> {
    Host {
        hostname: &h.hostname,
        name: h.fqdn.as_deref().unwrap_or(&h.hostname),
        id: (!h.machine_id.is_empty()).then_some(h.machine_id.as_str()),
        os: HostOs {
            kind: "linux",
            name: h.os_name.as_deref(),
            version: h.os_version.as_deref(),
            kernel: (!h.kernel.is_empty()).then_some(h.kernel.as_str()),
        },
    }
}

#[cfg(test)]
mod tests;
