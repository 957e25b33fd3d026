//! The application protocol of a flow, from the first payload bytes each direction the kernel
//! copied (TCP: `PayloadRecord`; UDP: the DNS messages of port 53), else from the server's
//! well-known port: the event fields `application_protocol`, `app_protocol_source`,
//! `proto_info`, the TLS handshake's fields and, when configured, `orig_content` and
//! `resp_content`.
use std::{collections::HashMap, net::IpAddr, sync::Arc};

use flow_common::PayloadRecord;

use crate::{
    event::{AppInfo, AppProtocolSource, TlsInfo},
    proto::{self, detect::Method},
};

/// Longest `proto_info` (characters): a summary, not a transcript.
pub(crate) const PROTO_INFO_MAX: usize = proto::detect::INFO_MAX;
/// Most bytes `orig_content`/`resp_content` may show: what the kernel copies.
pub(crate) const CONTENT_MAX: usize = flow_common::PAYLOAD_CAPTURE_LEN;
/// Flows whose first bytes are held at once; more are dropped (and counted).
const CAPACITY: usize = 16_384;

/// Which flow bytes belong to: a TCP socket, or a UDP socket and remote endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PayloadKey {
    pub(crate) cookie: u64,
    pub(crate) remote: Option<(IpAddr, u16)>,
}

impl PayloadKey {
    pub(crate) fn tcp(cookie: u64) -> Self {
        Self {
            cookie,
            remote: None,
        }
    }

    pub(crate) fn udp(cookie: u64, remote: (IpAddr, u16)) -> Self {
        Self {
            cookie,
            remote: Some(remote),
        }
    }
}

/// The first payload bytes this host sent and received on one flow.
#[derive(Clone, Debug, Default)]
pub(crate) struct FirstBytes {
    pub(crate) sent: Option<Vec<u8>>,
    pub(crate) received: Option<Vec<u8>>,
    /// What these bytes tell, decided at the flow's first event after they arrived.
    app: Option<Option<Arc<AppInfo>>>,
}

#[derive(Default)]
pub(crate) struct Payloads {
    by_key: HashMap<PayloadKey, FirstBytes>,
    /// First bytes not kept because the table was full.
    pub(crate) dropped: u64,
}

impl Payloads {
    /// Keeps the first bytes of one direction; later ones of the same direction are ignored.
    pub(crate) fn observe(&mut self, key: PayloadKey, egress: bool, bytes: &[u8]) {
        if !self.by_key.contains_key(&key) && self.by_key.len() >= CAPACITY {
            self.dropped += 1;
            return;
        }
        let e = self.by_key.entry(key).or_default();
        let slot = if egress { &mut e.sent } else { &mut e.received };
        if slot.is_none() {
            *slot = Some(bytes[..bytes.len().min(CONTENT_MAX)].to_vec());
            e.app = None;
        }
    }

    /// The application facts of one flow's first bytes, decided once and kept until more
    /// bytes arrive; `decide` runs only when nothing is kept.
    pub(crate) fn app(
        &mut self,
        key: &PayloadKey,
        decide: impl FnOnce(Option<&FirstBytes>) -> Option<Arc<AppInfo>>,
    ) -> Option<Arc<AppInfo>> {
        let Some(e) = self.by_key.get_mut(key) else {
            return decide(None);
        };
        if e.app.is_none() {
            e.app = Some(decide(Some(e)));
        }
        e.app.clone().flatten()
    }

    /// Forgets every decision (the settings they followed changed).
    pub(crate) fn forget_decisions(&mut self) {
        for e in self.by_key.values_mut() {
            e.app = None;
        }
    }

    #[cfg(test)]
    pub(crate) fn get(&self, key: &PayloadKey) -> Option<&FirstBytes> {
        self.by_key.get(key)
    }

    pub(crate) fn remove(&mut self, key: &PayloadKey) {
        self.by_key.remove(key);
    }

