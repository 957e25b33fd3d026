//! Flow stage: the flow tracker turns kernel socket records into start, update and end events
//! of flows (lifecycle only: who, what and how much; enrichment names them afterwards).
pub mod community_id;
pub mod state;
pub mod table;
pub mod tcp_detail;
pub mod tcp_live;
mod tracked;

pub use table::{FlowTable, FlowTableConfig};
pub use tracked::Tracked;
