//! The live subscription socket: `flow-agent tail` and `top` subscribe to the running agent's
//! events through a unix socket, each with its own filter and format. The write stage hands
//! every batch to [`Hub::publish`]: with no subscriber that is one atomic load (nothing is
//! encoded); with some, each subscriber's records are encoded into one chunk and queued
//! without waiting. A subscriber whose queue is full is dropped and counted (the `live` entry
//! of the stats event's `sinks`, `errors`), so it never slows the agent or its outputs.
use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed},
    Arc, Mutex,
};

use crate::{encode::Encoder, event::Event, filter::FilterConfig, sink::SinkStats};

#[doc(hidden)]
pub mod bench;
pub mod client;
mod config;
pub mod protocol;
mod queue;
mod server;

pub(crate) use config::LiveConfig;
pub use config::DEFAULT_SOCKET;
pub(crate) use server::Bound;

use queue::{End, Push, Queue};

/// One connected subscriber, as the write stage sees it.
struct Subscriber {
    filter: FilterConfig,
    encoder: Box<dyn Encoder>,
    queue: Arc<Queue>,
}

impl Subscriber {
    /// Encodes and queues what passes its filter; false once it is to be forgotten.
    fn publish(&mut self, events: &[Event], stats: &SinkStats, limit: usize) -> bool {
        let mut chunk = Vec::new();
        let mut records = 0;
        for ev in events {
            if !self.filter.matches(ev) {
                continue;
            }
            let start = chunk.len();
            if self.encoder.encode(ev, &mut chunk) {
                chunk.push(b'\n');
                records += 1;
            } else {
                chunk.truncate(start);
            }
        }
        if records == 0 {
            return !self.queue.is_ended();
        }
        match self.queue.push(chunk, records) {
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

/// What the write stage and the subscribers' threads share.
struct Shared {
    subscribers: Mutex<Vec<Subscriber>>,
    /// `subscribers.len()`, read without the lock on every batch.
    count: AtomicUsize,
    stats: Arc<SinkStats>,
    stopping: AtomicBool,
    queue_bytes: usize,
    max_subscribers: usize,
}

impl Shared {
    /// Adds a subscriber unless there are too many; returns its queue.
    fn add(&self, filter: FilterConfig, encoder: Box<dyn Encoder>) -> Result<Arc<Queue>, String> {
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        if subs.len() >= self.max_subscribers {
            return Err(format!(
                "{} subscribers already ([live] max_subscribers)",
                subs.len()
            ));
        }
        let queue = Arc::new(Queue::new(self.queue_bytes));
        subs.push(Subscriber {
            filter,
            encoder,
            queue: queue.clone(),
        });
        self.count.store(subs.len(), Relaxed);
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
        subs.retain_mut(|s| s.publish(events, stats, limit));
        self.shared.count.store(subs.len(), Relaxed);
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
            &mut *self
                .shared
                .subscribers
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
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
