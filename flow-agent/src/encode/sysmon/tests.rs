use super::{event_data, SysmonEncoder};
use crate::encode::{fixtures::*, Encoder};
use crate::event::{Event, FlowAction, FlowEvent, WallTime};

fn encoder() -> SysmonEncoder {
    SysmonEncoder {
        next_record_id: 1,
        pid: 4242,
        euid: 0,
    }
}

const CREATED: u64 = 1_795_439_150_600_001;

fn record(enc: &mut SysmonEncoder, ev: &FlowEvent) -> String {
    let mut out = Vec::new();
    enc.record(ev, WallTime(CREATED * 1_000), 4243, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn start_is_event_3_as_sysmon_for_linux_writes_it() {
    let got = record(&mut encoder(), &tcp_out_start());
    let want = concat!(
        r#"<Event><System><Provider Name="Linux-Sysmon" Guid="{ff032593-a8d3-4f13-b0d6-01fc615a0f97}"/>"#,
        "<EventID>3</EventID><Version>5</Version><Level>4</Level><Task>3</Task><Opcode>0</Opcode>",
        "<Keywords>0x8000000000000000</Keywords>",
        r#"<TimeCreated SystemTime="2026-11-23T13:05:50.600001000Z"/>"#,
        "<EventRecordID>1</EventRecordID><Correlation/>",
        r#"<Execution ProcessID="4242" ThreadID="4243"/>"#,
        "<Channel>Linux-Sysmon/Operational</Channel><Computer>vm</Computer>",
        r#"<Security UserId="0"/></System><EventData>"#,
        r#"<Data Name="RuleName">-</Data>"#,
        r#"<Data Name="UtcTime">2026-11-23 13:05:50.542</Data>"#,
        r#"<Data Name="ProcessGuid">{3d1219c7-0000-0003-40ab-000017fc0000}</Data>"#,
        r#"<Data Name="ProcessId">6140</Data>"#,
        r#"<Data Name="Image">/usr/bin/curl</Data>"#,
        r#"<Data Name="User">root</Data>"#,
        r#"<Data Name="Protocol">tcp</Data>"#,
        r#"<Data Name="Initiated">true</Data>"#,
        r#"<Data Name="SourceIsIpv6">false</Data>"#,
        r#"<Data Name="SourceIp">127.0.0.1</Data>"#,
        r#"<Data Name="SourceHostname">vm</Data>"#,
        r#"<Data Name="SourcePort">33596</Data>"#,
        r#"<Data Name="SourcePortName">-</Data>"#,
        r#"<Data Name="DestinationIsIpv6">false</Data>"#,
        r#"<Data Name="DestinationIp">127.0.0.1</Data>"#,
        r#"<Data Name="DestinationHostname">-</Data>"#,
        r#"<Data Name="DestinationPort">18080</Data>"#,
        r#"<Data Name="DestinationPortName">-</Data>"#,
        "</EventData></Event>"
    );
    assert_eq!(got, want);
}

#[test]
fn only_starts_are_written_and_records_are_numbered() {
    let mut enc = SysmonEncoder::new();
    let mut out = Vec::new();
    for ev in [tcp_out_end(), udp6_update(), udp_in_end()] {
        assert!(!enc.encode(&Event::Flow(ev), &mut out));
    }
    assert!(!enc.encode(&Event::Stats(Box::new(stats())), &mut out));
    // Sysmon has no event id for it: not invented here.
    assert!(!enc.encode(&Event::RateLimited(Box::new(rate_limited())), &mut out));
    assert!(out.is_empty());
    for n in 1..=3 {
        out.clear();
        assert!(enc.encode(&Event::Flow(tcp_out_start()), &mut out));
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.contains(&format!("<EventRecordID>{n}</EventRecordID>")),
            "{text}"
        );
        assert!(text.contains(&format!(
            "<Execution ProcessID=\"{}\" ThreadID=\"",
            std::process::id()
        )));
    }
}

fn data(ev: &FlowEvent) -> Vec<(&'static str, String)> {
    event_data(ev)
        .into_iter()
        .map(|(name, value)| (name, value.to_string()))
        .collect()
}

#[test]
fn inbound_ipv6_and_unknown_process() {
    let inbound = FlowEvent {
        action: FlowAction::Start,
        ..tcp_in_end()
    };
    let d = data(&inbound);
    assert_eq!(d[7], ("Initiated", "false".to_string()));
    // Source is the initiator (the peer), as Sysmon reports accepted connections.
    assert_eq!(d[11], ("SourcePort", "33596".to_string()));
    assert_eq!(d[16], ("DestinationPort", "18080".to_string()));
    assert_eq!(d[5], ("User", "alice".to_string()));

    let v6 = FlowEvent {
        action: FlowAction::Start,
        ..udp6_update()
    };
    let d = data(&v6);
    assert_eq!(d[6].1, "udp");
    assert_eq!(d[8], ("SourceIsIpv6", "true".to_string()));
    assert_eq!(d[13], ("DestinationIsIpv6", "true".to_string()));
    assert_eq!(d[14].1, "2001:db8:1::53");
    // No image path, no user name: "-" and the numeric uid.
    assert_eq!(d[4], ("Image", "-".to_string()));
    assert_eq!(d[5], ("User", "101".to_string()));
    assert_eq!(d[2].1, "{00000000-0000-0000-0000-000000000000}");

    // Names: this host's on its side; the peer's address was not resolved.
    assert_eq!(d[10], ("SourceHostname", "vm".to_string()));
    assert_eq!(d[15], ("DestinationHostname", "-".to_string()));

    let d = data(&tcp_in_start_no_process());
    assert_eq!(d[2].1, "{00000000-0000-0000-0000-000000000000}");
    assert_eq!(d[3], ("ProcessId", "-".to_string()));
    assert_eq!(d[5], ("User", "-".to_string()));
}

#[test]
fn hostile_values_stay_inside_their_elements() {
    let ev = hostile_start();
    let rec = record(&mut encoder(), &ev);
    assert!(
        !rec.contains(['\n', '\r', '\t', '\u{1}', '\u{1b}']),
        "{rec}"
    );
    assert_eq!(rec.matches("<Data Name=").count(), 18);
    assert_eq!(rec.matches('<').count(), 18 * 2 + 29, "{rec}");
    let mut image = Vec::new();
    let process = ev.process.as_deref().unwrap();
    super::xml::escape_into(&mut image, process.image_path.as_deref().unwrap());
    let image = String::from_utf8(image).unwrap();
    assert!(rec.contains(&format!("<Data Name=\"Image\">{image}</Data>")));
    assert!(image.starts_with("/tmp/ev&quot;il&apos;&lt;x&gt;&amp;amp;&#10;&#13;&#9;\u{fffd}\u{fffd}\u{7f}\u{fffd}]]&gt;--&gt;"), "{image}");
    let mut host = Vec::new();
    super::xml::escape_into(&mut host, &ev.host.hostname);
    let host = String::from_utf8(host).unwrap();
    assert!(rec.contains(&format!("<Computer>{host}</Computer>")));
}

#[test]
fn dns_queries_are_event_22() {
    let mut enc = SysmonEncoder::new();
    let mut out = Vec::new();
    assert!(enc.encode(&Event::Dns(Box::new(dns_query())), &mut out));
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("<EventID>22</EventID>"), "{text}");
    assert!(text.contains("<Task>22</Task>"), "{text}");
    let data = text.split("<EventData>").nth(1).unwrap();
    assert_eq!(
        data,
        "<Data Name=\"RuleName\">-</Data>\
         <Data Name=\"UtcTime\">2026-11-23 13:06:00.000</Data>\
         <Data Name=\"ProcessGuid\">"
            .to_string()
            + &super::process_guid(Some("abc-4242"))
            + "</Data><Data Name=\"ProcessId\">4242</Data>\
               <Data Name=\"QueryName\">www.a.test</Data>\
               <Data Name=\"QueryStatus\">0</Data>\
               <Data Name=\"QueryResults\">type:  5 cdn.b.test;::ffff:10.0.0.1;</Data>\
               <Data Name=\"Image\">/usr/bin/curl</Data>\
               <Data Name=\"User\">alice</Data></EventData></Event>"
    );
    let mut nx = dns_query();
    nx.response_code = 3;
    nx.answers.clear();
    let d = super::dns_event_data(&nx).map(|(name, value)| (name, value.to_string()));
    assert_eq!(d[5], ("QueryStatus", "9003".to_string()));
    assert_eq!(d[6], ("QueryResults", "-".to_string()));
}

