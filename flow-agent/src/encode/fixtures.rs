//! Events the encoder tests translate: one connection of `curl` to a local HTTP server seen
//! from both sides (the values of the real events in docs/events.md), UDP over IPv6, a refused
//! connect, a flow open at start-up, one without a process, and a hostile process.
use std::{net::IpAddr, sync::Arc};

use crate::event::{
    Attribution, Counters, Direction, DnsAnswer, DnsEvent, EnrichLosses, ExitStatus, FlowAction,
    FlowEvent, FlowIds, HostInfo, IntervalCounters, KernelLosses, Limiter, Locality, ProcessAction,
    ProcessEvent, ProcessIdentity, RateLimitStats, RemoteName, SinkReport, StatsEvent,
    SuppressedEvent, Transport, WallTime,
};

/// A native RFC 3339 time as the model holds it.
pub(crate) fn t(rfc3339: &str) -> WallTime {
    let micros = super::time::epoch_micros(rfc3339).expect("fixture time");
    WallTime(micros as u64 * 1_000)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("fixture address")
}

fn ids(flow_id: &str, community_id: &str) -> Arc<FlowIds> {
    Arc::new(FlowIds {
        flow_id: flow_id.into(),
        community_id: Some(community_id.into()),
    })
}

/// The host every fixture runs on.
pub(crate) fn host() -> Arc<HostInfo> {
    Arc::new(HostInfo {
        hostname: "vm".into(),
        agent_version: "0.1.0",
        ..HostInfo::default()
    })
}

fn counters(in_bytes: u64, out_bytes: u64, in_pkts: u64, out_pkts: u64) -> Counters {
    Counters {
        in_bytes,
        out_bytes,
        in_pkts,
        out_pkts,
        in_ip_bytes: None,
        out_ip_bytes: None,
        interval: IntervalCounters {
            in_bytes,
            out_bytes,
            in_pkts,
            out_pkts,
        },
    }
}

pub(crate) fn curl() -> ProcessIdentity {
    ProcessIdentity {
        pid: 6140,
        ppid: 5769,
        comm: "curl".into(),
        exe: Some("curl".into()),
        image_path: Some("/usr/bin/curl".into()),
        image_deleted: Some(false),
        command_line: Some("curl -s http://127.0.0.1:18080/".into()),
        args: Some(vec![
            "curl".into(),
            "-s".into(),
            "http://127.0.0.1:18080/".into(),
        ]),
        command_line_truncated: Some(false),
        start_time: Some(t("2026-11-23T13:05:50.530921Z")),
        entity_id: Some("3d1219c7-0000000340ab-000017fc".into()),
        parent_exe: Some("/usr/bin/bash".into()),
        uid: 0,
        user: Some("root".into()),
        gid: 0,
        group: Some("root".into()),
        cgroup_id: 1,
        ..ProcessIdentity::default()
    }
}

/// The client side of `curl -s http://127.0.0.1:18080/`, at its start.
pub(crate) fn tcp_out_start() -> FlowEvent {
    let lo = ip("127.0.0.1");
    let mut ev = FlowEvent::new(
        FlowAction::Start,
        t("2026-11-23T13:05:50.542313Z"),
        Transport::Tcp,
        (lo, 33596),
        (lo, 18080),
        Direction::Outbound,
        host(),
    );
    ev.ids = ids("bf79e3c617f7-1", "1:Uw3Um7L1M9pG/AWDF7lN/zpVQdk=");
    ev.locality = Locality::Internal;
    ev.local_locality = Locality::Internal;
    ev.start_time = Some(ev.time);
    ev.duration_ns = Some(0);
    ev.attribution = Some(Attribution::Connector);
    ev.tid = Some(6141);
    ev.process = Some(Arc::new(curl()));
    ev.netns = Some(4026531833);
    ev
}

/// The event with its remote end resolved from `www.a.test` (through a CNAME), as DNS
/// enrichment names a flow to an address the host looked up.
pub fn named(ev: FlowEvent) -> FlowEvent {
    FlowEvent {
        remote_name: Some(Arc::new(RemoteName {
            fqdn: "www.a.test".into(),
            chain: vec!["www.a.test".into(), "cdn.b.test".into()],
        })),
        ..ev
    }
}

