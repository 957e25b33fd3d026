//! The flow tracker's lifecycle paths, without root: records built by hand go in, and the
//! `Tracked` events that come out are checked field by field.
use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use flow_common::{
    tcp_state::*, AcceptRecord, RecordHeader, RecordKind, TcpCounters, TcpDirDetail, TcpHistEntry,
    UdpOpenRecord, UdpReleaseRecord, AF_INET6, IPPROTO_UDP, TCP_DETAIL_HANDSHAKE, TCP_DETAIL_LOST,
    TCP_DETAIL_PRESENT, TCP_INFO_ALL_ACKED, TCP_INFO_CLOSED_ON_EXIT, TCP_INFO_FIN_RECEIVED,
};
use libc::{ECONNREFUSED, ECONNRESET, EHOSTUNREACH, ETIMEDOUT};

use super::{
    super::tcp_live::{RECONCILE_GRACE, RECONCILE_INTERVAL},
    *,
};
use crate::{
    capture::sock_diag::TcpSockInfo,
    clock::boot_ns_now,
    event::{
        Direction::{Inbound, Outbound},
        FlowAction::{End, Start, Update},
    },
    event::{TcpFlags, WallTime},
};
use Role::{Active, Passive, Unknown};

const TCP: u8 = IPPROTO_TCP;
const UDP: u8 = IPPROTO_UDP;
const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;
const NETNS: u32 = 4_026_531_840;
const FIN_ACKED: u32 = TCP_INFO_FIN_RECEIVED | TCP_INFO_ALL_ACKED;

// ---- records ----

fn table() -> FlowTable {
    let cfg = FlowTableConfig {
        update_interval: Duration::from_secs(10),
        udp_idle_timeout: Duration::from_secs(30),
        accept_wait: Duration::from_secs(1),
        community_id_seed: 0,
    };
    FlowTable::new(cfg, "fa".into())
}

fn task(pid: u32, tid: u32) -> Task {
    Task {
        start_ns: u64::from(pid) * S,
        pid,
        tid,
        ppid: 1,
        uid: 1000,
        netns: NETNS,
        ..Task::default()
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ep(s: &str) -> (IpAddr, u16) {
    let a = addr(s);
    (a.ip(), a.port())
}

/// A socket's endpoints, IPv4 ("10.0.0.1:80") or IPv6 ("[2001:db8::1]:80").
fn tuple(protocol: u8, local: &str, remote: &str) -> Tuple {
    let bytes = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => {
            let mut b = [0; 16];
            b[..4].copy_from_slice(&v4.octets());
            b
        }
        IpAddr::V6(v6) => v6.octets(),
    };
    let (l, r) = (addr(local), addr(remote));
    Tuple {
        family: if l.is_ipv4() { AF_INET } else { AF_INET6 },
        local_port: l.port(),
        remote_port: r.port(),
        protocol,
        _pad: 0,
        local_addr: bytes(l),
        remote_addr: bytes(r),
    }
}

fn header(kind: RecordKind, ts_ns: u64) -> RecordHeader {
    RecordHeader {
        kind: kind as u32,
        _pad: 0,
        ts_ns,
    }
}

/// A TCP socket as the kernel's socket table knows it: connect() (Active), a passive open
/// owned by the listener (Passive), or a socket opened before the agent (Unknown).
fn tcp_sock(sock: u64, tuple: Tuple, role: Role, owner: Task, open_ns: u64) -> TcpRecord {
    let (kind, states) = match role {
        Active => (OwnerKind::Connector, (1 << CLOSE) | (1 << SYN_SENT)),
        Passive => (OwnerKind::Listener, (1 << SYN_RECV) | (1 << ESTABLISHED)),
        Unknown => (OwnerKind::None, 0),
    };
    TcpRecord {
        header: header(RecordKind::TcpOpen, open_ns),
        sock,
        open_ns,
        owner,
        tuple,
        counters: TcpCounters::default(),
        netns: NETNS,
        sk_err: 0,
        old_state: 0,
        new_state: 0,
        role: role as u8,
        owner_kind: kind as u8,
        states_seen: states,
        info: 0,
        _pad: 0,
        cookie: sock + 1,
        detail: TcpDetail::default(),
    }
}

/// The socket's open record (SYN_SENT or SYN_RECV to ESTABLISHED).
fn opened(s: &TcpRecord, ts: u64) -> TcpRecord {
    let old = if s.role == Passive as u8 {
        SYN_RECV
    } else {
        SYN_SENT
    };
    TcpRecord {
        header: header(RecordKind::TcpOpen, ts),
        old_state: old,
        new_state: ESTABLISHED,
        states_seen: s.states_seen | (1 << ESTABLISHED),
        ..*s
    }
}

/// The socket's close record: it left `old` for CLOSE, having also passed through `states`.
fn closed(s: &TcpRecord, ts: u64, old: u8, states: &[u8]) -> TcpRecord {
    let seen = states
        .iter()
        .fold(s.states_seen | (1 << old) | (1 << CLOSE), |a, st| {
            a | (1 << st)
        });
    TcpRecord {
        header: header(RecordKind::TcpClose, ts),
        old_state: old,
        new_state: CLOSE,
        states_seen: seen,
        ..*s
    }
}

fn tcp_counters(received: u64, acked: u64, segs_in: u32, segs_out: u32) -> TcpCounters {
    TcpCounters {
        bytes_received: received,
        bytes_acked: acked,
        bytes_sent: acked,
        segs_in,
        segs_out,
        ..TcpCounters::default()
    }
}

fn accepted(sock: u64, owner: Task, ts: u64) -> Record {
    Record::TcpAccept(AcceptRecord {
        header: header(RecordKind::TcpAccept, ts),
        sock,
        owner,
    })
}

/// A socket as sock_diag reports it, with the counters of `c`.
fn sock_info(local: &str, remote: &str, state: u8, c: TcpCounters) -> TcpSockInfo {
    let local = addr(local);
    TcpSockInfo {
        family: if local.is_ipv4() { AF_INET } else { AF_INET6 },
        local,
        remote: addr(remote),
        state,
        inode: 0,
        uid: 1000,
        cookie: 0,
        bytes_acked: c.bytes_acked,
        bytes_received: c.bytes_received,
        bytes_sent: c.bytes_sent,
        segs_in: c.segs_in,
        segs_out: c.segs_out,
        data_segs_in: 0,
        data_segs_out: 0,
        total_retrans: c.total_retrans,
        rtt_us: c.srtt_us,
    }
}

fn udp_key(tuple: &Tuple, cookie: u64) -> UdpFlowKey {
    UdpFlowKey {
        cookie,
        remote_addr: tuple.remote_addr,
        remote_port: tuple.remote_port,
        family: tuple.family,
        _pad: 0,
    }
}

fn udp_open(tuple: Tuple, cookie: u64, owner: Task, ts: u64, outbound_first: bool) -> Record {
    Record::UdpOpen(UdpOpenRecord {
        header: header(RecordKind::UdpOpen, ts),
        key: udp_key(&tuple, cookie),
        owner,
        tuple,
        netns: NETNS,
        outbound_first: u32::from(outbound_first),
    })
}

fn udp_release(cookie: u64, ts: u64) -> Record {
    Record::UdpRelease(UdpReleaseRecord {
        header: header(RecordKind::UdpRelease, ts),
        cookie,
    })
}

/// Counters of a UDP flow: payload bytes and packets (in, out); IP bytes add 28 a packet.
fn udp_counters(first_ns: u64, last_ns: u64, bytes: (u64, u64), pkts: (u64, u64)) -> UdpCounters {
    UdpCounters {
        first_ns,
        last_ns,
        bytes_in: bytes.0,
        bytes_out: bytes.1,
        ip_bytes_in: bytes.0 + 28 * pkts.0,
        ip_bytes_out: bytes.1 + 28 * pkts.1,
        pkts_in: pkts.0,
        pkts_out: pkts.1,
    }
}

/// One direction's per-packet counters with its history letters (order, letter).
fn dir(
    pkts: u64,
    ip_bytes: u64,
    flags: u8,
    first_payload_ns: u64,
    hist: &[(u8, u8)],
) -> TcpDirDetail {
    let mut d = TcpDirDetail {
        pkts,
        ip_bytes,
        flags,
        first_payload_ns,
        hist_len: hist.len() as u8,
        ..TcpDirDetail::default()
    };
    for (slot, (order, letter)) in d.hist.iter_mut().zip(hist) {
        *slot = TcpHistEntry {
            order: *order,
            letter: *letter,
        };
    }
    d
}

/// A client's counters (SYN|ACK|PSH each way; letters S h A D d): (packets, IP bytes) each way.
fn client_detail(t0: u64, tx: (u64, u64), rx: (u64, u64)) -> TcpDetail {
    TcpDetail {
        tx: dir(
            tx.0,
            tx.1,
            0x1a,
            t0 + MS,
            &[(0, b'S'), (2, b'A'), (3, b'D')],
        ),
        rx: dir(rx.0, rx.1, 0x1a, t0 + 2 * MS, &[(1, b'H'), (4, b'D')]),
        hist_next: 5,
        flags: TCP_DETAIL_PRESENT,
        ..TcpDetail::default()
    }
}

// ---- fakes of the kernel maps ----

/// The kernel's UDP counters, as the test sets them.
#[derive(Default)]
struct FakeUdp {
    counters: HashMap<UdpFlowKey, UdpCounters>,
    removed: Vec<UdpFlowKey>,
}

impl UdpCounterSource for FakeUdp {
    fn read(&self, key: &UdpFlowKey) -> Option<UdpCounters> {
        self.counters.get(key).copied()
    }

    fn remove(&mut self, key: &UdpFlowKey) {
        self.counters.remove(key);
        self.removed.push(*key);
    }
}

/// The kernel's per-packet TCP counters (open sockets) and those of packets after a close.
#[derive(Default)]
struct FakeDetail {
    live: HashMap<u64, TcpDetail>,
    late: HashMap<u64, TcpDetail>,
    attached_ns: u64,
}

impl TcpDetailSource for FakeDetail {
    fn attached_ns(&self) -> u64 {
        self.attached_ns
    }

    fn read(&self, cookie: u64) -> Option<TcpDetail> {
        self.live.get(&cookie).copied()
    }

    fn take_late(&mut self, cookie: u64) -> Option<TcpDetail> {
        self.late.remove(&cookie)
    }
}

// ---- running and reading ----

fn feed(t: &mut FlowTable, udp: &mut FakeUdp, rec: Record) -> Vec<Tracked> {
    let mut out = Vec::new();
    t.handle(rec, udp, &mut out);
    out
}

fn tick(t: &mut FlowTable, udp: &mut FakeUdp, now_ns: u64) -> Vec<Tracked> {
    let mut out = Vec::new();
    t.tick(now_ns, udp, &mut out);
    out
}

fn snapshot(t: &mut FlowTable, netns: u32, sockets: &[TcpSockInfo], now: u64) -> Vec<Tracked> {
    let mut out = Vec::new();
    t.apply_tcp_snapshot(netns, sockets, now, &mut out);
    out
}

/// (action, flow id) of each event.
fn seq(out: &[Tracked]) -> Vec<(FlowAction, &str)> {
    out.iter()
        .map(|t| (t.event.action, t.event.ids.flow_id.as_str()))
        .collect()
}

/// (end_reason, conn_state, history).
fn ending(ev: &FlowEvent) -> (Option<&str>, Option<&str>, Option<&str>) {
    (ev.end_reason, ev.conn_state, ev.history.as_deref())
}

/// Counters without IP bytes: totals and interval as [in_bytes, out_bytes, in_pkts, out_pkts].
fn ctr(total: [u64; 4], interval: [u64; 4]) -> Counters {
    Counters {
        in_bytes: total[0],
        out_bytes: total[1],
        in_pkts: total[2],
        out_pkts: total[3],
        in_ip_bytes: None,
        out_ip_bytes: None,
        interval: IntervalCounters {
            in_bytes: interval[0],
            out_bytes: interval[1],
            in_pkts: interval[2],
            out_pkts: interval[3],
        },
    }
}

/// UDP counters as an event carries them (IP bytes as `udp_counters` makes them).
fn udp_ctr(total: [u64; 4], interval: [u64; 4]) -> Counters {
    Counters {
        in_ip_bytes: Some(total[0] + 28 * total[2]),
        out_ip_bytes: Some(total[1] + 28 * total[3]),
        ..ctr(total, interval)
    }
}

fn cid(seed: u16, protocol: u8, local: &str, remote: &str) -> Option<String> {
    let ((la, lp), (ra, rp)) = (ep(local), ep(remote));
    Some(community_id_v1(seed, protocol, la, lp, ra, rp))
}

/// `t` is the wall time of a boot-clock instant between `before` and `after`.
fn assert_between(clock: BootClock, t: WallTime, before: u64, after: u64) {
    assert!(
        clock.wall(before) <= t && t <= clock.wall(after),
        "{t:?} not within [{:?}, {:?}]",
        clock.wall(before),
        clock.wall(after)
    );
}

// ---- TCP ----

#[test]
fn outbound_connect_then_fin_both_ways() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    let clock = t.clock;
    let owner = task(100, 101);
    let (local, remote) = ("10.0.0.5:40000", "93.184.216.34:443");
    let sock = tcp_sock(0xa000, tuple(TCP, local, remote), Active, owner, t0);
    let open = opened(&sock, t0 + 2 * MS);
    let start = feed(&mut t, &mut udp, Record::TcpOpen(open));
    assert_eq!(seq(&start), [(Start, "fa-1")]);
    let (s, ev) = (&start[0], &start[0].event);
    assert_eq!((s.owner, s.cookie, s.open_ns), (owner, 0xa001, t0));
    assert_eq!((ev.transport, ev.direction), (Transport::Tcp, Outbound));
    assert_eq!((ev.local, ev.remote), (ep(local), ep(remote)));
    assert_eq!((ev.src(), ev.dest()), (ep(local), ep(remote)));
    assert_eq!(ev.ids.community_id, cid(0, TCP, local, remote));
    assert!(ev.start_observed);
    assert_eq!(ev.time, clock.wall(t0), "a start is timed at the connect()");
    assert_eq!(
        (ev.start_time, ev.duration_ns),
        (Some(clock.wall(t0)), Some(0))
    );
    assert_eq!((ev.end_time, ev.counters), (None, None));
    assert_eq!(ending(ev), (None, None, None));
    assert_eq!(ev.attribution, Some(Attribution::Connector));
    assert_eq!((ev.tid, ev.netns), (Some(101), Some(NETNS)));
    let f = t.tcp_flow(0xa001).expect("the flow by its cookie");
    assert_eq!(
        (f.ids.flow_id.as_str(), f.owner.pid, f.netns),
        ("fa-1", 100, NETNS)
    );

    // 1000 bytes in + the peer's FIN; 300 out + SYN + FIN, all acknowledged.
    let close = TcpRecord {
        info: FIN_ACKED,
        counters: TcpCounters {
            srtt_us: 250,
            total_retrans: 1,
            ..tcp_counters(1001, 302, 8, 6)
        },
        ..closed(&open, t0 + 5 * S, FIN_WAIT2, &[FIN_WAIT1])
    };
    let end = feed(&mut t, &mut udp, Record::TcpClose(close));
    assert_eq!(seq(&end), [(End, "fa-1")]);
    let ev = &end[0].event;
    assert_eq!(ev.ids, start[0].event.ids);
    assert_eq!(ev.counters, Some(ctr([1000, 300, 8, 6], [1000, 300, 8, 6])));
    assert_eq!(ending(ev), (Some("fin"), Some("SF"), Some("ShADdFf")));
    assert_eq!(ev.time, clock.wall(t0 + 5 * S));
    assert_eq!(ev.end_time, Some(clock.wall(t0 + 5 * S)));
    assert_eq!(
        (ev.start_time, ev.duration_ns),
        (Some(clock.wall(t0)), Some(5 * S))
    );
    assert_eq!((ev.rtt_us, ev.retransmits), (Some(250), Some(1)));
    assert_eq!((ev.direction, ev.src()), (Outbound, ep(local)));
    assert_eq!(
        (ev.attribution, ev.tid),
        (Some(Attribution::Connector), Some(101))
    );
    assert_eq!(
        (ev.tcp_flags, ev.orig_first_byte),
        (None, None),
        "no TCP detail"
    );
    assert_eq!(t.open_flows(), 0);
    assert_eq!((t.missed_closes, t.evicted), (0, Evicted::default()));
}

