//! TCP packets per socket, counted in the cgroup_skb programs: IP-level bytes and packets each
//! way, the OR of the TCP flags, the time of the first payload byte, and Zeek's conn.log
//! history letters, computed per packet the way Zeek does.
//!
//! These programs often run in softirq, where no process is known: everything is keyed by the
//! socket (its cookie), and userspace joins it with the TCP state records, which carry the
//! same cookie. The connection's own socket does not exist during a passive handshake: SYN,
//! SYN-ACK and ACK go through the listener, and are kept by connection (endpoints and the
//! initiator's initial sequence number) until the new socket's first packet takes them over.
use aya_ebpf::{
    bindings::bpf_sock,
    helpers::generated::{
        bpf_get_socket_cookie, bpf_sk_fullsock, bpf_skb_load_bytes, bpf_tcp_sock,
    },
    programs::SkBuffContext,
    EbpfContext,
};
use flow_common::{
    hist, TcpDetail, TcpDirDetail, TcpHandshakeKey, TcpHistEntry, AF_INET, AF_INET6, IPPROTO_TCP,
    TCP_DETAIL_HANDSHAKE, TCP_DETAIL_PARTIAL, TCP_DETAIL_SYN_PLAIN, TCP_HIST_SLOTS,
};

use crate::{
    emit::now_ns,
    kernel::config,
    maps::{
        Segment, SKB_NESTING, TCP_DETAIL_ZERO, TCP_HANDSHAKES, TCP_LATE, TCP_PKTS, TCP_SEGMENT,
        TCP_SKB_DEPTH,
    },
    payload,
};

const SOCK_STREAM: u32 = 1;
const STATE_CLOSE: u32 = 7;
const STATE_LISTEN: u32 = 10;
const BPF_NOEXIST: u64 = 1;
const IPV6_HOP_BY_HOP: u8 = 0;
/// The most TCP option bytes a header holds.
const MAX_OPTIONS: usize = 40;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// Zeek's bound on a plausible sequence jump for SYN and RST packets.
const TOO_LARGE_SEQ_DELTA: i32 = 1_048_576;

// Its own BPF function, as are the paths below: inlined together their stack frames add up past
// the 512 bytes a program may use.
#[inline(never)]
pub fn on_skb(ctx: &SkBuffContext, egress: bool, v6: bool) -> Option<()> {
    let sk: *mut bpf_sock = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return None;
    }
    let full = unsafe { bpf_sk_fullsock(sk) };
    // Only stream sockets: the kernel's per-namespace control socket (RSTs for closed ports,
    // TIME_WAIT ACKs) is a raw socket with protocol TCP.
    if full.is_null() || unsafe { (*full).type_ } != SOCK_STREAM {
        return None;
    }
    // The depth goes up before the slot is used: a run nested before that point finishes
    // before this one touches the slot; one nested after it takes the next slot.
    let depth = TCP_SKB_DEPTH.get_ptr_mut(0)?;
    let slot = unsafe { *depth };
    if slot >= SKB_NESTING {
        return None;
    }
    unsafe { *depth = slot + 1 };
    let done = on_packet(ctx, full, slot, egress, v6);
    unsafe { *depth = slot };
    done
}

// Inlined: one more frame on this path goes past 5.10's 512-byte limit on the combined stack.
#[inline(always)]
fn on_packet(
    ctx: &SkBuffContext,
    full: *mut bpf_sock,
    slot: u32,
    egress: bool,
    v6: bool,
) -> Option<()> {
    let state = unsafe { (*full).state };
    let seg = unsafe { &mut *TCP_SEGMENT.get_ptr_mut(slot)? };
    parse(ctx, egress, v6, seg)?;
    let now = now_ns();
    match state {
        STATE_LISTEN => on_handshake(ctx, seg, egress, now),
        // After the close record took the socket's counters: an abort's RST.
        STATE_CLOSE => on_late(ctx, seg, egress, now),
        _ => {
            // The copy runs from here, not from on_socket: a frame fewer on its path keeps the
            // combined stack under 5.10's 512 bytes.
            let capture = on_socket(ctx, full, seg, egress, now);
            if capture != 0 {
                payload::capture(ctx, seg, capture, egress);
            }
            Some(())
        }
    }
}

