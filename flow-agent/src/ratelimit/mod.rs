//! Rate limiting, between the flow table and the outputs: optional limits on the flows each
//! process (and all processes together) may start a second. The decision is taken once per
//! flow, on its start event: an admitted flow keeps every event, a suppressed one loses all
//! of them and is counted in a `rate_limited` summary per interval, limiter and process.
use std::collections::HashMap;

use crate::event::{FlowAction, FlowEvent, RateLimitStats, WallTime};

mod bucket;
mod config;
mod event;
#[cfg(test)]
mod tests;

pub(crate) use crate::event::{Limiter, SuppressedEvent};
pub(crate) use bucket::{Bucket, Limit};
pub(crate) use config::RateLimitConfig;
use event::Summary;

/// A process as the limiter knows it: its entity id (pid and start time), so a reused pid is
/// another process.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ProcessKey {
    Entity(String),
    /// A process whose start time is unknown.
    Pid(u32),
    /// Flows no process owned share one limit.
    Unattributed,
    /// Summaries beyond the cap: processes whose identity is not kept.
    Other,
}

impl ProcessKey {
    fn of(ev: &FlowEvent) -> Self {
        match ev.process.as_deref() {
            Some(p) => match &p.entity_id {
                Some(id) => Self::Entity(id.clone()),
                None => Self::Pid(p.pid),
            },
            None => Self::Unattributed,
        }
    }
}

type SummaryKey = (Limiter, ProcessKey);

pub(crate) struct RateLimiter {
    cfg: RateLimitConfig,
    global: Bucket,
    processes: HashMap<ProcessKey, Bucket>,
    /// Open suppressed flows by flow id: later events of theirs are suppressed too.
    suppressed: HashMap<String, SummaryKey>,
    summaries: HashMap<SummaryKey, Summary>,
    last_summary_ns: u64,
    stats: RateLimitStats,
}

impl RateLimiter {
    pub(crate) fn new(cfg: RateLimitConfig, now_ns: u64) -> Self {
        Self {
            global: Bucket::full(cfg.global(), now_ns),
            cfg,
            processes: HashMap::new(),
            suppressed: HashMap::new(),
            summaries: HashMap::new(),
            last_summary_ns: now_ns,
            stats: RateLimitStats::default(),
        }
    }

    /// A reloaded `[rate_limit]`. Kept buckets keep their tokens up to the new bursts; flows
    /// already suppressed stay suppressed to their end, even when limiting is now off.
    pub(crate) fn reconfigure(&mut self, cfg: RateLimitConfig) {
        if cfg.global() != self.cfg.global() {
            self.global.clamp(cfg.global());
        }
        for b in self.processes.values_mut() {
            b.clamp(cfg.per_process());
        }
        self.cfg = cfg;
    }

    pub(crate) fn stats(&self) -> RateLimitStats {
        RateLimitStats {
            processes: self.processes.len() as u64,
            suppressed_open: self.suppressed.len() as u64,
            ..self.stats.clone()
        }
    }

    /// Removes the events of suppressed flows from `events`. Flows the global filter drops
    /// never come here: they take no token and are not counted.
    pub(crate) fn apply(&mut self, events: &mut Vec<FlowEvent>, now_ns: u64) {
        if !self.cfg.enabled && self.suppressed.is_empty() {
            return;
        }
        events.retain(|ev| self.admit(ev, now_ns));
    }