#[test]
fn lost_detail_counts_only_for_sockets_opened_after_the_attach() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    t.set_tcp_detail(Box::new(FakeDetail {
        attached_ns: t0 + S,
        ..FakeDetail::default()
    }));
    // Opened while the per-packet programs were being attached, then after.
    for (n, open_ns) in [(0u64, t0 + S / 2), (1, t0 + 2 * S)] {
        let remote = format!("10.0.0.9:{}", 80 + n);
        let sock = tcp_sock(
            0xb000 + n,
            tuple(TCP, "10.0.0.5:40000", &remote),
            Active,
            task(100, 100),
            open_ns,
        );
        let open = opened(&sock, open_ns);
        feed(&mut t, &mut udp, Record::TcpOpen(open));
        let mut detail = client_detail(t0, (2, 120), (2, 600));
        detail.flags = TCP_DETAIL_LOST;
        let close = TcpRecord {
            counters: tcp_counters(400, 51, 3, 3),
            detail,
            ..closed(&open, t0 + 3 * S, ESTABLISHED, &[])
        };
        let end = feed(&mut t, &mut udp, Record::TcpClose(close));
        assert_eq!(
            end[0].event.tcp_flags, None,
            "incomplete counters are left out"
        );
    }
    assert_eq!(t.detail_lost, 1);
}

#[test]
fn tcp_detail_fills_updates_and_the_end_with_the_late_rst() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    let clock = t.clock;
    let (local, remote) = ("10.0.0.5:40000", "10.0.0.9:80");
    let sock = tcp_sock(
        0xa000,
        tuple(TCP, local, remote),
        Active,
        task(100, 100),
        t0,
    );
    let cookie = sock.cookie;
    let mut detail = FakeDetail::default();
    detail
        .live
        .insert(cookie, client_detail(t0, (2, 120), (2, 600)));
    // The RST of the abort, sent after the close record.
    let late = TcpDetail {
        tx: dir(1, 40, 0x04, 0, &[(0, b'R')]),
        hist_next: 1,
        ..TcpDetail::default()
    };
    detail.late.insert(cookie, late);
    t.set_tcp_detail(Box::new(detail));
    let open = opened(&sock, t0 + MS);
    assert_eq!(
        seq(&feed(&mut t, &mut udp, Record::TcpOpen(open))),
        [(Start, "fa-1")]
    );

    let live = TcpSockInfo {
        cookie,
        ..sock_info(
            local,
            remote,
            ESTABLISHED,
            TcpCounters {
                srtt_us: 300,
                ..tcp_counters(400, 51, 3, 3)
            },
        )
    };
    let up = snapshot(&mut t, NETNS, &[live], t0 + 11 * S);
    assert_eq!(seq(&up), [(Update, "fa-1")]);
    let ev = &up[0].event;
    let counters = Counters {
        in_ip_bytes: Some(600),
        out_ip_bytes: Some(120),
        ..ctr([400, 50, 2, 2], [400, 50, 2, 2])
    };
    assert_eq!(
        ev.counters,
        Some(counters),
        "packets and IP bytes from the detail"
    );
    let flags = TcpFlags {
        orig: 0x1a,
        resp: 0x1a,
    };
    assert_eq!(ev.tcp_flags, Some(flags));
    assert_eq!(ev.orig_first_byte, Some(clock.wall(t0 + MS)));
    assert_eq!(ev.resp_first_byte, Some(clock.wall(t0 + 2 * MS)));
    assert_eq!(
        (ev.rtt_us, ev.retransmits, ev.history.as_deref()),
        (Some(300), Some(0), None)
    );

    // The client aborts (no FIN either way): the kernel sends its RST after the close record.
    let close = TcpRecord {
        counters: tcp_counters(1000, 101, 5, 3),
        detail: client_detail(t0, (3, 180), (5, 1600)),
        ..closed(&open, t0 + 12 * S, ESTABLISHED, &[])
    };
    let end = feed(&mut t, &mut udp, Record::TcpClose(close));
    assert_eq!(seq(&end), [(End, "fa-1")]);
    let ev = &end[0].event;
    let counters = Counters {
        in_ip_bytes: Some(1600),
        out_ip_bytes: Some(220),
        ..ctr([1000, 100, 5, 4], [600, 50, 3, 2])
    };
    assert_eq!(ev.counters, Some(counters), "the late RST counted");
    assert_eq!(ending(ev), (Some("rst"), Some("RSTO"), Some("ShADdR")));
    let flags = TcpFlags {
        orig: 0x1e,
        resp: 0x1a,
    };
    assert_eq!(ev.tcp_flags, Some(flags));
    assert_eq!(ev.orig_first_byte, Some(clock.wall(t0 + MS)));
}