/// The zeroed value new entries start from.
#[inline(always)]
fn zero() -> Option<&'static TcpDetail> {
    TCP_DETAIL_ZERO.get(0)
}

#[inline(always)]
fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

#[inline(always)]
fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

#[inline(always)]
fn parse(ctx: &SkBuffContext, egress: bool, v6: bool, seg: &mut Segment) -> Option<()> {
    let skb = &ctx.skb;
    // One load per header: helper calls are most of the per-packet cost.
    let (src, dst, family, l4) = if v6 {
        let h = skb.load::<[u8; 40]>(0).ok()?;
        let mut l4 = 40u32;
        let mut next = h[6];
        // One hop-by-hop header (BIG TCP's jumbo payload option) is followed; other
        // extension headers before TCP are not.
        if next == IPV6_HOP_BY_HOP {
            let ext = skb.load::<[u8; 2]>(40).ok()?;
            next = ext[0];
            l4 += (ext[1] as u32 + 1) * 8;
        }
        if next != IPPROTO_TCP {
            return None;
        }
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&h[8..24]);
        dst.copy_from_slice(&h[24..40]);
        (src, dst, AF_INET6, l4)
    } else {
        let h = skb.load::<[u8; 20]>(0).ok()?;
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src[..4].copy_from_slice(&h[12..16]);
        dst[..4].copy_from_slice(&h[16..20]);
        (src, dst, AF_INET, (h[0] & 0x0f) as u32 * 4)
    };
    // Local is the source of what this host sends.
    (seg.local_addr, seg.remote_addr) = if egress { (src, dst) } else { (dst, src) };
    let t = skb.load::<[u8; 20]>(l4 as usize).ok()?;
    let headers = l4 + (t[12] >> 4) as u32 * 4;
    let len = skb.len();
    let gso_segs = unsafe { (*skb.skb).gso_segs };
    let segs = if gso_segs > 1 { gso_segs } else { 1 };
    let (sport, dport) = (be16(&t, 0), be16(&t, 2));
    (seg.local_port, seg.remote_port) = if egress {
        (sport, dport)
    } else {
        (dport, sport)
    };
    seg.family = family;
    seg.window = be16(&t, 14);
    seg.seq = be32(&t, 4);
    seg.ack = be32(&t, 8);
    seg.payload = len.saturating_sub(headers);
    seg.payload_offset = headers;
    seg.tcp_offset = l4;
    seg.segs = segs;
    // Every segment of a super-packet carries its own copy of the headers on the wire.
    seg.ip_bytes = len as u64 + (segs as u64 - 1) * headers as u64;
    seg.flags = t[13];
    Some(())
}

/// A packet through a listening socket: part of a handshake. The initiator is the remote side.
#[inline(never)]
fn on_handshake(ctx: &SkBuffContext, seg: &mut Segment, egress: bool, now: u64) -> Option<()> {
    let isn = if egress {
        // Our SYN-ACK acknowledges the initiator's SYN.
        seg.ack.wrapping_sub(1)
    } else if seg.flags & SYN != 0 {
        seg.seq
    } else {
        seg.seq.wrapping_sub(1)
    };
    let key = handshake_key(seg, isn);
    if let Some(e) = TCP_HANDSHAKES.get_ptr_mut(key) {
        unsafe { account(&mut *e, seg, egress, now) };
        return Some(());
    }
    // Only a SYN starts a handshake; a stray ACK or RST at a listener is nobody's.
    if egress || seg.flags & (SYN | ACK) != SYN {
        return None;
    }
    let _ = TCP_HANDSHAKES.insert(key, zero()?, BPF_NOEXIST);
    let e = TCP_HANDSHAKES.get_ptr_mut(key)?;
    unsafe { account(&mut *e, seg, egress, now) };
    // Once per connection: the passive open (tcp_state.rs) may need to know the SYN-ACK.
    if seg.family == AF_INET6 && syn_options_plain(ctx, seg) {
        unsafe { (*e).flags |= TCP_DETAIL_SYN_PLAIN };
    }
    Some(())
}

