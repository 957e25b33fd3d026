//! The write path, the same for every kind of event: the global filter decides once per event,
//! the rate limiter takes what remains of the flows, and every output gets one batch of typed
//! events (its own filter and encoder do the rest).
use crate::{
    clock::boot_ns_now,
    event::{DnsEvent, Event, FlowEvent, ProcessAction, ProcessEvent, WallTime},
    filter::FilterConfig,
    ratelimit::{RateLimiter, SuppressedEvent},
    sink::Outputs,
};

/// Events waiting for the outputs, and what was handed to them.
#[derive(Default)]
pub(super) struct Pending {
    /// Flow events from the flow table.
    pub(crate) flows: Vec<FlowEvent>,
    /// `dns_query` events from the flow table.
    pub(crate) dns: Vec<DnsEvent>,
    /// `process_start` and `process_end` events, in record order.
    pub(crate) processes: Vec<ProcessEvent>,
    /// Reused for every batch.
    batch: Vec<Event>,
    /// Flow events handed to the outputs since start (after the global filter and the rate
    /// limiter, before output filters).
    pub(crate) flows_written: u64,
}

impl Pending {
    /// Hands every waiting event to the outputs. Without outputs (taken at shutdown) flow
    /// events wait; DNS and process events are not kept. Process starts go before the flows
    /// (a start's exec record came before any of its flows' records not yet written), ends
    /// after them.
    pub(super) fn write(
        &mut self,
        outputs: Option<&mut Outputs>,
        filter: &FilterConfig,
        limiter: &mut RateLimiter,
    ) {
        let Some(outputs) = outputs else {
            self.dns.clear();
            self.processes.clear();
            return;
        };
        select_flows(&mut self.flows, filter, limiter, boot_ns_now());
        self.flows_written += self.flows.len() as u64;
        let (starts, ends): (Vec<_>, Vec<_>) = self
            .processes
            .drain(..)
            .map(|p| Event::Process(Box::new(p)))
            .filter(|e| filter.matches(e))
            .partition(|e| matches!(e, Event::Process(p) if p.action == ProcessAction::Start));
        self.batch.extend(starts);
        self.batch.extend(self.flows.drain(..).map(Event::Flow));
        self.batch.extend(
            self.dns
                .drain(..)
                .map(|d| Event::Dns(Box::new(d)))
                .filter(|e| filter.matches(e)),
        );
        self.batch.extend(ends);
        outputs.publish(&self.batch);
        self.batch.clear();
    }

    /// Hands `events` (stats, summaries) to the outputs at once.
    pub(super) fn write_now(&mut self, outputs: &mut Outputs, events: impl Iterator<Item = Event>) {
        self.batch.extend(events);
        outputs.publish(&self.batch);
        self.batch.clear();
    }
}

/// Keeps the flow events the global filter passes (decided once per flow) and the rate
/// limiter admits.
pub(super) fn select_flows(
    flows: &mut Vec<FlowEvent>,
    filter: &FilterConfig,
    limiter: &mut RateLimiter,
    now_ns: u64,
) {
    if !filter.is_empty() {
        flows.retain(|ev| filter.matches_flow(ev));
    }
    limiter.apply(flows, now_ns);
}

/// The interval's `rate_limited` summaries (all of them when `force`), also logged: a
/// suppressed flow is never silent, whatever the outputs' formats.
pub(super) fn summaries(limiter: &mut RateLimiter, force: bool) -> Vec<SuppressedEvent> {
    let summaries = limiter.take_summaries(boot_ns_now(), WallTime::now(), force);
    for s in &summaries {
        let p = s.process.as_deref();
        log::warn!(
            "rate limit ({}): {} flows suppressed (tcp {}, udp {}) of pid {} ({}); {} suppressed flows ended",
            s.limiter.name(),
            s.suppressed_flows(),
            s.suppressed_tcp,
            s.suppressed_udp,
            p.map_or("-".to_string(), |p| p.pid.to_string()),
            p.and_then(|p| p.exe.as_deref()).unwrap_or("-"),
            s.suppressed_ended,
        );
    }
    summaries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{Direction, FlowAction, HostInfo, Transport},
        ratelimit::RateLimitConfig,
    };

    fn start(id: u64, remote_port: u16) -> FlowEvent {
        let mut ev = FlowEvent::new(
            FlowAction::Start,
            WallTime(1),
            Transport::Tcp,
            ("10.0.0.1".parse().unwrap(), 40000 + id as u16),
            ("10.0.0.2".parse().unwrap(), remote_port),
            Direction::Outbound,
            std::sync::Arc::new(HostInfo::default()),
        );
        ev.ids = std::sync::Arc::new(crate::event::FlowIds {
            flow_id: format!("f-{id}"),
            community_id: None,
        });
        ev
    }

    #[test]
    fn flows_the_global_filter_drops_take_no_token() {
        let filter: FilterConfig =
            toml::from_str("exclude = [{ remote_port = 80 }]").expect("filter parses");
        let cfg = RateLimitConfig {
            enabled: true,
            global_rate: 1.0,
            global_burst: 1,
            ..RateLimitConfig::default()
        };
        let mut limiter = RateLimiter::new(cfg, 0);
        // Three flows the filter drops, then one it passes: the one token is still there.
        let mut flows: Vec<FlowEvent> = (0..3).map(|i| start(i, 80)).collect();
        flows.push(start(3, 443));
        select_flows(&mut flows, &filter, &mut limiter, 1);
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].remote.1, 443);
        assert_eq!(limiter.stats().suppressed_global, 0);
    }
}