#[test]
fn inbound_start_waits_for_accept_and_names_the_acceptor() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    let clock = t.clock;
    let (listener, acceptor) = (task(200, 200), task(300, 301));
    let (local, remote) = ("[2001:db8::1]:443", "[2001:db8::99]:51000");
    let sock = tcp_sock(0xb000, tuple(TCP, local, remote), Passive, listener, t0);
    let open = opened(&sock, t0);
    assert!(feed(&mut t, &mut udp, Record::TcpOpen(open)).is_empty());
    assert!(
        tick(&mut t, &mut udp, t0 + 999 * MS).is_empty(),
        "within accept_wait"
    );
    assert_eq!(t.open_flows(), 1);

    let start = feed(&mut t, &mut udp, accepted(0xb000, acceptor, t0 + 999 * MS));
    assert_eq!(seq(&start), [(Start, "fa-1")]);
    let (s, ev) = (&start[0], &start[0].event);
    assert_eq!(s.owner, acceptor);
    assert_eq!(
        (ev.direction, ev.local, ev.remote),
        (Inbound, ep(local), ep(remote))
    );
    assert_eq!((ev.src(), ev.dest()), (ep(remote), ep(local)));
    assert_eq!(ev.ids.community_id, cid(0, TCP, remote, local));
    assert_eq!(
        (ev.attribution, ev.tid),
        (Some(Attribution::Acceptor), Some(301))
    );
    assert_eq!((ev.time, ev.duration_ns), (clock.wall(t0), Some(0)));
    assert!(
        tick(&mut t, &mut udp, t0 + 5 * S).is_empty(),
        "started once"
    );

    // The client closed first: this side went CLOSE_WAIT, LAST_ACK, CLOSE.
    let close = TcpRecord {
        info: FIN_ACKED,
        counters: tcp_counters(201, 5001, 5, 7),
        ..closed(&open, t0 + 6 * S, LAST_ACK, &[CLOSE_WAIT])
    };
    let end = feed(&mut t, &mut udp, Record::TcpClose(close));
    assert_eq!(seq(&end), [(End, "fa-1")]);
    let ev = &end[0].event;
    assert_eq!(end[0].owner, acceptor);
    assert_eq!(
        ev.counters,
        Some(ctr([200, 5000, 5, 8], [200, 5000, 5, 8])),
        "+ SYN-ACK"
    );
    assert_eq!(ending(ev), (Some("fin"), Some("SF"), Some("ShAdDfF")));
    assert_eq!(
        (ev.attribution, ev.direction),
        (Some(Attribution::Acceptor), Inbound)
    );
    assert_eq!(ev.duration_ns, Some(6 * S));
}

/// An accepted IPv6 connection's counters as 5.10 and 6.1 leave them: the listener's SYN-ACK
/// (sent twice here) never reached the egress hook, and the kernel described it instead.
fn server_detail_without_synack(synack_hdr: u8) -> TcpDetail {
    TcpDetail {
        rx: dir(
            5,
            480,
            0x1b,
            0,
            &[(0, b'S'), (1, b'A'), (2, b'D'), (5, b'F')],
        ),
        tx: dir(3, 2000, 0x19, 0, &[(3, b'A'), (4, b'D'), (6, b'F')]),
        hist_next: 7,
        flags: TCP_DETAIL_PRESENT | TCP_DETAIL_HANDSHAKE,
        synack_hdr,
        synack_sent: 2,
        ..TcpDetail::default()
    }
}

#[test]
fn an_accepted_v6_connection_gets_the_synack_the_egress_hook_missed() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    t.set_tcp_detail(Box::new(FakeDetail::default()));
    let tu = tuple(TCP, "[2001:db8::1]:443", "[2001:db8::99]:51000");
    let mut end_of = |sock: u64, synack_hdr: u8| {
        let open = opened(&tcp_sock(sock, tu, Passive, task(200, 200), t0), t0);
        feed(&mut t, &mut udp, Record::TcpOpen(open));
        feed(&mut t, &mut udp, accepted(sock, task(300, 300), t0 + MS));
        let close = TcpRecord {
            info: FIN_ACKED,
            counters: tcp_counters(101, 1901, 5, 5),
            detail: server_detail_without_synack(synack_hdr),
            ..closed(&open, t0 + S, LAST_ACK, &[CLOSE_WAIT])
        };
        let out = feed(&mut t, &mut udp, Record::TcpClose(close));
        out.last().unwrap().event.clone()
    };

    // Timestamps, SACK and window scaling: 20 + MSS 4 + 12 + 4 TCP bytes, 40 of IPv6.
    let ev = end_of(0xd000, 40);
    let counters = Counters {
        in_ip_bytes: Some(480),
        out_ip_bytes: Some(2000 + 2 * 80),
        ..ctr([100, 1900, 5, 5], [100, 1900, 5, 5])
    };
    assert_eq!(ev.counters, Some(counters), "two SYN-ACKs of 80 bytes");
    assert_eq!(ending(&ev), (Some("fin"), Some("SF"), Some("ShADadFf")));
    let flags = TcpFlags {
        orig: 0x1b,
        resp: 0x1b,
    };
    assert_eq!(ev.tcp_flags, Some(flags), "SYN in the responder's flags");

    // The kernel could not tell the SYN-ACK (the SYN had other options): no detail, as before.
    let ev = end_of(0xe000, 0);
    assert_eq!(ev.counters.and_then(|c| c.out_ip_bytes), None);
    assert_eq!(ev.tcp_flags, None);
}

#[test]
fn inbound_nobody_accepts_starts_at_the_tick_with_the_listener() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    let (listener, acceptor) = (task(200, 202), task(300, 301));
    let tu = tuple(TCP, "10.0.0.5:22", "10.0.0.7:50000");
    let open = opened(&tcp_sock(0xb000, tu, Passive, listener, t0), t0);
    assert!(feed(&mut t, &mut udp, Record::TcpOpen(open)).is_empty());
    assert!(tick(&mut t, &mut udp, t0 + 999 * MS).is_empty());
    let start = tick(&mut t, &mut udp, t0 + S);
    assert_eq!(seq(&start), [(Start, "fa-1")]);
    let ev = &start[0].event;
    assert_eq!(start[0].owner, listener);
    assert_eq!(
        (ev.attribution, ev.tid),
        (Some(Attribution::Listener), Some(202))
    );
    assert_eq!((ev.direction, ev.time), (Inbound, t.clock.wall(t0)));
    assert!(tick(&mut t, &mut udp, t0 + 2 * S).is_empty());

    // An accept of a socket the tracker does not know changes nothing.
    assert!(feed(&mut t, &mut udp, accepted(0xdead, acceptor, t0 + S)).is_empty());
    // A late accept names the process for what follows, without a second start.
    assert!(feed(&mut t, &mut udp, accepted(0xb000, acceptor, t0 + 2 * S)).is_empty());
    let close = TcpRecord {
        info: FIN_ACKED,
        counters: tcp_counters(1, 1, 3, 3),
        ..closed(&open, t0 + 3 * S, LAST_ACK, &[CLOSE_WAIT])
    };
    let end = feed(&mut t, &mut udp, Record::TcpClose(close));
    assert_eq!(seq(&end), [(End, "fa-1")]);
    assert_eq!(end[0].event.attribution, Some(Attribution::Acceptor));
    assert_eq!(
        ending(&end[0].event),
        (Some("fin"), Some("SF"), Some("ShAfF"))
    );
    assert_eq!(end[0].event.counters, Some(ctr([0, 0, 3, 4], [0, 0, 3, 4])));
}

#[test]
fn inbound_reset_by_peer_before_accept_starts_and_ends_together() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    let listener = task(200, 200);
    let tu = tuple(TCP, "10.0.0.5:22", "10.0.0.8:50001");
    let open = opened(&tcp_sock(0xc000, tu, Passive, listener, t0), t0);
    assert!(feed(&mut t, &mut udp, Record::TcpOpen(open)).is_empty());
    let close = TcpRecord {
        sk_err: ECONNRESET,
        counters: tcp_counters(0, 0, 2, 1),
        ..closed(&open, t0 + 500 * MS, ESTABLISHED, &[])
    };
    let out = feed(&mut t, &mut udp, Record::TcpClose(close));
    assert_eq!(seq(&out), [(Start, "fa-1"), (End, "fa-1")]);
    assert_eq!(out[0].event.attribution, Some(Attribution::Listener));
    assert_eq!(out[0].event.time, t.clock.wall(t0));
    let ev = &out[1].event;
    assert_eq!(
        ending(ev),
        (Some("rst"), Some("RSTO"), Some("ShAR")),
        "the originator reset"
    );
    assert_eq!(ev.counters, Some(ctr([0, 0, 2, 2], [0, 0, 2, 2])));
    assert_eq!((ev.direction, ev.duration_ns), (Inbound, Some(500 * MS)));
    assert_eq!(t.open_flows(), 0);
}

