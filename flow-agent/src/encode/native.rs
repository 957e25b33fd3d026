//! `native`: the documented schema (docs/events.md), one JSON object per record.
//!
//! Flow events, nearly all records, are written member by member ([`Json`]) in the order of
//! [`FLOW_FIELDS`], with unknown fields omitted; the fields of the event's process, of the host
//! and of the flow's application facts are rendered once per `Arc` and copied
//! ([`FragmentCache`]). `dns_query` and `rate_limited` events go through private serde structs
//! that borrow the model's values under their documented names, in the documented order. Times
//! go through [`Rfc3339`] and flags through [`FlagLetters`] (stack buffers): nothing is
//! allocated per field. tests/tests/schema.rs reads [`FLOW_FIELDS`], [`INTERVAL_FIELDS`] and
//! the field names of the serde structs (with their serde renames) from this file and checks
//! them against docs/events.md and docs/events.schema.json.
use std::{borrow::Cow, net::IpAddr};

use serde::{Serialize, Serializer};

use super::{
    common::{cipher_display, FlagLetters},
    fragments::{FragmentCache, Fragments},
    json::Json,
    time::{seconds, Rfc3339},
    Encoder,
};
use crate::{
    event::{
        AppInfo, Counters, DnsAnswer, DnsEvent, Event, FlowEvent, HostInfo, ProcessEvent,
        ProcessIdentity, SuppressedEvent,
    },
    proto::dns::{rcode_name, type_name},
};

#[cfg(test)]
mod tests;

/// Each output's native encoder, with the fragments it rendered of the processes, the host and
/// the application facts of recent events.
#[derive(Default)]
pub(crate) struct NativeEncoder {
    processes: FragmentCache<ProcessIdentity>,
    hosts: FragmentCache<HostInfo>,
    apps: FragmentCache<AppInfo>,
}

