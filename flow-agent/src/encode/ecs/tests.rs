use std::sync::Arc;

use serde_json::{json, Value};

use super::EcsEncoder;
use crate::encode::{fixtures::*, Encoder};
use crate::event::{Event, FlowAction, FlowEvent, ProcessIdentity};

/// The document of any event.
fn encode_event(ev: Event) -> Value {
    let mut out = Vec::new();
    assert!(EcsEncoder::default().encode(&ev, &mut out));
    assert!(!out.contains(&b'\n'), "one line");
    serde_json::from_slice(&out).unwrap()
}

fn encode(ev: &FlowEvent) -> Value {
    encode_event(Event::Flow(ev.clone()))
}

#[test]
fn tcp_end_maps_every_field() {
    let doc = encode(&tcp_out_end());
    let want = json!({
        "@timestamp": "2026-11-23T13:05:50.543381Z",
        "ecs": {"version": "9.4.0"},
        "agent": {"type": "flow-agent", "version": env!("CARGO_PKG_VERSION")},
        "event": {
            "kind": "event",
            "category": ["network"],
            "type": ["connection", "end"],
            "action": "disconnect_received",
            "outcome": "success",
            "reason": "fin",
            "module": "flow_agent",
            "dataset": "flow_agent.flow",
            "start": "2026-11-23T13:05:50.542313Z",
            "end": "2026-11-23T13:05:50.543381Z",
            "duration": 1068809
        },
        "source": {"address": "127.0.0.1", "ip": "127.0.0.1", "port": 33596, "domain": "vm", "bytes": 79, "packets": 7},
        "destination": {"address": "127.0.0.1", "ip": "127.0.0.1", "port": 18080, "bytes": 549, "packets": 6},
        "network": {
            "transport": "tcp",
            "type": "ipv4",
            "iana_number": "6",
            "direction": "egress",
            "community_id": "1:Uw3Um7L1M9pG/AWDF7lN/zpVQdk=",
            "bytes": 628,
            "packets": 13
        },
        "process": {
            "pid": 6140,
            "entity_id": "3d1219c7-0000000340ab-000017fc",
            "name": "curl",
            "executable": "/usr/bin/curl",
            "command_line": "curl -s http://127.0.0.1:18080/",
            "args": ["curl", "-s", "http://127.0.0.1:18080/"],
            "args_count": 3,
            "start": "2026-11-23T13:05:50.530921Z",
            "thread": {"id": 6141, "name": "curl"},
            "parent": {"pid": 5769, "executable": "/usr/bin/bash", "name": "bash"}
        },
        "user": {"id": "0", "name": "root"},
        "group": {"id": "0", "name": "root"},
        "host": {"hostname": "vm", "name": "vm", "os": {"type": "linux"}},
        "related": {"ip": ["127.0.0.1"], "hosts": ["vm"], "user": ["root"]},
        "flow_agent": {
            "flow_id": "bf79e3c617f7-1",
            "start_observed": true,
            "network_locality": "internal",
            "conn_state": "SF",
            "history": "ShADdFf",
            "rtt_us": 25,
            "retransmits": 0,
            "interval": {"in_bytes": 549, "out_bytes": 79, "in_pkts": 6, "out_pkts": 7},
            "attribution": "connector",
            "image_deleted": false,
            "command_line_truncated": false,
            "cgroup_id": 1,
            "netns": 4026531833u32
        }
    });
    assert_eq!(doc, want, "{doc:#}");
}

