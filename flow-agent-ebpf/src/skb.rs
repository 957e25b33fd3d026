//! The per-packet programs: cgroup_skb egress and ingress on the root cgroup. One pair for both
//! protocols, so each packet pays one program run: UDP packets go to udp.rs, TCP packets to
//! tcp_skb.rs when TCP detail is on (otherwise they leave after one header byte).
use aya_ebpf::{macros::cgroup_skb, programs::SkBuffContext};
use flow_common::{IPPROTO_TCP, IPPROTO_UDP};

use crate::{kernel::config, tcp_skb, udp};

const ALLOW: i32 = 1;
const ETH_P_IP: u32 = 0x0800;
const ETH_P_IPV6: u32 = 0x86DD;

#[cgroup_skb(egress)]
pub fn skb_egress(ctx: SkBuffContext) -> i32 {
    on_packet(&ctx, true);
    ALLOW
}

#[cgroup_skb(ingress)]
pub fn skb_ingress(ctx: SkBuffContext) -> i32 {
    on_packet(&ctx, false);
    ALLOW
}

/// The programs see the packet from its IP header on.
#[inline(always)]
fn on_packet(ctx: &SkBuffContext, egress: bool) -> Option<()> {
    let skb = &ctx.skb;
    let ethertype = u16::from_be(skb.protocol() as u16) as u32;
    let v6 = match ethertype {
        ETH_P_IP => false,
        ETH_P_IPV6 => true,
        _ => return None,
    };
    let protocol = skb.load::<u8>(if v6 { 6 } else { 9 }).ok()?;
    if protocol == IPPROTO_UDP {
        udp::on_skb(ctx, egress, v6)
    } else if config().tcp_detail != 0 && (protocol == IPPROTO_TCP || v6) {
        // IPv6 may put a hop-by-hop header before TCP: tcp_skb follows it.
        tcp_skb::on_skb(ctx, egress, v6)
    } else {
        None
    }
}
