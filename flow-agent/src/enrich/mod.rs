//! Enrichment stage: who a process is (exe, command line, parent, user) and the host.
pub mod clock;
pub mod process;
pub mod users;
