//! What one event costs the agent in userspace, without the kernel: a realistic end event
//! (process with arguments, a DNS name, TLS fields) encoded in each format, and a whole flow
//! from its two kernel records (open, close) through the flow table to native bytes.
//!
//! `cargo bench -p flow-agent --bench encoders`; figures and targets in docs/performance.md.
use std::{hint::black_box, sync::Arc};

use flow_agent::{
    capture::Record,
    encode::Format,
    enrich::{Enricher, EnrichmentConfig},
    event::{
        AppInfo, AppProtocolSource, Attribution, Counters, Direction, Event, FlowAction, FlowEvent,
        FlowIds, HostInfo, IntervalCounters, Locality, ProcessIdentity, RemoteName, Sha256,
        TcpFlags, TlsInfo, Transport, WallTime,
    },
    flows::{table::UdpCounterSource, FlowTable, FlowTableConfig},
};
use flow_common::{
    RecordHeader, RecordKind, Role, Task, TcpCounters, TcpDetail, TcpRecord, Tuple, UdpCounters,
    UdpFlowKey, AF_INET, IPPROTO_TCP,
};

fn main() {
    divan::main();
}

fn host() -> Arc<HostInfo> {
    Arc::new(HostInfo {
        hostname: "web-01".into(),
        fqdn: Some("web-01.example.org".into()),
        machine_id: "3d1219c7a1b2c3d4e5f6a7b8c9d0e1f2".into(),
        boot_id: "8f0e1d2c-3b4a-5968-7a6b-5c4d3e2f1a0b".into(),
        os_name: Some("Debian GNU/Linux".into()),
        os_version: Some("12".into()),
        kernel: "6.1.0-27-amd64".into(),
        agent_version: "0.1.0",
    })
}

