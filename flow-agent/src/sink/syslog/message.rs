//! RFC 5424 messages: the header in front of each record, and the framing on the wire.
use std::time::SystemTime;

use super::config::Framing;
use crate::clock::rfc3339_micros;

/// The constant part of every header, and the parts that change per message.
#[derive(Clone, Debug)]
pub(crate) struct Header {
    /// `<PRI>1 `.
    pri_version: String,
    /// ` HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA `: after TIMESTAMP, before MSG.
    middle: String,
}

impl Header {
    pub(crate) fn new(pri: u8, hostname: &str, app_name: &str, procid: u32, msgid: &str) -> Self {
        Self {
            pri_version: format!("<{pri}>1 "),
            middle: format!(" {hostname} {app_name} {procid} {msgid} - "),
        }
    }

    /// Appends the header for a message written at `now`.
    pub(crate) fn write(&self, now: SystemTime, out: &mut Vec<u8>) {
        out.extend_from_slice(self.pri_version.as_bytes());
        out.extend_from_slice(rfc3339_micros(now).as_bytes());
        out.extend_from_slice(self.middle.as_bytes());
    }
}

/// Checks one RFC 5424 header field: 1..=`max` printable US-ASCII characters (33..=126).
pub(crate) fn check_field(name: &str, value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() || value.len() > max {
        return Err(format!(
            "{name} must be 1 to {max} characters, not {} ({value:?})",
            value.len()
        ));
    }
    if let Some(c) = value.chars().find(|c| !matches!(*c as u32, 33..=126)) {
        return Err(format!(
            "{name} {value:?} has {c:?}: RFC 5424 allows printable US-ASCII without spaces only"
        ));
    }
    Ok(())
}

/// The host's name as an RFC 5424 HOSTNAME: characters it does not allow become `_`, and an
/// empty name the NILVALUE `-`.
pub(crate) fn sanitize_hostname(name: &str) -> String {
    let s: String = name
        .chars()
        .take(255)
        .map(|c| if matches!(c as u32, 33..=126) { c } else { '_' })
        .collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// Appends one message with its framing (streams) or as it is (datagrams: `None`).
pub(crate) fn frame(framing: Option<Framing>, message: &[u8], out: &mut Vec<u8>) {
    match framing {
        Some(Framing::OctetCounting) => {
            out.extend_from_slice(message.len().to_string().as_bytes());
            out.push(b' ');
            out.extend_from_slice(message);
        }
        Some(Framing::Newline) => {
            out.extend_from_slice(message);
            out.push(b'\n');
        }
        None => out.extend_from_slice(message),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn header_has_every_rfc5424_field_in_order() {
        let h = Header::new(8 * 16 + 6, "web-1", "flow-agent", 4242, "flow");
        let mut out = Vec::new();
        h.write(
            UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            &mut out,
        );
        out.extend_from_slice(b"{\"a\":1}");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<134>1 2023-11-14T22:13:20.123456Z web-1 flow-agent 4242 flow - {\"a\":1}"
        );
    }

    #[test]
    fn framings() {
        let mut out = Vec::new();
        frame(Some(Framing::OctetCounting), b"<14>1 abc", &mut out);
        frame(Some(Framing::Newline), b"xyz", &mut out);
        frame(None, b"dgram", &mut out);
        assert_eq!(out, b"9 <14>1 abcxyz\ndgram");
    }

    #[test]
    fn fields_are_checked_and_hostnames_sanitized() {
        assert!(check_field("app_name", "flow-agent", 48).is_ok());
        assert!(check_field("app_name", "flow agent", 48)
            .unwrap_err()
            .contains("' '"));
        assert!(check_field("msgid", &"x".repeat(33), 32).is_err());
        assert!(check_field("msgid", "", 32).is_err());
        assert!(check_field("msgid", "flö", 32).is_err());
        assert_eq!(sanitize_hostname("my host\u{e9}"), "my_host_");
        assert_eq!(sanitize_hostname(""), "-");
    }
}
