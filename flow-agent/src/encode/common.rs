//! Small renderings several formats share.
use std::fmt;

use serde::{Serialize, Serializer};

/// TCP flag letters, lowest bit first.
const FLAG_LETTERS: [u8; 8] = *b"FSRPAUEC";

/// The `FSRPAUEC` letters of a set of TCP flag bits, in that order (`tcp_flags`).
#[derive(Clone, Copy)]
pub(crate) struct FlagLetters {
    buf: [u8; 8],
    len: usize,
}

impl FlagLetters {
    pub(crate) fn new(bits: u8) -> Self {
        let mut buf = [0; 8];
        let mut len = 0;
        for (i, c) in FLAG_LETTERS.iter().enumerate() {
            if bits & (1 << i) != 0 {
                buf[len] = *c;
                len += 1;
            }
        }
        Self { buf, len }
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl fmt::Display for FlagLetters {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for FlagLetters {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The last component of a path (the whole string when it has no `/`).
pub(crate) fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The native `tls_version` ("TLS 1.3", "SSL 3.0") as (protocol, number): ("tls", "1.3").
pub(crate) fn tls_version_parts(v: &str) -> Option<(&'static str, &str)> {
    let (proto, number) = v.split_once(' ')?;
    let proto = match proto {
        "TLS" => "tls",
        "SSL" => "ssl",
        _ => return None,
    };
    Some((proto, number))
}

/// A cipher suite's IANA name, or its number in hex when not known (`tls_cipher`).
pub(crate) fn cipher_display(suite: u16) -> std::borrow::Cow<'static, str> {
    match crate::proto::tls::cipher_name(suite) {
        Some(name) => name.into(),
        None => format!("0x{suite:04x}").into(),
    }
}

/// The names of a flow's two ends, (originator, responder): this host's own on its side (its
/// fqdn when known, else its hostname) and the remote's fqdn from DNS, when the host resolved
/// it, on the other.
pub(crate) fn end_names(ev: &crate::event::FlowEvent) -> (Option<&str>, Option<&str>) {
    let host = &ev.host;
    let own = host.fqdn.as_deref().unwrap_or(&host.hostname);
    let own = (!own.is_empty()).then_some(own);
    ev.by_role(own, ev.remote_fqdn().map(|(fqdn, _)| fqdn))
}

/// Cipher suites by IANA name (a number without a name in hex), as a JSON array.
pub(crate) struct CipherNames<'a>(pub(crate) &'a [u16]);

impl CipherNames<'_> {
    /// `None` for an empty list: the field is omitted.
    pub(crate) fn of(suites: &[u16]) -> Option<CipherNames<'_>> {
        (!suites.is_empty()).then_some(CipherNames(suites))
    }
}

impl Serialize for CipherNames<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|c| cipher_display(*c)))
    }
}

/// The TCP detail a format has no field of its own for, under the native names: the flag
/// letters of both sides and each side's, IP bytes, first payload times and the time to the
/// first byte (ECS's `flow_agent`, OCSF's `unmapped`).
pub(crate) fn tcp_detail(w: &mut super::json::Json, ev: &crate::event::FlowEvent) {
    if let Some(f) = ev.tcp_flags {
        w.name("tcp_flags", FlagLetters::new(f.orig | f.resp).as_str());
        w.name("orig_tcp_flags", FlagLetters::new(f.orig).as_str());
        w.name("resp_tcp_flags", FlagLetters::new(f.resp).as_str());
    }
    if let Some(c) = &ev.counters {
        let (orig, resp) = ev.by_role(c.out_ip_bytes, c.in_ip_bytes);
        w.opt("orig_ip_bytes", orig);
        w.opt("resp_ip_bytes", resp);
    }
    w.opt_time("orig_first_byte_time", ev.orig_first_byte);
    w.opt_time("resp_first_byte_time", ev.resp_first_byte);
    w.opt(
        "time_to_first_byte",
        ev.time_to_first_byte_ns().map(super::time::seconds),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_letters() {
        assert_eq!(FlagLetters::new(0x1b).as_str(), "FSPA");
        assert_eq!(FlagLetters::new(0xff).as_str(), "FSRPAUEC");
        assert_eq!(FlagLetters::new(0).as_str(), "");
    }
}