#[test]
fn start_and_update_are_typed_and_named() {
    let out = encode(&tcp_out_start());
    assert_eq!(out["event"]["type"], json!(["connection", "start"]));
    assert_eq!(out["event"]["action"], "connection_attempted");
    assert_eq!(out["event"]["duration"], 0);
    assert!(out["event"].get("outcome").is_none());
    assert!(out["event"].get("end").is_none());
    assert!(out["source"].get("bytes").is_none());
    assert!(out["network"].get("bytes").is_none());

    let inbound = FlowEvent {
        action: FlowAction::Start,
        ..tcp_in_end()
    };
    let doc = encode(&inbound);
    assert_eq!(doc["event"]["action"], "connection_accepted");
    assert_eq!(doc["network"]["direction"], "ingress");
    assert_eq!(
        doc["host"],
        json!({"hostname": "vm", "name": "vm.example.org", "os": {"type": "linux"}})
    );

    let upd = encode(&udp6_update());
    assert_eq!(upd["event"]["type"], json!(["connection", "info"]));
    assert_eq!(upd["event"]["action"], "connection_updated");
    assert_eq!(upd["event"]["duration"], 60_000_100_000u64);
    assert_eq!(
        upd["network"],
        json!({
            "transport": "udp", "type": "ipv6", "iana_number": "17", "direction": "egress",
            "community_id": "1:ZZZ7L1M9pG/AWDF7lN/zpVQdk=", "bytes": 400, "packets": 5
        })
    );
    assert_eq!(upd["source"]["bytes"], 100);
    assert_eq!(upd["destination"]["bytes"], 300);
    assert_eq!(
        upd["related"]["ip"],
        json!(["2001:db8::5", "2001:db8:1::53"])
    );
    // comm without an executable path is both the name and the thread's name.
    assert_eq!(upd["process"]["name"], "resolver");
    assert_eq!(
        upd["process"]["thread"],
        json!({"id": 701, "name": "resolver"})
    );
    assert_eq!(upd["user"], json!({"id": "101"}));
    assert!(upd["related"].get("user").is_none());
}

#[test]
fn inbound_flow_keeps_the_initiator_as_source() {
    let doc = encode(&tcp_in_end());
    assert_eq!(doc["network"]["direction"], "ingress");
    assert_eq!(doc["source"]["port"], 33596);
    assert_eq!(doc["source"]["bytes"], 79);
    assert_eq!(doc["destination"]["port"], 18080);
    assert_eq!(doc["destination"]["bytes"], 549);
    assert_eq!(doc["process"]["name"], "python3.13");
    assert_eq!(doc["process"]["thread"]["name"], "python3");
    assert_eq!(doc["user"], json!({"id": "1000", "name": "alice"}));

    let udp = encode(&udp_in_end());
    assert_eq!(udp["network"]["direction"], "ingress");
    assert_eq!(udp["event"]["reason"], "idle");
    assert_eq!(udp["event"]["outcome"], "success");
    assert!(udp.get("process").is_none());
}

#[test]
fn failed_connects_are_failures() {
    let doc = encode(&tcp_refused_end());
    assert_eq!(doc["event"]["outcome"], "failure");
    assert_eq!(doc["event"]["reason"], "refused");
    assert_eq!(doc["flow_agent"]["conn_state"], "REJ");
}

#[test]
fn unknown_values_are_omitted() {
    let doc = encode(&tcp_in_start_no_process());
    for absent in ["process", "user", "group", "container"] {
        assert!(doc.get(absent).is_none(), "{absent}: {doc}");
    }
    let pre = encode(&tcp_preexisting_end());
    assert!(pre["event"].get("start").is_none());
    assert!(pre["event"].get("duration").is_none());
    assert_eq!(pre["flow_agent"]["start_observed"], false);
    let shut = encode(&tcp_shutdown_end());
    assert_eq!(shut["event"]["reason"], "agent_shutdown");
    assert!(shut["flow_agent"].get("conn_state").is_none());
}

