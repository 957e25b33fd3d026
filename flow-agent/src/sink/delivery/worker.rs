//! The delivery worker: one thread per network output, with its own small tokio runtime, so
//! that sending (TLS, disk reads, slow forwarders) never takes time from the capture loop. It
//! sends batches in order through its transport, backing off while the destination is
//! unreachable. A panic in it (a bug in a transport or the delivery layer) is caught, counted
//! (`worker_panics`), logged and the worker started again: the batch it was sending is still
//! the queue's unacknowledged batch, so nothing it held is lost.
use std::{
    any::Any,
    future::Future,
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    sync::{atomic::Ordering::Relaxed, Arc},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

use super::{
    queue::{LogLimiter, Shared},
    Transport, TransportError,
};
use crate::sink::SinkStats;

/// How often a destination that stays unreachable is reported again.
const STILL_FAILING_EVERY: Duration = Duration::from_secs(60);
/// A worker that ran this long without panicking restarts at once after its next panic;
/// panics closer together wait longer and longer (the back-off), up to `backoff_max`.
const STABLE_RUN: Duration = Duration::from_secs(60);

pub(crate) struct WorkerConfig {
    pub(crate) batch_records: usize,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) send_timeout: Duration,
}

/// Exponential back-off with ±20 % jitter, so that many agents do not reconnect in step.
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    seed: u64,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
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

    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }

    /// The delay before the next attempt; doubles up to the maximum.
    pub(crate) fn delay(&mut self) -> Duration {
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

/// The running worker thread. Dropping it stops the worker at its next await.
pub(crate) struct WorkerHandle {
    abort: Option<oneshot::Sender<()>>,
    done: oneshot::Receiver<()>,
}

/// Starts the worker on its own thread.
pub(crate) fn start(
    shared: Arc<Shared>,
    transport: Box<dyn Transport>,
    cfg: WorkerConfig,
) -> std::io::Result<WorkerHandle> {
    let (abort_tx, abort_rx) = oneshot::channel::<()>();
    let (done_tx, done) = oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Linux keeps 15 bytes of a thread name.
    let name: String = format!("out-{}", shared.stats.name)
        .chars()
        .take(15)
        .collect();
    std::thread::Builder::new().name(name).spawn(move || {
        runtime.block_on(async move {
            tokio::select! {
                _ = supervise(shared, transport, cfg) => {}
                // Sent, or the handle dropped.
                _ = abort_rx => {}
            }
        });
        drop(done_tx);
    })?;
    Ok(WorkerHandle {
        abort: Some(abort_tx),
        done,
    })
}

impl WorkerHandle {
    /// Waits up to `timeout` for the worker to finish by itself, then stops it; returns
    /// whether it finished in time. Either way it no longer runs afterwards.
    pub(crate) async fn finish(mut self, timeout: Duration) -> bool {
        if tokio::time::timeout(timeout, &mut self.done).await.is_ok() {
            return true;
        }
        self.abort.take();
        let _ = (&mut self.done).await;
        false
    }
}

/// Runs the worker loop, and again after each panic in it (counted in `worker_panics` and
/// logged with its message). The transport is kept: a panic in `send` leaves it as a `send`
/// dropped half-way does (which every transport must handle), and the batch being sent stays
/// unacknowledged in `shared`, the first one sent again.
async fn supervise(shared: Arc<Shared>, mut transport: Box<dyn Transport>, cfg: WorkerConfig) {
    let mut backoff = Backoff::new(cfg.backoff_initial, cfg.backoff_max);
    loop {
        let started = Instant::now();
        let panic = match CatchUnwind(Box::pin(run(&shared, &mut *transport, &cfg))).await {
            Ok(()) => return,
            Err(panic) => panic,
        };
        let stats = &shared.stats;
        let n = stats.worker_panics.fetch_add(1, Relaxed) + 1;
        shared.idle.store(false, Relaxed);
        log::error!(
            "output {}: the delivery worker panicked ({n} since start): {}; restarting it, the records it held are sent again ({} queued, {} in the disk buffer)",
            stats.name,
            panic_message(panic.as_ref()),
            stats.queued.load(Relaxed),
            stats.buffered.load(Relaxed)
        );
        if started.elapsed() >= STABLE_RUN {
            backoff.reset();
            continue;
        }
        // Not a busy loop when it panics at once each time.
        tokio::select! {
            _ = tokio::time::sleep(backoff.delay()) => {}
            _ = shared.close.notified() => {}
        }
    }
}

/// Test builds only (debug assertions): `FLOW_AGENT_TEST_WORKER_PANICS=N` makes the delivery
/// workers panic N times in all, each just before sending a batch, so that the tests see a
/// panicking worker restarted with its records kept. Release builds do not read the variable.
#[cfg(debug_assertions)]
fn injected_panic() {
    use std::sync::{atomic::AtomicU64, OnceLock};
    static LEFT: OnceLock<AtomicU64> = OnceLock::new();
    let left = LEFT.get_or_init(|| {
        let n = std::env::var("FLOW_AGENT_TEST_WORKER_PANICS").ok();
        AtomicU64::new(n.and_then(|n| n.parse().ok()).unwrap_or(0))
    });
    if left
        .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        panic!("test fault: FLOW_AGENT_TEST_WORKER_PANICS");
    }
}

