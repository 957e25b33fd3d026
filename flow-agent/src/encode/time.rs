//! The native times (RFC 3339 UTC, `2026-11-23T13:05:50.542313Z`) in the shapes other formats
//! want: epoch numbers (Zeek, OCSF) and Sysmon's layouts.
use std::time::SystemTime;

/// Microseconds since the Unix epoch of an RFC 3339 UTC time (`Z`, 0 to 9 fractional digits);
/// `None` for anything else.
pub fn epoch_micros(t: &str) -> Option<i64> {
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
fn num_str(s: &str) -> Option<i64> {
    s.bytes()
        .all(|c| c.is_ascii_digit())
        .then(|| s.parse().ok())?
}

/// Milliseconds since the epoch (OCSF `timestamp_t`).
pub fn epoch_millis(t: &str) -> Option<i64> {
    epoch_micros(t).map(|us| us.div_euclid(1000))
}

/// Seconds since the epoch with microseconds (Zeek `time`).
pub fn epoch_seconds(t: &str) -> Option<f64> {
    epoch_micros(t).map(|us| us as f64 / 1e6)
}

/// Sysmon's `UtcTime` layout, `2026-11-23 13:05:50.542` (milliseconds, truncated).
pub fn sysmon_utc_time(t: &str) -> Option<String> {
    epoch_micros(t)?;
    let (date, rest) = t.split_once('T')?;
    let time = rest.trim_end_matches('Z');
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    Some(format!("{date} {hms}.{:0<3.3}", frac))
}

/// Sysmon's `TimeCreated SystemTime` layout, nine fractional digits:
/// `2026-11-23T13:05:50.542313000Z`.
pub fn sysmon_system_time(now: SystemTime) -> String {
    let micros = crate::enrich::clock::rfc3339_micros(now);
    format!("{}000Z", micros.trim_end_matches('Z'))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
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

    #[test]
    fn parses_native_times() {
        assert_eq!(epoch_micros("1970-01-01T00:00:00.000000Z"), Some(0));
        assert_eq!(
            epoch_micros("2023-11-14T22:13:20.123456Z"),
            Some(1_700_000_000_123_456)
        );
        assert_eq!(
            epoch_micros("2000-02-29T00:00:00Z"),
            Some(951_782_400_000_000)
        );
        assert_eq!(
            epoch_micros("2023-11-14T22:13:20.1234567Z"),
            Some(1_700_000_000_123_456)
        );
        assert_eq!(
            epoch_millis("2023-11-14T22:13:20.123956Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            epoch_seconds("2023-11-14T22:13:20.5Z"),
            Some(1_700_000_000.5)
        );
        // Round trip with the agent's own formatter over a few centuries.
        for us in [
            0i64,
            1,
            86_399_999_999,
            4_102_444_800_000_001,
            1_764_000_000_542_313,
        ] {
            let t = UNIX_EPOCH + Duration::from_micros(us as u64);
            let s = crate::enrich::clock::rfc3339_micros(t);
            assert_eq!(epoch_micros(&s), Some(us), "{s}");
        }
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
    fn sysmon_layouts() {
        assert_eq!(
            sysmon_utc_time("2026-11-23T13:05:50.542913Z").as_deref(),
            Some("2026-11-23 13:05:50.542")
        );
        assert_eq!(
            sysmon_utc_time("2026-11-23T13:05:50Z").as_deref(),
            Some("2026-11-23 13:05:50.000")
        );
        assert_eq!(sysmon_utc_time("yesterday"), None);
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(sysmon_system_time(t), "2023-11-14T22:13:20.123456000Z");
    }
}
