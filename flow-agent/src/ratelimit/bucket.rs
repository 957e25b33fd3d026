//! A token bucket: `burst` tokens at most, refilled at `rate` tokens a second; one token admits
//! one flow. Time is passed in (nanoseconds of any monotonic clock), so tests need no sleeps.

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Bucket {
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at_ns: u64,
}

/// A limit: `rate` flows a second after a first `burst`. A rate of 0 is no limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Limit {
    pub(crate) rate: f64,
    pub(crate) burst: u32,
}

impl Limit {
    pub(crate) fn is_on(&self) -> bool {
        self.rate > 0.0
    }
}

impl Bucket {
    /// A full bucket: a process the agent has not seen may start with a burst.
    pub(crate) fn full(limit: Limit, now_ns: u64) -> Self {
        Self {
            tokens: f64::from(limit.burst),
            at_ns: now_ns,
        }
    }

    fn refill(&mut self, limit: Limit, now_ns: u64) {
        // A clock that went backwards (never for CLOCK_BOOTTIME) refills nothing.
        let elapsed = now_ns.saturating_sub(self.at_ns) as f64 / 1e9;
        self.tokens = (self.tokens + elapsed * limit.rate).min(f64::from(limit.burst));
        self.at_ns = self.at_ns.max(now_ns);
    }

    /// Whether a token is there now (refilling first); takes nothing.
    pub(crate) fn has_token(&mut self, limit: Limit, now_ns: u64) -> bool {
        self.refill(limit, now_ns);
        self.tokens >= 1.0
    }

    /// Takes the token [`Bucket::has_token`] found.
    pub(crate) fn take(&mut self) {
        self.tokens -= 1.0;
    }

    /// Full again: forgetting this bucket loses nothing (a new one starts full).
    pub(crate) fn is_full(&mut self, limit: Limit, now_ns: u64) -> bool {
        self.refill(limit, now_ns);
        self.tokens >= f64::from(limit.burst)
    }

    /// A new limit (reload): the tokens saved stay, up to the new burst.
    pub(crate) fn clamp(&mut self, limit: Limit) {
        self.tokens = self.tokens.min(f64::from(limit.burst));
    }

    pub(crate) fn last_ns(&self) -> u64 {
        self.at_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn admitted(b: &mut Bucket, limit: Limit, now: u64, tries: u32) -> u32 {
        let mut n = 0;
        for _ in 0..tries {
            if b.has_token(limit, now) {
                b.take();
                n += 1;
            }
        }
        n
    }

    #[test]
    fn a_burst_then_the_rate() {
        let l = Limit {
            rate: 10.0,
            burst: 50,
        };
        let mut b = Bucket::full(l, 0);
        assert_eq!(admitted(&mut b, l, 0, 500), 50);
        // Half a second later: five tokens, not more.
        assert_eq!(admitted(&mut b, l, SEC / 2, 500), 5);
        // A long pause refills up to the burst only.
        assert_eq!(admitted(&mut b, l, 1000 * SEC, 500), 50);
    }

    #[test]
    fn admitted_never_exceed_burst_plus_rate_times_time() {
        let l = Limit {
            rate: 7.5,
            burst: 3,
        };
        let mut b = Bucket::full(l, 0);
        let mut total = 0u32;
        // Ten seconds of attempts every millisecond.
        for ms in 0..10_000u64 {
            total += admitted(&mut b, l, ms * SEC / 1000, 3);
        }
        let bound = 3.0 + 7.5 * 10.0;
        assert!(f64::from(total) <= bound, "{total} > {bound}");
        assert!(f64::from(total) >= bound - 2.0, "{total} far below {bound}");
    }

    #[test]
    fn fractional_rates_accumulate() {
        let l = Limit {
            rate: 0.5,
            burst: 1,
        };
        let mut b = Bucket::full(l, 0);
        assert_eq!(admitted(&mut b, l, 0, 5), 1);
        assert_eq!(admitted(&mut b, l, SEC, 5), 0);
        assert_eq!(admitted(&mut b, l, 2 * SEC, 5), 1);
    }

    #[test]
    fn full_again_and_clamped() {
        let l = Limit {
            rate: 1.0,
            burst: 4,
        };
        let mut b = Bucket::full(l, 0);
        assert!(b.is_full(l, 0));
        admitted(&mut b, l, 0, 2);
        assert!(!b.is_full(l, SEC));
        assert!(b.is_full(l, 2 * SEC));
        let smaller = Limit {
            rate: 1.0,
            burst: 1,
        };
        b.clamp(smaller);
        assert_eq!(admitted(&mut b, smaller, 2 * SEC, 5), 1);
    }

    #[test]
    fn a_clock_going_back_refills_nothing() {
        let l = Limit {
            rate: 1000.0,
            burst: 1,
        };
        let mut b = Bucket::full(l, 5 * SEC);
        assert_eq!(admitted(&mut b, l, 5 * SEC, 3), 1);
        assert_eq!(admitted(&mut b, l, SEC, 3), 0);
    }
}