    fn admit(&mut self, ev: &FlowEvent, now_ns: u64) -> bool {
        if let Some(key) = self.suppressed.get(&ev.ids.flow_id) {
            if ev.action == FlowAction::End {
                let key = key.clone();
                self.suppressed.remove(&ev.ids.flow_id);
                self.summary(key, ev).ended(ev);
            }
            return false;
        }
        if !self.cfg.enabled || ev.action != FlowAction::Start {
            return true;
        }
        let per_process = self.cfg.per_process();
        let global = self.cfg.global();
        let pkey = ProcessKey::of(ev);
        let process_ok =
            !per_process.is_on() || self.bucket(&pkey, now_ns).has_token(per_process, now_ns);
        let global_ok = !global.is_on() || self.global.has_token(global, now_ns);
        if process_ok && global_ok {
            if per_process.is_on() {
                self.bucket(&pkey, now_ns).take();
            }
            if global.is_on() {
                self.global.take();
            }
            return true;
        }
        let limiter = if process_ok {
            self.stats.suppressed_global += 1;
            Limiter::Global
        } else {
            self.stats.suppressed_process += 1;
            Limiter::Process
        };
        let key = (limiter, pkey);
        self.summary(key.clone(), ev).started(ev);
        self.suppressed.insert(ev.ids.flow_id.clone(), key);
        false
    }

    /// The process's bucket, made full when new; at the cap, forgetting full buckets first
    /// (nothing lost), then the least recently used sixteenth (counted).
    fn bucket(&mut self, key: &ProcessKey, now_ns: u64) -> &mut Bucket {
        let limit = self.cfg.per_process();
        let cap = self.cfg.max_processes.max(1) as usize;
        if !self.processes.contains_key(key) && self.processes.len() >= cap {
            self.processes.retain(|_, b| !b.is_full(limit, now_ns));
            if self.processes.len() >= cap {
                let mut ages: Vec<u64> = self.processes.values().map(Bucket::last_ns).collect();
                let n = (cap / 16).max(1).min(ages.len());
                let (_, cut, _) = ages.select_nth_unstable(n - 1);
                let cut = *cut;
                let before = self.processes.len();
                let mut left = n;
                self.processes.retain(|_, b| {
                    let drop = left > 0 && b.last_ns() <= cut;
                    left -= usize::from(drop);
                    !drop
                });
                self.stats.processes_evicted += (before - self.processes.len()) as u64;
            }
        }
        self.processes
            .entry(key.clone())
            .or_insert_with(|| Bucket::full(limit, now_ns))
    }

    /// The summary collecting `key`'s flows; beyond `max_processes` summaries, processes share
    /// one summary per limiter without identity.
    fn summary(&mut self, key: SummaryKey, ev: &FlowEvent) -> &mut Summary {
        let cap = self.cfg.max_processes.max(1) as usize;
        let key = if !self.summaries.contains_key(&key) && self.summaries.len() >= cap {
            (key.0, ProcessKey::Other)
        } else {
            key
        };
        let identity = match key.1 {
            ProcessKey::Other => None,
            _ => ev.process.clone(),
        };
        self.summaries
            .entry(key)
            .or_insert_with(|| Summary::new(identity, ev))
    }

    /// The summaries of the interval when it is over (or `force`, at shutdown and before a
    /// reload), one per limiter and process that suppressed anything.
    pub(crate) fn take_summaries(
        &mut self,
        now_ns: u64,
        time: WallTime,
        force: bool,
    ) -> Vec<SuppressedEvent> {
        let every = self.cfg.summary_interval.duration().as_nanos() as u64;
        if !force && now_ns.saturating_sub(self.last_summary_ns) < every {
            return Vec::new();
        }
        self.last_summary_ns = now_ns;
        // Full buckets are forgotten while quiet: memory follows the processes being limited.
        let limit = self.cfg.per_process();
        self.processes.retain(|_, b| !b.is_full(limit, now_ns));
        let mut out: Vec<SuppressedEvent> = self
            .summaries
            .drain()
            .map(|((limiter, _), s)| {
                let limit = match limiter {
                    Limiter::Process => self.cfg.per_process(),
                    Limiter::Global => self.cfg.global(),
                };
                s.into_event(limiter, limit, time)
            })
            .collect();
        // Stable order: by limiter, then pid.
        let pid = |e: &SuppressedEvent| e.process.as_ref().map(|p| p.pid);
        out.sort_by_key(|e| (e.limiter, pid(e)));
        self.stats.summaries += out.len() as u64;
        out
    }
}