#[test]
fn containers_map_to_container_fields() {
    let ev = FlowEvent {
        process: Some(Arc::new(ProcessIdentity {
            container_id: Some("4f".repeat(32)),
            container_runtime: Some("docker".into()),
            cgroup_path: Some("/system.slice/docker-x.scope".into()),
            systemd_unit: Some("docker-x.scope".into()),
            ..curl()
        })),
        ..tcp_out_start()
    };
    let doc = encode(&ev);
    assert_eq!(
        doc["container"],
        json!({"id": "4f".repeat(32), "runtime": "docker"})
    );
    assert_eq!(doc["flow_agent"]["systemd_unit"], "docker-x.scope");
}

#[test]
fn hostile_strings_survive_as_data() {
    let ev = hostile_start();
    let doc = encode(&ev);
    let p = ev.process.as_deref().unwrap();
    assert_eq!(doc["process"]["name"], HOSTILE);
    assert_eq!(doc["process"]["thread"]["name"], json!(p.comm));
    assert_eq!(doc["process"]["executable"], json!(p.image_path));
    assert_eq!(doc["process"]["command_line"], json!(p.command_line));
    assert_eq!(doc["user"]["name"], json!(p.user));
    assert_eq!(doc["host"]["hostname"], json!(ev.host.hostname));
    // No key was injected.
    let keys: Vec<&String> = doc["process"].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 10, "{keys:?}");
}

#[test]
fn stats_are_a_metric_document() {
    let doc = encode_event(Event::Stats(Box::new(stats())));
    assert_eq!(
        doc,
        json!({
            "@timestamp": "2026-11-23T13:06:00.000001Z",
            "ecs": {"version": "9.4.0"},
            "agent": {"type": "flow-agent", "version": env!("CARGO_PKG_VERSION")},
            "event": {"kind": "metric", "module": "flow_agent", "dataset": "flow_agent.stats", "action": "stats"},
            "host": {"hostname": "vm", "name": "vm"},
            "flow_agent": {"stats": {
                "agent_version": "0.1.0",
                "uptime": 60.5,
                "flows_open": 3,
                "events_total": 42,
                "kernel_losses": {"ring_full": 1, "tcp_table_full": 0, "udp_table_full": 0,
                    "read_failed": 0, "owner_table_full": 0, "tcp_closes_missed": 2,
                    "tcp_detail_lost": 0, "process_ring_full": 0, "dns_ring_full": 0},
                "enrich_losses": {"payload_table_full": 0, "dns_answers_malformed": 0,
                    "dns_answers_unsolicited": 4, "dns_answers_mismatched": 0,
                    "dns_queries_evicted": 0, "dns_events_dropped": 5},
                "sinks": [{"name": "siem", "kind": "syslog", "format": "ecs", "accepted": 40,
                    "sent": 38, "queued": 2, "buffered": 0, "dropped": 0, "reconnects": 0, "errors": 0,
                    "worker_panics": 0}],
                "rate_limit": {"suppressed_process": 480, "suppressed_global": 0, "summaries": 1,
                    "processes_evicted": 0, "processes": 1, "suppressed_open": 0},
                "state_bounds": {"processes_reconciled": 0, "processes_evicted": 0,
                    "cgroup_paths_dropped": 0, "tcp_flows_reconciled": 0, "udp_flows_reconciled": 0,
                    "tcp_flows_refused": 0, "udp_flows_refused": 0},
                "watchdog": {"tcp_silences": 0, "udp_silences": 0, "process_silences": 0,
                    "exec_silences": 0, "self_check_reruns": 0, "self_check_reruns_failed": 0}
            }}
        })
    );
}