/// The same flow's end: a normal close.
pub(crate) fn tcp_out_end() -> FlowEvent {
    FlowEvent {
        time: t("2026-11-23T13:05:50.543381Z"),
        action: FlowAction::End,
        end_time: Some(t("2026-11-23T13:05:50.543381Z")),
        duration_ns: Some(1_068_809),
        end_reason: Some("fin"),
        conn_state: Some("SF"),
        history: Some("ShADdFf".into()),
        counters: Some(counters(549, 79, 6, 7)),
        rtt_us: Some(25),
        retransmits: Some(0),
        ..tcp_out_start()
    }
}

/// The server side of that connection (python's http.server accepted it), with an fqdn.
pub(crate) fn tcp_in_end() -> FlowEvent {
    let end = tcp_out_end();
    FlowEvent {
        ids: ids("bf79e3c617f7-2", "1:Uw3Um7L1M9pG/AWDF7lN/zpVQdk="),
        time: t("2026-11-23T13:05:50.543390Z"),
        end_time: Some(t("2026-11-23T13:05:50.543390Z")),
        start_time: Some(t("2026-11-23T13:05:50.542410Z")),
        duration_ns: Some(980_000),
        local: end.remote,
        remote: end.local,
        direction: Direction::Inbound,
        history: Some("ShAdDfF".into()),
        counters: Some(counters(79, 549, 7, 6)),
        attribution: Some(Attribution::Acceptor),
        tid: Some(5800),
        process: Some(Arc::new(ProcessIdentity {
            pid: 5800,
            ppid: 5769,
            comm: "python3".into(),
            exe: Some("python3.13".into()),
            image_path: Some("/usr/bin/python3.13".into()),
            image_deleted: Some(false),
            command_line: Some("python3 -m http.server 18080 --bind 127.0.0.1".into()),
            args: Some(
                [
                    "python3",
                    "-m",
                    "http.server",
                    "18080",
                    "--bind",
                    "127.0.0.1",
                ]
                .map(String::from)
                .to_vec(),
            ),
            command_line_truncated: Some(false),
            start_time: Some(t("2026-11-23T13:00:01.000000Z")),
            entity_id: Some("3d1219c7-000000033f00-000016a8".into()),
            parent_exe: Some("/usr/bin/bash".into()),
            uid: 1000,
            user: Some("alice".into()),
            gid: 1000,
            group: Some("alice".into()),
            cgroup_id: 1,
            ..ProcessIdentity::default()
        })),
        host: Arc::new(HostInfo {
            fqdn: Some("vm.example.org".into()),
            ..(*host()).clone()
        }),
        ..end
    }
}

/// A UDP flow over IPv6 to an external peer, at an update.
pub(crate) fn udp6_update() -> FlowEvent {
    let mut ev = FlowEvent::new(
        FlowAction::Update,
        t("2026-11-23T13:06:50.000100Z"),
        Transport::Udp,
        (ip("2001:db8::5"), 40000),
        (ip("2001:db8:1::53"), 53),
        Direction::Outbound,
        host(),
    );
    ev.ids = ids("bf79e3c617f7-3", "1:ZZZ7L1M9pG/AWDF7lN/zpVQdk=");
    ev.start_time = Some(t("2026-11-23T13:05:50.000000Z"));
    ev.duration_ns = Some(60_000_100_000);
    ev.counters = Some(Counters {
        in_ip_bytes: Some(444),
        out_ip_bytes: Some(196),
        interval: IntervalCounters {
            in_bytes: 200,
            out_bytes: 50,
            in_pkts: 2,
            out_pkts: 1,
        },
        ..counters(300, 100, 3, 2)
    });
    ev.attribution = Some(Attribution::SocketUser);
    ev.tid = Some(701);
    ev.process = Some(Arc::new(ProcessIdentity {
        pid: 700,
        comm: "resolver".into(),
        uid: 101,
        gid: 101,
        ..ProcessIdentity::default()
    }));
    ev
}

/// The end of an inbound UDP flow from an internal peer: only the peer sent.
pub(crate) fn udp_in_end() -> FlowEvent {
    let mut ev = FlowEvent::new(
        FlowAction::End,
        t("2026-11-23T13:07:00.000000Z"),
        Transport::Udp,
        (ip("10.0.0.5"), 9999),
        (ip("10.0.0.9"), 5353),
        Direction::Inbound,
        host(),
    );
    ev.ids = ids("bf79e3c617f7-4", "1:AAA7L1M9pG/AWDF7lN/zpVQdk=");
    ev.locality = Locality::Internal;
    ev.local_locality = Locality::Internal;
    ev.start_time = Some(t("2026-11-23T13:06:00.000000Z"));
    ev.end_time = Some(t("2026-11-23T13:06:00.000000Z"));
    ev.duration_ns = Some(0);
    ev.end_reason = Some("idle");
    ev.counters = Some(Counters {
        in_ip_bytes: Some(40),
        out_ip_bytes: Some(0),
        ..counters(12, 0, 1, 0)
    });
    ev
}