/// The end of an HTTPS connection of curl to a resolved name.
fn end_event() -> FlowEvent {
    let t0 = WallTime(1_764_000_000_542_313_000);
    let mut ev = FlowEvent::new(
        FlowAction::End,
        WallTime(t0.0 + 48_123_456),
        Transport::Tcp,
        ("10.0.0.5".parse().unwrap(), 43512),
        ("93.184.215.14".parse().unwrap(), 443),
        Direction::Outbound,
        host(),
    );
    ev.ids = Arc::new(FlowIds {
        flow_id: "3d1219c71a2b-2f".into(),
        community_id: Some("1:LQU9qZlK+B5F3KDmev6m5PMibrg=".into()),
    });
    ev.locality = Locality::External;
    ev.start_time = Some(t0);
    ev.end_time = Some(ev.time);
    ev.duration_ns = Some(48_123_456);
    ev.end_reason = Some("fin");
    ev.conn_state = Some("SF");
    ev.history = Some("ShADadFf".into());
    ev.tcp_flags = Some(TcpFlags {
        orig: 0x1b,
        resp: 0x1b,
    });
    ev.counters = Some(Counters {
        in_bytes: 5_321,
        out_bytes: 812,
        in_pkts: 9,
        out_pkts: 11,
        in_ip_bytes: Some(5_789),
        out_ip_bytes: Some(1_384),
        interval: IntervalCounters {
            in_bytes: 5_321,
            out_bytes: 812,
            in_pkts: 9,
            out_pkts: 11,
        },
    });
    ev.rtt_us = Some(11_873);
    ev.retransmits = Some(0);
    ev.orig_first_byte = Some(WallTime(t0.0 + 12_000_000));
    ev.resp_first_byte = Some(WallTime(t0.0 + 24_000_000));
    ev.attribution = Some(Attribution::Connector);
    ev.tid = Some(26817);
    ev.process = Some(Arc::new(ProcessIdentity {
        pid: 26817,
        ppid: 26401,
        comm: "curl".into(),
        exe: Some("curl".into()),
        image_path: Some("/usr/bin/curl".into()),
        image_deleted: Some(false),
        image_sha256: Some(Sha256([0x5a; 32])),
        command_line: Some("curl -s https://www.example.org/index.html".into()),
        args: Some(vec![
            "curl".into(),
            "-s".into(),
            "https://www.example.org/index.html".into(),
        ]),
        command_line_truncated: Some(false),
        start_time: Some(WallTime(t0.0 - 11_000_000)),
        entity_id: Some("3d1219c7-000000057ebf-000068c1".into()),
        parent_exe: Some("/usr/bin/bash".into()),
        parent_entity_id: Some("3d1219c7-000000041a00-00006721".into()),
        uid: 1000,
        user: Some("alice".into()),
        gid: 1000,
        group: Some("alice".into()),
        cgroup_id: 4711,
        cgroup_path: Some("/user.slice/user-1000.slice/session-3.scope".into()),
        container_id: None,
        container_runtime: None,
        systemd_unit: Some("session-3.scope".into()),
        ..ProcessIdentity::default()
    }));
    ev.netns = Some(4026531833);
    ev.remote_name = Some(Arc::new(RemoteName {
        fqdn: "www.example.org".into(),
        chain: vec!["www.example.org".into(), "www.example.org.cdn.test".into()],
    }));
    ev.app = Some(Arc::new(AppInfo {
        protocol: Some(("tls", AppProtocolSource::Payload)),
        info: Some("TLS 1.3 www.example.org h2".into()),
        tls: Some(TlsInfo {
            version: Some("TLS 1.3".into()),
            cipher: Some(0x1301),
            server_name: Some("www.example.org".into()),
            alpn: Some("h2".into()),
            alpn_offered: vec!["h2".into(), "http/1.1".into()],
            // A browser-like offer: the suites are encoded as names in ECS and OCSF.
            client_ciphers: vec![
                0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
                0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
            ],
            ja3: Some("773906b0efdefa24a7f2b8eb6985bf37".into()),
            ja3s: Some("eb1d94daa7e0344597e756a1fb6e7054".into()),
            ja4: Some("t13d1516h2_8daaf6152771_e5627efa2ab1".into()),
            ja4s: Some("t130200_1301_234ea6891581".into()),
            client_hello_truncated: Some(false),
        }),
        orig_content: None,
        resp_content: None,
    }));
    ev
}

/// The start of the same connection: what Sysmon writes (event 3 once per connection).
fn start_event() -> FlowEvent {
    let mut ev = end_event();
    ev.action = FlowAction::Start;
    ev.time = ev.start_time.unwrap_or(ev.time);
    ev.end_time = None;
    ev.duration_ns = None;
    ev.end_reason = None;
    ev.conn_state = None;
    ev.history = Some("S".into());
    ev.tcp_flags = Some(TcpFlags {
        orig: 0x02,
        resp: 0,
    });
    ev.counters = None;
    ev.rtt_us = None;
    ev.retransmits = None;
    ev.orig_first_byte = None;
    ev.resp_first_byte = None;
    ev.app = None;
    ev
}

fn encode_one(bencher: divan::Bencher, format: Format) {
    // Sysmon writes only starts (event 3), Zeek only ends (conn.log): each gets the event it
    // has a record for, so every figure is the cost of a record written.
    let event = Event::Flow(match format {
        Format::Sysmon => start_event(),
        _ => end_event(),
    });
    let mut encoder = format.encoder();
    let mut out = Vec::with_capacity(4096);
    assert!(
        encoder.encode(&event, &mut out),
        "{} writes no record",
        format.name()
    );
    bencher.bench_local(|| {
        out.clear();
        black_box(encoder.encode(black_box(&event), &mut out));
    });
}

/// One end event with process, DNS name and TLS fields, encoded (Sysmon: the flow's start).
#[divan::bench(args = ["native", "ecs", "ocsf", "zeek", "sysmon"])]
fn encode(bencher: divan::Bencher, format: &str) {
    let format = Format::ALL
        .into_iter()
        .find(|f| f.name() == format)
        .expect("a format");
    encode_one(bencher, format);
}

