//! TLS handshake hellos from untrusted bytes: version, cipher suites, SNI, ALPN and the JA3,
//! JA3S and JA4 fingerprints. Only the first handshake message of each direction is read (the
//! hello), reassembled from the handshake records the captured bytes hold; every read is
//! bounds-checked.
//!
//! A hello longer than the captured bytes (cut at the capture length, or split over TCP
//! segments) is read field by field up to the cut: what was complete is kept (an extension
//! counts only when all its bytes were captured) and the hello is marked `truncated`. The
//! fingerprints need the whole hello, so none is computed from a truncated one.
use std::borrow::Cow;

use md5::{Digest as _, Md5};

mod ciphers;
pub(crate) use ciphers::cipher_name;
use sha2::Sha256;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("not a TLS handshake record")]
    NotHandshake,
    #[error("handshake message is not a {0}")]
    WrongMessage(&'static str),
    /// The bytes end before the hello's fields do.
    #[error("hello ends early")]
    Truncated,
    /// A field's content contradicts its own length (not a cut: the field was whole).
    #[error("malformed hello")]
    Malformed,
}

const EXT_SNI: u16 = 0x0000;
const EXT_SUPPORTED_GROUPS: u16 = 0x000a;
const EXT_EC_POINT_FORMATS: u16 = 0x000b;
const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
const EXT_ALPN: u16 = 0x0010;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;

/// TLS record content type of handshake messages.
const CONTENT_HANDSHAKE: u8 = 22;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    pub(crate) legacy_version: u16,
    pub(crate) cipher_suites: Vec<u16>,
    /// Extension types in the order sent (of a truncated hello: the complete ones).
    pub(crate) extensions: Vec<u16>,
    pub(crate) supported_groups: Vec<u16>,
    pub(crate) ec_point_formats: Vec<u8>,
    pub(crate) signature_algorithms: Vec<u16>,
    pub(crate) supported_versions: Vec<u16>,
    pub(crate) server_name: Option<String>,
    pub(crate) alpn: Vec<Vec<u8>>,
    /// The hello is longer than the bytes given: the fields above are those before the cut.
    pub truncated: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerHello {
    pub(crate) legacy_version: u16,
    pub(crate) cipher_suite: u16,
    pub(crate) extensions: Vec<u16>,
    /// From supported_versions when present (TLS 1.3), else the legacy version; None when
    /// the hello was cut before telling.
    pub version: Option<u16>,
    pub(crate) alpn: Option<Vec<u8>>,
    /// The hello is longer than the bytes given: the fields above are those before the cut.
    pub truncated: bool,
}

/// GREASE values (RFC 8701) are noise by design: fingerprints leave them out.
pub(crate) fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// Whether these bytes start a TLS handshake record (the first bytes of a TLS connection).
pub(crate) fn looks_like_tls(b: &[u8]) -> bool {
    b.len() >= 6 && b[0] == CONTENT_HANDSHAKE && b[1] == 3 && b[2] <= 4 && matches!(b[5], 1 | 2)
}

/// The first handshake message: its type, its body as far as the bytes hold it, and whether
/// the body is cut. A message may span several handshake records (RFC 8446 5.1): their
/// fragments are joined, up to the first record the bytes do not hold whole.
fn handshake(bytes: &[u8]) -> Result<(u8, Cow<'_, [u8]>, bool), TlsError> {
    if !looks_like_tls(bytes) {
        return Err(TlsError::NotHandshake);
    }
    let mut rest = bytes;
    let mut message: Cow<'_, [u8]> = Cow::Borrowed(&[]);
    while rest.len() >= 5 && rest[0] == CONTENT_HANDSHAKE && rest[1] == 3 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        let fragment = rest.get(5..5 + len).unwrap_or(&rest[5..]);
        rest = &rest[5 + fragment.len()..];
        if message.is_empty() {
            message = Cow::Borrowed(fragment);
        } else {
            message.to_mut().extend_from_slice(fragment);
        }
        let complete = Reader(&message)
            .message_len()
            .is_some_and(|n| message.len() >= n);
        if fragment.len() < len || complete {
            break;
        }
    }
    let full = Reader(&message).message_len().ok_or(TlsError::Truncated)?;
    let kind = message[0];
    let truncated = message.len() < full;
    let body = match message {
        Cow::Borrowed(m) => Cow::Borrowed(&m[4..m.len().min(full)]),
        Cow::Owned(mut m) => {
            m.truncate(full);
            m.drain(..4);
            Cow::Owned(m)
        }
    };
    Ok((kind, body, truncated))
}

