//! RFC 3339 UTC times (`2026-11-23T13:05:50.542313Z`) as epoch microseconds, to compare the
//! formats' epoch numbers with the native strings.

/// Microseconds since the epoch; `None` unless `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`.
pub fn epoch_micros(t: &str) -> Option<i64> {
    let (date, rest) = t.strip_suffix('Z')?.split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let (hms, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let h: Vec<i64> = hms
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if d.len() != 3 || h.len() != 3 || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if date.len() != 10 || hms.len() != 8 || (rest.contains('.') && frac.is_empty()) {
        return None;
    }
    let micros: i64 = format!("{frac:0<6}")[..6].parse().ok()?;
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1])
    } else {
        (d[0], d[1])
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d[2] - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some((days * 86_400 + h[0] * 3600 + h[1] * 60 + h[2]) * 1_000_000 + micros)
}

/// Whether `t` is an RFC 3339 UTC time as above.
pub fn is_time(t: &str) -> bool {
    epoch_micros(t).is_some()
}

#[test]
fn known_instants() {
    assert_eq!(epoch_micros("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        epoch_micros("2023-11-14T22:13:20.123456Z"),
        Some(1_700_000_000_123_456)
    );
    assert_eq!(
        epoch_micros("2000-02-29T00:00:00.5Z"),
        Some(951_782_400_500_000)
    );
    assert_eq!(epoch_micros("2023-11-14 22:13:20Z"), None);
    assert_eq!(epoch_micros("2023-11-14T22:13:20.Z"), None);
}
