//! For the `encoders` benchmark only: the write stage's fan-out to live subscribers, without a
//! socket or their threads (each publish is followed by taking what was queued).
use std::sync::Arc;

use super::{protocol::Encoding, queue::Queue, Subscriber, Subscribers};
use crate::{encode::Format, event::Event, filter::FilterConfig, sink::SinkStats};

/// Queues that never fill during a benchmark.
const LIMIT: usize = 1 << 40;

/// A publisher to `subscribers` subscribers of `format`, none with a filter.
pub fn publisher(subscribers: usize, format: Format) -> impl FnMut(&[Event]) {
    let stats = SinkStats::new("live".into(), "subscribe", "any");
    let mut subs = Subscribers::default();
    for _ in 0..subscribers {
        subs.add(Subscriber {
            filter: FilterConfig::default(),
            encoding: Encoding::Format(format),
            summaries: true,
            queue: Arc::new(Queue::new(LIMIT)),
        });
    }
    move |events| {
        subs.publish(events, &stats, LIMIT);
        for s in &subs.list {
            while s.queue.try_pop().is_some() {}
        }
    }
}
