//! A `rate_limited` summary as an OCSF Network Activity event of activity 99 `Other`: `count`
//! is the flows suppressed, `start_time`/`end_time` the first and last of their starts, the
//! process in `actor`, this host in `src_endpoint` and `device`, and the counts OCSF has no
//! attribute for in `unmapped` (docs/formats.md, ocsf).
use std::{fmt, net::IpAddr};

use serde::Serialize;

use super::{
    display, process::Actor, Device, Observable, Product, CATEGORY_UID, CLASS_UID, OCSF_VERSION,
    PRODUCT,
};
use crate::{encode::time::Rfc3339, event::SuppressedEvent};

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
    #[serde(serialize_with = "display")]
    message: Message<'a>,
    metadata: Metadata,
    src_endpoint: HostEndpoint<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<Actor<'a>>,
    device: Device<'a>,
    observables: Vec<Observable<'a>>,
    unmapped: Unmapped<'a>,
}

#[derive(Serialize)]
struct Metadata {
    version: &'static str,
    product: Product,
    profiles: [&'static str; 1],
    original_time: Rfc3339,
    log_name: &'static str,
}

/// `Rate limited: 480 flows of pid 4242 (curl) not reported (process limit: 10/s, burst 20)`.
struct Message<'a>(&'a SuppressedEvent);

impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let s = self.0;
        write!(f, "Rate limited: {} flows of ", s.suppressed_flows())?;
        match s.process.as_deref() {
            Some(p) if !p.comm.is_empty() => write!(f, "pid {} ({})", p.pid, p.comm)?,
            Some(p) => write!(f, "pid {}", p.pid)?,
            None => f.write_str("processes not named")?,
        }
        write!(
            f,
            " not reported ({} limit: {}/s, burst {})",
            s.limiter.name(),
            s.rate,
            s.burst
        )
    }
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
    remote_ips: &'a [IpAddr],
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
    pub(super) fn new(s: &'a SuppressedEvent) -> Self {
        let p = s.process.as_deref();
        // A summary spans many flows: no thread.
        let actor = p.map(|p| Actor::of(p, None));
        let hostname = &s.host.hostname;
        let mut observables = Vec::with_capacity(3);
        observables.push(Observable::hostname("device.hostname", hostname));
        observables.extend(Observable::process_name(actor.as_ref()));
        observables.extend(Observable::user_name(actor.as_ref()));
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
            time: s.time.millis(),
            timezone_offset: 0,
            count: s.suppressed_flows(),
            start_time: s.first_suppressed.map(|t| t.millis()),
            end_time: s.last_suppressed.map(|t| t.millis()),
            message: Message(s),
            metadata: Metadata {
                version: OCSF_VERSION,
                product: PRODUCT,
                profiles: super::PROFILES,
                original_time: Rfc3339::new(s.time),
                log_name: "rate_limit",
            },
            src_endpoint: HostEndpoint { hostname },
            actor,
            // Summaries name this host by its hostname.
            device: Device::of(&s.host, hostname),
            observables,
            unmapped: Unmapped {
                event_action: "rate_limited",
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
                remote_ips: &s.remote_ips,
                remote_ips_truncated: s.remote_ips_truncated,
                dest_ports: &s.dest_ports,
                dest_ports_truncated: s.dest_ports_truncated,
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
