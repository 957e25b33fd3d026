//! A `dns_query` event as an ECS document: a network event of type `protocol` with
//! `event.action: dns_query`, the question, response code and answers in `dns`, the client in
//! `source`, the resolver in `destination`, the asking process in `process`/`user`/`group`.
use serde::Serialize;

use super::{
    process, Agent, Container, Ecs, Host, HostOs, Named, Process, AGENT, ECS_VERSION, MODULE,
};
use crate::flows::{
    dns_event::{DnsAnswer, DnsEvent},
    FlowEvent,
};

#[derive(Serialize)]
pub(super) struct DnsDoc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: &'a str,
    ecs: Ecs,
    agent: Agent,
    event: Event,
    source: Endpoint<'a>,
    destination: Endpoint<'a>,
    network: Network<'a>,
    dns: Dns<'a>,
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
struct Event {
    kind: &'static str,
    category: [&'static str; 1],
    #[serde(rename = "type")]
    types: [&'static str; 1],
    action: &'static str,
    module: &'static str,
    dataset: &'static str,
}

#[derive(Serialize)]
struct Endpoint<'a> {
    address: &'a str,
    ip: &'a str,
    port: u16,
}

#[derive(Serialize)]
struct Network<'a> {
    transport: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    iana_number: String,
    direction: &'static str,
    protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    community_id: Option<&'a str>,
}

#[derive(Serialize)]
struct Dns<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
    response_code: &'a str,
    question: Question<'a>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    answers: &'a [DnsAnswer],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    resolved_ip: &'a [String],
}

#[derive(Serialize)]
struct Question<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
}

#[derive(Serialize)]
struct Related<'a> {
    ip: Vec<&'a str>,
    hosts: [&'a str; 1],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    user: Vec<&'a str>,
}

#[derive(Serialize)]
struct Custom<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    flow_id: Option<&'a str>,
    answers_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup_path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    systemd_unit: Option<&'a str>,
}

impl<'a> DnsDoc<'a> {
    /// `fe` is `d` as a flow event ([`DnsEvent::as_flow_event`]): the process fields map as
    /// they do for flows.
    pub(super) fn new(d: &'a DnsEvent, fe: &'a FlowEvent) -> Self {
        let mut ip = vec![d.client_ip.as_str(), d.resolver_ip.as_str()];
        for r in &d.resolved_ips {
            if !ip.contains(&r.as_str()) {
                ip.push(r);
            }
        }
        DnsDoc {
            timestamp: &d.timestamp,
            ecs: Ecs {
                version: ECS_VERSION,
            },
            agent: AGENT,
            event: Event {
                kind: "event",
                category: ["network"],
                types: ["protocol"],
                action: d.event_action,
                module: MODULE,
                dataset: "flow_agent.dns",
            },
            source: Endpoint {
                address: &d.client_ip,
                ip: &d.client_ip,
                port: d.client_port,
            },
            destination: Endpoint {
                address: &d.resolver_ip,
                ip: &d.resolver_ip,
                port: d.resolver_port,
            },
            network: Network {
                transport: d.transport_protocol,
                kind: if super::common::is_ipv6(&d.client_ip) {
                    "ipv6"
                } else {
                    "ipv4"
                },
                iana_number: super::common::iana_number(d.transport_protocol).to_string(),
                direction: "egress",
                protocol: "dns",
                community_id: d.community_id.as_deref(),
            },
            dns: Dns {
                kind: "answer",
                id: d.transaction_id.to_string(),
                response_code: &d.response_code,
                question: Question {
                    name: &d.query_name,
                    kind: &d.query_type,
                },
                answers: &d.answers,
                resolved_ip: &d.resolved_ips,
            },
            process: process(fe),
            user: fe.uid.map(|uid| Named {
                id: uid.to_string(),
                name: fe.user.as_deref(),
            }),
            group: fe.gid.map(|gid| Named {
                id: gid.to_string(),
                name: fe.group.as_deref(),
            }),
            host: Host {
                hostname: &d.hostname,
                name: &d.hostname,
                id: d.host_id.as_deref(),
                os: HostOs {
                    kind: "linux",
                    name: None,
                    version: None,
                    kernel: None,
                },
            },
            container: fe.container_id.as_deref().map(|id| Container {
                id,
                runtime: fe.container_runtime.as_deref(),
            }),
            related: Related {
                ip,
                hosts: [&d.query_name],
                user: fe.user.as_deref().into_iter().collect(),
            },
            flow_agent: Custom {
                flow_id: d.flow_id.as_deref(),
                answers_truncated: d.answers_truncated,
                cgroup_path: fe.cgroup_path.as_deref(),
                systemd_unit: fe.systemd_unit.as_deref(),
            },
        }
    }
}
