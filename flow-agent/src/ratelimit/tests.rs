use std::sync::Arc;

use super::{event::MAX_DISTINCT, *};
use crate::{
    event::{Counters, Direction, FlowIds, HostInfo, IntervalCounters, ProcessIdentity, Transport},
    units::Seconds,
};

const SEC: u64 = 1_000_000_000;

fn ev(flow: u32, action: &'static str, pid: u32, start_ns: u64) -> FlowEvent {
    let action = match action {
        "start" => FlowAction::Start,
        "update" => FlowAction::Update,
        _ => FlowAction::End,
    };
    let transport = if flow.is_multiple_of(2) {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    // Minute 0 of 2024-01-01, second `flow % 60`.
    let time = WallTime((1_704_067_200 + u64::from(flow % 60)) * 1_000_000_000);
    let remote = format!("10.0.1.{}", flow % 40).parse().unwrap();
    let mut ev = FlowEvent::new(
        action,
        time,
        transport,
        ("10.0.0.1".parse().unwrap(), 40000),
        (remote, 80 + (flow % 20) as u16),
        Direction::Outbound,
        Arc::new(HostInfo::default()),
    );
    ev.ids = Arc::new(FlowIds {
        flow_id: format!("f-{flow}"),
        community_id: None,
    });
    ev.process = Some(Arc::new(ProcessIdentity {
        pid,
        entity_id: Some(format!("{pid}-{start_ns}")),
        ..ProcessIdentity::default()
    }));
    if action == FlowAction::End {
        ev.counters = Some(Counters {
            in_bytes: 10,
            out_bytes: 20,
            in_pkts: 1,
            out_pkts: 2,
            in_ip_bytes: None,
            out_ip_bytes: None,
            interval: IntervalCounters::default(),
        });
    }
    ev
}

fn pid_of(e: &FlowEvent) -> Option<u32> {
    e.process.as_ref().map(|p| p.pid)
}

fn ids(events: &[FlowEvent]) -> Vec<&str> {
    events.iter().map(|e| e.ids.flow_id.as_str()).collect()
}

const T: WallTime = WallTime(0);

fn limiter(rate: f64, burst: u32) -> RateLimiter {
    RateLimiter::new(
        RateLimitConfig {
            enabled: true,
            per_process_rate: rate,
            per_process_burst: burst,
            summary_interval: Seconds(10.0),
            ..RateLimitConfig::default()
        },
        0,
    )
}

/// Start, update and end of flows `flows` of one process, all at `now`.
fn lifecycle(flows: std::ops::Range<u32>, pid: u32, start: u64) -> Vec<FlowEvent> {
    let mut v = Vec::new();
    for f in flows {
        for a in ["start", "update", "end"] {
            v.push(ev(f, a, pid, start));
        }
    }
    v
}

#[test]
fn off_admits_everything() {
    let mut l = RateLimiter::new(RateLimitConfig::default(), 0);
    let mut events = lifecycle(0..500, 1, 1);
    l.apply(&mut events, 0);
    assert_eq!(events.len(), 1500);
}

#[test]
fn a_noisy_process_is_limited_and_every_flow_is_accounted_for() {
    let mut l = limiter(10.0, 20);
    let mut events = lifecycle(0..500, 7, 1);
    events.extend(lifecycle(1000..1005, 8, 1));
    l.apply(&mut events, SEC);
    // Whole flows: every admitted flow has its three events.
    let starts = events
        .iter()
        .filter(|e| e.action == FlowAction::Start)
        .count();
    assert_eq!(events.len(), starts * 3);
    let noisy = events
        .iter()
        .filter(|e| pid_of(e) == Some(7) && e.action == FlowAction::Start)
        .count();
    let quiet = events.iter().filter(|e| pid_of(e) == Some(8)).count();
    assert_eq!((noisy, quiet), (20, 15));
    let s = l.take_summaries(11 * SEC, T, false);
    assert_eq!(s.len(), 1);
    let s = &s[0];
    assert_eq!(
        (s.limiter, s.process.as_ref().map(|p| p.pid)),
        (Limiter::Process, Some(7))
    );
    assert_eq!(s.suppressed_flows() as usize + noisy, 500);
    assert_eq!(s.suppressed_tcp + s.suppressed_udp, 480);
    assert_eq!(s.suppressed_ended, 480);
    assert_eq!(
        (
            s.suppressed_in_bytes,
            s.suppressed_out_bytes,
            s.suppressed_packets
        ),
        (4800, 9600, 1440)
    );
    assert_eq!(s.remote_ips.len(), MAX_DISTINCT);
    assert!(s.remote_ips_truncated && s.dest_ports_truncated);
    assert_eq!(s.dest_ports.len(), MAX_DISTINCT);
    assert_eq!(
        s.first_suppressed,
        Some(WallTime(1_704_067_200_000_000_000))
    );
    assert_eq!(s.last_suppressed, Some(WallTime(1_704_067_259_000_000_000)));
    assert_eq!(l.stats().suppressed_process, 480);
    assert_eq!(l.stats().suppressed_open, 0);
}

#[test]
fn a_flow_is_never_cut_in_half() {
    let mut l = limiter(1.0, 1);
    // Flow 0 admitted, flow 1 suppressed; their later events follow the first decision,
    // even after the bucket refilled and after limiting was switched off.
    let mut first = vec![ev(0, "start", 1, 1), ev(2, "start", 1, 1)];
    l.apply(&mut first, 0);
    assert_eq!(first.len(), 1);
    let mut later = vec![ev(0, "update", 1, 1), ev(2, "update", 1, 1)];
    l.apply(&mut later, 100 * SEC);
    assert_eq!(ids(&later), ["f-0"]);
    l.reconfigure(RateLimitConfig::default());
    let mut last = vec![ev(0, "end", 1, 1), ev(2, "end", 1, 1), ev(4, "start", 1, 1)];
    l.apply(&mut last, 200 * SEC);
    assert_eq!(ids(&last), ["f-0", "f-4"]);
    assert_eq!(l.stats().suppressed_open, 0);
}

#[test]
fn processes_are_told_apart_by_start_time() {
    let mut l = limiter(1.0, 2);
    // The same pid twice: two processes, two bursts.
    let mut events = lifecycle(0..5, 9, 100);
    events.extend(lifecycle(10..15, 9, 200));
    l.apply(&mut events, 0);
    assert_eq!(events.len(), 12);
    let s = l.take_summaries(0, T, true);
    assert_eq!(s.len(), 2);
    assert!(s.iter().all(|s| s.suppressed_flows() == 3));
}

#[test]
fn the_global_limit_covers_all_processes() {
    let mut l = RateLimiter::new(
        RateLimitConfig {
            enabled: true,
            per_process_rate: 0.0,
            global_rate: 5.0,
            global_burst: 10,
            ..RateLimitConfig::default()
        },
        0,
    );
    let mut events = Vec::new();
    for pid in 1..=20 {
        events.extend(lifecycle(pid * 10..pid * 10 + 1, pid, 1));
    }
    l.apply(&mut events, 0);
    assert_eq!(events.len(), 30);
    let s = l.take_summaries(0, T, true);
    assert_eq!(s.len(), 10);
    assert!(s
        .iter()
        .all(|s| s.limiter == Limiter::Global && s.suppressed_flows() == 1));
    assert_eq!(l.stats().suppressed_global, 10);
}

#[test]
fn the_process_table_is_capped_and_evictions_counted() {
    let mut l = RateLimiter::new(
        RateLimitConfig {
            enabled: true,
            per_process_rate: 0.001,
            per_process_burst: 1,
            max_processes: 32,
            ..RateLimitConfig::default()
        },
        0,
    );
    for pid in 0..1000u32 {
        let mut e = vec![ev(pid, "start", pid, 1)];
        l.apply(&mut e, u64::from(pid));
        assert_eq!(e.len(), 1);
        assert!(l.stats().processes <= 32);
    }
    assert!(l.stats().processes_evicted >= 1000 - 32);
    // Summaries are capped the same way: the rest share one without identity.
    for pid in 0..100u32 {
        let mut e = vec![
            ev(pid + 5000, "start", pid, 2),
            ev(pid + 6000, "start", pid, 2),
        ];
        l.apply(&mut e, 2000);
    }
    let s = l.take_summaries(0, T, true);
    assert_eq!(s.len(), 33);
    assert_eq!(s.iter().map(|s| s.suppressed_flows()).sum::<u64>(), 100);
    assert!(s.iter().any(|s| s.process.is_none()));
}

#[test]
fn summaries_come_per_interval() {
    let mut l = limiter(1.0, 1);
    let mut e = lifecycle(0..3, 1, 1);
    l.apply(&mut e, 0);
    assert!(l.take_summaries(5 * SEC, T, false).is_empty());
    assert_eq!(l.take_summaries(10 * SEC, T, false).len(), 1);
    // Nothing new: nothing written.
    assert!(l.take_summaries(20 * SEC, T, false).is_empty());
    assert_eq!(l.stats().summaries, 1);
}
