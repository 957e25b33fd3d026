//! DNS over UDP: a bounded copy of each message to or from port 53, so userspace can map the
//! addresses in answers back to the names processes asked for. Only the socket's own side is
//! taken (remote port 53): on loopback a local resolver's reply is not copied twice.
use aya_ebpf::{helpers::generated::bpf_skb_load_bytes, programs::SkBuffContext, EbpfContext};
use flow_common::{DnsRecord, RecordKind, DNS_CAPTURE_LEN};

use crate::{
    emit::{header, reserve, submit, Ring},
    udp::UdpPacket,
};

pub const DNS_PORT: u16 = 53;

#[inline(always)]
pub fn capture(ctx: &SkBuffContext, pkt: &UdpPacket, cookie: u64, egress: bool) -> Option<()> {
    // The shortest DNS message is its 12-byte header.
    if pkt.payload < 12 {
        return None;
    }
    let capped = pkt.payload.min(DNS_CAPTURE_LEN as u64) as u32;
    let mut entry = reserve::<DnsRecord>(Ring::Dns)?;
    let r = entry.as_mut_ptr();
    // In [1, DNS_CAPTURE_LEN] by construction (the capture length is a power of two), which is
    // what the verifier must see at the call: a bound checked earlier can be lost in spills.
    let len = ((capped - 1) & (DNS_CAPTURE_LEN as u32 - 1)) + 1;
    let loaded = unsafe {
        bpf_skb_load_bytes(
            ctx.as_ptr(),
            pkt.payload_offset,
            (*r).data.as_mut_ptr().cast(),
            len,
        )
    };
    if loaded != 0 {
        entry.discard(0);
        return None;
    }
    unsafe {
        (*r).header = header(RecordKind::Dns);
        (*r).cookie = cookie;
        (*r).tuple = pkt.tuple;
        (*r).egress = egress as u32;
        (*r).len = len;
    }
    submit(entry, Ring::Dns);
    Some(())
}
