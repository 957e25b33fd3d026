//! The application protocol of a flow, from the first payload bytes each direction the kernel
//! copied (TCP: `PayloadRecord`; UDP: the DNS messages of port 53), else from the server's
//! well-known port: the event fields `application_protocol`, `app_protocol_source`,
//! `proto_info`, the TLS handshake's fields and, when configured, `orig_content` and
//! `resp_content`.
use std::collections::HashMap;

use flow_common::PayloadRecord;

use super::event::FlowEvent;
use crate::proto::{self, tls::cipher_name};

/// Longest `proto_info` (characters): a summary, not a transcript.
pub const PROTO_INFO_MAX: usize = 256;
/// Most bytes `orig_content`/`resp_content` may show: what the kernel copies.
pub const CONTENT_MAX: usize = flow_common::PAYLOAD_CAPTURE_LEN;
/// Flows whose first bytes are held at once; more are dropped (and counted).
const CAPACITY: usize = 16_384;

/// Which flow bytes belong to: a TCP socket (remote port and address zero) or a UDP socket and
/// remote endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PayloadKey {
    pub cookie: u64,
    pub remote_port: u16,
    pub remote_addr: [u8; 16],
}

impl PayloadKey {
    pub fn tcp(cookie: u64) -> Self {
        Self {
            cookie,
            remote_port: 0,
            remote_addr: [0; 16],
        }
    }
}

/// The first payload bytes this host sent and received on one flow.
#[derive(Clone, Debug, Default)]
pub struct FirstBytes {
    pub sent: Option<Vec<u8>>,
    pub received: Option<Vec<u8>>,
}

#[derive(Default)]
pub struct Payloads {
    by_key: HashMap<PayloadKey, FirstBytes>,
    /// First bytes not kept because the table was full.
    pub dropped: u64,
}

impl Payloads {
    /// Keeps the first bytes of one direction; later ones of the same direction are ignored.
    pub fn observe(&mut self, key: PayloadKey, egress: bool, bytes: &[u8]) {
        if !self.by_key.contains_key(&key) && self.by_key.len() >= CAPACITY {
            self.dropped += 1;
            return;
        }
        let e = self.by_key.entry(key).or_default();
        let slot = if egress { &mut e.sent } else { &mut e.received };
        if slot.is_none() {
            *slot = Some(bytes[..bytes.len().min(CONTENT_MAX)].to_vec());
        }
    }

    pub fn get(&self, key: &PayloadKey) -> Option<&FirstBytes> {
        self.by_key.get(key)
    }

    pub fn remove(&mut self, key: &PayloadKey) {
        self.by_key.remove(key);
    }

    /// Forgets the bytes of flows no longer open (their end was missed or never came).
    pub fn retain(&mut self, open: impl Fn(&PayloadKey) -> bool) {
        self.by_key.retain(|k, _| open(k));
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// The bytes of a payload record the kernel filled.
pub fn record_bytes(r: &PayloadRecord) -> &[u8] {
    &r.data[..(r.len as usize).min(r.data.len())]
}

/// Fills the application fields of `ev`. `local_orig` says whether this host originated the
/// flow (so sent bytes are the originator's); `content_bytes` > 0 adds that many bytes of each
/// direction as printable ASCII.
pub fn fill_event(ev: &mut FlowEvent, first: Option<&FirstBytes>, content_bytes: usize) {
    let (sent, received) =
        first.map_or((None, None), |f| (f.sent.as_deref(), f.received.as_deref()));
    let (orig, resp) = if ev.local_orig {
        (sent, received)
    } else {
        (received, sent)
    };
    let udp = ev.transport_protocol == "udp";
    let Some(d) = proto::detect(udp, orig.unwrap_or(&[]), resp.unwrap_or(&[]), ev.dest_port) else {
        return fill_content(ev, orig, resp, content_bytes);
    };
    ev.application_protocol = Some(d.protocol);
    ev.app_protocol_source = Some(d.method.name());
    ev.proto_info = d.info.map(|i| bounded(i, PROTO_INFO_MAX));
    if let Some(t) = d.tls {
        ev.tls_version = t.version;
        ev.tls_cipher = t
            .cipher
            .map(|c| cipher_name(c).map_or_else(|| format!("0x{c:04x}"), str::to_string));
        ev.tls_cipher_suite = t.cipher;
        ev.tls_server_name = t.server_name;
        ev.tls_alpn = t.alpn;
        ev.tls_alpn_offered = (!t.alpn_offered.is_empty()).then_some(t.alpn_offered);
        ev.ja3 = t.ja3;
        ev.ja3s = t.ja3s;
        ev.ja4 = t.ja4;
        ev.ja4s = t.ja4s;
    }
    fill_content(ev, orig, resp, content_bytes);
}

fn fill_content(ev: &mut FlowEvent, orig: Option<&[u8]>, resp: Option<&[u8]>, n: usize) {
    if n == 0 {
        return;
    }
    ev.orig_content = orig.map(|b| printable(b, n));
    ev.resp_content = resp.map(|b| printable(b, n));
}

/// The first `n` bytes as printable ASCII: anything else (control bytes, line ends, non-ASCII)
/// becomes '.', as `tcpdump -A` shows it, so the text is safe in every output format.
pub fn printable(b: &[u8], n: usize) -> String {
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

fn bounded(mut s: String, max: usize) -> String {
    if let Some((i, _)) = s.char_indices().nth(max) {
        s.truncate(i);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_event(local_orig: bool, dest_port: u16) -> FlowEvent {
        FlowEvent {
            transport_protocol: "tcp",
            local_orig,
            dest_port,
            ..FlowEvent::default()
        }
    }

    #[test]
    fn passive_flow_reads_received_bytes_as_the_originators() {
        let first = FirstBytes {
            sent: Some(b"HTTP/1.1 200 OK\r\n\r\n".to_vec()),
            received: Some(b"GET /a HTTP/1.1\r\nHost: h.test\r\n\r\n".to_vec()),
        };
        let mut ev = tcp_event(false, 8080);
        fill_event(&mut ev, Some(&first), 0);
        assert_eq!(ev.application_protocol, Some("http"));
        assert_eq!(ev.app_protocol_source, Some("payload"));
        assert_eq!(ev.proto_info.as_deref(), Some("GET h.test/a HTTP/1.1 200"));
        assert_eq!(ev.orig_content, None, "content is off unless configured");
    }

    #[test]
    fn port_only_and_content() {
        let mut ev = tcp_event(true, 22);
        fill_event(&mut ev, None, 16);
        assert_eq!(
            (ev.application_protocol, ev.app_protocol_source),
            (Some("ssh"), Some("port"))
        );
        let first = FirstBytes {
            sent: Some(b"ab\r\n\x00\xffcdefghijklmnopq".to_vec()),
            received: None,
        };
        let mut ev = tcp_event(true, 40000);
        fill_event(&mut ev, Some(&first), 8);
        assert_eq!(ev.application_protocol, None);
        assert_eq!(ev.orig_content.as_deref(), Some("ab....cd"));
        assert_eq!(ev.resp_content, None);
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
        assert_eq!(bounded("ab€d".into(), 3), "ab€");
    }
}
