//! NETLINK_SOCK_DIAG plumbing: the inet_diag dump request, the receive loop and the parsers.
//! Layouts are the uapi ones (linux/netlink.h, linux/inet_diag.h, linux/tcp.h), host byte order
//! except the ports and addresses; every read is bounds-checked.
use std::{
    io,
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::atomic::{AtomicU32, Ordering},
};

use super::{DiagError, TcpSockInfo};

const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// struct inet_diag_req_v2.
const REQ_V2_LEN: usize = 56;
/// struct inet_diag_msg.
pub(super) const DIAG_MSG_LEN: usize = 72;
const RTA_HDRLEN: usize = 4;
/// Attribute types carry the nested/byte-order flags in their top bits.
const NLA_TYPE_MASK: u16 = 0x3fff;
const INET_DIAG_INFO: u16 = 2;
/// The kernel sizes dump datagrams to at most 32 KiB; twice that leaves room to spare, and a
/// larger one is still caught by MSG_TRUNC.
const RECV_BUFFER: usize = 64 << 10;
/// A dump never waits on the network; this only keeps a wedged kernel from hanging the caller.
const RECV_TIMEOUT_SECS: libc::time_t = 5;

/// Byte offsets in struct tcp_info. The struct grew over kernel versions, so a field is read
/// only when the attribute is long enough to hold it.
pub(super) mod tcpi {
    pub(crate) const RTT: usize = 68;
    pub(crate) const TOTAL_RETRANS: usize = 100;
    pub(crate) const BYTES_ACKED: usize = 120;
    pub(crate) const BYTES_RECEIVED: usize = 128;
    pub(crate) const SEGS_OUT: usize = 136;
    pub(crate) const SEGS_IN: usize = 140;
    pub(crate) const DATA_SEGS_IN: usize = 152;
    pub(crate) const DATA_SEGS_OUT: usize = 156;
    pub(crate) const BYTES_SENT: usize = 200;
}

static SEQ: AtomicU32 = AtomicU32::new(1);

pub(super) fn family_name(family: u8) -> &'static str {
    match i32::from(family) {
        libc::AF_INET => "AF_INET",
        libc::AF_INET6 => "AF_INET6",
        _ => "unknown family",
    }
}

/// Dumps the `protocol` (TCP or UDP) sockets in `states` of both families, in the calling
/// thread's namespace. UDP sockets carry no `tcp_info`: their counters stay zero.
pub(super) fn dump(protocol: Protocol, states: u32) -> Result<Vec<TcpSockInfo>, DiagError> {
    let fd = open()?;
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut out = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        send(&fd, &request(family, protocol, states, seq), family)?;
        loop {
            let n = recv(&fd, &mut buf, family)?;
            if n == 0 {
                return Err(DiagError::UnexpectedEof {
                    family: family_name(family),
                });
            }
            if parse_datagram(&buf[..n], family, seq, &mut out)? == Progress::Done {
                break;
            }
        }
    }
    Ok(out)
}

fn open() -> Result<OwnedFd, DiagError> {
    // SAFETY: plain syscall; the descriptor is owned right below.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if raw < 0 {
        return Err(DiagError::Socket(io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let timeout = libc::timeval {
        tv_sec: RECV_TIMEOUT_SECS,
        tv_usec: 0,
    };
    // SAFETY: the option value points to a live timeval of the length given.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(DiagError::SocketOption {
            what: "SO_RCVTIMEO",
            source: io::Error::last_os_error(),
        });
    }
    Ok(fd)
}

/// The transport protocol of a dump.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Protocol {
    Tcp,
    Udp,
}