/// A connect refused by the peer: start and end come together.
pub(crate) fn tcp_refused_end() -> FlowEvent {
    let end = tcp_out_end();
    FlowEvent {
        ids: ids("bf79e3c617f7-5", "1:Uw3Um7L1M9pG/AWDF7lN/zpVQdk="),
        remote: (end.remote.0, 8081),
        end_reason: Some("refused"),
        conn_state: Some("REJ"),
        history: Some("Sr".into()),
        counters: Some(counters(0, 0, 1, 1)),
        rtt_us: None,
        ..end
    }
}

/// A connection open when the agent started (direction guessed), ended by a reset.
pub(crate) fn tcp_preexisting_end() -> FlowEvent {
    FlowEvent {
        ids: ids("bf79e3c617f7-6", "1:Uw3Um7L1M9pG/AWDF7lN/zpVQdk="),
        start_observed: false,
        start_time: None,
        duration_ns: None,
        end_reason: Some("rst"),
        conn_state: Some("OTH"),
        history: Some("ShADR".into()),
        ..tcp_out_end()
    }
}

/// An established connection still open at shutdown: no state, counters from a snapshot.
pub(crate) fn tcp_shutdown_end() -> FlowEvent {
    FlowEvent {
        ids: ids("bf79e3c617f7-7", "1:Uw3Um7L1M9pG/AWDF7lN/zpVQdk="),
        end_reason: Some("agent_shutdown"),
        conn_state: None,
        history: None,
        rtt_us: None,
        retransmits: None,
        ..tcp_out_end()
    }
}

/// The start of an inbound flow whose listener is unknown: no process fields.
pub(crate) fn tcp_in_start_no_process() -> FlowEvent {
    let mut ev = FlowEvent::new(
        FlowAction::Start,
        t("2026-11-23T13:05:51.000000Z"),
        Transport::Tcp,
        (ip("192.0.2.10"), 22),
        (ip("203.0.113.7"), 51000),
        Direction::Inbound,
        host(),
    );
    ev.ids = ids("bf79e3c617f7-8", "1:BBB7L1M9pG/AWDF7lN/zpVQdk=");
    ev.start_time = Some(ev.time);
    ev.duration_ns = Some(0);
    ev.netns = Some(4026531833);
    ev
}

/// Everything a process controls that ends up in text fields: an executable named with XML
/// and JSON metacharacters, a newline, control characters and a byte that is not UTF-8 (the
/// native event carries U+FFFD for it), and a command line to match.
pub(crate) const HOSTILE: &str = "ev\"il'<x>&amp;\n\r\t\u{1}\u{1b}\u{7f}\u{fffd}]]>-->";

pub(crate) fn hostile_start() -> FlowEvent {
    FlowEvent {
        process: Some(Arc::new(ProcessIdentity {
            comm: HOSTILE.chars().take(15).collect(),
            exe: Some(HOSTILE.into()),
            image_path: Some(format!("/tmp/{HOSTILE}")),
            command_line: Some(format!("/tmp/{HOSTILE} --x={HOSTILE}")),
            args: Some(vec![format!("/tmp/{HOSTILE}"), format!("--x={HOSTILE}")]),
            parent_exe: Some(format!("/tmp/p{HOSTILE}")),
            user: Some(format!("u{HOSTILE}")),
            group: Some(format!("g{HOSTILE}")),
            ..curl()
        })),
        host: Arc::new(HostInfo {
            hostname: format!("h{HOSTILE}"),
            ..(*host()).clone()
        }),
        ..tcp_out_start()
    }
}

/// The process of the summary and DNS fixtures.
fn noisy_curl() -> Arc<ProcessIdentity> {
    Arc::new(ProcessIdentity {
        pid: 4242,
        comm: "curl".into(),
        exe: Some("curl".into()),
        image_path: Some("/usr/bin/curl".into()),
        entity_id: Some("abc-4242".into()),
        uid: 1000,
        user: Some("alice".into()),
        ..ProcessIdentity::default()
    })
}

