//! TCP lifecycle from `sock:inet_sock_set_state`: one tracepoint call per state change, no
//! per-packet work. Totals come from `tcp_sock` at close.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::raw_tracepoint, programs::RawTracePointContext,
};
use flow_common::{
    tcp_state::*, FilterSkip, Loss, OwnerKind, RecordKind, Role, Task, TcpCounters, TcpRecord,
    Tuple, AF_INET, IPPROTO_TCP, TCP_DETAIL_LOST, TCP_DETAIL_PARTIAL, TCP_DETAIL_PRESENT,
    TCP_INFO_ALL_ACKED, TCP_INFO_CLOSED_ON_EXIT, TCP_INFO_FIN_RECEIVED,
};

use crate::{
    emit::{count_loss, header, now_ns, reserve, submit, Ring},
    filter::{self, count_skip, FILTERED_SOCKS},
    kernel::{config, current_exiting, current_task, read, sock_netns},
    maps::{
        ListenerKey, TcpCall, TcpSockState, LISTENERS, TCP_CLOSED, TCP_GUARD, TCP_PKTS, TCP_SOCKS,
    },
};

type Call = TcpCall;

impl TcpCall {
    #[inline(always)]
    fn of(ctx: &RawTracePointContext) -> Self {
        TcpCall {
            sk: ctx.arg(0),
            old: ctx.arg::<u64>(1) as u8,
            new: ctx.arg::<u64>(2) as u8,
        }
    }
}

// Two programs on one raw tracepoint. Since 6.0 the kernel skips a raw tracepoint program that
// is re-entered on its CPU: a softirq that interrupts `inet_sock_set_state` and closes a burst
// of sockets would lose every one of those state changes. The backup, attached second, runs
// every call the primary did not finish just before it on this CPU. A call the primary was
// skipped for is therefore never lost; a call that only looks unfinished (a nested call ran
// between the primary and the backup) runs twice, and every handler below is idempotent: a
// second run of the same call changes nothing and writes no record.

/// Primary handler of TCP state changes. Arguments: (struct sock *sk, int old, int new).
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: RawTracePointContext) -> i32 {
    let call = Call::of(&ctx);
    on_set_state(call);
    if let Some(g) = TCP_GUARD.get_ptr_mut(0) {
        unsafe { (*g).done = call };
    }
    0
}

/// Backup handler: runs a call unless the primary just finished it on this CPU.
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn inet_sock_set_state_backup(ctx: RawTracePointContext) -> i32 {
    let call = Call::of(&ctx);
    if let Some(g) = TCP_GUARD.get_ptr(0) {
        if unsafe { (*g).done } != call {
            on_set_state(call);
        }
    }
    0
}

#[inline(always)]
fn on_set_state(call: Call) -> Option<()> {
    let Call { sk, old, new } = call;
    if read::<u16>(sk, config().offsets.sock_sk_protocol)? != IPPROTO_TCP as u16 {
        return None;
    }
    // A new socket at this address (a passive child starts as a copy of its listener, from
    // LISTEN to SYN_RECV): a past socket's closed mark does not apply to it.
    if old == CLOSE || matches!(new, SYN_SENT | SYN_RECV | LISTEN) {
        let _ = TCP_CLOSED.remove(sk);
    }
    // Each branch is its own BPF function: inlined together their locals overflow the stack.
    match new {
        SYN_SENT => on_connect(sk),
        LISTEN => on_listen(sk),
        ESTABLISHED if old == SYN_RECV => {
            crate::synack::note(sk);
            on_passive_open(sk)
        }
        CLOSE if old == LISTEN => on_listen_close(sk),
        CLOSE => on_close(sk, old),
        _ => on_transition(sk, old, new),
    }
}

