//! `sysmon`: Sysmon for Linux Event ID 3 ("Network connection detected") as Sysmon for Linux
//! writes it to syslog: one `<Event>` element on one line, the `System` block with Sysmon's
//! values and the `EventData` fields in Sysmon's order. Sysmon writes event 3 once per
//! connection, so only `start` events produce a record. Field mapping: docs/formats.md.
use std::fmt::Write as _;
use std::time::SystemTime;

use super::{common, time, Encoder};
use crate::{
    flows::{dns_event::DnsEvent, FlowEvent},
    health::StatsEvent,
};

mod guid;
mod xml;

pub use guid::process_guid;

/// Sysmon for Linux's ETW provider id, as its records carry it.
const PROVIDER_GUID: &str = "{ff032593-a8d3-4f13-b0d6-01fc615a0f97}";
/// What Sysmon writes for a value it does not have.
const UNKNOWN: &str = "-";

pub struct SysmonEncoder {
    /// `EventRecordID`: 1 for this encoder's first record, then counting up.
    next_record_id: u64,
    /// `Execution ProcessID` and `Security UserId`: the writing process, as in Sysmon.
    pid: u32,
    euid: u32,
}

impl SysmonEncoder {
    pub fn new() -> Self {
        Self {
            next_record_id: 1,
            pid: std::process::id(),
            // SAFETY: geteuid has no preconditions and cannot fail.
            euid: unsafe { libc::geteuid() },
        }
    }

    fn record(&mut self, ev: &FlowEvent, now: SystemTime, tid: u32) -> String {
        self.record_of(3, &ev.hostname, &event_data(ev), now, tid)
    }

