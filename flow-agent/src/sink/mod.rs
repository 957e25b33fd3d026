//! Sink stage: where encoded records go. An output is a sink with its own format and filter;
//! several run at once. Network sinks queue in memory and spill to a disk buffer so that the
//! capture loop never waits for a forwarder.
use std::{future::Future, pin::Pin, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::{
    encode::{Encoder, Format},
    event::Event,
    filter::FilterConfig,
};

pub mod delivery;
pub mod file;
pub mod http;
pub(crate) mod safe_dir;
pub mod stats;
pub mod stdout;
pub mod syslog;

pub use stats::SinkStats;

/// One `[[outputs]]` table: exactly one of the sink tables (`stdout`, `file`, `syslog`,
/// `http`), plus the format and filter of this output.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Name in logs, stats and metrics; default `<sink>-<index>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub format: Format,
    #[serde(default)]
    pub filter: FilterConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<stdout::StdoutConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<file::FileConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog: Option<syslog::SyslogConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<http::HttpConfig>,
}

impl OutputConfig {
    /// The built-in default: native JSON lines on stdout.
    pub fn stdout() -> Self {
        Self {
            stdout: Some(stdout::StdoutConfig::default()),
            ..Self::default()
        }
    }

    /// Which sink table is set; an error unless exactly one is.
    pub fn kind(&self) -> Result<&'static str, SinkError> {
        let set: Vec<&'static str> = [
            ("stdout", self.stdout.is_some()),
            ("file", self.file.is_some()),
            ("syslog", self.syslog.is_some()),
            ("http", self.http.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect();
        match set.as_slice() {
            [one] => Ok(one),
            [] => Err(SinkError::Config(
                "an output needs one sink table: stdout, file, syslog or http".into(),
            )),
            many => Err(SinkError::Config(format!(
                "an output has one sink, this one has {}",
                many.join(" and ")
            ))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("output configuration: {0}")]
    Config(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl SinkError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// A future returned by [`Sink::close`].
pub type CloseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Destination of encoded records.
pub trait Sink: Send {
    /// Takes one record (without framing). Never blocks the capture loop for long: network
    /// sinks queue it. Failures are counted in the sink's stats and logged, not returned:
    /// one broken sink must not stop the others.
    fn submit(&mut self, record: &[u8]);
    /// End of a batch: write-through sinks flush here.
    fn flush(&mut self);
    /// Stops the sink. Records not yet delivered are persisted (disk buffer) or written out
    /// before the future completes.
    fn close(self: Box<Self>) -> CloseFuture;
}

struct Output {
    filter: FilterConfig,
    encoder: Box<dyn Encoder>,
    sink: Box<dyn Sink>,
    stats: Arc<SinkStats>,
}

/// Every configured output, fed by the runtime.
pub struct Outputs {
    outputs: Vec<Output>,
    record: Vec<u8>,
}

impl Outputs {
    /// Opens every sink; fails on the first that cannot start, naming it.
    pub fn start(configs: &[OutputConfig]) -> Result<Self, SinkError> {
        let mut outputs = Vec::with_capacity(configs.len());
        for (i, cfg) in configs.iter().enumerate() {
            let kind = cfg.kind()?;
            let name = cfg.name.clone().unwrap_or_else(|| format!("{kind}-{i}"));
            let stats = Arc::new(SinkStats::new(name.clone(), kind, cfg.format.name()));
            let sink: Box<dyn Sink> = if let Some(c) = &cfg.stdout {
                Box::new(stdout::StdoutSink::open(c, stats.clone()))
            } else if let Some(c) = &cfg.file {
                file::open(c, stats.clone())?
            } else if let Some(c) = &cfg.syslog {
                syslog::open(c, cfg.format, stats.clone())?
            } else if let Some(c) = &cfg.http {
                http::open(c, cfg.format, stats.clone())?
            } else {
                unreachable!("kind() checked that one sink is set")
            };
            log::info!("output {name}: {kind} sink, {} format", cfg.format.name());
            outputs.push(Output {
                filter: cfg.filter.clone(),
                encoder: cfg.format.encoder(),
                sink,
                stats,
            });
        }
        Ok(Self {
            outputs,
            record: Vec::with_capacity(4096),
        })
    }

    /// Filters (each output's own filter: the global one was applied before), encodes and
    /// submits a batch of events to every output whose format can carry them.
    pub(crate) fn publish(&mut self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        for out in &mut self.outputs {
            for ev in events {
                if !out.filter.matches(ev) {
                    continue;
                }
                self.record.clear();
                if out.encoder.encode(ev, &mut self.record) {
                    // `accepted` counts flow events only.
                    if matches!(ev, Event::Flow(_)) {
                        out.stats
                            .accepted
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    out.sink.submit(&self.record);
                }
            }
            out.sink.flush();
        }
    }

    /// Counters of every output, for stats events and metrics.
    pub fn stats(&self) -> Vec<Arc<SinkStats>> {
        self.outputs.iter().map(|o| o.stats.clone()).collect()
    }

    /// Closes every sink; see [`Sink::close`].
    /// All at once: each network sink may wait up to its `close_timeout` for its forwarder, and
    /// one after the other those waits would add up.
    pub async fn close(self) {
        let closing: Vec<_> = self
            .outputs
            .into_iter()
            .map(|out| tokio::spawn(out.sink.close()))
            .collect();
        for task in closing {
            if let Err(e) = task.await {
                log::error!("closing an output failed: {e}");
            }
        }
    }
}
