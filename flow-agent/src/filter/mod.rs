//! Include and exclude rules on flows: a global filter and one per output.
use serde::{Deserialize, Serialize};

use crate::flows::FlowEvent;

/// `[filter]` and `[outputs.filter]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {}

impl FilterConfig {
    /// Whether the event passes this filter.
    pub fn matches(&self, _event: &FlowEvent) -> bool {
        true
    }
}
