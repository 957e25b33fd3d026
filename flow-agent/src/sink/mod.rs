//! Sink stage: where encoded records go. An output is a sink with its own format and filter;
//! several run at once. Network sinks queue in memory and spill to a disk buffer so that the
//! capture loop never waits for a forwarder.
use std::{
    future::Future,
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
};

use serde::{Deserialize, Serialize};

use crate::{
    encode::{Encoder, Format},
    event::Event,
    filter::FilterConfig,
};

pub(crate) mod delivery;
pub(crate) mod file;
pub(crate) mod http;
pub(crate) mod safe_dir;
pub(crate) mod stats;
pub(crate) mod stdout;
pub mod subscribe;
pub(crate) mod syslog;

pub(crate) use stats::SinkStats;

/// One `[[outputs]]` table: exactly one of the sink tables (`stdout`, `file`, `syslog`,
/// `http`), plus the format and filter of this output.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Name in logs, stats and metrics; default `<sink>-<index>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) format: Format,
    #[serde(default)]
    pub(crate) filter: FilterConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stdout: Option<stdout::StdoutConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) file: Option<file::FileConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) syslog: Option<syslog::SyslogConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) http: Option<http::HttpConfig>,
}

impl OutputConfig {
    /// The built-in default: native JSON lines on stdout.
    pub(crate) fn stdout() -> Self {
        Self {
            stdout: Some(stdout::StdoutConfig::default()),
            ..Self::default()
        }
    }

    /// Which sink table is set; an error unless exactly one is.
    pub(crate) fn kind(&self) -> Result<&'static str, SinkError> {
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

    /// The name of output number `index` (from 0): its `name`, else `<sink>-<index>`.
    pub(crate) fn name_at(&self, index: usize) -> Result<String, SinkError> {
        let kind = self.kind()?;
        Ok(self
            .name
            .clone()
            .unwrap_or_else(|| format!("{kind}-{index}")))
    }

    /// The disk buffer directory output number `index` locks while it runs: network sinks
    /// with a disk buffer only.
    pub(crate) fn buffer_dir(&self, index: usize) -> Option<PathBuf> {
        let delivery = match (&self.syslog, &self.http) {
            (Some(s), _) => &s.delivery,
            (None, Some(h)) => &h.delivery,
            (None, None) => return None,
        };
        if delivery.buffer_max_bytes == 0 {
            return None;
        }
        let name = self.name_at(index).ok()?;
        Some(delivery.buffer_dir_for(&name))
    }
}

/// The disk buffer directories of `configs`, by output index, as comparable paths (the real
/// path when the directory exists).
fn buffer_dirs(configs: &[OutputConfig]) -> Vec<(usize, PathBuf)> {
    configs
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((i, comparable(&c.buffer_dir(i)?))))
        .collect()
}

