//! Records sent from the kernel through the ring buffer, and the keys and values of shared maps.

/// Length of `task_struct.comm`.
pub const COMM_LEN: usize = 16;
/// Bytes of one path component slot (a longer name is cut and the path marked truncated).
pub const PATH_SLOT_LEN: usize = 128;
/// Most path components the kernel walks before it marks the path as truncated.
pub const PATH_MAX_DEPTH: usize = 32;
/// Bytes reserved for an executable's path: one fixed slot per component, leaf first. Fixed
/// slots keep the verifier's state count flat (a running offset makes every path unique).
pub const PATH_BUF_LEN: usize = PATH_SLOT_LEN * PATH_MAX_DEPTH;
/// Bytes of the command line captured at exec.
pub const ARGS_BUF_LEN: usize = 4096;

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// TCP states as the kernel numbers them (include/net/tcp_states.h).
pub mod tcp_state {
    pub const ESTABLISHED: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECV: u8 = 3;
    pub const FIN_WAIT1: u8 = 4;
    pub const FIN_WAIT2: u8 = 5;
    pub const TIME_WAIT: u8 = 6;
    pub const CLOSE: u8 = 7;
    pub const CLOSE_WAIT: u8 = 8;
    pub const LAST_ACK: u8 = 9;
    pub const LISTEN: u8 = 10;
    pub const CLOSING: u8 = 11;
    pub const NEW_SYN_RECV: u8 = 12;
}

/// What a ring buffer record is; the first field of every record.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    Exec = 1,
    Fork = 2,
    Exit = 3,
    Creds = 4,
    TcpOpen = 10,
    TcpAccept = 11,
    TcpClose = 12,
    UdpOpen = 20,
    UdpRelease = 21,
    Dns = 30,
    Payload = 31,
}

impl RecordKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Exec,
            2 => Self::Fork,
            3 => Self::Exit,
            4 => Self::Creds,
            10 => Self::TcpOpen,
            11 => Self::TcpAccept,
            12 => Self::TcpClose,
            20 => Self::UdpOpen,
            21 => Self::UdpRelease,
            30 => Self::Dns,
            31 => Self::Payload,
            _ => return None,
        })
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RecordHeader {
    pub kind: u32,
    pub _pad: u32,
    /// CLOCK_BOOTTIME nanoseconds when the kernel wrote the record.
    pub ts_ns: u64,
}

/// The process acting on a socket, captured in that process's own syscall context.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Task {
    /// The process's start time (task_struct.start_boottime of its thread-group leader), so that
    /// a reused pid never mixes two processes.
    pub start_ns: u64,
    pub cgroup_id: u64,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Inode of the process's network namespace (0 when unknown).
    pub netns: u32,
    pub comm: [u8; COMM_LEN],
}

/// Local and remote endpoint of a socket. IPv4 addresses use the first four bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub family: u16,
    pub local_port: u16,
    pub remote_port: u16,
    pub protocol: u8,
    pub _pad: u8,
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
}

/// How the flow's socket came to be.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Opened before the agent started watching: its start was not observed.
    Unknown = 0,
    /// This host initiated it (connect).
    Active = 1,
    /// A peer initiated it (accept).
    Passive = 2,
}

/// Who the owner recorded for a TCP socket is.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerKind {
    None = 0,
    /// The process that called connect().
    Connector = 1,
    /// The process that owns the listening socket (no accept seen yet).
    Listener = 2,
    /// The process that accepted the connection.
    Acceptor = 3,
}

/// TCP totals read from `tcp_sock` at a state change: no per-packet program needed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCounters {
    pub bytes_received: u64,
    pub bytes_acked: u64,
    pub bytes_sent: u64,
    pub segs_in: u32,
    pub segs_out: u32,
    pub data_segs_in: u32,
    pub data_segs_out: u32,
    pub total_retrans: u32,
    /// Smoothed RTT in microseconds.
    pub srtt_us: u32,
}