/// nlmsghdr + inet_diag_req_v2 asking for a dump of `family` `protocol` sockets in `states`,
/// with INET_DIAG_INFO (struct tcp_info, for TCP). The socket id stays zero: dumps ignore it.
pub(super) fn request(
    family: u8,
    protocol: Protocol,
    states: u32,
    seq: u32,
) -> [u8; NLMSG_HDRLEN + REQ_V2_LEN] {
    let mut m = [0u8; NLMSG_HDRLEN + REQ_V2_LEN];
    m[0..4].copy_from_slice(&((NLMSG_HDRLEN + REQ_V2_LEN) as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    m[6..8].copy_from_slice(&flags.to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel fills in our port id.
    let r = &mut m[NLMSG_HDRLEN..];
    r[0] = family;
    r[1] = match protocol {
        Protocol::Tcp => libc::IPPROTO_TCP,
        Protocol::Udp => libc::IPPROTO_UDP,
    } as u8;
    r[2] = 1 << (INET_DIAG_INFO - 1);
    r[4..8].copy_from_slice(&states.to_ne_bytes());
    m
}

fn send(fd: &OwnedFd, req: &[u8], family: u8) -> Result<(), DiagError> {
    // SAFETY: all-zero is a valid sockaddr_nl (pid 0, no groups: the kernel).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    let mut iov = libc::iovec {
        iov_base: req.as_ptr() as *mut libc::c_void,
        iov_len: req.len(),
    };
    // SAFETY: all-zero is a valid msghdr; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut kernel as *mut libc::sockaddr_nl).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    loop {
        // SAFETY: `msg` describes live buffers; the kernel only reads them.
        let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(DiagError::Send {
                family: family_name(family),
                source: err,
            });
        }
        if n as usize != req.len() {
            return Err(DiagError::ShortSend {
                family: family_name(family),
                sent: n as usize,
                len: req.len(),
            });
        }
        return Ok(());
    }
}

fn recv(fd: &OwnedFd, buf: &mut [u8], family: u8) -> Result<usize, DiagError> {
    loop {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: all-zero is a valid msghdr; `iov` outlives the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        // SAFETY: the kernel writes at most iov_len bytes into `buf`.
        let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(DiagError::Recv {
                family: family_name(family),
                source: err,
            });
        }
        if msg.msg_flags & libc::MSG_TRUNC != 0 {
            return Err(DiagError::Truncated {
                family: family_name(family),
                buffer: buf.len(),
            });
        }
        return Ok(n as usize);
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Progress {
    More,
    Done,
}

fn align4(len: usize) -> usize {
    len.saturating_add(3) & !3
}

fn read_u16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        b.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn read_u32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn read_u64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Parses one datagram of the dump answering request `seq`; sockets go to `out`. Messages of other
/// sequence numbers are skipped.
pub(super) fn parse_datagram(
    buf: &[u8],
    family: u8,
    seq: u32,
    out: &mut Vec<TcpSockInfo>,
) -> Result<Progress, DiagError> {
    let fam = family_name(family);
    let malformed = |what: String| DiagError::Malformed { family: fam, what };
    let mut off = 0;
    while off < buf.len() {
        let rest = &buf[off..];
        let (Some(len), Some(ty), Some(msg_seq)) =
            (read_u32(rest, 0), read_u16(rest, 4), read_u32(rest, 8))
        else {
            return Err(malformed(format!(
                "netlink header truncated: {} bytes at offset {off}",
                rest.len()
            )));
        };
        let len = len as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(malformed(format!(
                "nlmsg_len {len} at offset {off} with {} bytes left",
                rest.len()
            )));
        }
        let payload = &rest[NLMSG_HDRLEN..len];
        off += align4(len);
        if msg_seq != seq {
            continue;
        }
        match ty {
            NLMSG_NOOP => {}
            NLMSG_DONE => {
                // Since 4.x the payload is the dump's final status.
                if let Some(status) = read_u32(payload, 0).map(|v| v as i32) {
                    if status < 0 {
                        return Err(DiagError::Kernel {
                            family: fam,
                            source: io::Error::from_raw_os_error(status.saturating_neg()),
                        });
                    }
                }
                return Ok(Progress::Done);
            }
            NLMSG_ERROR => {
                let errno = read_u32(payload, 0)
                    .ok_or_else(|| malformed("NLMSG_ERROR without an error code".into()))?
                    as i32;
                // 0 is an acknowledgement, which a dump does not ask for; nothing to do.
                if errno != 0 {
                    return Err(DiagError::Kernel {
                        family: fam,
                        source: io::Error::from_raw_os_error(errno.saturating_neg()),
                    });
                }
            }
            SOCK_DIAG_BY_FAMILY => {
                let info = parse_diag_msg(payload).map_err(|source| DiagError::MalformedMsg {
                    family: fam,
                    source,
                })?;
                out.push(info)
            }
            _ => {}
        }
    }
    Ok(Progress::More)
}

