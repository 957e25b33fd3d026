//! Maps shared by the programs. Sizes here are defaults: userspace sets them from its configuration
//! before loading.
use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
};
use flow_common::{
    DnsRecord, ExecRecord, PayloadRecord, ProcessInfo, Task, TcpDetail, TcpHandshakeKey,
    UdpCounters, UdpFlowKey, LOSS_KINDS,
};

/// Flow records for userspace (TCP, UDP, first payloads), in order.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Exec, fork and exit records: their own ring, so an exec flood cannot push flows out.
#[map]
pub static PROCESS_EVENTS: RingBuf = RingBuf::with_byte_size(2 * 1024 * 1024, 0);

/// DNS messages: their own ring, for the same reason.
#[map]
pub static DNS_EVENTS: RingBuf = RingBuf::with_byte_size(1024 * 1024, 0);

/// An exec record being filled: it goes to the ring only as long as its command line.
/// The sched tracepoints do not nest on one CPU, so one slot per CPU is enough.
#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecRecord> = PerCpuArray::with_max_entries(1, 0);

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

/// Per CPU: the last call the primary TCP state program finished.
#[repr(C)]
pub struct TcpGuard {
    pub done: TcpCall,
}

#[map]
pub static TCP_GUARD: PerCpuArray<TcpGuard> = PerCpuArray::with_max_entries(1, 0);

/// Sockets whose close was handled, until their address starts a new socket: a second run of
/// the handlers for the same close (see tcp_state.rs) finds it here and does nothing.
#[map]
pub static TCP_CLOSED: LruHashMap<u64, u8> = LruHashMap::with_max_entries(4096, 0);

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

/// Per-packet counters of TCP sockets, keyed by socket cookie (cgroup_skb cannot name the
/// socket any other way). The close record takes and deletes a socket's entry; the LRU only
/// pushes out entries whose close was never seen, and a socket that loses its entry earlier
/// is counted in `Loss::TcpDetailLost` at its close.
#[map]
pub static TCP_PKTS: LruHashMap<u64, TcpDetail> = LruHashMap::with_max_entries(65536, 0);

/// Packets of a socket after its close record (the RST of an abort is sent after the socket
/// entered CLOSE), by cookie; userspace reads and deletes them when it handles that close.
#[map]
pub static TCP_LATE: LruHashMap<u64, TcpDetail> = LruHashMap::with_max_entries(4096, 0);

/// Handshakes on listening sockets (SYN, SYN-ACK, ACK pass through the listener, before the
/// connection's own socket exists); the new socket's first packet takes its entry over.
#[map]
pub static TCP_HANDSHAKES: LruHashMap<TcpHandshakeKey, TcpDetail> =
    LruHashMap::with_max_entries(16384, 0);

/// An all-zero `TcpDetail` to create entries from: the value is too large for the stack of the
/// functions that insert it. Never written.
#[map]
pub static TCP_DETAIL_ZERO: Array<TcpDetail> = Array::with_max_entries(1, 0);

/// What one TCP packet carries, from this host's point of view (tcp_skb.rs). Parsed into this
/// per-CPU slot rather than onto the stack, which the callers' frames already use.
#[repr(C)]
pub struct Segment {
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub local_port: u16,
    pub remote_port: u16,
    pub family: u16,
    pub window: u16,
    pub seq: u32,
    pub ack: u32,
    /// Payload bytes (of all segments of a super-packet).
    pub payload: u32,
    /// Offset of the payload from the IP header (where the program's packet data starts).
    pub payload_offset: u32,
    /// Segments on the wire: a GSO/GRO super-packet stands for `gso_segs` packets.
    pub segs: u32,
    pub ip_bytes: u64,
    pub flags: u8,
    /// Offset of the TCP header.
    pub tcp_offset: u32,
    /// A SYN's TCP options (handshakes at listeners only; at most 40 bytes, the rest is room
    /// for the verifier's bound on the copy) and their length.
    pub opts: [u8; 64],
    pub opts_len: u32,
}

/// Scratch for the packet being handled, one slot per nesting level: a softirq can interrupt a
/// cgroup_skb program sending in process context and run the programs for another packet on
/// the same CPU (there is no recursion guard for these programs). Deeper nesting does not occur.
#[map]
pub static TCP_SEGMENT: PerCpuArray<Segment> = PerCpuArray::with_max_entries(SKB_NESTING, 0);

pub const SKB_NESTING: u32 = 2;

/// Scratch for a payload record being filled, one slot per nesting level (as `TCP_SEGMENT`):
/// the record is written to the ring buffer only as long as the bytes it carries.
#[map]
pub static PAYLOAD_SCRATCH: PerCpuArray<PayloadRecord> =
    PerCpuArray::with_max_entries(SKB_NESTING, 0);

/// Scratch for a DNS record being filled, one slot per nesting level (as `TCP_SEGMENT`): the
/// record goes to the ring only as long as the message it carries.
#[map]
pub static DNS_SCRATCH: PerCpuArray<DnsRecord> = PerCpuArray::with_max_entries(SKB_NESTING, 0);

/// Per CPU: how many DNS captures are running (the next free `DNS_SCRATCH` slot).
#[map]
pub static DNS_DEPTH: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// Per CPU: how many TCP packet programs are running (the next free `TCP_SEGMENT` slot).
#[map]
pub static TCP_SKB_DEPTH: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);