#[test]
fn failed_connects_start_and_end_together() {
    let cases = [
        (ECONNREFUSED, "refused", "REJ", "Sr"),
        (ETIMEDOUT, "timeout", "S0", "S"),
        (EHOSTUNREACH, "unreachable", "S0", "S"),
        (0, "aborted", "S0", "S"),
    ];
    for (err, reason, conn_state, history) in cases {
        let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
        let clock = t.clock;
        let tu = tuple(TCP, "10.0.0.5:40000", "10.0.0.9:81");
        let sock = tcp_sock(0xa000, tu, Active, task(100, 101), t0);
        // The RST of a refusal is the one segment in; SYN retransmissions count as retransmits.
        let close = TcpRecord {
            sk_err: err,
            counters: TcpCounters {
                total_retrans: 2,
                ..tcp_counters(0, 0, u32::from(err == ECONNREFUSED), 3)
            },
            ..closed(&sock, t0 + 3 * MS, SYN_SENT, &[])
        };
        let out = feed(&mut t, &mut udp, Record::TcpClose(close));
        assert_eq!(seq(&out), [(Start, "fa-1"), (End, "fa-1")], "{reason}");
        let start = &out[0].event;
        assert_eq!(
            (start.time, start.counters),
            (clock.wall(t0), None),
            "{reason}"
        );
        assert_eq!(start.attribution, Some(Attribution::Connector), "{reason}");
        assert!(start.start_observed, "{reason}");
        let ev = &out[1].event;
        assert_eq!(ending(ev), (Some(reason), Some(conn_state), Some(history)));
        let pkts = [u64::from(err == ECONNREFUSED), 3];
        let counters = ctr([0, 0, pkts[0], pkts[1]], [0, 0, pkts[0], pkts[1]]);
        assert_eq!(ev.counters, Some(counters), "{reason}");
        assert_eq!(ev.end_time, Some(clock.wall(t0 + 3 * MS)), "{reason}");
        assert_eq!(ev.duration_ns, Some(3 * MS), "{reason}");
        assert_eq!((ev.rtt_us, ev.retransmits), (None, Some(2)), "{reason}");
        assert_eq!((ev.direction, ev.tid), (Outbound, Some(101)), "{reason}");
        assert!(ev.connect_failed(), "{reason}");
        assert_eq!(t.open_flows(), 0, "{reason}");
    }
}

#[test]
fn established_outbound_flows_reset_by_peer_or_closed_by_exit() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    let owner = task(100, 100);
    let tu = tuple(TCP, "10.0.0.5:40000", "10.0.0.9:443");
    let open = opened(&tcp_sock(0xa000, tu, Active, owner, t0), t0 + MS);
    feed(&mut t, &mut udp, Record::TcpOpen(open));
    let reset = TcpRecord {
        sk_err: ECONNRESET,
        counters: tcp_counters(50, 101, 4, 5),
        ..closed(&open, t0 + S, ESTABLISHED, &[])
    };
    let end = feed(&mut t, &mut udp, Record::TcpClose(reset));
    assert_eq!(seq(&end), [(End, "fa-1")]);
    assert_eq!(
        ending(&end[0].event),
        (Some("rst"), Some("RSTR"), Some("ShADdr"))
    );
    assert_eq!(
        end[0].event.counters,
        Some(ctr([50, 100, 4, 5], [50, 100, 4, 5]))
    );

    // The owner exited: the kernel closed its descriptor (a FIN, answered).
    let tu = tuple(TCP, "10.0.0.5:40001", "10.0.0.9:443");
    let open = opened(&tcp_sock(0xa100, tu, Active, owner, t0), t0 + MS);
    assert_eq!(
        seq(&feed(&mut t, &mut udp, Record::TcpOpen(open))),
        [(Start, "fa-2")]
    );
    let exit = TcpRecord {
        info: FIN_ACKED | TCP_INFO_CLOSED_ON_EXIT,
        counters: tcp_counters(1, 2, 3, 3),
        ..closed(&open, t0 + S, FIN_WAIT2, &[FIN_WAIT1])
    };
    let end = feed(&mut t, &mut udp, Record::TcpClose(exit));
    assert_eq!(seq(&end), [(End, "fa-2")]);
    assert_eq!(
        ending(&end[0].event),
        (Some("process_exit"), Some("SF"), Some("ShAFf"))
    );
    assert_eq!(end[0].event.counters, Some(ctr([0, 0, 3, 3], [0, 0, 3, 3])));
}

#[test]
fn close_of_a_socket_never_seen_open_starts_then_ends() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    let clock = t.clock;
    let tu = tuple(TCP, "10.0.0.5:40000", "10.0.0.9:5432");
    // Opened before the agent: the kernel tracked it from its first state change, knowing no
    // owner, role or open time.
    let sock = tcp_sock(0xd000, tu, Unknown, Task::default(), 0);
    let close = TcpRecord {
        info: FIN_ACKED,
        counters: tcp_counters(11, 21, 6, 7),
        ..closed(&sock, t0 + S, FIN_WAIT2, &[ESTABLISHED, FIN_WAIT1])
    };
    let before = boot_ns_now();
    let out = feed(&mut t, &mut udp, Record::TcpClose(close));
    let after = boot_ns_now();
    assert_eq!(seq(&out), [(Start, "fa-1"), (End, "fa-1")]);
    for tr in &out {
        let ev = &tr.event;
        assert!(!ev.start_observed);
        assert_eq!((ev.start_time, ev.duration_ns), (None, None));
        assert_eq!((ev.attribution, ev.tid), (None, None));
        assert_eq!((tr.owner, tr.open_ns), (Task::default(), 0));
        assert_eq!(ev.direction, Outbound);
    }
    assert_between(clock, out[0].event.time, before, after);
    let ev = &out[1].event;
    assert_eq!(
        (ev.time, ev.end_time),
        (clock.wall(t0 + S), Some(clock.wall(t0 + S)))
    );
    assert_eq!(ending(ev), (Some("fin"), Some("OTH"), Some("dDfF")));
    assert_eq!(ev.counters, Some(ctr([10, 20, 6, 7], [10, 20, 6, 7])));
    assert_eq!(
        t.evicted,
        Evicted::default(),
        "not an eviction: never seen open"
    );
    assert_eq!(t.open_flows(), 0);
}

#[test]
fn tcp_socket_table_evictions_are_counted() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    let clock = t.clock;
    // A handshake whose connect() entry the kernel's socket table lost: an open without role.
    let tu = tuple(TCP, "10.0.0.5:40002", "10.0.0.9:443");
    let lost = tcp_sock(0xf000, tu, Unknown, Task::default(), 0);
    let out = feed(&mut t, &mut udp, Record::TcpOpen(opened(&lost, t0 + MS)));
    assert_eq!(seq(&out), [(Start, "fa-1")]);
    assert!(!out[0].event.start_observed);
    assert_eq!(t.evicted, Evicted { tcp: 1, udp: 0 });

    // Seen open, then closed after the table forgot it: the close carries no role or owner.
    let owner = task(100, 101);
    let tu = tuple(TCP, "10.0.0.5:40003", "10.0.0.9:443");
    let open = opened(&tcp_sock(0xa000, tu, Active, owner, t0), t0 + MS);
    assert_eq!(
        seq(&feed(&mut t, &mut udp, Record::TcpOpen(open))),
        [(Start, "fa-2")]
    );
    let forgot = tcp_sock(0xa000, tu, Unknown, Task::default(), 0);
    let close = TcpRecord {
        info: FIN_ACKED,
        counters: tcp_counters(101, 12, 7, 8),
        ..closed(&forgot, t0 + 2 * S, FIN_WAIT2, &[FIN_WAIT1])
    };
    let end = feed(&mut t, &mut udp, Record::TcpClose(close));
    assert_eq!(seq(&end), [(End, "fa-2")]);
    let ev = &end[0].event;
    assert_eq!(t.evicted, Evicted { tcp: 2, udp: 0 });
    assert_eq!(ending(ev), (Some("fin"), Some("OTH"), Some("ShADdFf")));
    assert_eq!(
        ev.counters,
        Some(ctr([100, 10, 7, 8], [100, 10, 7, 8])),
        "SYN taken out"
    );
    assert_eq!(
        (ev.attribution, ev.tid),
        (Some(Attribution::Connector), Some(101))
    );
    assert_eq!(
        (ev.start_time, ev.duration_ns),
        (Some(clock.wall(t0)), Some(2 * S))
    );
    assert!(ev.start_observed);
}

#[test]
fn reused_socket_address_ends_the_old_flow_close_missed() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    let clock = t.clock;
    let owner = task(100, 100);
    let (local, remote) = ("10.0.0.5:40000", "10.0.0.9:443");
    let a = tcp_sock(0xa000, tuple(TCP, local, remote), Active, owner, t0);
    feed(&mut t, &mut udp, Record::TcpOpen(opened(&a, t0 + MS)));
    let live = sock_info(local, remote, ESTABLISHED, tcp_counters(500, 101, 5, 6));
    let up = snapshot(&mut t, NETNS, &[live], t0 + 11 * S);
    assert_eq!(seq(&up), [(Update, "fa-1")]);

    // The same kernel address opens another connection: the first one's close never came.
    let tu = tuple(TCP, "10.0.0.5:40001", remote);
    let b = tcp_sock(0xa000, tu, Active, owner, t0 + 12 * S);
    let out = feed(
        &mut t,
        &mut udp,
        Record::TcpOpen(opened(&b, t0 + 12 * S + MS)),
    );
    assert_eq!(seq(&out), [(End, "fa-1"), (Start, "fa-2")]);
    let ev = &out[0].event;
    assert_eq!(ending(ev), (Some("close_missed"), None, None));
    assert_eq!(
        ev.counters,
        Some(ctr([500, 100, 5, 6], [0; 4])),
        "as of the last update"
    );
    assert_eq!(ev.end_time, Some(clock.wall(t0 + 12 * S + MS)));
    assert_eq!(ev.duration_ns, Some(12 * S + MS));
    assert_eq!((ev.rtt_us, ev.retransmits), (None, None));
    assert_eq!(ev.local, ep(local));
    assert_eq!(t.missed_closes, 1);
    assert_eq!(out[1].event.local, ep("10.0.0.5:40001"));

    let close = closed(&opened(&b, t0 + 12 * S + MS), t0 + 13 * S, ESTABLISHED, &[]);
    let end = feed(&mut t, &mut udp, Record::TcpClose(close));
    assert_eq!(seq(&end), [(End, "fa-2")]);
    assert_eq!((t.open_flows(), t.missed_closes), (0, 1));
}

