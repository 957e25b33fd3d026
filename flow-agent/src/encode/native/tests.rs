use std::{collections::BTreeSet, fmt, sync::Arc};

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{json, Value};

use super::NativeEncoder;
use crate::encode::{fixtures::*, Encoder};
use crate::event::{
    AppInfo, AppProtocolSource, Event, FlowEvent, HashSkip, HostInfo, ProcessIdentity, RemoteName,
    Sha256, TcpFlags, TlsInfo,
};

/// The record of any event, as written.
fn encode_raw(ev: Event) -> String {
    let mut out = Vec::new();
    assert!(NativeEncoder::default().encode(&ev, &mut out));
    assert!(!out.contains(&b'\n'), "one line");
    String::from_utf8(out).expect("UTF-8")
}

fn encode_event(ev: Event) -> Value {
    serde_json::from_str(&encode_raw(ev)).unwrap()
}

fn encode(ev: &FlowEvent) -> Value {
    encode_event(Event::Flow(ev.clone()))
}

/// The top-level keys of a JSON object in the order written.
struct Keys(Vec<String>);

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Keys;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some((k, IgnoredAny)) = m.next_entry::<String, IgnoredAny>()? {
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
        }
        d.deserialize_map(V)
    }
}

fn keys_in_order(ev: Event) -> Vec<String> {
    serde_json::from_str::<Keys>(&encode_raw(ev)).unwrap().0
}

/// The native flow event's fields in the order the agent has always written them.
const FLOW_ORDER: &[&str] = &[
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

/// The process fields of `dns_query` and `rate_limited` events, in order.
const PROCESS_ORDER: &[&str] = &[
    "pid",
    "ppid",
    "process_name",
    "exe",
    "image_path",
    "command_line",
    "process_start_time",
    "process_entity_id",
    "parent_exe",
    "parent_entity_id",
    "uid",
    "user",
    "gid",
    "group",
    "cgroup_path",
    "container_id",
    "container_runtime",
    "systemd_unit",
];

const HOST_ORDER: &[&str] = &["hostname", "host_id", "boot_id", "agent_version"];

fn dns_order() -> Vec<&'static str> {
    [
        "timestamp",
        "event_action",
        "transport_protocol",
        "client_ip",
        "client_port",
        "resolver_ip",
        "resolver_port",
        "network_locality",
        "transaction_id",
        "query_name",
        "query_type",
        "query_type_id",
        "response_code",
        "response_code_id",
        "answers",
        "answers_truncated",
        "resolved_ips",
        "flow_id",
        "community_id",
    ]
    .iter()
    .chain(PROCESS_ORDER)
    .chain(HOST_ORDER)
    .copied()
    .collect()
}

fn rate_limited_order() -> Vec<&'static str> {
    [
        "timestamp",
        "event_action",
        "limiter",
        "rate",
        "burst",
        "suppressed_flows",
        "suppressed_tcp",
        "suppressed_udp",
        "first_suppressed_time",
        "last_suppressed_time",
        "suppressed_ended",
        "suppressed_in_bytes",
        "suppressed_out_bytes",
        "suppressed_packets",
        "remote_ips",
        "remote_ips_truncated",
        "dest_ports",
        "dest_ports_truncated",
    ]
    .iter()
    .chain(PROCESS_ORDER)
    .chain(HOST_ORDER)
    .copied()
    .collect()
}

/// `keys` are a subsequence of `order`: every key known, none out of place or twice.
fn assert_in_order(keys: &[String], order: &[&str], what: &str) {
    let mut rest = order.iter();
    for k in keys {
        assert!(
            rest.any(|o| o == k),
            "{what}: `{k}` unknown or out of order in {keys:?}"
        );
    }
}

fn schema() -> Value {
    serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/events.schema.json"
    )))
    .unwrap()
}

fn schema_props(schema: &Value, def: &str) -> BTreeSet<String> {
    schema["$defs"][def]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("schema has no $defs/{def}/properties"))
        .keys()
        .cloned()
        .collect()
}

