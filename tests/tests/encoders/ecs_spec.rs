//! Elastic Common Schema 9.4.0: every field outside the agent's own `flow_agent` namespace is
//! an ECS field of the spec fixture (from ECS's `fields.csv`) with its type and array-ness;
//! the allowed values of the categorization fields and `network.direction` (ECS documents them
//! outside fields.csv); the agent's custom fields with their types.
use super::fixture;
use super::times::{epoch_micros, is_time};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ty {
    /// `keyword` and the other string types (`wildcard`, `match_only_text`...).
    Keyword,
    Long,
    Float,
    Date,
    Ip,
    Boolean,
    Object,
}
use Ty::*;

pub const VERSION: &str = "9.4.0";

/// The agent's custom fields (ECS allows them; they live under `flow_agent`): (field, type,
/// is an array). Every other field must be ECS 9.4.0's (the spec fixture).
const CUSTOM: &[(&str, Ty, bool)] = &[
    ("flow_agent.answers_truncated", Boolean, false),
    ("flow_agent.flow_id", Keyword, false),
    ("flow_agent.start_observed", Boolean, false),
    ("flow_agent.network_locality", Keyword, false),
    ("flow_agent.conn_state", Keyword, false),
    ("flow_agent.history", Keyword, false),
    ("flow_agent.tcp_flags", Keyword, false),
    ("flow_agent.orig_tcp_flags", Keyword, false),
    ("flow_agent.resp_tcp_flags", Keyword, false),
    ("flow_agent.orig_ip_bytes", Long, false),
    ("flow_agent.resp_ip_bytes", Long, false),
    ("flow_agent.orig_first_byte_time", Date, false),
    ("flow_agent.resp_first_byte_time", Date, false),
    ("flow_agent.time_to_first_byte", Float, false),
    ("flow_agent.rtt_us", Long, false),
    ("flow_agent.retransmits", Long, false),
    ("flow_agent.interval.in_bytes", Long, false),
    ("flow_agent.interval.out_bytes", Long, false),
    ("flow_agent.interval.in_pkts", Long, false),
    ("flow_agent.interval.out_pkts", Long, false),
    ("flow_agent.attribution", Keyword, false),
    ("flow_agent.image_deleted", Boolean, false),
    ("flow_agent.image_hash_skipped", Keyword, false),
    ("flow_agent.image_inherited", Boolean, false),
    ("flow_agent.image_refreshed", Boolean, false),
    ("flow_agent.image_unverified", Boolean, false),
    ("flow_agent.ancestors", Object, true),
    ("flow_agent.ancestors.pid", Long, true),
    ("flow_agent.ancestors.entity_id", Keyword, true),
    ("flow_agent.ancestors.image_path", Keyword, true),
    ("flow_agent.exit_signal", Long, false),
    ("flow_agent.egid", Long, false),
    ("flow_agent.auid", Long, false),
    ("flow_agent.login_user", Keyword, false),
    ("flow_agent.session_id", Long, false),
    ("flow_agent.command_line_truncated", Boolean, false),
    ("flow_agent.cgroup_id", Long, false),
    ("flow_agent.cgroup_path", Keyword, false),
    ("flow_agent.systemd_unit", Keyword, false),
    ("flow_agent.netns", Long, false),
    ("flow_agent.app_protocol_source", Keyword, false),
    ("flow_agent.proto_info", Keyword, false),
    ("flow_agent.ja4", Keyword, false),
    ("flow_agent.ja4s", Keyword, false),
    ("flow_agent.tls_client_hello_truncated", Boolean, false),
    ("flow_agent.orig_content", Keyword, false),
    // Added by a syslog output with oversize = "truncate" (docs/sink-syslog.md).
    ("flow_agent.record_truncated", Boolean, false),
    ("flow_agent.resp_content", Keyword, false),
    ("flow_agent.stats.agent_version", Keyword, false),
    ("flow_agent.stats.uptime", Float, false),
    ("flow_agent.stats.flows_open", Long, false),
    ("flow_agent.stats.events_total", Long, false),
    ("flow_agent.stats.kernel_losses.ring_full", Long, false),
    ("flow_agent.stats.kernel_losses.tcp_table_full", Long, false),
    ("flow_agent.stats.kernel_losses.udp_table_full", Long, false),
    ("flow_agent.stats.kernel_losses.read_failed", Long, false),
    (
        "flow_agent.stats.kernel_losses.tcp_detail_lost",
        Long,
        false,
    ),
    (
        "flow_agent.stats.kernel_losses.process_ring_full",
        Long,
        false,
    ),
    ("flow_agent.stats.kernel_losses.dns_ring_full", Long, false),
    (
        "flow_agent.stats.kernel_losses.owner_table_full",
        Long,
        false,
    ),
    (
        "flow_agent.stats.kernel_losses.tcp_closes_missed",
        Long,
        false,
    ),
    (
        "flow_agent.stats.enrich_losses.payload_table_full",
        Long,
        false,
    ),
    (
        "flow_agent.stats.enrich_losses.dns_answers_malformed",
        Long,
        false,
    ),
    (
        "flow_agent.stats.enrich_losses.dns_answers_unsolicited",
        Long,
        false,
    ),
    (
        "flow_agent.stats.enrich_losses.dns_answers_mismatched",
        Long,
        false,
    ),
    (
        "flow_agent.stats.enrich_losses.dns_queries_evicted",
        Long,
        false,
    ),
    (
        "flow_agent.stats.enrich_losses.dns_events_dropped",
        Long,
        false,
    ),
    (
        "flow_agent.stats.state_bounds.processes_reconciled",
        Long,
        false,
    ),
    (
        "flow_agent.stats.state_bounds.processes_evicted",
        Long,
        false,
    ),
    (
        "flow_agent.stats.state_bounds.cgroup_paths_dropped",
        Long,
        false,
    ),
    (
        "flow_agent.stats.state_bounds.tcp_flows_reconciled",
        Long,
        false,
    ),
    (
        "flow_agent.stats.state_bounds.udp_flows_reconciled",
        Long,
        false,
    ),
    (
        "flow_agent.stats.state_bounds.tcp_flows_refused",
        Long,
        false,
    ),
    (
        "flow_agent.stats.state_bounds.udp_flows_refused",
        Long,
        false,
    ),
    ("flow_agent.stats.watchdog.tcp_silences", Long, false),
    ("flow_agent.stats.watchdog.udp_silences", Long, false),
    ("flow_agent.stats.watchdog.process_silences", Long, false),
    ("flow_agent.stats.watchdog.exec_silences", Long, false),
    ("flow_agent.stats.watchdog.self_check_reruns", Long, false),
    (
        "flow_agent.stats.watchdog.self_check_reruns_failed",
        Long,
        false,
    ),
    ("flow_agent.stats.sinks.name", Keyword, true),
    ("flow_agent.stats.sinks.kind", Keyword, true),
    ("flow_agent.stats.sinks.format", Keyword, true),
    ("flow_agent.stats.sinks.accepted", Long, true),
    ("flow_agent.stats.sinks.sent", Long, true),
    ("flow_agent.stats.sinks.queued", Long, true),
    ("flow_agent.stats.sinks.buffered", Long, true),
    ("flow_agent.stats.sinks.dropped", Long, true),
    ("flow_agent.stats.sinks.reconnects", Long, true),
    ("flow_agent.stats.sinks.errors", Long, true),
    ("flow_agent.stats.sinks.worker_panics", Long, true),
    (
        "flow_agent.stats.rate_limit.suppressed_process",
        Long,
        false,
    ),
    ("flow_agent.stats.rate_limit.suppressed_global", Long, false),
    ("flow_agent.stats.rate_limit.summaries", Long, false),
    ("flow_agent.stats.rate_limit.processes_evicted", Long, false),
    ("flow_agent.stats.rate_limit.processes", Long, false),
    ("flow_agent.stats.rate_limit.suppressed_open", Long, false),
    // rate_limited summaries (docs/formats.md).
    ("flow_agent.rate_limit.limiter", Keyword, false),
    ("flow_agent.rate_limit.rate", Float, false),
    ("flow_agent.rate_limit.burst", Long, false),
    ("flow_agent.rate_limit.suppressed_flows", Long, false),
    ("flow_agent.rate_limit.suppressed_tcp", Long, false),
    ("flow_agent.rate_limit.suppressed_udp", Long, false),
    ("flow_agent.rate_limit.suppressed_ended", Long, false),
    ("flow_agent.rate_limit.suppressed_in_bytes", Long, false),
    ("flow_agent.rate_limit.suppressed_out_bytes", Long, false),
    ("flow_agent.rate_limit.suppressed_packets", Long, false),
    ("flow_agent.rate_limit.remote_ips_truncated", Boolean, false),
    ("flow_agent.rate_limit.dest_ports", Long, true),
    ("flow_agent.rate_limit.dest_ports_truncated", Boolean, false),
    ("flow_agent.rate_limit.cgroup_path", Keyword, false),
    ("flow_agent.rate_limit.systemd_unit", Keyword, false),
];

