use serde_json::{json, Value};

use super::ZeekEncoder;
use crate::encode::{fixtures::*, Encoder};
use crate::event::{Event, FlowAction, FlowEvent};

fn encode(enc: &mut ZeekEncoder, ev: &FlowEvent) -> Option<Value> {
    let mut out = Vec::new();
    let written = enc.encode(&Event::Flow(ev.clone()), &mut out);
    assert_eq!(written, !out.is_empty());
    written.then(|| serde_json::from_slice(&out).unwrap())
}

fn end(ev: &FlowEvent) -> Value {
    encode(&mut ZeekEncoder::new(), ev).expect("ends are written")
}

#[test]
fn tcp_end_is_one_conn_log_record() {
    let rec = end(&tcp_out_end());
    let want = json!({
        "ts": 1795439150.542313,
        "uid": "CO0w3ozy3iP1F6sMG1",
        "id.orig_h": "127.0.0.1",
        "id.orig_p": 33596,
        "id.resp_h": "127.0.0.1",
        "id.resp_p": 18080,
        "proto": "tcp",
        "duration": 0.001068809,
        "orig_bytes": 79,
        "resp_bytes": 549,
        "conn_state": "SF",
        "local_orig": true,
        "local_resp": true,
        "missed_bytes": 0,
        "history": "ShADdFf",
        "orig_pkts": 7,
        "resp_pkts": 6,
        "ip_proto": 6,
        "community_id": "1:Uw3Um7L1M9pG/AWDF7lN/zpVQdk="
    });
    assert_eq!(rec, want, "{rec:#}");
}

