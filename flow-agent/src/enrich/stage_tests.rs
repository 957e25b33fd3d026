//! Enrichment of the tracker's flows and DNS answers: names learned only from answers to the
//! queries a socket sent, per network namespace; `dns_query` events.
use std::net::IpAddr;

use flow_common::{
    DnsRecord, PayloadRecord, RecordHeader, RecordKind, Task, TcpCounters, TcpDetail, TcpRecord,
    Tuple, UdpCounters, UdpFlowKey, UdpOpenRecord, AF_INET, DNS_CAPTURE_LEN, IPPROTO_TCP,
    IPPROTO_UDP, PAYLOAD_CAPTURE_LEN,
};

use super::*;
use crate::{
    enrich::dns_names::DnsCounters,
    event::Transport,
    flows::{table::UdpCounterSource, FlowTable, FlowTableConfig},
};

struct NoCounters;
impl UdpCounterSource for NoCounters {
    fn read(&self, _: &UdpFlowKey) -> Option<UdpCounters> {
        None
    }
    fn remove(&mut self, _: &UdpFlowKey) {}
}

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut x = [0; 16];
    x[..4].copy_from_slice(&a);
    x
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const S: u64 = 1_000_000_000;
/// Two network namespaces (their inode numbers).
const NS_A: u32 = 4_026_532_001;
const NS_B: u32 = 4_026_532_002;

/// The question: www.a.test, A, IN.
const QUESTION: &[u8] = b"\x03www\x01a\x04test\x00\x00\x01\x00\x01";

/// A query for www.a.test with transaction `id`.
fn query_msg(id: u16) -> Vec<u8> {
    let mut msg = id.to_be_bytes().to_vec();
    msg.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    msg.extend_from_slice(QUESTION);
    msg
}

/// An answer with transaction `id`: www.a.test is 10.0.0.1 (TTL 60 s).
fn answer_msg(id: u16) -> Vec<u8> {
    let mut msg = id.to_be_bytes().to_vec();
    msg.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    msg.extend_from_slice(QUESTION);
    msg.extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x0a\x00\x00\x01");
    msg
}

fn dns_record(tuple: Tuple, cookie: u64, egress: bool, msg: &[u8], ts_ns: u64) -> Record {
    let mut data = [0u8; DNS_CAPTURE_LEN];
    data[..msg.len()].copy_from_slice(msg);
    Record::Dns(Box::new(DnsRecord {
        header: RecordHeader {
            kind: RecordKind::Dns as u32,
            _pad: 0,
            ts_ns,
        },
        cookie,
        tuple,
        egress: egress as u32,
        len: msg.len() as u32,
        data,
    }))
}

/// The query of socket `cookie` to 10.0.0.53:53 (id 0x1234), at 1.5 s.
fn query(tuple: Tuple, cookie: u64) -> Record {
    dns_record(tuple, cookie, true, &query_msg(0x1234), 1_500_000_000)
}

/// Its answer, to 10.0.0.5:40000 from 10.0.0.53:53, at 2 s.
fn answer(tuple: Tuple, cookie: u64) -> Record {
    dns_record(tuple, cookie, false, &answer_msg(0x1234), 2 * S)
}

/// A DNS message over TCP (after its two-byte length), the connection's first payload one way.
fn tcp_dns(cookie: u64, egress: bool, msg: &[u8], ts_ns: u64) -> Record {
    let mut data = [0u8; PAYLOAD_CAPTURE_LEN];
    data[..2].copy_from_slice(&(msg.len() as u16).to_be_bytes());
    data[2..2 + msg.len()].copy_from_slice(msg);
    Record::Payload(Box::new(PayloadRecord {
        header: RecordHeader {
            kind: RecordKind::Payload as u32,
            _pad: 0,
            ts_ns,
        },
        cookie,
        egress: egress as u32,
        len: msg.len() as u32 + 2,
        payload_len: msg.len() as u32 + 2,
        remote_port: 53,
        local_port: 40001,
        data,
    }))
}

fn resolver_client(netns: u32) -> Task {
    Task {
        pid: 4242,
        tid: 4242,
        uid: 1000,
        netns,
        comm: *b"resolver\0\0\0\0\0\0\0\0",
        ..Task::default()
    }
}

