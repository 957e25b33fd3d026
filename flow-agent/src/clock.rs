//! Kernel timestamps are CLOCK_BOOTTIME nanoseconds; events carry wall-clock UTC. A leaf
//! module: the flow table, enrichment, encoders and sinks all read the time here.
use std::time::{SystemTime, UNIX_EPOCH};

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub(crate) fn boot_ns_now() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

/// Converts boot-time nanoseconds to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BootClock {
    /// Wall-clock nanoseconds since the epoch at boot.
    boot_epoch_ns: u64,
}

impl BootClock {
    pub(crate) fn now() -> Self {
        let wall = clock_ns(libc::CLOCK_REALTIME);
        Self {
            boot_epoch_ns: wall.saturating_sub(boot_ns_now()),
        }
    }

    /// Boot-time nanoseconds as wall-clock time.
    pub(crate) fn wall(self, boot_ns: u64) -> crate::event::WallTime {
        crate::event::WallTime(self.boot_epoch_ns + boot_ns)
    }
}

/// RFC 3339 UTC with microseconds, e.g. 2026-11-23T12:34:56.123456Z.
pub(crate) fn rfc3339_micros(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::event::WallTime;

    #[test]
    fn formats_known_instants() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(rfc3339_micros(t), "2023-11-14T22:13:20.123456Z");
        assert_eq!(rfc3339_micros(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_micros(leap), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn boot_clock_is_close_to_now() {
        let c = BootClock::now();
        let wall = c.wall(boot_ns_now());
        let now = WallTime::from(SystemTime::now());
        assert!(wall.0.abs_diff(now.0) < 1_000_000_000);
    }
}