/// The outcome of reading a hello's fields: running out of bytes in a truncated hello is the
/// cut (the fields before it are kept), anything else wrong is an error.
fn cut_is_fine(read: Result<(), TlsError>, truncated: bool) -> Result<(), TlsError> {
    match read {
        Err(TlsError::Truncated) if truncated => Ok(()),
        other => other,
    }
}

pub fn parse_client_hello(record: &[u8]) -> Result<ClientHello, TlsError> {
    let (kind, body, truncated) = handshake(record)?;
    if kind != 1 {
        return Err(TlsError::WrongMessage("ClientHello"));
    }
    let mut h = ClientHello {
        truncated,
        ..ClientHello::default()
    };
    cut_is_fine(client_hello_fields(&body, &mut h), truncated)?;
    Ok(h)
}

/// Reads the fields in order into `h`, each once all its bytes are there.
fn client_hello_fields(body: &[u8], h: &mut ClientHello) -> Result<(), TlsError> {
    let mut r = Reader(body);
    h.legacy_version = r.u16()?;
    r.take(32)?; // random
    let sid = r.u8()? as usize;
    r.take(sid)?;
    h.cipher_suites = u16s(r.vec16()?)?;
    let comp = r.u8()? as usize;
    r.take(comp)?;
    if r.0.is_empty() {
        return Ok(()); // no extensions
    }
    let mut exts = Reader(r.extensions(h.truncated)?);
    while !exts.0.is_empty() {
        let ty = exts.u16()?;
        let data = exts.vec16()?;
        // The extension is whole: a read past its end is a malformed extension, not the cut.
        client_extension(h, ty, data).map_err(|_| TlsError::Malformed)?;
        h.extensions.push(ty);
    }
    Ok(())
}

fn client_extension(h: &mut ClientHello, ty: u16, data: &[u8]) -> Result<(), TlsError> {
    let mut d = Reader(data);
    match ty {
        EXT_SNI => {
            let mut list = Reader(d.vec16()?);
            while !list.0.is_empty() {
                let name_type = list.u8()?;
                let name = list.vec16()?;
                if name_type == 0 && h.server_name.is_none() {
                    h.server_name = Some(printable(name));
                }
            }
        }
        EXT_ALPN => {
            let mut list = Reader(d.vec16()?);
            while !list.0.is_empty() {
                let n = list.u8()? as usize;
                h.alpn.push(list.take(n)?.to_vec());
            }
        }
        EXT_SUPPORTED_GROUPS => h.supported_groups = u16s(d.vec16()?)?,
        EXT_SIGNATURE_ALGORITHMS => h.signature_algorithms = u16s(d.vec16()?)?,
        EXT_EC_POINT_FORMATS => {
            let n = d.u8()? as usize;
            h.ec_point_formats = d.take(n)?.to_vec();
        }
        EXT_SUPPORTED_VERSIONS => {
            let n = d.u8()? as usize;
            h.supported_versions = u16s(d.take(n)?)?;
        }
        _ => {}
    }
    Ok(())
}

/// A ServerHello; one cut before its extensions is an error (its cipher suite is not known
/// for sure).
pub fn parse_server_hello(record: &[u8]) -> Result<ServerHello, TlsError> {
    let (kind, body, truncated) = handshake(record)?;
    if kind != 2 {
        return Err(TlsError::WrongMessage("ServerHello"));
    }
    let mut r = Reader(&body);
    let legacy_version = r.u16()?;
    r.take(32)?; // random
    let sid = r.u8()? as usize;
    r.take(sid)?;
    let mut h = ServerHello {
        legacy_version,
        cipher_suite: r.u16()?,
        truncated,
        ..ServerHello::default()
    };
    r.u8()?; // compression method
    if !r.0.is_empty() {
        cut_is_fine(server_extensions(r, &mut h), truncated)?;
    }
    // Without supported_versions the legacy field is the version, unless the cut hid it.
    if h.version.is_none() && !truncated {
        h.version = Some(h.legacy_version);
    }
    Ok(h)
}

