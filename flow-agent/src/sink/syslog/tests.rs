//! Configuration checks and the transport against in-test servers; the real forwarders
//! (rsyslog, syslog-ng) are in tests/tests/syslog_sink.rs.
use tokio::{io::AsyncReadExt, net::TcpListener};

use super::{
    config::{Framing, Resolved, SyslogConfig, TransportKind},
    transport::SyslogTransport,
};
use crate::sink::delivery::{Transport, TransportError};

fn parse(toml_text: &str) -> SyslogConfig {
    toml::from_str(toml_text).unwrap()
}

fn resolve_err(toml_text: &str) -> String {
    parse(toml_text).resolve().unwrap_err().to_string()
}

#[test]
fn defaults_follow_the_address() {
    let r = parse("").resolve().unwrap();
    assert_eq!(
        (r.transport, r.address.as_str(), r.framing),
        (TransportKind::Unix, "/dev/log", None)
    );
    assert_eq!(r.pri, 16 * 8 + 6, "local0.info");
    let r = parse("address = \"127.0.0.1:514\"").resolve().unwrap();
    assert_eq!(r.max_message_bytes, 65536);
    assert_eq!(
        (r.transport, r.framing),
        (TransportKind::Tcp, Some(Framing::OctetCounting))
    );
    let r = parse("transport = \"unix-stream\"").resolve().unwrap();
    assert_eq!(r.framing, Some(Framing::Newline));
    let r = parse("transport = \"tls\"\naddress = \"logs.example.org:6514\"")
        .resolve()
        .unwrap();
    let tls = r.tls.unwrap();
    assert_eq!(tls.server_name, "logs.example.org");
    assert_eq!(
        tls.ca_file.to_str(),
        Some("/etc/ssl/certs/ca-certificates.crt")
    );
    let r = parse("transport = \"udp\"\naddress = \"h:514\"")
        .resolve()
        .unwrap();
    assert_eq!(r.max_message_bytes, 65507);
    let r = parse("address = \"[::1]:514\"\nfacility = 4\nseverity = \"warning\"")
        .resolve()
        .unwrap();
    assert_eq!(r.pri, 4 * 8 + 4);
}

#[test]
fn mistakes_are_named() {
    assert!(resolve_err("transport = \"udp\"").contains("needs an address"));
    assert!(resolve_err("transport = \"unix\"\naddress = \"dev/log\"").contains("absolute"));
    assert!(resolve_err("address = \"localhost\"").contains("host:port"));
    assert!(resolve_err("address = \"::1:514\"").contains("host:port"));
    assert!(
        resolve_err("transport = \"udp\"\naddress = \"h:1\"\nframing = \"newline\"")
            .contains("stream transports")
    );
    assert!(resolve_err("facility = \"local9\"").contains("unknown facility"));
    assert!(resolve_err("severity = 8").contains("out of range"));
    assert!(resolve_err("app_name = \"flow agent\"").contains("app_name"));
    assert!(resolve_err("address = \"h:1\"\nca_file = \"/x\"").contains("tls only"));
    assert!(
        resolve_err("transport = \"tls\"\naddress = \"h:1\"\nclient_cert = \"/c\"")
            .contains("go together")
    );
    assert!(
        resolve_err("transport = \"udp\"\naddress = \"h:1\"\nmax_message_bytes = 70000")
            .contains("65507")
    );
    // The local form (unix transports) ends its tag at '[' or ':'; RFC 5424 has no such limit.
    assert!(resolve_err("app_name = \"flow:agent\"").contains("ends the tag"));
    assert!(
        resolve_err("transport = \"unix-stream\"\napp_name = \"f[1]\"").contains("ends the tag")
    );
    assert!(parse("address = \"h:1\"\napp_name = \"flow:agent\"")
        .resolve()
        .is_ok());
    assert!(toml::from_str::<SyslogConfig>("transport = \"relp\"").is_err());
    assert!(toml::from_str::<SyslogConfig>("adress = \"h:1\"").is_err());
}

fn tcp(address: String, framing: Framing) -> SyslogTransport {
    SyslogTransport::new(
        Resolved {
            transport: TransportKind::Tcp,
            address,
            framing: Some(framing),
            pri: 134,
            max_message_bytes: 65536,
            tls: None,
        },
        None,
    )
}

