//! DNS messages (RFC 1035) from untrusted bytes: the question and the A, AAAA and CNAME
//! answers, enough to map addresses back to the names a process asked for. Every read is
//! bounds-checked and name decompression is bounded, so hostile packets end in an error, never
//! a panic or a loop.
use std::{
    borrow::Cow,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// Longest name (RFC 1035: 255 bytes on the wire, here counted as text).
const MAX_NAME: usize = 255;
/// Compression pointers followed for one name; more means a loop.
const MAX_POINTERS: usize = 32;
/// Records read per section; more is hostile or useless to us.
const MAX_RECORDS: usize = 64;

pub(crate) const TYPE_A: u16 = 1;
pub(crate) const TYPE_CNAME: u16 = 5;
pub(crate) const TYPE_AAAA: u16 = 28;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("message ends early")]
    Truncated,
    #[error("name compression loops or points forward")]
    BadPointer,
    #[error("name longer than 255 bytes")]
    NameTooLong,
    #[error("label type {0:#04x} is not supported")]
    BadLabel(u8),
    #[error("record data length {0} does not fit its type")]
    BadRdata(u16),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Question {
    /// Lower-case, without the trailing dot.
    pub(crate) name: String,
    pub(crate) qtype: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RecordData {
    Address(IpAddr),
    Cname(String),
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) name: String,
    pub(crate) rtype: u16,
    pub(crate) ttl: u32,
    pub(crate) data: RecordData,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub(crate) id: u16,
    pub(crate) is_response: bool,
    /// RCODE: 0 NOERROR, 3 NXDOMAIN, ...
    pub(crate) rcode: u8,
    pub(crate) questions: Vec<Question>,
    pub(crate) answers: Vec<Answer>,
    /// The answer section was cut short (capture length); `answers` holds those that fit.
    pub(crate) truncated: bool,
}

