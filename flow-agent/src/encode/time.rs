//! Times as each format writes them, from the model's integer nanoseconds: RFC 3339 with
//! microseconds (native, ECS), epoch numbers (Zeek, OCSF) and Sysmon's layouts. Formatted into
//! a stack buffer: no allocation per field.
use std::fmt;

use serde::{Serialize, Serializer};

use crate::{clock::civil_from_days, event::WallTime};

/// `2026-11-23T13:05:50.542313Z`: RFC 3339 UTC with microseconds.
#[derive(Clone, Copy)]
pub(crate) struct Rfc3339 {
    buf: [u8; 27],
}

impl Rfc3339 {
    pub(crate) fn new(t: WallTime) -> Self {
        let mut buf = *b"0000-00-00T00:00:00.000000Z";
        let micros = t.0 / 1_000;
        let secs = micros / 1_000_000;
        let (days, rem) = (secs / 86_400, (secs % 86_400) as u32);
        let (y, m, d) = civil_from_days(days as i64);
        let y = y.clamp(0, 9999) as u32;
        let us = (micros % 1_000_000) as u32;
        for (at, v) in [
            (0, y / 100),
            (2, y % 100),
            (5, m),
            (8, d),
            (11, rem / 3600),
            (14, rem % 3600 / 60),
            (17, rem % 60),
            (20, us / 10_000),
            (22, us / 100 % 100),
            (24, us % 100),
        ] {
            two_digits(&mut buf[at..at + 2], v);
        }
        Self { buf }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits and separators were written.
        std::str::from_utf8(&self.buf).unwrap_or_default()
    }

    /// The text's bytes (ASCII).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Writes `v` (below 100) as two decimal digits.
fn two_digits(out: &mut [u8], v: u32) {
    out[0] = b'0' + (v / 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Seconds since the epoch with microseconds (Zeek `time`).
pub(crate) fn epoch_seconds(t: WallTime) -> f64 {
    (t.0 / 1_000) as f64 / 1e6
}

/// Seconds with nanosecond resolution (native and Zeek durations).
pub(crate) fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Sysmon's `UtcTime` layout, `2026-11-23 13:05:50.542` (milliseconds, truncated).
pub(crate) fn sysmon_utc_time(t: WallTime) -> String {
    let r = Rfc3339::new(t);
    let s = r.as_str();
    format!("{} {}", &s[..10], &s[11..23])
}

/// Sysmon's `TimeCreated SystemTime` layout, nine fractional digits:
/// `2026-11-23T13:05:50.542313000Z`.
pub(crate) fn sysmon_system_time(t: WallTime) -> String {
    let r = Rfc3339::new(t);
    format!("{}000Z", &r.as_str()[..26])
}

/// Microseconds since the Unix epoch of an RFC 3339 UTC time (`Z`, 0 to 9 fractional digits);
/// `None` for anything else. Tests read the times of documented events with it.
#[cfg(test)]
pub(crate) fn epoch_micros(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| num_str(t.get(r)?);
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let frac = &t[19..t.len() - 1];
    let micros = match frac.strip_prefix('.') {
        None if frac.is_empty() => 0,
        Some(digits) if (1..=9).contains(&digits.len()) => {
            let padded = format!("{digits:0<9}");
            num_str(&padded)? / 1000
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + s) * 1_000_000) + micros)
}

/// A run of ASCII digits (no sign, no spaces).
#[cfg(test)]
fn num_str(s: &str) -> Option<i64> {
    s.bytes()
        .all(|c| c.is_ascii_digit())
        .then(|| s.parse().ok())?
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
#[cfg(test)]
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn wall(us: u64) -> WallTime {
        WallTime(us * 1_000)
    }

    #[test]
    fn formats_rfc3339_like_the_agent_clock() {
        for us in [
            0u64,
            1,
            86_399_999_999,
            951_782_400_000_000,
            4_102_444_800_000_001,
            1_764_000_000_542_313,
        ] {
            let t = UNIX_EPOCH + Duration::from_micros(us);
            let want = crate::clock::rfc3339_micros(t);
            assert_eq!(Rfc3339::new(wall(us)).as_str(), want);
            assert_eq!(epoch_micros(&want), Some(us as i64), "{want}");
        }
        // Nanoseconds are cut, not rounded.
        assert_eq!(
            Rfc3339::new(WallTime(1_700_000_000_123_456_999)).as_str(),
            "2023-11-14T22:13:20.123456Z"
        );
    }

    #[test]
    fn rejects_other_layouts() {
        for bad in [
            "",
            "2023-11-14 22:13:20.123456Z",
            "2023-11-14T22:13:20.123456+01:00",
            "2023-11-14T22:13:20.Z",
            "2023-13-14T22:13:20Z",
            "2023-11-14T22:13:2x.123456Z",
            "2023-11-14T22:13:20.1234567890Z",
            "+023-11-14T22:13:20Z",
        ] {
            assert_eq!(epoch_micros(bad), None, "{bad}");
        }
    }

    #[test]
    fn epoch_and_sysmon_layouts() {
        let t = wall(1_700_000_000_123_456);
        assert_eq!(epoch_seconds(t), 1_700_000_000.123456);
        assert_eq!(t.millis(), 1_700_000_000_123);
        assert_eq!(sysmon_utc_time(t), "2023-11-14 22:13:20.123");
        assert_eq!(sysmon_system_time(t), "2023-11-14T22:13:20.123456000Z");
        assert_eq!(seconds(1_068_809), 0.001068809);
    }
}
