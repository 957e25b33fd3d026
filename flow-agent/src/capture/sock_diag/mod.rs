//! Userspace snapshot of TCP sockets with their kernel counters, through NETLINK_SOCK_DIAG.
//!
//! Two uses: periodic updates of long TCP flows (the kernel programs only report TCP counters at
//! close), and finding the TCP connections already open when the agent starts (reported as flows
//! whose start was not observed).
//!
//! Counters, as the kernel keeps them (observed on 6.18 and asserted by the tests here):
//! - `bytes_acked` counts sequence space acknowledged by the peer, so it includes the SYN on the
//!   connecting side (+1; the accepting side's SYN-ACK is not counted) and the FIN once it is
//!   acknowledged (+1);
//! - `bytes_received` counts sequence space received after the handshake: payload plus 1 for a
//!   received FIN (the peer's SYN is never counted);
//! - `bytes_sent` counts payload bytes transmitted, retransmissions included, never SYN or FIN.
//!
//! Fields the running kernel's `struct tcp_info` is too short for, or that it does not send
//! (request and TIME_WAIT sockets carry no `tcp_info`), are left at 0. A TIME_WAIT entry keeps
//! the socket's cookie but has inode and uid 0.
use std::{
    collections::{HashMap, HashSet},
    fs::{self, File},
    net::SocketAddr,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

#[cfg(test)]
mod live_tests;
mod netlink;
use netlink::Protocol;
#[cfg(test)]
mod parse_tests;
mod proc_scan;

/// Kernel TCP state numbers (`include/net/tcp_states.h`), shared with the kernel programs.
pub(crate) use flow_common::tcp_state;

/// `idiag_states` bit of one TCP state.
pub(crate) const fn state_bit(state: u8) -> u32 {
    1 << state
}

/// The states a snapshot asks for by default: every state of a connection that has a full socket
/// with counters, from SYN_SENT to the end of the close handshake. Left out: LISTEN (not a
/// flow), SYN_RECV/NEW_SYN_RECV (request sockets: no counters, no owner yet, they become
/// ESTABLISHED), TIME_WAIT (the flow has ended and the kernel side reported it at close) and
/// CLOSE (unconnected or already closed sockets).
pub(crate) const DEFAULT_STATES: u32 = state_bit(tcp_state::ESTABLISHED)
    | state_bit(tcp_state::SYN_SENT)
    | state_bit(tcp_state::FIN_WAIT1)
    | state_bit(tcp_state::FIN_WAIT2)
    | state_bit(tcp_state::CLOSE_WAIT)
    | state_bit(tcp_state::LAST_ACK)
    | state_bit(tcp_state::CLOSING);

/// Every state, LISTEN and TIME_WAIT included.
#[cfg(test)]
pub(crate) const ALL_STATES: u32 = u32::MAX;

/// One TCP socket as sock_diag reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct TcpSockInfo {
    /// The socket's family (AF_INET / AF_INET6). An IPv4-mapped IPv6 socket keeps AF_INET6 here
    /// while its addresses are reported as IPv4, as the kernel programs' records do.
    pub(crate) family: u16,
    /// IPv6 addresses carry no scope id, matching the kernel programs' tuples.
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    /// Kernel TCP state number ([`tcp_state`]).
    pub(crate) state: u8,
    /// Socket inode (matches `/proc/<pid>/fd/N -> socket:[inode]`); 0 for sockets without one.
    pub(crate) inode: u64,
    pub(crate) uid: u32,
    /// The kernel's socket cookie (`SO_COOKIE`, `bpf_get_socket_cookie`).
    pub(crate) cookie: u64,
    pub(crate) bytes_acked: u64,
    pub(crate) bytes_received: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) segs_in: u32,
    pub(crate) segs_out: u32,
    pub(crate) data_segs_in: u32,
    pub(crate) data_segs_out: u32,
    pub(crate) total_retrans: u32,
    /// Smoothed RTT in microseconds.
    pub(crate) rtt_us: u32,
}

