//! DNS over UDP: a bounded copy of each message to or from port 53, so userspace can map the
//! addresses in answers back to the names processes asked for. Only the socket's own side is
//! taken (remote port 53): on loopback a local resolver's reply is not copied twice.
use aya_ebpf::{helpers::generated::bpf_skb_load_bytes, programs::SkBuffContext, EbpfContext};
use flow_common::{DnsRecord, RecordKind, DNS_CAPTURE_LEN};

use crate::{
    emit::{header, output, Ring},
    maps::{DNS_DEPTH, DNS_SCRATCH, SKB_NESTING},
    udp::UdpPacket,
};

pub const DNS_PORT: u16 = 53;

/// Bytes of a DNS record before its message.
const HEAD: usize = core::mem::offset_of!(DnsRecord, data);

#[inline(always)]
pub fn capture(ctx: &SkBuffContext, pkt: &UdpPacket, cookie: u64, egress: bool) -> Option<()> {
    // The shortest DNS message is its 12-byte header.
    if pkt.payload < 12 {
        return None;
    }
    // A softirq can interrupt a capture in process context on this CPU: each nesting level
    // fills its own slot.
    let depth = DNS_DEPTH.get_ptr_mut(0)?;
    let slot = unsafe { *depth };
    if slot >= SKB_NESTING {
        return None;
    }
    unsafe { *depth = slot + 1 };
    let done = fill_and_send(ctx, pkt, cookie, egress, slot);
    unsafe { *depth = slot };
    done
}

/// Fills the slot's record and sends it as long as its message: most DNS messages are a
/// fraction of the bytes kept for one, and a fixed-size record would fill the ring with zeros.
#[inline(always)]
fn fill_and_send(
    ctx: &SkBuffContext,
    pkt: &UdpPacket,
    cookie: u64,
    egress: bool,
    slot: u32,
) -> Option<()> {
    let r = DNS_SCRATCH.get_ptr_mut(slot)?;
    let capped = pkt.payload.min(DNS_CAPTURE_LEN as u64) as u32;
    // In [1, DNS_CAPTURE_LEN] by construction (a power of two), computed right before the call;
    // the volatile round trip keeps LLVM from dropping the mask older verifiers (5.10) need.
    unsafe { core::ptr::write_volatile(&raw mut (*r).len, capped) };
    let raw = unsafe { core::ptr::read_volatile(&raw const (*r).len) };
    let len = (raw.wrapping_sub(1) & (DNS_CAPTURE_LEN as u32 - 1)) + 1;
    let loaded = unsafe {
        bpf_skb_load_bytes(
            ctx.as_ptr(),
            pkt.payload_offset,
            (*r).data.as_mut_ptr().cast(),
            len,
        )
    };
    if loaded != 0 {
        return None;
    }
    unsafe {
        (*r).header = header(RecordKind::Dns);
        (*r).cookie = cookie;
        (*r).tuple = pkt.tuple;
        (*r).egress = egress as u32;
        (*r).len = len;
    }
    let filled = unsafe { core::ptr::read_volatile(&raw const (*r).len) };
    let n = HEAD + ((filled.wrapping_sub(1) & (DNS_CAPTURE_LEN as u32 - 1)) + 1) as usize;
    // SAFETY: the slot holds a whole DnsRecord, and n is at most its size.
    output(
        unsafe { core::slice::from_raw_parts(r.cast::<u8>(), n) },
        Ring::Dns,
    );
    Some(())
}
