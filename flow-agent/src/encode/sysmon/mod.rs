//! `sysmon`: Sysmon for Linux Event ID 3 ("Network connection detected") as Sysmon for Linux
//! writes it to syslog: one `<Event>` element on one line, the `System` block with Sysmon's
//! values and the `EventData` fields in Sysmon's order. Sysmon writes event 3 once per
//! connection, so only `start` events produce a record. Process events are events 1 and 5
//! (process.rs), DNS answers event 22. Field mapping: docs/formats.md.
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::net::IpAddr;

use super::{common, time, Encoder};
use crate::{
    event::{
        DnsAnswer, DnsEvent, Event, FlowAction, FlowEvent, ProcessEvent, ProcessIdentity, WallTime,
    },
    proto::dns::type_name,
};

mod guid;
mod process;
mod xml;

pub(crate) use guid::{process_guid, Guid};

/// Sysmon for Linux's ETW provider id, as its records carry it.
const PROVIDER_GUID: &str = "{ff032593-a8d3-4f13-b0d6-01fc615a0f97}";
/// What Sysmon writes for a value it does not have.
const UNKNOWN: &str = "-";

pub(crate) struct SysmonEncoder {
    /// `EventRecordID`: 1 for this encoder's first record, then counting up.
    next_record_id: u64,
    /// `Execution ProcessID` and `Security UserId`: the writing process, as in Sysmon.
    pid: u32,
    euid: u32,
}

impl SysmonEncoder {
    pub(crate) fn new() -> Self {
        Self {
            next_record_id: 1,
            pid: std::process::id(),
            // SAFETY: geteuid has no preconditions and cannot fail.
            euid: unsafe { libc::geteuid() },
        }
    }

    fn record(&mut self, ev: &FlowEvent, now: WallTime, tid: u32, out: &mut Vec<u8>) {
        self.record_of(3, &ev.host.hostname, &event_data(ev), now, tid, out)
    }

