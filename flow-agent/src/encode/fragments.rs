//! Pre-rendered JSON fragments of the values events share through `Arc` (a process, the host,
//! a flow's application facts): most of a record is the same for every event of a process, so
//! each JSON encoder renders those parts once and copies their bytes into each record.
use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    sync::Arc,
};

use super::json::Json;

/// Entries a cache holds before it is emptied: processes (or flows) seen recently.
pub(crate) const CACHE_ENTRIES: usize = 4096;

/// Most pieces one value is cut into.
const MAX_PIECES: usize = 8;

/// The pieces of a record one value renders, in one buffer: each is written by a
/// [`Json::after_member`] writer and copied with [`Json::splice`] where the record has it, so
/// values that differ per event (a thread id) stay in their place between two pieces.
#[derive(Default)]
pub(crate) struct Fragments {
    bytes: Vec<u8>,
    ends: [usize; MAX_PIECES],
    pieces: usize,
}

impl Fragments {
    /// Renders the pieces `render` writes, each with [`Fragments::piece`].
    pub(crate) fn render(render: impl FnOnce(&mut Self)) -> Self {
        let mut fragments = Self::default();
        render(&mut fragments);
        fragments
    }

    /// Renders the next piece.
    pub(crate) fn piece(&mut self, write: impl FnOnce(&mut Json)) {
        assert!(self.pieces < MAX_PIECES, "more than {MAX_PIECES} pieces");
        write(&mut Json::after_member(&mut self.bytes));
        self.ends[self.pieces] = self.bytes.len();
        self.pieces += 1;
    }

    /// The bytes of piece `i`, in the order they were rendered.
    pub(crate) fn get(&self, i: usize) -> &[u8] {
        debug_assert!(i < self.pieces);
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}

/// The fragments of recently seen values, keyed by the address of their `Arc`. Each entry
/// holds a clone of its `Arc`, so no other value can take that address while it is cached;
/// bounded, and emptied when full.
pub(crate) struct FragmentCache<T> {
    entries: HashMap<usize, (Arc<T>, Fragments), BuildHasherDefault<AddressHasher>>,
    capacity: usize,
}

impl<T> FragmentCache<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::default(),
            capacity,
        }
    }

    /// The fragments of `value`, rendered by `render` when not cached.
    pub(crate) fn get(&mut self, value: &Arc<T>, render: impl Fn(&T) -> Fragments) -> &Fragments {
        let key = Arc::as_ptr(value) as *const () as usize;
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.clear();
        }
        let entry = self
            .entries
            .entry(key)
            .or_insert_with(|| (Arc::clone(value), render(value)));
        if !Arc::ptr_eq(&entry.0, value) {
            // Cannot happen while the entry holds its Arc; kept as the rule the cache relies on.
            *entry = (Arc::clone(value), render(value));
        }
        &entry.1
    }
}

impl<T> Default for FragmentCache<T> {
    fn default() -> Self {
        Self::new(CACHE_ENTRIES)
    }
}

/// Hashes an address: the allocation's alignment bits dropped, the rest spread by a
/// multiplication (no need for SipHash's resistance: the keys are our own pointers).
#[derive(Default)]
pub(crate) struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = ((n as u64) >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0 ^ self.0 >> 29
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(v: &String) -> Fragments {
        Fragments::render(|f| {
            f.piece(|w| w.field("a", v));
            f.piece(|_| {});
            f.piece(|w| w.field("b", &1u8));
        })
    }

    #[test]
    fn pieces_in_order() {
        let f = render(&"x".to_string());
        assert_eq!(f.get(0), br#","a":"x""#);
        assert_eq!(f.get(1), b"");
        assert_eq!(f.get(2), br#","b":1"#);
    }

    #[test]
    fn cached_by_arc_bounded_and_emptied_when_full() {
        let mut cache = FragmentCache::new(2);
        let one = Arc::new("one".to_string());
        let two = Arc::new("two".to_string());
        assert_eq!(cache.get(&one, render).get(0), br#","a":"one""#);
        // A hit does not render again.
        assert_eq!(cache.get(&one, |_| unreachable!()).get(0), br#","a":"one""#);
        assert_eq!(cache.get(&two, render).get(0), br#","a":"two""#);
        assert_eq!(Arc::strong_count(&one), 2, "the entry holds its Arc");
        let three = Arc::new("three".to_string());
        assert_eq!(cache.get(&three, render).get(0), br#","a":"three""#);
        assert_eq!(cache.entries.len(), 1);
        assert_eq!(Arc::strong_count(&one), 1, "emptied when full");
    }

    /// An encoder that kept fragments writes what a fresh one writes: for the same shared
    /// values again, and for new values (a process that changed, another flow's TLS).
    #[test]
    fn records_from_fragments_are_what_a_fresh_encoder_writes() {
        use crate::{
            encode::{fixtures::*, Format},
            event::{AppInfo, AppProtocolSource, Event, ProcessIdentity, TlsInfo},
        };
        let app = Arc::new(AppInfo {
            protocol: Some(("tls", AppProtocolSource::Payload)),
            tls: Some(TlsInfo {
                version: Some("TLS 1.3".into()),
                server_name: Some("www.a.test".into()),
                ..TlsInfo::default()
            }),
            ..AppInfo::default()
        });
        // A named flow between unnamed ones of the same process: names are per flow.
        let mut events = vec![named(tcp_out_start())];
        events.extend(all_flows());
        events.push(hostile_start());
        let mut changed = tcp_out_end();
        changed.process = Some(Arc::new(ProcessIdentity {
            pid: 6150,
            exe: Some("wget".into()),
            ..curl()
        }));
        changed.app = Some(app);
        events.push(changed);
        for format in [Format::Native, Format::Ecs, Format::Ocsf] {
            let mut kept = format.encoder();
            for ev in events.iter().chain(&events).cloned().map(Event::Flow) {
                let (mut cached, mut fresh) = (Vec::new(), Vec::new());
                assert!(kept.encode(&ev, &mut cached));
                assert!(format.encoder().encode(&ev, &mut fresh));
                assert_eq!(
                    String::from_utf8(cached).unwrap(),
                    String::from_utf8(fresh).unwrap(),
                    "{}",
                    format.name()
                );
            }
        }
    }
}
