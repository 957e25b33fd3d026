//! What userspace learns about the running kernel so that the eBPF programs can read its
//! structs and tracepoint records.
pub mod btf;
pub mod mounts;
pub mod offsets;
pub mod tracefs;

pub use btf::Btf;
