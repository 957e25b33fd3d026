//! OCSF 1.8.0 Network Activity (class 4001) as far as the `ocsf` format uses it: the
//! attributes of the class, its base event and the objects used, with their OCSF types; the
//! required attributes (base event, class, objects and their `at_least_one` constraints); and
//! the enumerations with their captions.
use super::ecs_spec::at;
use super::times::epoch_micros;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Clone, Copy, Debug)]
enum Ty {
    /// `integer_t`, `long_t`.
    Int,
    /// `timestamp_t`: milliseconds since the epoch.
    Timestamp,
    /// `port_t`: integer 0..=65535.
    Port,
    /// `ip_t`.
    Ip,
    /// `string_t` and its string subtypes (hostname_t, process_name_t, file_path_t, ...).
    Str,
    Bool,
}
use Ty::*;

pub const VERSION: &str = "1.8.0";

/// Attribute paths (arrays of objects flattened under the array's name) and types.
const ATTRIBUTES: &[(&str, Ty)] = &[
    // base_event
    ("activity_id", Int),
    ("activity_name", Str),
    ("category_uid", Int),
    ("category_name", Str),
    ("class_uid", Int),
    ("class_name", Str),
    ("type_uid", Int),
    ("type_name", Str),
    ("severity_id", Int),
    ("severity", Str),
    ("status_id", Int),
    ("status", Str),
    ("status_code", Str),
    ("status_detail", Str),
    ("time", Timestamp),
    ("timezone_offset", Int),
    ("count", Int),
    ("start_time", Timestamp),
    ("end_time", Timestamp),
    ("duration", Int),
    ("message", Str),
    ("metadata.version", Str),
    ("metadata.product.name", Str),
    ("metadata.product.vendor_name", Str),
    ("metadata.product.version", Str),
    ("metadata.correlation_uid", Str),
    ("metadata.original_time", Str),
    ("metadata.log_name", Str),
    ("metadata.profiles", Str),
    ("observables.name", Str),
    ("observables.type_id", Int),
    ("observables.type", Str),
    ("observables.value", Str),
    // network / network_activity
    ("src_endpoint.ip", Ip),
    ("src_endpoint.port", Port),
    ("src_endpoint.hostname", Str),
    ("src_endpoint.domain", Str),
    ("dst_endpoint.ip", Ip),
    ("dst_endpoint.port", Port),
    ("dst_endpoint.hostname", Str),
    ("dst_endpoint.domain", Str),
    ("connection_info.uid", Str),
    ("connection_info.community_uid", Str),
    ("connection_info.direction_id", Int),
    ("connection_info.direction", Str),
    ("connection_info.boundary_id", Int),
    ("connection_info.boundary", Str),
    ("connection_info.protocol_num", Int),
    ("connection_info.protocol_name", Str),
    ("connection_info.protocol_ver_id", Int),
    ("connection_info.protocol_ver", Str),
    ("connection_info.tcp_flags", Int),
    ("connection_info.flag_history", Str),
    ("app_protocol_name", Str),
    ("ja4_fingerprint_list.type_id", Int),
    ("ja4_fingerprint_list.type", Str),
    ("ja4_fingerprint_list.value", Str),
    ("ja4_fingerprint_list.section_a", Str),
    ("ja4_fingerprint_list.section_b", Str),
    ("ja4_fingerprint_list.section_c", Str),
    ("tls.version", Str),
    ("tls.cipher", Str),
    ("tls.sni", Str),
    ("tls.ja3_hash.algorithm_id", Int),
    ("tls.ja3_hash.algorithm", Str),
    ("tls.ja3_hash.value", Str),
    ("tls.ja3s_hash.algorithm_id", Int),
    ("tls.ja3s_hash.algorithm", Str),
    ("tls.ja3s_hash.value", Str),
    ("traffic.bytes", Int),
    ("traffic.bytes_in", Int),
    ("traffic.bytes_out", Int),
    ("traffic.packets", Int),
    ("traffic.packets_in", Int),
    ("traffic.packets_out", Int),
    ("cumulative_traffic.bytes", Int),
    ("cumulative_traffic.bytes_in", Int),
    ("cumulative_traffic.bytes_out", Int),
    ("cumulative_traffic.packets", Int),
    ("cumulative_traffic.packets_in", Int),
    ("cumulative_traffic.packets_out", Int),
    ("is_src_dst_assignment_known", Bool),
    ("observation_point_id", Int),
    ("observation_point", Str),
    // host profile: actor, device
    ("actor.process.pid", Int),
    ("actor.process.ptid", Int),
    ("actor.process.uid", Str),
    ("actor.process.name", Str),
    ("actor.process.cmd_line", Str),
    ("actor.process.created_time", Timestamp),
    ("actor.process.file.name", Str),
    ("actor.process.file.path", Str),
    ("actor.process.file.type_id", Int),
    ("actor.process.file.type", Str),
    ("actor.process.file.is_deleted", Bool),
    ("actor.process.file.hashes.algorithm_id", Int),
    ("actor.process.file.hashes.algorithm", Str),
    ("actor.process.file.hashes.value", Str),
    ("actor.process.user.uid", Str),
    ("actor.process.user.name", Str),
    ("actor.process.parent_process.pid", Int),
    ("actor.process.parent_process.cmd_line", Str),
    ("actor.process.parent_process.file.name", Str),
    ("actor.process.parent_process.file.path", Str),
    ("actor.process.parent_process.file.type_id", Int),
    ("actor.process.parent_process.file.type", Str),
    ("actor.user.uid", Str),
    ("actor.user.name", Str),
    ("device.hostname", Str),
    ("device.name", Str),
    ("device.type_id", Int),
    ("device.type", Str),
];

