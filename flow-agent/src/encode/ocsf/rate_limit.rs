//! A `rate_limited` summary as an OCSF Network Activity event of activity 99 `Other`: `count`
//! is the flows suppressed, `start_time`/`end_time` the first and last of their starts, the
//! process in `actor`, this host in `src_endpoint` and `device`, and the counts OCSF has no
//! attribute for in `unmapped` (docs/formats.md, ocsf).
use serde::Serialize;

use super::{process::Actor, Device, Observable, Product, CATEGORY_UID, CLASS_UID, OCSF_VERSION};
use crate::{encode::time, flows::FlowEvent, ratelimit::SuppressedEvent};

/// `Other`: OCSF has no activity for "flows not reported".
pub(super) const ACTIVITY_OTHER: u32 = 99;

#[derive(Serialize)]
pub(super) struct RateLimited<'a> {
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
    time: i64,
    timezone_offset: i32,
    /// Flows whose start was suppressed in the interval.
    count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<i64>,
    message: String,
    metadata: Metadata<'a>,
    src_endpoint: HostEndpoint<'a>,
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
    original_time: &'a str,
    log_name: &'static str,
}

/// This host, where the limited process runs.
#[derive(Serialize)]
struct HostEndpoint<'a> {
    hostname: &'a str,
}

/// The summary's fields OCSF has no attribute for, with their native names.
#[derive(Serialize)]
struct Unmapped<'a> {
    event_action: &'static str,
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
    remote_ips: &'a [String],
    remote_ips_truncated: bool,
    dest_ports: &'a [u16],
    dest_ports_truncated: bool,
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

impl<'a> RateLimited<'a> {
    /// `fe` is `s` as a flow event ([`SuppressedEvent::as_flow_event`]): the process maps as
    /// it does for flows.
    pub(super) fn new(s: &'a SuppressedEvent, fe: &'a FlowEvent) -> Self {
        let actor = Actor::of(fe);
        let mut observables = vec![Observable {
            name: "device.hostname",
            type_id: 1,
            kind: "Hostname",
            value: &s.hostname,
        }];
        if let Some(name) = actor.as_ref().and_then(|a| a.process.name) {
            observables.push(Observable {
                name: "actor.process.name",
                type_id: 9,
                kind: "Process Name",
                value: name,
            });
        }
        if let Some(user) = fe.user.as_deref() {
            observables.push(Observable {
                name: "actor.user.name",
                type_id: 4,
                kind: "User Name",
                value: user,
            });
        }
        let who = match (s.process.pid, s.process.process_name.as_deref()) {
            (Some(pid), Some(name)) => format!("pid {pid} ({name})"),
            (Some(pid), None) => format!("pid {pid}"),
            _ => "processes not named".to_string(),
        };
        RateLimited {
            activity_id: ACTIVITY_OTHER,
            activity_name: "Other",
            category_uid: CATEGORY_UID,
            category_name: "Network Activity",
            class_uid: CLASS_UID,
            class_name: "Network Activity",
            type_uid: CLASS_UID * 100 + ACTIVITY_OTHER,
            type_name: "Network Activity: Other",
            severity_id: 1,
            severity: "Informational",
            time: time::epoch_millis(&s.timestamp).unwrap_or_default(),
            timezone_offset: 0,
            count: s.suppressed_flows,
            start_time: s
                .first_suppressed_time
                .as_deref()
                .and_then(time::epoch_millis),
            end_time: s
                .last_suppressed_time
                .as_deref()
                .and_then(time::epoch_millis),
            message: format!(
                "Rate limited: {} flows of {who} not reported ({} limit: {}/s, burst {})",
                s.suppressed_flows, s.limiter, s.rate, s.burst
            ),
            metadata: Metadata {
                version: OCSF_VERSION,
                product: Product {
                    name: "flow-agent",
                    vendor_name: "flow-agent",
                    version: env!("CARGO_PKG_VERSION"),
                },
                original_time: &s.timestamp,
                log_name: "rate_limit",
            },
            src_endpoint: HostEndpoint {
                hostname: &s.hostname,
            },
            actor,
            device: Device {
                hostname: &s.hostname,
                name: &s.hostname,
                type_id: 0,
                kind: "Unknown",
            },
            observables,
            unmapped: Unmapped {
                event_action: s.event_action,
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
                remote_ips: &s.remote_ips,
                remote_ips_truncated: s.remote_ips_truncated,
                dest_ports: &s.dest_ports,
                dest_ports_truncated: s.dest_ports_truncated,
                gid: fe.gid,
                group: fe.group.as_deref(),
                cgroup_path: fe.cgroup_path.as_deref(),
                container_id: fe.container_id.as_deref(),
                container_runtime: fe.container_runtime.as_deref(),
                systemd_unit: fe.systemd_unit.as_deref(),
            },
        }
    }
}
