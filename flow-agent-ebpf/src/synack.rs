//! The SYN-ACK of an accepted IPv6 connection, as its new socket negotiated it. On 5.10 and 6.1
//! the cgroup egress program never sees it: `tcp_v6_send_synack` sends it through the listener
//! while the packet belongs to the request sock, and the hook runs only when the two are the
//! same. Its size follows from the options the handshake agreed on; userspace adds it to the
//! handshake's counters when they lack it (flows/tcp_detail.rs). Once per accepted connection.
use flow_common::{offsets::OFFSET_ABSENT, TcpHandshakeKey, AF_INET6, TCP_DETAIL_SYN_PLAIN};

use crate::{
    kernel::{config, read},
    maps::TCP_HANDSHAKES,
};

/// TCP header (20) and MSS option (4, always sent).
const BASE_LEN: u8 = 24;
/// SACK-permitted packed with the timestamps, or NOP NOP timestamps.
const TIMESTAMPS_LEN: u8 = 12;
/// NOP window scale.
const WSCALE_LEN: u8 = 4;

/// Called as the new socket `sk` becomes ESTABLISHED: before its first packet of its own takes
/// the handshake's counters over, after the handshake's last ACK was counted on the listener.
#[inline(never)]
pub fn note(sk: u64) -> Option<()> {
    let o = &config().offsets;
    if config().tcp_detail == 0 || read::<u16>(sk, o.skc_family)? != AF_INET6 {
        return None;
    }
    // rcv_nxt is the initiator's ISN + 1 and what was received since (as tcp_skb.rs).
    let rcv_nxt = read::<u32>(sk, o.tcp_rcv_nxt)?;
    let received = read::<u64>(sk, o.tcp_bytes_received)?;
    let key = TcpHandshakeKey {
        local_addr: read::<[u8; 16]>(sk, o.skc_v6_rcv_saddr)?,
        remote_addr: read::<[u8; 16]>(sk, o.skc_v6_daddr)?,
        local_port: read::<u16>(sk, o.skc_num)?,
        remote_port: u16::from_be(read::<u16>(sk, o.skc_dport)?),
        family: AF_INET6,
        _pad: 0,
        isn: rcv_nxt.wrapping_sub(received as u32).wrapping_sub(1),
        _pad2: 0,
    };
    let e = TCP_HANDSHAKES.get_ptr_mut(key)?;
    if unsafe { (*e).flags } & TCP_DETAIL_SYN_PLAIN == 0 {
        return None;
    }
    // Only with timestamps: without them a socket made from a SYN cookie (whose SYN-ACK no
    // egress hook sees, on any kernel) cannot be told apart, and its window scaling and SACK
    // were lost with the cookie, so they would not say what its SYN-ACK carried.
    if !bit(sk, o.tcp_tstamp_ok_bit)? {
        return None;
    }
    let ws = bit(sk, o.tcp_wscale_ok_bit)?;
    let len = BASE_LEN + TIMESTAMPS_LEN + if ws { WSCALE_LEN } else { 0 };
    // tcp_create_openreq_child starts total_retrans at the request's SYN-ACK retransmissions.
    let retrans = read::<u32>(sk, o.tcp_total_retrans)?;
    unsafe {
        (*e).synack_hdr = len;
        (*e).synack_sent = retrans.saturating_add(1).min(u8::MAX as u32) as u8;
    }
    Some(())
}

/// One bit of the socket at a bit offset (BTF's, little-endian).
#[inline(always)]
fn bit(sk: u64, offset: u32) -> Option<bool> {
    if offset == OFFSET_ABSENT {
        return None;
    }
    let byte = read::<u8>(sk, offset / 8)?;
    Some(byte >> (offset % 8) & 1 != 0)
}