/// DNS Activity's own attributes (class 4003), besides the Network Activity ones above that it
/// shares; `connection_info`'s boundary, traffic and TLS are not written for it.
const DNS_ATTRIBUTES: &[(&str, Ty)] = &[
    ("query.hostname", Str),
    ("query.type", Str),
    ("query.class", Str),
    ("query.packet_uid", Int),
    ("answers.rdata", Str),
    ("answers.type", Str),
    ("answers.ttl", Int),
    ("answers.class", Str),
    ("answers.packet_uid", Int),
    ("rcode_id", Int),
    ("rcode", Str),
    ("response_time", Timestamp),
];
const DNS_ACTIVITY: Enum = &[
    (0, "Unknown"),
    (1, "Query"),
    (2, "Response"),
    (6, "Traffic"),
    (99, "Other"),
];
const RCODE: Enum = &[
    (0, "NoError"),
    (1, "FormError"),
    (2, "ServError"),
    (3, "NXDomain"),
    (4, "NotImp"),
    (5, "Refused"),
    (6, "YXDomain"),
    (7, "YXRRSet"),
    (8, "NXRRSet"),
    (9, "NotAuth"),
    (10, "NotZone"),
    (11, "DSOTYPENI"),
    (16, "BADSIG_VERS"),
    (17, "BADKEY"),
    (18, "BADTIME"),
    (19, "BADMODE"),
    (20, "BADNAME"),
    (21, "BADALG"),
    (22, "BADTRUNC"),
    (23, "BADCOOKIE"),
    (24, "Unassigned"),
    (25, "Reserved"),
    (99, "Other"),
];

/// Required by the base event and Network Activity.
const REQUIRED: &[&str] = &[
    "activity_id",
    "category_uid",
    "class_uid",
    "metadata.product",
    "metadata.version",
    "severity_id",
    "time",
    "type_uid",
];

