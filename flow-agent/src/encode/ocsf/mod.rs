//! `ocsf`: OCSF Network Activity events (class 4001), one per flow event. Field mapping:
//! docs/formats.md. `rate_limited` summaries are activity 99 `Other` of the same class
//! (rate_limit.rs); `dns_query` events are DNS Activity (class 4003, dns.rs). Stats events have
//! no OCSF class here and are not written.
use std::{borrow::Cow, fmt, net::IpAddr, sync::LazyLock};

use serde::{Serialize, Serializer};

use super::{
    common,
    fragments::{FragmentCache, Fragments},
    json::Json,
    time, Encoder,
};
use crate::event::{
    AppInfo, Event, FlowAction, FlowEvent, HostInfo, IntervalCounters, ProcessIdentity, TlsInfo,
    Transport,
};

mod dns;
mod process;
mod process_activity;
mod rate_limit;
mod vocabulary;

use vocabulary::{Activity, Boundary, Direction};

/// The OCSF schema release the events follow.
pub(crate) const OCSF_VERSION: &str = "1.8.0";
/// `metadata.profiles`: every event has a `device` and most an `actor`, the attributes OCSF's
/// `host` profile adds to the classes.
pub(crate) const PROFILES: [&str; 1] = ["host"];
const CATEGORY_UID: u32 = 4;
const CLASS_UID: u32 = 4001;

/// Each output's OCSF encoder, with the fragments it rendered of the processes, the host and
/// the application facts of recent flow events.
#[derive(Default)]
pub(crate) struct OcsfEncoder {
    processes: FragmentCache<ProcessIdentity>,
    hosts: FragmentCache<HostInfo>,
    apps: FragmentCache<AppInfo>,
}

impl Encoder for OcsfEncoder {
    fn encode(&mut self, event: &Event, out: &mut Vec<u8>) -> bool {
        match event {
            Event::Flow(ev) => {
                self.flow(ev, out);
                true
            }
            Event::Dns(d) => serde_json::to_writer(&mut *out, &dns::DnsActivity::new(d)).is_ok(),
            Event::Process(p) => {
                self.process_event(p, out);
                true
            }
            Event::RateLimited(s) => {
                serde_json::to_writer(&mut *out, &rate_limit::RateLimited::new(s)).is_ok()
            }
            Event::Stats(_) => false,
        }
    }
}

/// Serializes a value as the string its `Display` writes, straight into the record.
pub(crate) fn display<T: fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// `connection_info.protocol_ver_id` and `protocol_ver` of an address's family.
pub(crate) fn ip_version(ip: IpAddr) -> (u32, &'static str) {
    if ip.is_ipv6() {
        (6, "Internet Protocol version 6 (IPv6)")
    } else {
        (4, "Internet Protocol version 4 (IPv4)")
    }
}

/// The product every event names in `metadata.product`.
pub(crate) const PRODUCT: Product = Product {
    name: "flow-agent",
    vendor_name: "flow-agent",
    version: env!("CARGO_PKG_VERSION"),
};

