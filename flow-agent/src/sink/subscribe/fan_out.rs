//! One batch for every subscriber: each event is encoded at most once per format, however many
//! subscribers ask for that format, and each subscriber is handed the slices of those shared
//! bytes that its filter chose (records are never copied per subscriber).
use std::{ops::Range, sync::Arc};

use bytes::Bytes;

use super::{
    protocol::Encoding,
    queue::{Chunk, Queue},
};
use crate::{encode::Encoder, event::Event, filter::FilterConfig};

/// One connected subscriber, as the write stage sees it.
pub(super) struct Subscriber {
    pub(super) filter: FilterConfig,
    pub(super) encoding: Encoding,
    /// Whether stats events and rate-limit summaries reach it: only when it asked for every
    /// flow (no include rule); a filter chooses flows, and their summaries are not flows.
    pub(super) summaries: bool,
    pub(super) queue: Arc<Queue>,
}

impl Subscriber {
    fn wants(&self, ev: &Event) -> bool {
        match ev {
            Event::Stats(_) | Event::RateLimited(_) => self.summaries,
            _ => self.filter.matches(ev),
        }
    }
}

/// The subscribers and one encoder per format some of them ask for.
#[derive(Default)]
pub(super) struct Subscribers {
    pub(super) list: Vec<Subscriber>,
    encoders: Vec<(Encoding, Box<dyn Encoder>)>,
}

/// One subscriber's records of a batch: ranges of its format's bytes, adjacent ones merged.
#[derive(Default)]
struct Share {
    ranges: Vec<Range<usize>>,
    records: u64,
}

impl Share {
    fn add(&mut self, r: Range<usize>) {
        self.records += 1;
        match self.ranges.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => self.ranges.push(r),
        }
    }
}

impl Subscribers {
    pub(super) fn add(&mut self, sub: Subscriber) {
        if !self.encoders.iter().any(|(e, _)| *e == sub.encoding) {
            self.encoders.push((sub.encoding, sub.encoding.encoder()));
        }
        self.list.push(sub);
    }

    /// Forgets the subscribers `keep` says no to, and the encoders nobody needs any more.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Subscriber) -> bool) {
        self.list.retain(|s| keep(s));
        let list = &self.list;
        self.encoders
            .retain(|(e, _)| list.iter().any(|s| s.encoding == *e));
    }

    /// Each subscriber's records of `events`, in the order of [`Self::list`].
    pub(super) fn encode(&mut self, events: &[Event]) -> Vec<Chunk> {
        let Subscribers { list, encoders } = self;
        let format_of: Vec<usize> = list
            .iter()
            .map(|s| {
                encoders
                    .iter()
                    .position(|(e, _)| *e == s.encoding)
                    .expect("an encoder for every subscriber's format")
            })
            .collect();
        let mut bytes: Vec<Vec<u8>> = vec![Vec::new(); encoders.len()];
        let mut shares: Vec<Share> = list.iter().map(|_| Share::default()).collect();
        // Per format, this event's record once encoded (`Some(None)`: the format has none).
        let mut record: Vec<Option<Option<Range<usize>>>> = vec![None; encoders.len()];
        for ev in events {
            record.fill(None);
            for i in (0..list.len()).filter(|&i| list[i].wants(ev)) {
                let f = format_of[i];
                let range = record[f]
                    .get_or_insert_with(|| encode_line(encoders[f].1.as_mut(), ev, &mut bytes[f]));
                if let Some(r) = range {
                    shares[i].add(r.clone());
                }
            }
        }
        let bytes: Vec<Bytes> = bytes.into_iter().map(Bytes::from).collect();
        shares
            .into_iter()
            .zip(format_of)
            .map(|(share, f)| Chunk {
                parts: share
                    .ranges
                    .into_iter()
                    .map(|r| bytes[f].slice(r))
                    .collect(),
                records: share.records,
            })
            .collect()
    }
}

/// Appends the event's record and a newline to `out`; its range, or None when the format has
/// no record for it.
fn encode_line(encoder: &mut dyn Encoder, ev: &Event, out: &mut Vec<u8>) -> Option<Range<usize>> {
    let start = out.len();
    if encoder.encode(ev, out) {
        out.push(b'\n');
        Some(start..out.len())
    } else {
        out.truncate(start);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{
        fixtures::{tcp_in_end, tcp_out_end},
        Format,
    };

    fn subscriber(encoding: Encoding, filter: &str) -> Subscriber {
        let filter: FilterConfig = toml::from_str(filter).unwrap();
        Subscriber {
            summaries: filter.include.is_empty(),
            filter,
            encoding,
            queue: Arc::new(Queue::new(1 << 20)),
        }
    }

    const NATIVE: Encoding = Encoding::Format(Format::Native);

    #[test]
    fn each_format_is_encoded_once_and_filters_choose_slices_of_it() {
        let mut subs = Subscribers::default();
        subs.add(subscriber(NATIVE, ""));
        subs.add(subscriber(NATIVE, "include = [{ remote_port = 18080 }]"));
        subs.add(subscriber(Encoding::Format(Format::Ecs), ""));
        subs.add(subscriber(Encoding::Brief, ""));
        let stats = Event::Stats(Box::default());
        let events = [Event::Flow(tcp_out_end()), Event::Flow(tcp_in_end()), stats];
        let chunks = subs.encode(&events);
        let records: Vec<u64> = chunks.iter().map(|c| c.records).collect();
        assert_eq!(
            records,
            [3, 1, 3, 2],
            "a filter lets no stats event through; brief records are of flows only"
        );
        let brief = std::str::from_utf8(&chunks[3].parts[0]).unwrap();
        assert!(brief.starts_with("{\"event_action\":\"end\","), "{brief}");
        let (all, filtered) = (&chunks[0], &chunks[1]);
        assert_eq!(all.parts.len(), 1, "adjacent records are one slice");
        assert_eq!(
            filtered.parts[0].as_ptr(),
            all.parts[0].as_ptr(),
            "the same bytes, not a copy"
        );
        let first_line = all.parts[0].split(|b| *b == b'\n').next().unwrap();
        assert_eq!(&filtered.parts[0][..], [first_line, b"\n"].concat());
        assert_ne!(chunks[2].parts[0].as_ptr(), all.parts[0].as_ptr());
        subs.retain(|s| s.encoding == NATIVE);
        assert_eq!(subs.encoders.len(), 1, "the unused encoders are dropped");
    }
}