type Enum = &'static [(i64, &'static str)];
const ACTIVITY: Enum = &[
    (0, "Unknown"),
    (1, "Open"),
    (2, "Close"),
    (3, "Reset"),
    (4, "Fail"),
    (5, "Refuse"),
    (6, "Traffic"),
    (7, "Listen"),
    (99, "Other"),
];
const SEVERITY: Enum = &[
    (0, "Unknown"),
    (1, "Informational"),
    (2, "Low"),
    (3, "Medium"),
    (4, "High"),
    (5, "Critical"),
    (6, "Fatal"),
    (99, "Other"),
];
const STATUS: Enum = &[
    (0, "Unknown"),
    (1, "Success"),
    (2, "Failure"),
    (99, "Other"),
];
const DIRECTION: Enum = &[
    (0, "Unknown"),
    (1, "Inbound"),
    (2, "Outbound"),
    (3, "Lateral"),
    (4, "Local"),
    (99, "Other"),
];
const BOUNDARY: Enum = &[
    (0, "Unknown"),
    (1, "Localhost"),
    (2, "Internal"),
    (3, "External"),
    (4, "Same VPC"),
    (5, "Internet/VPC Gateway"),
    (6, "Virtual Private Gateway"),
    (7, "Intra-region VPC"),
    (8, "Inter-region VPC"),
    (9, "Local Gateway"),
    (10, "Gateway VPC"),
    (11, "Internet Gateway"),
    (99, "Other"),
];
const PROTOCOL_VER: Enum = &[
    (0, "Unknown"),
    (4, "Internet Protocol version 4 (IPv4)"),
    (6, "Internet Protocol version 6 (IPv6)"),
    (99, "Other"),
];
const OBSERVATION_POINT: Enum = &[
    (0, "Unknown"),
    (1, "Source"),
    (2, "Destination"),
    (3, "Neither"),
    (4, "Both"),
    (99, "Other"),
];
const DEVICE_TYPE: Enum = &[
    (0, "Unknown"),
    (1, "Server"),
    (2, "Desktop"),
    (3, "Laptop"),
    (4, "Tablet"),
    (5, "Mobile"),
    (6, "Virtual"),
    (7, "IOT"),
    (8, "Browser"),
    (9, "Firewall"),
    (10, "Switch"),
    (11, "Hub"),
    (12, "Router"),
    (13, "IDS"),
    (14, "IPS"),
    (15, "Load Balancer"),
    (99, "Other"),
];
const FILE_TYPE: Enum = &[
    (0, "Unknown"),
    (1, "Regular File"),
    (2, "Folder"),
    (3, "Character Device"),
    (4, "Block Device"),
    (5, "Local Socket"),
    (6, "Named Pipe"),
    (7, "Symbolic Link"),
    (8, "Executable File"),
    (99, "Other"),
];
/// Observable type ids of the attribute types the format observes.
const OBSERVABLE_TYPE: Enum = &[
    (1, "Hostname"),
    (2, "IP Address"),
    (4, "User Name"),
    (9, "Process Name"),
];

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Vec<Value>>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&name, v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| flatten(prefix, i, out)),
        leaf => out
            .entry(prefix.to_string())
            .or_default()
            .push(leaf.clone()),
    }
}

fn type_ok(ty: Ty, v: &Value) -> bool {
    match ty {
        Int => v.is_i64() || v.is_u64(),
        // Between 2000 and 2100: milliseconds, not seconds or microseconds.
        Timestamp => v
            .as_i64()
            .is_some_and(|ms| (946_684_800_000..4_102_444_800_000).contains(&ms)),
        Port => v.as_u64().is_some_and(|p| p <= 65535),
        Ip => v.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
        Str => v.is_string(),
        Bool => v.is_boolean(),
    }
}

/// An enumerated id, and its caption when the caption attribute is present.
fn check_enum(p: &mut Vec<String>, obj: &Value, id: &str, caption: &str, e: Enum) {
    let Some(n) = obj.get(id) else { return };
    match e.iter().find(|(k, _)| Some(*k) == n.as_i64()) {
        None => p.push(format!("{id} {n} is not one of {e:?}")),
        Some((_, want)) => {
            if let Some(c) = obj.get(caption) {
                if c != want {
                    p.push(format!("{caption} {c} for {id} {n}, OCSF says {want:?}"));
                }
            }
        }
    }
}

