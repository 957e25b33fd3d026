//! Flow stage: the flow table turns kernel records into start, update and end events.
pub mod app_proto;
pub mod community_id;
pub mod dns_event;
pub mod state;
pub mod table;
pub mod tcp_detail;
pub mod tcp_live;

pub use table::{FlowTable, FlowTableConfig};