/// Two connections open at start-up: one outbound, one on the listening port 22.
fn scanned() -> [TcpSockInfo; 2] {
    [
        TcpSockInfo {
            cookie: 0x51,
            ..sock_info(
                "10.0.0.5:41000",
                "10.0.0.9:443",
                ESTABLISHED,
                tcp_counters(700, 301, 9, 8),
            )
        },
        TcpSockInfo {
            cookie: 0x52,
            ..sock_info(
                "10.0.0.5:22",
                "10.0.0.7:50000",
                ESTABLISHED,
                tcp_counters(1000, 20000, 10, 20),
            )
        },
    ]
}

fn scan(t: &mut FlowTable, sockets: &[TcpSockInfo], client: Task, sshd: Task) -> Vec<Tracked> {
    let mut out = Vec::new();
    let listening = HashSet::from([22]);
    let owner_of = |s: &TcpSockInfo| if s.local.port() == 22 { sshd } else { client };
    t.add_existing_tcp(NETNS, sockets, &listening, owner_of, &mut out);
    out
}

#[test]
fn partial_flows_at_start_up_then_their_kernel_close() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    let clock = t.clock;
    let (client, sshd) = (task(100, 101), task(22, 23));
    let [out_s, in_s] = scanned();
    let before = boot_ns_now();
    let start = scan(&mut t, &[out_s, in_s], client, sshd);
    let after = boot_ns_now();
    assert_eq!(seq(&start), [(Start, "fa-1"), (Start, "fa-2")]);
    for tr in &start {
        let ev = &tr.event;
        assert!(!ev.start_observed);
        assert_eq!(
            (ev.start_time, ev.duration_ns, ev.counters),
            (None, None, None)
        );
        assert_eq!((tr.open_ns, ev.netns), (0, Some(NETNS)));
        assert_between(clock, ev.time, before, after);
    }
    let (o, i) = (&start[0].event, &start[1].event);
    assert_eq!(
        (o.direction, o.local, o.remote),
        (Outbound, ep("10.0.0.5:41000"), ep("10.0.0.9:443"))
    );
    assert_eq!(
        (o.attribution, o.tid),
        (Some(Attribution::Connector), Some(101))
    );
    assert_eq!((i.direction, i.src()), (Inbound, ep("10.0.0.7:50000")));
    assert_eq!(
        (i.attribution, i.tid),
        (Some(Attribution::Acceptor), Some(23))
    );
    assert_eq!(
        (start[0].cookie, start[1].cookie),
        (0, 0),
        "no cookie until a snapshot"
    );
    assert!(
        scan(&mut t, &[in_s], client, sshd).is_empty(),
        "already known"
    );

    // The kernel's close of the inbound one: no role, owner or open time of its own.
    let tu = tuple(TCP, "10.0.0.5:22", "10.0.0.7:50000");
    let k = tcp_sock(0xe000, tu, Unknown, Task::default(), 0);
    let close = TcpRecord {
        info: FIN_ACKED,
        counters: tcp_counters(3001, 70001, 40, 60),
        ..closed(&k, t0 + 5 * S, LAST_ACK, &[ESTABLISHED, CLOSE_WAIT])
    };
    let end = feed(&mut t, &mut udp, Record::TcpClose(close));
    assert_eq!(seq(&end), [(End, "fa-2")], "matched by identity");
    let ev = &end[0].event;
    assert!(!ev.start_observed);
    assert_eq!((ev.start_time, ev.duration_ns), (None, None));
    assert_eq!(
        (end[0].owner, ev.attribution),
        (sshd, Some(Attribution::Acceptor))
    );
    assert_eq!(
        (ev.direction, ev.end_time),
        (Inbound, Some(clock.wall(t0 + 5 * S)))
    );
    // Totals include what came before the agent; the interval counts from the scan.
    let counters = ctr([3000, 70000, 40, 61], [2000, 50000, 30, 40]);
    assert_eq!(ev.counters, Some(counters));
    assert_eq!(ending(ev), (Some("fin"), Some("OTH"), Some("ShAdDfF")));
    assert_eq!((t.evicted, t.open_flows()), (Evicted::default(), 1));

    // The outbound one is updated an interval after the scan, its interval counted from it.
    assert!(t.tcp_updates_due(before + 10 * S - 1).is_empty());
    assert_eq!(t.tcp_updates_due(after + 10 * S), HashSet::from([NETNS]));
    let live = TcpSockInfo {
        cookie: 0x51,
        ..sock_info(
            "10.0.0.5:41000",
            "10.0.0.9:443",
            ESTABLISHED,
            tcp_counters(900, 401, 12, 11),
        )
    };
    let up = snapshot(&mut t, NETNS, &[live], after + 10 * S);
    assert_eq!(seq(&up), [(Update, "fa-1")]);
    assert_eq!(
        up[0].event.counters,
        Some(ctr([900, 400, 12, 11], [200, 100, 3, 3]))
    );
    assert_eq!((up[0].event.duration_ns, up[0].cookie), (None, 0x51));
    assert!(!up[0].event.start_observed);
}

#[test]
fn open_during_the_start_up_scan_keeps_the_scans_start() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    let client = task(100, 101);
    let [out_s, _] = scanned();
    assert_eq!(
        seq(&scan(&mut t, &[out_s], client, client)),
        [(Start, "fa-1")]
    );
    // The connect() completed while the scan ran: its open record comes after the scan's flow.
    let tu = tuple(TCP, "10.0.0.5:41000", "10.0.0.9:443");
    let open = opened(&tcp_sock(0xa000, tu, Active, client, t0), t0 + MS);
    let out = feed(&mut t, &mut udp, Record::TcpOpen(open));
    assert!(
        out.is_empty(),
        "the scan wrote the flow's start: {:?}",
        seq(&out)
    );
    let end = feed(
        &mut t,
        &mut udp,
        Record::TcpClose(closed(&open, t0 + S, ESTABLISHED, &[])),
    );
    assert_eq!(seq(&end), [(End, "fa-1")]);
}

#[test]
fn tcp_updates_after_the_interval_carry_deltas() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    let clock = t.clock;
    let (local, remote) = ("10.0.0.5:40000", "10.0.0.9:443");
    let sock = tcp_sock(
        0xa000,
        tuple(TCP, local, remote),
        Active,
        task(100, 101),
        t0,
    );
    let open = opened(&sock, t0 + MS);
    feed(&mut t, &mut udp, Record::TcpOpen(open));
    // An inbound flow nobody accepted yet, in another namespace: not started, not updated.
    let other = TcpRecord {
        netns: NETNS + 1,
        ..tcp_sock(
            0xb000,
            tuple(TCP, "10.0.0.5:22", "10.0.0.7:50000"),
            Passive,
            task(22, 22),
            t0,
        )
    };
    assert!(feed(&mut t, &mut udp, Record::TcpOpen(opened(&other, t0))).is_empty());
    assert_eq!(t.tcp_namespaces(), HashSet::from([NETNS, NETNS + 1]));

    assert!(
        t.tcp_updates_due(t0 + 10 * S).is_empty(),
        "counted from the open record"
    );
    assert_eq!(t.tcp_updates_due(t0 + 10 * S + MS), HashSet::from([NETNS]));
    let c = TcpCounters {
        srtt_us: 300,
        total_retrans: 2,
        ..tcp_counters(500, 1001, 10, 12)
    };
    let s1 = TcpSockInfo {
        cookie: 0xa001,
        ..sock_info(local, remote, ESTABLISHED, c)
    };
    let up = snapshot(&mut t, NETNS, &[s1], t0 + 11 * S);
    assert_eq!(seq(&up), [(Update, "fa-1")]);
    let ev = &up[0].event;
    assert_eq!(
        ev.counters,
        Some(ctr([500, 1000, 10, 12], [500, 1000, 10, 12]))
    );
    assert_eq!(
        (ev.time, ev.duration_ns),
        (clock.wall(t0 + 11 * S), Some(11 * S))
    );
    assert_eq!((ev.rtt_us, ev.retransmits), (Some(300), Some(2)));
    assert_eq!((ev.end_time, ending(ev)), (None, (None, None, None)));
    assert_eq!(ev.attribution, Some(Attribution::Connector));

    assert!(
        snapshot(&mut t, NETNS, &[s1], t0 + 15 * S).is_empty(),
        "not due"
    );
    assert!(
        snapshot(&mut t, NETNS + 1, &[s1], t0 + 25 * S).is_empty(),
        "other namespace"
    );
    // The peer's FIN came: CLOSE_WAIT counts it in bytes_received.
    let s2 = sock_info(local, remote, CLOSE_WAIT, tcp_counters(801, 1501, 15, 18));
    let up = snapshot(&mut t, NETNS, &[s2], t0 + 21 * S);
    assert_eq!(seq(&up), [(Update, "fa-1")]);
    assert_eq!(
        up[0].event.counters,
        Some(ctr([800, 1500, 15, 18], [300, 500, 5, 6]))
    );

    // A snapshot that misses the socket (closing) writes nothing and waits an interval.
    assert!(snapshot(&mut t, NETNS, &[], t0 + 31 * S).is_empty());
    assert!(t.tcp_updates_due(t0 + 40 * S).is_empty());
    assert_eq!(t.tcp_updates_due(t0 + 41 * S), HashSet::from([NETNS]));

    let close = TcpRecord {
        info: FIN_ACKED,
        counters: tcp_counters(801, 2002, 17, 22),
        ..closed(&open, t0 + 35 * S, LAST_ACK, &[CLOSE_WAIT])
    };
    let end = feed(&mut t, &mut udp, Record::TcpClose(close));
    assert_eq!(seq(&end), [(End, "fa-1")]);
    assert_eq!(
        end[0].event.counters,
        Some(ctr([800, 2000, 17, 22], [0, 500, 2, 4]))
    );
    assert_eq!(
        ending(&end[0].event),
        (Some("fin"), Some("SF"), Some("ShADdFf"))
    );
}

// ---- UDP ----