impl Encoder for NativeEncoder {
    fn encode(&mut self, event: &Event, out: &mut Vec<u8>) -> bool {
        // Serializing borrowed strings and numbers into a Vec cannot fail.
        match event {
            Event::Flow(ev) => {
                self.flow(ev, out);
                true
            }
            Event::Dns(ev) => write(out, &NativeDns::new(ev)),
            Event::Process(ev) => {
                self.process_event(ev, out);
                true
            }
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

/// The fields of a flow event (`start`, `update`, `end`) in the order they are written:
/// docs/events.md, "Fields". Each is written only when known, except `timestamp` to
/// `start_observed`, `hostname` and `agent_version`. The unit tests check that the writer
/// writes these, in this order; tests/tests/schema.rs checks them against the docs and the
/// schema.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const FLOW_FIELDS: &[&str] = &[
    "timestamp",
    "event_action",
    "flow_id",
    "community_id",
    "transport_protocol",
    "src_ip",
    "src_port",
    "dest_ip",
    "dest_port",
    "network_direction",
    "network_locality",
    "local_orig",
    "local_resp",
    "start_observed",
    "start_time",
    "end_time",
    "duration",
    "end_reason",
    "conn_state",
    "history",
    "tcp_flags",
    "orig_tcp_flags",
    "resp_tcp_flags",
    "in_bytes",
    "out_bytes",
    "orig_bytes",
    "resp_bytes",
    "orig_pkts",
    "resp_pkts",
    "orig_ip_bytes",
    "resp_ip_bytes",
    "packet_count",
    "interval",
    "rtt_us",
    "retransmits",
    "orig_first_byte_time",
    "resp_first_byte_time",
    "time_to_first_byte",
    "attribution",
    "pid",
    "tid",
    "ppid",
    "process_name",
    "exe",
    "image_path",
    "image_deleted",
    "image_inherited",
    "image_refreshed",
    "image_unverified",
    "image_sha256",
    "image_hash_skipped",
    "command_line",
    "process_args",
    "command_line_truncated",
    "process_start_time",
    "process_entity_id",
    "parent_exe",
    "parent_command_line",
    "parent_entity_id",
    "ancestors",
    "uid",
    "user",
    "gid",
    "group",
    "euid",
    "effective_user",
    "egid",
    "auid",
    "login_user",
    "session_id",
    "cgroup_id",
    "cgroup_path",
    "container_id",
    "container_runtime",
    "systemd_unit",
    "netns",
    "hostname",
    "fqdn",
    "host_id",
    "boot_id",
    "os_name",
    "os_version",
    "kernel_version",
    "agent_version",
    "src_hostname",
    "src_fqdn",
    "dest_hostname",
    "dest_fqdn",
    "dns_chain",
    "application_protocol",
    "app_protocol_source",
    "proto_info",
    "tls_version",
    "tls_cipher",
    "tls_cipher_suite",
    "tls_server_name",
    "tls_alpn",
    "tls_alpn_offered",
    "tls_client_ciphers",
    "tls_client_hello_truncated",
    "ja3",
    "ja3s",
    "ja4",
    "ja4s",
    "orig_content",
    "resp_content",
];

/// The fields of a process event (`process_start`, `process_end`) before its process's, in
/// the order they are written: docs/events.md, "Process events". The process's and the host's
/// follow as in flow events: [`FLOW_FIELDS`] from `pid` to `systemd_unit` (without the
/// event's `tid`) and from `hostname` to `agent_version`. tests/tests/schema.rs checks them
/// against the docs and the schema, the unit tests that the writer writes them so.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const PROCESS_EVENT_FIELDS: &[&str] = &[
    "timestamp",
    "event_action",
    "exit_code",
    "exit_signal",
    "duration",
];

/// The fields of a flow event's `interval` object: its counters since its previous event, from
/// this host's side.
pub(crate) const INTERVAL_FIELDS: &[&str] = &["in_bytes", "out_bytes", "in_pkts", "out_pkts"];

impl NativeEncoder {
    /// A flow event, in the order of [`FLOW_FIELDS`].
    fn flow(&mut self, ev: &FlowEvent, out: &mut Vec<u8>) {
        let process = ev
            .process
            .as_ref()
            .map(|p| self.processes.get(p, process_fragments));
        let host = self.hosts.get(&ev.host, host_fragment);
        let app = ev.app.as_ref().map(|a| self.apps.get(a, app_fragment));
        let mut w = Json::new(out);
        w.begin();
        flow_fields(&mut w, ev);
        if let Some(p) = process {
            w.splice(p.get(PID));
        }
        w.opt("tid", ev.tid);
        if let Some(p) = process {
            w.splice(p.get(PROCESS));
        }
        w.opt("netns", ev.netns);
        w.splice(host.get(0));
        names(&mut w, ev);
        if let Some(app) = app {
            w.splice(app.get(0));
        }
        w.end();
    }
}

impl NativeEncoder {
    /// A process event, in the order of [`PROCESS_EVENT_FIELDS`] and then the process's and
    /// host's flow fields.
    fn process_event(&mut self, ev: &ProcessEvent, out: &mut Vec<u8>) {
        let process = self.processes.get(&ev.process, process_fragments);
        let host = self.hosts.get(&ev.host, host_fragment);
        let mut w = Json::new(out);
        w.begin();
        w.time("timestamp", ev.time);
        w.name("event_action", ev.action.as_str());
        w.opt("exit_code", ev.exit.map(|e| e.code));
        w.opt("exit_signal", ev.exit.and_then(|e| e.signal));
        w.opt("duration", ev.duration_ns.map(seconds));
        w.splice(process.get(PID));
        w.splice(process.get(PROCESS));
        w.splice(host.get(0));
        w.end();
    }
}

/// `timestamp` to `attribution`: the flow's own fields.
fn flow_fields(w: &mut Json, ev: &FlowEvent) {
    let (src, dest) = (ev.src(), ev.dest());
    w.time("timestamp", ev.time);
    w.name("event_action", ev.action.as_str());
    w.field("flow_id", &ev.ids.flow_id);
    w.opt("community_id", ev.ids.community_id.as_deref());
    w.name("transport_protocol", ev.transport.as_str());
    w.ip("src_ip", src.0);
    w.field("src_port", &src.1);
    w.ip("dest_ip", dest.0);
    w.field("dest_port", &dest.1);
    w.name("network_direction", ev.direction.as_str());
    w.name("network_locality", ev.locality.as_str());
    w.field("local_orig", &ev.local_orig());
    w.field("local_resp", &!ev.local_orig());
    w.field("start_observed", &ev.start_observed);
    w.opt_time("start_time", ev.start_time);
    w.opt_time("end_time", ev.end_time);
    w.opt("duration", ev.duration_ns.map(seconds));
    w.opt_name("end_reason", ev.end_reason);
    w.opt_name("conn_state", ev.conn_state);
    w.opt("history", ev.history.as_deref());
    if let Some(f) = ev.tcp_flags {
        w.name("tcp_flags", FlagLetters::new(f.orig | f.resp).as_str());
        w.name("orig_tcp_flags", FlagLetters::new(f.orig).as_str());
        w.name("resp_tcp_flags", FlagLetters::new(f.resp).as_str());
    }
    if let Some(c) = &ev.counters {
        counters(w, ev, c);
    }
    w.opt("rtt_us", ev.rtt_us);
    w.opt("retransmits", ev.retransmits);
    w.opt_time("orig_first_byte_time", ev.orig_first_byte);
    w.opt_time("resp_first_byte_time", ev.resp_first_byte);
    w.opt(
        "time_to_first_byte",
        ev.time_to_first_byte_ns().map(seconds),
    );
    w.opt_name("attribution", ev.attribution.map(|a| a.as_str()));
}

/// `in_bytes` to `interval`.
fn counters(w: &mut Json, ev: &FlowEvent, c: &Counters) {
    let (orig_bytes, resp_bytes) = ev.by_role(c.out_bytes, c.in_bytes);
    let (orig_pkts, resp_pkts) = ev.by_role(c.out_pkts, c.in_pkts);
    let (orig_ip_bytes, resp_ip_bytes) = ev.by_role(c.out_ip_bytes, c.in_ip_bytes);
    w.field("in_bytes", &c.in_bytes);
    w.field("out_bytes", &c.out_bytes);
    w.field("orig_bytes", &orig_bytes);
    w.field("resp_bytes", &resp_bytes);
    w.field("orig_pkts", &orig_pkts);
    w.field("resp_pkts", &resp_pkts);
    w.opt("orig_ip_bytes", orig_ip_bytes);
    w.opt("resp_ip_bytes", resp_ip_bytes);
    w.field("packet_count", &(c.in_pkts + c.out_pkts));
    let i = &c.interval;
    w.object("interval");
    for (key, value) in INTERVAL_FIELDS
        .iter()
        .zip([i.in_bytes, i.out_bytes, i.in_pkts, i.out_pkts])
    {
        w.field(key, &value);
    }
    w.end();
}

/// `src_hostname` to `dns_chain`: CAR's names of the two ends, this host's own on its side and
/// the remote's from DNS, and the remote's CNAME chain.
fn names(w: &mut Json, ev: &FlowEvent) {
    let ((src_hostname, src_fqdn), (dest_hostname, dest_fqdn)) = end_names(ev);
    w.opt("src_hostname", src_hostname);
    w.opt("src_fqdn", src_fqdn);
    w.opt("dest_hostname", dest_hostname);
    w.opt("dest_fqdn", dest_fqdn);
    let chain = ev.remote_name.as_deref().map(|r| r.chain.as_slice());
    w.opt("dns_chain", chain.filter(|c| c.len() > 1));
}

/// ((src_hostname, src_fqdn), (dest_hostname, dest_fqdn)).
type EndNames<'a> = (
    (Option<&'a str>, Option<&'a str>),
    (Option<&'a str>, Option<&'a str>),
);