/// TCP flow opened (ESTABLISHED), accepted, or closed.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TcpRecord {
    pub header: RecordHeader,
    /// Kernel address of the socket: an opaque flow id while the socket lives.
    pub sock: u64,
    /// When the flow opened (connect() for active flows, the handshake's end for passive ones).
    pub open_ns: u64,
    pub owner: Task,
    pub tuple: Tuple,
    pub counters: TcpCounters,
    pub netns: u32,
    /// `sk_err` at close: ECONNREFUSED, ETIMEDOUT, ECONNRESET... or 0.
    pub sk_err: i32,
    pub old_state: u8,
    pub new_state: u8,
    pub role: u8,
    pub owner_kind: u8,
    /// Bit per TCP state (1 << state) the socket passed through while the agent watched.
    pub states_seen: u32,
    /// `TCP_INFO_*` bits read at the record's state change.
    pub info: u32,
    pub _pad: u32,
    /// The socket's cookie (`sock_common.skc_cookie`), 0 while none was assigned: the key of
    /// the per-packet counters.
    pub cookie: u64,
    /// Close records: the socket's per-packet counters, taken from `TCP_PKTS` as the socket
    /// closed (`TCP_DETAIL_PRESENT` set when there were any). Open records leave it empty.
    pub detail: TcpDetail,
}

/// The peer's FIN was received (SOCK_DONE): `bytes_received` counts it as one byte.
pub const TCP_INFO_FIN_RECEIVED: u32 = 1;
/// Everything written, FIN included if one was sent, is acknowledged (snd_una == write_seq).
pub const TCP_INFO_ALL_ACKED: u32 = 2;
/// The owning process closed the socket while exiting (its descriptors closed by the kernel).
pub const TCP_INFO_CLOSED_ON_EXIT: u32 = 4;

/// Zeek history event kinds one direction has recorded (`TcpDirDetail::hist_seen`): Zeek adds
/// these letters once per direction (SYN, FIN and RST again when their sequence number changes).
pub mod hist {
    pub const SYN: u8 = 1;
    pub const FIN: u8 = 2;
    pub const RST: u8 = 4;
    pub const DATA: u8 = 8;
    pub const ACK: u8 = 16;
    pub const FIN_RST: u8 = 32;
    pub const MULTI_FLAG: u8 = 64;
}

/// History letters kept per direction; later ones are dropped (`TcpDirDetail::hist_len` keeps
/// counting).
pub const TCP_HIST_SLOTS: usize = 12;

/// One history letter and its place in the connection's sequence of letters (an order number
/// shared by both directions).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpHistEntry {
    pub order: u8,
    /// Upper-case ASCII letter; userspace lowers it for the responder.
    pub letter: u8,
}

/// Per-packet counters of one direction of a TCP socket (cgroup_skb programs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpDirDetail {
    /// IP-level bytes (IP header + TCP header + payload) of every packet; a GSO/GRO
    /// super-packet counts as the segments it stands for, each with its own headers.
    pub ip_bytes: u64,
    pub pkts: u64,
    /// CLOCK_BOOTTIME of the first packet carrying payload; 0 when none did.
    pub first_payload_ns: u64,
    /// Zeek's sequence tracking: the direction's start sequence, one past the highest
    /// segment seen, and the last SYN, FIN (end of its data) and RST sequence numbers.
    pub start_seq: u32,
    pub last_seq: u32,
    pub last_syn: u32,
    pub last_fin: u32,
    pub last_rst: u32,
    /// Packets with payload that did not advance the sequence (Zeek's retransmissions).
    pub rxmit: u32,
    /// Zero-window advertisements (Zeek's rules: not with a RST, not after the peer's FIN).
    pub zero_win: u32,
    /// OR of the TCP flags byte of every packet (FIN 0x01 ... CWR 0x80).
    pub flags: u8,
    /// `hist::*` kinds recorded.
    pub hist_seen: u8,
    /// Letters recorded (may exceed `TCP_HIST_SLOTS`: those past it were dropped).
    pub hist_len: u8,
    /// 1 once the first packet initialised the sequence tracking.
    pub init: u8,
    pub hist: [TcpHistEntry; TCP_HIST_SLOTS],
}

