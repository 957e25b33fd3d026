//! Delivery counters of one sink, shared between the sink's worker and the health reports.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::event::SinkReport;

#[derive(Debug, Default)]
pub(crate) struct SinkStats {
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    pub(crate) format: &'static str,
    pub(crate) accepted: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) buffered: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) worker_panics: AtomicU64,
}

impl SinkStats {
    pub(crate) fn new(name: String, kind: &'static str, format: &'static str) -> Self {
        Self {
            name,
            kind,
            format,
            ..Self::default()
        }
    }

    pub(crate) fn report(&self) -> SinkReport {
        SinkReport {
            name: self.name.clone(),
            kind: self.kind,
            format: self.format,
            accepted: self.accepted.load(Relaxed),
            sent: self.sent.load(Relaxed),
            queued: self.queued.load(Relaxed),
            buffered: self.buffered.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            errors: self.errors.load(Relaxed),
            worker_panics: self.worker_panics.load(Relaxed),
        }
    }
}