/// The names of the two ends: this host's own on its side, the remote's from DNS.
pub(super) fn end_names(ev: &FlowEvent) -> EndNames<'_> {
    let host: &HostInfo = &ev.host;
    let own = (non_empty(&host.hostname), host.fqdn.as_deref());
    let remote = ev
        .remote_fqdn()
        .map_or((None, None), |(fqdn, name)| (Some(name), Some(fqdn)));
    ev.by_role(own, remote)
}

/// The pieces of a process's fragments: `pid`, then (after the event's `tid`) `ppid` to
/// `systemd_unit`.
const PID: usize = 0;
const PROCESS: usize = 1;

fn process_fragments(p: &ProcessIdentity) -> Fragments {
    Fragments::render(|f| {
        f.piece(|w| w.field("pid", &p.pid));
        f.piece(|w| {
            w.opt("ppid", ppid(p));
            w.field("process_name", &p.comm);
            w.opt("exe", p.exe.as_deref());
            w.opt("image_path", p.image_path.as_deref());
            w.opt("image_deleted", p.image_deleted);
            w.opt("image_inherited", p.image_inherited.then_some(true));
            w.opt("image_refreshed", p.image_refreshed.then_some(true));
            w.opt("image_unverified", p.image_unverified.then_some(true));
            w.opt("image_sha256", p.image_sha256);
            w.opt("image_hash_skipped", p.image_hash_skipped);
            w.opt("command_line", p.command_line.as_deref());
            w.opt("process_args", p.args.as_deref());
            w.opt("command_line_truncated", p.command_line_truncated);
            w.opt_time("process_start_time", p.start_time);
            w.opt("process_entity_id", p.entity_id.as_deref());
            w.opt("parent_exe", p.parent_exe.as_deref());
            w.opt("parent_command_line", p.parent_command_line.as_deref());
            w.opt("parent_entity_id", p.parent_entity_id.as_deref());
            w.opt("ancestors", Some(&p.ancestors).filter(|a| !a.is_empty()));
            w.field("uid", &p.uid);
            w.opt("user", p.user.as_deref());
            w.field("gid", &p.gid);
            w.opt("group", p.group.as_deref());
            w.opt("euid", p.euid);
            w.opt("effective_user", p.effective_user.as_deref());
            w.opt("egid", p.egid);
            w.opt("auid", p.auid);
            w.opt("login_user", p.login_user.as_deref());
            w.opt("session_id", p.session_id);
            w.opt("cgroup_id", (p.cgroup_id != 0).then_some(p.cgroup_id));
            w.opt("cgroup_path", p.cgroup_path.as_deref());
            w.opt("container_id", p.container_id.as_deref());
            w.opt("container_runtime", p.container_runtime.as_deref());
            w.opt("systemd_unit", p.systemd_unit.as_deref());
        });
    })
}