impl OcsfEncoder {
    /// A Network Activity event: written member by member, the process's, the host's and the
    /// application's parts copied from their fragments.
    fn flow(&mut self, ev: &FlowEvent, out: &mut Vec<u8>) {
        let process = ev
            .process
            .as_ref()
            .map(|p| self.processes.get(p, process_fragments));
        let host = self.hosts.get(&ev.host, host_fragments);
        let app = ev.app.as_ref().map(|a| self.apps.get(a, app_fragments));
        let activity = Activity::of(ev);
        let (src, dst) = (ev.src(), ev.dest());
        // This host's side of the flow carries its name, the remote's the name it was
        // resolved from.
        let (src_host, dst_host) = common::end_names(ev);
        let mut w = Json::new(out);
        w.begin();
        classification(&mut w, ev, activity);
        times(&mut w, ev);
        message(&mut w, activity, ev.transport, src, dst);
        metadata(&mut w, ev);
        endpoint(&mut w, "src_endpoint", src, src_host);
        endpoint(&mut w, "dst_endpoint", dst, dst_host);
        connection_info(&mut w, ev);
        if let Some(app) = app {
            w.splice(app.get(APP_TLS));
        }
        if let Some(c) = &ev.counters {
            Traffic::interval(ev, &c.interval).write(&mut w, "traffic");
        }
        if let Some(t) = Traffic::cumulative(ev) {
            t.write(&mut w, "cumulative_traffic");
        }
        w.field("is_src_dst_assignment_known", &ev.start_observed);
        let (point_id, point) = if ev.local_orig() {
            (1u32, "Source")
        } else {
            (2, "Destination")
        };
        w.field("observation_point_id", &point_id);
        w.name("observation_point", point);
        if let Some(p) = process {
            w.splice(p.get(ACTOR_HEAD));
            // OCSF 1.6 deprecated `tid` for `ptid`.
            w.opt("ptid", ev.tid);
            w.splice(p.get(ACTOR_TAIL));
        }
        w.splice(host.get(DEVICE));
        w.array("observables");
        ip_observable(&mut w, "src_endpoint.ip", src.0);
        ip_observable(&mut w, "dst_endpoint.ip", dst.0);
        if let Some((fqdn, _)) = ev.remote_fqdn() {
            let name = if ev.local_orig() {
                "dst_endpoint.hostname"
            } else {
                "src_endpoint.hostname"
            };
            w.element();
            w.value(&Observable::hostname(name, fqdn));
        }
        w.splice(host.get(HOST_OBSERVABLE));
        if let Some(p) = process {
            w.splice(p.get(OBSERVABLES));
        }
        w.end_array();
        w.object("unmapped");
        common::tcp_detail(&mut w, ev);
        w.opt("rtt_us", ev.rtt_us);
        w.opt("retransmits", ev.retransmits);
        w.name("network_locality", ev.locality.as_str());
        w.opt_name("attribution", ev.attribution.map(|a| a.as_str()));
        if let Some(p) = process {
            w.splice(p.get(UNMAPPED));
        }
        w.opt("netns", ev.netns);
        if let Some(app) = app {
            w.splice(app.get(APP_UNMAPPED));
        }
        w.end();
        w.end();
    }
}

/// `activity_id` to `status_detail`.
fn classification(w: &mut Json, ev: &FlowEvent, activity: Activity) {
    w.field("activity_id", &activity.id());
    w.name("activity_name", activity.caption());
    w.field("category_uid", &CATEGORY_UID);
    w.name("category_name", "Network Activity");
    w.field("class_uid", &CLASS_UID);
    w.name("class_name", "Network Activity");
    w.field("type_uid", &(CLASS_UID * 100 + activity.id()));
    w.name("type_name", activity.type_name());
    w.field("severity_id", &1u32);
    w.name("severity", "Informational");
    if ev.action == FlowAction::End {
        let (id, status) = if ev.connect_failed() {
            (2u32, "Failure")
        } else {
            (1, "Success")
        };
        w.field("status_id", &id);
        w.name("status", status);
    }
    w.opt_name("status_code", ev.conn_state);
    w.opt_name("status_detail", ev.end_reason);
}

/// `time` to `duration` (milliseconds).
fn times(w: &mut Json, ev: &FlowEvent) {
    w.field("time", &ev.time.millis());
    w.field("timezone_offset", &0i32);
    w.opt("start_time", ev.start_time.map(|t| t.millis()));
    w.opt("end_time", ev.end_time.map(|t| t.millis()));
    w.opt(
        "duration",
        ev.duration_ns
            .map(|ns| (time::seconds(ns) * 1000.0).round() as i64),
    );
}

/// `message`: `Close tcp 127.0.0.1:33596 -> 127.0.0.1:18080`.
fn message(
    w: &mut Json,
    activity: Activity,
    transport: Transport,
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
) {
    // Captions, transport names, addresses and ports need no escaping.
    w.key("message");
    w.raw(b"\"");
    w.raw(activity.caption().as_bytes());
    w.raw(b" ");
    w.raw(transport.as_str().as_bytes());
    w.raw(b" ");
    w.ip_text(src.0);
    w.raw(b":");
    w.value(&src.1);
    w.raw(b" -> ");
    w.ip_text(dst.0);
    w.raw(b":");
    w.value(&dst.1);
    w.raw(b"\"");
}

/// `metadata`: the flow is the correlation of its events.
fn metadata(w: &mut Json, ev: &FlowEvent) {
    w.object("metadata");
    w.name("version", OCSF_VERSION);
    w.key("product");
    w.raw(&PRODUCT_JSON);
    w.field("profiles", &PROFILES);
    w.field("correlation_uid", &ev.ids.flow_id);
    w.time("original_time", ev.time);
    w.name("log_name", "flows");
    w.end();
}

