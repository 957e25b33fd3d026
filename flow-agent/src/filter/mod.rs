//! Include and exclude rules on flows: a global filter (`[filter]`) and one per output
//! (`[outputs.filter]`). A flow passes when it matches any include rule (or there are none)
//! and no exclude rule; docs/filters.md has the details.
use serde::{Deserialize, Serialize};

use crate::flows::FlowEvent;

mod decisions;
pub mod glob;
pub mod kernel;
pub mod rule;
pub mod values;

pub use decisions::Decisions;
pub use rule::{FlowView, Rule};

/// `[filter]` and `[outputs.filter]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// When not empty, only flows matching one of these rules pass.
    pub include: Vec<Rule>,
    /// Flows matching one of these rules never pass.
    pub exclude: Vec<Rule>,
    #[serde(skip)]
    decisions: Decisions,
}

impl FilterConfig {
    pub fn new(include: Vec<Rule>, exclude: Vec<Rule>) -> Self {
        Self {
            include,
            exclude,
            decisions: Decisions::default(),
        }
    }

    /// Whether this filter lets everything through.
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Whether the event passes this filter. Every event of a flow gets the decision taken on
    /// the first of them this filter saw (see [`Decisions`]).
    pub fn matches(&self, event: &FlowEvent) -> bool {
        if self.is_empty() {
            return true;
        }
        self.decisions
            .get(&event.flow_id, event.event_action == "end", || {
                self.decide(event)
            })
    }

    /// The rules' verdict on one event, without the per-flow memory.
    pub fn decide(&self, event: &FlowEvent) -> bool {
        let view = FlowView::new(event);
        (self.include.is_empty() || self.include.iter().any(|r| r.matches(&view)))
            && !self.exclude.iter().any(|r| r.matches(&view))
    }

    /// Open flows whose decision this filter remembers.
    pub fn remembered_flows(&self) -> usize {
        self.decisions.len()
    }
}

#[cfg(test)]
mod tests;
