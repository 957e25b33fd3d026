//! `native`: the documented schema (docs/events.md), one JSON object per record.
//!
//! Each event kind is written through a private serde struct that borrows the model's values
//! under their documented names, in the documented order, with unknown fields omitted. Times go
//! through [`Rfc3339`] and flags through [`FlagLetters`] (stack buffers): nothing is allocated
//! per field. tests/tests/schema.rs reads the field names of these structs (with their serde
//! renames) from this file and checks them against docs/events.md and docs/events.schema.json.
use std::{borrow::Cow, net::IpAddr};

use serde::{Serialize, Serializer};

use super::{
    common::{cipher_display, FlagLetters},
    time::{seconds, Rfc3339},
    Encoder,
};
use crate::{
    event::{
        DnsAnswer, DnsEvent, Event, FlowEvent, HostInfo, IntervalCounters, ProcessIdentity,
        SuppressedEvent,
    },
    proto::dns::{rcode_name, type_name},
};

#[cfg(test)]
mod tests;

pub struct NativeEncoder;

impl Encoder for NativeEncoder {
    fn encode(&mut self, event: &Event, out: &mut Vec<u8>) -> bool {
        // Serializing borrowed strings and numbers into a Vec cannot fail.
        match event {
            Event::Flow(ev) => write(out, &NativeFlow::new(ev)),
            Event::Dns(ev) => write(out, &NativeDns::new(ev)),
            Event::Stats(stats) => write(out, stats),
            Event::RateLimited(summary) => write(out, &NativeRateLimited::new(summary)),
        }
    }
}

fn write<T: Serialize>(out: &mut Vec<u8>, value: &T) -> bool {
    serde_json::to_writer(&mut *out, value).is_ok()
}

/// Host facts written only when known (the model holds an empty string otherwise).
fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// A flow event (`start`, `update`, `end`): docs/events.md, "Fields".
#[derive(Serialize)]
struct NativeFlow<'a> {
    timestamp: Rfc3339,
    event_action: &'static str,
    flow_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    community_id: Option<&'a str>,
    transport_protocol: &'static str,
    src_ip: IpAddr,
    src_port: u16,
    dest_ip: IpAddr,
    dest_port: u16,
    network_direction: &'static str,
    network_locality: &'static str,
    local_orig: bool,
    local_resp: bool,
    start_observed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_time: Option<Rfc3339>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<Rfc3339>,
    /// Seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conn_state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_flags: Option<FlagLetters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orig_tcp_flags: Option<FlagLetters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resp_tcp_flags: Option<FlagLetters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    in_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    out_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orig_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resp_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orig_pkts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resp_pkts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orig_ip_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resp_ip_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    packet_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<NativeInterval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rtt_us: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retransmits: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orig_first_byte_time: Option<Rfc3339>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resp_first_byte_time: Option<Rfc3339>,
    /// Seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    time_to_first_byte: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attribution: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ppid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exe: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_deleted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_line: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process_args: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_line_truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process_start_time: Option<Rfc3339>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process_entity_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_exe: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_entity_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup_path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_runtime: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    systemd_unit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<u32>,
    hostname: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fqdn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    boot_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    os_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    os_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel_version: Option<&'a str>,
    agent_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_hostname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_fqdn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_hostname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_fqdn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns_chain: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    application_protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_protocol_source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proto_info: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cipher: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cipher_suite: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_server_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_alpn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_alpn_offered: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_client_hello_truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ja3: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ja3s: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ja4: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ja4s: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orig_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resp_content: Option<&'a str>,
}

/// A flow's counters since its previous event, from this host's side.
#[derive(Serialize)]
struct NativeInterval {
    in_bytes: u64,
    out_bytes: u64,
    in_pkts: u64,
    out_pkts: u64,
}

impl From<IntervalCounters> for NativeInterval {
    fn from(c: IntervalCounters) -> Self {
        Self {
            in_bytes: c.in_bytes,
            out_bytes: c.out_bytes,
            in_pkts: c.in_pkts,
            out_pkts: c.out_pkts,
        }
    }
}