/// A new flow the kernel filter excludes (by its remote end): remembered until its close so
/// that its later state changes are ignored, counted, never tracked.
#[inline(always)]
fn skip_filtered(sk: u64) -> bool {
    if !filter::active() {
        return false;
    }
    if unsafe { FILTERED_SOCKS.get(sk) }.is_some() {
        // Already decided (a second run of the same call).
        return true;
    }
    let o = &config().offsets;
    let (Some(family), Some(port)) = (read::<u16>(sk, o.skc_family), read::<u16>(sk, o.skc_dport))
    else {
        return false;
    };
    let mut addr = [0u8; 16];
    if family == AF_INET {
        let Some(a) = read::<[u8; 4]>(sk, o.skc_daddr) else {
            return false;
        };
        addr[..4].copy_from_slice(&a);
    } else {
        let Some(a) = read::<[u8; 16]>(sk, o.skc_v6_daddr) else {
            return false;
        };
        addr = a;
    }
    if !filter::excluded(IPPROTO_TCP, family, &addr, u16::from_be(port)) {
        return false;
    }
    let _ = FILTERED_SOCKS.insert(sk, 1, 0);
    count_skip(FilterSkip::TcpFlows);
    true
}

/// Inside connect(): the calling process is current. The remote end is set, the local port
/// not chosen yet.
#[inline(never)]
fn on_connect(sk: u64) -> Option<()> {
    if skip_filtered(sk) {
        return Some(());
    }
    let state = TcpSockState {
        owner: current_task(true),
        open_ns: now_ns(),
        role: Role::Active as u8,
        owner_kind: OwnerKind::Connector as u8,
        info: 0,
        states_seen: (1 << CLOSE) | (1 << SYN_SENT),
    };
    if TCP_SOCKS.insert(sk, state, 0).is_err() {
        count_loss(Loss::TcpTableFull);
    }
    Some(())
}

/// Inside listen(): remember who owns the port for the connections it will take.
#[inline(never)]
fn on_listen(sk: u64) -> Option<()> {
    let key = listener_key(sk)?;
    let _ = LISTENERS.insert(key, current_task(true), 0);
    Some(())
}

/// Passive open, in softirq: attributed to the listener until accept() names the taker.
#[inline(never)]
fn on_passive_open(sk: u64) -> Option<()> {
    if skip_filtered(sk) {
        return Some(());
    }
    if let Some(s) = TCP_SOCKS.get_ptr(sk) {
        if unsafe { (*s).role } == Role::Passive as u8 {
            // Already handled (a second run of the same call).
            return Some(());
        }
    }
    let key = listener_key(sk)?;
    let (owner, kind) = match unsafe { LISTENERS.get(key) } {
        Some(t) => (*t, OwnerKind::Listener),
        None => (Task::default(), OwnerKind::None),
    };
    let state = TcpSockState {
        owner,
        open_ns: now_ns(),
        role: Role::Passive as u8,
        owner_kind: kind as u8,
        info: 0,
        states_seen: (1 << SYN_RECV) | (1 << ESTABLISHED),
    };
    if TCP_SOCKS.insert(sk, state, 0).is_err() {
        count_loss(Loss::TcpTableFull);
    }
    emit(
        RecordKind::TcpOpen,
        sk,
        SYN_RECV,
        ESTABLISHED,
        TCP_SOCKS.get_ptr_mut(sk),
    )
}

#[inline(never)]
fn on_listen_close(sk: u64) -> Option<()> {
    let key = listener_key(sk)?;
    LISTENERS.remove(key).ok()
}

#[inline(never)]
fn on_close(sk: u64, old: u8) -> Option<()> {
    if unsafe { TCP_CLOSED.get(sk) }.is_some() {
        // Already handled (a second run of the same call).
        return Some(());
    }
    let _ = TCP_CLOSED.insert(sk, 1, 0);
    let state = TCP_SOCKS.get_ptr_mut(sk);
    if state.is_none() && FILTERED_SOCKS.remove(sk).is_ok() {
        forget_packets(sk);
        return Some(());
    }
    // An abortive close (RST, or closing a connect in progress) by the exiting owner itself.
    if let Some(p) = state {
        if matches!(old, ESTABLISHED | CLOSE_WAIT | SYN_SENT) && owner_exiting(unsafe { &*p }) {
            unsafe { (*p).info |= TCP_INFO_CLOSED_ON_EXIT as u16 };
        }
    }
    emit(RecordKind::TcpClose, sk, old, CLOSE, state);
    // Also when the record could not be written: a socket's entries never outlive it.
    forget_packets(sk);
    TCP_SOCKS.remove(sk).ok()
}