fn keys_of(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// A process with every field the model has.
fn full_process() -> ProcessIdentity {
    ProcessIdentity {
        parent_entity_id: Some("3d1219c7-000000033f00-00001689".into()),
        cgroup_path: Some("/system.slice/docker-abc.scope".into()),
        container_id: Some("abc".into()),
        container_runtime: Some("docker".into()),
        systemd_unit: Some("docker-abc.scope".into()),
        image_deleted: Some(true),
        image_inherited: true,
        image_refreshed: true,
        ancestors: vec![crate::event::Ancestor {
            pid: 1,
            entity_id: Some("3d1219c7-000000000001-00000001".into()),
            image_path: Some("/usr/lib/systemd/systemd".into()),
        }],
        image_unverified: true,
        image_sha256: Some(Sha256([0xab; 32])),
        image_hash_skipped: Some(HashSkip::TooLarge),
        parent_command_line: Some("bash -l".into()),
        euid: Some(0),
        effective_user: Some("root".into()),
        egid: Some(0),
        auid: Some(1000),
        login_user: Some("alice".into()),
        session_id: Some(3),
        ..curl()
    }
}

fn full_host() -> Arc<HostInfo> {
    Arc::new(HostInfo {
        fqdn: Some("vm.example.org".into()),
        machine_id: "3d1219c7a1b2c3d4e5f60718293a4b5c".into(),
        boot_id: "5e2d9c1a-7b3f-4e8a-9c6d-1f2e3a4b5c6d".into(),
        os_name: Some("Debian GNU/Linux".into()),
        os_version: Some("13".into()),
        kernel: "6.12.0-1-amd64".into(),
        ..(*host()).clone()
    })
}

/// The client's end event with every field the native format has.
fn full_flow() -> FlowEvent {
    let mut ev = tcp_out_end();
    ev.tcp_flags = Some(TcpFlags {
        orig: 0x1b,
        resp: 0x17,
    });
    if let Some(c) = &mut ev.counters {
        c.out_ip_bytes = Some(451);
        c.in_ip_bytes = Some(16080);
    }
    ev.orig_first_byte = Some(t("2026-11-23T13:05:50.542900Z"));
    ev.resp_first_byte = Some(t("2026-11-23T13:05:50.543100Z"));
    ev.process = Some(Arc::new(full_process()));
    ev.host = full_host();
    ev.remote_name = Some(Arc::new(RemoteName {
        fqdn: "www.a.test".into(),
        chain: vec!["www.a.test".into(), "cdn.b.test".into()],
    }));
    ev.app = Some(Arc::new(AppInfo {
        protocol: Some(("tls", AppProtocolSource::Payload)),
        info: Some("TLS 1.3 www.a.test h2".into()),
        tls: Some(TlsInfo {
            version: Some("TLS 1.3".into()),
            cipher: Some(0x1301),
            server_name: Some("www.a.test".into()),
            alpn: Some("h2".into()),
            alpn_offered: vec!["h2".into(), "http/1.1".into()],
            client_ciphers: vec![0x1301, 0xc02f, 0xabcd],
            ja3: Some("j3".into()),
            ja3s: Some("j3s".into()),
            ja4: Some("j4".into()),
            ja4s: Some("j4s".into()),
            client_hello_truncated: Some(false),
        }),
        orig_content: Some("\u{16}\u{3}\u{1}...".into()),
        resp_content: Some("\u{16}\u{3}\u{3}...".into()),
    }));
    ev
}

#[test]
fn tcp_end_writes_every_known_field_and_nothing_else() {
    let doc = encode(&tcp_out_end());
    let want = json!({
        "timestamp": "2026-11-23T13:05:50.543381Z",
        "event_action": "end",
        "flow_id": "bf79e3c617f7-1",
        "community_id": "1:Uw3Um7L1M9pG/AWDF7lN/zpVQdk=",
        "transport_protocol": "tcp",
        "src_ip": "127.0.0.1",
        "src_port": 33596,
        "dest_ip": "127.0.0.1",
        "dest_port": 18080,
        "network_direction": "outbound",
        "network_locality": "internal",
        "local_orig": true,
        "local_resp": false,
        "start_observed": true,
        "start_time": "2026-11-23T13:05:50.542313Z",
        "end_time": "2026-11-23T13:05:50.543381Z",
        "duration": 0.001068809,
        "end_reason": "fin",
        "conn_state": "SF",
        "history": "ShADdFf",
        "in_bytes": 549,
        "out_bytes": 79,
        "orig_bytes": 79,
        "resp_bytes": 549,
        "orig_pkts": 7,
        "resp_pkts": 6,
        "packet_count": 13,
        "interval": {"in_bytes": 549, "out_bytes": 79, "in_pkts": 6, "out_pkts": 7},
        "rtt_us": 25,
        "retransmits": 0
    });
    // Two literals: one would pass json!'s macro recursion limit.
    let process_and_host = json!({
        "attribution": "connector",
        "pid": 6140,
        "tid": 6141,
        "ppid": 5769,
        "process_name": "curl",
        "exe": "curl",
        "image_path": "/usr/bin/curl",
        "image_deleted": false,
        "command_line": "curl -s http://127.0.0.1:18080/",
        "process_args": ["curl", "-s", "http://127.0.0.1:18080/"],
        "command_line_truncated": false,
        "process_start_time": "2026-11-23T13:05:50.530921Z",
        "process_entity_id": "3d1219c7-0000000340ab-000017fc",
        "parent_exe": "/usr/bin/bash",
        "uid": 0,
        "user": "root",
        "gid": 0,
        "group": "root",
        "cgroup_id": 1,
        "netns": 4026531833u64,
        "hostname": "vm",
        "agent_version": "0.1.0",
        "src_hostname": "vm"
    });
    let mut want = want;
    let fields = want.as_object_mut().unwrap();
    fields.extend(process_and_host.as_object().unwrap().clone());
    assert_eq!(doc, want);
}

#[test]
fn tcp_end_is_written_byte_for_byte_in_the_documented_order() {
    let raw = encode_raw(Event::Flow(tcp_out_end()));
    let want = concat!(
        r#"{"timestamp":"2026-11-23T13:05:50.543381Z","event_action":"end","#,
        r#""flow_id":"bf79e3c617f7-1","community_id":"1:Uw3Um7L1M9pG/AWDF7lN/zpVQdk=","#,
        r#""transport_protocol":"tcp","src_ip":"127.0.0.1","src_port":33596,"#,
        r#""dest_ip":"127.0.0.1","dest_port":18080,"network_direction":"outbound","#,
        r#""network_locality":"internal","local_orig":true,"local_resp":false,"#,
        r#""start_observed":true,"start_time":"2026-11-23T13:05:50.542313Z","#,
        r#""end_time":"2026-11-23T13:05:50.543381Z","duration":0.001068809,"#,
        r#""end_reason":"fin","conn_state":"SF","history":"ShADdFf","in_bytes":549,"#,
        r#""out_bytes":79,"orig_bytes":79,"resp_bytes":549,"orig_pkts":7,"resp_pkts":6,"#,
        r#""packet_count":13,"interval":{"in_bytes":549,"out_bytes":79,"in_pkts":6,"#,
        r#""out_pkts":7},"rtt_us":25,"retransmits":0,"attribution":"connector","#,
        r#""pid":6140,"tid":6141,"ppid":5769,"process_name":"curl","exe":"curl","#,
        r#""image_path":"/usr/bin/curl","image_deleted":false,"#,
        r#""command_line":"curl -s http://127.0.0.1:18080/","#,
        r#""process_args":["curl","-s","http://127.0.0.1:18080/"],"#,
        r#""command_line_truncated":false,"process_start_time":"2026-11-23T13:05:50.530921Z","#,
        r#""process_entity_id":"3d1219c7-0000000340ab-000017fc","parent_exe":"/usr/bin/bash","#,
        r#""uid":0,"user":"root","gid":0,"group":"root","cgroup_id":1,"netns":4026531833,"#,
        r#""hostname":"vm","agent_version":"0.1.0","src_hostname":"vm"}"#,
    );
    assert_eq!(raw, want);
}

#[test]
fn start_has_no_end_fields_and_a_zero_duration() {
    let raw = encode_raw(Event::Flow(tcp_out_start()));
    assert!(raw.contains(r#""duration":0.0,"#), "{raw}");
    let doc: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(doc["event_action"], "start");
    assert_eq!(doc["start_time"], "2026-11-23T13:05:50.542313Z");
    for absent in [
        "end_time",
        "end_reason",
        "conn_state",
        "history",
        "in_bytes",
        "interval",
        "rtt_us",
        "retransmits",
        "tcp_flags",
        "time_to_first_byte",
    ] {
        assert!(doc.get(absent).is_none(), "{absent} in {doc}");
    }
}

#[test]
fn inbound_end_names_both_ends_by_role() {
    let doc = encode(&tcp_in_end());
    assert_eq!(doc["network_direction"], "inbound");
    assert_eq!(doc["local_orig"], false);
    assert_eq!(doc["local_resp"], true);
    // The client is the originator: src is the remote end, dest this host's.
    assert_eq!(doc["src_port"], 33596);
    assert_eq!(doc["dest_port"], 18080);
    assert_eq!(doc["in_bytes"], 79);
    assert_eq!(doc["out_bytes"], 549);
    assert_eq!(doc["orig_bytes"], 79);
    assert_eq!(doc["resp_bytes"], 549);
    assert_eq!(doc["orig_pkts"], 7);
    assert_eq!(doc["resp_pkts"], 6);
    assert_eq!(doc["packet_count"], 13);
    assert_eq!(doc["duration"], 0.00098);
    assert_eq!(doc["attribution"], "acceptor");
    assert_eq!(doc["tid"], 5800);
    assert_eq!(doc["process_name"], "python3");
    assert_eq!(doc["exe"], "python3.13");
    assert_eq!(doc["process_start_time"], "2026-11-23T13:00:01.000000Z");
    assert_eq!(doc["fqdn"], "vm.example.org");
    // This host's names on its side (dest); no name known for the remote end.
    assert_eq!(doc["dest_hostname"], "vm");
    assert_eq!(doc["dest_fqdn"], "vm.example.org");
    assert!(doc.get("src_hostname").is_none());
    assert!(doc.get("src_fqdn").is_none());
}

#[test]
fn udp6_update_counts_by_role_with_ip_bytes() {
    let doc = encode(&udp6_update());
    assert_eq!(doc["transport_protocol"], "udp");
    assert_eq!(doc["event_action"], "update");
    assert_eq!(doc["src_ip"], "2001:db8::5");
    assert_eq!(doc["dest_ip"], "2001:db8:1::53");
    assert_eq!(doc["network_locality"], "external");
    assert_eq!(doc["duration"], 60.0001);
    assert_eq!(doc["orig_bytes"], 100);
    assert_eq!(doc["resp_bytes"], 300);
    assert_eq!(doc["orig_ip_bytes"], 196);
    assert_eq!(doc["resp_ip_bytes"], 444);
    assert_eq!(doc["packet_count"], 5);
    assert_eq!(
        doc["interval"],
        json!({"in_bytes": 200, "out_bytes": 50, "in_pkts": 2, "out_pkts": 1})
    );
    assert_eq!(doc["attribution"], "socket_user");
    assert_eq!(doc["pid"], 700);
    assert_eq!(doc["tid"], 701);
    assert_eq!(doc["uid"], 101);
    assert_eq!(doc["gid"], 101);
    assert_eq!(doc["process_name"], "resolver");
    // ppid and cgroup_id 0 are unknown: omitted; so are the unknown process facts.
    for absent in [
        "ppid",
        "cgroup_id",
        "exe",
        "image_path",
        "process_args",
        "user",
    ] {
        assert!(doc.get(absent).is_none(), "{absent} in {doc}");
    }
}

#[test]
fn inbound_udp_end_without_process() {
    let doc = encode(&udp_in_end());
    assert_eq!(doc["src_ip"], "10.0.0.9");
    assert_eq!(doc["src_port"], 5353);
    assert_eq!(doc["dest_ip"], "10.0.0.5");
    assert_eq!(doc["orig_bytes"], 12);
    assert_eq!(doc["resp_bytes"], 0);
    assert_eq!(doc["orig_ip_bytes"], 40);
    assert_eq!(doc["resp_ip_bytes"], 0);
    assert_eq!(doc["end_reason"], "idle");
    assert_eq!(doc["dest_hostname"], "vm");
    for absent in [
        "attribution",
        "pid",
        "tid",
        "uid",
        "gid",
        "process_name",
        "netns",
    ] {
        assert!(doc.get(absent).is_none(), "{absent} in {doc}");
    }
}

#[test]
fn refused_preexisting_and_shutdown_ends() {
    let doc = encode(&tcp_refused_end());
    assert_eq!(doc["conn_state"], "REJ");
    assert_eq!(doc["end_reason"], "refused");
    assert_eq!(doc["dest_port"], 8081);
    assert!(doc.get("rtt_us").is_none());

    let doc = encode(&tcp_preexisting_end());
    assert_eq!(doc["start_observed"], false);
    assert!(doc.get("start_time").is_none());
    assert!(doc.get("duration").is_none());

    let doc = encode(&tcp_shutdown_end());
    assert_eq!(doc["end_reason"], "agent_shutdown");
    for absent in ["conn_state", "history", "rtt_us", "retransmits"] {
        assert!(doc.get(absent).is_none(), "{absent} in {doc}");
    }
}

#[test]
fn hostile_text_is_escaped_and_round_trips() {
    let raw = encode_raw(Event::Flow(hostile_start()));
    let doc: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(doc["exe"], HOSTILE);
    assert_eq!(doc["hostname"], format!("h{HOSTILE}"));
    assert_eq!(doc["src_hostname"], format!("h{HOSTILE}"));
    assert_eq!(doc["process_args"][1], format!("--x={HOSTILE}"));
    assert_eq!(
        doc["process_name"],
        HOSTILE.chars().take(15).collect::<String>()
    );
}

#[test]
fn every_fixture_is_written_in_the_documented_order() {
    let mut flows = all_flows();
    flows.push(full_flow());
    for ev in flows {
        let keys = keys_in_order(Event::Flow(ev));
        assert_in_order(&keys, FLOW_ORDER, "flow");
    }
    let dns = keys_in_order(Event::Dns(Box::new(dns_query())));
    assert_in_order(&dns, &dns_order(), "dns_query");
    let rl = keys_in_order(Event::RateLimited(Box::new(rate_limited())));
    assert_in_order(&rl, &rate_limited_order(), "rate_limited");
}

#[test]
fn every_field_of_a_full_flow_is_in_the_schema() {
    let schema = schema();
    let ev = full_flow();
    let doc = encode(&ev);
    // A full event writes every field the schema has, and only those.
    assert_eq!(keys_of(&doc), schema_props(&schema, "flow"));
    assert_eq!(keys_of(&doc["interval"]), schema_props(&schema, "interval"));
    assert_eq!(keys_in_order(Event::Flow(ev)), FLOW_ORDER);

    assert_eq!(doc["tcp_flags"], "FSRPA");
    assert_eq!(doc["orig_tcp_flags"], "FSPA");
    assert_eq!(doc["resp_tcp_flags"], "FSRA");
    assert_eq!(doc["orig_first_byte_time"], "2026-11-23T13:05:50.542900Z");
    assert_eq!(doc["resp_first_byte_time"], "2026-11-23T13:05:50.543100Z");
    assert_eq!(doc["time_to_first_byte"], 0.0002);
    assert_eq!(doc["orig_ip_bytes"], 451);
    assert_eq!(doc["resp_ip_bytes"], 16080);
    assert_eq!(doc["image_deleted"], true);
    assert_eq!(doc["host_id"], "3d1219c7a1b2c3d4e5f60718293a4b5c");
    assert_eq!(doc["boot_id"], "5e2d9c1a-7b3f-4e8a-9c6d-1f2e3a4b5c6d");
    assert_eq!(doc["kernel_version"], "6.12.0-1-amd64");
    assert_eq!(doc["os_name"], "Debian GNU/Linux");
    assert_eq!(doc["os_version"], "13");
    assert_eq!(doc["src_hostname"], "vm");
    assert_eq!(doc["src_fqdn"], "vm.example.org");
    assert_eq!(doc["dest_hostname"], "www");
    assert_eq!(doc["dest_fqdn"], "www.a.test");
    assert_eq!(doc["dns_chain"], json!(["www.a.test", "cdn.b.test"]));
    assert_eq!(doc["application_protocol"], "tls");
    assert_eq!(doc["app_protocol_source"], "payload");
    assert_eq!(doc["proto_info"], "TLS 1.3 www.a.test h2");
    assert_eq!(doc["tls_version"], "TLS 1.3");
    assert_eq!(doc["tls_cipher"], "TLS_AES_128_GCM_SHA256");
    assert_eq!(doc["tls_cipher_suite"], 0x1301);
    assert_eq!(doc["tls_server_name"], "www.a.test");
    assert_eq!(doc["tls_alpn"], "h2");
    assert_eq!(doc["tls_alpn_offered"], json!(["h2", "http/1.1"]));
    assert_eq!(doc["tls_client_ciphers"], json!([0x1301, 0xc02f, 0xabcd]));
    assert_eq!(doc["tls_client_hello_truncated"], false);
    assert_eq!(doc["ja3"], "j3");
    assert_eq!(doc["ja4s"], "j4s");
    assert_eq!(doc["orig_content"], "\u{16}\u{3}\u{1}...");
    assert_eq!(doc["cgroup_path"], "/system.slice/docker-abc.scope");
    assert_eq!(doc["container_runtime"], "docker");
}

#[test]
fn tls_details_are_written_only_when_known() {
    let mut ev = full_flow();
    ev.app = Some(Arc::new(AppInfo {
        protocol: Some(("tls", AppProtocolSource::Port)),
        tls: Some(TlsInfo {
            cipher: Some(0xabcd),
            ..TlsInfo::default()
        }),
        ..AppInfo::default()
    }));
    // A single name is no chain.
    ev.remote_name = Some(Arc::new(RemoteName {
        fqdn: "db".into(),
        chain: vec!["db".into()],
    }));
    let doc = encode(&ev);
    assert_eq!(doc["app_protocol_source"], "port");
    assert_eq!(doc["tls_cipher"], "0xabcd");
    assert_eq!(doc["tls_cipher_suite"], 0xabcd);
    assert_eq!(doc["dest_hostname"], "db");
    assert_eq!(doc["dest_fqdn"], "db");
    for absent in [
        "proto_info",
        "tls_version",
        "tls_alpn_offered",
        "tls_client_ciphers",
        "tls_client_hello_truncated",
        "ja3",
        "orig_content",
        "dns_chain",
    ] {
        assert!(doc.get(absent).is_none(), "{absent} in {doc}");
    }
}

#[test]
fn dns_query_names_types_codes_and_the_flow() {
    let raw = encode_raw(Event::Dns(Box::new(dns_query())));
    let want = concat!(
        r#"{"timestamp":"2026-11-23T13:06:00.000001Z","event_action":"dns_query","#,
        r#""transport_protocol":"udp","client_ip":"10.0.0.5","client_port":40000,"#,
        r#""resolver_ip":"10.0.0.53","resolver_port":53,"network_locality":"internal","#,
        r#""transaction_id":4660,"query_name":"www.a.test","query_type":"A","#,
        r#""query_type_id":1,"response_code":"NOERROR","response_code_id":0,"#,
        r#""answers":[{"name":"www.a.test","type":"CNAME","ttl":30,"data":"cdn.b.test"},"#,
        r#"{"name":"cdn.b.test","type":"A","ttl":20,"data":"10.0.0.1"}],"#,
        r#""answers_truncated":false,"resolved_ips":["10.0.0.1"],"#,
        r#""flow_id":"bf79e3c617f7-9","community_id":"1:abc=","pid":4242,"#,
        r#""process_name":"curl","exe":"curl","image_path":"/usr/bin/curl","#,
        r#""process_entity_id":"abc-4242","uid":1000,"user":"alice","gid":0,"#,
        r#""hostname":"vm","agent_version":"0.1.0"}"#,
    );
    assert_eq!(raw, want);

    // Unknown names, an answer without data, no flow and no process.
    let mut ev = dns_query();
    ev.query_type = 99;
    ev.response_code = 12;
    ev.answers[1].rtype = 16;
    ev.answers[1].data = None;
    ev.flow = None;
    ev.process = None;
    ev.host = full_host();
    let doc = encode_event(Event::Dns(Box::new(ev)));
    assert_eq!(doc["query_type"], "TYPE99");
    assert_eq!(doc["query_type_id"], 99);
    assert_eq!(doc["response_code"], "RCODE12");
    assert_eq!(
        doc["answers"][1],
        json!({"name": "cdn.b.test", "type": "TXT", "ttl": 20})
    );
    assert_eq!(doc["host_id"], "3d1219c7a1b2c3d4e5f60718293a4b5c");
    assert_eq!(doc["boot_id"], "5e2d9c1a-7b3f-4e8a-9c6d-1f2e3a4b5c6d");
    for absent in ["flow_id", "community_id", "pid", "uid", "process_name"] {
        assert!(doc.get(absent).is_none(), "{absent} in {doc}");
    }
}

#[test]
fn rate_limited_summary() {
    let doc = encode_event(Event::RateLimited(Box::new(rate_limited())));
    let want = json!({
        "timestamp": "2026-11-23T13:06:00.000001Z",
        "event_action": "rate_limited",
        "limiter": "process",
        "rate": 10.0,
        "burst": 20,
        "suppressed_flows": 480,
        "suppressed_tcp": 470,
        "suppressed_udp": 10,
        "first_suppressed_time": "2026-11-23T13:05:01.000001Z",
        "last_suppressed_time": "2026-11-23T13:05:02.000001Z",
        "suppressed_ended": 470,
        "suppressed_in_bytes": 1000,
        "suppressed_out_bytes": 2000,
        "suppressed_packets": 3000,
        "remote_ips": ["10.0.0.1", "10.0.0.2"],
        "remote_ips_truncated": false,
        "dest_ports": [80, 443],
        "dest_ports_truncated": false,
        "pid": 4242,
        "process_name": "curl",
        "exe": "curl",
        "image_path": "/usr/bin/curl",
        "process_entity_id": "abc-4242",
        "uid": 1000,
        "user": "alice",
        "gid": 0,
        "hostname": "vm",
        "agent_version": "0.1.0"
    });
    assert_eq!(doc, want);
    let raw = encode_raw(Event::RateLimited(Box::new(rate_limited())));
    assert!(raw.contains(r#""rate":10.0,"burst":20,"#), "{raw}");

    let mut ev = rate_limited();
    ev.process = None;
    ev.first_suppressed = None;
    ev.last_suppressed = None;
    let doc = encode_event(Event::RateLimited(Box::new(ev)));
    for absent in [
        "first_suppressed_time",
        "last_suppressed_time",
        "pid",
        "uid",
        "gid",
        "process_name",
    ] {
        assert!(doc.get(absent).is_none(), "{absent} in {doc}");
    }
}

#[test]
fn full_dns_and_rate_limited_events_write_exactly_the_schema_fields() {
    let schema = schema();
    let full = Arc::new(ProcessIdentity {
        ppid: 5769,
        ..full_process()
    });
    let mut dns = dns_query();
    dns.process = Some(full.clone());
    dns.host = full_host();
    let ev = Event::Dns(Box::new(dns));
    assert_eq!(
        keys_of(&encode_event(ev.clone())),
        schema_props(&schema, "dns_query")
    );
    assert_eq!(keys_in_order(ev), dns_order());
    let answer_props: BTreeSet<String> = schema["$defs"]["dns_query"]["properties"]["answers"]
        ["items"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let doc = encode_event(Event::Dns(Box::new(dns_query())));
    assert_eq!(keys_of(&doc["answers"][0]), answer_props);

    let mut rl = rate_limited();
    rl.process = Some(full);
    rl.host = full_host();
    let ev = Event::RateLimited(Box::new(rl));
    let doc = encode_event(ev.clone());
    assert_eq!(keys_of(&doc), schema_props(&schema, "rate_limited"));
    assert_eq!(keys_in_order(ev), rate_limited_order());
    assert_eq!(doc["ppid"], 5769);
    assert_eq!(doc["process_start_time"], "2026-11-23T13:05:50.530921Z");
    assert_eq!(doc["parent_exe"], "/usr/bin/bash");
    assert_eq!(doc["container_id"], "abc");
}

#[test]
fn stats_are_written_as_they_are() {
    let s = stats();
    let doc = encode_event(Event::Stats(Box::new(s.clone())));
    assert_eq!(doc, serde_json::to_value(&s).unwrap());
    assert_eq!(doc["event_action"], "stats");
}

#[test]
fn flow_fields_list_what_the_writer_writes_in_order() {
    // tests/tests/schema.rs checks FLOW_FIELDS and INTERVAL_FIELDS against the docs and the
    // schema: they must be what the encoder writes.
    assert_eq!(super::FLOW_FIELDS, FLOW_ORDER);
    let full = full_flow();
    assert_eq!(keys_in_order(Event::Flow(full.clone())), super::FLOW_FIELDS);
    let raw = encode_raw(Event::Flow(full));
    let at = raw.find(r#""interval":"#).unwrap() + r#""interval":"#.len();
    let interval = &raw[at..=at + raw[at..].find('}').unwrap()];
    let interval = serde_json::from_str::<Keys>(interval).unwrap().0;
    assert_eq!(interval, super::INTERVAL_FIELDS);
    for ev in all_flows() {
        assert_in_order(&keys_in_order(Event::Flow(ev)), super::FLOW_FIELDS, "flow");
    }
}

#[test]
fn process_event_fields_list_what_the_writer_writes_in_order() {
    // tests/tests/schema.rs checks PROCESS_EVENT_FIELDS against the docs and the schema.
    let mut end = process_end();
    end.process = Arc::new(full_process());
    end.host = full_flow().host;
    let keys = keys_in_order(Event::Process(Box::new(end)));
    let order = process_event_order();
    assert_in_order(&keys, &order, "process_end");
    for k in [
        "exit_code",
        "exit_signal",
        "duration",
        "process_entity_id",
        "image_sha256",
    ] {
        assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
    }
    let doc = encode_event(Event::Process(Box::new(process_end())));
    assert_eq!(doc["event_action"], "process_end");
    assert_eq!(
        (doc["exit_code"].clone(), doc["exit_signal"].clone()),
        (137.into(), 9.into())
    );
    let start = encode_event(Event::Process(Box::new(process_start())));
    assert_eq!(start["event_action"], "process_start");
    assert_eq!(
        start["process_entity_id"],
        curl().entity_id.unwrap().as_str()
    );
    assert!(start.get("exit_code").is_none() && start.get("duration").is_none());
    let keys = keys_in_order(Event::Process(Box::new(process_start())));
    assert_in_order(&keys, &order, "process_start");
}

/// A process event's fields in order: its own, then the flow fields of its process (without
/// the event's `tid`) and of the host, as tests/tests/schema.rs assembles them.
fn process_event_order() -> Vec<&'static str> {
    let f = super::FLOW_FIELDS;
    let at = |k: &str| f.iter().position(|x| *x == k).unwrap();
    let process = f[at("pid")..=at("systemd_unit")]
        .iter()
        .filter(|k| **k != "tid");
    let host = &f[at("hostname")..=at("agent_version")];
    super::PROCESS_EVENT_FIELDS
        .iter()
        .chain(process)
        .chain(host)
        .copied()
        .collect()
}
