//! Delivery counters of one sink, shared between the sink's worker and the health reports.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::event::SinkReport;

#[derive(Debug, Default)]
pub struct SinkStats {
    pub name: String,
    pub kind: &'static str,
    pub format: &'static str,
    pub accepted: AtomicU64,
    pub sent: AtomicU64,
    pub queued: AtomicU64,
    pub buffered: AtomicU64,
    pub dropped: AtomicU64,
    pub reconnects: AtomicU64,
    pub errors: AtomicU64,
    pub worker_panics: AtomicU64,
}

impl SinkStats {
    pub fn new(name: String, kind: &'static str, format: &'static str) -> Self {
        Self {
            name,
            kind,
            format,
            ..Self::default()
        }
    }

    pub fn report(&self) -> SinkReport {
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