/// What a panic said (`panic!("...")` gives a `&str` or a `String`).
pub(super) fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// A future that resolves to `Err` with the panic's payload when polling it panics.
struct CatchUnwind<'a>(Pin<Box<dyn Future<Output = ()> + Send + 'a>>);

impl Future for CatchUnwind<'_> {
    type Output = Result<(), Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The future is dropped after a panic, never polled again; what it shares with
        // others (the queue's state) stays consistent per call and survives a poisoned lock.
        match catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

async fn run(shared: &Shared, transport: &mut dyn Transport, cfg: &WorkerConfig) {
    let max = cfg.batch_records.min(transport.max_batch()).max(1);
    let mut backoff = Backoff::new(cfg.backoff_initial, cfg.backoff_max);
    let stats = shared.stats.clone();
    let mut report = Report::new(stats.name.clone(), transport.describe());
    loop {
        let closing = shared.is_closing();
        let Some(batch) = shared.next_batch(max) else {
            if closing {
                return;
            }
            shared.idle.store(true, Relaxed);
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = shared.close.notified() => {}
            }
            shared.idle.store(false, Relaxed);
            continue;
        };
        #[cfg(debug_assertions)]
        injected_panic();
        let result =
            match tokio::time::timeout(cfg.send_timeout, transport.send(&batch.records)).await {
                Ok(r) => r,
                Err(_) => Err(TransportError::Retry(format!(
                    "no progress within send_timeout ({:?})",
                    cfg.send_timeout
                ))),
            };
        let (reason, wait) = match result {
            Ok(()) => {
                shared.finish(batch.id, 0);
                report.recovered();
                backoff.reset();
                continue;
            }
            Err(TransportError::Rejected { count, reason }) => {
                stats.errors.fetch_add(1, Relaxed);
                report.rejected(count, batch.records.len(), &reason);
                shared.finish(batch.id, count);
                // It answered and took the rest: it is up again.
                report.recovered();
                backoff.reset();
                continue;
            }
            Err(TransportError::Retry(reason)) => (reason, backoff.delay()),
            Err(TransportError::Throttled { reason, after }) => {
                // The destination knows best how long it needs, but a wait beyond
                // backoff_max would leave records waiting longer than the operator allowed.
                let wait = backoff.delay().max(after.min(cfg.backoff_max));
                (reason, wait)
            }
        };
        stats.errors.fetch_add(1, Relaxed);
        report.failed(&reason, &stats);
        if closing {
            // What is left is persisted by close; no waiting for a dead destination.
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.close.notified() => {}
        }
        stats.reconnects.fetch_add(1, Relaxed);
    }
}

/// The worker's log of failures: a destination that keeps failing is reported once when it
/// starts, then once per [`STILL_FAILING_EVERY`], and once when it recovers; records refused
/// for good once per [`LogLimiter`] interval. Never a line per attempt: a collector down
/// for a day must not fill the log.
struct Report {
    name: String,
    destination: String,
    /// Since when, and how often, sending has failed.
    failing: Option<(Instant, u64)>,
    last_failure_report: Instant,
    rejections: LogLimiter,
}

impl Report {
    fn new(name: String, destination: String) -> Self {
        Self {
            name,
            destination,
            failing: None,
            last_failure_report: Instant::now(),
            rejections: LogLimiter::default(),
        }
    }

    fn recovered(&mut self) {
        if let Some((since, attempts)) = self.failing.take() {
            log::info!(
                "output {}: delivering to {} again after {:.1}s and {attempts} failed attempts",
                self.name,
                self.destination,
                since.elapsed().as_secs_f64()
            );
        }
    }

    fn rejected(&mut self, count: usize, of: usize, reason: &str) {
        let (name, destination) = (&self.name, &self.destination);
        self.rejections.warn(count as u64, || {
            format!(
                "output {name}: {destination} refused {count} of {of} records for good: {reason}"
            )
        });
    }

    fn failed(&mut self, reason: &str, stats: &SinkStats) {
        let (since, attempts) = self.failing.get_or_insert((Instant::now(), 0));
        *attempts += 1;
        let (name, destination) = (&self.name, &self.destination);
        if *attempts == 1 {
            log::warn!(
                "output {name}: sending to {destination} failed: {reason}; records are kept and sent again after a back-off"
            );
            self.last_failure_report = Instant::now();
        } else if self.last_failure_report.elapsed() >= STILL_FAILING_EVERY {
            log::warn!(
                "output {name}: {destination} still failing after {:.0}s ({attempts} attempts), last: {reason}; {} records queued, {} in the disk buffer",
                since.elapsed().as_secs_f64(),
                stats.queued.load(Relaxed),
                stats.buffered.load(Relaxed)
            );
            self.last_failure_report = Instant::now();
        } else {
            log::debug!("output {name}: sending failed again: {reason}");
        }
    }
}