#[test]
fn udp_outbound_start_updates_and_idle_end() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    let clock = t.clock;
    let owner = task(400, 402);
    let (local, remote) = ("10.0.0.5:40000", "10.0.0.53:53");
    let tu = tuple(UDP, local, remote);
    let key = udp_key(&tu, 77);
    let start = feed(&mut t, &mut udp, udp_open(tu, 77, owner, t0, true));
    assert_eq!(seq(&start), [(Start, "fa-1")]);
    let (s, ev) = (&start[0], &start[0].event);
    assert_eq!((s.owner, s.cookie, s.open_ns), (owner, 77, t0));
    assert_eq!((ev.transport, ev.direction), (Transport::Udp, Outbound));
    assert_eq!((ev.src(), ev.dest()), (ep(local), ep(remote)));
    assert_eq!(ev.ids.community_id, cid(0, UDP, local, remote));
    assert_eq!(
        (ev.attribution, ev.tid),
        (Some(Attribution::SocketUser), Some(402))
    );
    assert_eq!(
        (ev.time, ev.duration_ns, ev.counters),
        (clock.wall(t0), Some(0), None)
    );
    assert!(ev.start_observed);
    let f = t
        .udp_flow(77, (53, tu.remote_addr))
        .expect("the flow by socket and remote");
    assert_eq!((f.ids.flow_id.as_str(), f.owner.pid), ("fa-1", 400));

    udp.counters
        .insert(key, udp_counters(t0, t0 + 2 * S, (120, 40), (1, 1)));
    assert!(tick(&mut t, &mut udp, t0 + 9 * S).is_empty());
    let up = tick(&mut t, &mut udp, t0 + 10 * S);
    assert_eq!(seq(&up), [(Update, "fa-1")]);
    let ev = &up[0].event;
    assert_eq!(ev.counters, Some(udp_ctr([120, 40, 1, 1], [120, 40, 1, 1])));
    assert_eq!(
        (ev.time, ev.duration_ns),
        (clock.wall(t0 + 10 * S), Some(10 * S))
    );
    assert_eq!((ev.end_time, ev.end_reason), (None, None));

    udp.counters
        .insert(key, udp_counters(t0, t0 + 12 * S, (240, 80), (2, 2)));
    let up = tick(&mut t, &mut udp, t0 + 20 * S);
    assert_eq!(
        up[0].event.counters,
        Some(udp_ctr([240, 80, 2, 2], [120, 40, 1, 1]))
    );
    let up = tick(&mut t, &mut udp, t0 + 30 * S);
    assert_eq!(seq(&up), [(Update, "fa-1")], "also without new packets");
    assert_eq!(up[0].event.counters, Some(udp_ctr([240, 80, 2, 2], [0; 4])));
    assert!(tick(&mut t, &mut udp, t0 + 35 * S).is_empty());

    let before = boot_ns_now();
    let end = tick(&mut t, &mut udp, t0 + 42 * S);
    let after = boot_ns_now();
    assert_eq!(seq(&end), [(End, "fa-1")]);
    let ev = &end[0].event;
    assert_eq!(ev.end_reason, Some("idle"));
    assert_eq!(
        ev.end_time,
        Some(clock.wall(t0 + 12 * S)),
        "the last packet"
    );
    assert_eq!(ev.duration_ns, Some(12 * S));
    assert_eq!(ev.counters, Some(udp_ctr([240, 80, 2, 2], [0; 4])));
    assert_eq!((ev.conn_state, ev.history.as_deref()), (None, None));
    assert_between(clock, ev.time, before, after);
    assert_eq!(
        (udp.removed.as_slice(), udp.counters.len()),
        (&[key][..], 0)
    );
    assert_eq!(t.open_flows(), 0);
    assert!(t.udp_flow(77, (53, tu.remote_addr)).is_none());
}

#[test]
fn udp_inbound_flow_whose_counters_are_gone_ends_evicted() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    let clock = t.clock;
    let (local, remote) = ("[2001:db8::1]:5353", "[2001:db8::2]:40000");
    let tu = tuple(UDP, local, remote);
    let key = udp_key(&tu, 88);
    let start = feed(
        &mut t,
        &mut udp,
        udp_open(tu, 88, task(400, 400), t0, false),
    );
    assert_eq!(seq(&start), [(Start, "fa-1")]);
    let ev = &start[0].event;
    assert_eq!(
        (ev.direction, ev.local, ev.remote),
        (Inbound, ep(local), ep(remote))
    );
    assert_eq!((ev.src(), ev.dest()), (ep(remote), ep(local)));
    udp.counters
        .insert(key, udp_counters(t0, t0, (100, 0), (1, 0)));
    assert!(tick(&mut t, &mut udp, t0 + 5 * S).is_empty());

    udp.counters.remove(&key); // the kernel's LRU table pushed it out
    let before = boot_ns_now();
    let end = tick(&mut t, &mut udp, t0 + 6 * S);
    let after = boot_ns_now();
    assert_eq!(seq(&end), [(End, "fa-1")]);
    let ev = &end[0].event;
    assert_eq!((ev.end_reason, ev.counters), (Some("evicted"), None));
    let end_time = ev.end_time.expect("an end time");
    assert_between(clock, end_time, before, after);
    assert_eq!(ev.duration_ns, Some(end_time.0 - clock.wall(t0).0));
    assert_eq!(t.evicted, Evicted { tcp: 0, udp: 1 });
    assert_eq!(t.open_flows(), 0);
    assert!(t.udp_flow(88, (40000, tu.remote_addr)).is_none());
}

#[test]
fn udp_release_ends_every_flow_of_the_socket() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    let clock = t.clock;
    let owner = task(400, 400);
    let a = tuple(UDP, "10.0.0.5:5000", "10.0.0.8:6000");
    // An IPv4-mapped IPv6 socket: reported as IPv4.
    let b = tuple(UDP, "[::ffff:10.0.0.5]:5000", "[::ffff:10.0.0.9]:6000");
    let c = tuple(UDP, "10.0.0.5:5001", "10.0.0.8:6000");
    let opens = [(a, 5, t0), (b, 5, t0 + S), (c, 6, t0 + 2 * S)];
    for (i, (tu, cookie, ts)) in opens.into_iter().enumerate() {
        let start = feed(&mut t, &mut udp, udp_open(tu, cookie, owner, ts, true));
        assert_eq!(seq(&start), [(Start, format!("fa-{}", i + 1).as_str())]);
        let last = ts + S + i as u64 * MS;
        udp.counters.insert(
            udp_key(&tu, cookie),
            udp_counters(ts, last, (10, 20), (1, 1)),
        );
    }
    let mapped = &t
        .udp_flow(5, (6000, b.remote_addr))
        .unwrap()
        .ids
        .community_id;
    assert_eq!(*mapped, cid(0, UDP, "10.0.0.5:5000", "10.0.0.9:6000"));

    let end = feed(&mut t, &mut udp, udp_release(5, t0 + 3 * S));
    assert_eq!(seq(&end), [(End, "fa-1"), (End, "fa-2")]);
    for (i, tr) in end.iter().enumerate() {
        let (ev, open) = (&tr.event, t0 + i as u64 * S);
        assert_eq!(ev.end_reason, Some("socket_closed"));
        assert_eq!(ev.end_time, Some(clock.wall(open + S + i as u64 * MS)));
        assert_eq!(ev.duration_ns, Some(S + i as u64 * MS));
        assert_eq!(ev.counters, Some(udp_ctr([10, 20, 1, 1], [10, 20, 1, 1])));
    }
    assert_eq!(
        (end[1].event.local, end[1].event.remote),
        (ep("10.0.0.5:5000"), ep("10.0.0.9:6000"))
    );
    assert_eq!(udp.removed, [udp_key(&a, 5), udp_key(&b, 5)]);
    assert!(
        udp.counters.contains_key(&udp_key(&c, 6)),
        "the other socket's flow stays"
    );
    assert_eq!(t.open_flows(), 1);
    let f = t.udp_flow(6, (6000, c.remote_addr)).expect("still open");
    assert_eq!(f.ids.flow_id, "fa-3");
    assert!(feed(&mut t, &mut udp, udp_release(5, t0 + 4 * S)).is_empty());
}

#[test]
fn udp_reopen_of_a_tracked_key_ends_the_old_flow() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    let tu = tuple(UDP, "10.0.0.5:40000", "10.0.0.53:53");
    let owner = task(400, 400);
    assert_eq!(
        seq(&feed(&mut t, &mut udp, udp_open(tu, 77, owner, t0, true))),
        [(Start, "fa-1")]
    );
    // The kernel's LRU pushed the entry out and the next packet made a new one (with a new
    // open record) before a tick noticed.
    udp.counters.insert(
        udp_key(&tu, 77),
        udp_counters(t0 + 5 * S, t0 + 5 * S, (10, 0), (1, 0)),
    );
    let out = feed(&mut t, &mut udp, udp_open(tu, 77, owner, t0 + 5 * S, false));
    assert_eq!(seq(&out), [(End, "fa-1"), (Start, "fa-2")]);
    assert_eq!(
        (out[0].event.end_reason, out[0].event.counters),
        (Some("evicted"), None)
    );
    assert_eq!(t.evicted, Evicted { tcp: 0, udp: 1 });
}

// ---- the table as a whole ----

