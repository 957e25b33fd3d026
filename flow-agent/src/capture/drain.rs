//! Reading the ring buffer in bounded portions. A producer faster than the agent (a storm of
//! connections) must not keep the main loop reading forever: each portion is capped, so the
//! tick, the signals and the outputs get their turn, and memory stays bounded. Whatever the
//! kernel could not put in a full ring is counted there (`ring_full`, `process_ring_full`,
//! `dns_ring_full`), never silent.
use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};

use super::{Capture, Record};

/// Records handled per turn of the main loop at most.
pub(crate) const DRAIN_BATCH: usize = 4096;
/// Time one turn of the main loop spends on records at most: on a starved CPU even a batch
/// can take long, and the tick and the signals must still come round.
pub(crate) const DRAIN_TIME: Duration = Duration::from_millis(50);
/// The clock is read once per this many records.
const CLOCK_EVERY: usize = 64;

/// Records of CPUs that reserved their ring slot in one order can carry timestamps in a
/// slightly different one: a signal's limit is extended by this much so that no record written
/// before the signal is left behind a later one.
const STAMP_SKEW_NS: u64 = 10_000_000;

/// How much one drain may read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DrainBudget {
    /// Records at most.
    pub(crate) records: usize,
    /// Stop (with `more` set) once this instant has passed.
    pub(crate) deadline: Instant,
    /// Stop after the first record the kernel stamped (CLOCK_BOOTTIME) after this instant: a
    /// signal's arrival, after which new records are not owed to the old state.
    pub(crate) before_ns: Option<u64>,
}

impl DrainBudget {
    /// One turn of the main loop.
    pub(crate) fn batch() -> Self {
        Self {
            records: DRAIN_BATCH,
            deadline: Instant::now() + DRAIN_TIME,
            before_ns: None,
        }
    }

    /// A portion of what the ring held at `signal_ns`, read until `deadline` at the latest.
    pub(crate) fn until(signal_ns: u64, deadline: Instant) -> Self {
        Self {
            records: DRAIN_BATCH,
            deadline: deadline.min(Instant::now() + DRAIN_TIME),
            before_ns: Some(signal_ns + STAMP_SKEW_NS),
        }
    }
}

/// What one drain did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Drained {
    pub(crate) records: usize,
    /// Ring bytes consumed (records and their 8-byte ring headers).
    pub(crate) bytes: usize,
    /// The budget (records or time) ran out while the ring still gave records.
    pub(crate) more: bool,
}

/// The kernel's timestamp of a raw record (its header's `ts_ns`), if it has one.
fn stamp(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_ne_bytes(bytes.get(8..16)?.try_into().ok()?))
}

/// The rings, one per record class (a flood of one cannot take the room of another).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ring {
    Process,
    Dns,
    Flows,
}

impl Ring {
    pub(crate) const ALL: [Ring; 3] = [Ring::Process, Ring::Dns, Ring::Flows];

    pub(crate) fn buf(self, capture: &mut Capture) -> &mut RingBuf<MapData> {
        match self {
            Ring::Process => &mut capture.process_events,
            Ring::Dns => &mut capture.dns_events,
            Ring::Flows => &mut capture.events,
        }
    }
}

/// The oldest unread record of one ring, decoded, with its kernel timestamp.
struct Head {
    ts: u64,
    record: Record,
    /// Stamped after the signal the drain reads up to: this ring is done for this drain.
    newer: bool,
}

/// Reads the next decodable record of `ring` into a [`Head`]; `None` when the ring is empty.
fn next_head(
    capture: &mut Capture,
    ring: Ring,
    budget: &DrainBudget,
    done: &mut Drained,
) -> Option<Head> {
    loop {
        let item = ring.buf(capture).next()?;
        done.bytes += item.len() + 8;
        let ts = stamp(&item).unwrap_or(0);
        let record = Record::decode(&item);
        // Releases the ring slot before the (slower) flow table work.
        drop(item);
        match record {
            Ok(record) => {
                let newer = budget.before_ns.is_some_and(|limit| ts > limit);
                return Some(Head { ts, record, newer });
            }
            Err(e) => {
                done.records += 1;
                log::error!("dropping undecodable kernel record: {e}");
            }
        }
    }
}

