//! Enrichment stage: names the tracker's flows (the process, its user, group, cgroup and
//! container, the remote's DNS name, the application protocol, the host) and makes
//! `dns_query` events ([`stage::Enricher`]).
pub(crate) mod app_proto;
pub(crate) mod cgroup;
pub mod command_line;
pub(crate) mod dns_event;
pub mod dns_names;
pub mod escape;
pub(crate) mod host;
pub(crate) mod identity;
pub(crate) mod image_hash;
pub(crate) mod networks;
pub(crate) mod process;
pub(crate) mod process_events;
pub mod procfs;
pub(crate) mod stage;
pub(crate) mod users;

pub use stage::{Enricher, EnrichmentConfig};
