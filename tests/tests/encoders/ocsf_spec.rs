//! OCSF 1.8.0: each event against its class (Network Activity 4001, DNS Activity 4003) in the
//! spec fixture, with the profiles it names: attribute names, types, arrays, enums and their
//! captions, required attributes, constraints and deprecations, through every object.
use super::ecs_spec::at;
use super::fixture;
use super::times::epoch_micros;
use serde_json::{Map, Value};
use std::net::IpAddr;

pub const VERSION: &str = "1.8.0";

/// Whether a scalar value has its OCSF type (`t` resolved to its base type).
fn scalar_ok(t: &str, base: &str, v: &Value) -> bool {
    match (t, base) {
        // Between 2000 and 2100: milliseconds, not seconds or microseconds.
        ("timestamp_t", _) => v
            .as_i64()
            .is_some_and(|ms| (946_684_800_000..4_102_444_800_000).contains(&ms)),
        ("port_t", _) => v.as_u64().is_some_and(|p| p <= 65535),
        ("ip_t", _) => v.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
        ("json_t", _) => true,
        (_, "integer_t" | "long_t") => v.is_i64() || v.is_u64(),
        (_, "float_t") => v.is_number(),
        (_, "boolean_t") => v.is_boolean(),
        _ => v.is_string(),
    }
}