/// Reads records within `budget`, the three rings merged by the kernel's timestamps (a flow's
/// process and the DNS answer that named its address come before it, as they happened),
/// handing each to `handle` as it comes (memory: one decoded record per ring), with the capture
/// for the maps it may read.
pub(crate) fn drain(
    capture: &mut Capture,
    budget: DrainBudget,
    mut handle: impl FnMut(Record, &mut Capture),
) -> Drained {
    let mut done = Drained::default();
    let mut heads: [Option<Head>; 3] = [None, None, None];
    // A ring whose record past the signal was handled is not read again in this drain.
    let mut closed = [false; 3];
    while done.records < budget.records {
        fill_heads(capture, &budget, &mut heads, &closed, &mut done);
        let Some(i) = oldest(&heads) else {
            return done;
        };
        let head = heads[i].take().expect("oldest is a head");
        closed[i] = head.newer;
        done.records += 1;
        handle(head.record, capture);
        if done.records.is_multiple_of(CLOCK_EVERY) && Instant::now() >= budget.deadline {
            break;
        }
    }
    // Read from their rings already: handled now, oldest first, rather than lost.
    while let Some(i) = oldest(&heads) {
        let head = heads[i].take().expect("oldest is a head");
        done.records += 1;
        handle(head.record, capture);
    }
    done.more = true;
    done
}

/// Reads the next record of every ring whose head is empty. A ring found empty is read once
/// more after a later ring gave a head: a record committed before that head (the exec before a
/// process's connect) is visible by then, and may be older; read only before, it would come
/// after the head it preceded when the agent's thread was preempted between the two reads.
fn fill_heads(
    capture: &mut Capture,
    budget: &DrainBudget,
    heads: &mut [Option<Head>; 3],
    closed: &[bool; 3],
    done: &mut Drained,
) {
    let mut found_empty = [false; 3];
    let mut read_after_empty = false;
    for (i, ring) in Ring::ALL.into_iter().enumerate() {
        if heads[i].is_none() && !closed[i] {
            heads[i] = next_head(capture, ring, budget, done);
            found_empty[i] = heads[i].is_none();
            read_after_empty |= heads[i].is_some() && found_empty.iter().any(|e| *e);
        }
    }
    if !read_after_empty {
        return;
    }
    for (i, ring) in Ring::ALL.into_iter().enumerate() {
        if found_empty[i] {
            heads[i] = next_head(capture, ring, budget, done);
        }
    }
}

/// Index of the head with the earliest timestamp.
fn oldest(heads: &[Option<Head>; 3]) -> Option<usize> {
    heads
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.as_ref().map(|h| (h.ts, i)))
        .min()
        .map(|(_, i)| i)
}

/// Consumes, without handling, the records stamped before `before_ns` (a signal's arrival,
/// extended by the stamp skew), reading at most `max_bytes`: what the agent must give up when
/// it has to stop before it could process them. Returns how many records were given up.
pub(crate) fn skip(capture: &mut Capture, before_ns: u64, max_bytes: usize) -> u64 {
    let limit = before_ns + STAMP_SKEW_NS;
    let (mut skipped, mut bytes) = (0, 0);
    while bytes < max_bytes {
        let Some(item) = capture.events.next() else {
            break;
        };
        bytes += item.len() + 8;
        if stamp(&item).is_some_and(|ts| ts > limit) {
            break;
        }
        skipped += 1;
    }
    skipped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(ts: u64) -> Option<Head> {
        let fork = flow_common::ForkRecord {
            header: Default::default(),
            child_start_ns: 0,
            parent_start_ns: 0,
            child_pid: 0,
            parent_pid: 0,
        };
        Some(Head {
            ts,
            record: Record::Fork(fork),
            newer: false,
        })
    }

    #[test]
    fn the_oldest_head_goes_first_whichever_its_ring() {
        assert_eq!(oldest(&[head(30), head(10), head(20)]), Some(1));
        assert_eq!(oldest(&[None, head(10), head(5)]), Some(2));
        assert_eq!(oldest(&[None, None, None]), None);
    }

    #[test]
    fn stamp_is_the_header_timestamp() {
        let mut b = [0u8; 24];
        b[8..16].copy_from_slice(&42u64.to_ne_bytes());
        assert_eq!(stamp(&b), Some(42));
        assert_eq!(stamp(&b[..12]), None);
    }
}