/// `src_endpoint` or `dst_endpoint`, with its fully qualified name and the domain of that
/// name (what follows its first label).
fn endpoint(w: &mut Json, key: &str, (ip, port): (IpAddr, u16), hostname: Option<&str>) {
    w.object(key);
    w.ip("ip", ip);
    w.field("port", &port);
    if let Some(name) = hostname {
        w.field("hostname", name);
        w.opt("domain", domain_of(name));
    }
    w.end();
}

/// The domain a fully qualified name belongs to: what follows its first label (`hostname
/// -d`); none for a single label.
pub(crate) fn domain_of(fqdn: &str) -> Option<&str> {
    fqdn.split_once('.')
        .map(|(_, domain)| domain)
        .filter(|d| !d.is_empty())
}

/// `connection_info`.
fn connection_info(w: &mut Json, ev: &FlowEvent) {
    let direction = Direction::of(ev);
    let boundary = Boundary::of(ev);
    let (protocol_ver_id, protocol_ver) = ip_version(ev.src().0);
    w.object("connection_info");
    w.field("uid", &ev.ids.flow_id);
    w.opt("community_uid", ev.ids.community_id.as_deref());
    w.field("direction_id", &direction.id());
    w.name("direction", direction.caption());
    w.field("boundary_id", &boundary.id());
    w.name("boundary", boundary.caption());
    w.field("protocol_num", &ev.transport.iana());
    w.name("protocol_name", ev.transport.as_str());
    w.field("protocol_ver_id", &protocol_ver_id);
    w.name("protocol_ver", protocol_ver);
    w.opt(
        "tcp_flags",
        ev.history.as_deref().map(vocabulary::tcp_flags),
    );
    w.opt("flag_history", ev.history.as_deref());
    w.end();
}

/// An element of `observables`: an address ([`Observable::ip`]).
fn ip_observable(w: &mut Json, name: &str, ip: IpAddr) {
    w.element();
    w.begin();
    w.name("name", name);
    w.field("type_id", &2u32);
    w.name("type", "IP Address");
    w.ip("value", ip);
    w.end();
}

/// The pieces of a process's fragments, in the event's order: `actor` up to its process's
/// `pid` (the event's `tid` follows), the rest of `actor`, its `observables` (name, user) and
/// its `unmapped` fields.
const ACTOR_HEAD: usize = 0;
const ACTOR_TAIL: usize = 1;
const OBSERVABLES: usize = 2;
const UNMAPPED: usize = 3;

