//! stdout: one record per line. The default sink.
use std::{
    io::{BufWriter, Stdout, Write},
    sync::{atomic::Ordering::Relaxed, Arc},
};

use serde::{Deserialize, Serialize};

use super::{CloseFuture, Sink, SinkStats};

/// `[outputs.stdout]`: no options.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct StdoutConfig {}

pub(crate) struct StdoutSink {
    out: BufWriter<Stdout>,
    stats: Arc<SinkStats>,
    pending: u64,
    broken: bool,
}

impl StdoutSink {
    pub(crate) fn open(_config: &StdoutConfig, stats: Arc<SinkStats>) -> Self {
        Self {
            out: BufWriter::with_capacity(1 << 16, std::io::stdout()),
            stats,
            pending: 0,
            broken: false,
        }
    }

    fn fail(&mut self, e: std::io::Error) {
        if !self.broken {
            log::error!("stdout sink: writing events failed: {e}");
        }
        self.broken = true;
        self.stats.errors.fetch_add(1, Relaxed);
        self.stats.dropped.fetch_add(self.pending, Relaxed);
        self.pending = 0;
    }
}

impl Sink for StdoutSink {
    fn submit(&mut self, record: &[u8]) {
        self.pending += 1;
        let res = self
            .out
            .write_all(record)
            .and_then(|_| self.out.write_all(b"\n"));
        if let Err(e) = res {
            self.fail(e);
        }
    }

    fn flush(&mut self) {
        match self.out.flush() {
            Ok(()) => {
                self.stats.sent.fetch_add(self.pending, Relaxed);
                self.pending = 0;
            }
            Err(e) => self.fail(e),
        }
    }

    fn close(mut self: Box<Self>) -> CloseFuture {
        self.flush();
        Box::pin(async {})
    }
}
