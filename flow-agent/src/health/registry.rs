//! The latest health numbers, shared between the runtime (writer, every second) and the
//! metrics endpoint (reader, on each scrape).
use std::{
    sync::{Arc, Mutex},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use super::{metrics, process::ProcessStats, server::MetricsServer, HealthConfig, HealthError};
use crate::{event::StatsEvent, sink::SinkStats};

/// The last stats event and the live counters of every output.
pub(crate) struct Registry {
    started: Instant,
    /// Seconds since the Unix epoch at `started`.
    start_time: f64,
    latest: Mutex<Latest>,
}

#[derive(Default)]
struct Latest {
    stats: StatsEvent,
    sinks: Vec<Arc<SinkStats>>,
}

impl Registry {
    pub(crate) fn new(started: Instant) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        Self {
            started,
            start_time: now - started.elapsed().as_secs_f64(),
            latest: Mutex::new(Latest::default()),
        }
    }

    /// Stores the numbers of a stats event; output counters are read live from `sinks`.
    pub(crate) fn update(&self, stats: &StatsEvent, sinks: Vec<Arc<SinkStats>>) {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        latest.stats = StatsEvent {
            sinks: Vec::new(),
            ..stats.clone()
        };
        latest.sinks = sinks;
    }

    /// Prometheus text exposition (format 0.0.4) of the current numbers.
    pub(crate) fn render(&self) -> String {
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let reports: Vec<_> = latest.sinks.iter().map(|s| s.report()).collect();
        metrics::render(&metrics::Snapshot {
            stats: &latest.stats,
            sinks: &reports,
            uptime: self.started.elapsed().as_secs_f64(),
            start_time: self.start_time,
            process: ProcessStats::read(),
        })
    }
}

/// The registry and the endpoint serving it, following configuration reloads.
pub(crate) struct Health {
    registry: Arc<Registry>,
    server: Option<MetricsServer>,
}

impl Health {
    /// Checks the configuration and starts the endpoint. An address that cannot be bound
    /// (e.g. in use) is logged, not fatal: capture matters more than its metrics.
    pub(crate) fn start(started: Instant, config: &HealthConfig) -> Result<Self, HealthError> {
        let mut health = Self {
            registry: Arc::new(Registry::new(started)),
            server: None,
        };
        health.apply(config)?;
        Ok(health)
    }

    /// Moves the endpoint to the configured address (a no-op when it is unchanged).
    pub(crate) fn apply(&mut self, config: &HealthConfig) -> Result<(), HealthError> {
        let addr = config.metrics_address()?;
        if self.server.as_ref().map(MetricsServer::address) == addr && addr.is_some() {
            return Ok(());
        }
        // The old endpoint goes first: the new one may want the same port.
        self.server = None;
        if let Some(addr) = addr {
            match MetricsServer::start(addr, self.registry.clone()) {
                Ok(s) => {
                    log::info!("metrics endpoint: http://{}/metrics", s.address());
                    self.server = Some(s);
                }
                Err(e) => log::error!("metrics endpoint not started: listening on {addr}: {e}"),
            }
        }
        Ok(())
    }

    pub(crate) fn update(&self, stats: &StatsEvent, sinks: Vec<Arc<SinkStats>>) {
        self.registry.update(stats, sinks);
    }
}
