//! UDP flows: (socket, remote endpoint). Owners come from the cgroup socket hooks, which run in
//! the acting process's own syscall; counters from the cgroup_skb programs (skb.rs), which
//! hand UDP packets to `on_skb` here.
use aya_ebpf::{
    helpers::generated::bpf_get_socket_cookie,
    macros::{cgroup_sock, cgroup_sock_addr},
    programs::{SkBuffContext, SockAddrContext, SockContext},
    EbpfContext,
};
use flow_common::{
    FilterSkip, Loss, RecordKind, Task, Tuple, UdpCounters, UdpFlowKey, UdpOpenRecord,
    UdpReleaseRecord, AF_INET, AF_INET6, IPPROTO_UDP,
};

use crate::{
    dns::{self, DNS_PORT},
    emit::{count_loss, header, now_ns, reserve, submit, Ring},
    filter::{self, count_skip},
    kernel::current_task,
    maps::{UDP_FLOWS, UDP_OWNERS},
};

const ALLOW: i32 = 1;
const BPF_NOEXIST: u64 = 1;

#[inline(always)]
fn cookie_of<C: EbpfContext>(ctx: &C) -> u64 {
    unsafe { bpf_get_socket_cookie(ctx.as_ptr()) }
}

/// Records the current process as the socket's owner unless it already is.
#[inline(always)]
fn claim_owner<C: EbpfContext>(ctx: &C) {
    let cookie = cookie_of(ctx);
    let task = current_task(false);
    if let Some(owner) = unsafe { UDP_OWNERS.get(cookie) } {
        if owner.pid == task.pid && owner.start_ns == task.start_ns && owner.uid == task.uid {
            return;
        }
    }
    if UDP_OWNERS.insert(cookie, task, 0).is_err() {
        count_loss(Loss::OwnerTableFull);
    }
}

#[cgroup_sock(sock_create)]
pub fn udp_sock_create(ctx: SockContext) -> i32 {
    if unsafe { (*ctx.sock).protocol } == IPPROTO_UDP as u32 {
        claim_owner(&ctx);
    }
    ALLOW
}

#[cgroup_sock(sock_release)]
pub fn udp_sock_release(ctx: SockContext) -> i32 {
    if unsafe { (*ctx.sock).protocol } == IPPROTO_UDP as u32 {
        let cookie = cookie_of(&ctx);
        let _ = UDP_OWNERS.remove(cookie);
        if let Some(mut entry) = reserve::<UdpReleaseRecord>(Ring::Flows) {
            let r = entry.as_mut_ptr();
            unsafe {
                (*r).header = header(RecordKind::UdpRelease);
                (*r).cookie = cookie;
            }
            submit(entry, Ring::Flows);
        }
    }
    ALLOW
}

#[inline(always)]
fn on_sock_addr(ctx: &SockAddrContext) -> i32 {
    if unsafe { (*ctx.sock_addr).protocol } == IPPROTO_UDP as u32 {
        claim_owner(ctx);
    }
    ALLOW
}

#[cgroup_sock_addr(connect4)]
pub fn udp_connect4(ctx: SockAddrContext) -> i32 {
    on_sock_addr(&ctx)
}

