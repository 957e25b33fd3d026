//! The agent's health report as an ECS metric document (`event.kind: metric`); the counters
//! themselves have no ECS fields and go under `flow_agent.stats`, as the native stats event
//! has them.
use serde::Serialize;

use super::{Agent, Ecs, AGENT, ECS, MODULE};
use crate::event::{
    EnrichLosses, KernelLosses, RateLimitStats, SinkReport, StateBounds, StatsEvent, WatchdogStats,
};

#[derive(Serialize)]
pub(super) struct StatsDoc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: &'a str,
    ecs: Ecs,
    agent: Agent,
    event: Event,
    host: Host<'a>,
    flow_agent: Custom<'a>,
}

#[derive(Serialize)]
struct Event {
    kind: &'static str,
    module: &'static str,
    dataset: &'static str,
    action: &'static str,
}

#[derive(Serialize)]
struct Host<'a> {
    hostname: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct Custom<'a> {
    stats: Stats<'a>,
}

#[derive(Serialize)]
struct Stats<'a> {
    agent_version: &'a str,
    uptime: f64,
    flows_open: u64,
    events_total: u64,
    kernel_losses: &'a KernelLosses,
    enrich_losses: &'a EnrichLosses,
    sinks: &'a [SinkReport],
    rate_limit: &'a RateLimitStats,
    state_bounds: &'a StateBounds,
    watchdog: &'a WatchdogStats,
}

impl<'a> StatsDoc<'a> {
    pub(super) fn new(s: &'a StatsEvent) -> Self {
        StatsDoc {
            timestamp: &s.timestamp,
            ecs: ECS,
            agent: AGENT,
            event: Event {
                kind: "metric",
                module: MODULE,
                dataset: "flow_agent.stats",
                action: s.event_action,
            },
            host: Host {
                hostname: &s.hostname,
                name: &s.hostname,
            },
            flow_agent: Custom {
                stats: Stats {
                    agent_version: s.agent_version,
                    uptime: s.uptime,
                    flows_open: s.flows_open,
                    events_total: s.events_total,
                    kernel_losses: &s.kernel_losses,
                    enrich_losses: &s.enrich_losses,
                    sinks: &s.sinks,
                    rate_limit: &s.rate_limit,
                    state_bounds: &s.state_bounds,
                    watchdog: &s.watchdog,
                },
            },
        }
    }
}