/// The tracker's UDP flow of socket `cookie` (owned by the resolver client in `netns`) from
/// 10.0.0.5:`local_port` to `remote`, opened at `ts_ns`.
fn udp_open(
    t: &mut FlowTable,
    cookie: u64,
    netns: u32,
    local_port: u16,
    remote: ([u8; 4], u16),
    ts_ns: u64,
) -> Vec<Tracked> {
    let tuple = Tuple {
        family: AF_INET,
        local_port,
        remote_port: remote.1,
        protocol: IPPROTO_UDP,
        _pad: 0,
        local_addr: v4([10, 0, 0, 5]),
        remote_addr: v4(remote.0),
    };
    let open = UdpOpenRecord {
        header: RecordHeader {
            kind: RecordKind::UdpOpen as u32,
            _pad: 0,
            ts_ns,
        },
        key: UdpFlowKey {
            cookie,
            remote_addr: tuple.remote_addr,
            remote_port: tuple.remote_port,
            family: AF_INET,
            _pad: 0,
        },
        owner: resolver_client(netns),
        tuple,
        netns,
        outbound_first: 1,
    };
    let mut out = Vec::new();
    t.handle(Record::UdpOpen(open), &mut NoCounters, &mut out);
    out
}

/// The remote name of a new UDP flow (socket `cookie`) to 10.0.0.1:443 in `netns`.
fn name_of_flow_to_10_0_0_1(
    t: &mut FlowTable,
    e: &mut Enricher,
    cookie: u64,
    netns: u32,
) -> Option<String> {
    let mut out = udp_open(t, cookie, netns, 50000, ([10, 0, 0, 1], 443), 3 * S);
    let ev = e.enrich(out.pop().expect("the flow's start"));
    assert_eq!(ev.netns, (netns != 0).then_some(netns));
    ev.remote_name.map(|n| n.fqdn.clone())
}

/// A tracker with one UDP flow of pid 4242 in `netns` to a resolver, and an enricher.
fn stages_in(dns_events: bool, netns: u32) -> (FlowTable, Enricher, Tuple, u64) {
    let mut t = FlowTable::new(FlowTableConfig::default(), "ab".into());
    let e = Enricher::new(EnrichmentConfig {
        dns_events,
        ..EnrichmentConfig::default()
    });
    let cookie = 77;
    let out = udp_open(&mut t, cookie, netns, 40000, ([10, 0, 0, 53], 53), S);
    assert_eq!(out.len(), 1, "the DNS flow's start");
    let tuple = Tuple {
        family: AF_INET,
        local_port: 40000,
        remote_port: 53,
        protocol: IPPROTO_UDP,
        _pad: 0,
        local_addr: v4([10, 0, 0, 5]),
        remote_addr: v4([10, 0, 0, 53]),
    };
    (t, e, tuple, cookie)
}

fn stages(dns_events: bool) -> (FlowTable, Enricher, Tuple, u64) {
    stages_in(dns_events, 0)
}

#[test]
fn an_answer_is_an_event_of_the_asking_socket_only_when_enabled() {
    let (t, mut e, tuple, cookie) = stages(true);
    e.observe(&query(tuple, cookie), &t);
    assert!(e.take_dns_events().is_empty(), "no event for the query");
    e.observe(&answer(tuple, cookie), &t);
    let ev = e.take_dns_events().pop().expect("a dns_query event");
    assert_eq!(ev.query_name, "www.a.test");
    assert_eq!(ev.transaction_id, 0x1234);
    assert_eq!(ev.resolved_ips, vec![ip("10.0.0.1")]);
    assert_eq!(ev.client, (ip("10.0.0.5"), 40000));
    assert_eq!(ev.resolver, (ip("10.0.0.53"), 53));
    assert_eq!(ev.transport, Transport::Udp);
    let p = ev.process.as_deref().expect("the asking process");
    assert_eq!((p.pid, p.uid), (4242, 1000));
    let flow = ev.flow.as_deref().expect("the DNS flow");
    assert_eq!(flow.flow_id, "ab-1");
    assert!(flow.community_id.is_some());
    // The flow still names the address.
    assert!(e.names.lookup(0, ip("10.0.0.1"), 2 * S + 1).is_some());

    // An answer on a socket the agent does not track: no process, no flow.
    e.observe(&query(tuple, 99), &t);
    e.observe(&answer(tuple, 99), &t);
    let ev = e.take_dns_events().pop().expect("a dns_query event");
    assert_eq!((ev.process, ev.flow), (None, None));

    let (t_off, mut off, tuple, cookie) = stages(false);
    off.observe(&query(tuple, cookie), &t_off);
    off.observe(&answer(tuple, cookie), &t_off);
    assert!(off.take_dns_events().is_empty(), "dns_events off");

    // A reload (SIGHUP) turns them off and on.
    e.reconfigure(EnrichmentConfig::default());
    e.observe(&query(tuple, cookie), &t);
    e.observe(&answer(tuple, cookie), &t);
    assert!(e.take_dns_events().is_empty(), "off after the reload");
    e.reconfigure(EnrichmentConfig {
        dns_events: true,
        ..EnrichmentConfig::default()
    });
    e.observe(&query(tuple, cookie), &t);
    e.observe(&answer(tuple, cookie), &t);
    assert_eq!(e.take_dns_events().len(), 1, "on after the next");
    assert_eq!(e.names.counters, DnsCounters::default(), "nothing refused");
}