#[test]
fn field_order_is_conn_logs() {
    let mut out = Vec::new();
    assert!(ZeekEncoder::new().encode(&Event::Flow(udp_in_end()), &mut out));
    let text = String::from_utf8(out).unwrap();
    let order = [
        "ts",
        "uid",
        "id.orig_h",
        "id.orig_p",
        "id.resp_h",
        "id.resp_p",
        "proto",
        "duration",
        "orig_bytes",
        "resp_bytes",
        "conn_state",
        "local_orig",
        "local_resp",
        "missed_bytes",
        "history",
        "orig_pkts",
        "orig_ip_bytes",
        "resp_pkts",
        "resp_ip_bytes",
        "ip_proto",
        "community_id",
    ];
    let at: Vec<usize> = order
        .iter()
        .map(|k| {
            text.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k}: {text}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[test]
fn only_ends_are_written() {
    let mut enc = ZeekEncoder::new();
    assert_eq!(encode(&mut enc, &tcp_out_start()), None);
    assert_eq!(encode(&mut enc, &udp6_update()), None);
    assert!(encode(&mut enc, &tcp_out_end()).is_some());
    let mut out = Vec::new();
    assert!(!enc.encode(&Event::Stats(Box::new(stats())), &mut out));
    // conn.log records connections; a summary of suppressed ones is none.
    assert!(!enc.encode(&Event::RateLimited(Box::new(rate_limited())), &mut out));
    // dns.log is another log.
    assert!(!enc.encode(&Event::Dns(Box::new(dns_query())), &mut out));
    assert!(out.is_empty());
}

#[test]
fn inbound_flow_keeps_the_originator() {
    let rec = end(&tcp_in_end());
    assert_eq!(rec["id.orig_p"], 33596);
    assert_eq!(rec["id.resp_p"], 18080);
    assert_eq!(rec["orig_bytes"], 79);
    assert_eq!(rec["resp_bytes"], 549);
    assert_eq!(rec["history"], "ShAdDfF");
    assert_eq!(rec["ts"], 1795439150.54241);
}

#[test]
fn udp_state_and_history_come_from_the_counters() {
    let rec = end(&udp_in_end());
    assert_eq!(
        rec,
        json!({
            "ts": 1795439160.0, "uid": "C2U60GEP5fD1M5BJ53",
            "id.orig_h": "10.0.0.9", "id.orig_p": 5353, "id.resp_h": "10.0.0.5", "id.resp_p": 9999,
            "proto": "udp", "duration": 0.0, "orig_bytes": 12, "resp_bytes": 0,
            "conn_state": "S0", "local_orig": true, "local_resp": true, "missed_bytes": 0,
            "history": "D", "orig_pkts": 1, "orig_ip_bytes": 40, "resp_pkts": 0, "resp_ip_bytes": 0,
            "ip_proto": 17, "community_id": "1:AAA7L1M9pG/AWDF7lN/zpVQdk="
        })
    );
    let both = FlowEvent {
        action: FlowAction::End,
        end_reason: Some("socket_closed"),
        ..udp6_update()
    };
    let rec = end(&both);
    assert_eq!(
        (rec["conn_state"].as_str(), rec["history"].as_str()),
        (Some("SF"), Some("Dd"))
    );
    // Global addresses are not in the local networks.
    assert_eq!(
        (rec["local_orig"].as_bool(), rec["local_resp"].as_bool()),
        (Some(false), Some(false))
    );
    assert_eq!(rec["orig_ip_bytes"], 196);
    let evicted = FlowEvent {
        end_reason: Some("evicted"),
        counters: None,
        ..both
    };
    let rec = end(&evicted);
    for absent in [
        "conn_state",
        "history",
        "orig_bytes",
        "orig_pkts",
        "resp_ip_bytes",
    ] {
        assert!(rec.get(absent).is_none(), "{absent}: {rec}");
    }
    assert_eq!(rec["missed_bytes"], 0);
}

#[test]
fn local_orig_and_resp_follow_the_local_networks() {
    let rec = end(&tcp_in_start_no_process_end());
    // 203.0.113.7 (peer) and 192.0.2.10 (this host) are outside the local networks.
    assert_eq!(
        (rec["local_orig"].as_bool(), rec["local_resp"].as_bool()),
        (Some(false), Some(false))
    );
    // This host's address in `[enrich] local_networks` (enrichment decided it).
    let ev = tcp_in_start_no_process_end();
    let private_host = FlowEvent {
        local: ("192.168.1.10".parse().unwrap(), ev.local.1),
        local_locality: crate::event::Locality::Internal,
        ..ev
    };
    let rec = end(&private_host);
    assert_eq!(
        (rec["local_orig"].as_bool(), rec["local_resp"].as_bool()),
        (Some(false), Some(true))
    );
}

fn tcp_in_start_no_process_end() -> FlowEvent {
    FlowEvent {
        action: FlowAction::End,
        end_reason: Some("fin"),
        ..tcp_in_start_no_process()
    }
}

#[test]
fn unobserved_starts_use_the_first_report() {
    let mut enc = ZeekEncoder::new();
    let start = FlowEvent {
        action: FlowAction::Start,
        time: t("2026-11-23T13:00:00.250000Z"),
        ..tcp_preexisting_end()
    };
    assert_eq!(encode(&mut enc, &start), None);
    let rec = encode(&mut enc, &tcp_preexisting_end()).unwrap();
    assert_eq!(rec["ts"], 1795438800.25);
    assert!(rec.get("duration").is_none());
    assert_eq!(rec["conn_state"], "OTH");
    assert!(enc.first_seen.is_empty(), "forgotten at the end");
    // Without its start, the end's own time.
    let rec = end(&tcp_preexisting_end());
    assert_eq!(rec["ts"], 1795439150.543381);
}

#[test]
fn shutdown_ends_have_no_state() {
    let rec = end(&tcp_shutdown_end());
    assert!(rec.get("conn_state").is_none());
    assert!(rec.get("history").is_none());
    assert_eq!(rec["orig_bytes"], 79);
}

#[test]
fn uid_is_zeek_shaped_and_the_same_for_every_event_of_a_flow() {
    use super::ZeekUid;
    let uid = ZeekUid::of("bf79e3c617f7-1").to_string();
    assert!(uid.starts_with('C') && uid.len() <= 18, "{uid}");
    assert!(uid[1..].bytes().all(|b| b.is_ascii_alphanumeric()), "{uid}");
    assert_eq!(ZeekUid::of("bf79e3c617f7-1").to_string(), uid);
    assert_ne!(ZeekUid::of("bf79e3c617f7-2").to_string(), uid);
    // Zeek's Base62: each part least significant digit first, unpadded.
    assert_eq!(ZeekUid(0, 0).to_string(), "C00");
    assert_eq!(ZeekUid(62 + 1, 61).to_string(), "C11Z");
    assert_eq!(ZeekUid(u64::MAX, u32::MAX).to_string().len(), 18);
    // The record carries it.
    assert_eq!(end(&tcp_out_end())["uid"], uid.as_str());
}
