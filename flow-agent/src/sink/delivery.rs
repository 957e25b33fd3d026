//! Delivery for network sinks: a bounded in-memory queue, a disk buffer behind it, reconnects
//! with back-off, at-least-once and in order. A [`Transport`] only knows how to reach one kind
//! of destination; everything about not losing records lives here. See docs/delivery.md.
use std::{
    future::Future,
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::{CloseFuture, Sink, SinkError, SinkStats};

mod disk;
mod queue;
mod worker;

#[cfg(test)]
pub(crate) mod tests;

pub(crate) use disk::DiskBuffer;
pub(crate) use queue::LogLimiter;

/// Parent of the default buffer directories: `<this>/<output name>`.
pub(crate) const DEFAULT_BUFFER_ROOT: &str = "/var/lib/flow-agent/buffer";

/// Which records give way when a cap is reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DropPolicy {
    /// The oldest waiting records are dropped to make room for new ones.
    #[default]
    Oldest,
    /// New records are dropped; what is already buffered is kept.
    Newest,
}

/// `[outputs.<sink>.delivery]`: queue and buffer sizes shared by every network sink.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DeliveryConfig {
    /// Records held in memory before new ones go to the disk buffer.
    pub(crate) queue_records: usize,
    /// Disk buffer directory; default `/var/lib/flow-agent/buffer/<output name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) buffer_dir: Option<PathBuf>,
    /// Cap of the disk buffer (records and their 8-byte headers); 0 disables it.
    pub(crate) buffer_max_bytes: u64,
    /// What gives way at a cap: `oldest` or `newest`.
    pub(crate) drop_policy: DropPolicy,
    /// Most records per send.
    pub(crate) batch_records: usize,
    /// First delay before retrying an unreachable destination (seconds).
    #[serde(with = "seconds")]
    pub(crate) backoff_initial: Duration,
    /// Longest delay between retries (seconds).
    #[serde(with = "seconds")]
    pub(crate) backoff_max: Duration,
    /// A send that makes no progress for this long is abandoned and retried (seconds).
    #[serde(with = "seconds")]
    pub(crate) send_timeout: Duration,
    /// How long closing (reload, shutdown) may spend sending what memory and the disk buffer
    /// hold before the rest stays in the disk buffer (seconds).
    #[serde(with = "seconds")]
    pub(crate) close_timeout: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            queue_records: 10_000,
            buffer_dir: None,
            buffer_max_bytes: 256 << 20,
            drop_policy: DropPolicy::Oldest,
            batch_records: 500,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            send_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(5),
        }
    }
}

impl DeliveryConfig {
    /// The buffer directory of output `name`.
    pub(crate) fn buffer_dir_for(&self, name: &str) -> PathBuf {
        if let Some(dir) = &self.buffer_dir {
            return dir.clone();
        }
        // An output name is free text; as a directory name it must stay one component.
        let safe: String = name
            .chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
                _ => '_',
            })
            .collect();
        let safe = if safe.trim_matches('.').is_empty() {
            format!("_{safe}")
        } else {
            safe
        };
        Path::new(DEFAULT_BUFFER_ROOT).join(safe)
    }

    pub(crate) fn validate(&self) -> Result<(), SinkError> {
        let bad = |m: String| Err(SinkError::Config(format!("delivery: {m}")));
        if self.queue_records == 0 {
            return bad("queue_records must be at least 1".into());
        }
        if self.batch_records == 0 {
            return bad("batch_records must be at least 1".into());
        }
        if self.backoff_initial.is_zero() || self.backoff_initial > self.backoff_max {
            return bad(format!(
                "backoff_initial ({:?}) must be above 0 and at most backoff_max ({:?})",
                self.backoff_initial, self.backoff_max
            ));
        }
        if self.send_timeout.is_zero() {
            return bad("send_timeout must be above 0".into());
        }
        if let Some(dir) = &self.buffer_dir {
            if dir.as_os_str().is_empty() || dir.is_relative() {
                return bad(format!(
                    "buffer_dir must be an absolute path, not {:?}",
                    dir.display()
                ));
            }
        }
        Ok(())
    }
}

/// Durations in the configuration: seconds, whole or fractional (`0.5`, `30`).
mod seconds {
    use std::time::Duration;

    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs)
            .map_err(|_| D::Error::custom(format!("{secs} is not a duration in seconds")))
    }
}

/// Why a batch was not taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// The destination is unreachable or the connection broke: reconnect after a back-off and
    /// send the same records again.
    #[error("{0}")]
    Retry(String),
    /// Like `Retry`, and the destination said how long to leave it alone (HTTP 429 or 503
    /// with `Retry-After`): the next attempt waits at least `after`, at most `backoff_max`.
    #[error("{reason} (asked to wait {after:?})")]
    Throttled { reason: String, after: Duration },
    /// The destination refused these records for good (e.g. HTTP 400): `count` of them are
    /// dropped and counted, the rest of the batch was taken.
    #[error("{count} records rejected: {reason}")]
    Rejected { count: usize, reason: String },
}