fn server_extensions(mut r: Reader<'_>, h: &mut ServerHello) -> Result<(), TlsError> {
    let mut exts = Reader(r.extensions(h.truncated)?);
    while !exts.0.is_empty() {
        let ty = exts.u16()?;
        let data = exts.vec16()?;
        server_extension(h, ty, data).map_err(|_| TlsError::Malformed)?;
        h.extensions.push(ty);
    }
    Ok(())
}

fn server_extension(h: &mut ServerHello, ty: u16, data: &[u8]) -> Result<(), TlsError> {
    let mut d = Reader(data);
    match ty {
        EXT_SUPPORTED_VERSIONS => h.version = Some(d.u16()?),
        EXT_ALPN => {
            let mut list = Reader(d.vec16()?);
            let n = list.u8()? as usize;
            h.alpn = Some(list.take(n)?.to_vec());
        }
        _ => {}
    }
    Ok(())
}

/// "TLS 1.3", "TLS 1.2", ... as tshark and Zeek name them.
pub fn version_name(v: u16) -> String {
    match v {
        0x0304 => "TLS 1.3".into(),
        0x0303 => "TLS 1.2".into(),
        0x0302 => "TLS 1.1".into(),
        0x0301 => "TLS 1.0".into(),
        0x0300 => "SSL 3.0".into(),
        other => format!("0x{other:04x}"),
    }
}

impl ClientHello {
    /// The highest version offered: supported_versions when sent (TLS 1.3 clients), else the
    /// legacy version; None when the hello was cut before supported_versions (which may come
    /// later: the legacy version of a TLS 1.3 client says 1.2).
    pub fn max_version(&self) -> Option<u16> {
        let supported = self
            .supported_versions
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .max();
        supported.or((!self.truncated).then_some(self.legacy_version))
    }

    /// The JA3 string: version,ciphers,extensions,groups,point formats (decimal, '-' joined,
    /// GREASE left out). Of a truncated hello it lacks what the cut hid: see [`Self::ja3`].
    pub(crate) fn ja3_string(&self) -> String {
        format!(
            "{},{},{},{},{}",
            self.legacy_version,
            dashed(&self.cipher_suites),
            dashed(&self.extensions),
            dashed(&self.supported_groups),
            self.ec_point_formats
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join("-")
        )
    }

    /// JA3, None for a truncated hello (a fingerprint of part of a hello matches nothing).
    pub fn ja3(&self) -> Option<String> {
        (!self.truncated).then(|| hex(&Md5::digest(self.ja3_string().as_bytes())))
    }

    /// JA4 (FoxIO, TCP): `t{version}{d|i}{ciphers:02}{extensions:02}{alpn}_{hash of sorted
    /// ciphers}_{hash of sorted extensions without SNI and ALPN, then signature algorithms}`;
    /// None for a truncated hello.
    pub fn ja4(&self) -> Option<String> {
        if self.truncated {
            return None;
        }
        let version = match self.max_version().unwrap_or(self.legacy_version) {
            0x0304 => "13",
            0x0303 => "12",
            0x0302 => "11",
            0x0301 => "10",
            0x0300 => "s3",
            0x0002 => "s2",
            _ => "00",
        };
        let sni = if self.extensions.contains(&EXT_SNI) {
            'd'
        } else {
            'i'
        };
        let ciphers: Vec<u16> = self
            .cipher_suites
            .iter()
            .copied()
            .filter(|c| !is_grease(*c))
            .collect();
        let exts: Vec<u16> = self
            .extensions
            .iter()
            .copied()
            .filter(|e| !is_grease(*e))
            .collect();
        let alpn = alpn_chars(self.alpn.first().map(Vec::as_slice));
        let a = format!(
            "t{version}{sni}{:02}{:02}{alpn}",
            ciphers.len().min(99),
            exts.len().min(99)
        );
        let mut sorted_ciphers = ciphers.clone();
        sorted_ciphers.sort_unstable();
        let b = truncated_sha256(&hex_list(&sorted_ciphers));
        let mut sorted_exts: Vec<u16> = exts
            .into_iter()
            .filter(|e| *e != EXT_SNI && *e != EXT_ALPN)
            .collect();
        sorted_exts.sort_unstable();
        let mut c_input = hex_list(&sorted_exts);
        let sigs: Vec<u16> = self
            .signature_algorithms
            .iter()
            .copied()
            .filter(|s| !is_grease(*s))
            .collect();
        if !sigs.is_empty() {
            c_input.push('_');
            c_input.push_str(&hex_list(&sigs));
        }
        let c = truncated_sha256(&c_input);
        Some(format!("{a}_{b}_{c}"))
    }
}

