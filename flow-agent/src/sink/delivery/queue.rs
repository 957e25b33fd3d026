//! What the capture loop and the delivery worker share: the bounded memory queue, the disk
//! buffer behind it, and the batch being sent.
//!
//! Order is kept by one rule: while the disk buffer holds unacknowledged records, new records
//! go to its end; otherwise to the memory queue while it has room. So memory holds the oldest
//! records, the disk the newer ones, and the worker sends memory first.
use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use tokio::sync::Notify;

use super::{
    disk::{Appended, DiskBuffer},
    DropPolicy,
};
use crate::sink::SinkStats;

/// Least time between two warnings about drops or errors of one output.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A batch handed to the worker; acknowledged with [`Shared::finish`].
pub(crate) struct Batch {
    pub(crate) id: u64,
    pub(crate) records: Arc<Vec<Vec<u8>>>,
}

struct Inflight {
    id: u64,
    records: Arc<Vec<Vec<u8>>>,
    from_disk: bool,
}

struct State {
    memory: VecDeque<Vec<u8>>,
    disk: Option<DiskBuffer>,
    inflight: Option<Inflight>,
    next_batch: u64,
    /// Set once the rest was persisted: later records are dropped (and counted).
    shut_down: bool,
    limiter: LogLimiter,
}

impl State {
    /// Records in memory: the queue and a batch being sent from it.
    fn memory_records(&self) -> usize {
        let inflight = self.inflight.as_ref().filter(|b| !b.from_disk);
        self.memory.len() + inflight.map_or(0, |b| b.records.len())
    }
}

pub(crate) struct Shared {
    state: Mutex<State>,
    /// Records were submitted.
    pub(crate) wake: Notify,
    /// Close was asked for (also wakes a back-off).
    pub(crate) close: Notify,
    closing: AtomicBool,
    /// The worker waits for records (for tests that need it not to be sending).
    pub(crate) idle: AtomicBool,
    pub(crate) stats: Arc<SinkStats>,
    policy: DropPolicy,
    queue_records: usize,
}

impl Shared {
    pub(crate) fn new(
        stats: Arc<SinkStats>,
        disk: Option<DiskBuffer>,
        policy: DropPolicy,
        queue_records: usize,
    ) -> Self {
        let shared = Self {
            state: Mutex::new(State {
                memory: VecDeque::new(),
                disk,
                inflight: None,
                next_batch: 0,
                shut_down: false,
                limiter: LogLimiter::default(),
            }),
            wake: Notify::new(),
            close: Notify::new(),
            closing: AtomicBool::new(false),
            idle: AtomicBool::new(false),
            stats,
            policy,
            queue_records: queue_records.max(1),
        };
        shared.update_gauges(&shared.lock());
        shared
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not stop delivery: the state stays consistent per call.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_gauges(&self, st: &State) {
        let queued = st.memory_records() as u64;
        let buffered = st.disk.as_ref().map_or(0, |d| d.unacked_records());
        self.stats.queued.store(queued, Relaxed);
        self.stats.buffered.store(buffered, Relaxed);
    }

    fn drop_records(&self, st: &mut State, n: u64, why: &str) {
        if n == 0 {
            return;
        }
        let total = self.stats.dropped.fetch_add(n, Relaxed) + n;
        st.limiter.warn(n, || {
            format!(
                "output {}: dropped records ({why}); {total} dropped since start",
                self.stats.name
            )
        });
    }

    /// Takes one record; never waits for the destination.
    pub(crate) fn submit(&self, record: &[u8]) {
        let mut st = self.lock();
        let st = &mut *st;
        if st.shut_down {
            self.drop_records(st, 1, "submitted after the output was closed");
            return;
        }
        let disk_busy = st.disk.as_ref().is_some_and(|d| d.unacked_records() > 0);
        if !disk_busy && st.memory_records() < self.queue_records {
            st.memory.push_back(record.to_vec());
        } else if let Some(disk) = st.disk.as_mut() {
            match disk.append(record, self.policy) {
                Ok(Appended::Stored { dropped_oldest }) => {
                    self.drop_records(st, dropped_oldest, "disk buffer full, oldest dropped")
                }
                Ok(Appended::Refused) => {
                    self.drop_records(st, 1, "disk buffer full (buffer_max_bytes)")
                }
                Err(e) => {
                    self.stats.errors.fetch_add(1, Relaxed);
                    let why = format!("writing the disk buffer failed: {e}");
                    self.drop_records(st, 1, &why);
                }
            }
        } else if self.policy == DropPolicy::Oldest && !st.memory.is_empty() {
            // The batch being sent is not dropped; with nothing else in memory the new
            // record gives way.
            st.memory.pop_front();
            st.memory.push_back(record.to_vec());
            self.drop_records(st, 1, "memory queue full, no disk buffer, oldest dropped");
        } else {
            self.drop_records(st, 1, "memory queue full and no disk buffer");
        }
        self.update_gauges(st);
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Relaxed)
    }

