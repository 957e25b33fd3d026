//! One subscriber's bounded queue: the agent's write stage pushes without waiting, the
//! subscriber's own thread pops and writes. A push that would pass the byte bound fails, and
//! the subscriber is dropped: a slow reader never slows the agent.
use std::{
    collections::VecDeque,
    sync::{Condvar, Mutex},
};

use bytes::Bytes;

/// Records for one subscriber: slices of bytes it may share with other subscribers.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Chunk {
    pub(super) parts: Vec<Bytes>,
    pub(super) records: u64,
}

impl Chunk {
    fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }
}

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
    chunks: VecDeque<Chunk>,
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

    /// Queues `chunk`, unless that would pass the bound.
    pub(super) fn push(&self, chunk: Chunk) -> Push {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.end.is_some() {
            return Push::Closed;
        }
        if s.bytes + chunk.len() > self.limit {
            return Push::Full;
        }
        s.bytes += chunk.len();
        s.chunks.push_back(chunk);
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
            s.chunks.drain(..).map(|c| c.records).sum()
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

    /// The next chunk, if one waits.
    pub(super) fn try_pop(&self) -> Option<Chunk> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let chunk = s.chunks.pop_front()?;
        s.bytes -= chunk.len();
        Some(chunk)
    }

    /// The next chunk, waiting for one; `Err` once the subscription ended and (when the agent
    /// stops) everything queued was taken.
    pub(super) fn pop(&self) -> Result<Chunk, End> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(chunk) = s.chunks.pop_front() {
                s.bytes -= chunk.len();
                return Ok(chunk);
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

    fn chunk(byte: u8, len: usize, records: u64) -> Chunk {
        Chunk {
            parts: vec![Bytes::from(vec![byte; len])],
            records,
        }
    }

    #[test]
    fn a_push_past_the_bound_fails_and_queues_nothing() {
        let q = Queue::new(10);
        assert_eq!(q.push(chunk(0, 6, 1)), Push::Queued);
        assert_eq!(q.push(chunk(0, 6, 1)), Push::Full);
        assert_eq!(q.pop(), Ok(chunk(0, 6, 1)));
        assert_eq!(q.push(chunk(0, 10, 2)), Push::Queued);
    }

    #[test]
    fn a_dropped_subscriber_loses_what_waits_but_a_stopping_agent_flushes() {
        let q = Queue::new(100);
        q.push(chunk(1, 3, 2));
        q.push(chunk(2, 3, 1));
        assert_eq!(q.end(End::Dropped("slow".into())), 3);
        assert_eq!(q.pop(), Err(End::Dropped("slow".into())));
        assert_eq!(q.push(chunk(3, 1, 1)), Push::Closed);

        let q = Queue::new(100);
        q.push(chunk(1, 3, 2));
        assert_eq!(q.end(End::AgentStopped), 0);
        assert_eq!(q.pop(), Ok(chunk(1, 3, 2)));
        assert_eq!(q.pop(), Err(End::AgentStopped));
    }
}