/// A future returned by [`Transport::send`].
pub(crate) type SendFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(), TransportError>> + Send + 'a>>;

/// One kind of destination (syslog over TCP, HTTP, ...). Connects lazily inside `send` and
/// drops its connection on error, so that the next `send` reconnects.
///
/// A `send` can be dropped before it completes (`send_timeout`, close): the transport must
/// then not go on with a half-written connection, and the same records come again.
pub(crate) trait Transport: Send + 'static {
    /// Sends these records (encoded, without framing) in order; Ok when all were taken.
    fn send<'a>(&'a mut self, records: &'a [Vec<u8>]) -> SendFuture<'a>;
    /// Most records worth passing to one `send`.
    fn max_batch(&self) -> usize;
    /// For logs: where this transport sends.
    fn describe(&self) -> String;
}

/// Starts the delivery worker of a transport (on its own thread) and returns the sink that
/// feeds it. Records an earlier run left in the disk buffer are delivered first.
pub(crate) fn spawn(
    transport: Box<dyn Transport>,
    config: &DeliveryConfig,
    stats: Arc<SinkStats>,
) -> Result<Box<dyn Sink>, SinkError> {
    Ok(Box::new(start(transport, config, stats)?))
}

fn start(
    transport: Box<dyn Transport>,
    config: &DeliveryConfig,
    stats: Arc<SinkStats>,
) -> Result<DeliverySink, SinkError> {
    config.validate()?;
    let disk = if config.buffer_max_bytes > 0 {
        let dir = config.buffer_dir_for(&stats.name);
        let (disk, recovered) = DiskBuffer::open(&dir, config.buffer_max_bytes)
            .map_err(|e| SinkError::Config(format!("output {}: {e}", stats.name)))?;
        if recovered.records > 0 {
            log::info!(
                "output {}: {} undelivered records from an earlier run in {}, sending them first",
                stats.name,
                recovered.records,
                dir.display()
            );
        }
        count_recovery_losses(&stats, &recovered);
        Some(disk)
    } else {
        None
    };
    let shared = Arc::new(queue::Shared::new(
        stats,
        disk,
        config.drop_policy,
        config.queue_records,
    ));
    let worker_config = worker::WorkerConfig {
        batch_records: config.batch_records,
        backoff_initial: config.backoff_initial,
        backoff_max: config.backoff_max,
        send_timeout: config.send_timeout,
    };
    let worker = worker::start(shared.clone(), transport, worker_config).map_err(|e| {
        SinkError::io(
            format!("output {}: starting its delivery thread", shared.stats.name),
            e,
        )
    })?;
    Ok(DeliverySink {
        shared,
        worker: Some(worker),
        close_timeout: config.close_timeout,
    })
}

/// What opening the disk buffer gave up is counted: a record whose write a crash interrupted
/// (torn), the records readable before the damage of a segment moved aside plus its damaged
/// record, in `dropped`; each segment moved aside or file refused, in `errors`.
fn count_recovery_losses(stats: &SinkStats, r: &disk::Recovered) {
    use std::sync::atomic::Ordering::Relaxed;
    stats
        .dropped
        .fetch_add(r.torn + r.corrupt_records + r.corrupt, Relaxed);
    stats.errors.fetch_add(r.corrupt + r.refused, Relaxed);
    if r.corrupt + r.refused > 0 {
        log::error!(
            "output {}: disk buffer files moved aside at start-up: {} segments that failed validation (*.corrupt), {} refused files (*.refused); see the lines above",
            stats.name,
            r.corrupt,
            r.refused
        );
    }
}

/// The sink side of a delivery worker.
struct DeliverySink {
    shared: Arc<queue::Shared>,
    worker: Option<worker::WorkerHandle>,
    close_timeout: Duration,
}

impl Sink for DeliverySink {
    fn submit(&mut self, record: &[u8]) {
        self.shared.submit(record);
    }

    fn flush(&mut self) {
        self.shared.wake.notify_one();
    }

    fn close(mut self: Box<Self>) -> CloseFuture {
        Box::pin(async move {
            self.shared.begin_close();
            if let Some(worker) = self.worker.take() {
                if !worker.finish(self.close_timeout).await {
                    log::warn!(
                        "output {}: close_timeout ({:?}) reached while sending; the rest goes to the disk buffer",
                        self.shared.stats.name,
                        self.close_timeout
                    );
                }
            }
            self.shared.shutdown();
        })
    }
}

impl Drop for DeliverySink {
    /// Dropped without `close` (an error path): no more sending, but what memory holds is
    /// still persisted.
    fn drop(&mut self) {
        // Dropping the handle stops the worker.
        self.worker.take();
        self.shared.shutdown();
    }
}