impl<'a> NativeFlow<'a> {
    fn new(ev: &'a FlowEvent) -> Self {
        let (src, dest) = (ev.src(), ev.dest());
        let c = ev.counters;
        let (orig, resp) = ev.orig_resp().map_or((None, None), |(ob, rb, op, rp)| {
            (Some((ob, op)), Some((rb, rp)))
        });
        let (orig_ip_bytes, resp_ip_bytes) = ev.orig_resp_ip_bytes();
        let flags = ev.tcp_flags;
        let p = ev.process.as_deref();
        let host: &HostInfo = &ev.host;
        // CAR's names of the two ends: this host's own on its side, the remote's from DNS.
        let own = (non_empty(&host.hostname), host.fqdn.as_deref());
        let remote = ev
            .remote_fqdn()
            .map_or((None, None), |(fqdn, name)| (Some(name), Some(fqdn)));
        let ((src_hostname, src_fqdn), (dest_hostname, dest_fqdn)) = ev.by_role(own, remote);
        let app = ev.app.as_deref();
        let protocol = ev.app_protocol();
        let tls = ev.tls();
        Self {
            timestamp: Rfc3339::new(ev.time),
            event_action: ev.action.as_str(),
            flow_id: &ev.ids.flow_id,
            community_id: ev.ids.community_id.as_deref(),
            transport_protocol: ev.transport.as_str(),
            src_ip: src.0,
            src_port: src.1,
            dest_ip: dest.0,
            dest_port: dest.1,
            network_direction: ev.direction.as_str(),
            network_locality: ev.locality.as_str(),
            local_orig: ev.local_orig(),
            local_resp: !ev.local_orig(),
            start_observed: ev.start_observed,
            start_time: ev.start_time.map(Rfc3339::new),
            end_time: ev.end_time.map(Rfc3339::new),
            duration: ev.duration_ns.map(seconds),
            end_reason: ev.end_reason,
            conn_state: ev.conn_state,
            history: ev.history.as_deref(),
            tcp_flags: flags.map(|f| FlagLetters::new(f.orig | f.resp)),
            orig_tcp_flags: flags.map(|f| FlagLetters::new(f.orig)),
            resp_tcp_flags: flags.map(|f| FlagLetters::new(f.resp)),
            in_bytes: c.map(|c| c.in_bytes),
            out_bytes: c.map(|c| c.out_bytes),
            orig_bytes: orig.map(|o| o.0),
            resp_bytes: resp.map(|r| r.0),
            orig_pkts: orig.map(|o| o.1),
            resp_pkts: resp.map(|r| r.1),
            orig_ip_bytes,
            resp_ip_bytes,
            packet_count: c.map(|c| c.in_pkts + c.out_pkts),
            interval: c.map(|c| c.interval.into()),
            rtt_us: ev.rtt_us,
            retransmits: ev.retransmits,
            orig_first_byte_time: ev.orig_first_byte.map(Rfc3339::new),
            resp_first_byte_time: ev.resp_first_byte.map(Rfc3339::new),
            time_to_first_byte: ev.time_to_first_byte_ns().map(seconds),
            attribution: ev.attribution.map(|a| a.as_str()),
            pid: p.map(|p| p.pid),
            tid: ev.tid,
            ppid: p.and_then(ppid),
            process_name: p.map(|p| p.comm.as_str()),
            exe: p.and_then(|p| p.exe.as_deref()),
            image_path: p.and_then(|p| p.image_path.as_deref()),
            image_deleted: p.and_then(|p| p.image_deleted),
            command_line: p.and_then(|p| p.command_line.as_deref()),
            process_args: p.and_then(|p| p.args.as_deref()),
            command_line_truncated: p.and_then(|p| p.command_line_truncated),
            process_start_time: p.and_then(|p| p.start_time).map(Rfc3339::new),
            process_entity_id: p.and_then(|p| p.entity_id.as_deref()),
            parent_exe: p.and_then(|p| p.parent_exe.as_deref()),
            parent_entity_id: p.and_then(|p| p.parent_entity_id.as_deref()),
            uid: p.map(|p| p.uid),
            user: p.and_then(|p| p.user.as_deref()),
            gid: p.map(|p| p.gid),
            group: p.and_then(|p| p.group.as_deref()),
            cgroup_id: p.and_then(|p| (p.cgroup_id != 0).then_some(p.cgroup_id)),
            cgroup_path: p.and_then(|p| p.cgroup_path.as_deref()),
            container_id: p.and_then(|p| p.container_id.as_deref()),
            container_runtime: p.and_then(|p| p.container_runtime.as_deref()),
            systemd_unit: p.and_then(|p| p.systemd_unit.as_deref()),
            netns: ev.netns,
            hostname: &host.hostname,
            fqdn: host.fqdn.as_deref(),
            host_id: non_empty(&host.machine_id),
            boot_id: non_empty(&host.boot_id),
            os_name: host.os_name.as_deref(),
            os_version: host.os_version.as_deref(),
            kernel_version: non_empty(&host.kernel),
            agent_version: host.agent_version,
            src_hostname,
            src_fqdn,
            dest_hostname,
            dest_fqdn,
            dns_chain: ev
                .remote_name
                .as_deref()
                .filter(|r| r.chain.len() > 1)
                .map(|r| r.chain.as_slice()),
            application_protocol: protocol.map(|(name, _)| name),
            app_protocol_source: protocol.map(|(_, source)| source.as_str()),
            proto_info: app.and_then(|a| a.info.as_deref()),
            tls_version: tls.and_then(|t| t.version.as_deref()),
            tls_cipher: tls.and_then(|t| t.cipher).map(cipher_display),
            tls_cipher_suite: tls.and_then(|t| t.cipher),
            tls_server_name: tls.and_then(|t| t.server_name.as_deref()),
            tls_alpn: tls.and_then(|t| t.alpn.as_deref()),
            tls_alpn_offered: tls
                .filter(|t| !t.alpn_offered.is_empty())
                .map(|t| t.alpn_offered.as_slice()),
            tls_client_hello_truncated: tls.and_then(|t| t.client_hello_truncated),
            ja3: tls.and_then(|t| t.ja3.as_deref()),
            ja3s: tls.and_then(|t| t.ja3s.as_deref()),
            ja4: tls.and_then(|t| t.ja4.as_deref()),
            ja4s: tls.and_then(|t| t.ja4s.as_deref()),
            orig_content: app.and_then(|a| a.orig_content.as_deref()),
            resp_content: app.and_then(|a| a.resp_content.as_deref()),
        }
    }
}