/// A stats report with one sink.
pub(crate) fn stats() -> StatsEvent {
    StatsEvent {
        timestamp: "2026-11-23T13:06:00.000001Z".into(),
        event_action: "stats",
        hostname: "vm".into(),
        agent_version: "0.1.0",
        uptime: 60.5,
        flows_open: 3,
        events_total: 42,
        kernel_losses: KernelLosses {
            ring_full: 1,
            tcp_closes_missed: 2,
            ..KernelLosses::default()
        },
        enrich_losses: EnrichLosses {
            dns_answers_unsolicited: 4,
            dns_events_dropped: 5,
            ..EnrichLosses::default()
        },
        sinks: vec![SinkReport {
            name: "siem".into(),
            kind: "syslog",
            format: "ecs",
            accepted: 40,
            sent: 38,
            queued: 2,
            dropped: 0,
            ..SinkReport::default()
        }],
        rate_limit: RateLimitStats {
            suppressed_process: 480,
            summaries: 1,
            processes: 1,
            ..Default::default()
        },
        state_bounds: Default::default(),
        watchdog: Default::default(),
        self_check: None,
    }
}

/// A `rate_limited` summary of one noisy process.
pub(crate) fn rate_limited() -> SuppressedEvent {
    SuppressedEvent {
        time: t("2026-11-23T13:06:00.000001Z"),
        limiter: Limiter::Process,
        rate: 10.0,
        burst: 20,
        suppressed_tcp: 470,
        suppressed_udp: 10,
        first_suppressed: Some(t("2026-11-23T13:05:01.000001Z")),
        last_suppressed: Some(t("2026-11-23T13:05:02.000001Z")),
        suppressed_ended: 470,
        suppressed_in_bytes: 1000,
        suppressed_out_bytes: 2000,
        suppressed_packets: 3000,
        remote_ips: vec![ip("10.0.0.1"), ip("10.0.0.2")],
        remote_ips_truncated: false,
        dest_ports: vec![80, 443],
        dest_ports_truncated: false,
        process: Some(noisy_curl()),
        host: host(),
    }
}

/// A `dns_query` event: curl resolved a name through a CNAME.
pub(crate) fn dns_query() -> DnsEvent {
    DnsEvent {
        time: t("2026-11-23T13:06:00.000001Z"),
        transport: Transport::Udp,
        client: (ip("10.0.0.5"), 40000),
        resolver: (ip("10.0.0.53"), 53),
        locality: Locality::Internal,
        transaction_id: 4660,
        query_name: "www.a.test".into(),
        query_type: 1,
        response_code: 0,
        answers: vec![
            DnsAnswer {
                name: "www.a.test".into(),
                rtype: 5,
                ttl: 30,
                data: Some("cdn.b.test".into()),
            },
            DnsAnswer {
                name: "cdn.b.test".into(),
                rtype: 1,
                ttl: 20,
                data: Some("10.0.0.1".into()),
            },
        ],
        answers_truncated: false,
        resolved_ips: vec![ip("10.0.0.1")],
        flow: Some(ids("bf79e3c617f7-9", "1:abc=")),
        process: Some(noisy_curl()),
        host: host(),
    }
}

/// Every fixture flow event.
pub(crate) fn all_flows() -> Vec<FlowEvent> {
    vec![
        tcp_out_start(),
        tcp_out_end(),
        tcp_in_end(),
        udp6_update(),
        udp_in_end(),
        tcp_refused_end(),
        tcp_preexisting_end(),
        tcp_shutdown_end(),
        tcp_in_start_no_process(),
        hostile_start(),
    ]
}

/// `curl`'s exec.
pub(crate) fn process_start() -> ProcessEvent {
    ProcessEvent {
        time: t("2026-11-23T13:05:50.530000Z"),
        action: ProcessAction::Start,
        process: Arc::new(curl()),
        exit: None,
        duration_ns: None,
        host: host(),
    }
}

/// `curl` killed by SIGKILL.
pub(crate) fn process_end() -> ProcessEvent {
    ProcessEvent {
        time: t("2026-11-23T13:05:50.744950Z"),
        action: ProcessAction::End,
        exit: Some(ExitStatus::of_wait_status(9)),
        duration_ns: Some(214_950_000),
        ..process_start()
    }
}
