//! The application protocol of a flow from its first payload bytes each direction, else from
//! the server's well-known port, with a short decoded summary (`proto_info`).
use super::{dns, text, tls};

/// How the protocol was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    /// From the payload: the bytes parsed as that protocol.
    Payload,
    /// From the server's port only.
    Port,
}

/// TLS handshake details.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TlsDetails {
    /// Negotiated version ("TLS 1.3") when the ServerHello was seen, else the highest offered.
    pub(crate) version: Option<String>,
    /// Negotiated cipher suite (IANA number) from the ServerHello.
    pub(crate) cipher: Option<u16>,
    pub(crate) server_name: Option<String>,
    /// ALPN offered by the client.
    pub(crate) alpn_offered: Vec<String>,
    /// The cipher suites the ClientHello offered (IANA numbers, in its order, GREASE left out).
    pub(crate) client_ciphers: Vec<u16>,
    /// ALPN chosen by the server.
    pub(crate) alpn: Option<String>,
    pub(crate) ja3: Option<String>,
    pub(crate) ja3s: Option<String>,
    pub(crate) ja4: Option<String>,
    pub(crate) ja4s: Option<String>,
    /// Whether the ClientHello was longer than the captured bytes (None: no ClientHello).
    /// When it was, the fields above come from the extensions before the cut and there is no
    /// JA3 or JA4: they need the whole hello.
    pub(crate) client_hello_truncated: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detection {
    /// Lower-case protocol name: http, http2, tls, ssh, dns, smtp, ftp, pop3, imap, ...
    pub(crate) protocol: &'static str,
    pub(crate) method: Method,
    /// A short decoded summary, e.g. `GET example.test/index.html HTTP/1.1`.
    pub(crate) info: Option<String>,
    pub(crate) tls: Option<TlsDetails>,
}

/// Longest `info` (characters): a summary, not a transcript.
pub(crate) const INFO_MAX: usize = 256;

const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Decides the protocol of a flow. `orig` and `resp` are the first payload bytes the
/// originator and the responder sent (either may be empty); `resp_port` is the server's port.
pub fn detect(udp: bool, orig: &[u8], resp: &[u8], resp_port: u16) -> Option<Detection> {
    payload(udp, orig, resp, resp_port).or_else(|| {
        well_known(udp, resp_port).map(|protocol| Detection {
            protocol,
            method: Method::Port,
            info: None,
            tls: None,
        })
    })
}

fn found(protocol: &'static str, info: Option<String>) -> Option<Detection> {
    Some(Detection {
        protocol,
        method: Method::Payload,
        info,
        tls: None,
    })
}

fn payload(udp: bool, orig: &[u8], resp: &[u8], resp_port: u16) -> Option<Detection> {
    if udp {
        let m = dns::parse(orig).ok().filter(|m| !m.is_response)?;
        return found("dns", dns_info(&m));
    }
    if tls::looks_like_tls(orig) {
        return Some(tls_detection(orig, resp));
    }
    if orig.starts_with(HTTP2_PREFACE) {
        return found("http2", None);
    }
    if let Some(r) = text::http_request(orig) {
        let status = text::http_response(resp).map(|(_, code)| format!(" {code}"));
        let head = format!("{} {}", r.method, r.host.as_deref().unwrap_or(""));
        let tail = format!(
            "{}{}",
            r.version.map(|v| format!(" {v}")).unwrap_or_default(),
            status.unwrap_or_default()
        );
        // A long target is shortened so that the version and the status still fit.
        let mut target = r.target;
        let room = INFO_MAX.saturating_sub(head.chars().count() + tail.chars().count());
        text::clip(&mut target, room);
        return found("http", Some(format!("{head}{target}{tail}")));
    }
    if let Some(banner) = text::ssh_banner(resp).or_else(|| text::ssh_banner(orig)) {
        return found("ssh", Some(banner));
    }
    if let Some((proto, line)) = text::greeting(resp, resp_port) {
        return found(proto, Some(line));
    }
    if resp_port == 53 || (orig.len() > 2 && dns::parse_tcp(orig).is_ok()) {
        if let Ok(m) = dns::parse_tcp(orig) {
            return found("dns", dns_info(&m));
        }
    }
    None
}

fn dns_info(m: &dns::Message) -> Option<String> {
    let q = m.questions.first()?;
    Some(format!("query {} type {}", q.name, q.qtype))
}