fn batch(range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    range
        .map(|i| format!("<134>1 - - - - - - m{i}").into_bytes())
        .collect()
}

#[tokio::test]
async fn tcp_frames_each_message_and_reports_a_refused_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut t = tcp(addr.clone(), Framing::OctetCounting);
    t.send(&batch(0..2)).await.unwrap();
    let mut n = tcp(addr, Framing::Newline);
    n.send(&batch(2..3)).await.unwrap();
    drop((t, n));
    let mut got = Vec::new();
    for _ in 0..2 {
        let (mut s, _) = listener.accept().await.unwrap();
        s.read_to_end(&mut got).await.unwrap();
    }
    assert_eq!(
        String::from_utf8(got).unwrap(),
        "21 <134>1 - - - - - - m021 <134>1 - - - - - - m1<134>1 - - - - - - m2\n"
    );
    drop(listener);
    let mut t = tcp("127.0.0.1:1".into(), Framing::OctetCounting);
    match t.send(&batch(0..1)).await {
        Err(TransportError::Retry(m)) => assert!(m.contains("connecting"), "{m}"),
        other => panic!("expected Retry, got {other:?}"),
    }
}

#[tokio::test]
async fn messages_a_server_may_not_have_read_are_sent_again_after_a_reconnect() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut t = tcp(addr, Framing::OctetCounting);
    t.send(&batch(0..50)).await.unwrap();
    // The server dies without reading: what the kernel took is gone.
    let (first, _) = listener.accept().await.unwrap();
    drop(first);
    // Wait until the transport can see the connection is closed.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    t.send(&batch(50..60)).await.unwrap();
    drop(t);
    let (mut second, _) = listener.accept().await.unwrap();
    let mut got = Vec::new();
    second.read_to_end(&mut got).await.unwrap();
    let mut want = Vec::new();
    for m in batch(0..60) {
        super::message::frame(Some(Framing::OctetCounting), &m, &mut want);
    }
    assert_eq!(
        String::from_utf8(got).unwrap(),
        String::from_utf8(want).unwrap()
    );
}

type Messages = std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

/// Records what the syslog sink hands to delivery.
struct Captured(Messages);

impl crate::sink::Sink for Captured {
    fn submit(&mut self, record: &[u8]) {
        self.0.lock().unwrap().push(record.to_vec());
    }
    fn flush(&mut self) {}
    fn close(self: Box<Self>) -> crate::sink::CloseFuture {
        Box::pin(async {})
    }
}

fn sink_with(
    framing: Option<Framing>,
    oversize: super::Oversize,
) -> (
    super::SyslogSink,
    Messages,
    std::sync::Arc<crate::sink::SinkStats>,
) {
    sink_of(framing, oversize, crate::encode::Format::Native, 600)
}

fn sink_of(
    framing: Option<Framing>,
    oversize: super::Oversize,
    format: crate::encode::Format,
    max_message_bytes: usize,
) -> (
    super::SyslogSink,
    Messages,
    std::sync::Arc<crate::sink::SinkStats>,
) {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stats = std::sync::Arc::new(crate::sink::SinkStats::new("t".into(), "syslog", "native"));
    let sink = super::SyslogSink {
        inner: Box::new(Captured(got.clone())),
        header: super::message::Header::rfc5424(134, "h", "flow-agent", 7, "flow"),
        newline_framing: framing == Some(Framing::Newline),
        max_message_bytes,
        oversize,
        format,
        stats: stats.clone(),
        message: Vec::new(),
        limiter: Default::default(),
        shortened: Default::default(),
    };
    (sink, got, stats)
}

