//! Zeek conn.log against the spec fixture's Conn::Info (base/protocols/conn/main.zeek, with the
//! community-id policy script's `community_id`): the fields in their order with their Zeek
//! types, which are `&optional`, the `conn_state` values and the `history` letters.
use super::fixture;
use super::times::epoch_micros;
use serde_json::Value;
use std::net::IpAddr;

fn type_ok(ty: &str, v: &Value) -> bool {
    match ty {
        "time" => v
            .as_f64()
            .is_some_and(|t| t > 946_684_800.0 && t < 4_102_444_800.0),
        "string" => v.is_string(),
        "addr" => v.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
        "port" => v.as_u64().is_some_and(|p| p <= 65535),
        "transport_proto" => v
            .as_str()
            .is_some_and(|s| fixture::zeek().protos.contains(&s)),
        "interval" => v.as_f64().is_some_and(|d| d >= 0.0),
        "count" => v.is_u64(),
        "bool" => v.is_boolean(),
        "set[string]" => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        _ => false,
    }
}

/// Field names, order (in the record's text `raw`: JSON objects have no order once parsed),
/// types, required fields and allowed values.
pub fn check_record(rec: &Value, raw: &str) -> Vec<String> {
    let mut p = Vec::new();
    let Some(obj) = rec.as_object() else {
        return vec!["not a JSON object".into()];
    };
    let zeek = fixture::zeek();
    for (name, v) in obj {
        let Some(f) = zeek.fields.iter().find(|f| f.name == name) else {
            p.push(format!("{name} is not a conn.log field"));
            continue;
        };
        if !type_ok(f.ty, v) {
            p.push(format!("{name}: {v} is not a Zeek {}", f.ty));
        }
    }
    // Zeek's uid: `C` and base62 digits, at most 18 characters.
    let uid = rec["uid"].as_str().unwrap_or_default();
    if !(uid.starts_with('C')
        && (3..=18).contains(&uid.len())
        && uid.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        p.push(format!("uid {uid:?} is not Zeek-shaped"));
    }
    let order: Vec<&str> = zeek
        .fields
        .iter()
        .filter_map(|f| raw.find(&format!("\"{}\":", f.name)).map(|at| (at, f.name)))
        .collect::<std::collections::BTreeMap<usize, &str>>()
        .into_values()
        .collect();
    let want: Vec<&str> = zeek
        .fields
        .iter()
        .map(|f| f.name)
        .filter(|f| obj.contains_key(*f))
        .collect();
    if order != want {
        p.push(format!(
            "fields in the order {order:?}, conn.log's is {want:?}"
        ));
    }
    for f in zeek.fields.iter().filter(|f| !f.optional) {
        if !obj.contains_key(f.name) {
            p.push(format!("{} (not &optional) missing", f.name));
        }
    }
    if let Some(s) = rec["conn_state"].as_str() {
        if !zeek.conn_states.contains(&s) {
            p.push(format!("conn_state {s} is not a Zeek conn_state"));
        }
    }
    if let Some(h) = rec["history"].as_str() {
        let letter = |c: char| {
            let lower = c.to_ascii_lowercase().to_string();
            zeek.history.contains(&lower.as_str())
        };
        if let Some(c) = h.chars().find(|c| !letter(*c)) {
            p.push(format!("history {h} has {c:?}, not a Zeek history letter"));
        }
    }
    let ip_proto = match rec["proto"].as_str() {
        Some("tcp") => 6,
        Some("udp") => 17,
        _ => 0,
    };
    if rec["ip_proto"] != ip_proto {
        p.push(format!(
            "ip_proto {} for proto {}",
            rec["ip_proto"], rec["proto"]
        ));
    }
    p
}

