//! A `dns_query` event as an ECS document: a network event of type `protocol` with
//! `event.action: dns_query`, the question, response code and answers in `dns`, the client in
//! `source`, the resolver in `destination`, the asking process in `process`/`user`/`group`.
use std::{borrow::Cow, net::IpAddr};

use serde::{Serialize, Serializer};

use super::{
    container, group, host, ip_type, process, related_user, user, Agent, Container, Ecs, Host,
    Keyword, Named, Process, Rfc3339, AGENT, ECS, MODULE,
};
use crate::{
    event::{DnsAnswer, DnsEvent},
    proto::dns::{rcode_name, type_name},
};

#[derive(Serialize)]
pub(super) struct DnsDoc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: Rfc3339,
    ecs: Ecs,
    agent: Agent,
    event: Event,
    source: Endpoint,
    destination: Endpoint,
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
struct Endpoint {
    address: IpAddr,
    ip: IpAddr,
    port: u16,
}

#[derive(Serialize)]
struct Network<'a> {
    transport: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    iana_number: Keyword<u8>,
    direction: &'static str,
    protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    community_id: Option<&'a str>,
}

#[derive(Serialize)]
struct Dns<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: Keyword<u16>,
    response_code: Cow<'static, str>,
    question: Question<'a>,
    #[serde(skip_serializing_if = "Answers::is_empty")]
    answers: Answers<'a>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    resolved_ip: &'a [IpAddr],
}

#[derive(Serialize)]
struct Question<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: Cow<'static, str>,
}

/// `dns.answers`: each record with its type's mnemonic.
struct Answers<'a>(&'a [DnsAnswer]);

impl Answers<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Answers<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|a| Answer {
            name: &a.name,
            kind: type_name(a.rtype),
            ttl: a.ttl,
            data: a.data.as_deref(),
        }))
    }
}

#[derive(Serialize)]
struct Answer<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: Cow<'static, str>,
    ttl: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
}

#[derive(Serialize)]
struct Related<'a> {
    ip: RelatedIps<'a>,
    hosts: [&'a str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<[&'a str; 1]>,
}

/// `related.ip`: the client, the resolver, then each resolved address not listed yet.
struct RelatedIps<'a>(&'a DnsEvent);

impl Serialize for RelatedIps<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.0;
        let (client, resolver) = (d.client.0, d.resolver.0);
        let resolved = d
            .resolved_ips
            .iter()
            .enumerate()
            .filter(|(i, r)| **r != client && **r != resolver && !d.resolved_ips[..*i].contains(*r))
            .map(|(_, r)| *r);
        s.collect_seq([client, resolver].into_iter().chain(resolved))
    }
}

#[derive(Serialize)]
struct Custom<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    flow_id: Option<&'a str>,
    /// Of the resolver's address.
    network_locality: &'static str,
    answers_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup_path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    systemd_unit: Option<&'a str>,
}

impl<'a> DnsDoc<'a> {
    pub(super) fn new(d: &'a DnsEvent) -> Self {
        let p = d.process.as_deref();
        let flow = d.flow.as_deref();
        DnsDoc {
            timestamp: Rfc3339::new(d.time),
            ecs: ECS,
            agent: AGENT,
            event: Event {
                kind: "event",
                category: ["network"],
                types: ["protocol"],
                action: "dns_query",
                module: MODULE,
                dataset: "flow_agent.dns",
            },
            source: Endpoint {
                address: d.client.0,
                ip: d.client.0,
                port: d.client.1,
            },
            destination: Endpoint {
                address: d.resolver.0,
                ip: d.resolver.0,
                port: d.resolver.1,
            },
            network: Network {
                transport: d.transport.as_str(),
                kind: ip_type(d.client.0),
                iana_number: Keyword(d.transport.iana()),
                direction: "egress",
                protocol: "dns",
                community_id: flow.and_then(|f| f.community_id.as_deref()),
            },
            dns: Dns {
                kind: "answer",
                id: Keyword(d.transaction_id),
                response_code: rcode_name(d.response_code),
                question: Question {
                    name: &d.query_name,
                    kind: type_name(d.query_type),
                },
                answers: Answers(&d.answers),
                resolved_ip: &d.resolved_ips,
            },
            // The event names no thread.
            process: p.map(|p| process(p, None)),
            user: p.map(user),
            group: p.map(group),
            host: host(&d.host),
            container: p.and_then(container),
            related: Related {
                ip: RelatedIps(d),
                hosts: [&d.query_name],
                user: p.and_then(related_user),
            },
            flow_agent: Custom {
                flow_id: flow.map(|f| f.flow_id.as_str()),
                network_locality: d.locality.as_str(),
                answers_truncated: d.answers_truncated,
                cgroup_path: p.and_then(|p| p.cgroup_path.as_deref()),
                systemd_unit: p.and_then(|p| p.systemd_unit.as_deref()),
            },
        }
    }
}