const KINDS: &[&str] = &[
    "alert",
    "asset",
    "enrichment",
    "event",
    "metric",
    "state",
    "pipeline_error",
    "signal",
];
const CATEGORIES: &[&str] = &[
    "api",
    "authentication",
    "configuration",
    "database",
    "driver",
    "email",
    "file",
    "host",
    "iam",
    "intrusion_detection",
    "library",
    "malware",
    "network",
    "package",
    "process",
    "registry",
    "session",
    "threat",
    "vulnerability",
    "web",
];
const TYPES: &[&str] = &[
    "access",
    "admin",
    "allowed",
    "change",
    "connection",
    "creation",
    "deletion",
    "denied",
    "device",
    "end",
    "error",
    "group",
    "indicator",
    "info",
    "installation",
    "protocol",
    "start",
    "user",
];
/// `expected_event_types` of the `network` category.
const NETWORK_TYPES: &[&str] = &[
    "access",
    "allowed",
    "connection",
    "denied",
    "end",
    "info",
    "protocol",
    "start",
];
const OUTCOMES: &[&str] = &["failure", "success", "unknown"];
const DIRECTIONS: &[&str] = &[
    "ingress", "egress", "inbound", "outbound", "internal", "external", "unknown",
];

/// Whether `names` are the native cipher suite `numbers` as the formats write them: one per
/// number, in order, each its IANA name (`TLS_...`) or, without one, `0x` and four hex digits.
pub fn ciphers_match(names: &Value, numbers: &Value) -> bool {
    match (names.as_array(), numbers.as_array()) {
        (None, None) => true,
        (Some(names), Some(numbers)) => {
            names.len() == numbers.len()
                && names.iter().zip(numbers).all(|(name, n)| {
                    let hex = n.as_u64().map(|n| format!("0x{n:04x}"));
                    name.as_str()
                        .is_some_and(|s| s.starts_with("TLS_") || Some(s) == hex.as_deref())
                })
        }
        _ => false,
    }
}

