//! Sysmon for Linux Event ID 3 ("Network connection detected"), 1 and 5 (process create and
//! terminated), and 22 (DNS, as Sysmon for Windows writes it), as Sysmon for Linux writes them
//! to syslog: one well-formed `<Event>` with the `System` block's elements in order (the spec
//! fixture, from its outputxml.cpp) and values, and the event's `EventData` fields in the
//! order and with the types of Sysmon's manifest (the spec fixture).
use super::fixture;
use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use std::net::IpAddr;

/// Constant text of System elements of every event (EventID, Version and Task are the
/// event's own: its id, its manifest version, its id again).
const SYSTEM_TEXT: &[(&str, &str)] = &[
    ("Level", "4"),
    ("Opcode", "0"),
    ("Keywords", "0x8000000000000000"),
    ("Channel", "Linux-Sysmon/Operational"),
];
const PROVIDER_GUID: &str = "{ff032593-a8d3-4f13-b0d6-01fc615a0f97}";
#[derive(Debug)]
pub struct Elem {
    pub name: String,
    pub text: String,
    pub attrs: Vec<(String, String)>,
    pub children: usize,
}

impl Elem {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One parsed record.
#[derive(Debug)]
pub struct Record {
    pub system: Vec<Elem>,
    pub data: Vec<(String, String)>,
}

impl Record {
    pub fn data(&self, name: &str) -> &str {
        self.data
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("<absent>")
    }

