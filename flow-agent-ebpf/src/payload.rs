//! The first payload bytes of each direction of a TCP connection, for userspace to recognise
//! the application protocol (TLS hellos, HTTP request heads, banners). One bounded copy per
//! direction per connection: tcp_skb.rs calls this only for the first packet with payload.
use aya_ebpf::{helpers::generated::bpf_skb_load_bytes, programs::SkBuffContext, EbpfContext};
use flow_common::{PayloadRecord, RecordKind, PAYLOAD_CAPTURE_LEN};

use crate::{
    emit::{header, reserve, submit},
    maps::Segment,
};

#[inline(never)]
pub fn capture(ctx: &SkBuffContext, seg: &Segment, cookie: u64, egress: bool) -> Option<()> {
    if seg.payload == 0 {
        return None;
    }
    let capped = seg.payload.min(PAYLOAD_CAPTURE_LEN as u32);
    let offset = seg.payload_offset;
    let mut entry = reserve::<PayloadRecord>()?;
    let r = entry.as_mut_ptr();
    // In [1, PAYLOAD_CAPTURE_LEN] by construction (a power of two), computed right before the
    // call: a bound checked earlier can be lost in register spills.
    let len = ((capped - 1) & (PAYLOAD_CAPTURE_LEN as u32 - 1)) + 1;
    let loaded =
        unsafe { bpf_skb_load_bytes(ctx.as_ptr(), offset, (*r).data.as_mut_ptr().cast(), len) };
    if loaded != 0 {
        entry.discard(0);
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
    submit(entry);
    Some(())
}