#[cgroup_sock_addr(connect6)]
pub fn udp_connect6(ctx: SockAddrContext) -> i32 {
    on_sock_addr(&ctx)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn udp_sendmsg4(ctx: SockAddrContext) -> i32 {
    on_sock_addr(&ctx)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn udp_sendmsg6(ctx: SockAddrContext) -> i32 {
    on_sock_addr(&ctx)
}

#[cgroup_sock_addr(recvmsg4)]
pub fn udp_recvmsg4(ctx: SockAddrContext) -> i32 {
    on_sock_addr(&ctx)
}

#[cgroup_sock_addr(recvmsg6)]
pub fn udp_recvmsg6(ctx: SockAddrContext) -> i32 {
    on_sock_addr(&ctx)
}

/// The packet's endpoints as (local, remote), and its UDP payload and IP sizes.
pub struct UdpPacket {
    pub tuple: Tuple,
    pub payload: u64,
    pub ip_len: u64,
    /// Offset of the UDP payload in the packet.
    pub payload_offset: u32,
}

/// The caller checked that the packet is UDP (in an IPv4 header, or directly after the IPv6
/// header: extension headers before UDP are rare for UDP and not followed).
#[inline(always)]
fn parse(ctx: &SkBuffContext, egress: bool, v6: bool) -> Option<UdpPacket> {
    // Every packet pays this: one helper call per header rather than one per field.
    let skb = &ctx.skb;
    let (family, l4, src, dst) = if !v6 {
        let ip = skb.load::<[u8; 20]>(0).ok()?;
        let ihl = (ip[0] & 0x0f) as usize * 4;
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s[..4].copy_from_slice(&ip[12..16]);
        d[..4].copy_from_slice(&ip[16..20]);
        (AF_INET, ihl, s, d)
    } else {
        let addrs = skb.load::<[[u8; 16]; 2]>(8).ok()?;
        (AF_INET6, 40, addrs[0], addrs[1])
    };
    let udp = skb.load::<[u8; 8]>(l4).ok()?;
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    let udp_len = u16::from_be_bytes([udp[4], udp[5]]) as u64;
    let (local_addr, remote_addr, local_port, remote_port) = if egress {
        (src, dst, sport, dport)
    } else {
        (dst, src, dport, sport)
    };
    Some(UdpPacket {
        tuple: Tuple {
            family,
            local_port,
            remote_port,
            protocol: IPPROTO_UDP,
            _pad: 0,
            local_addr,
            remote_addr,
        },
        payload: udp_len.saturating_sub(8),
        ip_len: skb.len() as u64,
        payload_offset: (l4 + 8) as u32,
    })
}

#[inline(always)]
fn add(c: &mut UdpCounters, pkt: &UdpPacket, egress: bool, now: u64) {
    if c.first_ns == 0 {
        c.first_ns = now;
    }
    c.last_ns = now;
    if egress {
        c.bytes_out += pkt.payload;
        c.ip_bytes_out += pkt.ip_len;
        c.pkts_out += 1;
    } else {
        c.bytes_in += pkt.payload;
        c.ip_bytes_in += pkt.ip_len;
        c.pkts_in += 1;
    }
}

#[inline(never)]
pub fn on_skb(ctx: &SkBuffContext, egress: bool, v6: bool) -> Option<()> {
    let pkt = parse(ctx, egress, v6)?;
    let cookie = cookie_of(ctx);
    if pkt.tuple.remote_port == DNS_PORT {
        dns::capture(ctx, &pkt, cookie, egress);
    }
    let key = UdpFlowKey {
        cookie,
        remote_addr: pkt.tuple.remote_addr,
        remote_port: pkt.tuple.remote_port,
        family: pkt.tuple.family,
        _pad: 0,
    };
    let now = now_ns();
    if let Some(c) = UDP_FLOWS.get_ptr_mut(key) {
        // This CPU's slot of a per-CPU value: no atomics needed; userspace sums the slots.
        unsafe { add(&mut *c, &pkt, egress, now) };
        return Some(());
    }
    // No flow yet: an excluded remote end gets none (each of its packets is checked again).
    let t = &pkt.tuple;
    if filter::excluded(IPPROTO_UDP, t.family, &t.remote_addr, t.remote_port) {
        count_skip(FilterSkip::UdpPackets);
        return None;
    }
    let mut c = UdpCounters {
        first_ns: now,
        ..UdpCounters::default()
    };
    add(&mut c, &pkt, egress, now);
    match UDP_FLOWS.insert(key, c, BPF_NOEXIST) {
        Ok(()) => {}
        // Another CPU created the flow first: count this packet in our slot of it.
        Err(_) => {
            match UDP_FLOWS.get_ptr_mut(key) {
                Some(c) => unsafe { add(&mut *c, &pkt, egress, now) },
                None => count_loss(Loss::UdpTableFull),
            }
            return None;
        }
    }
    let mut entry = reserve::<UdpOpenRecord>(Ring::Flows)?;
    let r = entry.as_mut_ptr();
    unsafe {
        (*r).header = header(RecordKind::UdpOpen);
        (*r).header.ts_ns = now;
        (*r).key = key;
        // Copied from the map into the record, not through a copy on the stack: this frame is
        // at the 512 bytes of stack that 5.10's verifier allows a chain of calls (with the
        // `memset` this function calls, a frame of its own there).
        (*r).owner = match UDP_OWNERS.get(cookie) {
            Some(owner) => *owner,
            None => Task::default(),
        };
        // The owner's namespace: cgroup programs cannot read the socket's own.
        (*r).netns = (*r).owner.netns;
        (*r).tuple = pkt.tuple;
        (*r).outbound_first = egress as u32;
    }
    submit(entry, Ring::Flows);
    Some(())
}
