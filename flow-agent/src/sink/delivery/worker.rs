//! The delivery worker: one tokio task per network output, sending batches in order through
//! its transport, backing off while the destination is unreachable.
use std::{
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant},
};

use super::{queue::Shared, Transport, TransportError};

/// How often a destination that stays unreachable is reported again.
const STILL_FAILING_EVERY: Duration = Duration::from_secs(60);

pub struct WorkerConfig {
    pub batch_records: usize,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub send_timeout: Duration,
}

/// Exponential back-off with ±20 % jitter, so that many agents do not reconnect in step.
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    seed: u64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        Self {
            initial,
            max,
            next: initial,
            seed,
        }
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    /// The delay before the next attempt; doubles up to the maximum.
    pub fn delay(&mut self) -> Duration {
        // xorshift64: cheap, and good enough to spread reconnects.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let jitter = 0.8 + (self.seed % 401) as f64 / 1000.0;
        let delay = self.next.mul_f64(jitter).min(self.max);
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

pub async fn run(shared: Arc<Shared>, mut transport: Box<dyn Transport>, cfg: WorkerConfig) {
    let max = cfg.batch_records.min(transport.max_batch()).max(1);
    let mut backoff = Backoff::new(cfg.backoff_initial, cfg.backoff_max);
    let stats = shared.stats.clone();
    let name = stats.name.clone();
    // Since when, and how often, sending has failed.
    let mut failing: Option<(Instant, u64)> = None;
    let mut last_report = Instant::now();
    loop {
        let closing = shared.is_closing();
        let Some(batch) = shared.next_batch(max, closing) else {
            if closing {
                return;
            }
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = shared.close.notified() => {}
            }
            continue;
        };
        let result =
            match tokio::time::timeout(cfg.send_timeout, transport.send(&batch.records)).await {
                Ok(r) => r,
                Err(_) => Err(TransportError::Retry(format!(
                    "no progress within send_timeout ({:?})",
                    cfg.send_timeout
                ))),
            };
        match result {
            Ok(()) => {
                shared.finish(batch.id, 0);
                if let Some((since, attempts)) = failing.take() {
                    log::info!(
                        "output {name}: delivering to {} again after {:.1}s and {attempts} failed attempts",
                        transport.describe(),
                        since.elapsed().as_secs_f64()
                    );
                }
                backoff.reset();
            }
            Err(TransportError::Rejected { count, reason }) => {
                stats.errors.fetch_add(1, Relaxed);
                log::warn!(
                    "output {name}: {} refused {count} of {} records for good: {reason}",
                    transport.describe(),
                    batch.records.len()
                );
                shared.finish(batch.id, count);
            }
            Err(TransportError::Retry(reason)) => {
                stats.errors.fetch_add(1, Relaxed);
                let (since, attempts) = failing.get_or_insert((Instant::now(), 0));
                *attempts += 1;
                if *attempts == 1 {
                    log::warn!(
                        "output {name}: sending to {} failed: {reason}; records are kept and sent again after a back-off",
                        transport.describe()
                    );
                    last_report = Instant::now();
                } else if last_report.elapsed() >= STILL_FAILING_EVERY {
                    log::warn!(
                        "output {name}: {} still unreachable after {:.0}s ({attempts} attempts): {reason}; {} records queued, {} in the disk buffer",
                        transport.describe(),
                        since.elapsed().as_secs_f64(),
                        stats.queued.load(Relaxed),
                        stats.buffered.load(Relaxed)
                    );
                    last_report = Instant::now();
                } else {
                    log::debug!("output {name}: sending failed again: {reason}");
                }
                if closing {
                    // What is left is persisted by close; no waiting for a dead destination.
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff.delay()) => {}
                    _ = shared.close.notified() => {}
                }
                stats.reconnects.fetch_add(1, Relaxed);
            }
        }
    }
}
