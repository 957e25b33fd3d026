//! Per-flow filter decisions. A flow is kept or dropped as a whole: the decision is taken on
//! the first event of the flow the filter sees (its start) and reused for its updates and its
//! end, even when fields it looked at change meanwhile (the process exits and its executable
//! can no longer be read, the process changes user). The decision is forgotten at the end.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

/// Shared by every clone of one filter (the configuration and the output that applies it).
#[derive(Clone, Debug, Default)]
pub(crate) struct Decisions(Arc<Mutex<HashMap<String, bool>>>);

impl Decisions {
    /// The decision for `flow_id`: the remembered one, else `decide()` (remembered until the
    /// flow's end event).
    pub(crate) fn get(&self, flow_id: &str, is_end: bool, decide: impl FnOnce() -> bool) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if is_end {
            return map.remove(flow_id).unwrap_or_else(decide);
        }
        if let Some(d) = map.get(flow_id) {
            return *d;
        }
        let d = decide();
        map.insert(flow_id.to_string(), d);
        d
    }

    /// Flows with a remembered decision (open flows this filter has seen).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The decisions are state, not configuration: two filters with the same rules are equal.
impl PartialEq for Decisions {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Decisions {}
