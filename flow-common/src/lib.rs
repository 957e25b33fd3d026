//! Wire types shared by the eBPF programs and the userspace agent.
//!
//! Everything here is `#[repr(C)]`, fixed-size and free of pointers that userspace would follow:
//! these are the bytes that cross the ring buffer and the maps. Field order keeps every field
//! naturally aligned so that both sides agree on the layout without packing.
#![no_std]

pub mod filter;
pub mod offsets;
pub mod records;

pub use filter::{FilterSkip, KernelFilterMasks, FILTER_MAX_NETWORKS, FILTER_SKIP_KINDS};
pub use offsets::{KernelOffsets, ProgramConfig, SetStateLayout};
pub use records::*;