#[test]
fn line_feeds_under_newline_framing_and_long_messages_are_dropped_and_counted() {
    use crate::sink::Sink;
    use std::sync::atomic::Ordering::Relaxed;
    let (mut sink, got, stats) = sink_with(Some(Framing::Newline), super::Oversize::Drop);
    sink.submit(b"{\"ok\":1}");
    sink.submit(b"<a>\n</a>");
    sink.submit(&[b'x'; 600]);
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1);
    let text = String::from_utf8(got[0].clone()).unwrap();
    assert!(
        text.starts_with("<134>1 ") && text.ends_with(" h flow-agent 7 flow - {\"ok\":1}"),
        "{text}"
    );
    assert_eq!(stats.dropped.load(Relaxed), 2);

    // Octet-counting carries line feeds; truncation shortens long records, marked, and
    // drops what is not a record of the format.
    let (mut sink, got, stats) = sink_with(Some(Framing::OctetCounting), super::Oversize::Truncate);
    sink.submit(b"<a>\n</a>");
    let long = format!("{{\"command_line\":\"{}\"}}", "x".repeat(600));
    sink.submit(long.as_bytes());
    sink.submit(&[b'x'; 600]);
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 2);
    assert!(got[0].ends_with(b"<a>\n</a>"));
    assert!(got[1].len() <= 600);
    let text = String::from_utf8(got[1].clone()).unwrap();
    let record = &text[text.find(" flow - ").unwrap() + 8..];
    let doc: serde_json::Value = serde_json::from_str(record).unwrap();
    assert_eq!(doc["record_truncated"], true);
    assert!(doc["command_line"].as_str().unwrap().ends_with("xxx…"));
    assert_eq!(stats.dropped.load(Relaxed), 1);
}

/// A flow event of every format with a 64 KiB command line and path, through a syslog output with
/// `oversize = "truncate"` and the 8 KiB limit of rsyslog.
#[test]
fn truncated_records_of_every_format_stay_valid_within_the_limit_with_every_field() {
    use crate::{
        encode::Format,
        event::{Direction, Event, FlowAction, FlowEvent, HostInfo, ProcessIdentity, Transport},
        sink::Sink,
    };
    use std::sync::{atomic::Ordering::Relaxed, Arc};
    const MAX: usize = 8192;
    let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let mut ev = FlowEvent::new(
        FlowAction::Start,
        crate::event::WallTime(1_795_451_146_099_216_000),
        Transport::Tcp,
        (lo, 33596),
        (lo, 18080),
        Direction::Outbound,
        Arc::new(HostInfo {
            hostname: "vm".into(),
            ..HostInfo::default()
        }),
    );
    ev.start_time = Some(ev.time);
    ev.process = Some(Arc::new(ProcessIdentity {
        pid: 6140,
        ppid: 5769,
        comm: "python3".into(),
        exe: Some("python3".into()),
        // Sysmon's event 3 has no command line: a long path makes its record long.
        image_path: Some(format!("/opt/{}é/python3", "p".repeat(64 * 1024))),
        command_line: Some(format!("python3 -c '{}'", "é\"x\n".repeat(16 * 1024))),
        args: Some(vec!["python3".into(), "-c".into(), "y".repeat(64 * 1024)]),
        command_line_truncated: Some(false),
        entity_id: Some("3d1219c7-0000000340ab-000017fc".into()),
        uid: 0,
        user: Some("root".into()),
        ..ProcessIdentity::default()
    }));
    let ev = Event::Flow(ev);
    for format in Format::ALL {
        let mut record = Vec::new();
        if !format.encoder().encode(&ev, &mut record) {
            continue;
        }
        assert!(
            record.len() > 64 * 1024,
            "{format:?}: {} bytes",
            record.len()
        );
        let (mut sink, got, stats) = sink_of(
            Some(Framing::OctetCounting),
            super::Oversize::Truncate,
            format,
            MAX,
        );
        sink.submit(&record);
        let got = got.lock().unwrap();
        assert_eq!(
            (got.len(), stats.dropped.load(Relaxed)),
            (1, 0),
            "{format:?}"
        );
        assert!(got[0].len() <= MAX, "{format:?}: {} bytes", got[0].len());
        // Not much shorter than allowed either.
        assert!(
            got[0].len() > MAX - 64,
            "{format:?}: {} bytes",
            got[0].len()
        );
        let message = String::from_utf8(got[0].clone()).expect("UTF-8");
        let record = String::from_utf8(record).unwrap();
        let short = &message[message.find(" flow - ").unwrap() + 8..];
        if format.is_json() {
            let doc: serde_json::Value =
                serde_json::from_str(short).unwrap_or_else(|e| panic!("{format:?}: {e}: {short}"));
            let full: serde_json::Value = serde_json::from_str(&record).unwrap();
            let marker = match format {
                Format::Ecs => &doc["flow_agent"]["record_truncated"],
                Format::Ocsf => &doc["unmapped"]["record_truncated"],
                _ => &doc["record_truncated"],
            };
            assert_eq!(marker, &serde_json::Value::Bool(true), "{format:?}");
            let mut want = leaf_names(&full);
            want.push(match format {
                Format::Ecs => "flow_agent.record_truncated".to_string(),
                Format::Ocsf => "unmapped.record_truncated".to_string(),
                _ => "record_truncated".to_string(),
            });
            want.sort();
            assert_eq!(leaf_names(&doc), want, "{format:?}: every field kept");
        } else {
            assert!(short.starts_with("<Event>") && short.ends_with("</Event>"));
            assert!(
                short.contains("<Data Name=\"RecordTruncated\">true</Data></EventData>"),
                "{short}"
            );
            // The same elements, in the same order.
            let tags = |s: &str| -> Vec<String> {
                s.split('<')
                    .skip(1)
                    .map(|t| t.split(['>', ' ']).next().unwrap().to_string())
                    .collect()
            };
            let mut want = tags(&record);
            let at = want.iter().rposition(|t| t == "/EventData").unwrap();
            want.splice(at..at, ["Data".to_string(), "/Data".to_string()]);
            assert_eq!(tags(short), want);
        }
    }
}

