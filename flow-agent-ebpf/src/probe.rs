//! Minimal programs of every kind the agent may use: `flow-agent probe` loads and attaches each
//! to learn what the running kernel allows. None of them does anything.
#![no_std]
#![no_main]

mod rt;

use aya_ebpf::{
    bindings::sk_action,
    macros::{
        btf_tracepoint, cgroup_skb, cgroup_sock, cgroup_sock_addr, fentry, fexit, kprobe, lsm, map,
        raw_tracepoint, sock_ops, tracepoint,
    },
    maps::RingBuf,
    programs::{
        BtfTracePointContext, FEntryContext, FExitContext, LsmContext, ProbeContext,
        RawTracePointContext, SkBuffContext, SockAddrContext, SockContext, SockOpsContext,
        TracePointContext,
    },
};

#[map]
static PROBE_RING: RingBuf = RingBuf::with_byte_size(4096, 0);

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn probe_tracepoint(_ctx: TracePointContext) -> u32 {
    0
}

#[btf_tracepoint(function = "sched_process_fork")]
pub fn probe_tp_btf(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn probe_raw_tp(_ctx: RawTracePointContext) -> i32 {
    0
}

#[cgroup_skb(egress)]
pub fn probe_cgroup_skb(_ctx: SkBuffContext) -> i32 {
    sk_action::SK_PASS as i32
}

#[sock_ops]
pub fn probe_sock_ops(_ctx: SockOpsContext) -> u32 {
    1
}

#[cgroup_sock_addr(connect4)]
pub fn probe_sock_addr(_ctx: SockAddrContext) -> i32 {
    1
}

#[cgroup_sock(sock_release)]
pub fn probe_sock_release(_ctx: SockContext) -> i32 {
    1
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn probe_ringbuf(_ctx: TracePointContext) -> u32 {
    // Touching the map makes the program depend on ring buffer support.
    let _ = PROBE_RING.query(0);
    0
}

#[fentry(function = "tcp_connect")]
pub fn probe_fentry(_ctx: FEntryContext) -> i32 {
    0
}

#[fexit(function = "tcp_connect")]
pub fn probe_fexit(_ctx: FExitContext) -> i32 {
    0
}

#[kprobe]
pub fn probe_kprobe(_ctx: ProbeContext) -> u32 {
    0
}

#[lsm(hook = "socket_connect")]
pub fn probe_lsm(_ctx: LsmContext) -> i32 {
    0
}
