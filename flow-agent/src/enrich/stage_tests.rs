//! Enrichment of the tracker's UDP flows and DNS answers: `dns_query` events.
use std::net::IpAddr;

use flow_common::{
    DnsRecord, RecordHeader, RecordKind, Task, Tuple, UdpCounters, UdpFlowKey, UdpOpenRecord,
    AF_INET, DNS_CAPTURE_LEN, IPPROTO_UDP,
};

use super::*;
use crate::{
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

/// An answer to 10.0.0.5:40000 from 10.0.0.53:53: www.a.test is 10.0.0.1.
fn answer(tuple: Tuple, cookie: u64) -> DnsRecord {
    let mut msg = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    msg.extend_from_slice(b"\x03www\x01a\x04test\x00\x00\x01\x00\x01");
    msg.extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x0a\x00\x00\x01");
    let mut data = [0u8; DNS_CAPTURE_LEN];
    data[..msg.len()].copy_from_slice(&msg);
    DnsRecord {
        header: RecordHeader {
            kind: RecordKind::Dns as u32,
            _pad: 0,
            ts_ns: 2_000_000_000,
        },
        cookie,
        tuple,
        egress: 0,
        len: msg.len() as u32,
        data,
    }
}

/// A tracker with one UDP flow of pid 4242 to a resolver, and an enricher.
fn stages(dns_events: bool) -> (FlowTable, Enricher, Tuple, u64) {
    let mut t = FlowTable::new(FlowTableConfig::default(), "ab".into());
    let e = Enricher::new(EnrichmentConfig {
        dns_events,
        ..EnrichmentConfig::default()
    });
    let tuple = Tuple {
        family: AF_INET,
        local_port: 40000,
        remote_port: 53,
        protocol: IPPROTO_UDP,
        _pad: 0,
        local_addr: v4([10, 0, 0, 5]),
        remote_addr: v4([10, 0, 0, 53]),
    };
    let cookie = 77;
    let owner = Task {
        pid: 4242,
        tid: 4242,
        uid: 1000,
        comm: *b"resolver\0\0\0\0\0\0\0\0",
        ..Task::default()
    };
    let open = UdpOpenRecord {
        header: RecordHeader {
            kind: RecordKind::UdpOpen as u32,
            _pad: 0,
            ts_ns: 1_000_000_000,
        },
        key: UdpFlowKey {
            cookie,
            remote_addr: tuple.remote_addr,
            remote_port: 53,
            family: AF_INET,
            _pad: 0,
        },
        owner,
        tuple,
        netns: 0,
        outbound_first: 1,
    };
    let mut out = Vec::new();
    t.handle(Record::UdpOpen(open), &mut NoCounters, &mut out);
    assert_eq!(out.len(), 1, "the DNS flow's start");
    (t, e, tuple, cookie)
}

#[test]
fn an_answer_is_an_event_of_the_asking_socket_only_when_enabled() {
    let (t, mut e, tuple, cookie) = stages(true);
    e.observe(&Record::Dns(Box::new(answer(tuple, cookie))), &t);
    let ev = e.take_dns_events().pop().expect("a dns_query event");
    assert_eq!(ev.query_name, "www.a.test");
    assert_eq!(ev.transaction_id, 0x1234);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
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
    assert!(e
        .names
        .lookup("10.0.0.1".parse().unwrap(), 2_000_000_001)
        .is_some());

    // An answer on a socket the agent does not track: no process, no flow.
    e.observe(&Record::Dns(Box::new(answer(tuple, 99))), &t);
    let ev = e.take_dns_events().pop().expect("a dns_query event");
    assert_eq!((ev.process, ev.flow), (None, None));

    let (t_off, mut off, tuple, cookie) = stages(false);
    off.observe(&Record::Dns(Box::new(answer(tuple, cookie))), &t_off);
    assert!(off.take_dns_events().is_empty(), "dns_events off");

    // A reload (SIGHUP) turns them off and on.
    e.reconfigure(EnrichmentConfig::default());
    e.observe(&Record::Dns(Box::new(answer(tuple, cookie))), &t);
    assert!(e.take_dns_events().is_empty(), "off after the reload");
    e.reconfigure(EnrichmentConfig {
        dns_events: true,
        ..EnrichmentConfig::default()
    });
    e.observe(&Record::Dns(Box::new(answer(tuple, cookie))), &t);
    assert_eq!(e.take_dns_events().len(), 1, "on after the next");
}