#[test]
fn an_answer_to_a_socket_that_asked_nothing_names_nothing_and_makes_no_event() {
    let (mut t, mut e, tuple, cookie) = stages(true);
    // Forged: from a resolver's port 53 to a socket with no query waiting.
    e.observe(&answer(tuple, cookie), &t);
    assert!(e.take_dns_events().is_empty(), "no event");
    assert!(e.names.is_empty(), "no name");
    assert_eq!(e.names.counters.unsolicited, 1);
    assert_eq!(name_of_flow_to_10_0_0_1(&mut t, &mut e, 500, 0), None);

    // The socket asked, but the answer has another id, or comes from another resolver:
    // refused, and the query still waits for its real answer.
    e.observe(&query(tuple, cookie), &t);
    e.observe(
        &dns_record(tuple, cookie, false, &answer_msg(0x4321), 2 * S),
        &t,
    );
    let mut elsewhere = tuple;
    elsewhere.remote_addr = v4([10, 0, 0, 54]);
    e.observe(&answer(elsewhere, cookie), &t);
    assert!(e.take_dns_events().is_empty());
    assert!(e.names.is_empty());
    assert_eq!(e.names.counters.mismatched, 2);
    // Garbage is counted apart.
    e.observe(
        &dns_record(
            tuple,
            cookie,
            false,
            b"\x12\x34\x81\x80\x00\x01garbage",
            2 * S,
        ),
        &t,
    );
    assert_eq!(e.names.counters.malformed, 1);

    e.observe(&answer(tuple, cookie), &t);
    assert_eq!(e.take_dns_events().len(), 1, "the real answer");
    assert_eq!(
        name_of_flow_to_10_0_0_1(&mut t, &mut e, 501, 0).as_deref(),
        Some("www.a.test")
    );
    // The same answer again (the query is consumed): refused, no second event.
    e.observe(&answer(tuple, cookie), &t);
    assert!(e.take_dns_events().is_empty());
    assert_eq!(e.names.counters.unsolicited, 2);
}

#[test]
fn names_are_learned_and_used_per_network_namespace() {
    let (mut t, mut e, tuple, cookie) = stages_in(false, NS_A);
    e.observe(&query(tuple, cookie), &t);
    e.observe(&answer(tuple, cookie), &t);
    assert!(e.names.lookup(NS_A, ip("10.0.0.1"), 3 * S).is_some());
    // A flow of the namespace that asked carries the name; flows of others do not.
    assert_eq!(
        name_of_flow_to_10_0_0_1(&mut t, &mut e, 500, NS_A).as_deref(),
        Some("www.a.test")
    );
    assert_eq!(name_of_flow_to_10_0_0_1(&mut t, &mut e, 501, NS_B), None);
    assert_eq!(name_of_flow_to_10_0_0_1(&mut t, &mut e, 502, 0), None);
}

/// The tracker's TCP connection (socket `cookie`) from 10.0.0.5:40001 to 10.0.0.53:53 by the
/// resolver client in `netns`.
fn tcp_open(t: &mut FlowTable, cookie: u64, netns: u32) {
    let rec = TcpRecord {
        header: RecordHeader {
            kind: RecordKind::TcpOpen as u32,
            _pad: 0,
            ts_ns: S,
        },
        sock: 0xffff_0000 + cookie,
        open_ns: S,
        owner: resolver_client(netns),
        tuple: Tuple {
            family: AF_INET,
            local_port: 40001,
            remote_port: 53,
            protocol: IPPROTO_TCP,
            _pad: 0,
            local_addr: v4([10, 0, 0, 5]),
            remote_addr: v4([10, 0, 0, 53]),
        },
        counters: TcpCounters::default(),
        netns,
        sk_err: 0,
        old_state: flow_common::tcp_state::SYN_SENT,
        new_state: flow_common::tcp_state::ESTABLISHED,
        role: 1,
        owner_kind: 1,
        states_seen: 0,
        info: 0,
        _pad: 0,
        cookie,
        detail: TcpDetail::default(),
    };
    let mut out = Vec::new();
    t.handle(Record::TcpOpen(rec), &mut NoCounters, &mut out);
    assert_eq!(out.len(), 1, "the TCP DNS flow's start");
}