#[derive(thiserror::Error, Debug)]
pub enum DiagError {
    #[error("socket(AF_NETLINK, NETLINK_SOCK_DIAG): {0}")]
    Socket(std::io::Error),
    #[error("setting up the sock_diag socket ({what}): {source}")]
    SocketOption {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("sendmsg of the sock_diag {family} dump request: {source}")]
    Send {
        family: &'static str,
        source: std::io::Error,
    },
    #[error("sendmsg of the sock_diag {family} dump request sent {sent} of {len} bytes")]
    ShortSend {
        family: &'static str,
        sent: usize,
        len: usize,
    },
    #[error("recv of the sock_diag {family} dump: {source}")]
    Recv {
        family: &'static str,
        source: std::io::Error,
    },
    #[error("sock_diag {family} dump: datagram larger than the {buffer}-byte receive buffer")]
    Truncated { family: &'static str, buffer: usize },
    #[error("sock_diag {family} dump ended without NLMSG_DONE")]
    UnexpectedEof { family: &'static str },
    #[error("malformed sock_diag {family} reply: {what}")]
    Malformed { family: &'static str, what: String },
    #[error("malformed sock_diag {family} reply: {source}")]
    MalformedMsg {
        family: &'static str,
        #[source]
        source: netlink::DiagMsgError,
    },
    #[error("the kernel failed the sock_diag {family} dump: {source}")]
    Kernel {
        family: &'static str,
        source: std::io::Error,
    },
    #[error("opening network namespace {path}: {source}")]
    NetnsOpen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("setns into network namespace {path}: {source}")]
    Setns {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting the helper thread for network namespace {path}: {source}")]
    Thread {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the helper thread for network namespace {path} panicked")]
    ThreadPanicked { path: PathBuf },
}

/// Parses one datagram of an inet_diag dump (as the kernel would send it for request
/// `seq`). The bytes come from the kernel, but the parser is fuzzed as if they were hostile.
pub fn parse_dump_datagram(
    buf: &[u8],
    family: u8,
    seq: u32,
) -> Result<Vec<TcpSockInfo>, DiagError> {
    let mut out = Vec::new();
    netlink::parse_datagram(buf, family, seq, &mut out)?;
    Ok(out)
}

/// All TCP sockets in [`DEFAULT_STATES`] (every state but LISTEN, TIME_WAIT, CLOSE and the
/// SYN_RECV request sockets) in the network namespace of the calling thread.
#[cfg(test)]
pub(crate) fn tcp_sockets() -> Result<Vec<TcpSockInfo>, DiagError> {
    tcp_sockets_with_states(DEFAULT_STATES)
}

/// TCP sockets whose state is in `states` (a mask of [`state_bit`]s) in the calling thread's
/// network namespace.
#[cfg(test)]
pub(crate) fn tcp_sockets_with_states(states: u32) -> Result<Vec<TcpSockInfo>, DiagError> {
    netlink::dump(Protocol::Tcp, states)
}

/// All TCP sockets in [`DEFAULT_STATES`] inside a network namespace, given a path to its ns
/// file (e.g. `/proc/<pid>/ns/net` or `/run/netns/NAME`). The dump runs on a short-lived helper
/// thread that setns()es into it, so the agent's own threads never change namespace.
pub(crate) fn tcp_sockets_in(netns_path: &Path) -> Result<Vec<TcpSockInfo>, DiagError> {
    tcp_sockets_in_with_states(netns_path, DEFAULT_STATES)
}

/// TCP sockets whose state is in `states` (a mask of [`state_bit`]s) inside the network
/// namespace at `netns_path`.
pub(crate) fn tcp_sockets_in_with_states(
    netns_path: &Path,
    states: u32,
) -> Result<Vec<TcpSockInfo>, DiagError> {
    sockets_in(netns_path, Protocol::Tcp, states)
}

/// The cookies of every UDP socket inside the network namespace at `netns_path`: a UDP flow
/// whose socket is not among them was released without the kernel's record reaching the agent.
pub(crate) fn udp_cookies_in(netns_path: &Path) -> Result<HashSet<u64>, DiagError> {
    Ok(sockets_in(netns_path, Protocol::Udp, u32::MAX)?
        .into_iter()
        .map(|s| s.cookie)
        .collect())
}

/// The `protocol` sockets in `states` inside the network namespace at `netns_path`.
fn sockets_in(
    netns_path: &Path,
    protocol: Protocol,
    states: u32,
) -> Result<Vec<TcpSockInfo>, DiagError> {
    let path = netns_path.to_path_buf();
    let ns = File::open(&path).map_err(|source| DiagError::NetnsOpen {
        path: path.clone(),
        source,
    })?;
    // Already there (typically the host namespace): no thread needed.
    if let (Ok(target), Ok(own)) = (ns.metadata(), fs::metadata("/proc/thread-self/ns/net")) {
        if (target.dev(), target.ino()) == (own.dev(), own.ino()) {
            return netlink::dump(protocol, states);
        }
    }
    let thread_path = path.clone();
    let helper = std::thread::Builder::new()
        .name("sock-diag-netns".into())
        .spawn(move || {
            // SAFETY: plain syscall on a descriptor we own. It moves only this helper thread,
            // which exits right after the dump: nothing else ever runs in the foreign namespace.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(DiagError::Setns {
                    path: thread_path,
                    source: std::io::Error::last_os_error(),
                });
            }
            // The netlink socket is created here, after setns: it dumps the namespace it was
            // created in.
            netlink::dump(protocol, states)
        })
        .map_err(|source| DiagError::Thread {
            path: path.clone(),
            source,
        })?;
    helper
        .join()
        .unwrap_or(Err(DiagError::ThreadPanicked { path }))
}

/// Every network namespace on the host: nsfs inode -> a path to open it. Scans `/proc/[pid]/ns/net`
/// in ascending pid order (the first pid wins), always includes the agent's own namespace, and
/// adds the named namespaces of /run/netns that no process is in. A /proc path goes stale when its
/// process exits; opening it then fails with [`DiagError::NetnsOpen`].
pub(crate) fn network_namespaces() -> HashMap<u64, PathBuf> {
    proc_scan::network_namespaces(Path::new("/proc"), Path::new("/run/netns"))
}

/// Socket inode -> pid of the process owning it, from `/proc/[pid]/fd` (the lowest pid wins when
/// several share the socket). Used to attribute connections opened before the agent started.
/// Bounded: stops after `proc_scan::MAX_FD_ENTRIES` descriptors; unreadable entries are skipped.
pub(crate) fn socket_owners() -> HashMap<u64, u32> {
    proc_scan::socket_owners(Path::new("/proc"), proc_scan::MAX_FD_ENTRIES)
}
