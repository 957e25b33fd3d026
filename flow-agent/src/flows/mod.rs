//! Flow stage: the flow tracker turns kernel socket records into start, update and end events
//! of flows (lifecycle only: who, what and how much; enrichment names them afterwards).
pub(crate) mod community_id;
pub(crate) mod state;
pub mod table;
pub(crate) mod tcp_detail;
pub(crate) mod tcp_live;
mod tracked;
mod udp_live;

pub use table::{FlowTable, FlowTableConfig};
pub(crate) use tracked::Tracked;
