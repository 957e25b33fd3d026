//! Enrichment stage: who a process is (exe, command line, parent, user) and the host.
pub mod cgroup;
pub mod clock;
pub mod command_line;
pub mod dns_names;
pub mod escape;
pub mod host;
pub mod identity;
pub mod networks;
pub mod process;
pub mod procfs;
pub mod users;
