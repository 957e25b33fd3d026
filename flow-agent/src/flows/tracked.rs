//! What the tracker hands to enrichment: an event and what naming it needs.
use flow_common::Task;

use crate::event::FlowEvent;

#[derive(Clone, Debug)]
pub struct Tracked {
    /// The event with its lifecycle fields: ids, endpoints, times, counters, TCP state and
    /// detail, attribution and thread.
    pub(crate) event: FlowEvent,
    /// The process the event names (pid 0: none known).
    pub(crate) owner: Task,
    /// The socket's cookie (0 while none was assigned): its first payload bytes' key.
    pub(crate) cookie: u64,
    /// When the flow opened (CLOCK_BOOTTIME, 0 when not seen): its remote's name is the one
    /// valid then.
    pub(crate) open_ns: u64,
}
