//! Small facts about a native event that several formats need in the same way.
use std::net::IpAddr;

use crate::flows::FlowEvent;

/// The process's name as formats mean it (ECS `process.name`, OCSF `process.name`): the
/// executable's basename when known, else the thread's `comm`.
pub fn process_name(ev: &FlowEvent) -> Option<&str> {
    ev.exe.as_deref().or(ev.process_name.as_deref())
}

/// The last component of a path (the whole string when it has no `/`).
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

pub fn is_ipv6(ip: &str) -> bool {
    ip.contains(':')
}

/// Both ends on this host's loopback.
pub fn is_loopback_flow(ev: &FlowEvent) -> bool {
    let lo = |ip: &str| ip.parse::<IpAddr>().is_ok_and(|a| a.is_loopback());
    lo(&ev.src_ip) && lo(&ev.dest_ip)
}

/// IANA protocol number of the native `transport_protocol`.
pub fn iana_number(transport: &str) -> u8 {
    match transport {
        "tcp" => 6,
        "udp" => 17,
        _ => 0,
    }
}

/// The flow ended without ever being established: a connect that was refused or not
/// answered (Zeek `REJ`, `S0`).
pub fn connect_failed(ev: &FlowEvent) -> bool {
    matches!(ev.conn_state, Some("REJ" | "S0"))
}

/// The native `tls_version` ("TLS 1.3", "SSL 3.0") as (protocol, number): ("tls", "1.3").
pub fn tls_version_parts(v: &str) -> Option<(&'static str, &str)> {
    let (proto, number) = v.split_once(' ')?;
    let proto = match proto {
        "TLS" => "tls",
        "SSL" => "ssl",
        _ => return None,
    };
    Some((proto, number))
}

/// Nanoseconds of a native duration (seconds with nanosecond resolution).
pub fn duration_ns(seconds: f64) -> u64 {
    (seconds * 1e9).round() as u64
}
