use std::sync::Arc;

use serde_json::{json, Value};

use super::{vocabulary::tcp_flags, OcsfEncoder};
use crate::encode::{fixtures::*, Encoder};
use crate::event::{DnsEvent, Event, FlowEvent, Limiter, SuppressedEvent};

fn encode_event(ev: Event) -> Vec<u8> {
    let mut out = Vec::new();
    assert!(OcsfEncoder::default().encode(&ev, &mut out));
    out
}

fn encode(ev: &FlowEvent) -> Value {
    let out = encode_event(Event::Flow(ev.clone()));
    assert!(!out.contains(&b'\n'), "one line");
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn tcp_end_maps_every_field() {
    let doc = encode(&tcp_out_end());
    let metadata = json!({
        "version": "1.8.0",
        "product": {"name": "flow-agent", "vendor_name": "flow-agent", "version": env!("CARGO_PKG_VERSION")},
        "profiles": ["host"],
        "correlation_uid": "bf79e3c617f7-1",
        "original_time": "2026-11-23T13:05:50.543381Z",
        "log_name": "flows"
    });
    let connection_info = json!({
        "uid": "bf79e3c617f7-1",
        "community_uid": "1:Uw3Um7L1M9pG/AWDF7lN/zpVQdk=",
        "direction_id": 4,
        "direction": "Local",
        "boundary_id": 1,
        "boundary": "Localhost",
        "protocol_num": 6,
        "protocol_name": "tcp",
        "protocol_ver_id": 4,
        "protocol_ver": "Internet Protocol version 4 (IPv4)",
        "tcp_flags": 0x13,
        "flag_history": "ShADdFf"
    });
    let actor = json!({
        "process": {
            "pid": 6140,
            "ptid": 6141,
            "uid": "3d1219c7-0000000340ab-000017fc",
            "name": "curl",
            "cmd_line": "curl -s http://127.0.0.1:18080/",
            "created_time": 1795439150530i64,
            "file": {"name": "curl", "path": "/usr/bin/curl", "type_id": 1, "type": "Regular File", "is_deleted": false},
            "user": {"uid": "0", "name": "root"},
            "parent_process": {"pid": 5769, "file": {"name": "bash", "path": "/usr/bin/bash", "type_id": 1, "type": "Regular File"}}
        },
        "user": {"uid": "0", "name": "root"}
    });
    let observables = json!([
        {"name": "src_endpoint.ip", "type_id": 2, "type": "IP Address", "value": "127.0.0.1"},
        {"name": "dst_endpoint.ip", "type_id": 2, "type": "IP Address", "value": "127.0.0.1"},
        {"name": "device.hostname", "type_id": 1, "type": "Hostname", "value": "vm"},
        {"name": "actor.process.name", "type_id": 9, "type": "Process Name", "value": "curl"},
        {"name": "actor.user.name", "type_id": 4, "type": "User Name", "value": "root"}
    ]);
    let unmapped = json!({
        "rtt_us": 25,
        "retransmits": 0,
        "network_locality": "internal",
        "attribution": "connector",
        "command_line_truncated": false,
        "gid": 0,
        "group": "root",
        "cgroup_id": 1,
        "netns": 4026531833u32
    });
    let want = json!({
        "activity_id": 2,
        "activity_name": "Close",
        "category_uid": 4,
        "category_name": "Network Activity",
        "class_uid": 4001,
        "class_name": "Network Activity",
        "type_uid": 400102,
        "type_name": "Network Activity: Close",
        "severity_id": 1,
        "severity": "Informational",
        "status_id": 1,
        "status": "Success",
        "status_code": "SF",
        "status_detail": "fin",
        "time": 1795439150543i64,
        "timezone_offset": 0,
        "start_time": 1795439150542i64,
        "end_time": 1795439150543i64,
        "duration": 1,
        "message": "Close tcp 127.0.0.1:33596 -> 127.0.0.1:18080",
        "metadata": metadata,
        "src_endpoint": {"ip": "127.0.0.1", "port": 33596, "hostname": "vm"},
        "dst_endpoint": {"ip": "127.0.0.1", "port": 18080},
        "connection_info": connection_info,
        "traffic": {"bytes": 628, "bytes_in": 549, "bytes_out": 79, "packets": 13, "packets_in": 6, "packets_out": 7},
        "cumulative_traffic": {"bytes": 628, "bytes_in": 549, "bytes_out": 79, "packets": 13, "packets_in": 6, "packets_out": 7},
        "is_src_dst_assignment_known": true,
        "observation_point_id": 1,
        "observation_point": "Source",
        "actor": actor,
        "device": {"hostname": "vm", "name": "vm", "type_id": 0, "type": "Unknown",
            "os": {"name": "Linux", "type_id": 200, "type": "Linux"}},
        "observables": observables,
        "unmapped": unmapped
    });
    assert_eq!(doc, want, "{doc:#}");
}

#[test]
fn activities_follow_the_flow_lifecycle() {
    let cases: [(FlowEvent, u64, &str); 7] = [
        (tcp_out_start(), 1, "Open"),
        (udp6_update(), 6, "Traffic"),
        (tcp_out_end(), 2, "Close"),
        (tcp_preexisting_end(), 3, "Reset"),
        (
            FlowEvent {
                conn_state: Some("S0"),
                end_reason: Some("timeout"),
                history: Some("S".into()),
                ..tcp_refused_end()
            },
            4,
            "Fail",
        ),
        (tcp_refused_end(), 5, "Refuse"),
        (udp_in_end(), 2, "Close"),
    ];
    for (ev, id, caption) in cases {
        let doc = encode(&ev);
        assert_eq!(doc["activity_id"], id, "{doc}");
        assert_eq!(doc["activity_name"], caption);
        assert_eq!(doc["type_uid"], 400100 + id);
        assert_eq!(doc["type_name"], format!("Network Activity: {caption}"));
    }
    let failed = encode(&tcp_refused_end());
    assert_eq!(
        (failed["status_id"].as_u64(), failed["status"].as_str()),
        (Some(2), Some("Failure"))
    );
    assert_eq!(failed["connection_info"]["tcp_flags"], 0x06);
    // Starts and updates carry no status: a failed connect's start looks like any other.
    let start = encode(&tcp_out_start());
    for absent in [
        "status_id",
        "status",
        "status_code",
        "status_detail",
        "end_time",
        "traffic",
    ] {
        assert!(start.get(absent).is_none(), "{absent}");
    }
    assert_eq!(start["duration"], 0);
}

#[test]
fn direction_is_relative_to_the_local_networks() {
    let upd = encode(&udp6_update());
    let ci = &upd["connection_info"];
    assert_eq!(
        (ci["direction_id"].as_u64(), ci["direction"].as_str()),
        (Some(2), Some("Outbound"))
    );
    assert_eq!(
        (ci["boundary_id"].as_u64(), ci["boundary"].as_str()),
        (Some(3), Some("External"))
    );
    assert_eq!(ci["protocol_ver_id"], 6);
    assert_eq!(
        (ci["protocol_num"].as_u64(), ci["protocol_name"].as_str()),
        (Some(17), Some("udp"))
    );
    assert!(ci.get("tcp_flags").is_none());
    // Interval since the last event vs. totals since the start.
    assert_eq!(
        upd["traffic"],
        json!({"bytes": 250, "bytes_in": 200, "bytes_out": 50, "packets": 3, "packets_in": 2, "packets_out": 1})
    );
    assert_eq!(
        upd["cumulative_traffic"],
        json!({"bytes": 400, "bytes_in": 300, "bytes_out": 100, "packets": 5, "packets_in": 3, "packets_out": 2})
    );

    let lateral = encode(&udp_in_end());
    assert_eq!(lateral["connection_info"]["direction_id"], 3);
    assert_eq!(lateral["connection_info"]["boundary_id"], 2);
    // This host answered: it is the destination, and in/out follow src/dst, not the host.
    assert_eq!(lateral["observation_point_id"], 2);
    assert_eq!(lateral["observation_point"], "Destination");
    assert_eq!(
        lateral["dst_endpoint"],
        json!({"ip": "10.0.0.5", "port": 9999, "hostname": "vm"})
    );
    assert_eq!(
        lateral["src_endpoint"],
        json!({"ip": "10.0.0.9", "port": 5353})
    );
    assert_eq!(lateral["traffic"]["bytes_out"], 12);
    assert_eq!(lateral["traffic"]["bytes_in"], 0);

    let inbound = encode(&tcp_in_start_no_process());
    assert_eq!(inbound["connection_info"]["direction_id"], 1);
    assert_eq!(inbound["connection_info"]["direction"], "Inbound");
}

#[test]
fn inbound_server_side_counts_from_the_initiator() {
    let doc = encode(&tcp_in_end());
    assert_eq!(doc["traffic"]["bytes_out"], 79);
    assert_eq!(doc["traffic"]["bytes_in"], 549);
    assert_eq!(doc["traffic"]["packets_out"], 7);
    assert_eq!(doc["observation_point_id"], 2);
    assert_eq!(doc["device"]["hostname"], "vm.example.org");
    assert_eq!(doc["actor"]["process"]["name"], "python3.13");
    assert_eq!(
        doc["actor"]["user"],
        json!({"uid": "1000", "name": "alice"})
    );
}

#[test]
fn unknown_values_are_omitted() {
    let doc = encode(&tcp_in_start_no_process());
    assert!(doc.get("actor").is_none());
    assert_eq!(doc["observables"].as_array().unwrap().len(), 3);
    let pre = encode(&tcp_preexisting_end());
    assert_eq!(pre["is_src_dst_assignment_known"], false);
    assert!(pre.get("start_time").is_none());
    assert!(pre.get("duration").is_none());
    let mut no_cmd = tcp_out_start();
    Arc::make_mut(no_cmd.process.as_mut().unwrap()).command_line = None;
    assert_eq!(encode(&no_cmd)["actor"]["process"]["cmd_line"], "");
}

#[test]
fn hostile_strings_survive_as_data() {
    let ev = hostile_start();
    let doc = encode(&ev);
    let p = &doc["actor"]["process"];
    let process = ev.process.as_deref().unwrap();
    assert_eq!(p["name"], HOSTILE);
    assert_eq!(p["cmd_line"], json!(process.command_line));
    assert_eq!(p["file"]["path"], json!(process.image_path));
    assert_eq!(p["file"]["name"], HOSTILE);
    assert_eq!(doc["device"]["name"], json!(ev.host.hostname));
}

#[test]
fn tcp_flags_union_the_history_letters() {
    assert_eq!(tcp_flags("S"), 0x02);
    assert_eq!(tcp_flags("Sr"), 0x06);
    assert_eq!(tcp_flags("ShA"), 0x12);
    assert_eq!(tcp_flags("ShADdFf"), 0x13);
    assert_eq!(tcp_flags("ShADR"), 0x16);
    assert_eq!(tcp_flags(""), 0);
}

#[test]
fn stats_have_no_ocsf_record() {
    let mut out = Vec::new();
    assert!(!OcsfEncoder::default().encode(&Event::Stats(Box::new(stats())), &mut out));
    assert!(out.is_empty());
}

fn encode_summary(s: &SuppressedEvent) -> Value {
    let out = encode_event(Event::RateLimited(Box::new(s.clone())));
    assert!(!out.contains(&b'\n'), "one line");
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn rate_limited_summary_is_network_activity_other() {
    let doc = encode_summary(&rate_limited());
    let want = json!({
        "activity_id": 99,
        "activity_name": "Other",
        "category_uid": 4,
        "category_name": "Network Activity",
        "class_uid": 4001,
        "class_name": "Network Activity",
        "type_uid": 400199,
        "type_name": "Network Activity: Other",
        "severity_id": 1,
        "severity": "Informational",
        "time": 1795439160000i64,
        "timezone_offset": 0,
        "count": 480,
        "start_time": 1795439101000i64,
        "end_time": 1795439102000i64,
        "message": "Rate limited: 480 flows of pid 4242 (curl) not reported (process limit: 10/s, burst 20)",
        "metadata": {
            "version": "1.8.0",
            "product": {"name": "flow-agent", "vendor_name": "flow-agent", "version": env!("CARGO_PKG_VERSION")},
            "profiles": ["host"],
            "original_time": "2026-11-23T13:06:00.000001Z",
            "log_name": "rate_limit"
        },
        "src_endpoint": {"hostname": "vm"},
        "actor": {
            "process": {
                "pid": 4242,
                "uid": "abc-4242",
                "name": "curl",
                "cmd_line": "",
                "file": {"name": "curl", "path": "/usr/bin/curl", "type_id": 1, "type": "Regular File"},
                "user": {"uid": "1000", "name": "alice"}
            },
            "user": {"uid": "1000", "name": "alice"}
        },
        "device": {"hostname": "vm", "name": "vm", "type_id": 0, "type": "Unknown",
            "os": {"name": "Linux", "type_id": 200, "type": "Linux"}},
        "observables": [
            {"name": "device.hostname", "type_id": 1, "type": "Hostname", "value": "vm"},
            {"name": "actor.process.name", "type_id": 9, "type": "Process Name", "value": "curl"},
            {"name": "actor.user.name", "type_id": 4, "type": "User Name", "value": "alice"}
        ],
        "unmapped": {
            "event_action": "rate_limited",
            "limiter": "process",
            "rate": 10.0,
            "burst": 20,
            "suppressed_flows": 480,
            "suppressed_tcp": 470,
            "suppressed_udp": 10,
            "suppressed_ended": 470,
            "suppressed_in_bytes": 1000,
            "suppressed_out_bytes": 2000,
            "suppressed_packets": 3000,
            "remote_ips": ["10.0.0.1", "10.0.0.2"],
            "remote_ips_truncated": false,
            "dest_ports": [80, 443],
            "dest_ports_truncated": false,
            // A known process always has a gid in the typed model (the flat fixture had a
            // uid without one, which no real event had).
            "gid": 0
        }
    });
    assert_eq!(doc, want);
}

#[test]
fn rate_limited_summary_of_ends_only_and_no_process() {
    let mut s = rate_limited();
    s.limiter = Limiter::Global;
    s.suppressed_tcp = 0;
    s.suppressed_udp = 0;
    s.first_suppressed = None;
    s.last_suppressed = None;
    s.remote_ips.clear();
    s.dest_ports.clear();
    s.process = None;
    let doc = encode_summary(&s);
    assert_eq!(doc["count"], 0);
    assert!(doc.get("start_time").is_none() && doc.get("end_time").is_none());
    assert!(doc.get("actor").is_none());
    assert_eq!(doc["observables"].as_array().unwrap().len(), 1);
    assert_eq!(
        doc["message"],
        "Rate limited: 0 flows of processes not named not reported (global limit: 10/s, burst 20)"
    );
    assert_eq!(doc["unmapped"]["suppressed_ended"], 470);
}

#[test]
fn dns_query_is_dns_activity_response() {
    let encode_dns = |d: &DnsEvent| -> Value {
        let out = encode_event(Event::Dns(Box::new(d.clone())));
        assert!(!out.contains(&b'\n'), "one line");
        serde_json::from_slice(&out).unwrap()
    };
    let doc = encode_dns(&dns_query());
    assert_eq!(doc["class_uid"], 4003);
    assert_eq!(doc["activity_id"], 2);
    assert_eq!(doc["type_uid"], 400302);
    assert_eq!(doc["category_uid"], 4);
    assert_eq!(doc["rcode_id"], 0);
    assert_eq!(doc["rcode"], "NoError");
    assert_eq!(
        doc["query"],
        json!({"hostname": "www.a.test", "type": "A", "class": "IN", "packet_uid": 4660})
    );
    assert_eq!(
        doc["answers"],
        json!([
            {"rdata": "cdn.b.test", "type": "CNAME", "ttl": 30, "class": "IN", "packet_uid": 4660},
            {"rdata": "10.0.0.1", "type": "A", "ttl": 20, "class": "IN", "packet_uid": 4660}
        ])
    );
    assert_eq!(
        doc["src_endpoint"],
        json!({"ip": "10.0.0.5", "port": 40000})
    );
    assert_eq!(doc["dst_endpoint"], json!({"ip": "10.0.0.53", "port": 53}));
    assert_eq!(doc["connection_info"]["uid"], "bf79e3c617f7-9");
    assert_eq!(doc["connection_info"]["direction"], "Lateral");
    assert_eq!(doc["actor"]["process"]["pid"], 4242);
    assert_eq!(doc["actor"]["process"]["file"]["path"], "/usr/bin/curl");
    assert_eq!(doc["metadata"]["profiles"], json!(["host"]));
    // The answer's arrival, the event's time.
    assert_eq!(doc["response_time"], doc["time"]);
    assert!(doc["response_time"].is_i64());
    let mut dso = dns_query();
    dso.response_code = 11;
    let doc = encode_dns(&dso);
    assert_eq!(
        (doc["rcode_id"].clone(), doc["rcode"].clone()),
        (json!(11), json!("DSOTYPENI"))
    );
    dso.response_code = 23;
    assert_eq!(encode_dns(&dso)["rcode"], "BADCOOKIE");
    // Unassigned: Other, with the native mnemonic.
    dso.response_code = 12;
    assert_eq!(encode_dns(&dso)["rcode_id"], 99);
    let mut nx = dns_query();
    nx.response_code = 3;
    let doc = encode_dns(&nx);
    assert_eq!(
        (
            doc["rcode_id"].clone(),
            doc["rcode"].clone(),
            doc["status"].clone()
        ),
        (json!(3), json!("NXDomain"), json!("Failure"))
    );
}

#[test]
fn endpoints_carry_names_and_domains() {
    let out = encode(&named(tcp_out_end()));
    assert_eq!(
        out["dst_endpoint"],
        json!({"ip": "127.0.0.1", "port": 18080, "hostname": "www.a.test", "domain": "a.test"})
    );
    assert_eq!(
        out["src_endpoint"],
        json!({"ip": "127.0.0.1", "port": 33596, "hostname": "vm"})
    );
    assert!(out["observables"].as_array().unwrap().contains(
        &json!({"name": "dst_endpoint.hostname", "type_id": 1, "type": "Hostname", "value": "www.a.test"})
    ));
    let inbound = encode(&named(tcp_in_end()));
    assert_eq!(inbound["src_endpoint"]["hostname"], "www.a.test");
    assert_eq!(
        inbound["dst_endpoint"],
        json!({"ip": "127.0.0.1", "port": 18080, "hostname": "vm.example.org", "domain": "example.org"})
    );
    assert!(inbound["observables"].as_array().unwrap().contains(
        &json!({"name": "src_endpoint.hostname", "type_id": 1, "type": "Hostname", "value": "www.a.test"})
    ));
}

#[test]
fn app_protocol_and_ja4_fingerprints_have_ocsf_18_attributes() {
    use crate::event::{AppInfo, AppProtocolSource, TlsInfo};
    let mut ev = tcp_out_end();
    ev.app = Some(Arc::new(AppInfo {
        protocol: Some(("tls", AppProtocolSource::Payload)),
        tls: Some(TlsInfo {
            version: Some("TLS 1.3".into()),
            client_ciphers: vec![0x1301, 0xc02f, 0xabcd],
            ja3: Some("j3".into()),
            ja4: Some("t13d1516h2_8daaf6152771_e5627efa2ab1".into()),
            ja4s: Some("t130200_1301_234ea6891581".into()),
            ..TlsInfo::default()
        }),
        ..AppInfo::default()
    }));
    let doc = encode(&ev);
    assert_eq!(doc["app_protocol_name"], "tls");
    assert!(doc.get("app_name").is_none());
    assert_eq!(
        doc["ja4_fingerprint_list"],
        json!([
            {"type_id": 1, "type": "JA4", "value": "t13d1516h2_8daaf6152771_e5627efa2ab1",
             "section_a": "t13d1516h2", "section_b": "8daaf6152771", "section_c": "e5627efa2ab1"},
            {"type_id": 2, "type": "JA4Server", "value": "t130200_1301_234ea6891581",
             "section_a": "t130200", "section_b": "1301", "section_c": "234ea6891581"}
        ])
    );
    assert!(doc["unmapped"].get("ja4").is_none());
    assert!(doc["unmapped"].get("ja4s").is_none());
    // The offered cipher suites by IANA name; one without a name in hex.
    assert_eq!(
        doc["tls"]["client_ciphers"],
        json!([
            "TLS_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "0xabcd"
        ])
    );
    assert_eq!(doc["tls"]["ja3_hash"]["value"], "j3");
}

#[test]
fn process_events_are_process_activity_launch_and_terminate() {
    let start: Value =
        serde_json::from_slice(&encode_event(Event::Process(Box::new(process_start())))).unwrap();
    assert_eq!(
        (start["class_uid"].clone(), start["activity_id"].clone()),
        (1007.into(), 1.into())
    );
    assert_eq!(start["type_uid"], 100701);
    assert_eq!(start["category_uid"], 1);
    let flow = encode(&tcp_out_start());
    assert_eq!(start["process"]["uid"], flow["actor"]["process"]["uid"]);
    assert_eq!(
        start["actor"]["process"]["uid"],
        flow["actor"]["process"]["uid"]
    );
    assert!(start.get("exit_code").is_none());
    let end: Value =
        serde_json::from_slice(&encode_event(Event::Process(Box::new(process_end())))).unwrap();
    assert_eq!(
        (end["activity_id"].clone(), end["activity_name"].clone()),
        (2.into(), "Terminate".into())
    );
    assert_eq!(end["exit_code"], 137);
    assert_eq!(end["unmapped"]["exit_signal"], 9);
    assert_eq!(end["duration"], 215);
}