#[test]
fn dns_over_tcp_answers_teach_only_after_their_connections_query() {
    let (mut t, mut e, _, _) = stages_in(true, NS_A);
    // An answer as a connection's first payload in, with no query out: refused.
    tcp_open(&mut t, 300, NS_A);
    e.observe(&tcp_dns(300, false, &answer_msg(0x1234), 2 * S), &t);
    assert!(e.take_dns_events().is_empty());
    assert!(e.names.is_empty());
    assert_eq!(e.names.counters.unsolicited, 1);
    // The query on one connection does not make another connection's answer believed.
    e.observe(&tcp_dns(301, true, &query_msg(0x1234), 2 * S), &t);
    e.observe(&tcp_dns(300, false, &answer_msg(0x1234), 2 * S), &t);
    assert!(e.names.is_empty());
    assert_eq!(e.names.counters.unsolicited, 2);

    // Query out, then its answer in, on one connection.
    tcp_open(&mut t, 302, NS_A);
    e.observe(&tcp_dns(302, true, &query_msg(0x1234), 2 * S), &t);
    e.observe(&tcp_dns(302, false, &answer_msg(0x1234), 2 * S), &t);
    let ev = e
        .take_dns_events()
        .pop()
        .expect("a dns_query event over TCP");
    assert_eq!(ev.transport, Transport::Tcp);
    assert_eq!(ev.query_name, "www.a.test");
    assert_eq!(ev.resolver, (ip("10.0.0.53"), 53));
    assert_eq!(
        name_of_flow_to_10_0_0_1(&mut t, &mut e, 500, NS_A).as_deref(),
        Some("www.a.test")
    );
    assert_eq!(name_of_flow_to_10_0_0_1(&mut t, &mut e, 501, NS_B), None);
}

/// An exec record of `pid` (its comm `prog`), started at `start_ns`, seen at `ts_ns`.
fn exec_record(pid: u32, start_ns: u64, ts_ns: u64) -> Box<flow_common::ExecRecord> {
    // SAFETY: ExecRecord is plain old data; all-zero is valid.
    let mut r: Box<flow_common::ExecRecord> = Box::new(unsafe { std::mem::zeroed() });
    r.header.kind = RecordKind::Exec as u32;
    r.header.ts_ns = ts_ns;
    r.task.pid = pid;
    r.task.tid = pid;
    r.task.start_ns = start_ns;
    r.task.uid = 1000;
    r.task.comm[..4].copy_from_slice(b"prog");
    r.path[..5].copy_from_slice(b"prog\0");
    r.path[128..132].copy_from_slice(b"bin\0");
    r.path_len = 2;
    r.args[..8].copy_from_slice(b"prog\0-x\0");
    r.args_len = 8;
    r.args_total = 8;
    r
}

#[test]
fn execs_and_exits_are_process_events_when_enabled() {
    let t = FlowTable::new(FlowTableConfig::default(), "ab".into());
    let mut e = Enricher::new(EnrichmentConfig {
        process_events: true,
        ..EnrichmentConfig::default()
    });
    let (pid, start) = (4_100_001, 7 * S);
    e.observe(&Record::Exec(exec_record(pid, start, start + 10)), &t);
    // The start waits for the exec's credentials, which the kernel writes next.
    e.observe(
        &Record::Creds(flow_common::CredsRecord {
            header: RecordHeader {
                kind: RecordKind::Creds as u32,
                _pad: 0,
                ts_ns: start + 11,
            },
            start_ns: start,
            pid,
            uid: 1000,
            gid: 1000,
            euid: 0,
            egid: 1000,
            auid: 1000,
            session_id: 5,
            _pad: 0,
        }),
        &t,
    );
    e.observe(
        &Record::Exit(flow_common::ExitRecord {
            header: RecordHeader {
                kind: RecordKind::Exit as u32,
                _pad: 0,
                ts_ns: start + 2 * S,
            },
            start_ns: start,
            pid,
            exit_code: 3 << 8,
        }),
        &t,
    );
    let events = e.take_process_events();
    assert_eq!(events.len(), 2, "{events:?}");
    let (s, end) = (&events[0], &events[1]);
    assert_eq!(s.action, crate::event::ProcessAction::Start);
    assert_eq!(s.process.image_path.as_deref(), Some("/bin/prog"));
    assert_eq!(s.process.command_line.as_deref(), Some("prog -x"));
    assert_eq!(
        (s.process.euid, s.process.session_id),
        (Some(0), Some(5)),
        "the exec's credentials"
    );
    assert_eq!(end.action, crate::event::ProcessAction::End);
    assert_eq!(end.exit.map(|x| (x.code, x.signal)), Some((3, None)));
    assert_eq!(end.duration_ns, Some(2 * S));
    assert_eq!(end.process.comm, "prog");
    assert_eq!(end.process.entity_id, s.process.entity_id);
    assert!(s.process.entity_id.is_some());

    // Off (the default): none.
    let mut off = Enricher::new(EnrichmentConfig::default());
    off.observe(&Record::Exec(exec_record(pid + 1, start, start + 10)), &t);
    assert!(off.take_process_events().is_empty());
}