/// Dotted names of every leaf of a JSON document (array elements by index).
fn leaf_names(v: &serde_json::Value) -> Vec<String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    walk(&format!("{prefix}{k}."), v, out);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(&format!("{prefix}{i}."), v, out);
                }
            }
            _ => out.push(prefix.trim_end_matches('.').to_string()),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out.sort();
    out
}

/// One message through a real output, as its receiver gets it.
fn first_message(config: &str, receive: impl FnOnce() -> Vec<u8>) -> String {
    let cfg: SyslogConfig =
        toml::from_str(&format!("{config}\n[delivery]\nbuffer_max_bytes = 0\n")).unwrap();
    let stats = std::sync::Arc::new(crate::sink::SinkStats::new("t".into(), "syslog", "native"));
    let mut sink = super::open(&cfg, crate::encode::Format::Native, stats).unwrap();
    sink.submit(b"{\"a\":1}");
    sink.flush();
    let got = receive();
    drop(sink.close());
    String::from_utf8(got).unwrap()
}

#[test]
fn unix_sockets_get_the_local_form_and_network_transports_rfc5424() {
    use std::time::Duration;
    let dir = std::env::temp_dir().join(format!("flow-syslog-form-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("log.sock");
    let _ = std::fs::remove_file(&path);
    let unix = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    unix.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let pid = std::process::id();
    // daemon.warning: 3 * 8 + 4.
    let text = first_message(
        &format!(
            "address = \"{}\"\nfacility = \"daemon\"\nseverity = \"warning\"\napp_name = \"flowtest\"",
            path.display()
        ),
        || {
            let mut buf = vec![0; 4096];
            let n = unix.recv(&mut buf).unwrap();
            buf.truncate(n);
            buf
        },
    );
    // <PRI>, the 15-character local timestamp, TAG[PID]: and the record.
    let (head, rest) = text.split_at(4);
    assert_eq!(head, "<28>", "{text}");
    assert_eq!(
        rest.get(15..),
        Some(format!(" flowtest[{pid}]: {{\"a\":1}}").as_str()),
        "{text}"
    );

    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let text = first_message(
        &format!(
            "transport = \"udp\"\naddress = \"{}\"\nhostname = \"h\"\nfacility = \"daemon\"\nseverity = \"warning\"",
            udp.local_addr().unwrap()
        ),
        || {
            let mut buf = vec![0; 4096];
            let n = udp.recv(&mut buf).unwrap();
            buf.truncate(n);
            buf
        },
    );
    assert!(
        text.starts_with("<28>1 ")
            && text.ends_with(&format!(" h flow-agent {pid} flow - {{\"a\":1}}")),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