fn process_fragments(p: &ProcessIdentity) -> Fragments {
    let actor = process::Actor::of(p, None);
    // The actor without a thread, cut after `pid`, its first member: `tid` goes there.
    let json = serde_json::to_vec(&actor).unwrap_or_default();
    let head = format!(r#"{{"process":{{"pid":{}"#, p.pid);
    assert!(
        json.starts_with(head.as_bytes()),
        "actor starts with its pid"
    );
    let (head, tail) = json.split_at(head.len());
    Fragments::render(|f| {
        f.piece(|w| {
            w.key("actor");
            w.raw(head);
        });
        f.piece(|w| w.raw(tail));
        f.piece(|w| {
            let observables = [
                Observable::process_name(Some(&actor)),
                Observable::user_name(Some(&actor)),
            ];
            for o in observables.iter().flatten() {
                w.element();
                w.value(o);
            }
        });
        f.piece(|w| {
            w.opt("command_line_truncated", p.command_line_truncated);
            w.opt("image_hash_skipped", p.image_hash_skipped);
            w.opt("image_inherited", p.image_inherited.then_some(true));
            w.opt("image_refreshed", p.image_refreshed.then_some(true));
            w.opt("image_unverified", p.image_unverified.then_some(true));
            w.field("gid", &p.gid);
            w.opt("group", p.group.as_deref());
            w.opt("euid", p.euid);
            w.opt("effective_user", p.effective_user.as_deref());
            w.opt("egid", p.egid);
            w.opt("auid", p.auid);
            w.opt("login_user", p.login_user.as_deref());
            w.opt("session_id", p.session_id);
            w.opt("cgroup_id", Some(p.cgroup_id).filter(|&id| id != 0));
            w.opt("cgroup_path", p.cgroup_path.as_deref());
            w.opt("container_id", p.container_id.as_deref());
            w.opt("container_runtime", p.container_runtime.as_deref());
            w.opt("systemd_unit", p.systemd_unit.as_deref());
        });
    })
}

/// The pieces of the host's fragments: `device`, and its `observables` element.
const DEVICE: usize = 0;
const HOST_OBSERVABLE: usize = 1;

fn host_fragments(host: &HostInfo) -> Fragments {
    let name = host_name(host);
    Fragments::render(|f| {
        f.piece(|w| w.field("device", &Device::of(host, name)));
        f.piece(|w| {
            w.element();
            w.value(&Observable::hostname("device.hostname", name));
        });
    })
}

/// The pieces of a flow's application facts: `app_name` and `tls`, and its `unmapped` fields.
const APP_TLS: usize = 0;
const APP_UNMAPPED: usize = 1;

fn app_fragments(app: &AppInfo) -> Fragments {
    let t = app.tls.as_ref();
    Fragments::render(|f| {
        f.piece(|w| {
            // The application protocol (native `application_protocol`): OCSF 1.8's
            // `app_protocol_name` (`app_name` is the application, e.g. an App-ID's).
            w.opt("app_protocol_name", app.protocol.map(|(name, _)| name));
            w.opt("tls", t.and_then(Tls::of));
            if let Some(t) = t.filter(|t| t.ja4.is_some() || t.ja4s.is_some()) {
                w.array("ja4_fingerprint_list");
                for (value, type_id, kind) in [(&t.ja4, 1u32, "JA4"), (&t.ja4s, 2, "JA4Server")] {
                    if let Some(value) = value {
                        w.element();
                        w.value(&Ja4::new(value, type_id, kind));
                    }
                }
                w.end_array();
            }
        });
        f.piece(|w| {
            w.opt("app_protocol_source", app.protocol.map(|(_, s)| s.as_str()));
            w.opt("proto_info", app.info.as_deref());
            w.opt("tls_alpn", t.and_then(|t| t.alpn.as_deref()));
            w.opt(
                "tls_client_hello_truncated",
                t.and_then(|t| t.client_hello_truncated),
            );
            w.opt("orig_content", app.orig_content.as_deref());
            w.opt("resp_content", app.resp_content.as_deref());
        });
    })
}

/// [`PRODUCT`] as written, the same in every event.
static PRODUCT_JSON: LazyLock<Vec<u8>> =
    LazyLock::new(|| serde_json::to_vec(&PRODUCT).unwrap_or_default());

#[derive(Serialize)]
pub(crate) struct Product {
    name: &'static str,
    vendor_name: &'static str,
    version: &'static str,
}

/// The TLS object: `version` is required, so it is written only when the version is known.
#[derive(Serialize)]
struct Tls<'a> {
    version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cipher: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sni: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ciphers: Option<common::CipherNames<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ja3_hash: Option<Fingerprint<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ja3s_hash: Option<Fingerprint<'a>>,
}

/// A fingerprint object: JA3 and JA3S are MD5 digests.
#[derive(Serialize)]
struct Fingerprint<'a> {
    algorithm_id: u32,
    algorithm: &'static str,
    value: &'a str,
}

impl<'a> Fingerprint<'a> {
    fn md5(value: &'a str) -> Self {
        Fingerprint {
            algorithm_id: 1,
            algorithm: "MD5",
            value,
        }
    }
}

impl<'a> Tls<'a> {
    /// Of a handshake whose version is known.
    fn of(t: &'a TlsInfo) -> Option<Self> {
        let (_, version) = common::tls_version_parts(t.version.as_deref()?)?;
        Some(Tls {
            version,
            cipher: t.cipher.map(common::cipher_display),
            sni: t.server_name.as_deref(),
            client_ciphers: common::CipherNames::of(&t.client_ciphers),
            ja3_hash: t.ja3.as_deref().map(Fingerprint::md5),
            ja3s_hash: t.ja3s.as_deref().map(Fingerprint::md5),
        })
    }
}

/// A `ja4_fingerprint` object: the fingerprint and its `_`-separated sections.
#[derive(Serialize)]
struct Ja4<'a> {
    type_id: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    value: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    section_a: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    section_b: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    section_c: Option<&'a str>,
}

impl<'a> Ja4<'a> {
    /// JA4 (`type_id` 1) and JA4S (2, `JA4Server`) have three sections.
    fn new(value: &'a str, type_id: u32, kind: &'static str) -> Self {
        let mut sections = value.split('_').filter(|s| !s.is_empty());
        Ja4 {
            type_id,
            kind,
            value,
            section_a: sections.next(),
            section_b: sections.next(),
            section_c: sections.next(),
        }
    }
}

