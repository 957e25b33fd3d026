//! Native events the encoder tests translate: one connection of `curl` to a local HTTP server
//! seen from both sides (the values of the real events in docs/events.md), UDP over IPv6, a
//! refused connect, a flow open at start-up, one without a process, and a hostile process.
use crate::flows::{event::IntervalCounters, FlowEvent};
use crate::health::{KernelLosses, SinkReport, StatsEvent};

/// The client side of `curl -s http://127.0.0.1:18080/`, at its start.
pub fn tcp_out_start() -> FlowEvent {
    FlowEvent {
        timestamp: "2026-11-23T13:05:50.542313Z".into(),
        event_action: "start",
        flow_id: "bf79e3c617f7-1".into(),
        community_id: Some("1:Uw3Um7L1M9pG/AWDF7lN/zpVQdk=".into()),
        transport_protocol: "tcp",
        src_ip: "127.0.0.1".into(),
        src_port: 33596,
        dest_ip: "127.0.0.1".into(),
        dest_port: 18080,
        network_direction: "outbound",
        network_locality: "internal",
        local_orig: true,
        local_resp: false,
        start_observed: true,
        start_time: Some("2026-11-23T13:05:50.542313Z".into()),
        duration: Some(0.0),
        attribution: Some("connector"),
        pid: Some(6140),
        tid: Some(6141),
        ppid: Some(5769),
        process_name: Some("curl".into()),
        exe: Some("curl".into()),
        image_path: Some("/usr/bin/curl".into()),
        image_deleted: Some(false),
        command_line: Some("curl -s http://127.0.0.1:18080/".into()),
        process_args: Some(vec![
            "curl".into(),
            "-s".into(),
            "http://127.0.0.1:18080/".into(),
        ]),
        command_line_truncated: Some(false),
        process_start_time: Some("2026-11-23T13:05:50.530921Z".into()),
        process_entity_id: Some("3d1219c7-0000000340ab-000017fc".into()),
        parent_exe: Some("/usr/bin/bash".into()),
        uid: Some(0),
        user: Some("root".into()),
        gid: Some(0),
        group: Some("root".into()),
        cgroup_id: Some(1),
        netns: Some(4026531833),
        hostname: "vm".into(),
        ..FlowEvent::default()
    }
}

/// The same flow's end: a normal close.
pub fn tcp_out_end() -> FlowEvent {
    FlowEvent {
        timestamp: "2026-11-23T13:05:50.543381Z".into(),
        event_action: "end",
        end_time: Some("2026-11-23T13:05:50.543381Z".into()),
        duration: Some(0.001068809),
        end_reason: Some("fin"),
        conn_state: Some("SF"),
        history: Some("ShADdFf".into()),
        in_bytes: Some(549),
        out_bytes: Some(79),
        orig_bytes: Some(79),
        resp_bytes: Some(549),
        orig_pkts: Some(7),
        resp_pkts: Some(6),
        packet_count: Some(13),
        interval: Some(IntervalCounters {
            in_bytes: 549,
            out_bytes: 79,
            in_pkts: 6,
            out_pkts: 7,
        }),
        rtt_us: Some(25),
        retransmits: Some(0),
        ..tcp_out_start()
    }
}