/// Whether the SYN's TCP options are only MSS, window scale, SACK-permitted, timestamps (and
/// NOP, EOL padding): then the SYN-ACK answering it has no others (fast open cookies, MD5,
/// MPTCP, SMC all answer an option of the SYN).
#[inline(never)]
fn syn_options_plain(ctx: &SkBuffContext, seg: &mut Segment) -> bool {
    let start = seg.tcp_offset + 20;
    let len = seg.payload_offset.saturating_sub(start);
    if len == 0 {
        return true;
    }
    if len > MAX_OPTIONS as u32 {
        return false;
    }
    // As payload.rs: the volatile round trip hides the range LLVM knows, so that the mask and
    // the +1 that 5.10's verifier needs to see (a size in [1, 64]) stay in.
    unsafe { core::ptr::write_volatile(&raw mut seg.opts_len, len) };
    let raw = unsafe { core::ptr::read_volatile(&raw const seg.opts_len) };
    let n = (raw.wrapping_sub(1) & 63) + 1;
    let loaded =
        unsafe { bpf_skb_load_bytes(ctx.as_ptr(), start, seg.opts.as_mut_ptr().cast(), n) };
    if loaded != 0 {
        return false;
    }
    let len = len as usize;
    let mut i = 0usize;
    for _ in 0..MAX_OPTIONS {
        if i >= len || i >= MAX_OPTIONS {
            return true;
        }
        match seg.opts[i] {
            0 => return true,
            1 => {
                i += 1;
                continue;
            }
            2 | 3 | 4 | 8 => {}
            _ => return false,
        }
        if i + 1 >= len || i + 1 >= MAX_OPTIONS {
            return false;
        }
        let size = seg.opts[i + 1] as usize;
        if size < 2 {
            return false;
        }
        i += size;
    }
    true
}

#[inline(always)]
fn handshake_key(seg: &Segment, isn: u32) -> TcpHandshakeKey {
    TcpHandshakeKey {
        local_addr: seg.local_addr,
        remote_addr: seg.remote_addr,
        local_port: seg.local_port,
        remote_port: seg.remote_port,
        family: seg.family,
        _pad: 0,
        isn,
        _pad2: 0,
    }
}

#[inline(never)]
fn on_late(ctx: &SkBuffContext, seg: &Segment, egress: bool, now: u64) -> Option<()> {
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if TCP_LATE.get_ptr_mut(cookie).is_none() {
        let _ = TCP_LATE.insert(cookie, zero()?, BPF_NOEXIST);
    }
    let e = TCP_LATE.get_ptr_mut(cookie)?;
    unsafe { account(&mut *e, seg, egress, now) };
    Some(())
}

#[inline(never)]
fn on_socket(
    ctx: &SkBuffContext,
    full: *mut bpf_sock,
    seg: &Segment,
    egress: bool,
    now: u64,
) -> u64 {
    // A plain u64, not an Option: a 16-byte return goes through a hidden pointer argument,
    // one more than a BPF function may take.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let e = match TCP_PKTS.get_ptr_mut(cookie) {
        Some(e) => e,
        None => match first_packet(full, cookie, seg) {
            Some(e) => e,
            None => return 0,
        },
    };
    let first_payload = unsafe {
        let d = if egress { &(*e).tx } else { &(*e).rx };
        seg.payload > 0 && seg.flags & RST == 0 && d.first_payload_ns == 0
    };
    unsafe { account(&mut *e, seg, egress, now) };
    // The socket's cookie when this packet's payload is to be copied, else 0.
    if first_payload && config().payload_inspection != 0 && cookie != 0 {
        return cookie;
    }
    0
}