/// `hostname` to `agent_version`.
fn host_fragment(host: &HostInfo) -> Fragments {
    Fragments::render(|f| {
        f.piece(|w| {
            w.field("hostname", &host.hostname);
            w.opt("fqdn", host.fqdn.as_deref());
            w.opt("host_id", non_empty(&host.machine_id));
            w.opt("boot_id", non_empty(&host.boot_id));
            w.opt("os_name", host.os_name.as_deref());
            w.opt("os_version", host.os_version.as_deref());
            w.opt("kernel_version", non_empty(&host.kernel));
            w.field("agent_version", host.agent_version);
        })
    })
}

/// `application_protocol` to `resp_content`.
fn app_fragment(app: &AppInfo) -> Fragments {
    Fragments::render(|f| {
        f.piece(|w| {
            let tls = app.tls.as_ref();
            w.opt("application_protocol", app.protocol.map(|(name, _)| name));
            w.opt(
                "app_protocol_source",
                app.protocol.map(|(_, source)| source.as_str()),
            );
            w.opt("proto_info", app.info.as_deref());
            w.opt("tls_version", tls.and_then(|t| t.version.as_deref()));
            w.opt("tls_cipher", tls.and_then(|t| t.cipher).map(cipher_display));
            w.opt("tls_cipher_suite", tls.and_then(|t| t.cipher));
            w.opt(
                "tls_server_name",
                tls.and_then(|t| t.server_name.as_deref()),
            );
            w.opt("tls_alpn", tls.and_then(|t| t.alpn.as_deref()));
            w.opt(
                "tls_alpn_offered",
                tls.map(|t| t.alpn_offered.as_slice())
                    .filter(|offered| !offered.is_empty()),
            );
            w.opt(
                "tls_client_ciphers",
                tls.map(|t| t.client_ciphers.as_slice())
                    .filter(|offered| !offered.is_empty()),
            );
            w.opt(
                "tls_client_hello_truncated",
                tls.and_then(|t| t.client_hello_truncated),
            );
            w.opt("ja3", tls.and_then(|t| t.ja3.as_deref()));
            w.opt("ja3s", tls.and_then(|t| t.ja3s.as_deref()));
            w.opt("ja4", tls.and_then(|t| t.ja4.as_deref()));
            w.opt("ja4s", tls.and_then(|t| t.ja4s.as_deref()));
            w.opt("orig_content", app.orig_content.as_deref());
            w.opt("resp_content", app.resp_content.as_deref());
        })
    })
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
    // The process and host fields, as flow events name them.
    #[serde(flatten)]
    tail: NativeTail<'a>,
}

/// The process and host fields of `dns_query` and `rate_limited` events (rare events: the
/// flattening serde does is no cost that matters here).
#[derive(Serialize)]
struct NativeTail<'a> {
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

impl<'a> NativeTail<'a> {
    fn new(p: Option<&'a ProcessIdentity>, host: &'a HostInfo) -> Self {
        Self {
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
        let flow = ev.flow.as_deref();
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
            tail: NativeTail::new(ev.process.as_deref(), &ev.host),
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
    // The process and host fields, as flow events name them.
    #[serde(flatten)]
    tail: NativeTail<'a>,
}

impl<'a> NativeRateLimited<'a> {
    fn new(ev: &'a SuppressedEvent) -> Self {
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
            tail: NativeTail::new(ev.process.as_deref(), &ev.host),
        }
    }
}