/// The server side of that connection (python's http.server accepted it), with an fqdn.
pub fn tcp_in_end() -> FlowEvent {
    FlowEvent {
        flow_id: "bf79e3c617f7-2".into(),
        timestamp: "2026-11-23T13:05:50.543390Z".into(),
        end_time: Some("2026-11-23T13:05:50.543390Z".into()),
        start_time: Some("2026-11-23T13:05:50.542410Z".into()),
        duration: Some(0.00098),
        network_direction: "inbound",
        local_orig: false,
        local_resp: true,
        history: Some("ShAdDfF".into()),
        in_bytes: Some(79),
        out_bytes: Some(549),
        interval: Some(IntervalCounters {
            in_bytes: 79,
            out_bytes: 549,
            in_pkts: 7,
            out_pkts: 6,
        }),
        attribution: Some("acceptor"),
        pid: Some(5800),
        tid: Some(5800),
        ppid: Some(5769),
        process_name: Some("python3".into()),
        exe: Some("python3.13".into()),
        image_path: Some("/usr/bin/python3.13".into()),
        command_line: Some("python3 -m http.server 18080 --bind 127.0.0.1".into()),
        process_args: Some(
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
        process_start_time: Some("2026-11-23T13:00:01.000000Z".into()),
        process_entity_id: Some("3d1219c7-000000033f00-000016a8".into()),
        uid: Some(1000),
        user: Some("alice".into()),
        gid: Some(1000),
        group: Some("alice".into()),
        fqdn: Some("vm.example.org".into()),
        ..tcp_out_end()
    }
}

/// A UDP flow over IPv6 to an external peer, at an update.
pub fn udp6_update() -> FlowEvent {
    FlowEvent {
        timestamp: "2026-11-23T13:06:50.000100Z".into(),
        event_action: "update",
        flow_id: "bf79e3c617f7-3".into(),
        community_id: Some("1:ZZZ7L1M9pG/AWDF7lN/zpVQdk=".into()),
        transport_protocol: "udp",
        src_ip: "2001:db8::5".into(),
        src_port: 40000,
        dest_ip: "2001:db8:1::53".into(),
        dest_port: 53,
        network_direction: "outbound",
        network_locality: "external",
        local_orig: true,
        local_resp: false,
        start_observed: true,
        start_time: Some("2026-11-23T13:05:50.000000Z".into()),
        duration: Some(60.0001),
        in_bytes: Some(300),
        out_bytes: Some(100),
        orig_bytes: Some(100),
        resp_bytes: Some(300),
        orig_pkts: Some(2),
        resp_pkts: Some(3),
        orig_ip_bytes: Some(196),
        resp_ip_bytes: Some(444),
        packet_count: Some(5),
        interval: Some(IntervalCounters {
            in_bytes: 200,
            out_bytes: 50,
            in_pkts: 2,
            out_pkts: 1,
        }),
        attribution: Some("socket_user"),
        pid: Some(700),
        tid: Some(701),
        process_name: Some("resolver".into()),
        uid: Some(101),
        gid: Some(101),
        hostname: "vm".into(),
        ..FlowEvent::default()
    }
}

/// The end of an inbound UDP flow from an internal peer: only the peer sent.
pub fn udp_in_end() -> FlowEvent {
    FlowEvent {
        timestamp: "2026-11-23T13:07:00.000000Z".into(),
        event_action: "end",
        flow_id: "bf79e3c617f7-4".into(),
        community_id: Some("1:AAA7L1M9pG/AWDF7lN/zpVQdk=".into()),
        transport_protocol: "udp",
        src_ip: "10.0.0.9".into(),
        src_port: 5353,
        dest_ip: "10.0.0.5".into(),
        dest_port: 9999,
        network_direction: "inbound",
        network_locality: "internal",
        local_orig: false,
        local_resp: true,
        start_observed: true,
        start_time: Some("2026-11-23T13:06:00.000000Z".into()),
        end_time: Some("2026-11-23T13:06:00.000000Z".into()),
        duration: Some(0.0),
        end_reason: Some("idle"),
        in_bytes: Some(12),
        out_bytes: Some(0),
        orig_bytes: Some(12),
        resp_bytes: Some(0),
        orig_pkts: Some(1),
        resp_pkts: Some(0),
        orig_ip_bytes: Some(40),
        resp_ip_bytes: Some(0),
        packet_count: Some(1),
        interval: Some(IntervalCounters {
            in_bytes: 12,
            out_bytes: 0,
            in_pkts: 1,
            out_pkts: 0,
        }),
        hostname: "vm".into(),
        ..FlowEvent::default()
    }
}

/// A connect refused by the peer: start and end come together.
pub fn tcp_refused_end() -> FlowEvent {
    FlowEvent {
        flow_id: "bf79e3c617f7-5".into(),
        dest_port: 8081,
        end_reason: Some("refused"),
        conn_state: Some("REJ"),
        history: Some("Sr".into()),
        in_bytes: Some(0),
        out_bytes: Some(0),
        orig_bytes: Some(0),
        resp_bytes: Some(0),
        orig_pkts: Some(1),
        resp_pkts: Some(1),
        packet_count: Some(2),
        interval: Some(IntervalCounters {
            in_bytes: 0,
            out_bytes: 0,
            in_pkts: 1,
            out_pkts: 1,
        }),
        rtt_us: None,
        ..tcp_out_end()
    }
}

/// A connection open when the agent started (direction guessed), ended by a reset.
pub fn tcp_preexisting_end() -> FlowEvent {
    FlowEvent {
        flow_id: "bf79e3c617f7-6".into(),
        start_observed: false,
        start_time: None,
        duration: None,
        end_reason: Some("rst"),
        conn_state: Some("OTH"),
        history: Some("ShADR".into()),
        ..tcp_out_end()
    }
}

/// An established connection still open at shutdown: no state, counters from a snapshot.
pub fn tcp_shutdown_end() -> FlowEvent {
    FlowEvent {
        flow_id: "bf79e3c617f7-7".into(),
        end_reason: Some("agent_shutdown"),
        conn_state: None,
        history: None,
        rtt_us: None,
        retransmits: None,
        ..tcp_out_end()
    }
}

/// The start of an inbound flow whose listener is unknown: no process fields.
pub fn tcp_in_start_no_process() -> FlowEvent {
    FlowEvent {
        flow_id: "bf79e3c617f7-8".into(),
        timestamp: "2026-11-23T13:05:51.000000Z".into(),
        event_action: "start",
        community_id: Some("1:BBB7L1M9pG/AWDF7lN/zpVQdk=".into()),
        transport_protocol: "tcp",
        src_ip: "203.0.113.7".into(),
        src_port: 51000,
        dest_ip: "192.0.2.10".into(),
        dest_port: 22,
        network_direction: "inbound",
        network_locality: "external",
        local_orig: false,
        local_resp: true,
        start_observed: true,
        start_time: Some("2026-11-23T13:05:51.000000Z".into()),
        duration: Some(0.0),
        netns: Some(4026531833),
        hostname: "vm".into(),
        ..FlowEvent::default()
    }
}

/// Everything a process controls that ends up in text fields: an executable named with XML
/// and JSON metacharacters, a newline, control characters and a byte that is not UTF-8 (the
/// native event carries U+FFFD for it), and a command line to match.
pub const HOSTILE: &str = "ev\"il'<x>&amp;\n\r\t\u{1}\u{1b}\u{7f}\u{fffd}]]>-->";

pub fn hostile_start() -> FlowEvent {
    FlowEvent {
        process_name: Some(HOSTILE.chars().take(15).collect()),
        exe: Some(HOSTILE.into()),
        image_path: Some(format!("/tmp/{HOSTILE}")),
        command_line: Some(format!("/tmp/{HOSTILE} --x={HOSTILE}")),
        process_args: Some(vec![format!("/tmp/{HOSTILE}"), format!("--x={HOSTILE}")]),
        parent_exe: Some(format!("/tmp/p{HOSTILE}")),
        user: Some(format!("u{HOSTILE}")),
        group: Some(format!("g{HOSTILE}")),
        hostname: format!("h{HOSTILE}"),
        ..tcp_out_start()
    }
}

/// A stats report with one sink.
pub fn stats() -> StatsEvent {
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
        rate_limit: crate::ratelimit::RateLimitStats {
            suppressed_process: 480,
            summaries: 1,
            processes: 1,
            ..Default::default()
        },
    }
}