/// Attribute names and types, requirements, constraints and enumerations.
pub fn check_event(ev: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let mut leaves = BTreeMap::new();
    flatten("", ev, &mut leaves);
    let dns = ev["class_uid"] == 4003;
    let (class_uid, class_name, activities) = if dns {
        (4003, "DNS Activity", DNS_ACTIVITY)
    } else {
        (4001, "Network Activity", ACTIVITY)
    };
    for (name, values) in &leaves {
        if name.starts_with("unmapped.") {
            continue;
        }
        let dns_attr = || DNS_ATTRIBUTES.iter().find(|(a, _)| dns && a == name);
        let Some((_, ty)) = ATTRIBUTES.iter().find(|(a, _)| a == name).or_else(dns_attr) else {
            p.push(format!(
                "{name} is not a Network Activity attribute of this format"
            ));
            continue;
        };
        for v in values {
            if !type_ok(*ty, v) {
                p.push(format!("{name}: {v} is not an OCSF {ty:?}"));
            }
        }
    }
    for r in REQUIRED {
        if at(ev, r).is_null() {
            p.push(format!("required {r} missing"));
        }
    }
    if ev.get("src_endpoint").is_none() && ev.get("dst_endpoint").is_none() {
        p.push("neither src_endpoint nor dst_endpoint (at_least_one)".into());
    }
    for ep in ["src_endpoint", "dst_endpoint"] {
        if let Some(e) = ev.get(ep) {
            if e.get("ip").is_none() && e.get("hostname").is_none() {
                p.push(format!("{ep} has none of its at_least_one attributes"));
            }
        }
    }
    if ev.get("connection_info").is_some() && at(ev, "connection_info.direction_id").is_null() {
        p.push("connection_info.direction_id (required) missing".into());
    }
    if at(ev, "metadata.version") != VERSION {
        p.push(format!(
            "metadata.version {} is not {VERSION}",
            at(ev, "metadata.version")
        ));
    }
    if ev["category_uid"] != 4 || ev["category_name"] != "Network Activity" {
        p.push("not in category 4, Network Activity".into());
    }
    if ev["class_uid"] != class_uid || ev["class_name"] != class_name {
        p.push(format!("not class {class_uid}, {class_name}"));
    }
    if dns {
        check_enum(&mut p, ev, "rcode_id", "rcode", RCODE);
        for r in ["query.hostname", "rcode_id"] {
            if at(ev, r).is_null() {
                p.push(format!("{r} (DNS Activity) missing"));
            }
        }
        for a in ev["answers"].as_array().into_iter().flatten() {
            if a.get("rdata").is_none() {
                p.push(format!("answer without its required rdata: {a}"));
            }
        }
    }
    check_enum(&mut p, ev, "activity_id", "activity_name", activities);
    if let Some(a) = ev["activity_id"].as_i64() {
        if ev["type_uid"] != class_uid * 100 + a {
            p.push(format!(
                "type_uid {} is not class_uid * 100 + activity_id",
                ev["type_uid"]
            ));
        }
        let caption = activities
            .iter()
            .find(|(k, _)| *k == a)
            .map(|(_, c)| *c)
            .unwrap_or("?");
        if ev["type_name"] != format!("{class_name}: {caption}") {
            p.push(format!("type_name {}", ev["type_name"]));
        }
    }
    check_enum(&mut p, ev, "severity_id", "severity", SEVERITY);
    check_enum(&mut p, ev, "status_id", "status", STATUS);
    check_enum(
        &mut p,
        ev,
        "observation_point_id",
        "observation_point",
        OBSERVATION_POINT,
    );
    let ci = &ev["connection_info"];
    check_enum(&mut p, ci, "direction_id", "direction", DIRECTION);
    check_enum(&mut p, ci, "boundary_id", "boundary", BOUNDARY);
    check_enum(&mut p, ci, "protocol_ver_id", "protocol_ver", PROTOCOL_VER);
    let proto = match ci["protocol_num"].as_u64() {
        Some(6) => "tcp",
        Some(17) => "udp",
        _ => "?",
    };
    // connection_info is optional (a rate_limited summary has none).
    if !ci.is_null() && ci["protocol_name"] != proto {
        p.push(format!(
            "protocol_name {} for protocol_num {}",
            ci["protocol_name"], ci["protocol_num"]
        ));
    }
    if let Some(d) = ev.get("device") {
        check_enum(&mut p, d, "type_id", "type", DEVICE_TYPE);
        if d.get("type_id").is_none() {
            p.push("device.type_id (required) missing".into());
        }
    }
    let process = &ev["actor"]["process"];
    if !process.is_null() && process.get("pid").is_none() && process.get("uid").is_none() {
        p.push("actor.process has neither pid nor uid (at_least_one)".into());
    }
    for file in [&process["file"], &process["parent_process"]["file"]] {
        if file.is_null() {
            continue;
        }
        if file.get("name").is_none() || file.get("type_id").is_none() {
            p.push(format!(
                "file without its required name and type_id: {file}"
            ));
        }
        check_enum(&mut p, file, "type_id", "type", FILE_TYPE);
    }
    for o in ev["observables"].as_array().into_iter().flatten() {
        check_enum(&mut p, o, "type_id", "type", OBSERVABLE_TYPE);
        if o.get("type_id").is_none() {
            p.push(format!("observable without its required type_id: {o}"));
        }
        if let (Some(name), Some(value)) = (o["name"].as_str(), o.get("value")) {
            // A name through an array of objects (`answers.rdata`) names one of its elements.
            let in_array = name.split_once('.').is_some_and(|(head, rest)| {
                ev[head]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| at(x, rest) == value))
            });
            if at(ev, name) != value && !in_array {
                p.push(format!(
                    "observable {name} = {value}, but the event has {}",
                    at(ev, name)
                ));
            }
        }
    }
    p
}

