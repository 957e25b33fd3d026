//! flow-agent: host-level network flow sensor.
//!
//! Stages: `capture` (load the kernel programs, read their records) → `flows` (flow table and
//! lifecycle) → `enrich` (process, user, host) → output (JSON lines; more sinks to come).
pub mod capture;
pub mod enrich;
pub mod flows;
pub mod kernel;
pub mod logger;
pub mod probe;
pub mod runtime;