    /// Makes the worker send what is left once, without back-off, and wakes it.
    pub(crate) fn begin_close(&self) {
        self.closing.store(true, Relaxed);
        self.close.notify_one();
    }

    /// The batch to send: the unacknowledged one again, else up to `max` records from memory,
    /// else from the disk buffer. Memory holds only records older than any in the disk
    /// buffer, so this is the order they were submitted in.
    pub(crate) fn next_batch(&self, max: usize) -> Option<Batch> {
        let mut guard = self.lock();
        let st = &mut *guard;
        if let Some(b) = &st.inflight {
            return Some(Batch {
                id: b.id,
                records: b.records.clone(),
            });
        }
        let (records, from_disk) = if !st.memory.is_empty() {
            let n = st.memory.len().min(max);
            (st.memory.drain(..n).collect::<Vec<_>>(), false)
        } else if let Some(disk) = st.disk.as_mut() {
            match disk.read_batch(max) {
                Ok((records, lost)) => {
                    self.drop_records(st, lost, "damaged disk buffer");
                    (records, true)
                }
                Err(e) => {
                    self.stats.errors.fetch_add(1, Relaxed);
                    st.limiter.warn(1, || {
                        format!(
                            "output {}: reading the disk buffer failed: {e}",
                            self.stats.name
                        )
                    });
                    return None;
                }
            }
        } else {
            return None;
        };
        if records.is_empty() {
            return None;
        }
        st.next_batch += 1;
        let records = Arc::new(records);
        st.inflight = Some(Inflight {
            id: st.next_batch,
            records: records.clone(),
            from_disk,
        });
        self.update_gauges(st);
        Some(Batch {
            id: st.next_batch,
            records,
        })
    }

    /// The destination took batch `id`, except `rejected` records it refused for good.
    pub(crate) fn finish(&self, id: u64, rejected: usize) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(b) = st.inflight.take_if(|b| b.id == id) else {
            return;
        };
        let rejected = rejected.min(b.records.len());
        if b.from_disk {
            if let Some(Err(e)) = st.disk.as_mut().map(|d| d.ack()) {
                // The records were delivered; a stale ack position only means resending them
                // after a restart.
                self.stats.errors.fetch_add(1, Relaxed);
                st.limiter.warn(1, || {
                    format!(
                        "output {}: recording delivery in the disk buffer failed: {e}",
                        self.stats.name
                    )
                });
            }
        }
        // Gauges first, then the counters: a reader that sees the new counts sees the
        // records gone from the gauges too.
        self.update_gauges(st);
        if rejected > 0 {
            self.drop_records(st, rejected as u64, "rejected by the destination");
        }
        self.stats
            .sent
            .fetch_add((b.records.len() - rejected) as u64, Relaxed);
    }

    /// Moves what memory still holds (the unacknowledged batch first) in front of the disk
    /// buffer and closes it; without a disk buffer those records are dropped and counted.
    /// Runs once; later calls do nothing.
    pub(crate) fn shutdown(&self) {
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.shut_down {
            return;
        }
        st.shut_down = true;
        let mut rest: Vec<Vec<u8>> = Vec::new();
        if let Some(b) = st.inflight.take_if(|b| !b.from_disk) {
            rest.extend(b.records.iter().cloned());
        }
        rest.extend(st.memory.drain(..));
        let name = &self.stats.name;
        match st.disk.take() {
            Some(disk) => {
                let dir = disk.dir().to_path_buf();
                let before = disk.unacked_records();
                let n = rest.len() as u64;
                match disk.close_with(rest, self.policy) {
                    Ok(dropped) => {
                        self.drop_records(st, dropped, "disk buffer full at close");
                        let left = before + n - dropped;
                        if left > 0 {
                            log::info!(
                                "output {name}: {left} undelivered records kept in the disk buffer {}",
                                dir.display()
                            );
                        }
                        self.stats.buffered.store(left, Relaxed);
                    }
                    Err(e) => {
                        self.stats.errors.fetch_add(1, Relaxed);
                        let why = format!("storing them in the disk buffer at close failed: {e}");
                        self.drop_records(st, n, &why);
                        self.stats.buffered.store(before, Relaxed);
                    }
                }
                self.stats.queued.store(0, Relaxed);
            }
            None => {
                let why = "undelivered at close, no disk buffer";
                self.drop_records(st, rest.len() as u64, why);
                self.update_gauges(st);
            }
        }
    }
}

/// Rate limit for warnings: the first at once, then at most one per [`LOG_EVERY`], each
/// saying how many occurrences it covers.
#[derive(Default)]
pub(crate) struct LogLimiter {
    last: Option<Instant>,
    pending: u64,
}

impl LogLimiter {
    pub(crate) fn warn(&mut self, n: u64, message: impl FnOnce() -> String) {
        self.pending += n;
        if self.last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return;
        }
        log::warn!(
            "{} [{} since the last such message]",
            message(),
            self.pending
        );
        self.pending = 0;
        self.last = Some(Instant::now());
    }
}