fn millis(native: &Value, key: &str) -> Value {
    native[key]
        .as_str()
        .and_then(epoch_micros)
        .map(|us| Value::from(us.div_euclid(1000)))
        .unwrap_or(Value::Null)
}

/// The event says what the native event says.
pub fn check_values(ev: &Value, native: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let mut same = |path: &str, want: Value| {
        if *at(ev, path) != want {
            p.push(format!("{path} = {}, native says {want}", at(ev, path)));
        }
    };
    let n = |k: &str| native.get(k).cloned().unwrap_or(Value::Null);
    let u = |k: &str| native[k].as_u64();
    if native["event_action"] == "dns_query" {
        let code = native["response_code_id"].as_u64().unwrap_or(99);
        same("class_uid", 4003.into());
        same("activity_id", 2.into());
        same("time", millis(native, "timestamp"));
        same("metadata.original_time", n("timestamp"));
        same("metadata.correlation_uid", n("flow_id"));
        same("src_endpoint.ip", n("client_ip"));
        same("src_endpoint.port", n("client_port"));
        same("dst_endpoint.ip", n("resolver_ip"));
        same("dst_endpoint.port", n("resolver_port"));
        same("connection_info.uid", n("flow_id"));
        same("connection_info.community_uid", n("community_id"));
        same("connection_info.protocol_name", n("transport_protocol"));
        same("query.hostname", n("query_name"));
        same("query.type", n("query_type"));
        same("query.packet_uid", n("transaction_id"));
        let assigned = code <= 11 || (16..=23).contains(&code);
        same("rcode_id", (if assigned { code } else { 99 }).into());
        same("response_time", millis(native, "timestamp"));
        same("metadata.profiles", serde_json::json!(["host"]));
        same("status_id", (if code == 0 { 1 } else { 2 }).into());
        let answers: Vec<Value> = native["answers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                serde_json::json!({
                    "rdata": a.get("data").cloned().unwrap_or_else(|| "".into()),
                    "type": a["type"], "ttl": a["ttl"], "class": "IN",
                    "packet_uid": native["transaction_id"],
                })
            })
            .collect();
        same("answers", Value::Array(answers));
        same("actor.process.pid", n("pid"));
        same("actor.process.uid", n("process_entity_id"));
        same("actor.process.file.path", n("image_path"));
        same("actor.user.name", n("user"));
        same("unmapped.event_action", "dns_query".into());
        same("unmapped.answers_truncated", n("answers_truncated"));
        same("unmapped.resolved_ips", n("resolved_ips"));
        let _ = u;
        return p;
    }
    if native["event_action"] == "rate_limited" {
        same("activity_id", 99.into());
        same("time", millis(native, "timestamp"));
        same("count", n("suppressed_flows"));
        same("start_time", millis(native, "first_suppressed_time"));
        same("end_time", millis(native, "last_suppressed_time"));
        same("metadata.original_time", n("timestamp"));
        same("metadata.correlation_uid", Value::Null);
        same("src_endpoint.hostname", n("hostname"));
        same("connection_info", Value::Null);
        same("actor.process.pid", n("pid"));
        same("actor.process.uid", n("process_entity_id"));
        same("actor.process.file.path", n("image_path"));
        same(
            "actor.process.created_time",
            millis(native, "process_start_time"),
        );
        same("actor.user.name", n("user"));
        for k in [
            "event_action",
            "limiter",
            "rate",
            "burst",
            "suppressed_flows",
            "suppressed_tcp",
            "suppressed_udp",
            "suppressed_ended",
            "suppressed_in_bytes",
            "suppressed_out_bytes",
            "suppressed_packets",
            "remote_ips",
            "remote_ips_truncated",
            "dest_ports",
            "dest_ports_truncated",
            "gid",
            "group",
            "cgroup_path",
            "systemd_unit",
        ] {
            same(&format!("unmapped.{k}"), n(k));
        }
        return p;
    }
    let outbound = native["local_orig"] == true;
    same("time", millis(native, "timestamp"));
    same("start_time", millis(native, "start_time"));
    same("end_time", millis(native, "end_time"));
    same("metadata.original_time", n("timestamp"));
    same("metadata.correlation_uid", n("flow_id"));
    same("connection_info.uid", n("flow_id"));
    same("connection_info.community_uid", n("community_id"));
    same("connection_info.flag_history", n("history"));
    same("status_detail", n("end_reason"));
    same("app_protocol_name", n("application_protocol"));
    same("metadata.profiles", serde_json::json!(["host"]));
    let mut ja4_problems = Vec::new();
    for (i, k) in ["ja4", "ja4s"].into_iter().enumerate() {
        if let Some(v) = native.get(k) {
            let listed = ev["ja4_fingerprint_list"].as_array().is_some_and(|l| {
                l.iter()
                    .any(|f| f["value"] == *v && f["type_id"] == i as u64 + 1)
            });
            if !listed {
                ja4_problems.push(format!("{k} {v} not in ja4_fingerprint_list"));
            }
        }
    }
    same("tls.sni", n("tls_server_name"));
    same("tls.cipher", n("tls_cipher"));
    same("tls.ja3_hash.value", n("ja3"));
    same("tls.ja3s_hash.value", n("ja3s"));
    same("src_endpoint.ip", n("src_ip"));
    same("src_endpoint.port", n("src_port"));
    same("dst_endpoint.ip", n("dest_ip"));
    same("dst_endpoint.port", n("dest_port"));
    // Each end's fully qualified name (this host's hostname when it has no fqdn) and the
    // domain that name belongs to.
    for (ep, side) in [("src_endpoint", "src"), ("dst_endpoint", "dest")] {
        let fqdn = n(&format!("{side}_fqdn"));
        let name = if fqdn.is_null() {
            n(&format!("{side}_hostname"))
        } else {
            fqdn
        };
        let domain = name
            .as_str()
            .and_then(|s| s.split_once('.'))
            .map(|(_, d)| Value::from(d))
            .unwrap_or(Value::Null);
        same(&format!("{ep}.hostname"), name);
        same(&format!("{ep}.domain"), domain);
    }
    same("is_src_dst_assignment_known", n("start_observed"));
    same("observation_point_id", if outbound { 1 } else { 2 }.into());
    same("cumulative_traffic.bytes_out", n("orig_bytes"));
    same("cumulative_traffic.bytes_in", n("resp_bytes"));
    same("cumulative_traffic.packets_out", n("orig_pkts"));
    same("cumulative_traffic.packets_in", n("resp_pkts"));
    if let (Some(i), Some(o)) = (u("in_bytes"), u("out_bytes")) {
        same("cumulative_traffic.bytes", (i + o).into());
    }
    let iv = &native["interval"];
    if let (Some(i), Some(o)) = (iv["in_bytes"].as_u64(), iv["out_bytes"].as_u64()) {
        same("traffic.bytes", (i + o).into());
        same("traffic.bytes_out", if outbound { o } else { i }.into());
    } else {
        same("traffic", Value::Null);
    }
    same("actor.process.pid", n("pid"));
    same("actor.process.ptid", n("tid"));
    same("actor.process.uid", n("process_entity_id"));
    same("actor.process.file.path", n("image_path"));
    same(
        "actor.process.file.hashes",
        native.get("image_sha256").map_or(
            Value::Null,
            |v| serde_json::json!([{ "algorithm_id": 3, "algorithm": "SHA-256", "value": v }]),
        ),
    );
    same(
        "actor.process.created_time",
        millis(native, "process_start_time"),
    );
    same("actor.process.parent_process.pid", n("ppid"));
    same(
        "actor.process.parent_process.cmd_line",
        n("parent_command_line"),
    );
    same(
        "actor.user.uid",
        native
            .get("uid")
            .map(|v| Value::from(v.to_string()))
            .unwrap_or(Value::Null),
    );
    same("actor.user.name", n("user"));
    if native.get("pid").is_some() {
        same(
            "actor.process.cmd_line",
            native
                .get("command_line")
                .cloned()
                .unwrap_or_else(|| "".into()),
        );
    }
    p.extend(ja4_problems);
    let activities: &[i64] = match native["event_action"].as_str() {
        Some("start") => &[1],
        Some("update") => &[6],
        _ => &[2, 3, 4, 5],
    };
    if !ev["activity_id"]
        .as_i64()
        .is_some_and(|a| activities.contains(&a))
    {
        p.push(format!(
            "activity_id {} for a native {}",
            ev["activity_id"], native["event_action"]
        ));
    }
    p
}

