//! flow-agent: host-level network flow sensor.
//!
//! Stages: `capture` (load the kernel programs, read their records) → `flows` (flow table and
//! lifecycle) → `enrich` (process, user, host) → `encode` (one encoder per format) → `sink`
//! (stdout, file, syslog, HTTP), with `filter` rules between, `config` for all of it and
//! `health` reporting on the agent itself; `service` talks to systemd and drops privileges.
pub mod capture;
pub mod clock;
pub mod config;
pub mod encode;
pub mod enrich;
pub mod event;
pub mod filter;
pub mod flows;
pub mod health;
pub mod kernel;
pub mod logger;
pub mod probe;
pub mod proto;
pub mod ratelimit;
pub mod runtime;
pub mod service;
pub mod sink;
pub mod units;