    /// Appends one `<Event>` of `event_id` (its `Task` is the same number, as Sysmon writes
    /// it) to `out`.
    fn record_of(
        &mut self,
        event_id: u32,
        hostname: &str,
        data: &[(&'static str, Value)],
        now: WallTime,
        tid: u32,
        out: &mut Vec<u8>,
    ) {
        let id = self.next_record_id;
        self.next_record_id += 1;
        out.reserve(1536);
        out.extend_from_slice(b"<Event><System><Provider Name=\"Linux-Sysmon\" Guid=\"");
        out.extend_from_slice(PROVIDER_GUID.as_bytes());
        // Writing to a Vec cannot fail.
        let _ = write!(
            out,
            "\"/><EventID>{event_id}</EventID><Version>{}</Version><Level>4</Level>\
             <Task>{event_id}</Task>",
            version(event_id)
        );
        out.extend_from_slice(b"<Opcode>0</Opcode><Keywords>0x8000000000000000</Keywords>");
        let _ = write!(
            out,
            "<TimeCreated SystemTime=\"{}\"/><EventRecordID>{id}</EventRecordID><Correlation/>\
             <Execution ProcessID=\"{}\" ThreadID=\"{tid}\"/>\
             <Channel>Linux-Sysmon/Operational</Channel><Computer>",
            time::sysmon_system_time(now),
            self.pid,
        );
        xml::escape_into(out, hostname);
        let _ = write!(
            out,
            "</Computer><Security UserId=\"{}\"/></System><EventData>",
            self.euid
        );
        for (name, value) in data {
            out.extend_from_slice(b"<Data Name=\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\">");
            let _ = write!(xml::Escaped(out), "{value}");
            out.extend_from_slice(b"</Data>");
        }
        out.extend_from_slice(b"</EventData></Event>");
    }

    fn encode_flow(&mut self, ev: &FlowEvent, out: &mut Vec<u8>) -> bool {
        if ev.action != FlowAction::Start {
            return false;
        }
        self.record(ev, WallTime::now(), current_tid(), out);
        true
    }

    /// Event 22 (DNSEvent), as Sysmon for Windows writes it: Sysmon for Linux has no DNS
    /// event of its own.
    fn encode_dns(&mut self, ev: &DnsEvent, out: &mut Vec<u8>) -> bool {
        self.record_of(
            22,
            &ev.host.hostname,
            &dns_event_data(ev),
            WallTime::now(),
            current_tid(),
            out,
        );
        true
    }
}

impl SysmonEncoder {
    /// Event 1 at exec, event 5 at exit.
    fn encode_process(&mut self, ev: &ProcessEvent, out: &mut Vec<u8>) -> bool {
        let id = process::event_id(ev);
        let host = &ev.host.hostname;
        let (now, tid) = (WallTime::now(), current_tid());
        if id == 1 {
            let hashes = process::hashes(&ev.process);
            self.record_of(id, host, &process::create_data(ev, &hashes), now, tid, out);
        } else {
            self.record_of(id, host, &process::terminate_data(ev), now, tid, out);
        }
        true
    }
}

/// The manifest's version of each event this encoder writes.
fn version(event_id: u32) -> u32 {
    match event_id {
        5 => 3,
        _ => 5,
    }
}

impl Default for SysmonEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder for SysmonEncoder {
    /// Event 3 for flow starts, event 22 for DNS queries, events 1 and 5 for process starts
    /// and ends. No record for stats, nor for
    /// summaries of suppressed flows: Sysmon has no event id for flows not seen (the summaries
    /// reach such outputs' readers through stats events of other outputs, the metrics and the
    /// agent's log).
    fn encode(&mut self, event: &Event, out: &mut Vec<u8>) -> bool {
        match event {
            Event::Flow(ev) => self.encode_flow(ev, out),
            Event::Dns(ev) => self.encode_dns(ev, out),
            Event::Process(ev) => self.encode_process(ev, out),
            Event::Stats(_) | Event::RateLimited(_) => false,
        }
    }
}

fn current_tid() -> u32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// One `EventData` value, borrowed or formatted in place; `Display` gives its text not yet
/// escaped.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value<'a> {
    Text(&'a str),
    /// A time in Sysmon's layout.
    Time(String),
    Guid(Guid),
    Number(u64),
    Bool(bool),
    Ip(IpAddr),
    /// A DNS answer section as Windows writes it ([`QueryResults`]).
    Results(&'a [DnsAnswer]),
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Value::Text(s) => f.write_str(s),
            Value::Time(s) => f.write_str(s),
            Value::Guid(g) => f.write_str(g),
            Value::Number(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Ip(ip) => write!(f, "{ip}"),
            Value::Results(answers) => write!(f, "{}", QueryResults(answers)),
        }
    }
}

/// The process's `ProcessGuid`, `ProcessId`, `Image` and `User` values.
fn process_values(p: Option<&ProcessIdentity>) -> [Value<'_>; 4] {
    let unknown = Value::Text(UNKNOWN);
    let Some(p) = p else {
        return [
            Value::Guid(process_guid(None)),
            unknown.clone(),
            unknown.clone(),
            unknown,
        ];
    };
    let image = p.image_path.as_deref().map_or(unknown, Value::Text);
    let user = p
        .user
        .as_deref()
        .map_or(Value::Number(u64::from(p.uid)), Value::Text);
    [
        Value::Guid(process_guid(p.entity_id.as_deref())),
        Value::Number(u64::from(p.pid)),
        image,
        user,
    ]
}

/// The `EventData` of event 3, names in Sysmon's order, values not yet escaped.
pub(crate) fn event_data<'a>(ev: &'a FlowEvent) -> [(&'static str, Value<'a>); 18] {
    let unknown = || Value::Text(UNKNOWN);
    let [guid, pid, image, user] = process_values(ev.process.as_deref());
    let (src, dest) = (ev.src(), ev.dest());
    // This host's fqdn (else hostname) on its side, the remote's name from DNS on the other.
    let (src_name, dest_name) = common::end_names(ev);
    let name = |n: Option<&'a str>| n.map_or(Value::Text(UNKNOWN), Value::Text);
    [
        ("RuleName", unknown()),
        ("UtcTime", Value::Time(time::sysmon_utc_time(ev.time))),
        ("ProcessGuid", guid),
        ("ProcessId", pid),
        ("Image", image),
        ("User", user),
        ("Protocol", Value::Text(ev.transport.as_str())),
        ("Initiated", Value::Bool(ev.local_orig())),
        ("SourceIsIpv6", Value::Bool(src.0.is_ipv6())),
        ("SourceIp", Value::Ip(src.0)),
        ("SourceHostname", name(src_name)),
        ("SourcePort", Value::Number(u64::from(src.1))),
        ("SourcePortName", unknown()),
        ("DestinationIsIpv6", Value::Bool(dest.0.is_ipv6())),
        ("DestinationIp", Value::Ip(dest.0)),
        ("DestinationHostname", name(dest_name)),
        ("DestinationPort", Value::Number(u64::from(dest.1))),
        ("DestinationPortName", unknown()),
    ]
}

/// The `EventData` of event 22, names in Sysmon's order, values not yet escaped.
pub(crate) fn dns_event_data(ev: &DnsEvent) -> [(&'static str, Value<'_>); 9] {
    let [guid, pid, image, user] = process_values(ev.process.as_deref());
    [
        ("RuleName", Value::Text(UNKNOWN)),
        ("UtcTime", Value::Time(time::sysmon_utc_time(ev.time))),
        ("ProcessGuid", guid),
        ("ProcessId", pid),
        ("QueryName", Value::Text(&ev.query_name)),
        (
            "QueryStatus",
            Value::Number(u64::from(query_status(ev.response_code))),
        ),
        ("QueryResults", Value::Results(&ev.answers)),
        ("Image", image),
        ("User", user),
    ]
}

/// Windows' status of a DNS query: 0 for NOERROR, `DNS_ERROR_RCODE_*` (9000 + the RCODE)
/// for the error codes Windows names, else the RCODE itself.
pub(crate) fn query_status(rcode: u8) -> u32 {
    match rcode {
        1..=10 => 9000 + u32::from(rcode),
        r => u32::from(r),
    }
}

/// The answers as Windows writes them: `type:  5 <target>;` for a CNAME, the address
/// (IPv4 as `::ffff:a.b.c.d`) for A and AAAA, `type:  <type name> ;` for others; `-` when
/// there are none.
pub(crate) struct QueryResults<'a>(pub(crate) &'a [DnsAnswer]);

impl fmt::Display for QueryResults<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str(UNKNOWN);
        }
        for a in self.0 {
            match (a.rtype, &a.data) {
                (1, Some(ip)) => write!(f, "::ffff:{ip};")?,
                (28, Some(ip)) => write!(f, "{ip};")?,
                (5, Some(target)) => write!(f, "type:  5 {target};")?,
                (t, _) => write!(f, "type:  {} ;", type_name(t))?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