fn tls_detection(orig: &[u8], resp: &[u8]) -> Detection {
    let mut d = TlsDetails::default();
    let mut info = Vec::new();
    if let Ok(ch) = tls::parse_client_hello(orig) {
        d.version = ch.max_version().map(tls::version_name);
        d.server_name = ch.server_name.clone();
        d.alpn_offered = ch.alpn.iter().map(|a| text::visible(a)).collect();
        d.client_ciphers = ch
            .cipher_suites
            .iter()
            .copied()
            .filter(|c| !tls::is_grease(*c))
            .collect();
        d.ja3 = ch.ja3();
        d.ja4 = ch.ja4();
        d.client_hello_truncated = Some(ch.truncated);
    }
    if let Ok(sh) = tls::parse_server_hello(resp) {
        if let Some(v) = sh.version {
            d.version = Some(tls::version_name(v));
        }
        d.cipher = Some(sh.cipher_suite);
        d.alpn = sh.alpn.as_deref().map(text::visible);
        d.ja3s = sh.ja3s();
        d.ja4s = sh.ja4s();
    }
    if let Some(v) = &d.version {
        info.push(v.clone());
    }
    if let Some(sni) = &d.server_name {
        info.push(format!("sni {sni}"));
    }
    if let Some(alpn) = &d.alpn {
        info.push(format!("alpn {alpn}"));
    }
    Detection {
        protocol: "tls",
        method: Method::Payload,
        info: (!info.is_empty()).then(|| info.join(" ")),
        tls: Some(d),
    }
}

/// IANA well-known and registered ports of common services.
fn well_known(udp: bool, port: u16) -> Option<&'static str> {
    Some(match (udp, port) {
        (_, 53) => "dns",
        (false, 21) => "ftp",
        (false, 22) => "ssh",
        (false, 23) => "telnet",
        (false, 25 | 587) => "smtp",
        (false, 80 | 8080) => "http",
        (false, 110) => "pop3",
        (false, 143) => "imap",
        (false, 389) => "ldap",
        (false, 443 | 465 | 636 | 853 | 993 | 995 | 8443) => "tls",
        (false, 445) => "smb",
        (false, 3306) => "mysql",
        (false, 3389) => "rdp",
        (false, 5432) => "postgresql",
        (false, 6379) => "redis",
        (true, 67 | 68) => "dhcp",
        (true, 123) => "ntp",
        (true, 161 | 162) => "snmp",
        (true, 443) => "quic",
        (true, 514) => "syslog",
        (true, 5353) => "mdns",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_beats_port() {
        let d = detect(
            false,
            b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\n",
            443,
        )
        .unwrap();
        assert_eq!((d.protocol, d.method), ("http", Method::Payload));
        assert_eq!(d.info.as_deref(), Some("GET a.test/x HTTP/1.1 404"));
    }

    #[test]
    fn a_long_url_keeps_method_host_version_and_status_in_the_summary() {
        let req = format!(
            "GET /{} HTTP/1.1\r\nUser-Agent: x\r\nNo colon here\r\nHost: long.test\r\n\r\n",
            "p".repeat(1499)
        );
        let d = detect(false, req.as_bytes(), b"HTTP/1.1 200 OK\r\n", 80).unwrap();
        let info = d.info.unwrap();
        let head = "GET long.test/";
        let tail = " HTTP/1.1 200";
        assert_eq!(info.len(), INFO_MAX);
        assert_eq!(
            info,
            format!(
                "{head}{}{tail}",
                "p".repeat(INFO_MAX - head.len() - tail.len())
            )
        );
        // Longer than the capture: the method and the start of the URL.
        let req = format!(
            "GET /{} HTTP/1.1\r\nHost: long.test\r\n\r\n",
            "q".repeat(3000)
        );
        let d = detect(false, &req.as_bytes()[..2048], b"", 8080).unwrap();
        assert_eq!((d.protocol, d.method), ("http", Method::Payload));
        assert_eq!(
            d.info.unwrap(),
            format!("GET /{}", "q".repeat(INFO_MAX - 5))
        );
    }

    #[test]
    fn port_when_the_payload_says_nothing() {
        let d = detect(false, b"\x00\x01binary", b"", 3306).unwrap();
        assert_eq!((d.protocol, d.method), ("mysql", Method::Port));
        assert!(detect(false, b"\x00\x01", b"", 40000).is_none());
    }

    #[test]
    fn ssh_from_either_side_and_http2_preface() {
        let d = detect(false, b"", b"SSH-2.0-test\r\n", 2222).unwrap();
        assert_eq!(
            (d.protocol, d.info.as_deref()),
            ("ssh", Some("SSH-2.0-test"))
        );
        let d = detect(false, HTTP2_PREFACE, b"", 8080).unwrap();
        assert_eq!(d.protocol, "http2");
    }

    #[test]
    fn dns_query_over_udp() {
        let mut q = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x04host\x04test\x00\x00\x1c\x00\x01");
        let d = detect(true, &q, b"", 5300).unwrap();
        assert_eq!(d.protocol, "dns");
        assert_eq!(d.info.as_deref(), Some("query host.test type 28"));
    }
}
