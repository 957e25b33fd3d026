//! flow-agent: host-level network flow sensor.
//!
//! Stages: `capture` (load the kernel programs, read their records) → `flows` (flow table and
//! lifecycle) → `enrich` (process, user, host) → `encode` (one encoder per format) → `sink`
//! (stdout, file, syslog, HTTP), with `filter` rules between, `config` for all of it and
//! `health` reporting on the agent itself; `service` talks to systemd and drops privileges.
//! `event` is the typed event model the stages after capture share; `clock`, `units`, `kernel`
//! and `proto` are leaf utilities. A module imports only from its own or an earlier stage, the
//! model and the leaves; items are `pub(crate)` unless the binary, the benchmark or the fuzz
//! targets use them.
pub mod capture;
pub(crate) mod clock;
pub mod config;
pub mod encode;
pub mod enrich;
pub mod event;
pub(crate) mod filter;
pub mod flows;
pub(crate) mod health;
pub mod kernel;
pub mod logger;
pub mod probe;
pub mod proto;
pub(crate) mod ratelimit;
pub mod runtime;
pub(crate) mod service;
pub mod sink;
pub mod units;