/// Per-packet counters of a TCP socket, keyed by socket cookie in `TCP_PKTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpDetail {
    /// Packets this host received.
    pub rx: TcpDirDetail,
    /// Packets this host sent.
    pub tx: TcpDirDetail,
    /// Next history order number.
    pub hist_next: u8,
    /// `TCP_DETAIL_*` bits.
    pub flags: u8,
    /// Set at a passive IPv6 open whose SYN-ACK the cgroup egress hook may have missed (it
    /// does on 5.10 and 6.1): that SYN-ACK's TCP header length and how many were sent, from
    /// the options the new socket negotiated. 0 when unknown.
    pub synack_hdr: u8,
    pub synack_sent: u8,
    pub _pad: [u8; 4],
}

/// The record carries the socket's per-packet counters.
pub const TCP_DETAIL_PRESENT: u8 = 1;
/// The counters did not start with the connection's first packet (the socket predates the
/// agent, or its entry was evicted and recreated): totals are partial.
pub const TCP_DETAIL_PARTIAL: u8 = 2;
/// A passive socket's counters were seeded with its handshake, seen on the listener.
pub const TCP_DETAIL_HANDSHAKE: u8 = 4;
/// The handshake's SYN (IPv6) had no TCP options but MSS, window scale, SACK-permitted,
/// timestamps, NOP and EOL: the SYN-ACK answering it carries no others either.
pub const TCP_DETAIL_SYN_PLAIN: u8 = 8;
/// The kernel saw the socket open and carry segments, but its counters are incomplete (its
/// `TCP_PKTS` or handshake entry was evicted, or it opened while the per-packet programs were
/// being attached). Userspace counts it in `tcp_detail_lost` only in the first case.
pub const TCP_DETAIL_LOST: u8 = 16;

/// A handshake in progress on a listening socket: the connection's endpoints and the
/// initiator's initial sequence number (which tells apart equal tuples of two namespaces).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpHandshakeKey {
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub local_port: u16,
    pub remote_port: u16,
    pub family: u16,
    pub _pad: u16,
    pub isn: u32,
    pub _pad2: u32,
}

/// A process accepted a connection the kernel had already reported open.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AcceptRecord {
    pub header: RecordHeader,
    pub sock: u64,
    pub owner: Task,
}

/// A process exec'd: its path and command line, captured in the kernel.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecRecord {
    pub header: RecordHeader,
    pub task: Task,
    /// Slots used in `path` (an empty slot is a mount crossing: skip it).
    pub path_len: u32,
    pub path_flags: u32,
    /// Bytes used in `args` (NUL-separated argv).
    pub args_len: u32,
    /// Full length of the command line, which may exceed what `args` holds.
    pub args_total: u32,
    /// Path components leaf first, one NUL-terminated name per `PATH_SLOT_LEN` slot.
    pub path: [u8; PATH_BUF_LEN],
    pub args: [u8; ARGS_BUF_LEN],
}

pub const PATH_FLAG_TRUNCATED: u32 = 1;
/// The executable has no links left (deleted or replaced).
pub const PATH_FLAG_DELETED: u32 = 2;
/// The path could not be read.
pub const PATH_FLAG_UNREADABLE: u32 = 4;

/// A new process (not a thread) was forked.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkRecord {
    pub header: RecordHeader,
    pub child_start_ns: u64,
    pub parent_start_ns: u64,
    pub child_pid: u32,
    pub parent_pid: u32,
}

/// A process's credentials: written at exec and after every successful call of the setuid
/// and setgid families, so a flow carries the identity its process had when it acted.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CredsRecord {
    pub header: RecordHeader,
    pub start_ns: u64,
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// Login uid (`task_struct.loginuid`, audit); `u32::MAX` when unset or absent.
    pub auid: u32,
    /// Audit session id; `u32::MAX` when unset or absent.
    pub session_id: u32,
    pub _pad: u32,
}

/// A process (its thread-group leader) exited.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitRecord {
    pub header: RecordHeader,
    pub start_ns: u64,
    pub pid: u32,
    pub exit_code: u32,
}

/// Value of the kernel's process table (keyed by tgid): what helpers cannot give the cgroup
/// programs. Filled at fork and exec, and by userspace at start-up for processes already running.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub start_ns: u64,
    pub ppid: u32,
    /// Inode of the process's network namespace.
    pub netns: u32,
}

