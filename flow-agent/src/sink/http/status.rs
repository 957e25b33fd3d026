//! What an HTTP status means for the records it answers. One table for whole requests and
//! one for the documents of a `_bulk` answer, so that a status turns into a drop only where
//! it says so here: records are lost only when the collector refused them for what they
//! are, never because it was down, busy, misconfigured or asking for credentials.
use std::time::Duration;

use hyper::StatusCode;

/// What becomes of the records a status answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Taken.
    Taken,
    /// Not taken, and nothing against the records themselves: kept (queue, disk buffer) and
    /// sent again after a back-off.
    Retry,
    /// The request was refused for its size or content, which may be the fault of one
    /// record: its records go again in two halves, and a record refused alone is dropped.
    Split,
    /// Refused for good: dropped and counted.
    Refuse,
}

/// The verdict on a whole request (NDJSON, or a `_bulk` request's top-level status).
pub(crate) fn of_request(status: StatusCode) -> Verdict {
    match status.as_u16() {
        200..=299 => Verdict::Taken,
        // 413: too large. 400 and 422: content refused (malformed, unprocessable); a
        // collector answers so for a whole batch when one record displeases it, and
        // halving keeps the others.
        400 | 413 | 422 => Verdict::Split,
        // Everything else says nothing against the records: credentials (401, 403, 407),
        // time-outs (408), throttling (429), server errors (5xx), and an endpoint that is
        // wrong or not there yet (3xx, which are not followed, 404, 405, 415...), which an
        // operator fixes with a reload while the records wait in the disk buffer.
        _ => Verdict::Retry,
    }
}

/// The verdict on one document of a `_bulk` answer (the item's own status).
pub(crate) fn of_document(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Taken,
        // Rejected execution: the cluster's queues are full.
        429 => Verdict::Retry,
        // The document itself was refused (mapping conflict, bad field...): the same
        // bytes would be refused again.
        400..=499 => Verdict::Refuse,
        // 5xx (shard unavailable...) and anything Elasticsearch does not send: the
        // document may be taken later.
        _ => Verdict::Retry,
    }
}

/// Whether a `Retry-After` with this status is honoured: the statuses RFC 9110 and RFC 6585
/// give it a meaning for. On others (e.g. 401) it is ignored and the back-off decides.
pub(crate) fn honours_retry_after(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
}

/// A `Retry-After` value: delay-seconds or an HTTP-date (then the time left until it, none
/// when it has passed). Unbounded: the delivery worker caps it at `backoff_max`.
pub(crate) fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    at.duration_since(now).ok()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::*;

    fn request(code: u16) -> Verdict {
        of_request(StatusCode::from_u16(code).unwrap())
    }

    #[test]
    fn requests_are_dropped_for_nothing_but_their_content_and_then_only_alone() {
        for code in [200, 201, 202, 204] {
            assert_eq!(request(code), Verdict::Taken, "{code}");
        }
        for code in [400, 413, 422] {
            assert_eq!(request(code), Verdict::Split, "{code}");
        }
        // The statuses of issue 16 item 6, and the rest of 5xx.
        for code in [401, 403, 407, 408, 429, 500, 501, 502, 503, 504, 507, 599] {
            assert_eq!(request(code), Verdict::Retry, "{code}");
        }
        // A wrong or missing endpoint: the records are not to blame.
        for code in [301, 302, 307, 308, 404, 405, 406, 410, 415, 421, 431] {
            assert_eq!(request(code), Verdict::Retry, "{code}");
        }
        // No status of a whole request drops it outright.
        for code in 100..=599 {
            assert_ne!(request(code), Verdict::Refuse, "{code}");
        }
    }

    #[test]
    fn documents_are_dropped_for_a_4xx_other_than_429_only() {
        assert_eq!(of_document(201), Verdict::Taken);
        assert_eq!(of_document(200), Verdict::Taken);
        assert_eq!(of_document(429), Verdict::Retry);
        for code in [400, 401, 403, 404, 409, 413, 422] {
            assert_eq!(of_document(code), Verdict::Refuse, "{code}");
        }
        for code in [500, 502, 503, 504] {
            assert_eq!(of_document(code), Verdict::Retry, "{code}");
        }
        for code in 0..=999 {
            let refused = (400..500).contains(&code) && code != 429;
            assert_eq!(of_document(code) == Verdict::Refuse, refused, "{code}");
        }
    }

    #[test]
    fn retry_after_only_for_429_and_503() {
        assert!(honours_retry_after(StatusCode::TOO_MANY_REQUESTS));
        assert!(honours_retry_after(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!honours_retry_after(StatusCode::UNAUTHORIZED));
        assert!(!honours_retry_after(StatusCode::INTERNAL_SERVER_ERROR));
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        // Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example.
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date gone by: no wait asked.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            None
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert!(parse_retry_after("120", SystemTime::now()).is_some());
    }
}