struct NoUdp;

impl UdpCounterSource for NoUdp {
    fn read(&self, _: &UdpFlowKey) -> Option<UdpCounters> {
        None
    }
    fn remove(&mut self, _: &UdpFlowKey) {}
}

fn tcp_record(kind: RecordKind, sock: u64, port: u16, ts_ns: u64) -> TcpRecord {
    let mut comm = [0u8; 16];
    comm[..4].copy_from_slice(b"curl");
    let mut tuple = Tuple {
        family: AF_INET,
        local_port: port,
        remote_port: 443,
        protocol: IPPROTO_TCP,
        ..Tuple::default()
    };
    tuple.local_addr[..4].copy_from_slice(&[10, 0, 0, 5]);
    tuple.remote_addr[..4].copy_from_slice(&[93, 184, 215, 14]);
    TcpRecord {
        header: RecordHeader {
            kind: kind as u32,
            _pad: 0,
            ts_ns,
        },
        sock,
        open_ns: ts_ns,
        owner: Task {
            // This process: the process table knows it from /proc after the first record.
            pid: std::process::id(),
            tid: std::process::id(),
            uid: 1000,
            gid: 1000,
            comm,
            ..Task::default()
        },
        tuple,
        counters: TcpCounters::default(),
        netns: 4026531833,
        sk_err: 0,
        // SYN_SENT -> ESTABLISHED, then ESTABLISHED -> CLOSE.
        old_state: if kind == RecordKind::TcpClose { 1 } else { 2 },
        new_state: if kind == RecordKind::TcpClose { 7 } else { 1 },
        role: Role::Active as u8,
        owner_kind: 1,
        states_seen: 0b110,
        info: 0,
        _pad: 0,
        cookie: sock,
        detail: TcpDetail::default(),
    }
}

/// A TCP flow from its kernel records to native bytes: open and close through the flow tracker
/// and enrichment (process, user, app protocol), both events encoded.
#[divan::bench]
fn record_to_native_bytes(bencher: divan::Bencher) {
    let mut table = FlowTable::new(FlowTableConfig::default(), "bench".into());
    let mut enricher = Enricher::new(EnrichmentConfig {
        host: host(),
        ..EnrichmentConfig::default()
    });
    let mut encoder = Format::Native.encoder();
    let mut events = Vec::with_capacity(4);
    let mut out = Vec::with_capacity(4096);
    let mut sock = 0x1000u64;
    bencher.bench_local(|| {
        sock += 1;
        let port = 20_000 + (sock % 40_000) as u16;
        let ts = 1_000_000_000 + sock * 1_000;
        for (kind, ts) in [(RecordKind::TcpOpen, ts), (RecordKind::TcpClose, ts + 500)] {
            let r = tcp_record(kind, sock, port, ts);
            let record = match kind {
                RecordKind::TcpOpen => Record::TcpOpen(r),
                _ => Record::TcpClose(r),
            };
            table.handle(record, &mut NoUdp, &mut events);
        }
        for tracked in events.drain(..) {
            let ev = enricher.enrich(tracked);
            out.clear();
            black_box(encoder.encode(&Event::Flow(ev), &mut out));
        }
    });
}

/// A batch of 64 end events published to live subscribers (`tail`, `top`) of the native
/// format, none filtering: the write stage's cost of the live view, by number of subscribers.
#[divan::bench(args = [1, 4])]
fn live_publish(bencher: divan::Bencher, subscribers: usize) {
    let batch: Vec<Event> = (0..64).map(|_| Event::Flow(end_event())).collect();
    let mut publish = flow_agent::sink::subscribe::bench::publisher(subscribers, Format::Native);
    bencher.bench_local(|| publish(black_box(&batch)));
}
