//! Maps shared by the programs. Sizes here are defaults: userspace sets them from its configuration
//! before loading.
use aya_ebpf::{
    macros::map,
    maps::{LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
};
use flow_common::{ProcessInfo, Task, UdpCounters, UdpFlowKey, LOSS_KINDS};

/// Every record for userspace, in order.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Per-CPU loss counters, indexed by `flow_common::Loss`.
#[map]
pub static LOSSES: PerCpuArray<u64> = PerCpuArray::with_max_entries(LOSS_KINDS, 0);

#[map]
pub static PROCESSES: LruHashMap<u32, ProcessInfo> = LruHashMap::with_max_entries(65536, 0);

/// Owner of a TCP socket, keyed by the socket's kernel address.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TcpSockState {
    pub owner: Task,
    pub open_ns: u64,
    pub role: u8,
    pub owner_kind: u8,
    /// `TCP_INFO_*` bits learnt before the close (`TCP_INFO_CLOSED_ON_EXIT`).
    pub info: u16,
    pub states_seen: u32,
}

#[map]
pub static TCP_SOCKS: LruHashMap<u64, TcpSockState> = LruHashMap::with_max_entries(131072, 0);

/// One call of the TCP state tracepoint: (socket, old state, new state).
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TcpCall {
    pub sk: u64,
    pub old: u8,
    pub new: u8,
}

/// Per CPU: whether the primary TCP state program is running, and on which call.
#[repr(C)]
pub struct TcpGuard {
    pub depth: u32,
    pub call: TcpCall,
}

#[map]
pub static TCP_GUARD: PerCpuArray<TcpGuard> = PerCpuArray::with_max_entries(1, 0);

/// Listening sockets by (network namespace, port): passive flows are attributed to the listener
/// until an accept names the process that took them.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ListenerKey {
    pub netns: u32,
    pub port: u16,
    pub family: u16,
}

#[map]
pub static LISTENERS: LruHashMap<ListenerKey, Task> = LruHashMap::with_max_entries(16384, 0);

/// Last process that acted on a UDP socket in its own syscall, keyed by socket cookie.
#[map]
pub static UDP_OWNERS: LruHashMap<u64, Task> = LruHashMap::with_max_entries(65536, 0);

/// Counters of UDP flows (socket, remote endpoint), per CPU.
#[map]
pub static UDP_FLOWS: LruPerCpuHashMap<UdpFlowKey, UdpCounters> =
    LruPerCpuHashMap::with_max_entries(65536, 0);
