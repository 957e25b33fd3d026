//! `[rate_limit]` of the configuration: off unless enabled.
use serde::{Deserialize, Serialize};

use super::Limit;
use crate::units::Seconds;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RateLimitConfig {
    pub(crate) enabled: bool,
    /// New flows a second each process may start after its burst; 0: no per-process limit.
    pub(crate) per_process_rate: f64,
    pub(crate) per_process_burst: u32,
    /// New flows a second for all processes together after the burst; 0: no global limit.
    pub(crate) global_rate: f64,
    pub(crate) global_burst: u32,
    /// How often `rate_limited` summaries are written.
    pub(crate) summary_interval: Seconds,
    /// Processes whose limit state is kept; beyond it the least recently limited are forgotten
    /// (counted) and start again with a full burst.
    pub(crate) max_processes: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            per_process_rate: 100.0,
            per_process_burst: 1000,
            global_rate: 0.0,
            global_burst: 10_000,
            summary_interval: Seconds(60.0),
            max_processes: 10_000,
        }
    }
}

/// Rates above this are a typo: the agent cannot start that many flows' events a second.
pub(crate) const MAX_RATE: f64 = 10_000_000.0;
pub(crate) const MAX_PROCESSES: u32 = 1 << 20;

impl RateLimitConfig {
    pub(crate) fn per_process(&self) -> Limit {
        Limit {
            rate: self.per_process_rate,
            burst: self.per_process_burst,
        }
    }

    pub(crate) fn global(&self) -> Limit {
        Limit {
            rate: self.global_rate,
            burst: self.global_burst,
        }
    }

    /// Problems by key (relative to `[rate_limit]`).
    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (rate_key, rate, burst_key, burst) in [
            (
                "per_process_rate",
                self.per_process_rate,
                "per_process_burst",
                self.per_process_burst,
            ),
            (
                "global_rate",
                self.global_rate,
                "global_burst",
                self.global_burst,
            ),
        ] {
            if !(0.0..=MAX_RATE).contains(&rate) {
                out.push((
                    rate_key,
                    format!("{rate} is not a rate (expected flows a second from 0, no limit, to {MAX_RATE})"),
                ));
            } else if rate > 0.0 && burst == 0 {
                out.push((
                    burst_key,
                    "0 admits no flow at all (expected at least 1 while the rate is not 0)".into(),
                ));
            }
        }
        let s = self.summary_interval.0;
        if !(1.0..=3600.0).contains(&s) {
            out.push((
                "summary_interval",
                format!("{s} is out of range (expected 1 to 3600 seconds)"),
            ));
        }
        if !(1..=MAX_PROCESSES).contains(&self.max_processes) {
            out.push((
                "max_processes",
                format!(
                    "{} is out of range (expected 1 to {MAX_PROCESSES})",
                    self.max_processes
                ),
            ));
        }
        out
    }
}
