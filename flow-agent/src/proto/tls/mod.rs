//! TLS handshake hellos from untrusted bytes: version, cipher suites, SNI, ALPN and the JA3,
//! JA3S and JA4 fingerprints. Only the first record of each direction is read (where the
//! hellos are); every read is bounds-checked.
use md5::{Digest as _, Md5};

mod ciphers;
pub use ciphers::cipher_name;
use sha2::Sha256;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("not a TLS handshake record")]
    NotHandshake,
    #[error("handshake message is not a {0}")]
    WrongMessage(&'static str),
    #[error("hello ends early")]
    Truncated,
}

const EXT_SNI: u16 = 0x0000;
const EXT_SUPPORTED_GROUPS: u16 = 0x000a;
const EXT_EC_POINT_FORMATS: u16 = 0x000b;
const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
const EXT_ALPN: u16 = 0x0010;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    pub legacy_version: u16,
    pub cipher_suites: Vec<u16>,
    /// Extension types in the order sent.
    pub extensions: Vec<u16>,
    pub supported_groups: Vec<u16>,
    pub ec_point_formats: Vec<u8>,
    pub signature_algorithms: Vec<u16>,
    pub supported_versions: Vec<u16>,
    pub server_name: Option<String>,
    pub alpn: Vec<Vec<u8>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerHello {
    pub legacy_version: u16,
    pub cipher_suite: u16,
    pub extensions: Vec<u16>,
    /// From supported_versions when present (TLS 1.3), else the legacy version.
    pub version: u16,
    pub alpn: Option<Vec<u8>>,
}

/// GREASE values (RFC 8701) are noise by design: fingerprints leave them out.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// Whether these bytes start a TLS handshake record (the first bytes of a TLS connection).
pub fn looks_like_tls(b: &[u8]) -> bool {
    b.len() >= 6 && b[0] == 22 && b[1] == 3 && b[2] <= 4 && matches!(b[5], 1 | 2)
}

/// The handshake message in the first record: (type, body).
fn handshake(record: &[u8]) -> Result<(u8, &[u8]), TlsError> {
    if !looks_like_tls(record) {
        return Err(TlsError::NotHandshake);
    }
    let mut r = Reader(&record[5..]);
    let kind = r.u8()?;
    let len = r.u24()?;
    // A hello longer than the captured bytes is parsed as far as it goes.
    let body = r.0.get(..len).unwrap_or(r.0);
    Ok((kind, body))
}

pub fn parse_client_hello(record: &[u8]) -> Result<ClientHello, TlsError> {
    let (kind, body) = handshake(record)?;
    if kind != 1 {
        return Err(TlsError::WrongMessage("ClientHello"));
    }
    let mut r = Reader(body);
    let mut h = ClientHello {
        legacy_version: r.u16()?,
        ..ClientHello::default()
    };
    r.take(32)?; // random
    let sid = r.u8()? as usize;
    r.take(sid)?;
    let mut suites = Reader(r.vec16()?);
    while !suites.0.is_empty() {
        h.cipher_suites.push(suites.u16()?);
    }
    let comp = r.u8()? as usize;
    r.take(comp)?;
    if r.0.is_empty() {
        return Ok(h); // no extensions
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let ty = exts.u16()?;
        let data = exts.vec16()?;
        h.extensions.push(ty);
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
    }
    Ok(h)
}

pub fn parse_server_hello(record: &[u8]) -> Result<ServerHello, TlsError> {
    let (kind, body) = handshake(record)?;
    if kind != 2 {
        return Err(TlsError::WrongMessage("ServerHello"));
    }
    let mut r = Reader(body);
    let legacy_version = r.u16()?;
    r.take(32)?;
    let sid = r.u8()? as usize;
    r.take(sid)?;
    let mut h = ServerHello {
        legacy_version,
        cipher_suite: r.u16()?,
        version: legacy_version,
        ..ServerHello::default()
    };
    r.u8()?; // compression method
    if r.0.is_empty() {
        return Ok(h);
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let ty = exts.u16()?;
        let mut d = Reader(exts.vec16()?);
        h.extensions.push(ty);
        match ty {
            EXT_SUPPORTED_VERSIONS => h.version = d.u16()?,
            EXT_ALPN => {
                let mut list = Reader(d.vec16()?);
                let n = list.u8()? as usize;
                h.alpn = Some(list.take(n)?.to_vec());
            }
            _ => {}
        }
    }
    Ok(h)
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
    /// legacy version.
    pub fn max_version(&self) -> u16 {
        self.supported_versions
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .max()
            .unwrap_or(self.legacy_version)
    }

    /// The JA3 string: version,ciphers,extensions,groups,point formats (decimal, '-' joined,
    /// GREASE left out).
    pub fn ja3_string(&self) -> String {
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

    pub fn ja3(&self) -> String {
        hex(&Md5::digest(self.ja3_string().as_bytes()))
    }

    /// JA4 (FoxIO, TCP): `t{version}{d|i}{ciphers:02}{extensions:02}{alpn}_{hash of sorted
    /// ciphers}_{hash of sorted extensions without SNI and ALPN, then signature algorithms}`.
    pub fn ja4(&self) -> String {
        let version = match self.max_version() {
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
        format!("{a}_{b}_{c}")
    }
}

impl ServerHello {
    /// The JA3S string: version,cipher,extensions (decimal).
    pub fn ja3s_string(&self) -> String {
        format!(
            "{},{},{}",
            self.legacy_version,
            self.cipher_suite,
            dashed(&self.extensions)
        )
    }

    pub fn ja3s(&self) -> String {
        hex(&Md5::digest(self.ja3s_string().as_bytes()))
    }

    /// JA4S (FoxIO, TCP): `t{version}{extensions:02}{alpn}_{cipher}_{hash of extensions in
    /// order}`.
    pub fn ja4s(&self) -> String {
        let version = match self.version {
            0x0304 => "13",
            0x0303 => "12",
            0x0302 => "11",
            0x0301 => "10",
            0x0300 => "s3",
            _ => "00",
        };
        let alpn = alpn_chars(self.alpn.as_deref());
        format!(
            "t{version}{:02}{alpn}_{:04x}_{}",
            self.extensions.len().min(99),
            self.cipher_suite,
            truncated_sha256(&hex_list(&self.extensions))
        )
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

/// A server name as text: printable ASCII kept, anything else escaped as `\xHH`.
fn printable(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for &c in b {
        if c.is_ascii_graphic() {
            out.push(c as char);
        } else {
            out.push_str(&format!("\\x{c:02x}"));
        }
    }
    out
}

fn u16s(b: &[u8]) -> Result<Vec<u16>, TlsError> {
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
}

#[cfg(test)]
mod tests;
