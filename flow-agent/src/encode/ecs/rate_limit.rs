//! A `rate_limited` summary as an ECS document: a network event of type `info` with
//! `event.action: rate_limited`, the process in `process`/`user`/`group`, the remote addresses
//! in `related.ip`, and the counts (no ECS fields exist for them) under `flow_agent.rate_limit`.
use serde::Serialize;

use super::{
    process, Agent, Container, Ecs, Host, HostOs, Named, Process, AGENT, ECS_VERSION, MODULE,
};
use crate::{flows::FlowEvent, ratelimit::SuppressedEvent};

#[derive(Serialize)]
pub(super) struct RateLimitDoc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: &'a str,
    ecs: Ecs,
    agent: Agent,
    event: Event<'a>,
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
    types: [&'static str; 1],
    action: &'static str,
    module: &'static str,
    dataset: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<&'a str>,
}

#[derive(Serialize)]
struct Related<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ip: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    user: Vec<&'a str>,
}

#[derive(Serialize)]
struct Custom<'a> {
    rate_limit: Counts<'a>,
}

#[derive(Serialize)]
struct Counts<'a> {
    limiter: &'a str,
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
    /// `fe` is `s` as a flow event ([`SuppressedEvent::as_flow_event`]): the process fields
    /// map as they do for flows.
    pub(super) fn new(s: &'a SuppressedEvent, fe: &'a FlowEvent) -> Self {
        RateLimitDoc {
            timestamp: &s.timestamp,
            ecs: Ecs {
                version: ECS_VERSION,
            },
            agent: AGENT,
            event: Event {
                kind: "event",
                category: ["network"],
                types: ["info"],
                action: s.event_action,
                module: MODULE,
                dataset: "flow_agent.rate_limit",
                start: s.first_suppressed_time.as_deref(),
                end: s.last_suppressed_time.as_deref(),
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
                hostname: &s.hostname,
                name: &s.hostname,
                id: s.host_id.as_deref(),
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
                ip: s.remote_ips.iter().map(String::as_str).collect(),
                user: fe.user.as_deref().into_iter().collect(),
            },
            flow_agent: Custom {
                rate_limit: Counts {
                    limiter: s.limiter,
                    rate: s.rate,
                    burst: s.burst,
                    suppressed_flows: s.suppressed_flows,
                    suppressed_tcp: s.suppressed_tcp,
                    suppressed_udp: s.suppressed_udp,
                    suppressed_ended: s.suppressed_ended,
                    suppressed_in_bytes: s.suppressed_in_bytes,
                    suppressed_out_bytes: s.suppressed_out_bytes,
                    suppressed_packets: s.suppressed_packets,
                    remote_ips_truncated: s.remote_ips_truncated,
                    dest_ports: &s.dest_ports,
                    dest_ports_truncated: s.dest_ports_truncated,
                    cgroup_path: fe.cgroup_path.as_deref(),
                    systemd_unit: fe.systemd_unit.as_deref(),
                },
            },
        }
    }
}
