//! Knobs for slow machines (emulated VMs): how much load the tests generate and how long their
//! bounds are.
//!
//! - `FLOW_TEST_SCALE` (a positive number, default 1): load tests make [`scaled`]`(n)` of
//!   their `n` processes or connections. Whatever the scale, every one of them is checked
//!   exactly; only how many there are changes.
//! - `FLOW_TEST_SLOW` (a whole number ≥ 1, default 1): every bound the harness waits for
//!   (an event to appear, a process to exit, a listener, the agent to start or stop) is this
//!   many times longer. A bound is only a limit on waiting for something that should happen:
//!   on a passing run it costs nothing.
//!
//! `cargo xtask vm-test` sets both for its TCG-emulated guests unless they are already set.

use std::sync::OnceLock;
use std::time::Duration;

pub const SCALE_ENV: &str = "FLOW_TEST_SCALE";
pub const SLOW_ENV: &str = "FLOW_TEST_SLOW";

/// `$FLOW_TEST_SCALE`, default 1.0. Panics on a value that is not a positive number: a
/// mistyped knob must not silently run the full (or an empty) load.
pub fn scale() -> f64 {
    static SCALE: OnceLock<f64> = OnceLock::new();
    *SCALE.get_or_init(|| match std::env::var(SCALE_ENV) {
        Err(_) => 1.0,
        Ok(v) => parse_scale(&v).unwrap_or_else(|e| panic!("{SCALE_ENV}={v:?}: {e}")),
    })
}

/// `n` at the current scale, rounded, at least 1.
pub fn scaled(n: usize) -> usize {
    scale_count(n, scale())
}

/// `$FLOW_TEST_SLOW`, default 1. Panics on anything but a whole number ≥ 1.
pub fn slow() -> u32 {
    static SLOW: OnceLock<u32> = OnceLock::new();
    *SLOW.get_or_init(|| match std::env::var(SLOW_ENV) {
        Err(_) => 1,
        Ok(v) => parse_slow(&v).unwrap_or_else(|e| panic!("{SLOW_ENV}={v:?}: {e}")),
    })
}

/// A bound stretched by [`slow`].
pub fn slowed(bound: Duration) -> Duration {
    bound * slow()
}

/// `"{bound:?}"`, with how it was stretched when [`slow`] is above 1: for failure messages.
pub fn describe_bound(base: Duration) -> String {
    match slow() {
        1 => format!("{base:?}"),
        k => format!("{:?} ({base:?} × {SLOW_ENV} {k})", base * k),
    }
}

/// One line naming the knobs, for tests to print (`--show-output` or a failure shows it).
pub fn speed_summary() -> String {
    format!("{SCALE_ENV}={} {SLOW_ENV}={}", scale(), slow())
}

fn parse_scale(v: &str) -> anyhow::Result<f64> {
    let f: f64 = v
        .trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("not a number ({e})"))?;
    if !(f.is_finite() && f > 0.0) {
        anyhow::bail!("must be a positive number, e.g. 0.1");
    }
    Ok(f)
}

fn parse_slow(v: &str) -> anyhow::Result<u32> {
    match v.trim().parse::<u32>() {
        Ok(k) if k >= 1 => Ok(k),
        _ => anyhow::bail!("must be a whole number ≥ 1, e.g. 10"),
    }
}

fn scale_count(n: usize, scale: f64) -> usize {
    ((n as f64 * scale).round() as usize).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_scale_and_never_reach_zero() {
        assert_eq!(scale_count(200, 1.0), 200);
        assert_eq!(scale_count(200, 0.1), 20);
        assert_eq!(scale_count(100, 0.1), 10);
        assert_eq!(scale_count(3, 0.1), 1);
        assert_eq!(scale_count(100, 2.0), 200);
    }

    #[test]
    fn knobs_parse_strictly() {
        assert_eq!(parse_scale("0.1").unwrap(), 0.1);
        assert_eq!(parse_scale(" 1 ").unwrap(), 1.0);
        for bad in ["0", "-1", "x", "", "inf", "NaN"] {
            assert!(parse_scale(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_slow("10").unwrap(), 10);
        for bad in ["0", "1.5", "-2", ""] {
            assert!(parse_slow(bad).is_err(), "{bad:?}");
        }
    }
}
