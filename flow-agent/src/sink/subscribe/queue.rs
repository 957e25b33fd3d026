//! One subscriber's bounded queue: the agent's write stage pushes without waiting, the
//! subscriber's own thread pops and writes. A push that would pass the byte bound fails, and
//! the subscriber is dropped: a slow reader never slows the agent.
use std::{
    collections::VecDeque,
    sync::{Condvar, Mutex},
};

/// Why a subscription ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum End {
    /// The client closed its end or a write failed.
    Gone,
    /// It fell too far behind; the message is sent to it as its last line.
    Dropped(String),
    /// The agent stops: what is queued is still written.
    AgentStopped,
}

/// What a push did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Push {
    Queued,
    /// The bound would be passed: nothing was queued.
    Full,
    Closed,
}

#[derive(Default)]
struct State {
    chunks: VecDeque<(Vec<u8>, u64)>,
    bytes: usize,
    end: Option<End>,
}

pub(super) struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    limit: usize,
}

impl Queue {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            state: Mutex::default(),
            ready: Condvar::new(),
            limit,
        }
    }

    /// Queues `records` records encoded in `chunk`, unless that would pass the bound.
    pub(super) fn push(&self, chunk: Vec<u8>, records: u64) -> Push {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.end.is_some() {
            return Push::Closed;
        }
        if s.bytes + chunk.len() > self.limit {
            return Push::Full;
        }
        s.bytes += chunk.len();
        s.chunks.push_back((chunk, records));
        self.ready.notify_one();
        Push::Queued
    }

    /// Ends the subscription. `Dropped` and `Gone` discard what waits: returns how many
    /// records were discarded.
    pub(super) fn end(&self, why: End) -> u64 {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.end.is_some() {
            return 0;
        }
        let discarded = if why == End::AgentStopped {
            0
        } else {
            s.bytes = 0;
            s.chunks.drain(..).map(|(_, n)| n).sum()
        };
        s.end = Some(why);
        self.ready.notify_all();
        discarded
    }

    pub(super) fn is_ended(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .end
            .is_some()
    }

    /// The next chunk and its record count, if one waits.
    pub(super) fn try_pop(&self) -> Option<(Vec<u8>, u64)> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (chunk, n) = s.chunks.pop_front()?;
        s.bytes -= chunk.len();
        Some((chunk, n))
    }

    /// The next chunk and its record count, waiting for one; `Err` once the subscription
    /// ended and (when the agent stops) everything queued was taken.
    pub(super) fn pop(&self) -> Result<(Vec<u8>, u64), End> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some((chunk, n)) = s.chunks.pop_front() {
                s.bytes -= chunk.len();
                return Ok((chunk, n));
            }
            if let Some(end) = &s.end {
                return Err(end.clone());
            }
            s = self.ready.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_past_the_bound_fails_and_queues_nothing() {
        let q = Queue::new(10);
        assert_eq!(q.push(vec![0; 6], 1), Push::Queued);
        assert_eq!(q.push(vec![0; 6], 1), Push::Full);
        assert_eq!(q.pop(), Ok((vec![0; 6], 1)));
        assert_eq!(q.push(vec![0; 10], 2), Push::Queued);
    }

    #[test]
    fn a_dropped_subscriber_loses_what_waits_but_a_stopping_agent_flushes() {
        let q = Queue::new(100);
        q.push(vec![1; 3], 2);
        q.push(vec![2; 3], 1);
        assert_eq!(q.end(End::Dropped("slow".into())), 3);
        assert_eq!(q.pop(), Err(End::Dropped("slow".into())));
        assert_eq!(q.push(vec![3], 1), Push::Closed);

        let q = Queue::new(100);
        q.push(vec![1; 3], 2);
        assert_eq!(q.end(End::AgentStopped), 0);
        assert_eq!(q.pop(), Ok((vec![1; 3], 2)));
        assert_eq!(q.pop(), Err(End::AgentStopped));
    }
}
