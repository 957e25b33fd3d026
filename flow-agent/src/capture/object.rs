//! The kernel programs, built by build.rs and embedded so the agent ships as one file.

pub(crate) static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flow-agent-ebpf.o"));

/// One minimal program of every kind, for `flow-agent probe`.
pub(crate) static PROBE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flow-agent-probe.o"));