#[test]
fn rate_limited_summary_is_a_network_info_event() {
    let doc = encode_event(Event::RateLimited(Box::new(rate_limited())));
    assert_eq!(
        doc["event"],
        json!({"kind": "event", "category": ["network"], "type": ["info"],
            "action": "rate_limited", "module": "flow_agent", "dataset": "flow_agent.rate_limit",
            "start": "2026-11-23T13:05:01.000001Z", "end": "2026-11-23T13:05:02.000001Z"})
    );
    assert_eq!(doc["process"]["pid"], 4242);
    assert_eq!(doc["process"]["entity_id"], "abc-4242");
    assert_eq!(doc["process"]["executable"], "/usr/bin/curl");
    assert_eq!(doc["user"], json!({"id": "1000", "name": "alice"}));
    assert_eq!(doc["related"]["ip"], json!(["10.0.0.1", "10.0.0.2"]));
    let rl = &doc["flow_agent"]["rate_limit"];
    assert_eq!(
        (
            &rl["limiter"],
            &rl["suppressed_flows"],
            &rl["suppressed_tcp"],
            &rl["dest_ports"]
        ),
        (
            &json!("process"),
            &json!(480),
            &json!(470),
            &json!([80, 443])
        )
    );
    assert!(doc.get("network").is_none() && doc.get("source").is_none());
}

#[test]
fn categorization_values_are_ecs_allowed_values() {
    const TYPES: &[&str] = &[
        "access",
        "allowed",
        "connection",
        "denied",
        "end",
        "info",
        "protocol",
        "start",
    ];
    for ev in all_flows() {
        let doc = encode(&ev);
        assert_eq!(doc["event"]["kind"], "event");
        assert_eq!(doc["event"]["category"], json!(["network"]));
        for t in doc["event"]["type"].as_array().unwrap() {
            assert!(TYPES.contains(&t.as_str().unwrap()), "{t}");
        }
        let dir = doc["network"]["direction"].as_str().unwrap();
        assert!(["ingress", "egress"].contains(&dir));
        let outcome = &doc["event"]["outcome"];
        assert!(outcome.is_null() || ["success", "failure"].contains(&outcome.as_str().unwrap()));
    }
}

#[test]
fn dns_query_fills_the_dns_fields() {
    let doc = encode_event(Event::Dns(Box::new(dns_query())));
    assert_eq!(
        doc["event"],
        serde_json::json!({"kind": "event", "category": ["network"], "type": ["protocol"],
            "action": "dns_query", "module": "flow_agent", "dataset": "flow_agent.dns"})
    );
    assert_eq!(
        doc["dns"],
        serde_json::json!({
            "type": "answer", "id": "4660", "response_code": "NOERROR",
            "question": {"name": "www.a.test", "type": "A"},
            "answers": [
                {"name": "www.a.test", "type": "CNAME", "ttl": 30, "data": "cdn.b.test"},
                {"name": "cdn.b.test", "type": "A", "ttl": 20, "data": "10.0.0.1"}
            ],
            "resolved_ip": ["10.0.0.1"]
        })
    );
    assert_eq!(doc["source"]["ip"], "10.0.0.5");
    assert_eq!(doc["destination"]["port"], 53);
    assert_eq!(doc["network"]["protocol"], "dns");
    assert_eq!(doc["process"]["pid"], 4242);
    assert_eq!(doc["process"]["executable"], "/usr/bin/curl");
    assert_eq!(doc["related"]["hosts"], serde_json::json!(["www.a.test"]));
    assert_eq!(doc["flow_agent"]["flow_id"], "bf79e3c617f7-9");
}