/// Key of a UDP flow: one socket talking to one remote endpoint.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UdpFlowKey {
    pub cookie: u64,
    pub remote_addr: [u8; 16],
    pub remote_port: u16,
    pub family: u16,
    pub _pad: u32,
}

/// Counters of a UDP flow, added to per packet by the cgroup_skb programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpCounters {
    pub first_ns: u64,
    pub last_ns: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub ip_bytes_in: u64,
    pub ip_bytes_out: u64,
    pub pkts_in: u64,
    pub pkts_out: u64,
}

/// First packet of a UDP flow.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UdpOpenRecord {
    pub header: RecordHeader,
    pub key: UdpFlowKey,
    pub owner: Task,
    pub tuple: Tuple,
    pub netns: u32,
    /// 1 when the first packet was sent by this host.
    pub outbound_first: u32,
}

/// Bytes of a DNS message kept per packet: classic DNS fits; longer EDNS answers are cut and
/// parsed as far as they go.
pub const DNS_CAPTURE_LEN: usize = 1024;

/// A DNS message over UDP port 53: a query this host sent or an answer it received.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DnsRecord {
    pub header: RecordHeader,
    /// Socket cookie of the UDP socket, to join the flow and its process.
    pub cookie: u64,
    pub tuple: Tuple,
    /// 1 for a packet this host sent (a query), 0 for one it received (an answer).
    pub egress: u32,
    /// Bytes of `data` filled.
    pub len: u32,
    pub data: [u8; DNS_CAPTURE_LEN],
}

/// Bytes of the first payload segment of each direction of a TCP connection kept: a TLS
/// ClientHello, an HTTP request head or a banner usually fits; the rest of a longer first
/// segment is not copied (parsers read what there is).
pub const PAYLOAD_CAPTURE_LEN: usize = 2048;

/// The first payload bytes one direction of a TCP connection carried, from the first packet
/// with payload that passed this host's stack in that direction.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PayloadRecord {
    pub header: RecordHeader,
    /// Socket cookie: the TCP state records carry the same.
    pub cookie: u64,
    /// 1 for what this host sent, 0 for what it received.
    pub egress: u32,
    /// Bytes of `data` filled.
    pub len: u32,
    /// Payload bytes of the packet (more than `len` when the segment was longer).
    pub payload_len: u32,
    /// The connection's remote port (DNS over TCP is recognised by port 53).
    pub remote_port: u16,
    pub local_port: u16,
    pub data: [u8; PAYLOAD_CAPTURE_LEN],
}

/// A UDP socket was released: all its flows end.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UdpReleaseRecord {
    pub header: RecordHeader,
    pub cookie: u64,
}

/// Indices of the per-CPU loss counters.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// A flow record (TCP, UDP, first payload) did not fit in the flow ring.
    RingBufferFull = 0,
    /// The TCP socket table was full (an LRU entry was pushed out or the insert failed).
    TcpTableFull = 1,
    /// The UDP flow table insert failed.
    UdpTableFull = 2,
    /// A kernel read (bpf_probe_read_kernel) failed.
    KernelReadFailed = 3,
    /// The socket owner table insert failed.
    OwnerTableFull = 4,
    /// Not counted in the kernel any more (its slot is kept so the others keep their index):
    /// close records flag incomplete counters with `TCP_DETAIL_LOST` and userspace counts
    /// those of sockets opened after the per-packet programs were attached.
    TcpDetailLost = 5,
    /// An exec, fork or exit record did not fit in the process ring.
    ProcessRingFull = 6,
    /// A DNS message did not fit in the DNS ring.
    DnsRingFull = 7,
}

pub const LOSS_KINDS: u32 = 8;

#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for UdpFlowKey {}
    unsafe impl aya::Pod for UdpCounters {}
    unsafe impl aya::Pod for Task {}
    unsafe impl aya::Pod for ProcessInfo {}
    unsafe impl aya::Pod for TcpDetail {}
    unsafe impl aya::Pod for TcpHandshakeKey {}
}
