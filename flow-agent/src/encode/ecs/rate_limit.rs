//! A `rate_limited` summary as an ECS document: a network event of type `info` with
//! `event.action: rate_limited`, the process in `process`/`user`/`group`, the remote addresses
//! in `related.ip`, and the counts (no ECS fields exist for them) under `flow_agent.rate_limit`.
use std::net::IpAddr;

use serde::Serialize;

use super::{
    container, group, host, process, related_user, user, Agent, Container, Ecs, Host, Named,
    Process, Rfc3339, AGENT, ECS, MODULE,
};
use crate::event::SuppressedEvent;

#[derive(Serialize)]
pub(super) struct RateLimitDoc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: Rfc3339,
    ecs: Ecs,
    agent: Agent,
    event: Event,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<Rfc3339>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<Rfc3339>,
}

#[derive(Serialize)]
struct Related<'a> {
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    ip: &'a [IpAddr],
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<[&'a str; 1]>,
}

#[derive(Serialize)]
struct Custom<'a> {
    rate_limit: Counts<'a>,
}

#[derive(Serialize)]
struct Counts<'a> {
    limiter: &'static str,
    rate: f64,
    burst: u32,
    suppressed_flows: u64,
    suppressed_tcp: u64,
    suppressed_udp: u64,
    suppressed_ended: u64,
    suppressed_in_bytes: u64,
    suppressed_out_bytes: u64,
    suppressed_packets: u64,
    remote_ips_truncated: bool,
    dest_ports: &'a [u16],
    dest_ports_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup_path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    systemd_unit: Option<&'a str>,
}

impl<'a> RateLimitDoc<'a> {
    pub(super) fn new(s: &'a SuppressedEvent) -> Self {
        let p = s.process.as_deref();
        RateLimitDoc {
            timestamp: Rfc3339::new(s.time),
            ecs: ECS,
            agent: AGENT,
            event: Event {
                kind: "event",
                category: ["network"],
                types: ["info"],
                action: "rate_limited",
                module: MODULE,
                dataset: "flow_agent.rate_limit",
                start: s.first_suppressed.map(Rfc3339::new),
                end: s.last_suppressed.map(Rfc3339::new),
            },
            // The summary names no thread.
            process: p.map(|p| process(p, None)),
            user: p.map(user),
            group: p.map(group),
            host: host(&s.host),
            container: p.and_then(container),
            related: Related {
                ip: &s.remote_ips,
                user: p.and_then(related_user),
            },
            flow_agent: Custom {
                rate_limit: Counts {
                    limiter: s.limiter.name(),
                    rate: s.rate,
                    burst: s.burst,
                    suppressed_flows: s.suppressed_flows(),
                    suppressed_tcp: s.suppressed_tcp,
                    suppressed_udp: s.suppressed_udp,
                    suppressed_ended: s.suppressed_ended,
                    suppressed_in_bytes: s.suppressed_in_bytes,
                    suppressed_out_bytes: s.suppressed_out_bytes,
                    suppressed_packets: s.suppressed_packets,
                    remote_ips_truncated: s.remote_ips_truncated,
                    dest_ports: &s.dest_ports,
                    dest_ports_truncated: s.dest_ports_truncated,
                    cgroup_path: p.and_then(|p| p.cgroup_path.as_deref()),
                    systemd_unit: p.and_then(|p| p.systemd_unit.as_deref()),
                },
            },
        }
    }
}
