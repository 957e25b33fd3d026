//! flow-agent's kernel programs: one module per hook family.
//!
//! Baseline hooks only (tracepoints, raw tracepoints, cgroup v2 programs): no kprobe, fentry or
//! LSM, so the set loads on locked-down kernels from 5.10 on.
#![no_std]
#![no_main]

mod creds;
mod dns;
mod emit;
mod filter;
mod kernel;
mod maps;
mod payload;
mod process;
mod rt;
mod skb;
mod synack;
mod tcp_accept;
mod tcp_skb;
mod tcp_state;
mod udp;