/// Native TCP detail fields ECS has no field for, kept under their names (also in OCSF's
/// `unmapped`).
pub const TCP_DETAIL: [&str; 8] = [
    "tcp_flags",
    "orig_tcp_flags",
    "resp_tcp_flags",
    "orig_ip_bytes",
    "resp_ip_bytes",
    "orig_first_byte_time",
    "resp_first_byte_time",
    "time_to_first_byte",
];

/// Leaf values by dotted name; array elements (also arrays of objects) under the array's name.
fn flatten(
    prefix: &str,
    v: &Value,
    out: &mut BTreeMap<String, Vec<(Value, bool)>>,
    in_array: bool,
) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&name, v, out, in_array);
            }
        }
        Value::Array(items) => {
            for item in items {
                flatten(prefix, item, out, true);
            }
        }
        leaf => out
            .entry(prefix.to_string())
            .or_default()
            .push((leaf.clone(), in_array)),
    }
}

/// A field's type and array-ness: a custom field's from [`CUSTOM`], any other's from ECS (an
/// array itself, or inside an array of objects such as `dns.answers`).
fn field_type(name: &str) -> Option<(Ty, bool)> {
    if name.starts_with("flow_agent.") {
        let (_, ty, array) = CUSTOM.iter().find(|(f, _, _)| *f == name)?;
        return Some((*ty, *array));
    }
    let ecs = fixture::ecs();
    let ty = match ecs.get(name)?.ty {
        "keyword" | "constant_keyword" | "wildcard" | "match_only_text" => Keyword,
        "long" | "integer" => Long,
        "float" | "scaled_float" | "double" => Float,
        "date" => Date,
        "ip" => Ip,
        "boolean" => Boolean,
        _ => Object,
    };
    let mut array = false;
    let mut rest = name;
    loop {
        array |= ecs.get(rest).is_some_and(|f| f.array);
        match rest.rsplit_once('.') {
            Some((head, _)) => rest = head,
            None => return Some((ty, array)),
        }
    }
}