impl ServerHello {
    /// The JA3S string: version,cipher,extensions (decimal).
    pub(crate) fn ja3s_string(&self) -> String {
        format!(
            "{},{},{}",
            self.legacy_version,
            self.cipher_suite,
            dashed(&self.extensions)
        )
    }

    /// JA3S, None for a truncated hello.
    pub fn ja3s(&self) -> Option<String> {
        (!self.truncated).then(|| hex(&Md5::digest(self.ja3s_string().as_bytes())))
    }

    /// JA4S (FoxIO, TCP): `t{version}{extensions:02}{alpn}_{cipher}_{hash of extensions in
    /// order}`; None for a truncated hello.
    pub fn ja4s(&self) -> Option<String> {
        if self.truncated {
            return None;
        }
        let version = match self.version.unwrap_or(self.legacy_version) {
            0x0304 => "13",
            0x0303 => "12",
            0x0302 => "11",
            0x0301 => "10",
            0x0300 => "s3",
            _ => "00",
        };
        let alpn = alpn_chars(self.alpn.as_deref());
        Some(format!(
            "t{version}{:02}{alpn}_{:04x}_{}",
            self.extensions.len().min(99),
            self.cipher_suite,
            truncated_sha256(&hex_list(&self.extensions))
        ))
    }
}

/// JA4's two ALPN characters: first and last of the value, or of its hex form when either
/// byte is not alphanumeric; "00" without ALPN.
fn alpn_chars(alpn: Option<&[u8]>) -> String {
    match alpn {
        Some([first, .., last]) | Some([first @ last]) => {
            if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
                format!("{}{}", *first as char, *last as char)
            } else {
                let h = hex(&[*first, *last]);
                format!("{}{}", &h[..1], &h[3..])
            }
        }
        _ => "00".to_string(),
    }
}

fn dashed(v: &[u16]) -> String {
    v.iter()
        .filter(|x| !is_grease(**x))
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join("-")
}

fn hex_list(v: &[u16]) -> String {
    v.iter()
        .map(|x| format!("{x:04x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// First 12 hex digits of SHA-256, or twelve zeros for an empty list (the JA4 rule).
fn truncated_sha256(s: &str) -> String {
    if s.is_empty() {
        return "0".repeat(12);
    }
    hex(&Sha256::digest(s.as_bytes()))[..12].to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A server name as text: printable ASCII kept, anything else, and the backslash that starts
/// an escape, as `\xHH`, so the text reads back one way only.
fn printable(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for &c in b {
        if c.is_ascii_graphic() && c != b'\\' {
            out.push(c as char);
        } else {
            out.push_str(&format!("\\x{c:02x}"));
        }
    }
    out
}

/// A list of 16-bit values; an odd length is malformed.
fn u16s(b: &[u8]) -> Result<Vec<u16>, TlsError> {
    if !b.len().is_multiple_of(2) {
        return Err(TlsError::Malformed);
    }
    let mut r = Reader(b);
    let mut out = Vec::with_capacity(b.len() / 2);
    while !r.0.is_empty() {
        out.push(r.u16()?);
    }
    Ok(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TlsError> {
        if self.0.len() < n {
            return Err(TlsError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, TlsError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, TlsError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self) -> Result<usize, TlsError> {
        let b = self.take(3)?;
        Ok(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }

    fn vec16(&mut self) -> Result<&'a [u8], TlsError> {
        let n = self.u16()? as usize;
        self.take(n)
    }

    /// The length of the handshake message these bytes start (its 4-byte header included).
    fn message_len(&mut self) -> Option<usize> {
        self.u8().ok()?;
        self.u24().ok().map(|n| 4 + n)
    }

    /// A hello's extension block: of a truncated hello, as much of it as there is.
    fn extensions(&mut self, truncated: bool) -> Result<&'a [u8], TlsError> {
        let n = self.u16()? as usize;
        if truncated {
            Ok(self.take(n.min(self.0.len()))?)
        } else {
            self.take(n)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
