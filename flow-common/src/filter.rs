//! Global exclude rules decided in the kernel: on remote address, remote port and transport.
//! Each such rule is one bit; a flow is skipped when one bit survives the AND of the masks its
//! remote address, remote port and transport select (see flow-agent's filter::kernel).

/// The one entry of `FILTER_MASKS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelFilterMasks {
    /// Rules in force; 0 turns the kernel filter off.
    pub active: u64,
    /// Rules without an address condition (they match every address).
    pub any_addr: u64,
    /// Rules without a port condition.
    pub any_port: u64,
    /// Rules that apply to TCP, to UDP.
    pub tcp: u64,
    pub udp: u64,
}

/// Indices of the per-CPU counters of what the kernel filter skipped.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterSkip {
    /// TCP connections never tracked (counted once, at connect or passive open).
    TcpFlows = 0,
    /// UDP packets not counted (no flow is created for them).
    UdpPackets = 1,
}

pub const FILTER_SKIP_KINDS: u32 = 2;

/// Entries of the address tries (per family); more rules' networks than this are left to
/// userspace.
pub const FILTER_MAX_NETWORKS: u32 = 1024;

#[cfg(feature = "user")]
unsafe impl aya::Pod for KernelFilterMasks {}