#[test]
fn shutdown_ends_every_open_flow() {
    let (mut t, mut udp) = (table(), FakeUdp::default());
    let t0 = boot_ns_now() - 60 * S;
    let clock = t.clock;
    let (client, listener) = (task(100, 101), task(200, 200));
    let (a_local, a_remote) = ("10.0.0.5:40000", "10.0.0.9:443");
    let a = tcp_sock(0xa000, tuple(TCP, a_local, a_remote), Active, client, t0);
    assert_eq!(
        seq(&feed(
            &mut t,
            &mut udp,
            Record::TcpOpen(opened(&a, t0 + MS))
        )),
        [(Start, "fa-1")]
    );
    let p_tuple = tuple(TCP, "10.0.0.5:22", "10.0.0.7:50000");
    let p = tcp_sock(0xb000, p_tuple, Passive, listener, t0 + S);
    assert!(feed(&mut t, &mut udp, Record::TcpOpen(opened(&p, t0 + S))).is_empty());
    let [old, _] = scanned();
    assert_eq!(
        seq(&scan(&mut t, &[old], client, client)),
        [(Start, "fa-3")]
    );
    let u = tuple(UDP, "10.0.0.5:40000", "10.0.0.53:53");
    assert_eq!(
        seq(&feed(
            &mut t,
            &mut udp,
            udp_open(u, 77, client, t0 + 2 * S, true)
        )),
        [(Start, "fa-4")]
    );
    udp.counters.insert(
        udp_key(&u, 77),
        udp_counters(t0 + 2 * S, t0 + 3 * S, (120, 40), (1, 1)),
    );
    // The last snapshot before shutdown gives the TCP ends their counters.
    let live = [
        sock_info(a_local, a_remote, ESTABLISHED, tcp_counters(50, 101, 4, 5)),
        sock_info(
            "10.0.0.5:41000",
            "10.0.0.9:443",
            ESTABLISHED,
            tcp_counters(900, 401, 12, 11),
        ),
    ];
    t.refresh_live_totals(NETNS, &live);

    let mut out = Vec::new();
    let before = boot_ns_now();
    t.shutdown(&mut udp, &mut out);
    let after = boot_ns_now();
    let of =
        |id: &str| -> Vec<&Tracked> { out.iter().filter(|e| e.event.ids.flow_id == id).collect() };
    assert_eq!(out.len(), 5);
    for tr in &out {
        let ev = &tr.event;
        if ev.action == End {
            assert_eq!(ending(ev), (Some("agent_shutdown"), None, None));
            assert_eq!((ev.rtt_us, ev.retransmits), (None, None));
        }
    }
    // TCP ends are timed at the shutdown.
    let tcp_end = |ev: &FlowEvent| {
        assert_eq!(ev.end_time, Some(ev.time));
        assert_between(clock, ev.time, before, after);
    };
    let a_end = of("fa-1");
    assert_eq!(a_end.len(), 1);
    let ev = &a_end[0].event;
    assert_eq!(ev.action, End);
    tcp_end(ev);
    assert_eq!(ev.counters, Some(ctr([50, 100, 4, 5], [50, 100, 4, 5])));
    assert_eq!(ev.duration_ns, Some(ev.time.0 - clock.wall(t0).0));

    let p_events = of("fa-2");
    let actions: Vec<_> = p_events.iter().map(|e| e.event.action).collect();
    assert_eq!(
        actions,
        [Start, End],
        "a start first for a flow never started"
    );
    assert_eq!(p_events[0].event.time, clock.wall(t0 + S));
    assert_eq!(p_events[0].event.attribution, Some(Attribution::Listener));
    assert_eq!(p_events[1].event.direction, Inbound);
    assert_eq!(p_events[1].event.counters, None, "no snapshot found it");
    tcp_end(&p_events[1].event);

    let old_end = &of("fa-3")[0].event;
    assert_eq!(old_end.action, End);
    tcp_end(old_end);
    assert!(!old_end.start_observed);
    assert_eq!(old_end.duration_ns, None);
    assert_eq!(
        old_end.counters,
        Some(ctr([900, 400, 12, 11], [200, 100, 3, 3]))
    );

    let udp_end = &of("fa-4")[0].event;
    assert_eq!(udp_end.action, End);
    assert_eq!(udp_end.end_time, Some(clock.wall(t0 + 3 * S)));
    assert_eq!(udp_end.duration_ns, Some(S));
    assert_eq!(
        udp_end.counters,
        Some(udp_ctr([120, 40, 1, 1], [120, 40, 1, 1]))
    );
    assert_between(clock, udp_end.time, before, after);

    assert_eq!((t.open_flows(), udp.counters.len()), (0, 0));
}

#[test]
fn reconfigure_keeps_open_flows_and_their_ids() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    let (local, remote) = ("10.0.0.5:40000", "10.0.0.9:443");
    let tu = tuple(TCP, local, remote);
    let open = opened(&tcp_sock(0xa000, tu, Active, task(100, 100), t0), t0 + MS);
    let tcp_start = feed(&mut t, &mut udp, Record::TcpOpen(open));
    let u = tuple(UDP, "10.0.0.5:40001", "10.0.0.53:53");
    let udp_start = feed(&mut t, &mut udp, udp_open(u, 77, task(100, 100), t0, true));
    udp.counters
        .insert(udp_key(&u, 77), udp_counters(t0, t0 + S, (120, 40), (1, 1)));

    t.reconfigure(FlowTableConfig {
        update_interval: Duration::from_secs(60),
        udp_idle_timeout: Duration::from_secs(120),
        accept_wait: Duration::from_secs(1),
        community_id_seed: 7,
    });
    assert_eq!((t.config().community_id_seed, t.open_flows()), (7, 2));
    // The old timings would have updated both and then ended the UDP flow idle.
    assert!(tick(&mut t, &mut udp, t0 + 30 * S).is_empty());
    assert!(tick(&mut t, &mut udp, t0 + 45 * S).is_empty());
    assert!(t.tcp_updates_due(t0 + 30 * S).is_empty());
    let up = tick(&mut t, &mut udp, t0 + 61 * S);
    assert_eq!(seq(&up), [(Update, "fa-2")]);
    assert_eq!(up[0].event.ids, udp_start[0].event.ids);

    let end = feed(
        &mut t,
        &mut udp,
        Record::TcpClose(closed(&open, t0 + 62 * S, ESTABLISHED, &[])),
    );
    assert_eq!(seq(&end), [(End, "fa-1")]);
    assert_eq!(end[0].event.ids, tcp_start[0].event.ids);
    assert_eq!(end[0].event.ids.community_id, cid(0, TCP, local, remote));
    // A new flow of the same endpoints: the new seed.
    let again = opened(
        &tcp_sock(0xa100, tu, Active, task(100, 100), t0 + 63 * S),
        t0 + 63 * S,
    );
    let start = feed(&mut t, &mut udp, Record::TcpOpen(again));
    assert_eq!(seq(&start), [(Start, "fa-3")]);
    assert_eq!(start[0].event.ids.community_id, cid(7, TCP, local, remote));
    assert_ne!(
        start[0].event.ids.community_id,
        tcp_start[0].event.ids.community_id
    );
}

// ---- bounded state: records lost ----

/// Reconciles `netns` with sock_diag's `sockets` (None: the namespace is gone).
fn reconcile(
    t: &mut FlowTable,
    netns: u32,
    sockets: Option<&[TcpSockInfo]>,
    now: u64,
) -> Vec<Tracked> {
    let mut out = Vec::new();
    t.reconcile_tcp(netns, sockets, now, &mut out);
    out
}

#[test]
fn tcp_flows_whose_close_was_lost_end_close_missed_after_a_grace() {
    let (mut t, mut udp) = (table(), FakeUdp::default());
    let t0 = boot_ns_now() - 100 * S;
    let clock = t.clock;
    let owner = task(100, 100);
    let grace = RECONCILE_GRACE.as_nanos() as u64;
    let socks = [
        ("10.0.0.5:40000", "10.0.0.9:443"),
        ("10.0.0.5:40001", "10.0.0.9:443"),
        ("10.0.0.5:40002", "10.0.0.9:443"),
        ("10.0.0.5:40003", "10.0.0.9:443"),
    ];
    let recs: Vec<TcpRecord> = socks
        .iter()
        .enumerate()
        .map(|(i, (l, r))| {
            let s = tcp_sock(
                0xa000 + i as u64 * 0x100,
                tuple(TCP, l, r),
                Active,
                owner,
                t0,
            );
            feed(&mut t, &mut udp, Record::TcpOpen(opened(&s, t0 + MS)));
            opened(&s, t0 + MS)
        })
        .collect();
    // One connection of another namespace, and one found open at start-up.
    let other = TcpRecord {
        netns: NETNS + 1,
        ..tcp_sock(
            0xf000,
            tuple(TCP, "10.1.0.5:5000", "10.1.0.9:80"),
            Active,
            owner,
            t0,
        )
    };
    feed(&mut t, &mut udp, Record::TcpOpen(opened(&other, t0 + MS)));
    let [old, _] = scanned();
    scan(&mut t, &[old], owner, owner);
    assert_eq!((t.open_flows(), t.partial.len()), (6, 1));
    let live = |i: usize| TcpSockInfo {
        cookie: recs[i].cookie,
        ..sock_info(
            socks[i].0,
            socks[i].1,
            ESTABLISHED,
            tcp_counters(10, 11, 2, 3),
        )
    };

    // sock_diag lists 0 and 2; 1 and 3 were closed (their close records lost or in flight),
    // and so was the one found at start-up.
    let t1 = t0 + 10 * S;
    assert!(reconcile(&mut t, NETNS, Some(&[live(0), live(2)]), t1).is_empty());
    // The close record that was still in flight wins.
    let close3 = closed(&recs[3], t1 + S, ESTABLISHED, &[FIN_WAIT1, FIN_WAIT2]);
    let end3 = feed(&mut t, &mut udp, Record::TcpClose(close3));
    assert_eq!(seq(&end3), [(End, "fa-4")]);
    assert_ne!(end3[0].event.end_reason, Some("close_missed"));
    // Within the grace nothing ends.
    assert!(reconcile(&mut t, NETNS, Some(&[live(0), live(2)]), t1 + grace - 1).is_empty());
    // 2 is missed once, then found again: it is open (a dump can miss a socket).
    assert!(reconcile(&mut t, NETNS, Some(&[live(0)]), t1 + grace - 1).is_empty());

    let at = t1 + grace;
    let out = reconcile(&mut t, NETNS, Some(&[live(0), live(2)]), at);
    let mut ended: Vec<&str> = out.iter().map(|e| e.event.ids.flow_id.as_str()).collect();
    ended.sort_unstable();
    assert_eq!(ended, ["fa-2", "fa-6"]);
    for e in &out {
        let ev = &e.event;
        assert_eq!(ev.action, End);
        assert_eq!(ending(ev), (Some("close_missed"), None, None));
        assert_eq!(
            (ev.end_time, ev.time),
            (Some(clock.wall(at)), clock.wall(at))
        );
    }
    let partial_end = out.iter().find(|e| e.event.ids.flow_id == "fa-6").unwrap();
    assert!(!partial_end.event.start_observed);
    assert_eq!(t.missed_closes, 2);
    assert!(
        t.partial.is_empty(),
        "the start-up scan's index forgets it too"
    );
    assert_eq!(t.open_flows(), 3, "0, 2 and the other namespace's");

    // Endpoints reused by a later socket (another cookie): the flow's own socket is gone.
    let reused = TcpSockInfo {
        cookie: 0x9999,
        ..live(0)
    };
    assert!(reconcile(&mut t, NETNS, Some(&[reused, live(2)]), at + S).is_empty());
    let out = reconcile(&mut t, NETNS, Some(&[reused, live(2)]), at + S + grace);
    assert_eq!(seq(&out), [(End, "fa-1")]);

    // A namespace that no longer exists took its sockets with it.
    assert!(reconcile(&mut t, NETNS + 1, None, at + S).is_empty());
    let out = reconcile(&mut t, NETNS + 1, None, at + S + grace);
    assert_eq!(seq(&out), [(End, "fa-5")]);
    assert_eq!(out[0].event.end_reason, Some("close_missed"));
    assert_eq!((t.open_flows(), t.missed_closes), (1, 4));
    assert_eq!(t.tcp_namespaces(), HashSet::from([NETNS]));
}