fn comparable(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SinkError {
    #[error("output configuration: {0}")]
    Config(String),
    #[error("output configuration: syslog: {0}")]
    Syslog(#[from] syslog::SyslogConfigError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl SinkError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// A future returned by [`Sink::close`].
pub(crate) type CloseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Destination of encoded records.
pub(crate) trait Sink: Send {
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
    /// Its place in the configuration's `[[outputs]]`.
    index: usize,
    filter: FilterConfig,
    encoder: Box<dyn Encoder>,
    sink: Box<dyn Sink>,
    stats: Arc<SinkStats>,
}

/// Every configured output, fed by the runtime.
pub(crate) struct Outputs {
    outputs: Vec<Output>,
    record: Vec<u8>,
    /// The live subscription socket: it outlives reloads (its `[live]` needs a restart).
    live: Option<subscribe::Hub>,
}

impl Outputs {
    /// Opens every sink; fails on the first that cannot start, naming it (those opened
    /// before it are closed again).
    pub(crate) fn start(configs: &[OutputConfig]) -> Result<Self, SinkError> {
        let mut outputs = Self {
            outputs: Vec::with_capacity(configs.len()),
            record: Vec::with_capacity(4096),
            live: None,
        };
        outputs.open_all(configs, 0..configs.len())?;
        Ok(outputs)
    }

    /// Opens the outputs `indices` of `configs`, each in its place; fails on the first that
    /// cannot start, and then the ones opened here are closed again.
    fn open_all(
        &mut self,
        configs: &[OutputConfig],
        indices: impl IntoIterator<Item = usize>,
    ) -> Result<(), SinkError> {
        let mut opened = Vec::new();
        for i in indices {
            match open(&configs[i], i) {
                Ok(out) => opened.push(out),
                Err(e) => {
                    // Dropped: network sinks persist what they hold and release their
                    // buffer directories (nothing was submitted yet).
                    drop(opened);
                    return Err(e);
                }
            }
        }
        self.outputs.extend(opened);
        self.outputs.sort_by_key(|o| o.index);
        Ok(())
    }

    /// A reload's new outputs, started while the current ones still run, which are closed
    /// once the new ones all started. An output of the new configuration cannot open a disk
    /// buffer directory a running output holds (it is locked by its owner): those running
    /// outputs (`current` is the configuration they were started from) are closed first. If
    /// the new outputs cannot start, the current ones stay in force: those closed first are
    /// started again from `current`, the others were never interrupted.
    pub(crate) async fn replace(
        &mut self,
        current: &[OutputConfig],
        new: &[OutputConfig],
    ) -> Result<(), SinkError> {
        let wanted: Vec<PathBuf> = buffer_dirs(new).into_iter().map(|(_, d)| d).collect();
        let in_the_way: Vec<usize> = buffer_dirs(current)
            .into_iter()
            .filter(|(_, d)| wanted.contains(d))
            .map(|(i, _)| i)
            .collect();
        self.close_some(&in_the_way).await;
        match Self::start(new) {
            Ok(started) => {
                let mut old = std::mem::replace(self, started);
                self.live = old.live.take();
                old.close().await;
                Ok(())
            }
            Err(e) => {
                if let Err(again) = self.open_all(current, in_the_way.iter().copied()) {
                    log::error!(
                        "restarting the previous outputs whose disk buffers the new configuration wanted failed: {again}"
                    );
                }
                Err(e)
            }
        }
    }

    /// Closes the running outputs at these configuration indices.
    async fn close_some(&mut self, indices: &[usize]) {
        if indices.is_empty() {
            return;
        }
        let (closing, keep) = std::mem::take(&mut self.outputs)
            .into_iter()
            .partition(|o| indices.contains(&o.index));
        self.outputs = keep;
        close_all(closing).await;
    }

    /// Filters (each output's own filter: the global one was applied before), encodes and
    /// submits a batch of events to every output whose format can carry them.
    pub(crate) fn publish(&mut self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        if let Some(live) = &self.live {
            live.publish(events);
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
    pub(crate) fn stats(&self) -> Vec<Arc<SinkStats>> {
        let live = self.live.as_ref().map(|l| l.stats());
        self.outputs
            .iter()
            .map(|o| o.stats.clone())
            .chain(live)
            .collect()
    }

    /// Serves the live subscription socket from now on.
    pub(crate) fn attach_live(&mut self, hub: subscribe::Hub) {
        self.live = Some(hub);
    }

    /// Closes every sink; see [`Sink::close`].
    /// All at once: each network sink may wait up to its `close_timeout` for its forwarder, and
    /// one after the other those waits would add up.
    pub(crate) async fn close(self) {
        // Subscribers first: their streams end with what was queued for them.
        drop(self.live);
        close_all(self.outputs).await;
    }
}

/// Opens output number `index`.
fn open(cfg: &OutputConfig, index: usize) -> Result<Output, SinkError> {
    let kind = cfg.kind()?;
    let name = cfg.name_at(index)?;
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
    Ok(Output {
        index,
        filter: cfg.filter.clone(),
        encoder: cfg.format.encoder(),
        sink,
        stats,
    })
}

/// Closes these outputs, all at once: each network sink may wait up to its `close_timeout`
/// for its forwarder, and one after the other those waits would add up.
async fn close_all(outputs: Vec<Output>) {
    let closing: Vec<_> = outputs
        .into_iter()
        .map(|out| tokio::spawn(out.sink.close()))
        .collect();
    for task in closing {
        if let Err(e) = task.await {
            log::error!("closing an output failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;
    use crate::{event::Event, sink::delivery::tests::TestDir};

    fn outputs(toml_text: &str) -> Vec<OutputConfig> {
        #[derive(Deserialize)]
        struct File {
            outputs: Vec<OutputConfig>,
        }
        toml::from_str::<File>(toml_text).unwrap().outputs
    }

    fn file_output(name: &str, path: &Path) -> String {
        format!(
            "[[outputs]]\nname = \"{name}\"\n[outputs.file]\npath = \"{}\"\n",
            path.display()
        )
    }

    /// A syslog output to a port nothing listens on: it connects only to send.
    fn syslog_output(name: &str, buffer: &Path) -> String {
        format!(
            "[[outputs]]\nname = \"{name}\"\n[outputs.syslog]\ntransport = \"tcp\"\naddress = \"127.0.0.1:9\"\n[outputs.syslog.delivery]\nbuffer_dir = \"{}\"\n",
            buffer.display()
        )
    }

    /// (name, counters) of every running output, in order.
    fn running(o: &Outputs) -> Vec<(String, Arc<SinkStats>)> {
        o.stats().into_iter().map(|s| (s.name.clone(), s)).collect()
    }

    fn stats_event() -> Event {
        Event::Stats(Box::new(crate::event::StatsEvent {
            event_action: "stats",
            ..Default::default()
        }))
    }

    #[tokio::test]
    async fn new_outputs_that_cannot_start_leave_the_running_ones_untouched() {
        let dir = TestDir::new("outputs-replace");
        std::fs::create_dir_all(dir.path().join("a-directory")).unwrap();
        let live = dir.path().join("events.json");
        let current = outputs(&format!(
            "{}{}",
            file_output("events", &live),
            syslog_output("siem", &dir.path().join("buf-siem"))
        ));
        let mut o = Outputs::start(&current).unwrap();
        let before = running(&o);
        o.publish(&[stats_event()]);
        assert_eq!(before[0].1.sent.load(Relaxed), 1);

        // Nothing in the way: the running outputs are not even closed.
        let failing = outputs(&format!(
            "{}{}",
            syslog_output("siem", &dir.path().join("buf-other")),
            file_output("archive", &dir.path().join("a-directory"))
        ));
        let err = o.replace(&current, &failing).await.unwrap_err().to_string();
        assert!(err.contains("a-directory"), "{err}");
        let after = running(&o);
        assert_eq!(after.len(), 2);
        for ((name, a), (was, b)) in after.iter().zip(&before) {
            assert_eq!(name, was);
            assert!(Arc::ptr_eq(a, b), "{name} was restarted");
        }
        // And they still work: the file output writes the next record.
        o.publish(&[stats_event()]);
        assert_eq!(after[0].1.sent.load(Relaxed), 2);
        let lines = std::fs::read_to_string(&live).unwrap();
        assert_eq!(lines.lines().count(), 2);

        // The new syslog output wants the running one's buffer directory: that one closes
        // first and starts again; the file output is still not touched.
        let failing = outputs(&format!(
            "{}{}",
            syslog_output("siem", &dir.path().join("buf-siem")),
            file_output("archive", &dir.path().join("a-directory"))
        ));
        o.replace(&current, &failing).await.unwrap_err();
        let again = running(&o);
        assert_eq!(
            again.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["events", "siem"]
        );
        assert!(Arc::ptr_eq(&again[0].1, &before[0].1));
        assert!(!Arc::ptr_eq(&again[1].1, &before[1].1), "siem restarted");

        // A new configuration that starts replaces them all, taking over the directory.
        let new = outputs(&format!(
            "{}{}",
            syslog_output("siem", &dir.path().join("buf-siem")),
            file_output("archive", &dir.path().join("archive.json"))
        ));
        o.replace(&current, &new).await.unwrap();
        let replaced = running(&o);
        assert_eq!(
            replaced.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["siem", "archive"]
        );
        o.publish(&[stats_event()]);
        assert_eq!(replaced[1].1.sent.load(Relaxed), 1);
        // The old file output was closed: it wrote nothing more.
        assert_eq!(std::fs::read_to_string(&live).unwrap().lines().count(), 2);
        o.close().await;
    }
}