/// One class's or object's members against the fixture: every attribute is the scope's (or
/// of a profile the event names), not deprecated, of its type and array-ness, enum values
/// among the published ones with their captions; required attributes and constraints hold.
fn check_scope(
    p: &mut Vec<String>,
    scope_name: &str,
    obj: &Map<String, Value>,
    path: &str,
    profiles: &[&str],
) {
    let o = fixture::ocsf();
    let Some(scope) = o.scopes.get(scope_name) else {
        p.push(format!(
            "{path}: {scope_name} is not in the OCSF 1.8.0 fixture"
        ));
        return;
    };
    if let Some(since) = scope.deprecated {
        p.push(format!("{path}: {scope_name} is deprecated since {since}"));
    }
    let in_profile = |a: &fixture::OcsfAttr| a.profile.is_none_or(|pr| profiles.contains(&pr));
    for (k, v) in obj {
        let at = format!("{path}{k}");
        if path.is_empty() && k == "unmapped" {
            continue;
        }
        let Some(a) = scope.attrs.get(k.as_str()) else {
            p.push(format!("{at} is not an attribute of {scope_name}"));
            continue;
        };
        if !in_profile(a) {
            p.push(format!(
                "{at} needs profile {:?}, not in metadata.profiles",
                a.profile
            ));
        }
        if let Some(since) = a.deprecated {
            p.push(format!("{at} is deprecated since {since}"));
        }
        let items: Vec<&Value> = match v {
            Value::Array(items) if a.array => items.iter().collect(),
            _ if a.array => {
                p.push(format!("{at}: {v} is not an array"));
                continue;
            }
            Value::Array(_) => {
                p.push(format!("{at}: an array, OCSF wants one {}", a.ty));
                continue;
            }
            _ => vec![v],
        };
        for item in items {
            if a.ty == "object" {
                continue;
            }
            if let Some(base) = o.types.get(a.ty) {
                if !scalar_ok(a.ty, base, item) {
                    p.push(format!("{at}: {item} is not an OCSF {}", a.ty));
                }
            } else if let Some(m) = item.as_object() {
                check_scope(
                    p,
                    &format!("object/{}", a.ty),
                    m,
                    &format!("{at}."),
                    profiles,
                );
            } else {
                p.push(format!("{at}: {item} is not an OCSF {} object", a.ty));
            }
            if a.values.is_empty() {
                continue;
            }
            let key = match item {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let caption = a.values.get(key.as_str());
            match (caption, a.sibling.and_then(|s| obj.get(s))) {
                (None, _) => p.push(format!("{at} {item} is not among {:?}", a.values)),
                // 99 Other: the sibling names what the source calls it.
                (Some(_), Some(_)) if item == 99 => {}
                (Some(want), Some(got)) if got != want => p.push(format!(
                    "{path}{} {got} for {k} {item}, OCSF says {want:?}",
                    a.sibling.unwrap_or_default()
                )),
                _ => {}
            }
        }
    }
    for (name, a) in &scope.attrs {
        if a.requirement == "required" && in_profile(a) && !obj.contains_key(*name) {
            p.push(format!("{path}{name} (required by {scope_name}) missing"));
        }
    }
    for (kind, names) in &scope.constraints {
        let n = names.iter().filter(|a| obj.contains_key(**a)).count();
        if (*kind == "at_least_one" && n == 0) || (*kind == "just_one" && n != 1) {
            p.push(format!(
                "{path}: {kind} of {names:?} has {n} ({scope_name})"
            ));
        }
    }
}

/// The event against its class in the fixture (with the profiles it names), then the
/// relations between values OCSF states in prose.
pub fn check_event(ev: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let Some(obj) = ev.as_object() else {
        return vec!["not a JSON object".into()];
    };
    let class_uid = ev["class_uid"].as_i64().unwrap_or_default();
    let Some((class, category, class_name)) = fixture::ocsf().classes.get(&class_uid) else {
        return vec![format!(
            "class_uid {} is not a class of the format",
            ev["class_uid"]
        )];
    };
    let profiles: Vec<&str> = ev["metadata"]["profiles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    check_scope(&mut p, &format!("class/{class}"), obj, "", &profiles);
    if at(ev, "metadata.version") != VERSION {
        p.push(format!(
            "metadata.version {} is not {VERSION}",
            at(ev, "metadata.version")
        ));
    }
    if ev["category_uid"] != *category || ev["class_name"] != *class_name {
        p.push(format!(
            "not class {class_uid} {class_name} of category {category}"
        ));
    }
    let activities = &fixture::ocsf().scopes[&format!("class/{class}")].attrs["activity_id"].values;
    if let Some(a) = ev["activity_id"].as_i64() {
        if ev["type_uid"] != class_uid * 100 + a {
            p.push(format!(
                "type_uid {} is not class_uid * 100 + activity_id",
                ev["type_uid"]
            ));
        }
        let caption = activities
            .get(a.to_string().as_str())
            .copied()
            .unwrap_or("?");
        if ev["type_name"] != format!("{class_name}: {caption}") {
            p.push(format!("type_name {}", ev["type_name"]));
        }
    }
    let ci = &ev["connection_info"];
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
    for o in ev["observables"].as_array().into_iter().flatten() {
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
    if !super::ecs_spec::ciphers_match(at(ev, "tls.client_ciphers"), &native["tls_client_ciphers"])
    {
        p.push(format!(
            "tls.client_ciphers {}, native says {}",
            at(ev, "tls.client_ciphers"),
            native["tls_client_ciphers"]
        ));
    }
    let mut same = |path: &str, want: Value| {
        if *at(ev, path) != want {
            p.push(format!("{path} = {}, native says {want}", at(ev, path)));
        }
    };
    let n = |k: &str| native.get(k).cloned().unwrap_or(Value::Null);
    let u = |k: &str| native[k].as_u64();
    // This host, in every event.
    same("device.uid", n("host_id"));
    same("device.boot_uid", n("boot_id"));
    same("device.name", n("hostname"));
    if native.get("pid").is_some() {
        same(
            "actor.process.name",
            native
                .get("exe")
                .or(native.get("process_name"))
                .cloned()
                .unwrap_or(Value::Null),
        );
    }
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
        for k in [
            "gid",
            "group",
            "cgroup_path",
            "container_id",
            "container_runtime",
        ] {
            same(&format!("unmapped.{k}"), n(k));
        }
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
    same("device.os.kernel_release", n("kernel_version"));
    same("device.os.version", n("os_version"));
    for k in super::ecs_spec::TCP_DETAIL {
        same(&format!("unmapped.{k}"), n(k));
    }
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
    same("actor.process.parent_process.uid", n("parent_entity_id"));
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