/// Creates the socket's entry: from its handshake when a listener saw one, else empty (and
/// partial unless this packet is the SYN that starts the connection).
#[inline(never)]
fn first_packet(full: *mut bpf_sock, cookie: u64, seg: &Segment) -> Option<*mut TcpDetail> {
    let mut seeded = false;
    if seg.flags & (SYN | ACK) != SYN {
        let tp = unsafe { bpf_tcp_sock(full) };
        if !tp.is_null() {
            // rcv_nxt has advanced from the initiator's ISN + 1 by exactly bytes_received
            // (the kernel counts a FIN there too).
            let (rcv_nxt, received) = unsafe { ((*tp).rcv_nxt, (*tp).bytes_received) };
            let isn = rcv_nxt.wrapping_sub(received as u32).wrapping_sub(1);
            let key = handshake_key(seg, isn);
            if let Some(h) = TCP_HANDSHAKES.get_ptr_mut(key) {
                unsafe { (*h).flags |= TCP_DETAIL_HANDSHAKE };
                seeded = TCP_PKTS.insert(cookie, unsafe { &*h }, BPF_NOEXIST).is_ok();
                let _ = TCP_HANDSHAKES.remove(key);
            }
        }
    }
    if !seeded && TCP_PKTS.insert(cookie, zero()?, BPF_NOEXIST).is_ok() && seg.flags & SYN == 0 {
        let e = TCP_PKTS.get_ptr_mut(cookie)?;
        unsafe { (*e).flags = TCP_DETAIL_PARTIAL };
    }
    TCP_PKTS.get_ptr_mut(cookie)
}

#[inline(always)]
fn account(e: &mut TcpDetail, seg: &Segment, egress: bool, now: u64) {
    let peer_flags = if egress { e.rx.flags } else { e.tx.flags };
    let d = if egress { &mut e.tx } else { &mut e.rx };
    // Plain adds: the kernel mostly serializes one socket's packets per direction (sending
    // under the socket's lock; receiving on the CPU a NIC hashes the flow to), and the BPF
    // target has no atomic add that every supported kernel accepts from Rust. A veth or
    // loopback peer queues packets on its sending CPU, so two receiving CPUs can race there.
    d.ip_bytes += seg.ip_bytes;
    d.pkts += seg.segs as u64;
    if seg.payload > 0 && seg.flags & RST == 0 && d.first_payload_ns == 0 {
        d.first_payload_ns = now;
    }
    let before = d.flags;
    if before | seg.flags != before {
        d.flags = before | seg.flags;
    }
    zeek_history(d, &mut e.hist_next, seg, before, peer_flags);
}