    /// One `<Event>` of `event_id` (its `Task` is the same number, as Sysmon writes it).
    fn record_of(
        &mut self,
        event_id: u32,
        hostname: &str,
        data: &[(&'static str, String)],
        now: SystemTime,
        tid: u32,
    ) -> String {
        let id = self.next_record_id;
        self.next_record_id += 1;
        let mut x = String::with_capacity(1536);
        x.push_str("<Event><System><Provider Name=\"Linux-Sysmon\" Guid=\"");
        x.push_str(PROVIDER_GUID);
        let _ = write!(
            x,
            "\"/><EventID>{event_id}</EventID><Version>5</Version><Level>4</Level>\
             <Task>{event_id}</Task>"
        );
        x.push_str("<Opcode>0</Opcode><Keywords>0x8000000000000000</Keywords>");
        let _ = write!(
            x,
            "<TimeCreated SystemTime=\"{}\"/><EventRecordID>{id}</EventRecordID><Correlation/>\
             <Execution ProcessID=\"{}\" ThreadID=\"{tid}\"/>\
             <Channel>Linux-Sysmon/Operational</Channel><Computer>",
            time::sysmon_system_time(now),
            self.pid,
        );
        xml::escape_into(&mut x, hostname);
        let _ = write!(
            x,
            "</Computer><Security UserId=\"{}\"/></System><EventData>",
            self.euid
        );
        for (name, value) in data {
            x.push_str("<Data Name=\"");
            x.push_str(name);
            x.push_str("\">");
            xml::escape_into(&mut x, value);
            x.push_str("</Data>");
        }
        x.push_str("</EventData></Event>");
        x
    }
}

impl Default for SysmonEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder for SysmonEncoder {
    fn encode_flow(&mut self, ev: &FlowEvent, out: &mut Vec<u8>) -> bool {
        if ev.event_action != "start" {
            return false;
        }
        let record = self.record(ev, SystemTime::now(), current_tid());
        out.extend_from_slice(record.as_bytes());
        true
    }

    fn encode_stats(&mut self, _stats: &StatsEvent, _out: &mut Vec<u8>) -> bool {
        false
    }

    /// No record of this format describes flows not seen: the summaries reach such outputs'
    /// readers through stats events of other outputs, the metrics and the agent's log.
    fn encode_suppressed(
        &mut self,
        _summary: &crate::ratelimit::SuppressedEvent,
        _out: &mut Vec<u8>,
    ) -> bool {
        false
    }

    /// Event 22 (DNSEvent), as Sysmon for Windows writes it: Sysmon for Linux has no DNS
    /// event of its own.
    fn encode_dns(&mut self, ev: &DnsEvent, out: &mut Vec<u8>) -> bool {
        let record = self.record_of(
            22,
            &ev.hostname,
            &dns_event_data(ev),
            SystemTime::now(),
            current_tid(),
        );
        out.extend_from_slice(record.as_bytes());
        true
    }
}

fn current_tid() -> u32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// The `EventData` of event 3, names in Sysmon's order, values not yet escaped.
pub fn event_data(ev: &FlowEvent) -> [(&'static str, String); 18] {
    let known = |v: Option<String>| v.unwrap_or_else(|| UNKNOWN.to_string());
    let user = ev.user.clone().or_else(|| ev.uid.map(|u| u.to_string()));
    [
        ("RuleName", UNKNOWN.to_string()),
        ("UtcTime", known(time::sysmon_utc_time(&ev.timestamp))),
        (
            "ProcessGuid",
            process_guid(ev.pid.and(ev.process_entity_id.as_deref())),
        ),
        ("ProcessId", known(ev.pid.map(|p| p.to_string()))),
        ("Image", known(ev.image_path.clone())),
        ("User", known(user)),
        ("Protocol", ev.transport_protocol.to_string()),
        ("Initiated", ev.local_orig.to_string()),
        ("SourceIsIpv6", common::is_ipv6(&ev.src_ip).to_string()),
        ("SourceIp", ev.src_ip.clone()),
        ("SourceHostname", UNKNOWN.to_string()),
        ("SourcePort", ev.src_port.to_string()),
        ("SourcePortName", UNKNOWN.to_string()),
        (
            "DestinationIsIpv6",
            common::is_ipv6(&ev.dest_ip).to_string(),
        ),
        ("DestinationIp", ev.dest_ip.clone()),
        ("DestinationHostname", UNKNOWN.to_string()),
        ("DestinationPort", ev.dest_port.to_string()),
        ("DestinationPortName", UNKNOWN.to_string()),
    ]
}

/// The `EventData` of event 22, names in Sysmon's order, values not yet escaped.
pub fn dns_event_data(ev: &DnsEvent) -> [(&'static str, String); 9] {
    let known = |v: Option<String>| v.unwrap_or_else(|| UNKNOWN.to_string());
    let p = &ev.process;
    let user = p.user.clone().or_else(|| p.uid.map(|u| u.to_string()));
    [
        ("RuleName", UNKNOWN.to_string()),
        ("UtcTime", known(time::sysmon_utc_time(&ev.timestamp))),
        (
            "ProcessGuid",
            process_guid(p.pid.and(p.process_entity_id.as_deref())),
        ),
        ("ProcessId", known(p.pid.map(|p| p.to_string()))),
        ("QueryName", ev.query_name.clone()),
        ("QueryStatus", query_status(ev.response_code_id).to_string()),
        ("QueryResults", query_results(ev)),
        ("Image", known(p.image_path.clone())),
        ("User", known(user)),
    ]
}

/// Windows' status of a DNS query: 0 for NOERROR, `DNS_ERROR_RCODE_*` (9000 + the RCODE)
/// for the error codes Windows names, else the RCODE itself.
pub fn query_status(rcode: u8) -> u32 {
    match rcode {
        1..=10 => 9000 + u32::from(rcode),
        r => u32::from(r),
    }
}

/// The answers as Windows writes them: `type:  5 <target>;` for a CNAME, the address
/// (IPv4 as `::ffff:a.b.c.d`) for A and AAAA, `type:  <n> ;` for others.
pub fn query_results(ev: &DnsEvent) -> String {
    let mut r = String::new();
    for a in &ev.answers {
        match (a.r#type.as_str(), &a.data) {
            ("A", Some(ip)) => {
                let _ = write!(r, "::ffff:{ip};");
            }
            ("AAAA", Some(ip)) => {
                let _ = write!(r, "{ip};");
            }
            ("CNAME", Some(target)) => {
                let _ = write!(r, "type:  5 {target};");
            }
            (t, _) => {
                let _ = write!(r, "type:  {t} ;");
            }
        }
    }
    if r.is_empty() {
        r.push_str(UNKNOWN);
    }
    r
}

#[cfg(test)]
mod tests;
