//! Include and exclude rules on flows: a global filter (`[filter]`) and one per output
//! (`[outputs.filter]`). A flow passes when it matches any include rule (or there are none)
//! and no exclude rule; docs/filters.md has the details.
use serde::{Deserialize, Serialize};

use crate::event::{Event, FlowAction, FlowEvent};

mod decisions;
pub(crate) mod glob;
pub(crate) mod kernel;
pub(crate) mod rule;
pub(crate) mod values;

pub(crate) use decisions::Decisions;
pub(crate) use rule::{FlowView, Rule};

/// `[filter]` and `[outputs.filter]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FilterConfig {
    /// When not empty, only flows matching one of these rules pass.
    pub(crate) include: Vec<Rule>,
    /// Flows matching one of these rules never pass.
    pub(crate) exclude: Vec<Rule>,
    #[serde(skip)]
    decisions: Decisions,
}

impl FilterConfig {
    /// Whether this filter lets everything through.
    pub(crate) fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Whether the event passes this filter. Every event of a flow gets the decision taken on
    /// the first of them this filter saw (see [`Decisions`]); a DNS answer shares its flow's.
    /// Filters choose flows: stats and rate-limit summaries always pass.
    pub(crate) fn matches(&self, event: &Event) -> bool {
        if self.is_empty() {
            return true;
        }
        match event {
            Event::Flow(ev) => self.matches_flow(ev),
            Event::Dns(ev) => {
                let decide = || self.decide_view(&FlowView::of_dns(ev));
                match &ev.flow {
                    Some(ids) => self.decisions.get(&ids.flow_id, false, decide),
                    None => decide(),
                }
            }
            Event::Process(ev) => self.decide_process(&FlowView::of_process(&ev.process)),
            Event::Stats(_) | Event::RateLimited(_) => true,
        }
    }

    /// A process event is judged by the process-only rules: it passes when there is no such
    /// include rule or it matches one, and it matches no such exclude rule. Rules with an
    /// endpoint, transport or direction condition choose flows, not processes.
    fn decide_process(&self, view: &FlowView) -> bool {
        let mut include = self
            .include
            .iter()
            .filter(|r| r.is_process_only())
            .peekable();
        let included = include.peek().is_none() || include.any(|r| r.matches(view));
        included
            && !self
                .exclude
                .iter()
                .filter(|r| r.is_process_only())
                .any(|r| r.matches(view))
    }

    /// [`Self::matches`] for a flow event.
    pub(crate) fn matches_flow(&self, ev: &FlowEvent) -> bool {
        if self.is_empty() {
            return true;
        }
        self.decisions
            .get(&ev.ids.flow_id, ev.action == FlowAction::End, || {
                self.decide(ev)
            })
    }

    /// The rules' verdict on one flow event, without the per-flow memory.
    pub(crate) fn decide(&self, event: &FlowEvent) -> bool {
        self.decide_view(&FlowView::of_flow(event))
    }

    fn decide_view(&self, view: &FlowView) -> bool {
        (self.include.is_empty() || self.include.iter().any(|r| r.matches(view)))
            && !self.exclude.iter().any(|r| r.matches(view))
    }

    /// Open flows whose decision this filter remembers.
    #[cfg(test)]
    pub(crate) fn remembered_flows(&self) -> usize {
        self.decisions.len()
    }
}

#[cfg(test)]
mod tests;
