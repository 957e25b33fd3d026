//! `ecs`: Elastic Common Schema documents (nested JSON objects), one per flow event, and a
//! metric document per stats event. Field mapping: docs/formats.md.
use std::{fmt::Display, net::IpAddr};

use serde::{Serialize, Serializer};

use super::{
    common,
    fragments::{FragmentCache, Fragments},
    json::Json,
    time::Rfc3339,
    Encoder,
};
use crate::event::{
    AppInfo, Event as AnyEvent, FlowAction, FlowEvent, HostInfo, ProcessIdentity, Sha256,
};

mod dns;
mod process;
mod rate_limit;
mod stats;

/// The ECS release the documents follow.
pub(crate) const ECS_VERSION: &str = "9.4.0";
/// `event.module`: the source of the data.
const MODULE: &str = "flow_agent";

/// Each output's ECS encoder, with the fragments it rendered of the processes, the host and
/// the application facts of recent flow events.
#[derive(Default)]
pub(crate) struct EcsEncoder {
    processes: FragmentCache<ProcessIdentity>,
    hosts: FragmentCache<HostInfo>,
    apps: FragmentCache<AppInfo>,
}

impl Encoder for EcsEncoder {
    fn encode(&mut self, event: &AnyEvent, out: &mut Vec<u8>) -> bool {
        match event {
            AnyEvent::Flow(ev) => {
                self.flow(ev, out);
                true
            }
            AnyEvent::Dns(d) => serde_json::to_writer(&mut *out, &dns::DnsDoc::new(d)).is_ok(),
            AnyEvent::Process(p) => {
                self.process_event(p, out);
                true
            }
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

impl EcsEncoder {
    /// A flow event's document: written member by member, the process's, the host's and the
    /// application's parts copied from their fragments.
    fn flow(&mut self, ev: &FlowEvent, out: &mut Vec<u8>) {
        let process = ev
            .process
            .as_ref()
            .map(|p| self.processes.get(p, process_fragments));
        let host = self.hosts.get(&ev.host, host_fragment);
        let app = ev.app.as_ref().map(|a| self.apps.get(a, app_fragments));
        let (src, dest) = (ev.src(), ev.dest());
        let mut w = Json::new(out);
        head(&mut w, ev.time);
        event(&mut w, ev);
        let orig_resp = ev.orig_resp();
        let (src_domain, dest_domain) = common::end_names(ev);
        endpoint(
            &mut w,
            "source",
            src,
            src_domain,
            orig_resp.map(|c| (c.0, c.2)),
        );
        endpoint(
            &mut w,
            "destination",
            dest,
            dest_domain,
            orig_resp.map(|c| (c.1, c.3)),
        );
        network(&mut w, ev);
        if let Some(app) = app {
            w.splice(app.get(TLS));
        }
        if let Some(p) = process {
            w.splice(p.get(PROCESS));
            if let Some(tid) = ev.tid {
                w.object("thread");
                w.field("id", &tid);
                w.splice(p.get(THREAD_NAME));
            }
            w.splice(p.get(PARENT_USER_GROUP));
        }
        w.splice(host.get(0));
        if let Some(p) = process {
            w.splice(p.get(CONTAINER));
        }
        w.object("related");
        // Both ends, once when they are the same address.
        let ips = [src.0, dest.0];
        w.array("ip");
        for ip in &ips[..if src.0 == dest.0 { 1 } else { 2 }] {
            w.element();
            w.ip_value(*ip);
        }
        w.end_array();
        // The names of both ends, once when they are the same.
        if src_domain.is_some() || dest_domain.is_some() {
            w.array("hosts");
            for name in [src_domain, dest_domain.filter(|d| Some(*d) != src_domain)]
                .into_iter()
                .flatten()
            {
                w.element();
                w.value(name);
            }
            w.end_array();
        }
        if let Some(p) = process {
            w.splice(p.get(RELATED_USER));
        }
        w.end();
        w.object("flow_agent");
        custom(&mut w, ev);
        if let Some(p) = process {
            w.splice(p.get(CUSTOM));
        }
        w.opt("netns", ev.netns);
        if let Some(app) = app {
            w.splice(app.get(APP_CUSTOM));
        }
        w.end();
        w.end();
    }
}

/// Opens a document: `@timestamp`, `ecs` and `agent`.
fn head(w: &mut Json, time: crate::event::WallTime) {
    w.begin();
    w.time("@timestamp", time);
    w.object("ecs");
    w.name("version", ECS_VERSION);
    w.end();
    w.object("agent");
    w.name("type", AGENT.kind);
    w.name("version", AGENT.version);
    w.end();
}

/// `event`.
fn event(w: &mut Json, ev: &FlowEvent) {
    w.object("event");
    w.name("kind", "event");
    w.array("category");
    w.element();
    w.plain_str("network");
    w.end_array();
    w.array("type");
    for t in types(ev) {
        w.element();
        w.plain_str(t);
    }
    w.end_array();
    w.name("action", action(ev));
    w.opt_name("outcome", outcome(ev));
    w.opt_name("reason", ev.end_reason);
    w.name("module", MODULE);
    w.name("dataset", "flow_agent.flow");
    w.opt_time("start", ev.start_time);
    w.opt_time("end", ev.end_time);
    // Nanoseconds.
    w.opt("duration", ev.duration_ns);
    w.end();
}

/// `source` or `destination`, with its name (`domain`: ECS's host name or fqdn of the end) and
/// what it sent: (bytes, packets).
fn endpoint(
    w: &mut Json,
    key: &str,
    (ip, port): (IpAddr, u16),
    domain: Option<&str>,
    sent: Option<(u64, u64)>,
) {
    w.object(key);
    w.ip("address", ip);
    w.ip("ip", ip);
    w.field("port", &port);
    w.opt("domain", domain);
    if let Some((bytes, packets)) = sent {
        w.field("bytes", &bytes);
        w.field("packets", &packets);
    }
    w.end();
}

/// `network`: host-based monitoring, so the direction is the host's point of view.
fn network(w: &mut Json, ev: &FlowEvent) {
    w.object("network");
    w.name("transport", ev.transport.as_str());
    w.name("type", ip_type(ev.src().0));
    w.field("iana_number", &Keyword(ev.transport.iana()));
    w.name(
        "direction",
        if ev.local_orig() { "egress" } else { "ingress" },
    );
    w.opt_name("protocol", ev.app_protocol().map(|a| a.0));
    w.opt("community_id", ev.ids.community_id.as_deref());
    if let Some(c) = &ev.counters {
        w.field("bytes", &(c.in_bytes + c.out_bytes));
        w.field("packets", &(c.in_pkts + c.out_pkts));
    }
    w.end();
}

/// `flow_agent` (native fields ECS has no place for, under the agent's own name: ECS custom
/// fields), the flow's own up to `attribution`.
fn custom(w: &mut Json, ev: &FlowEvent) {
    w.field("flow_id", &ev.ids.flow_id);
    w.field("start_observed", &ev.start_observed);
    w.name("network_locality", ev.locality.as_str());
    w.opt_name("conn_state", ev.conn_state);
    w.opt("history", ev.history.as_deref());
    common::tcp_detail(w, ev);
    w.opt("rtt_us", ev.rtt_us);
    w.opt("retransmits", ev.retransmits);
    if let Some(c) = &ev.counters {
        // The counters since the flow's previous event.
        let i = &c.interval;
        w.object("interval");
        w.field("in_bytes", &i.in_bytes);
        w.field("out_bytes", &i.out_bytes);
        w.field("in_pkts", &i.in_pkts);
        w.field("out_pkts", &i.out_pkts);
        w.end();
    }
    w.opt_name("attribution", ev.attribution.map(|a| a.as_str()));
}

/// The pieces of a process's fragments, in the document's order: `process` without its end
/// (the event's thread goes there), the thread's name, the rest of `process` with `user` and
/// `group`, `container`, `related.user`, and its `flow_agent` fields.
const PROCESS: usize = 0;
const THREAD_NAME: usize = 1;
const PARENT_USER_GROUP: usize = 2;
const CONTAINER: usize = 3;
const RELATED_USER: usize = 4;
const CUSTOM: usize = 5;

fn process_fragments(p: &ProcessIdentity) -> Fragments {
    Fragments::render(|f| {
        f.piece(|w| {
            let head = Process {
                thread: None,
                parent: None,
                ..process(p, None)
            };
            w.open("process", &head);
        });
        f.piece(|w| {
            w.field("name", &p.comm);
            w.end();
        });
        f.piece(|w| {
            w.opt("parent", parent(p));
            w.end();
            w.field("user", &flow_user(p));
            w.field("group", &group(p));
        });
        f.piece(|w| w.opt("container", container(p)));
        f.piece(|w| w.opt("user", related_user(p)));
        f.piece(|w| {
            w.opt("image_deleted", p.image_deleted);
            w.opt("image_hash_skipped", p.image_hash_skipped);
            w.opt("image_inherited", p.image_inherited.then_some(true));
            w.opt("ancestors", Some(&p.ancestors).filter(|a| !a.is_empty()));
            w.opt("image_refreshed", p.image_refreshed.then_some(true));
            w.opt("image_unverified", p.image_unverified.then_some(true));
            w.opt("egid", p.egid);
            w.opt("auid", p.auid);
            w.opt("login_user", p.login_user.as_deref());
            w.opt("session_id", p.session_id);
            w.opt("command_line_truncated", p.command_line_truncated);
            w.opt("cgroup_id", (p.cgroup_id != 0).then_some(p.cgroup_id));
            w.opt("cgroup_path", p.cgroup_path.as_deref());
            w.opt("systemd_unit", p.systemd_unit.as_deref());
        });
    })
}

/// `host`.
fn host_fragment(h: &HostInfo) -> Fragments {
    Fragments::render(|f| f.piece(|w| w.field("host", &host(h))))
}

/// The pieces of a flow's application facts: `tls`, and its `flow_agent` fields.
const TLS: usize = 0;
const APP_CUSTOM: usize = 1;

fn app_fragments(app: &AppInfo) -> Fragments {
    Fragments::render(|f| {
        f.piece(|w| w.opt("tls", tls(app)));
        f.piece(|w| {
            let t = app.tls.as_ref();
            w.opt("app_protocol_source", app.protocol.map(|a| a.1.as_str()));
            w.opt("proto_info", app.info.as_deref());
            w.opt(
                "tls_client_hello_truncated",
                t.and_then(|t| t.client_hello_truncated),
            );
            // ECS has JA3 and JA3S only.
            w.opt("ja4", t.and_then(|t| t.ja4.as_deref()));
            w.opt("ja4s", t.and_then(|t| t.ja4s.as_deref()));
            w.opt("orig_content", app.orig_content.as_deref());
            w.opt("resp_content", app.resp_content.as_deref());
        });
    })
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
    supported_ciphers: Option<common::CipherNames<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ja3: Option<&'a str>,
}

#[derive(Serialize)]
struct TlsServer<'a> {
    ja3s: &'a str,
}

/// `tls`: of flows whose application protocol is TLS.
fn tls(app: &AppInfo) -> Option<Tls<'_>> {
    if app.protocol?.0 != "tls" {
        return None;
    }
    let t = app.tls.as_ref();
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
            supported_ciphers: t.and_then(|t| common::CipherNames::of(&t.client_ciphers)),
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
    hash: Option<Hash>,
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

/// `process.hash`.
#[derive(Serialize)]
struct Hash {
    sha256: Sha256,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    command_line: Option<&'a str>,
}

/// `user`, with `user.effective`.
#[derive(Serialize)]
struct User<'a> {
    id: Keyword<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    effective: Option<Named<'a>>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    boot: Option<HostBoot<'a>>,
    os: HostOs<'a>,
}

/// `host.boot`: which boot of the host.
#[derive(Serialize)]
struct HostBoot<'a> {
    id: &'a str,
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

/// `process`: the process an event names, and the acting thread when the event has one.
/// Flow, DNS and rate-limit documents map it alike.
fn process(p: &ProcessIdentity, tid: Option<u32>) -> Process<'_> {
    Process {
        pid: p.pid,
        entity_id: p.entity_id.as_deref(),
        name: p.name(),
        executable: p.image_path.as_deref(),
        hash: p.image_sha256.map(|sha256| Hash { sha256 }),
        command_line: p.command_line.as_deref(),
        args: p.args.as_deref(),
        args_count: p.args.as_ref().map(Vec::len),
        start: p.start_time.map(Rfc3339::new),
        thread: tid.map(|id| Thread { id, name: &p.comm }),
        parent: parent(p),
    }
}

/// `process.parent`, when anything of it is known.
fn parent(p: &ProcessIdentity) -> Option<Parent<'_>> {
    (p.ppid != 0 || p.parent_exe.is_some()).then(|| Parent {
        entity_id: p.parent_entity_id.as_deref(),
        pid: (p.ppid != 0).then_some(p.ppid),
        executable: p.parent_exe.as_deref(),
        name: p.parent_exe.as_deref().map(common::basename),
        command_line: p.parent_command_line.as_deref(),
    })
}

/// `user`: the process's user.
fn user(p: &ProcessIdentity) -> Named<'_> {
    Named {
        id: Keyword(p.uid),
        name: p.user.as_deref(),
    }
}

/// A flow's `user`: the process's (real) user, and `user.effective` when the kernel reported
/// it.
fn flow_user(p: &ProcessIdentity) -> User<'_> {
    User {
        id: Keyword(p.uid),
        name: p.user.as_deref(),
        effective: p.euid.map(|euid| Named {
            id: Keyword(euid),
            name: p.effective_user.as_deref(),
        }),
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
        boot: (!h.boot_id.is_empty()).then_some(HostBoot { id: &h.boot_id }),
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