fn type_ok(ty: Ty, v: &Value) -> bool {
    match ty {
        Keyword => v.is_string(),
        Long => v.is_i64() || v.is_u64(),
        Float => v.is_number(),
        Date => v.as_str().is_some_and(is_time),
        Ip => v.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
        Boolean => v.is_boolean(),
        // A leaf cannot be an object field (`object`, `nested`, `flattened`, `geo_point`).
        Object => false,
    }
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Field names, types, array-ness and allowed values.
pub fn check_document(doc: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let mut leaves = BTreeMap::new();
    flatten("", doc, &mut leaves, false);
    for (name, values) in &leaves {
        let Some((ty, array)) = field_type(name) else {
            p.push(format!(
                "field {name} is neither ECS 9.4.0's nor a custom one"
            ));
            continue;
        };
        let is_array = doc_is_array(doc, name);
        if is_array != array {
            p.push(format!("{name}: array {is_array}, ECS wants {array}"));
        }
        for (v, _) in values {
            if !type_ok(ty, v) {
                p.push(format!("{name}: {v} is not an ECS {ty:?}"));
            }
        }
    }
    for required in [
        "@timestamp",
        "ecs.version",
        "event.kind",
        "agent.type",
        "host.hostname",
    ] {
        if !leaves.contains_key(required) {
            p.push(format!("{required} missing"));
        }
    }
    if doc["ecs"]["version"] != VERSION {
        p.push(format!(
            "ecs.version {} is not {VERSION}",
            doc["ecs"]["version"]
        ));
    }
    let ev = &doc["event"];
    let one_of = |p: &mut Vec<String>, name: &str, v: &Value, allowed: &[&str]| {
        if !v.as_str().is_some_and(|s| allowed.contains(&s)) {
            p.push(format!(
                "{name} {v} not among the allowed values {allowed:?}"
            ));
        }
    };
    one_of(&mut p, "event.kind", &ev["kind"], KINDS);
    if ev["kind"] == "metric" {
        for absent in ["category", "type"] {
            if ev.get(absent).is_some() {
                p.push(format!("metric document with event.{absent}"));
            }
        }
        return p;
    }
    for c in strs(&ev["category"]) {
        one_of(&mut p, "event.category", &Value::from(c), CATEGORIES);
    }
    for t in strs(&ev["type"]) {
        one_of(&mut p, "event.type", &Value::from(t), TYPES);
        if strs(&ev["category"]).contains(&"network") {
            one_of(
                &mut p,
                "event.type (network)",
                &Value::from(t),
                NETWORK_TYPES,
            );
        }
    }
    if ev.get("outcome").is_some() {
        one_of(&mut p, "event.outcome", &ev["outcome"], OUTCOMES);
    }
    if ev["action"] == "rate_limited" {
        // A summary of many flows: no network.*, source or destination of one.
        for absent in ["network", "source", "destination"] {
            if doc.get(absent).is_some() {
                p.push(format!("rate_limited summary with {absent}"));
            }
        }
        if ev["type"] != serde_json::json!(["info"]) {
            p.push(format!("rate_limited summary of event.type {}", ev["type"]));
        }
        return p;
    }
    if ev["action"] == "dns_query" {
        // ECS: dns.type is `query` or `answer`; an answer has its question and code.
        if doc["dns"]["type"] != "answer" {
            p.push(format!("dns.type {}", doc["dns"]["type"]));
        }
        for f in [
            "dns.question.name",
            "dns.question.type",
            "dns.response_code",
            "dns.id",
        ] {
            if at(doc, f).is_null() {
                p.push(format!("{f} missing in a DNS answer"));
            }
        }
        if doc["network"]["protocol"] != "dns" {
            p.push(format!("network.protocol {}", doc["network"]["protocol"]));
        }
    }
    if strs(&ev["category"]) == ["process"] {
        // A process's start or end: no network, source or destination; the process and its
        // exit code (`process.exit_code` only at the end).
        for absent in ["network", "source", "destination"] {
            if doc.get(absent).is_some() {
                p.push(format!("process event with {absent}"));
            }
        }
        let types = strs(&ev["type"]);
        if types != ["start"] && types != ["end"] {
            p.push(format!("process event of event.type {}", ev["type"]));
        }
        if (types == ["end"]) != doc["process"].get("exit_code").is_some() {
            p.push(format!(
                "process.exit_code {} for event.type {}",
                doc["process"]["exit_code"], ev["type"]
            ));
        }
        if doc["process"]["pid"].is_null() || doc["process"]["entity_id"].is_null() {
            p.push("process event without process.pid or process.entity_id".into());
        }
        return p;
    }
    let net = &doc["network"];
    one_of(&mut p, "network.direction", &net["direction"], DIRECTIONS);
    for f in ["transport", "type"] {
        if let Some(s) = net[f].as_str() {
            if s != s.to_lowercase() {
                p.push(format!("network.{f} {s} is not lowercase"));
            }
        }
    }
    let iana = match net["transport"].as_str() {
        Some("tcp") => "6",
        Some("udp") => "17",
        _ => "?",
    };
    if net["iana_number"] != iana {
        p.push(format!(
            "network.iana_number {} for {}",
            net["iana_number"], net["transport"]
        ));
    }
    let want_type = if doc["source"]["ip"]
        .as_str()
        .is_some_and(|s| s.contains(':'))
    {
        "ipv6"
    } else {
        "ipv4"
    };
    if net["type"] != want_type {
        p.push(format!(
            "network.type {} for source.ip {}",
            net["type"], doc["source"]["ip"]
        ));
    }
    // event.duration: the difference of event.end and event.start when both are known (the
    // times have microseconds, the duration nanoseconds).
    if let (Some(s), Some(e), Some(d)) = (
        ev["start"].as_str().and_then(epoch_micros),
        ev["end"].as_str().and_then(epoch_micros),
        ev["duration"].as_i64(),
    ) {
        if (d - (e - s) * 1000).abs() > 1000 {
            p.push(format!(
                "event.duration {d} ns, but end - start is {} µs",
                e - s
            ));
        }
    }
    let related = strs(&doc["related"]["ip"]);
    for side in ["source", "destination"] {
        if let Some(ip) = doc[side]["ip"].as_str() {
            if !related.contains(&ip) {
                p.push(format!("related.ip lacks {side}.ip {ip}"));
            }
        }
    }
    p
}

fn doc_is_array(doc: &Value, dotted: &str) -> bool {
    let mut v = doc;
    for part in dotted.split('.') {
        match v {
            Value::Object(m) => match m.get(part) {
                Some(x) => v = x,
                None => return false,
            },
            Value::Array(_) => return true,
            _ => return false,
        }
    }
    v.is_array()
}

/// Dotted lookup; `Null` when absent.
pub fn at<'a>(v: &'a Value, dotted: &str) -> &'a Value {
    dotted
        .split('.')
        .try_fold(v, |v, k| v.get(k))
        .unwrap_or(&Value::Null)
}