#[inline(always)]
fn forget_packets(sk: u64) {
    if let Some(cookie) = read::<u64>(sk, config().offsets.skc_cookie).filter(|c| *c != 0) {
        let _ = TCP_PKTS.remove(cookie);
    }
}

#[inline(never)]
fn on_transition(sk: u64, old: u8, new: u8) -> Option<()> {
    let p = match TCP_SOCKS.get_ptr_mut(sk) {
        Some(p) => p,
        None => {
            if unsafe { FILTERED_SOCKS.get(sk) }.is_some() {
                return Some(());
            }
            // Opened before the agent: track its states from here so the close says how it went.
            let state = TcpSockState {
                owner: Task::default(),
                open_ns: 0,
                role: Role::Unknown as u8,
                owner_kind: OwnerKind::None as u8,
                info: 0,
                states_seen: 1 << old,
            };
            TCP_SOCKS.insert(sk, state, 0).ok()?;
            TCP_SOCKS.get_ptr_mut(sk)?
        }
    };
    let seen = unsafe { (*p).states_seen };
    unsafe { (*p).states_seen = seen | 1 << new };
    // The application's close() sends the FIN; from an exiting owner it is the kernel closing
    // the descriptors the process left open.
    if matches!(new, FIN_WAIT1 | LAST_ACK) && owner_exiting(unsafe { &*p }) {
        unsafe { (*p).info |= TCP_INFO_CLOSED_ON_EXIT as u16 };
    }
    // Once: a second run of the same call finds ESTABLISHED already seen.
    if new == ESTABLISHED && old == SYN_SENT && seen & (1 << ESTABLISHED) == 0 {
        emit(RecordKind::TcpOpen, sk, old, new, Some(p));
    }
    Some(())
}

/// Whether the current task is the socket's owner and is exiting. The owner check keeps a
/// softirq that interrupted some other exiting task from counting.
#[inline(always)]
fn owner_exiting(state: &TcpSockState) -> bool {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    tgid != 0 && tgid == state.owner.pid && current_exiting()
}

#[inline(always)]
fn listener_key(sk: u64) -> Option<ListenerKey> {
    let o = &config().offsets;
    Some(ListenerKey {
        netns: sock_netns(sk),
        port: read::<u16>(sk, o.skc_num)?,
        family: read::<u16>(sk, o.skc_family)?,
    })
}

/// The socket's endpoints from `sock_common`, as the stable tracepoint record would give them.
#[inline(always)]
fn read_tuple(sk: u64, t: &mut Tuple) -> Option<()> {
    let o = &config().offsets;
    let family = read::<u16>(sk, o.skc_family)?;
    t.family = family;
    t.local_port = read::<u16>(sk, o.skc_num)?;
    if t.local_port == 0 {
        // At CLOSE the port is already released (skc_num cleared before the state change is
        // traced); inet_sport keeps it, so a close still names its connection.
        t.local_port = u16::from_be(read::<u16>(sk, o.inet_sport)?);
    }
    t.remote_port = u16::from_be(read::<u16>(sk, o.skc_dport)?);
    t.protocol = IPPROTO_TCP;
    t._pad = 0;
    if family == AF_INET {
        t.local_addr = [0; 16];
        t.remote_addr = [0; 16];
        t.local_addr[..4].copy_from_slice(&read::<[u8; 4]>(sk, o.skc_rcv_saddr)?);
        t.remote_addr[..4].copy_from_slice(&read::<[u8; 4]>(sk, o.skc_daddr)?);
    } else {
        t.local_addr = read::<[u8; 16]>(sk, o.skc_v6_rcv_saddr)?;
        t.remote_addr = read::<[u8; 16]>(sk, o.skc_v6_daddr)?;
    }
    Some(())
}