/// The record says what the native end event says.
pub fn check_values(rec: &Value, native: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let mut same = |field: &str, want: Value| {
        let got = rec.get(field).cloned().unwrap_or(Value::Null);
        if got != want {
            p.push(format!("{field} = {got}, native says {want}"));
        }
    };
    let n = |k: &str| native.get(k).cloned().unwrap_or(Value::Null);
    same(
        "uid",
        native["flow_id"]
            .as_str()
            .map(|id| Value::from(zeek_uid(id)))
            .unwrap_or(Value::Null),
    );
    same("id.orig_h", n("src_ip"));
    same("id.orig_p", n("src_port"));
    same("id.resp_h", n("dest_ip"));
    same("id.resp_p", n("dest_port"));
    same("proto", n("transport_protocol"));
    same("duration", n("duration"));
    same("orig_bytes", n("orig_bytes"));
    same("resp_bytes", n("resp_bytes"));
    same("orig_pkts", n("orig_pkts"));
    same("resp_pkts", n("resp_pkts"));
    same("orig_ip_bytes", n("orig_ip_bytes"));
    same("resp_ip_bytes", n("resp_ip_bytes"));
    same("community_id", n("community_id"));
    same(
        "service",
        match (
            native["app_protocol_source"].as_str(),
            native["application_protocol"].as_str(),
        ) {
            (Some("payload"), Some("tls")) => "ssl".into(),
            (Some("payload"), Some(p)) => p.into(),
            _ => Value::Null,
        },
    );
    same("missed_bytes", 0.into());
    let udp = native["transport_protocol"] == "udp";
    if !udp {
        same("conn_state", n("conn_state"));
        same("history", n("history"));
    } else if let (Some(o), Some(r)) = (native["orig_pkts"].as_u64(), native["resp_pkts"].as_u64())
    {
        let state = match (o > 0, r > 0) {
            (true, true) => "SF",
            (true, false) => "S0",
            (false, true) => "SHR",
            (false, false) => "OTH",
        };
        same("conn_state", state.into());
    }
    // ts: the flow's start (first packet), to the microsecond.
    if let Some(start) = native["start_time"].as_str().and_then(epoch_micros) {
        let ts = rec["ts"].as_f64().unwrap_or(0.0);
        if ((ts * 1e6).round() as i64 - start).abs() > 1 {
            p.push(format!(
                "ts {ts}, native start_time {}",
                native["start_time"]
            ));
        }
    }
    // Zeek's local_orig/local_resp: the peer as network_locality says; loopback is local.
    let peer_local = native["network_locality"] == "internal";
    let (peer_field, host_field) = if native["local_orig"] == true {
        ("local_resp", "local_orig")
    } else {
        ("local_orig", "local_resp")
    };
    if rec[peer_field] != peer_local {
        p.push(format!(
            "{peer_field} {} for a peer that is {}",
            rec[peer_field], native["network_locality"]
        ));
    }
    let loopback = |k: &str| {
        native[k]
            .as_str()
            .and_then(|s| s.parse::<IpAddr>().ok())
            .is_some_and(|a| a.is_loopback())
    };
    if loopback("src_ip") && loopback("dest_ip") && rec[host_field] != true {
        p.push(format!(
            "{host_field} {} for this host's loopback address",
            rec[host_field]
        ));
    }
    p
}

/// The uid the agent derives from a flow id (encode/zeek.rs, `ZeekUid`), written out again
/// here: every event of a flow, in every run, has this one.
pub fn zeek_uid(flow_id: &str) -> String {
    let h = flow_id
        .bytes()
        .fold(0x6c62272e07bb014262b821756295c58du128, |h, b| {
            (h ^ u128::from(b)).wrapping_mul(0x0000000001000000000000000000013b)
        });
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let (hi, lo) = ((h >> 64) as u64, h as u64);
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut out = String::from("C");
    for mut n in [mix(hi ^ lo), u64::from(mix(lo.rotate_left(32) ^ hi) as u32)] {
        loop {
            out.push(digits[(n % 62) as usize] as char);
            n /= 62;
            if n == 0 {
                break;
            }
        }
    }
    out
}