    /// Forgets the bytes of flows no longer open (their end was missed or never came).
    pub(crate) fn retain(&mut self, open: impl Fn(&PayloadKey) -> bool) {
        self.by_key.retain(|k, _| open(k));
    }

    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }
}

/// The bytes of a payload record the kernel filled.
pub(crate) fn record_bytes(r: &PayloadRecord) -> &[u8] {
    &r.data[..(r.len as usize).min(r.data.len())]
}

/// The application facts of a flow from its first bytes (`first`, as this host sent and
/// received them) or its server port. `local_orig` says whether this host originated the
/// flow (so sent bytes are the originator's); `content_bytes` > 0 adds that many bytes of each
/// direction as printable ASCII. None when there is nothing to tell.
pub(crate) fn app_info(
    udp: bool,
    local_orig: bool,
    dest_port: u16,
    first: Option<&FirstBytes>,
    content_bytes: usize,
) -> Option<AppInfo> {
    let (sent, received) =
        first.map_or((None, None), |f| (f.sent.as_deref(), f.received.as_deref()));
    let (orig, resp) = if local_orig {
        (sent, received)
    } else {
        (received, sent)
    };
    let mut app = AppInfo::default();
    if let Some(d) = proto::detect(udp, orig.unwrap_or(&[]), resp.unwrap_or(&[]), dest_port) {
        let source = match d.method {
            Method::Payload => AppProtocolSource::Payload,
            Method::Port => AppProtocolSource::Port,
        };
        app.protocol = Some((d.protocol, source));
        app.info = d.info.map(|mut i| {
            proto::text::clip(&mut i, PROTO_INFO_MAX);
            i
        });
        app.tls = d.tls.map(|t| TlsInfo {
            version: t.version,
            cipher: t.cipher,
            server_name: t.server_name,
            alpn: t.alpn,
            alpn_offered: t.alpn_offered,
            client_ciphers: t.client_ciphers,
            ja3: t.ja3,
            ja3s: t.ja3s,
            ja4: t.ja4,
            ja4s: t.ja4s,
            client_hello_truncated: t.client_hello_truncated,
        });
    }
    if content_bytes > 0 {
        app.orig_content = orig.map(|b| printable(b, content_bytes));
        app.resp_content = resp.map(|b| printable(b, content_bytes));
    }
    (!app.is_empty()).then_some(app)
}

/// JA4S stays only when configured: it is under the FoxIO License 1.1 (NOTICE).
pub(crate) fn with_ja4s(mut app: AppInfo, enabled: bool) -> AppInfo {
    if let (false, Some(tls)) = (enabled, app.tls.as_mut()) {
        tls.ja4s = None;
    }
    app
}