#[inline(always)]
fn read_counters(sk: u64, c: &mut TcpCounters) {
    let o = &config().offsets;
    c.bytes_received = read::<u64>(sk, o.tcp_bytes_received).unwrap_or(0);
    c.bytes_acked = read::<u64>(sk, o.tcp_bytes_acked).unwrap_or(0);
    c.bytes_sent = read::<u64>(sk, o.tcp_bytes_sent).unwrap_or(0);
    c.segs_in = read::<u32>(sk, o.tcp_segs_in).unwrap_or(0);
    c.segs_out = read::<u32>(sk, o.tcp_segs_out).unwrap_or(0);
    c.data_segs_in = read::<u32>(sk, o.tcp_data_segs_in).unwrap_or(0);
    c.data_segs_out = read::<u32>(sk, o.tcp_data_segs_out).unwrap_or(0);
    c.total_retrans = read::<u32>(sk, o.tcp_total_retrans).unwrap_or(0);
    // tcp_sock.srtt_us holds the smoothed RTT << 3.
    c.srtt_us = read::<u32>(sk, o.tcp_srtt_us).unwrap_or(0) >> 3;
}

#[inline(always)]
fn emit(
    kind: RecordKind,
    sk: u64,
    old: u8,
    new: u8,
    state: Option<*mut TcpSockState>,
) -> Option<()> {
    let mut entry = reserve::<TcpRecord>(Ring::Flows)?;
    let r = entry.as_mut_ptr();
    unsafe {
        if read_tuple(sk, &mut (*r).tuple).is_none() {
            entry.discard(0);
            return None;
        }
        (*r).header = header(kind);
        (*r).sock = sk;
        read_counters(sk, &mut (*r).counters);
        (*r).netns = sock_netns(sk);
        (*r).sk_err = read::<i32>(sk, config().offsets.sock_sk_err).unwrap_or(0);
        let o = &config().offsets;
        let sk_flags = read::<u64>(sk, o.sock_sk_flags).unwrap_or(0);
        let snd_una = read::<u32>(sk, o.tcp_snd_una).unwrap_or(0);
        let write_seq = read::<u32>(sk, o.tcp_write_seq).unwrap_or(1);
        // SOCK_DONE is bit 1 of sk_flags: set by tcp_fin().
        (*r).info = if sk_flags & 2 != 0 {
            TCP_INFO_FIN_RECEIVED
        } else {
            0
        } | if snd_una == write_seq {
            TCP_INFO_ALL_ACKED
        } else {
            0
        };
        (*r)._pad = 0;
        (*r).old_state = old;
        (*r).new_state = new;
        match state {
            Some(s) => {
                (*r).open_ns = (*s).open_ns;
                (*r).owner = (*s).owner;
                (*r).role = (*s).role;
                (*r).owner_kind = (*s).owner_kind;
                (*r).states_seen = (*s).states_seen | (1 << new);
                (*r).info |= (*s).info as u32;
            }
            None => {
                (*r).open_ns = 0;
                (*r).owner = Task::default();
                (*r).role = Role::Unknown as u8;
                (*r).owner_kind = OwnerKind::None as u8;
                (*r).states_seen = (1 << old) | (1 << new);
            }
        }
        (*r).cookie = read::<u64>(sk, o.skc_cookie).unwrap_or(0);
        (*r).detail.flags = 0;
        if kind == RecordKind::TcpClose {
            take_detail(&mut *r);
        }
    }
    submit(entry, Ring::Flows);
    Some(())
}

/// Copies the socket's per-packet counters into its close record (on_close deletes them). A
/// socket whose open the kernel saw and that carried segments but has no complete counters is
/// flagged: userspace tells an LRU eviction (a loss) from a socket that opened while the
/// per-packet programs were being attached.
#[inline(always)]
fn take_detail(r: &mut TcpRecord) {
    if config().tcp_detail == 0 {
        return;
    }
    let mut complete = false;
    if r.cookie != 0 {
        if let Some(d) = TCP_PKTS.get_ptr(r.cookie) {
            r.detail = unsafe { *d };
            r.detail.flags |= TCP_DETAIL_PRESENT;
            complete = r.detail.flags & TCP_DETAIL_PARTIAL == 0;
        }
    }
    let observed = r.role != Role::Unknown as u8 && r.open_ns != 0;
    let carried = r.counters.segs_in != 0 || r.counters.segs_out != 0;
    if observed && carried && !complete {
        r.detail.flags |= TCP_DETAIL_LOST;
    }
}