/// The parent's pid, when known.
fn ppid(p: &ProcessIdentity) -> Option<u32> {
    (p.ppid != 0).then_some(p.ppid)
}

/// A `dns_query` event: docs/events.md, "DNS queries".
#[derive(Serialize)]
struct NativeDns<'a> {
    timestamp: Rfc3339,
    event_action: &'static str,
    transport_protocol: &'static str,
    client_ip: IpAddr,
    client_port: u16,
    resolver_ip: IpAddr,
    resolver_port: u16,
    network_locality: &'static str,
    transaction_id: u16,
    query_name: &'a str,
    query_type: Cow<'static, str>,
    query_type_id: u16,
    response_code: Cow<'static, str>,
    response_code_id: u8,
    answers: NativeAnswers<'a>,
    answers_truncated: bool,
    resolved_ips: &'a [IpAddr],
    #[serde(skip_serializing_if = "Option::is_none")]
    flow_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    community_id: Option<&'a str>,
    // The process fields of `dns_query` and `rate_limited` events, as flow events name them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ppid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exe: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_line: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process_start_time: Option<Rfc3339>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process_entity_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_exe: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_entity_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
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
    hostname: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    boot_id: Option<&'a str>,
    agent_version: &'static str,
}

/// The answer section, each record as a [`NativeAnswer`], without collecting them.
struct NativeAnswers<'a>(&'a [DnsAnswer]);

impl Serialize for NativeAnswers<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(NativeAnswer::new))
    }
}

#[derive(Serialize)]
struct NativeAnswer<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    rtype: Cow<'static, str>,
    ttl: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
}

impl<'a> NativeAnswer<'a> {
    fn new(a: &'a DnsAnswer) -> Self {
        Self {
            name: &a.name,
            rtype: type_name(a.rtype),
            ttl: a.ttl,
            data: a.data.as_deref(),
        }
    }
}

impl<'a> NativeDns<'a> {
    fn new(ev: &'a DnsEvent) -> Self {
        let p = ev.process.as_deref();
        let flow = ev.flow.as_deref();
        let host: &HostInfo = &ev.host;
        Self {
            timestamp: Rfc3339::new(ev.time),
            event_action: "dns_query",
            transport_protocol: ev.transport.as_str(),
            client_ip: ev.client.0,
            client_port: ev.client.1,
            resolver_ip: ev.resolver.0,
            resolver_port: ev.resolver.1,
            network_locality: ev.locality.as_str(),
            transaction_id: ev.transaction_id,
            query_name: &ev.query_name,
            query_type: type_name(ev.query_type),
            query_type_id: ev.query_type,
            response_code: rcode_name(ev.response_code),
            response_code_id: ev.response_code,
            answers: NativeAnswers(&ev.answers),
            answers_truncated: ev.answers_truncated,
            resolved_ips: &ev.resolved_ips,
            flow_id: flow.map(|f| f.flow_id.as_str()),
            community_id: flow.and_then(|f| f.community_id.as_deref()),
            pid: p.map(|p| p.pid),
            ppid: p.and_then(ppid),
            process_name: p.map(|p| p.comm.as_str()),
            exe: p.and_then(|p| p.exe.as_deref()),
            image_path: p.and_then(|p| p.image_path.as_deref()),
            command_line: p.and_then(|p| p.command_line.as_deref()),
            process_start_time: p.and_then(|p| p.start_time).map(Rfc3339::new),
            process_entity_id: p.and_then(|p| p.entity_id.as_deref()),
            parent_exe: p.and_then(|p| p.parent_exe.as_deref()),
            parent_entity_id: p.and_then(|p| p.parent_entity_id.as_deref()),
            uid: p.map(|p| p.uid),
            user: p.and_then(|p| p.user.as_deref()),
            gid: p.map(|p| p.gid),
            group: p.and_then(|p| p.group.as_deref()),
            cgroup_path: p.and_then(|p| p.cgroup_path.as_deref()),
            container_id: p.and_then(|p| p.container_id.as_deref()),
            container_runtime: p.and_then(|p| p.container_runtime.as_deref()),
            systemd_unit: p.and_then(|p| p.systemd_unit.as_deref()),
            hostname: &host.hostname,
            host_id: non_empty(&host.machine_id),
            boot_id: non_empty(&host.boot_id),
            agent_version: host.agent_version,
        }
    }
}

