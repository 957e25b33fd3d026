//! The live subscription socket: `flow-agent tail` and `top` subscribe to the running agent's
//! events through a unix socket, each with its own filter and format. The write stage hands
//! every batch to [`Hub::publish`]: with no subscriber that is one atomic load (nothing is
//! encoded or allocated); with some, each event is encoded once per format asked for, and each
//! subscriber queues, without waiting, the slices of those bytes its filter chose. A subscriber whose queue is full is dropped and counted (the `live` entry
//! of the stats event's `sinks`, `errors`), so it never slows the agent or its outputs.
use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed},
    Arc, Mutex,
};

use crate::{event::Event, filter::FilterConfig, sink::SinkStats};

#[doc(hidden)]
pub mod bench;
pub mod client;
mod config;
mod fan_out;
pub mod protocol;
mod queue;
mod server;

pub(crate) use config::LiveConfig;
pub use config::{socket_in, DEFAULT_SOCKET};
pub(crate) use server::Bound;

use fan_out::{Subscriber, Subscribers};
use protocol::Encoding;
use queue::{Chunk, End, Push, Queue};

impl Subscriber {
    /// Queues its records of a batch; false once it is to be forgotten.
    fn queue_chunk(&self, chunk: Chunk, stats: &SinkStats, limit: usize) -> bool {
        let records = chunk.records;
        if records == 0 {
            return !self.queue.is_ended();
        }
        match self.queue.push(chunk) {
            Push::Queued => {
                stats.accepted.fetch_add(records, Relaxed);
                stats.queued.fetch_add(records, Relaxed);
                true
            }
            Push::Full => {
                let why = format!("fell more than {limit} bytes behind the agent");
                let lost = self.queue.end(End::Dropped(why.clone())) + records;
                stats.queued.fetch_sub(lost - records, Relaxed);
                stats.dropped.fetch_add(lost, Relaxed);
                stats.errors.fetch_add(1, Relaxed);
                log::warn!("live subscriber dropped: it {why} ({lost} records not sent)");
                false
            }
            Push::Closed => false,
        }
    }
}

impl Subscribers {
    /// Encodes a batch once per format and queues each subscriber's records; forgets the
    /// subscribers that ended or were dropped.
    fn publish(&mut self, events: &[Event], stats: &SinkStats, limit: usize) {
        let mut chunks = self.encode(events).into_iter();
        self.retain(|s| {
            let chunk = chunks.next().expect("a chunk for every subscriber");
            s.queue_chunk(chunk, stats, limit)
        });
    }
}

/// What the write stage and the subscribers' threads share.
struct Shared {
    subscribers: Mutex<Subscribers>,
    /// `subscribers.len()`, read without the lock on every batch.
    count: AtomicUsize,
    stats: Arc<SinkStats>,
    stopping: AtomicBool,
    queue_bytes: usize,
    max_subscribers: usize,
}

impl Shared {
    /// Adds a subscriber unless there are too many; returns its queue. `summaries`: whether
    /// stats events and rate-limit summaries reach it.
    fn add(
        &self,
        filter: FilterConfig,
        encoding: Encoding,
        summaries: bool,
    ) -> Result<Arc<Queue>, server::RequestError> {
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        if subs.list.len() >= self.max_subscribers {
            return Err(server::RequestError::TooMany(subs.list.len()));
        }
        let queue = Arc::new(Queue::new(self.queue_bytes));
        subs.add(Subscriber {
            filter,
            encoding,
            summaries,
            queue: queue.clone(),
        });
        self.count.store(subs.list.len(), Relaxed);
        self.stats.reconnects.fetch_add(1, Relaxed);
        Ok(queue)
    }
}

/// The running socket; dropping it ends every subscription (what is queued is still sent)
/// and removes the socket file.
pub(crate) struct Hub {
    shared: Arc<Shared>,
    server: Option<server::Server>,
}

impl Hub {
    /// Hands a batch to every subscriber; nothing at all when there is none.
    pub(crate) fn publish(&self, events: &[Event]) {
        if self.shared.count.load(Relaxed) == 0 {
            return;
        }
        let mut subs = self
            .shared
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (stats, limit) = (&self.shared.stats, self.shared.queue_bytes);
        subs.publish(events, stats, limit);
        self.shared.count.store(subs.list.len(), Relaxed);
    }

    /// Counters: `accepted`/`sent` records, `queued` now, `dropped` records of dropped
    /// subscribers, `reconnects` subscriptions made, `errors` subscribers dropped as slow.
    pub(crate) fn stats(&self) -> Arc<SinkStats> {
        self.shared.stats.clone()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Relaxed);
        let subs = std::mem::take(
            &mut self
                .shared
                .subscribers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .list,
        );
        self.shared.count.store(0, Relaxed);
        for s in subs {
            s.queue.end(End::AgentStopped);
        }
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

#[cfg(test)]
mod tests;