/// The published OCSF 1.8.0 schema (`dictionary.json`, `events/`, `objects/`, `profiles/`):
/// every attribute path of [`ATTRIBUTES`] and [`DNS_ATTRIBUTES`] is an attribute of its class
/// (its own, the classes it extends, the `host` profile named in `metadata.profiles`) or of
/// the objects on the path (with what they extend and include), has the type the table says,
/// and is not deprecated; the profiles the events name exist and declare `actor` and `device`;
/// [`RCODE`] is DNS Activity's `rcode_id` enum.
pub fn check_against_schema(root: &std::path::Path) -> Vec<String> {
    use std::collections::BTreeSet;
    let read = |rel: &str| -> Value {
        std::fs::read_to_string(root.join(rel))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null)
    };
    let dict = read("dictionary.json");
    let mut p = Vec::new();
    // Attribute name -> its definition in a class/object/profile, following extends/$include.
    fn collect(
        read: &dyn Fn(&str) -> Value,
        rel: &str,
        dir: &str,
        out: &mut BTreeMap<String, Value>,
    ) {
        let v = read(rel);
        let Some(attrs) = v["attributes"].as_object() else {
            return;
        };
        if let Some(parent) = v["extends"].as_str() {
            collect(read, &format!("{dir}/{parent}.json"), dir, out);
        }
        for inc in attrs
            .get("$include")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(inc) = inc.as_str() {
                collect(read, inc, dir, out);
            }
        }
        for (k, a) in attrs {
            if k != "$include" {
                out.insert(k.clone(), a.clone());
            }
        }
    }
    let class_attrs = |file: &str| {
        let mut out = BTreeMap::new();
        collect(&read, file, "events", &mut out);
        // `extends` of events names the class file by name in its folder or the base event.
        let v = read(file);
        if let Some(parent) = v["extends"].as_str() {
            for candidate in [
                format!("events/network/{parent}.json"),
                format!("events/{parent}.json"),
            ] {
                collect(&read, &candidate, "events", &mut out);
                let pv = read(&candidate);
                if let Some(grand) = pv["extends"].as_str() {
                    collect(&read, &format!("events/{grand}.json"), "events", &mut out);
                }
            }
        }
        collect(&read, "profiles/host.json", "profiles", &mut out);
        out
    };
    let object_attrs = |name: &str| {
        let mut out = BTreeMap::new();
        collect(&read, &format!("objects/{name}.json"), "objects", &mut out);
        out
    };
    let scalar = |t: &str| -> Option<&'static str> {
        let base = if t.ends_with("_t") {
            dict["types"]["attributes"][t]["type"].as_str().unwrap_or(t)
        } else {
            return None;
        };
        Some(match (t, base) {
            ("timestamp_t", _) => "Timestamp",
            ("port_t", _) => "Port",
            ("ip_t", _) => "Ip",
            ("integer_t" | "long_t", _) | (_, "integer_t" | "long_t") => "Int",
            ("boolean_t", _) | (_, "boolean_t") => "Bool",
            _ => "Str",
        })
    };
    for (file, table) in [
        ("events/network/network_activity.json", ATTRIBUTES),
        ("events/network/dns_activity.json", DNS_ATTRIBUTES),
    ] {
        let class = class_attrs(file);
        if class.is_empty() {
            p.push(format!("{file}: not read"));
            continue;
        }
        for (path, ty) in table {
            let mut attrs = class.clone();
            let mut want = None;
            for (i, part) in path.split('.').enumerate() {
                let Some(a) = attrs.get(part) else {
                    p.push(format!("{file}: {path}: no attribute {part}"));
                    break;
                };
                let d = &dict["attributes"][part];
                if d.get("@deprecated").is_some() || a.get("@deprecated").is_some() {
                    p.push(format!("{file}: {path}: {part} is deprecated"));
                }
                let t = a["type"].as_str().or(d["type"].as_str()).unwrap_or("");
                if i + 1 == path.split('.').count() {
                    want = scalar(t);
                    if want.is_none() {
                        p.push(format!("{file}: {path}: an object ({t}), not a value"));
                    }
                } else {
                    attrs = object_attrs(t);
                }
            }
            if let Some(want) = want {
                if format!("{ty:?}") != want {
                    p.push(format!(
                        "{file}: {path}: the table says {ty:?}, OCSF {want}"
                    ));
                }
            }
        }
    }
    let host = read("profiles/host.json");
    let declared: BTreeSet<&str> = host["attributes"]
        .as_object()
        .map(|a| a.keys().map(String::as_str).collect())
        .unwrap_or_default();
    if host["name"] != "host" || !declared.contains("actor") || !declared.contains("device") {
        p.push(format!(
            "profile host does not declare actor and device: {declared:?}"
        ));
    }
    let rcodes = &read("events/network/dns_activity.json")["attributes"]["rcode_id"]["enum"];
    let published: Vec<(i64, &str)> = rcodes
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.parse().ok()?, v["caption"].as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    let mut ours = RCODE.to_vec();
    let mut published = published;
    ours.sort();
    published.sort();
    if ours != published {
        p.push(format!("RCODE {ours:?} is not the published {published:?}"));
    }
    p
}