/// A `rate_limited` summary: docs/events.md, "Rate-limited flows".
#[derive(Serialize)]
struct NativeRateLimited<'a> {
    timestamp: Rfc3339,
    event_action: &'static str,
    limiter: &'static str,
    rate: f64,
    burst: u32,
    suppressed_flows: u64,
    suppressed_tcp: u64,
    suppressed_udp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_suppressed_time: Option<Rfc3339>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_suppressed_time: Option<Rfc3339>,
    suppressed_ended: u64,
    suppressed_in_bytes: u64,
    suppressed_out_bytes: u64,
    suppressed_packets: u64,
    remote_ips: &'a [IpAddr],
    remote_ips_truncated: bool,
    dest_ports: &'a [u16],
    dest_ports_truncated: bool,
    // The process fields of `dns_query` and `rate_limited` events, as flow events name them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ppid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exe: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_line: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process_start_time: Option<Rfc3339>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process_entity_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_exe: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_entity_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
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
    hostname: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    boot_id: Option<&'a str>,
    agent_version: &'static str,
}

impl<'a> NativeRateLimited<'a> {
    fn new(ev: &'a SuppressedEvent) -> Self {
        let p = ev.process.as_deref();
        let host: &HostInfo = &ev.host;
        Self {
            timestamp: Rfc3339::new(ev.time),
            event_action: "rate_limited",
            limiter: ev.limiter.name(),
            rate: ev.rate,
            burst: ev.burst,
            suppressed_flows: ev.suppressed_flows(),
            suppressed_tcp: ev.suppressed_tcp,
            suppressed_udp: ev.suppressed_udp,
            first_suppressed_time: ev.first_suppressed.map(Rfc3339::new),
            last_suppressed_time: ev.last_suppressed.map(Rfc3339::new),
            suppressed_ended: ev.suppressed_ended,
            suppressed_in_bytes: ev.suppressed_in_bytes,
            suppressed_out_bytes: ev.suppressed_out_bytes,
            suppressed_packets: ev.suppressed_packets,
            remote_ips: &ev.remote_ips,
            remote_ips_truncated: ev.remote_ips_truncated,
            dest_ports: &ev.dest_ports,
            dest_ports_truncated: ev.dest_ports_truncated,
            pid: p.map(|p| p.pid),
            ppid: p.and_then(ppid),
            process_name: p.map(|p| p.comm.as_str()),
            exe: p.and_then(|p| p.exe.as_deref()),
            image_path: p.and_then(|p| p.image_path.as_deref()),
            command_line: p.and_then(|p| p.command_line.as_deref()),
            process_start_time: p.and_then(|p| p.start_time).map(Rfc3339::new),
            process_entity_id: p.and_then(|p| p.entity_id.as_deref()),
            parent_exe: p.and_then(|p| p.parent_exe.as_deref()),
            parent_entity_id: p.and_then(|p| p.parent_entity_id.as_deref()),
            uid: p.map(|p| p.uid),
            user: p.and_then(|p| p.user.as_deref()),
            gid: p.map(|p| p.gid),
            group: p.and_then(|p| p.group.as_deref()),
            cgroup_path: p.and_then(|p| p.cgroup_path.as_deref()),
            container_id: p.and_then(|p| p.container_id.as_deref()),
            container_runtime: p.and_then(|p| p.container_runtime.as_deref()),
            systemd_unit: p.and_then(|p| p.systemd_unit.as_deref()),
            hostname: &host.hostname,
            host_id: non_empty(&host.machine_id),
            boot_id: non_empty(&host.boot_id),
            agent_version: host.agent_version,
        }
    }
}