/// Zeek's letters for one packet of one endpoint (TCPSessionAdapter::Process: init_endpoint,
/// update_history, update_window's zero-window check, update_last_seq's retransmission check).
/// `before` are the endpoint's flags before this packet; `peer` the other endpoint's.
#[inline(always)]
fn zeek_history(d: &mut TcpDirDetail, next: &mut u8, seg: &Segment, before: u8, peer: u8) {
    let (syn, fin, rst, ack) = (
        seg.flags & SYN != 0,
        seg.flags & FIN != 0,
        seg.flags & RST != 0,
        seg.flags & ACK != 0,
    );
    let len = seg.payload;
    // Sequence space the segment uses: SYN and FIN count one; a RST's data does not count.
    let seg_len = if rst { 0 } else { len } + syn as u32 + fin as u32;
    let one_past = seg.seq.wrapping_add(seg_len);
    if d.init == 0 {
        d.init = 1;
        if syn {
            d.start_seq = seg.seq;
            d.last_seq = one_past;
        } else {
            // Joined mid-stream: numbered as if a SYN came just before.
            d.start_seq = seg.seq.wrapping_sub(1);
            d.last_seq = seg.seq;
        }
    } else if syn && seg.seq != d.start_seq {
        d.start_seq = seg.seq;
        d.last_seq = one_past;
    }

    // A data segment of a super-packet that ends with a FIN is a plain data packet on the wire.
    if seg.segs > 1 && len > 0 {
        check(d, next, hist::DATA, b'D');
    }
    let bits = syn as u32 + fin as u32 + rst as u32;
    if bits > 1 {
        if fin && rst {
            check(d, next, hist::FIN_RST, b'I');
        } else {
            check(d, next, hist::MULTI_FLAG, b'Q');
        }
    } else if bits == 1 {
        if syn {
            let code = if ack { b'H' } else { b'S' };
            if check(d, next, hist::SYN, code) && seg.seq != d.last_syn {
                add_letter(d, next, code);
            }
            d.last_syn = seg.seq;
        }
        if fin {
            let end = seg.seq.wrapping_add(len);
            if check(d, next, hist::FIN, b'F') && end != d.last_fin {
                add_letter(d, next, b'F');
            }
            d.last_fin = end;
        }
        if rst {
            if check(d, next, hist::RST, b'R') && seg.seq != d.last_rst {
                add_letter(d, next, b'R');
            }
            d.last_rst = seg.seq;
        }
    } else if len > 0 {
        check(d, next, hist::DATA, b'D');
    } else if ack {
        check(d, next, hist::ACK, b'A');
    }

    // Zero windows are not interesting with or after a RST, or after the peer's FIN.
    if seg.window == 0 && !rst && peer & FIN == 0 && before & RST == 0 {
        d.zero_win = d.zero_win.wrapping_add(1);
        if power_of_ten(d.zero_win) {
            add_letter(d, next, b'W');
        }
    }

    let delta = one_past.wrapping_sub(d.last_seq) as i32;
    if (syn || rst) && !(-TOO_LARGE_SEQ_DELTA..=TOO_LARGE_SEQ_DELTA).contains(&delta) {
        // An implausible jump: not trusted.
    } else if fin && d.last_seq == d.start_seq.wrapping_add(1) {
        d.last_seq = one_past;
    } else if before & RST != 0 {
        // Nothing after this endpoint's RST is trusted.
    } else if delta > 0 {
        d.last_seq = one_past;
    } else if len > 0 {
        d.rxmit = d.rxmit.wrapping_add(1);
        if power_of_ten(d.rxmit) {
            add_letter(d, next, b'T');
        }
    }
}

/// Zeek's CheckHistory: records the letter the first time this kind is seen; true when it
/// had been seen before.
#[inline(always)]
fn check(d: &mut TcpDirDetail, next: &mut u8, kind: u8, letter: u8) -> bool {
    if d.hist_seen & kind != 0 {
        return true;
    }
    d.hist_seen |= kind;
    add_letter(d, next, letter);
    false
}

#[inline(always)]
fn add_letter(d: &mut TcpDirDetail, next: &mut u8, letter: u8) {
    let i = d.hist_len as usize;
    if i < TCP_HIST_SLOTS {
        d.hist[i] = TcpHistEntry {
            order: *next,
            letter,
        };
    }
    d.hist_len = d.hist_len.saturating_add(1);
    *next = next.saturating_add(1);
}

/// Zeek's scaled history entries (retransmissions, zero windows): the letter again at 1, 10,
/// 100... occurrences.
#[inline(always)]
fn power_of_ten(n: u32) -> bool {
    matches!(
        n,
        1 | 10
            | 100
            | 1_000
            | 10_000
            | 100_000
            | 1_000_000
            | 10_000_000
            | 100_000_000
            | 1_000_000_000
    )
}