/// Parses struct inet_diag_msg and its attributes.
pub(super) fn parse_diag_msg(p: &[u8]) -> Result<TcpSockInfo, DiagMsgError> {
    if p.len() < DIAG_MSG_LEN {
        return Err(DiagMsgError::Short(p.len()));
    }
    let family = p[0];
    let port = |off: usize| u16::from_be_bytes([p[off], p[off + 1]]);
    let addr = |off: usize| -> Result<IpAddr, DiagMsgError> {
        match i32::from(family) {
            libc::AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(
                p[off],
                p[off + 1],
                p[off + 2],
                p[off + 3],
            ))),
            libc::AF_INET6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&p[off..off + 16]);
                let v6 = Ipv6Addr::from(a);
                // Dual-stack sockets talking IPv4: reported as the IPv4 they carry, like the
                // kernel programs' records.
                Ok(match v6.to_ipv4_mapped() {
                    Some(v4) => IpAddr::V4(v4),
                    None => IpAddr::V6(v6),
                })
            }
            other => Err(DiagMsgError::Family(other)),
        }
    };
    let word = |off: usize| read_u32(p, off).unwrap_or(0);
    let mut info = TcpSockInfo {
        family: u16::from(family),
        local: SocketAddr::new(addr(8)?, port(4)),
        remote: SocketAddr::new(addr(24)?, port(6)),
        state: p[1],
        inode: u64::from(word(68)),
        uid: word(64),
        // idiag_cookie[0] holds the low half.
        cookie: u64::from(word(44)) | (u64::from(word(48)) << 32),
        bytes_acked: 0,
        bytes_received: 0,
        bytes_sent: 0,
        segs_in: 0,
        segs_out: 0,
        data_segs_in: 0,
        data_segs_out: 0,
        total_retrans: 0,
        rtt_us: 0,
    };
    let mut off = align4(DIAG_MSG_LEN);
    // Fewer than a header's worth of trailing bytes would be padding.
    while off + RTA_HDRLEN <= p.len() {
        let (Some(len), Some(ty)) = (read_u16(p, off), read_u16(p, off + 2)) else {
            break;
        };
        let len = usize::from(len);
        if len < RTA_HDRLEN || len > p.len() - off {
            return Err(DiagMsgError::AttrLength {
                len,
                off,
                left: p.len() - off,
            });
        }
        if ty & NLA_TYPE_MASK == INET_DIAG_INFO {
            apply_tcp_info(&mut info, &p[off + RTA_HDRLEN..off + len]);
        }
        off += align4(len);
    }
    Ok(info)
}

/// Why a struct inet_diag_msg cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DiagMsgError {
    #[error("inet_diag_msg of {0} bytes, expected {DIAG_MSG_LEN}")]
    Short(usize),
    #[error("inet_diag_msg of address family {0}")]
    Family(i32),
    #[error("rtattr length {len} at offset {off} with {left} bytes left")]
    AttrLength { len: usize, off: usize, left: usize },
}

/// Copies the counters that fit in this kernel's struct tcp_info.
pub(super) fn apply_tcp_info(s: &mut TcpSockInfo, a: &[u8]) {
    let u32_at = |off| read_u32(a, off).unwrap_or(0);
    let u64_at = |off| read_u64(a, off).unwrap_or(0);
    s.rtt_us = u32_at(tcpi::RTT);
    s.total_retrans = u32_at(tcpi::TOTAL_RETRANS);
    s.bytes_acked = u64_at(tcpi::BYTES_ACKED);
    s.bytes_received = u64_at(tcpi::BYTES_RECEIVED);
    s.segs_out = u32_at(tcpi::SEGS_OUT);
    s.segs_in = u32_at(tcpi::SEGS_IN);
    s.data_segs_in = u32_at(tcpi::DATA_SEGS_IN);
    s.data_segs_out = u32_at(tcpi::DATA_SEGS_OUT);
    s.bytes_sent = u64_at(tcpi::BYTES_SENT);
}
