//! What userspace learns about the running kernel so that the eBPF programs can read its
//! structs and tracepoint records.
pub(crate) mod btf;
pub mod mounts;
pub(crate) mod offsets;
pub(crate) mod tracefs;

pub(crate) use btf::Btf;
