//! The first payload bytes of each direction of a TCP connection, for userspace to recognise
//! the application protocol (TLS hellos, HTTP request heads, banners). One bounded copy per
//! direction per connection: tcp_skb.rs calls this only for the first packet with payload.
use aya_ebpf::{helpers::generated::bpf_skb_load_bytes, programs::SkBuffContext, EbpfContext};
use flow_common::{PayloadRecord, RecordKind, PAYLOAD_CAPTURE_LEN};

use crate::{
    emit::{header, output, Ring},
    maps::{Segment, PAYLOAD_SCRATCH, SKB_NESTING, TCP_SKB_DEPTH},
};

/// Bytes of a payload record before its data.
const HEAD: usize = core::mem::offset_of!(PayloadRecord, data);

/// Copies the packet's first payload bytes into a record only as long as they are: most first
/// segments are far shorter than the bound, and a fixed-size record would fill the ring buffer
/// with zeros under a connection storm.
#[inline(never)]
pub fn capture(ctx: &SkBuffContext, seg: &Segment, cookie: u64, egress: bool) -> Option<()> {
    if seg.payload == 0 {
        return None;
    }
    // The caller's nesting level (tcp_skb.rs raised it): this run's scratch slot.
    let depth = unsafe { *TCP_SKB_DEPTH.get_ptr(0)? };
    if depth == 0 || depth > SKB_NESTING {
        return None;
    }
    let r = PAYLOAD_SCRATCH.get_ptr_mut(depth - 1)?;
    let capped = seg.payload.min(PAYLOAD_CAPTURE_LEN as u32);
    let offset = seg.payload_offset;
    // In [1, PAYLOAD_CAPTURE_LEN] by construction (a power of two), computed right before the
    // call. The volatile round trip hides the range LLVM already knows (capped is in [1, 2048]),
    // which would let it drop the mask and the +1 that older verifiers (5.10) need to see.
    unsafe { core::ptr::write_volatile(&raw mut (*r).len, capped) };
    let raw = unsafe { core::ptr::read_volatile(&raw const (*r).len) };
    let len = (raw.wrapping_sub(1) & (PAYLOAD_CAPTURE_LEN as u32 - 1)) + 1;
    let loaded =
        unsafe { bpf_skb_load_bytes(ctx.as_ptr(), offset, (*r).data.as_mut_ptr().cast(), len) };
    if loaded != 0 {
        return None;
    }
    unsafe {
        (*r).header = header(RecordKind::Payload);
        (*r).cookie = cookie;
        (*r).egress = egress as u32;
        (*r).len = len;
        (*r).payload_len = seg.payload;
        (*r).remote_port = seg.remote_port;
        (*r).local_port = seg.local_port;
    }
    // Recomputed from the record right before the call, bounded the same way.
    let filled = unsafe { core::ptr::read_volatile(&raw const (*r).len) };
    let n = HEAD + (((filled.wrapping_sub(1)) & (PAYLOAD_CAPTURE_LEN as u32 - 1)) + 1) as usize;
    // SAFETY: the slot holds a whole PayloadRecord, and n is at most its size.
    let bytes = unsafe { core::slice::from_raw_parts(r.cast::<u8>(), n) };
    output(bytes, Ring::Flows);
    Some(())
}
