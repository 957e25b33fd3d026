//! The header in front of each record, and the framing on the wire. Network transports (udp,
//! tcp, tls) write RFC 5424; unix sockets (/dev/log and the like, read by journald, rsyslog's
//! imuxsock, syslog-ng's unix sources) the local form of RFC 3164 that glibc's syslog(3) writes:
//! `<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG`, which is what those readers parse.
use std::time::{SystemTime, UNIX_EPOCH};

use super::config::Framing;
use crate::clock::rfc3339_micros;

/// The constant parts of every header; [`Header::write`] adds the time.
#[derive(Clone, Debug)]
pub(crate) enum Header {
    /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`.
    Rfc5424 {
        /// `<PRI>1 `.
        pri_version: String,
        /// ` HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA `: after TIMESTAMP, before MSG.
        middle: String,
    },
    /// `<PRI>TIMESTAMP TAG[PID]: MSG`, TIMESTAMP in local time without year or fraction.
    Local {
        /// `<PRI>`.
        pri: String,
        /// ` TAG[PID]: `.
        tag_pid: String,
    },
}

impl Header {
    pub(crate) fn rfc5424(
        pri: u8,
        hostname: &str,
        app_name: &str,
        procid: u32,
        msgid: &str,
    ) -> Self {
        Self::Rfc5424 {
            pri_version: format!("<{pri}>1 "),
            middle: format!(" {hostname} {app_name} {procid} {msgid} - "),
        }
    }

    /// The local form, as syslog(3) with `openlog(tag, LOG_PID, ...)` writes it.
    pub(crate) fn local(pri: u8, tag: &str, pid: u32) -> Self {
        Self::Local {
            pri: format!("<{pri}>"),
            tag_pid: format!(" {tag}[{pid}]: "),
        }
    }

    /// Appends the header for a message written at `now`.
    pub(crate) fn write(&self, now: SystemTime, out: &mut Vec<u8>) {
        match self {
            Self::Rfc5424 {
                pri_version,
                middle,
            } => {
                out.extend_from_slice(pri_version.as_bytes());
                out.extend_from_slice(rfc3339_micros(now).as_bytes());
                out.extend_from_slice(middle.as_bytes());
            }
            Self::Local { pri, tag_pid } => {
                out.extend_from_slice(pri.as_bytes());
                out.extend_from_slice(local_timestamp(now).as_bytes());
                out.extend_from_slice(tag_pid.as_bytes());
            }
        }
    }
}

/// RFC 3164's TIMESTAMP in this host's time zone, as syslog(3) writes it (`%b %e %T` in the C
/// locale): `Nov 23 12:34:56`, `Nov  3 08:00:00`. In UTC when the zone cannot be read.
pub(crate) fn local_timestamp(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as libc::time_t;
    // SAFETY: tm is plain data; localtime_r (thread-safe) fills it or returns null, and gmtime_r
    // cannot fail for a time_t from a SystemTime.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            libc::gmtime_r(&secs, &mut tm);
        }
        tm
    };
    rfc3164_timestamp(tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// `Mmm dd hh:mm:ss` from a broken-down time (month 0-11); the day is padded with a space.
fn rfc3164_timestamp(month: i32, day: i32, hour: i32, min: i32, sec: i32) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS[month.clamp(0, 11) as usize];
    format!("{month} {day:>2} {hour:02}:{min:02}:{sec:02}")
}

/// Checks one RFC 5424 header field: 1..=`max` printable US-ASCII characters (33..=126).
pub(crate) fn check_field(name: &'static str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.is_empty() || value.len() > max {
        return Err(FieldError::Length {
            name,
            max,
            value: value.into(),
        });
    }
    if let Some(c) = value.chars().find(|c| !matches!(*c as u32, 33..=126)) {
        return Err(FieldError::NotPrintable {
            name,
            value: value.into(),
            c,
        });
    }
    Ok(())
}

/// Why a value cannot be an RFC 5424 header field.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FieldError {
    #[error("{name} must be 1 to {max} characters, not {} ({value:?})", .value.len())]
    Length {
        name: &'static str,
        max: usize,
        value: String,
    },
    #[error("{name} {value:?} has {c:?}: RFC 5424 allows printable US-ASCII without spaces only")]
    NotPrintable {
        name: &'static str,
        value: String,
        c: char,
    },
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
        let h = Header::rfc5424(8 * 16 + 6, "web-1", "flow-agent", 4242, "flow");
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
    fn the_local_form_is_syslog3s() {
        assert_eq!(rfc3164_timestamp(10, 23, 12, 34, 56), "Nov 23 12:34:56");
        assert_eq!(rfc3164_timestamp(0, 3, 8, 0, 5), "Jan  3 08:00:05");
        let h = Header::local(8 * 16 + 6, "flow-agent", 4242);
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut out = Vec::new();
        h.write(now, &mut out);
        out.extend_from_slice(b"{\"a\":1}");
        let text = String::from_utf8(out).unwrap();
        // The hour depends on this host's time zone; the rest does not.
        let stamp = local_timestamp(now);
        assert_eq!(text, format!("<134>{stamp} flow-agent[4242]: {{\"a\":1}}"));
        let b = stamp.as_bytes();
        assert!(
            stamp.len() == 15
                && stamp.starts_with("Nov 1")
                && (b[4] == b'1' || b[4] == b' ')
                && b[6] == b' '
                && b[9] == b':'
                && b[12] == b':'
                && stamp.ends_with(":20"),
            "{stamp:?}"
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
            .to_string()
            .contains("' '"));
        assert!(check_field("msgid", &"x".repeat(33), 32).is_err());
        assert!(check_field("msgid", "", 32).is_err());
        assert!(check_field("msgid", "flö", 32).is_err());
        assert_eq!(sanitize_hostname("my host\u{e9}"), "my_host_");
        assert_eq!(sanitize_hostname(""), "-");
    }
}
