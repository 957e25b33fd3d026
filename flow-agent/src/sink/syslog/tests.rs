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
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stats = std::sync::Arc::new(crate::sink::SinkStats::new("t".into(), "syslog", "native"));
    let sink = super::SyslogSink {
        inner: Box::new(Captured(got.clone())),
        header: super::message::Header::rfc5424(134, "h", "flow-agent", 7, "flow"),
        newline_framing: framing == Some(Framing::Newline),
        max_message_bytes: 600,
        oversize,
        stats: stats.clone(),
        message: Vec::new(),
        limiter: Default::default(),
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

    // Octet-counting carries line feeds; truncation keeps long messages, marked.
    let (mut sink, got, stats) = sink_with(Some(Framing::OctetCounting), super::Oversize::Truncate);
    sink.submit(b"<a>\n</a>");
    sink.submit(&[b'x'; 600]);
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 2);
    assert!(got[0].ends_with(b"<a>\n</a>"));
    assert!(got[1].len() <= 600);
    assert!(String::from_utf8_lossy(&got[1]).ends_with("bytes]"));
    assert_eq!(stats.dropped.load(Relaxed), 0);
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