/// `in` is from the destination (responder) to the source (initiator), `out` the reverse.
struct Traffic {
    bytes: u64,
    bytes_in: u64,
    bytes_out: u64,
    packets: u64,
    packets_in: u64,
    packets_out: u64,
}

impl Traffic {
    fn new(orig_bytes: u64, resp_bytes: u64, orig_pkts: u64, resp_pkts: u64) -> Self {
        Traffic {
            bytes: orig_bytes + resp_bytes,
            bytes_in: resp_bytes,
            bytes_out: orig_bytes,
            packets: orig_pkts + resp_pkts,
            packets_in: resp_pkts,
            packets_out: orig_pkts,
        }
    }

    /// Since the previous event: the interval counts from this host's side.
    fn interval(ev: &FlowEvent, i: &IntervalCounters) -> Self {
        let (ob, rb) = ev.by_role(i.out_bytes, i.in_bytes);
        let (op, rp) = ev.by_role(i.out_pkts, i.in_pkts);
        Traffic::new(ob, rb, op, rp)
    }

    fn cumulative(ev: &FlowEvent) -> Option<Self> {
        let (ob, rb, op, rp) = ev.orig_resp()?;
        Some(Traffic::new(ob, rb, op, rp))
    }
    /// `"key":{...}`.
    fn write(&self, w: &mut Json, key: &str) {
        w.object(key);
        w.field("bytes", &self.bytes);
        w.field("bytes_in", &self.bytes_in);
        w.field("bytes_out", &self.bytes_out);
        w.field("packets", &self.packets);
        w.field("packets_in", &self.packets_in);
        w.field("packets_out", &self.packets_out);
        w.end();
    }
}

/// This host, as every event's `device`.
#[derive(Serialize)]
pub(crate) struct Device<'a> {
    hostname: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    boot_uid: Option<&'a str>,
    type_id: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    os: Os<'a>,
}

/// The device's operating system: Linux (OCSF's `type_id` 200), named as os-release names it.
#[derive(Serialize)]
struct Os<'a> {
    name: &'a str,
    type_id: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel_release: Option<&'a str>,
}

impl<'a> Device<'a> {
    /// `hostname`: the name the event gives this host (flow events: its fqdn when known, see
    /// [`host_name`]); `name` is always the host's own hostname.
    pub(crate) fn of(host: &'a HostInfo, hostname: &'a str) -> Self {
        let known = |s: &'a str| (!s.is_empty()).then_some(s);
        Device {
            hostname,
            name: &host.hostname,
            uid: known(&host.machine_id),
            boot_uid: known(&host.boot_id),
            type_id: 0,
            kind: "Unknown",
            os: Os {
                name: host.os_name.as_deref().unwrap_or("Linux"),
                type_id: 200,
                kind: "Linux",
                version: host.os_version.as_deref(),
                kernel_release: known(&host.kernel),
            },
        }
    }
}

/// This host's fully qualified name when known, else its hostname.
fn host_name(host: &HostInfo) -> &str {
    host.fqdn.as_deref().unwrap_or(&host.hostname)
}

#[derive(Serialize)]
pub(crate) struct Observable<'a> {
    name: &'static str,
    type_id: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    value: ObservableValue<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum ObservableValue<'a> {
    Text(&'a str),
    Ip(IpAddr),
}

impl<'a> Observable<'a> {
    pub(crate) fn ip(name: &'static str, value: IpAddr) -> Self {
        Observable {
            name,
            type_id: 2,
            kind: "IP Address",
            value: ObservableValue::Ip(value),
        }
    }

    pub(crate) fn hostname(name: &'static str, value: &'a str) -> Self {
        Observable {
            name,
            type_id: 1,
            kind: "Hostname",
            value: ObservableValue::Text(value),
        }
    }

    /// `actor.process.name`, when the actor's name is known.
    pub(crate) fn process_name(actor: Option<&process::Actor<'a>>) -> Option<Self> {
        Some(Observable {
            name: "actor.process.name",
            type_id: 9,
            kind: "Process Name",
            value: ObservableValue::Text(actor?.process.name?),
        })
    }

    /// `actor.user.name`, when the actor's user name is known.
    pub(crate) fn user_name(actor: Option<&process::Actor<'a>>) -> Option<Self> {
        Some(Observable {
            name: "actor.user.name",
            type_id: 4,
            kind: "User Name",
            value: ObservableValue::Text(actor?.user.name?),
        })
    }
}

#[cfg(test)]
mod tests;