#[test]
fn ends_are_named_this_host_and_the_resolved_remote() {
    let out = encode(&named(tcp_out_end()));
    assert_eq!(out["source"]["domain"], "vm");
    assert_eq!(out["destination"]["domain"], "www.a.test");
    assert_eq!(out["related"]["hosts"], json!(["vm", "www.a.test"]));
    // Inbound: the peer initiated, so it is the source; this host's fqdn names its side.
    let inbound = encode(&named(tcp_in_end()));
    assert_eq!(inbound["source"]["domain"], "www.a.test");
    assert_eq!(inbound["destination"]["domain"], "vm.example.org");
    assert_eq!(
        inbound["related"]["hosts"],
        json!(["www.a.test", "vm.example.org"])
    );
    // The fields go where ECS's object order has them in the writer: after the port.
    let mut raw = Vec::new();
    assert!(EcsEncoder::default().encode(&Event::Flow(named(tcp_out_end())), &mut raw));
    let raw = String::from_utf8(raw).unwrap();
    assert!(
        raw.contains(r#""port":18080,"domain":"www.a.test","bytes":549"#),
        "{raw}"
    );
    assert!(
        raw.contains(
            r#""related":{"ip":["127.0.0.1"],"hosts":["vm","www.a.test"],"user":["root"]}"#
        ),
        "{raw}"
    );
}

#[test]
fn tls_facts_have_their_ecs_fields_and_tcp_detail_its_custom_ones() {
    use crate::event::{AppInfo, AppProtocolSource, TlsInfo};
    let mut ev = tcp_out_end();
    ev.app = Some(Arc::new(AppInfo {
        protocol: Some(("tls", AppProtocolSource::Payload)),
        tls: Some(TlsInfo {
            version: Some("TLS 1.3".into()),
            cipher: Some(0x1301),
            server_name: Some("www.a.test".into()),
            client_ciphers: vec![0x1301, 0xc02f, 0xabcd],
            ja3: Some("j3".into()),
            ..TlsInfo::default()
        }),
        ..AppInfo::default()
    }));
    let doc = encode(&ev);
    assert_eq!(
        doc["tls"],
        json!({
            "version": "1.3",
            "version_protocol": "tls",
            "cipher": "TLS_AES_128_GCM_SHA256",
            "client": {
                "server_name": "www.a.test",
                "supported_ciphers": [
                    "TLS_AES_128_GCM_SHA256",
                    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                    "0xabcd"
                ],
                "ja3": "j3"
            }
        })
    );
    // The native TCP detail ECS has no field for, under the native names.
    ev.tcp_flags = Some(crate::event::TcpFlags {
        orig: 0x02 | 0x10 | 0x01,
        resp: 0x12,
    });
    ev.counters.as_mut().unwrap().out_ip_bytes = Some(196);
    ev.counters.as_mut().unwrap().in_ip_bytes = Some(444);
    ev.orig_first_byte = Some(t("2026-11-23T13:05:50.100000Z"));
    ev.resp_first_byte = Some(t("2026-11-23T13:05:50.250000Z"));
    let doc = encode(&ev);
    let mut out = Vec::new();
    assert!(
        crate::encode::native::NativeEncoder::default().encode(&Event::Flow(ev.clone()), &mut out)
    );
    let native: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["flow_agent"]["orig_ip_bytes"], 196);
    assert_eq!(doc["flow_agent"]["time_to_first_byte"], 0.15);
    for k in [
        "tcp_flags",
        "orig_tcp_flags",
        "resp_tcp_flags",
        "orig_ip_bytes",
        "resp_ip_bytes",
        "orig_first_byte_time",
        "resp_first_byte_time",
        "time_to_first_byte",
    ] {
        assert_eq!(doc["flow_agent"][k], native[k], "{k}");
    }
}

#[test]
fn process_events_are_process_documents_joined_by_entity_id() {
    let start = encode_event(Event::Process(Box::new(process_start())));
    assert_eq!(start["event"]["category"], serde_json::json!(["process"]));
    assert_eq!(start["event"]["type"], serde_json::json!(["start"]));
    assert_eq!(start["event"]["action"], "process_start");
    let flow = encode(&tcp_out_start());
    assert_eq!(start["process"]["entity_id"], flow["process"]["entity_id"]);
    assert!(start["process"].get("exit_code").is_none());
    assert!(start.get("network").is_none() && start.get("source").is_none());
    let end = encode_event(Event::Process(Box::new(process_end())));
    assert_eq!(end["event"]["type"], serde_json::json!(["end"]));
    assert_eq!(end["process"]["exit_code"], 137);
    assert_eq!(end["flow_agent"]["exit_signal"], 9);
    assert_eq!(end["event"]["duration"], 214_950_000);
}
