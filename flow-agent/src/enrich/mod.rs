//! Enrichment stage: names the tracker's flows (the process, its user, group, cgroup and
//! container, the remote's DNS name, the application protocol, the host) and makes
//! `dns_query` events ([`stage::Enricher`]).
pub mod app_proto;
pub mod cgroup;
pub mod command_line;
pub mod dns_event;
pub mod dns_names;
pub mod escape;
pub mod host;
pub mod identity;
pub mod networks;
pub mod process;
pub mod procfs;
pub mod stage;
pub mod users;

pub use stage::{Enricher, EnrichmentConfig};