/// A `rate_limited` summary of one noisy process.
pub fn rate_limited() -> crate::ratelimit::SuppressedEvent {
    crate::ratelimit::SuppressedEvent {
        timestamp: "2026-11-23T13:06:00.000001Z".into(),
        event_action: "rate_limited",
        limiter: "process",
        rate: 10.0,
        burst: 20,
        suppressed_flows: 480,
        suppressed_tcp: 470,
        suppressed_udp: 10,
        first_suppressed_time: Some("2026-11-23T13:05:01.000001Z".into()),
        last_suppressed_time: Some("2026-11-23T13:05:02.000001Z".into()),
        suppressed_ended: 470,
        suppressed_in_bytes: 1000,
        suppressed_out_bytes: 2000,
        suppressed_packets: 3000,
        remote_ips: vec!["10.0.0.1".into(), "10.0.0.2".into()],
        remote_ips_truncated: false,
        dest_ports: vec![80, 443],
        dest_ports_truncated: false,
        process: crate::ratelimit::ProcessIdentity {
            pid: Some(4242),
            process_name: Some("curl".into()),
            exe: Some("curl".into()),
            image_path: Some("/usr/bin/curl".into()),
            process_entity_id: Some("abc-4242".into()),
            uid: Some(1000),
            user: Some("alice".into()),
            ..Default::default()
        },
        hostname: "vm".into(),
        host_id: None,
        boot_id: None,
        agent_version: "0.1.0",
    }
}

/// A `dns_query` event: curl resolved a name through a CNAME.
pub fn dns_query() -> crate::flows::dns_event::DnsEvent {
    use crate::flows::dns_event::DnsAnswer;
    crate::flows::dns_event::DnsEvent {
        timestamp: "2026-11-23T13:06:00.000001Z".into(),
        event_action: "dns_query",
        transport_protocol: "udp",
        client_ip: "10.0.0.5".into(),
        client_port: 40000,
        resolver_ip: "10.0.0.53".into(),
        resolver_port: 53,
        network_locality: "internal",
        transaction_id: 4660,
        query_name: "www.a.test".into(),
        query_type: "A".into(),
        query_type_id: 1,
        response_code: "NOERROR".into(),
        response_code_id: 0,
        answers: vec![
            DnsAnswer {
                name: "www.a.test".into(),
                r#type: "CNAME".into(),
                ttl: 30,
                data: Some("cdn.b.test".into()),
            },
            DnsAnswer {
                name: "cdn.b.test".into(),
                r#type: "A".into(),
                ttl: 20,
                data: Some("10.0.0.1".into()),
            },
        ],
        answers_truncated: false,
        resolved_ips: vec!["10.0.0.1".into()],
        flow_id: Some("bf79e3c617f7-9".into()),
        community_id: Some("1:abc=".into()),
        process: crate::ratelimit::ProcessIdentity {
            pid: Some(4242),
            process_name: Some("curl".into()),
            exe: Some("curl".into()),
            image_path: Some("/usr/bin/curl".into()),
            process_entity_id: Some("abc-4242".into()),
            uid: Some(1000),
            user: Some("alice".into()),
            ..Default::default()
        },
        hostname: "vm".into(),
        host_id: None,
        boot_id: None,
        agent_version: "0.1.0",
    }
}

/// Every fixture flow event.
pub fn all_flows() -> Vec<FlowEvent> {
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