#[test]
fn tcp_reconciliation_runs_every_30_s_or_every_update_interval() {
    let mut t = table();
    let t0 = boot_ns_now();
    // The update interval (10 s) is the shorter.
    assert!(t.tcp_reconciliation_due(t0));
    assert!(!t.tcp_reconciliation_due(t0 + 9 * S));
    assert!(t.tcp_reconciliation_due(t0 + 10 * S));
    t.reconfigure(FlowTableConfig {
        update_interval: Duration::from_secs(60),
        ..t.config().clone()
    });
    assert!(!t.tcp_reconciliation_due(t0 + 39 * S));
    assert!(t.tcp_reconciliation_due(t0 + 40 * S));
    assert_eq!(RECONCILE_INTERVAL, Duration::from_secs(30));
}

#[test]
fn a_full_table_refuses_new_flows_and_counts_them() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    t.max_flows = 2;
    let owner = task(100, 100);
    let a = opened(
        &tcp_sock(
            0xa000,
            tuple(TCP, "10.0.0.5:40000", "10.0.0.9:443"),
            Active,
            owner,
            t0,
        ),
        t0,
    );
    let u = tuple(UDP, "10.0.0.5:5000", "10.0.0.53:53");
    assert_eq!(
        seq(&feed(&mut t, &mut udp, Record::TcpOpen(a))),
        [(Start, "fa-1")]
    );
    assert_eq!(
        seq(&feed(&mut t, &mut udp, udp_open(u, 7, owner, t0, true))),
        [(Start, "fa-2")]
    );

    // Full: a TCP flow is not tracked while open...
    let b_tuple = tuple(TCP, "10.0.0.5:40001", "10.0.0.9:443");
    let b = opened(&tcp_sock(0xb000, b_tuple, Active, owner, t0 + S), t0 + S);
    assert!(feed(&mut t, &mut udp, Record::TcpOpen(b)).is_empty());
    // ...a UDP flow is lost, and a start-up scan's connection waits for its close too.
    let v = tuple(UDP, "10.0.0.5:5001", "10.0.0.53:53");
    assert!(feed(&mut t, &mut udp, udp_open(v, 8, owner, t0 + S, true)).is_empty());
    let [old, _] = scanned();
    assert!(scan(&mut t, &[old], owner, owner).is_empty());
    assert_eq!(t.refused, Refused { tcp: 2, udp: 1 });
    assert_eq!(
        t.evicted,
        Evicted { tcp: 0, udp: 1 },
        "the lost UDP flow is a loss"
    );
    assert_eq!(
        (t.open_flows(), t.udp_by_cookie.len(), t.partial.len()),
        (2, 1, 0)
    );
    assert!(t.udp_flow(8, (53, v.remote_addr)).is_none());

    // The untracked TCP flow's close reports it: start and end together, as it happened.
    let end = feed(
        &mut t,
        &mut udp,
        Record::TcpClose(closed(&b, t0 + 3 * S, ESTABLISHED, &[])),
    );
    assert_eq!(seq(&end), [(Start, "fa-3"), (End, "fa-3")]);
    let ev = &end[1].event;
    assert!(ev.start_observed);
    assert_eq!(
        (ev.local, ev.duration_ns),
        (ep("10.0.0.5:40001"), Some(2 * S))
    );
    assert_eq!(end[0].event.time, t.clock.wall(t0 + S));

    // Room again once a flow ends.
    feed(
        &mut t,
        &mut udp,
        Record::TcpClose(closed(&a, t0 + 4 * S, ESTABLISHED, &[])),
    );
    let c = opened(
        &tcp_sock(
            0xc000,
            tuple(TCP, "10.0.0.5:40002", "10.0.0.9:443"),
            Active,
            owner,
            t0 + 5 * S,
        ),
        t0 + 5 * S,
    );
    assert_eq!(
        seq(&feed(&mut t, &mut udp, Record::TcpOpen(c))),
        [(Start, "fa-4")]
    );
    assert_eq!(t.open_flows(), 2);
}

#[test]
fn udp_flows_whose_release_was_lost_end_idle_or_evicted() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    let owner = task(400, 400);
    // Socket 5 talks to two resolvers, socket 6 to one; no release record ever comes.
    let flows = [
        (tuple(UDP, "10.0.0.5:5000", "10.0.0.53:53"), 5),
        (tuple(UDP, "10.0.0.5:5000", "10.0.0.54:53"), 5),
        (tuple(UDP, "10.0.0.5:5001", "10.0.0.53:53"), 6),
    ];
    for (tu, cookie) in flows {
        feed(&mut t, &mut udp, udp_open(tu, cookie, owner, t0, true));
        udp.counters
            .insert(udp_key(&tu, cookie), udp_counters(t0, t0, (10, 10), (1, 1)));
    }
    assert_eq!((t.open_flows(), t.udp_by_cookie.len()), (3, 2));
    // The first goes on, the second falls silent, the third's counters are pushed out.
    udp.counters.insert(
        udp_key(&flows[0].0, 5),
        udp_counters(t0, t0 + 29 * S, (20, 20), (2, 2)),
    );
    udp.counters.remove(&udp_key(&flows[2].0, 6));
    let out = tick(&mut t, &mut udp, t0 + 30 * S);
    let mut ends: Vec<(&str, Option<&str>)> = out
        .iter()
        .filter(|e| e.event.action == End)
        .map(|e| (e.event.ids.flow_id.as_str(), e.event.end_reason))
        .collect();
    ends.sort_unstable();
    assert_eq!(ends, [("fa-2", Some("idle")), ("fa-3", Some("evicted"))]);
    // The socket index holds only what is still open.
    assert_eq!(t.udp_by_cookie.len(), 1);
    assert_eq!(t.udp_by_cookie[&5], [udp_key(&flows[0].0, 5)]);

    let out = tick(&mut t, &mut udp, t0 + 59 * S);
    assert_eq!(seq(&out), [(End, "fa-1")]);
    assert_eq!(out[0].event.end_reason, Some("idle"));
    assert_eq!((t.open_flows(), t.udp_by_cookie.len()), (0, 0));
    assert!(
        udp.counters.is_empty(),
        "the kernel's counters are forgotten too"
    );
    // A release that does come late finds nothing to end.
    assert!(feed(&mut t, &mut udp, udp_release(5, t0 + 60 * S)).is_empty());
}

#[test]
fn udp_flows_whose_socket_sock_diag_no_longer_lists_end_release_missed() {
    let (mut t, mut udp, t0) = (table(), FakeUdp::default(), boot_ns_now());
    let owner = task(400, 400);
    // Socket 5 is still open; socket 6 was released and its release record lost.
    let flows = [
        (tuple(UDP, "10.0.0.5:5000", "10.0.0.53:53"), 5),
        (tuple(UDP, "10.0.0.5:5001", "10.0.0.53:53"), 6),
    ];
    for (tu, cookie) in flows {
        feed(&mut t, &mut udp, udp_open(tu, cookie, owner, t0, true));
        udp.counters
            .insert(udp_key(&tu, cookie), udp_counters(t0, t0, (10, 10), (1, 1)));
    }
    assert_eq!(t.udp_namespaces(), HashSet::from([NETNS]));
    let listed = HashSet::from([5u64]);
    let mut out = Vec::new();
    // Missing once: marked, not ended (its release record may still be in the ring).
    assert_eq!(
        t.reconcile_udp(NETNS, Some(&listed), t0 + S, &mut udp, &mut out),
        0
    );
    // Listed again before the grace ran out: the mark goes.
    let both = HashSet::from([5u64, 6]);
    assert_eq!(
        t.reconcile_udp(NETNS, Some(&both), t0 + 5 * S, &mut udp, &mut out),
        0
    );
    assert_eq!(
        t.reconcile_udp(NETNS, Some(&listed), t0 + 6 * S, &mut udp, &mut out),
        0
    );
    assert_eq!(
        t.reconcile_udp(NETNS, Some(&listed), t0 + 17 * S, &mut udp, &mut out),
        1
    );
    assert_eq!(seq(&out), [(End, "fa-2")]);
    assert_eq!(out[0].event.end_reason, Some("release_missed"));
    assert_eq!(
        out[0].event.counters.as_ref().map(|c| c.in_bytes),
        Some(10),
        "counters as the kernel last had them"
    );
    assert_eq!((t.missed_releases, t.open_flows()), (1, 1));
    assert_eq!(t.udp_by_cookie.keys().collect::<Vec<_>>(), [&5]);
    // A namespace that is gone takes its sockets with it.
    let mut out = Vec::new();
    t.reconcile_udp(NETNS, None, t0 + 18 * S, &mut udp, &mut out);
    assert_eq!(
        t.reconcile_udp(NETNS, None, t0 + 29 * S, &mut udp, &mut out),
        1
    );
    assert_eq!((t.missed_releases, t.open_flows()), (2, 0));
}
