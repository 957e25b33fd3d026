//! For the `encoders` benchmark only: the write stage's fan-out to live subscribers, without a
//! socket or their threads (each publish is followed by taking what was queued).
use std::sync::Arc;

use super::{queue::Queue, Subscriber};
use crate::{encode::Format, event::Event, filter::FilterConfig, sink::SinkStats};

/// Queues that never fill during a benchmark.
const LIMIT: usize = 1 << 40;

/// A publisher to `subscribers` subscribers of `format`, none with a filter.
pub fn publisher(subscribers: usize, format: Format) -> impl FnMut(&[Event]) {
    let stats = SinkStats::new("live".into(), "subscribe", "any");
    let mut subs: Vec<Subscriber> = (0..subscribers)
        .map(|_| Subscriber {
            filter: FilterConfig::default(),
            encoder: format.encoder(),
            queue: Arc::new(Queue::new(LIMIT)),
        })
        .collect();
    move |events| {
        subs.retain_mut(|s| s.publish(events, &stats, LIMIT));
        for s in &subs {
            while s.queue.try_pop().is_some() {}
        }
    }
}