#[test]
fn other_answer_types_are_written_by_name() {
    use crate::event::DnsAnswer;
    let answer = |rtype, data: Option<&str>| DnsAnswer {
        name: "a.test".into(),
        rtype,
        ttl: 1,
        data: data.map(String::from),
    };
    let mut ev = dns_query();
    ev.answers = vec![
        answer(28, Some("2001:db8::1")),
        answer(15, None),
        answer(99, None),
        answer(5, Some("x<y")),
    ];
    let d = super::dns_event_data(&ev).map(|(name, value)| (name, value.to_string()));
    assert_eq!(
        d[6].1,
        "2001:db8::1;type:  MX ;type:  TYPE99 ;type:  5 x<y;"
    );
    let mut out = Vec::new();
    assert!(SysmonEncoder::new().encode(&Event::Dns(Box::new(ev)), &mut out));
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("type:  5 x&lt;y;</Data>"), "{text}");
}

#[test]
fn hostnames_are_this_hosts_and_the_resolved_remotes() {
    let d = data(&named(tcp_out_start()));
    assert_eq!(d[10], ("SourceHostname", "vm".to_string()));
    assert_eq!(d[15], ("DestinationHostname", "www.a.test".to_string()));
    let inbound = named(FlowEvent {
        action: FlowAction::Start,
        ..tcp_in_end()
    });
    let d = data(&inbound);
    assert_eq!(d[10], ("SourceHostname", "www.a.test".to_string()));
    assert_eq!(d[15], ("DestinationHostname", "vm.example.org".to_string()));
}

#[test]
fn process_events_are_events_1_and_5_with_event_3s_process_guid() {
    let mut enc = SysmonEncoder::new();
    let text = |enc: &mut SysmonEncoder, ev: Event| {
        let mut out = Vec::new();
        assert!(enc.encode(&ev, &mut out));
        String::from_utf8(out).unwrap()
    };
    let start = text(&mut enc, Event::Process(Box::new(process_start())));
    let flow = text(&mut enc, Event::Flow(tcp_out_start()));
    let end = text(&mut enc, Event::Process(Box::new(process_end())));
    let guid = |s: &str| {
        let at = s.find("<Data Name=\"ProcessGuid\">").unwrap() + 26;
        s[at..at + 38].to_string()
    };
    assert!(
        start.contains("<EventID>1</EventID><Version>5</Version>"),
        "{start}"
    );
    assert!(
        end.contains("<EventID>5</EventID><Version>3</Version>"),
        "{end}"
    );
    assert_eq!(guid(&start), guid(&flow));
    assert_eq!(guid(&end), guid(&flow));
    assert!(start.contains("<Data Name=\"CommandLine\">curl"), "{start}");
    assert!(
        end.contains("<Data Name=\"Image\">/usr/bin/curl</Data>"),
        "{end}"
    );
}
