//! Which records of a batch the destination already settled (took or refused for good), kept
//! across a retry so that only the rest is sent again: a `_bulk` answer can take most of a
//! request and ask for a few documents again, and a batch split into several requests can
//! fail halfway.
use std::hash::{DefaultHasher, Hash, Hasher};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Pending,
    Taken,
    Rejected,
}

/// Per-record state of one batch.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    states: Vec<State>,
    /// Fingerprints of the records the states belong to.
    fingerprints: Vec<u64>,
    /// First reason a record was refused, for the report.
    pub(crate) reject_reason: Option<String>,
}

fn fingerprint(record: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    record.hash(&mut h);
    h.finish()
}

impl Progress {
    /// The progress of `records`: `saved` when `records` begins with the records it was made
    /// for (the worker sends the same batch again after a retry, possibly with more records
    /// behind it), else all pending.
    pub(crate) fn resume(saved: Option<Progress>, records: &[Vec<u8>]) -> Progress {
        let fingerprints: Vec<u64> = records.iter().map(|r| fingerprint(r)).collect();
        if let Some(mut saved) = saved {
            let n = saved.states.len();
            if n <= records.len() && saved.fingerprints[..] == fingerprints[..n] {
                saved.states.resize(records.len(), State::Pending);
                saved.fingerprints = fingerprints;
                return saved;
            }
        }
        Progress {
            states: vec![State::Pending; records.len()],
            fingerprints,
            reject_reason: None,
        }
    }

    pub(crate) fn pending(&self) -> Vec<usize> {
        self.indices(State::Pending)
    }

    pub(crate) fn set(&mut self, index: usize, state: State) {
        self.states[index] = state;
    }

    pub(crate) fn count(&self, state: State) -> usize {
        self.states.iter().filter(|s| **s == state).count()
    }

    fn indices(&self, state: State) -> Vec<usize> {
        (0..self.states.len())
            .filter(|&i| self.states[i] == state)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("{{\"n\":{i}}}").into_bytes())
            .collect()
    }

    #[test]
    fn resumes_the_same_batch_only() {
        let r = recs(4);
        let mut p = Progress::resume(None, &r);
        p.set(0, State::Taken);
        p.set(2, State::Rejected);
        let saved = p;

        // Same records, and more behind them: the settled ones stay settled.
        let more = recs(6);
        let p = Progress::resume(Some(saved), &more);
        assert_eq!(p.pending(), vec![1, 3, 4, 5]);
        assert_eq!(p.count(State::Rejected), 1);

        // Other records: all pending again.
        let mut p = Progress::resume(None, &r);
        p.set(1, State::Taken);
        let other: Vec<Vec<u8>> = recs(5)[1..].to_vec();
        let p = Progress::resume(Some(p), &other);
        assert_eq!(p.pending(), vec![0, 1, 2, 3]);
    }
}