/// The first `n` bytes as printable ASCII: anything else (control bytes, line ends, non-ASCII)
/// becomes '.', as `tcpdump -A` shows it, so the text is safe in every output format.
pub(crate) fn printable(b: &[u8], n: usize) -> String {
    b.iter()
        .take(n.min(CONTENT_MAX))
        .map(|&c| {
            if c == b' ' || c.is_ascii_graphic() {
                c as char
            } else {
                '.'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_flow_reads_received_bytes_as_the_originators() {
        let first = FirstBytes {
            sent: Some(b"HTTP/1.1 200 OK\r\n\r\n".to_vec()),
            received: Some(b"GET /a HTTP/1.1\r\nHost: h.test\r\n\r\n".to_vec()),
            app: None,
        };
        let app = app_info(false, false, 8080, Some(&first), 0).unwrap();
        assert_eq!(app.protocol, Some(("http", AppProtocolSource::Payload)));
        assert_eq!(app.info.as_deref(), Some("GET h.test/a HTTP/1.1 200"));
        assert_eq!(app.orig_content, None, "content is off unless configured");
    }

    #[test]
    fn port_only_and_content() {
        let app = app_info(false, true, 22, None, 16).unwrap();
        assert_eq!(app.protocol, Some(("ssh", AppProtocolSource::Port)));
        let first = FirstBytes {
            sent: Some(b"ab\r\n\x00\xffcdefghijklmnopq".to_vec()),
            received: None,
            app: None,
        };
        let app = app_info(false, true, 40000, Some(&first), 8).unwrap();
        assert_eq!(app.protocol, None);
        assert_eq!(app.orig_content.as_deref(), Some("ab....cd"));
        assert_eq!(app.resp_content, None);
        assert_eq!(app_info(false, true, 40000, None, 8), None);
    }

    #[test]
    fn a_cut_client_hello_gives_sni_and_alpn_and_says_why_there_is_no_fingerprint() {
        let hello = proto::tls::tests::pq_client_hello(3000);
        let first = FirstBytes {
            sent: Some(hello[..2048].to_vec()),
            received: None,
            app: None,
        };
        let app = app_info(false, true, 443, Some(&first), 0).unwrap();
        assert_eq!(app.protocol, Some(("tls", AppProtocolSource::Payload)));
        assert_eq!(app.info.as_deref(), Some("TLS 1.3 sni pq.example.test"));
        let tls = app.tls.unwrap();
        assert_eq!(
            tls,
            TlsInfo {
                version: Some("TLS 1.3".into()),
                server_name: Some("pq.example.test".into()),
                alpn_offered: vec!["h2".into(), "http/1.1".into()],
                // The cipher suites come before the extensions: a cut hello has them.
                client_ciphers: vec![0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f],
                client_hello_truncated: Some(true),
                ..TlsInfo::default()
            }
        );
    }

    #[test]
    fn a_long_summary_is_clipped_at_an_escape() {
        let mut sni = vec![0u8];
        let name = format!("{}\x01", "n".repeat(245));
        sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sni.extend_from_slice(name.as_bytes());
        let mut list = (sni.len() as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&sni);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        let mut ext = vec![0, 0];
        ext.extend_from_slice(&(list.len() as u16).to_be_bytes());
        ext.extend_from_slice(&list);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hello = vec![22, 3, 1];
        hello.extend_from_slice(&(body.len() as u16 + 4).to_be_bytes());
        hello.extend_from_slice(&[1, 0]);
        hello.extend_from_slice(&(body.len() as u16).to_be_bytes());
        hello.extend_from_slice(&body);
        let first = FirstBytes {
            sent: Some(hello),
            received: None,
            app: None,
        };
        let app = app_info(false, true, 443, Some(&first), 0).unwrap();
        let tls = app.tls.unwrap();
        assert_eq!(tls.server_name, Some(format!("{}\\x01", "n".repeat(245))));
        assert_eq!(tls.client_hello_truncated, Some(false));
        // "TLS 1.2 sni " is 12 characters: the escape would end at 261, so it goes whole.
        assert_eq!(
            app.info.as_deref(),
            Some(format!("TLS 1.2 sni {}", "n".repeat(244)).as_str())
        );
    }

    #[test]
    fn ja4s_only_when_enabled() {
        let app = AppInfo {
            tls: Some(TlsInfo {
                ja4: Some("t13d".into()),
                ja4s: Some("t130200_1301_234ea6891581".into()),
                ..TlsInfo::default()
            }),
            ..AppInfo::default()
        };
        let off = with_ja4s(app.clone(), false).tls.unwrap();
        assert_eq!((off.ja4.as_deref(), off.ja4s), (Some("t13d"), None));
        assert_eq!(with_ja4s(app.clone(), true), app);
    }

    #[test]
    fn table_is_bounded_and_keeps_the_first_bytes() {
        let mut p = Payloads::default();
        p.observe(PayloadKey::tcp(1), true, b"first");
        p.observe(PayloadKey::tcp(1), true, b"second");
        assert_eq!(
            p.get(&PayloadKey::tcp(1)).unwrap().sent.as_deref(),
            Some(&b"first"[..])
        );
        for c in 2..=CAPACITY as u64 + 1 {
            p.observe(PayloadKey::tcp(c), false, b"x");
        }
        assert_eq!((p.len(), p.dropped), (CAPACITY, 1));
    }
}