/// The document says what the native event says.
pub fn check_values(doc: &Value, native: &Value) -> Vec<String> {
    let mut p = Vec::new();
    if !ciphers_match(
        at(doc, "tls.client.supported_ciphers"),
        &native["tls_client_ciphers"],
    ) {
        p.push(format!(
            "tls.client.supported_ciphers {}, native says {}",
            at(doc, "tls.client.supported_ciphers"),
            native["tls_client_ciphers"]
        ));
    }
    let mut same = |ecs: &str, want: Value| {
        if *at(doc, ecs) != want {
            p.push(format!("{ecs} = {}, native says {want}", at(doc, ecs)));
        }
    };
    let n = |k: &str| native.get(k).cloned().unwrap_or(Value::Null);
    let id_string = |k: &str| {
        native
            .get(k)
            .map(|v| Value::from(v.to_string()))
            .unwrap_or(Value::Null)
    };
    same("@timestamp", n("timestamp"));
    same("host.boot.id", n("boot_id"));
    // The process's name in every event that names a process: its executable's, else comm.
    if native.get("pid").is_some() {
        same(
            "process.name",
            native
                .get("exe")
                .or(native.get("process_name"))
                .cloned()
                .unwrap_or(Value::Null),
        );
        same("process.parent.pid", n("ppid"));
        same("process.entity_id", n("process_entity_id"));
    }
    if super::is_stats(native) {
        same("event.kind", "metric".into());
        same("host.hostname", n("hostname"));
        for k in [
            "agent_version",
            "uptime",
            "flows_open",
            "events_total",
            "kernel_losses",
            "sinks",
            "rate_limit",
        ] {
            same(&format!("flow_agent.stats.{k}"), n(k));
        }
        return p;
    }
    if native["event_action"] == "dns_query" {
        let or_null = |v: Value| {
            if v.as_array().is_some_and(|a| a.is_empty()) {
                Value::Null
            } else {
                v
            }
        };
        same("event.kind", "event".into());
        same("event.category", serde_json::json!(["network"]));
        same("event.type", serde_json::json!(["protocol"]));
        same("event.action", "dns_query".into());
        same("event.dataset", "flow_agent.dns".into());
        same("source.ip", n("client_ip"));
        same("source.port", n("client_port"));
        same("destination.ip", n("resolver_ip"));
        same("destination.port", n("resolver_port"));
        same("network.transport", n("transport_protocol"));
        same("network.community_id", n("community_id"));
        same("dns.id", id_string("transaction_id"));
        same("dns.question.name", n("query_name"));
        same("dns.question.type", n("query_type"));
        same("dns.response_code", n("response_code"));
        same("dns.answers", or_null(n("answers")));
        same("dns.resolved_ip", or_null(n("resolved_ips")));
        same("related.hosts", serde_json::json!([n("query_name")]));
        same("host.hostname", n("hostname"));
        same("process.pid", n("pid"));
        same("process.executable", n("image_path"));
        same("user.id", id_string("uid"));
        same("user.name", n("user"));
        same(
            "user.effective.id",
            native
                .get("euid")
                .map(|v| Value::from(v.to_string()))
                .unwrap_or(Value::Null),
        );
        same("user.effective.name", n("effective_user"));
        same("flow_agent.flow_id", n("flow_id"));
        same("flow_agent.answers_truncated", n("answers_truncated"));
        same("flow_agent.network_locality", n("network_locality"));
        return p;
    }
    if native["event_action"] == "rate_limited" {
        same("event.kind", "event".into());
        same("event.action", "rate_limited".into());
        same("event.dataset", "flow_agent.rate_limit".into());
        same("event.start", n("first_suppressed_time"));
        same("event.end", n("last_suppressed_time"));
        same("host.hostname", n("hostname"));
        same("process.pid", n("pid"));
        same("process.executable", n("image_path"));
        same("user.id", id_string("uid"));
        same("user.name", n("user"));
        same("group.id", id_string("gid"));
        let ips = n("remote_ips");
        same(
            "related.ip",
            if ips.as_array().is_some_and(|a| a.is_empty()) {
                Value::Null
            } else {
                ips
            },
        );
        for k in [
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
            "remote_ips_truncated",
            "dest_ports",
            "dest_ports_truncated",
            "cgroup_path",
            "systemd_unit",
        ] {
            same(&format!("flow_agent.rate_limit.{k}"), n(k));
        }
        return p;
    }
    let outbound = native["local_orig"] == true;
    let action = native["event_action"].as_str().unwrap_or_default();
    same("event.kind", "event".into());
    same(
        "event.action",
        match (action, outbound) {
            ("start", true) => "connection_attempted",
            ("start", false) => "connection_accepted",
            ("update", _) => "connection_updated",
            _ => "disconnect_received",
        }
        .into(),
    );
    let phase = match action {
        "start" => "start",
        "update" => "info",
        _ => "end",
    };
    same("event.type", serde_json::json!(["connection", phase]));
    same("flow_agent.flow_id", n("flow_id"));
    same("event.start", n("start_time"));
    same("event.end", n("end_time"));
    same("event.reason", n("end_reason"));
    same(
        "event.duration",
        native["duration"]
            .as_f64()
            .map(|s| Value::from((s * 1e9).round() as u64))
            .unwrap_or(Value::Null),
    );
    same("source.ip", n("src_ip"));
    same("source.port", n("src_port"));
    same("destination.ip", n("dest_ip"));
    same("destination.port", n("dest_port"));
    // Each end's name: its fqdn, else its hostname (this host's side), and both in
    // related.hosts.
    let name = |side: &str| {
        let v = n(&format!("{side}_fqdn"));
        if v.is_null() {
            n(&format!("{side}_hostname"))
        } else {
            v
        }
    };
    let (src_name, dest_name) = (name("src"), name("dest"));
    same("source.domain", src_name.clone());
    same("destination.domain", dest_name.clone());
    let mut hosts: Vec<Value> = [src_name, dest_name]
        .into_iter()
        .filter(|v| !v.is_null())
        .collect();
    hosts.dedup();
    same(
        "related.hosts",
        if hosts.is_empty() {
            Value::Null
        } else {
            Value::Array(hosts)
        },
    );
    same("source.bytes", n("orig_bytes"));
    same("destination.bytes", n("resp_bytes"));
    same("source.packets", n("orig_pkts"));
    same("destination.packets", n("resp_pkts"));
    same(
        "network.bytes",
        match (native["in_bytes"].as_u64(), native["out_bytes"].as_u64()) {
            (Some(i), Some(o)) => (i + o).into(),
            _ => Value::Null,
        },
    );
    same("network.packets", n("packet_count"));
    same("network.transport", n("transport_protocol"));
    same("network.community_id", n("community_id"));
    same(
        "network.direction",
        if outbound { "egress" } else { "ingress" }.into(),
    );
    same("process.pid", n("pid"));
    same("process.entity_id", n("process_entity_id"));
    same("process.executable", n("image_path"));
    same("process.hash.sha256", n("image_sha256"));
    same("process.command_line", n("command_line"));
    same("process.start", n("process_start_time"));
    same("process.thread.id", n("tid"));
    same("process.thread.name", n("process_name"));
    same("process.parent.entity_id", n("parent_entity_id"));
    same("process.args", n("process_args"));
    same("process.parent.pid", n("ppid"));
    same("process.parent.executable", n("parent_exe"));
    same("process.parent.command_line", n("parent_command_line"));
    same(
        "process.name",
        native
            .get("exe")
            .or(native.get("process_name"))
            .cloned()
            .unwrap_or(Value::Null),
    );
    same("user.id", id_string("uid"));
    same("user.name", n("user"));
    same("group.id", id_string("gid"));
    same("group.name", n("group"));
    same("host.hostname", n("hostname"));
    same("host.id", n("host_id"));
    same("host.os.kernel", n("kernel_version"));
    same("container.id", n("container_id"));
    same("flow_agent.conn_state", n("conn_state"));
    same("flow_agent.history", n("history"));
    for k in TCP_DETAIL {
        same(&format!("flow_agent.{k}"), n(k));
    }
    same("flow_agent.interval", n("interval"));
    same("flow_agent.start_observed", n("start_observed"));
    same("flow_agent.netns", n("netns"));
    same("network.protocol", n("application_protocol"));
    same("flow_agent.app_protocol_source", n("app_protocol_source"));
    same("flow_agent.proto_info", n("proto_info"));
    same("tls.cipher", n("tls_cipher"));
    same("tls.next_protocol", n("tls_alpn"));
    same("tls.client.server_name", n("tls_server_name"));
    same("tls.client.ja3", n("ja3"));
    same("tls.server.ja3s", n("ja3s"));
    same("flow_agent.ja4", n("ja4"));
    same(
        "flow_agent.tls_client_hello_truncated",
        n("tls_client_hello_truncated"),
    );
    same(
        "tls.version",
        native["tls_version"]
            .as_str()
            .and_then(|v| v.split_once(' '))
            .map(|(_, number)| Value::from(number))
            .unwrap_or(Value::Null),
    );
    p
}