    pub fn system(&self, name: &str) -> Option<&Elem> {
        self.system.iter().find(|e| e.name == name)
    }
}

fn elem(n: roxmltree::Node) -> Elem {
    Elem {
        name: n.tag_name().name().to_string(),
        text: n.text().unwrap_or_default().to_string(),
        attrs: n
            .attributes()
            .map(|a| (a.name().to_string(), a.value().to_string()))
            .collect(),
        children: n.children().filter(|c| c.is_element()).count(),
    }
}

/// Parses one line: well-formed XML, `<Event>` with exactly `System` and `EventData`, and
/// `Data` elements that hold only text.
pub fn parse(line: &str) -> Result<Record> {
    ensure!(!line.contains(['\n', '\r']), "record spans lines");
    let doc = roxmltree::Document::parse(line).context("not well-formed XML")?;
    let root = doc.root_element();
    ensure!(
        root.tag_name().name() == "Event",
        "root is <{}>",
        root.tag_name().name()
    );
    let parts: Vec<roxmltree::Node> = root.children().filter(|c| c.is_element()).collect();
    let [system, data] = parts.as_slice() else {
        bail!(
            "<Event> has {} child elements, want System and EventData",
            parts.len()
        );
    };
    ensure!(
        system.tag_name().name() == "System" && data.tag_name().name() == "EventData",
        "<Event> children are {} and {}",
        system.tag_name().name(),
        data.tag_name().name()
    );
    let mut fields = Vec::new();
    for d in data.children().filter(|c| c.is_element()) {
        ensure!(
            d.tag_name().name() == "Data",
            "<{}> in EventData",
            d.tag_name().name()
        );
        ensure!(
            d.children().all(|c| c.is_text()),
            "Data element with markup inside"
        );
        let name = d.attribute("Name").context("Data without Name")?;
        fields.push((name.to_string(), d.text().unwrap_or_default().to_string()));
    }
    Ok(Record {
        system: system
            .children()
            .filter(|c| c.is_element())
            .map(elem)
            .collect(),
        data: fields,
    })
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `2026-11-23T13:05:50.542313000Z`.
fn is_system_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 30 && s.ends_with('Z') && b[10] == b'T' && b[19] == b'.' && super::times::is_time(s)
}

/// `2026-11-23 13:05:50.542`.
fn is_utc_time(s: &str) -> bool {
    s.len() == 23
        && s.as_bytes()[10] == b' '
        && super::times::is_time(&format!("{}Z", s.replacen(' ', "T", 1)))
}

/// `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}`, lower-case hex.
fn is_guid(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
        return false;
    };
    inner.split('-').map(str::len).eq([8, 4, 4, 4, 12])
        && inner
            .bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The System block and the EventData names, order and value formats.
pub fn check_record(rec: &Record, agent_pid: u32, record_id: u64, euid: u32) -> Vec<String> {
    let mut p = Vec::new();
    let manifest = fixture::sysmon();
    let names: Vec<&str> = rec.system.iter().map(|e| e.name.as_str()).collect();
    let system: Vec<&str> = manifest.system.iter().map(|(n, _)| *n).collect();
    if names != system {
        p.push(format!(
            "System elements {names:?}, Sysmon writes {system:?}"
        ));
    }
    for (name, attrs) in &manifest.system {
        for a in attrs {
            let el = rec.system(name);
            let ok = match a.split_once('=') {
                Some(("", text)) => el.is_some_and(|e| e.text == text),
                Some((attr, value)) => el.and_then(|e| e.attr(attr)) == Some(value),
                None => el.and_then(|e| e.attr(a)).is_some(),
            };
            if !ok {
                p.push(format!("System/{name} lacks {a}: {el:?}"));
            }
        }
    }
    let id = rec
        .system("EventID")
        .map_or(String::new(), |e| e.text.clone());
    let dns = id == "22";
    let Some(event) = manifest.events.get(id.as_str()) else {
        p.push(format!("EventID {id:?} is no event of the manifest"));
        return p;
    };
    let event_data: Vec<&str> = event.data.iter().map(|(n, _)| *n).collect();
    let own = [
        ("EventID", id.as_str()),
        ("Version", event.version),
        ("Task", id.as_str()),
    ];
    let system_text = own.iter().chain(SYSTEM_TEXT).copied();
    for (name, want) in system_text {
        let got = rec.system(name).map(|e| e.text.as_str());
        if got != Some(want) {
            p.push(format!("System/{name} {got:?}, want {want:?}"));
        }
    }
    let attr = |name: &str, a: &str| {
        rec.system(name)
            .and_then(|e| e.attr(a))
            .unwrap_or("<absent>")
    };
    if attr("Provider", "Name") != "Linux-Sysmon" || attr("Provider", "Guid") != PROVIDER_GUID {
        p.push(format!("Provider {:?}", rec.system("Provider")));
    }
    if !is_system_time(attr("TimeCreated", "SystemTime")) {
        p.push(format!(
            "TimeCreated SystemTime {:?}",
            attr("TimeCreated", "SystemTime")
        ));
    }
    let record = rec.system("EventRecordID").map(|e| e.text.as_str());
    if record != Some(&*record_id.to_string()) {
        p.push(format!(
            "EventRecordID {record:?}, want {record_id} (numbered from 1)"
        ));
    }
    if rec
        .system("Correlation")
        .is_some_and(|e| !e.attrs.is_empty() || e.children > 0 || !e.text.is_empty())
    {
        p.push("Correlation is not empty".into());
    }
    if attr("Execution", "ProcessID") != agent_pid.to_string()
        || !all_digits(attr("Execution", "ThreadID"))
    {
        p.push(format!(
            "Execution {:?}, want ProcessID {agent_pid}",
            rec.system("Execution")
        ));
    }
    if attr("Security", "UserId") != euid.to_string() {
        p.push(format!(
            "Security UserId {:?}, want {euid}",
            attr("Security", "UserId")
        ));
    }
    let data_names: Vec<&str> = rec.data.iter().map(|(k, _)| k.as_str()).collect();
    if data_names != event_data {
        p.push(format!(
            "EventData names {data_names:?}, Sysmon writes {event_data:?}"
        ));
    }
    for (name, in_type) in &event.data {
        let v = rec.data(name);
        let ok = match *in_type {
            "win:Boolean" => ["true", "false"].contains(&v),
            "win:UInt16" => v.parse::<u16>().is_ok(),
            // `-` without a process, as Sysmon writes unknown values.
            "win:UInt32" => v == "-" || v.parse::<u32>().is_ok(),
            "win:GUID" => is_guid(v),
            _ => true,
        };
        if !ok {
            p.push(format!("{name} {v:?} is not a {in_type}"));
        }
    }
    let d = |k: &str| rec.data(k).to_string();
    let mut expect = |ok: bool, what: &str| {
        if !ok {
            p.push(format!("{what}: {:?}", rec.data(what)));
        }
    };
    expect(is_utc_time(&d("UtcTime")), "UtcTime");
    expect(is_guid(&d("ProcessGuid")), "ProcessGuid");
    expect(
        d("ProcessId") == "-" || all_digits(&d("ProcessId")),
        "ProcessId",
    );
    if id == "1" || id == "5" {
        expect(!d("Image").is_empty(), "Image");
        return p;
    }
    if dns {
        expect(all_digits(&d("QueryStatus")), "QueryStatus");
        expect(!d("QueryName").is_empty(), "QueryName");
        expect(
            d("QueryResults") == "-" || d("QueryResults").ends_with(';'),
            "QueryResults",
        );
        return p;
    }
    expect(["tcp", "udp"].contains(&d("Protocol").as_str()), "Protocol");
    for side in ["Source", "Destination"] {
        let (ip, is_v6, port) = (
            format!("{side}Ip"),
            format!("{side}IsIpv6"),
            format!("{side}Port"),
        );
        let addr = d(&ip).parse::<IpAddr>();
        expect(addr.is_ok(), &ip);
        let v6 = addr.as_ref().is_ok_and(IpAddr::is_ipv6).to_string();
        expect(d(&is_v6) == v6, &is_v6);
        expect(d(&port).parse::<u16>().is_ok(), &port);
    }
    expect(
        ["true", "false"].contains(&d("Initiated").as_str()),
        "Initiated",
    );
    p
}

/// What an XML reader gets back for `s`: characters XML 1.0 cannot carry become U+FFFD.
pub fn xml_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// The event 22 record says what the native `dns_query` event says (docs/formats.md).
fn dns_values(native: &Value) -> Vec<(&'static str, String)> {
    let rcode = native["response_code_id"].as_u64().unwrap_or(0);
    let status = if (1..=10).contains(&rcode) {
        9000 + rcode
    } else {
        rcode
    };
    let mut results = String::new();
    for a in native["answers"].as_array().into_iter().flatten() {
        let data = a["data"].as_str().unwrap_or_default();
        match a["type"].as_str().unwrap_or_default() {
            "A" => results.push_str(&format!("::ffff:{data};")),
            "AAAA" => results.push_str(&format!("{data};")),
            "CNAME" => results.push_str(&format!("type:  5 {data};")),
            t => results.push_str(&format!("type:  {t} ;")),
        }
    }
    if results.is_empty() {
        results.push('-');
    }
    vec![
        (
            "QueryName",
            xml_text(native["query_name"].as_str().unwrap_or_default()),
        ),
        ("QueryStatus", status.to_string()),
        ("QueryResults", xml_text(&results)),
    ]
}

/// The record says what the native start (or `dns_query`) event says.
pub fn check_values(rec: &Record, native: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let dns = native["event_action"] == "dns_query";
    if dns {
        for (k, v) in dns_values(native) {
            if rec.data(k) != v {
                p.push(format!("{k} {:?}, native says {v:?}", rec.data(k)));
            }
        }
    }
    let s = |k: &str| match native.get(k) {
        Some(Value::String(s)) => Some(xml_text(s)),
        Some(v) if !v.is_null() => Some(v.to_string()),
        _ => None,
    };
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let ts = native["timestamp"].as_str().unwrap_or_default();
    let want = [
        (
            "UtcTime",
            ts.get(..23).unwrap_or_default().replacen('T', " ", 1),
        ),
        ("ProcessId", dash(s("pid"))),
        ("Image", dash(s("image_path"))),
        ("User", dash(s("user").or_else(|| s("uid")))),
    ];
    let network = [
        ("Protocol", dash(s("transport_protocol"))),
        ("Initiated", dash(s("local_orig"))),
        ("SourceIp", dash(s("src_ip"))),
        ("SourcePort", dash(s("src_port"))),
        ("DestinationIp", dash(s("dest_ip"))),
        ("DestinationPort", dash(s("dest_port"))),
        // This host's fqdn (else hostname) on its side, the remote's resolved name on the other.
        (
            "SourceHostname",
            dash(s("src_fqdn").or_else(|| s("src_hostname"))),
        ),
        (
            "DestinationHostname",
            dash(s("dest_fqdn").or_else(|| s("dest_hostname"))),
        ),
    ];
    let network = if dns { &[][..] } else { &network[..] };
    for (k, v) in want.iter().chain(network) {
        if rec.data(k) != v {
            p.push(format!("{k} {:?}, native says {v:?}", rec.data(k)));
        }
    }
    // The GUID carries the entity id's hex digits.
    let guid: String = rec
        .data("ProcessGuid")
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect();
    let want_guid = match (native.get("pid"), native["process_entity_id"].as_str()) {
        (Some(_), Some(id)) => format!("{}0000", id.replace('-', "")),
        _ => "0".repeat(32),
    };
    if guid != want_guid {
        p.push(format!(
            "ProcessGuid {} for process_entity_id {}",
            rec.data("ProcessGuid"),
            native["process_entity_id"]
        ));
    }
    let computer = rec
        .system("Computer")
        .map(|e| e.text.clone())
        .unwrap_or_default();
    if Some(computer.clone()) != s("hostname") {
        p.push(format!(
            "Computer {computer:?}, native hostname {}",
            native["hostname"]
        ));
    }
    p
}