/// Parses a DNS message as carried in UDP (for TCP, strip the 2-byte length first:
/// [`parse_tcp`]).
pub fn parse(msg: &[u8]) -> Result<Message, DnsError> {
    let mut r = Reader { msg, pos: 0 };
    let id = r.u16()?;
    let flags = r.u16()?;
    let qdcount = r.u16()? as usize;
    let ancount = r.u16()? as usize;
    let _nscount = r.u16()?;
    let _arcount = r.u16()?;
    let mut questions = Vec::new();
    for _ in 0..qdcount.min(MAX_RECORDS) {
        let name = r.name()?;
        let qtype = r.u16()?;
        let _class = r.u16()?;
        questions.push(Question { name, qtype });
    }
    let mut answers = Vec::new();
    let mut truncated = false;
    for _ in 0..ancount.min(MAX_RECORDS) {
        // A message cut by the capture length keeps the answers that fit.
        match answer(&mut r, msg) {
            Ok(a) => answers.push(a),
            Err(DnsError::Truncated) => {
                truncated = true;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Message {
        id,
        is_response: flags & 0x8000 != 0,
        rcode: (flags & 0xf) as u8,
        questions,
        answers,
        truncated,
    })
}

fn answer(r: &mut Reader<'_>, msg: &[u8]) -> Result<Answer, DnsError> {
    {
        let name = r.name()?;
        let rtype = r.u16()?;
        let _class = r.u16()?;
        let ttl = r.u32()?;
        let len = r.u16()?;
        let start = r.pos;
        let rdata = r.take(len as usize)?;
        let data = match (rtype, len) {
            (TYPE_A, 4) => RecordData::Address(IpAddr::V4(Ipv4Addr::new(
                rdata[0], rdata[1], rdata[2], rdata[3],
            ))),
            (TYPE_AAAA, 16) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(rdata);
                RecordData::Address(IpAddr::V6(Ipv6Addr::from(a)))
            }
            (TYPE_A | TYPE_AAAA, _) => return Err(DnsError::BadRdata(len)),
            (TYPE_CNAME, _) => {
                // The target may point back into the message: read it from the whole message.
                let mut sub = Reader { msg, pos: start };
                RecordData::Cname(sub.name()?)
            }
            _ => RecordData::Other,
        };
        Ok(Answer {
            name,
            rtype,
            ttl,
            data,
        })
    }
}

/// Parses a DNS message carried over TCP: a 2-byte length, then the message.
pub fn parse_tcp(stream: &[u8]) -> Result<Message, DnsError> {
    let [hi, lo, rest @ ..] = stream else {
        return Err(DnsError::Truncated);
    };
    let len = usize::from(u16::from_be_bytes([*hi, *lo]));
    let body = rest.get(..len).ok_or(DnsError::Truncated)?;
    parse(body)
}

struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DnsError> {
        let end = self.pos.checked_add(n).ok_or(DnsError::Truncated)?;
        let s = self.msg.get(self.pos..end).ok_or(DnsError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn u16(&mut self) -> Result<u16, DnsError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DnsError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A possibly compressed name; leaves the reader after the name's first occurrence.
    fn name(&mut self) -> Result<String, DnsError> {
        let mut out = String::new();
        let mut pos = self.pos;
        let mut resume = None;
        let mut pointers = 0;
        loop {
            let len = *self.msg.get(pos).ok_or(DnsError::Truncated)?;
            match len & 0xc0 {
                0x00 if len == 0 => {
                    pos += 1;
                    break;
                }
                0x00 => {
                    let label = self
                        .msg
                        .get(pos + 1..pos + 1 + len as usize)
                        .ok_or(DnsError::Truncated)?;
                    if !out.is_empty() {
                        out.push('.');
                    }
                    push_label(&mut out, label);
                    if out.len() > MAX_NAME {
                        return Err(DnsError::NameTooLong);
                    }
                    pos += 1 + len as usize;
                }
                0xc0 => {
                    let low = *self.msg.get(pos + 1).ok_or(DnsError::Truncated)?;
                    let target = (usize::from(len & 0x3f) << 8) | usize::from(low);
                    pointers += 1;
                    // Pointers go backwards (RFC 1035 4.1.4); anything else may loop.
                    if pointers > MAX_POINTERS || target >= pos {
                        return Err(DnsError::BadPointer);
                    }
                    resume.get_or_insert(pos + 2);
                    pos = target;
                }
                _ => return Err(DnsError::BadLabel(len)),
            }
        }
        self.pos = resume.unwrap_or(pos);
        Ok(out)
    }
}

/// Appends a label in lower case, escaping what is not a printable name character as `\DDD`
/// (the zone file form), so a hostile label cannot smuggle dots, spaces or control bytes.
fn push_label(out: &mut String, label: &[u8]) {
    for &b in label {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => out.push(b as char),
            b'A'..=b'Z' => out.push(b.to_ascii_lowercase() as char),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
}

/// A record type's mnemonic (RFC 1035, 3596, ...), `TYPE<n>` for others (RFC 3597).
pub(crate) fn type_name(t: u16) -> Cow<'static, str> {
    let known = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        39 => "DNAME",
        43 => "DS",
        46 => "RRSIG",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        257 => "CAA",
        _ => return Cow::Owned(format!("TYPE{t}")),
    };
    Cow::Borrowed(known)
}

/// A response code's mnemonic (RFC 1035, 2136), `RCODE<n>` for others.
pub(crate) fn rcode_name(r: u8) -> Cow<'static, str> {
    let known = match r {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        _ => return Cow::Owned(format!("RCODE{r}")),
    };
    Cow::Borrowed(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response for www.example.com: CNAME to web.example.net (compressed), then an A.
    fn sample_response() -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        // Question at offset 12: www.example.com A IN
        m.extend_from_slice(b"\x03WWW\x07example\x03com\x00\x00\x01\x00\x01");
        // Answer 1: name -> pointer to 12, CNAME, IN, ttl 300, rdata "web" + pointer to "example" ... use net
        m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 1, 44]);
        let target = b"\x03web\x07example\x03net\x00";
        m.extend_from_slice(&(target.len() as u16).to_be_bytes());
        let target_at = m.len();
        m.extend_from_slice(target);
        // Answer 2: name -> pointer to the CNAME target, A, ttl 60, 93.184.216.34
        m.extend_from_slice(&[0xc0, target_at as u8, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        m.extend_from_slice(&[93, 184, 216, 34]);
        m
    }

    #[test]
    fn parses_question_cname_chain_and_address() {
        let m = parse(&sample_response()).unwrap();
        assert_eq!(m.id, 0x1234);
        assert!(m.is_response);
        assert_eq!(m.rcode, 0);
        assert_eq!(
            m.questions,
            vec![Question {
                name: "www.example.com".into(),
                qtype: TYPE_A
            }]
        );
        assert_eq!(m.answers.len(), 2);
        assert_eq!(m.answers[0].name, "www.example.com");
        assert_eq!(m.answers[0].ttl, 300);
        assert_eq!(
            m.answers[0].data,
            RecordData::Cname("web.example.net".into())
        );
        assert_eq!(m.answers[1].name, "web.example.net");
        assert_eq!(
            m.answers[1].data,
            RecordData::Address("93.184.216.34".parse().unwrap())
        );
    }

    #[test]
    fn truncation_keeps_whole_answers_and_never_panics() {
        let full = sample_response();
        let question_end = 12 + 17 + 4;
        for n in 0..full.len() {
            match parse(&full[..n]) {
                Ok(m) => {
                    assert!(n >= question_end, "prefix of {n} bytes parsed");
                    assert!(m.truncated && m.answers.len() < 2, "prefix of {n}: {m:?}");
                }
                Err(e) => assert_eq!(e, DnsError::Truncated),
            }
        }
    }

    #[test]
    fn pointer_loops_and_forward_pointers_are_refused() {
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]); // points at itself
        assert_eq!(parse(&m), Err(DnsError::BadPointer));
        let mut f = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        f.extend_from_slice(&[0xc0, 14, 0, 0, 1, 0, 1]);
        assert_eq!(parse(&f), Err(DnsError::BadPointer));
    }

    #[test]
    fn hostile_label_bytes_are_escaped() {
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(b"\x05a.b\n\"\x00\x00\x01\x00\x01");
        let q = &parse(&m).unwrap().questions[0];
        assert_eq!(q.name, "a\\046b\\010\\034");
    }

    #[test]
    fn tcp_framing() {
        let body = sample_response();
        let mut framed = (body.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&body);
        assert_eq!(parse_tcp(&framed).unwrap(), parse(&body).unwrap());
        assert_eq!(parse_tcp(&framed[..10]), Err(DnsError::Truncated));
    }
}
