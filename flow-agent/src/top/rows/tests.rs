use serde_json::{json, Value};

use super::*;

/// Takes a record written as JSON, as `top` reads it from the socket.
fn feed(t: &mut Table, record: &Value) {
    t.ingest(&serde_json::from_value(record.clone()).expect("a brief record"));
}

fn event(action: &str, pid: u32, flow: &str, remote_port: u16, bytes: (u64, u64)) -> Value {
    let mut ev = json!({
        "event_action": action, "flow_id": flow, "pid": pid,
        "process_name": format!("p{pid}"), "user": "alice",
        "transport_protocol": "tcp", "network_direction": "outbound",
        "src_ip": "10.0.0.1", "src_port": 40000, "dest_ip": "192.0.2.7",
        "dest_port": remote_port, "in_bytes": bytes.0, "out_bytes": bytes.1,
    });
    if action != "start" {
        ev["interval"] = json!({"in_bytes": bytes.0, "out_bytes": bytes.1});
    }
    ev
}

#[test]
fn a_process_row_counts_its_flows_connections_and_bytes() {
    let mut t = Table::default();
    feed(&mut t, &event("start", 7, "a", 443, (0, 0)));
    feed(&mut t, &event("start", 7, "b", 80, (0, 0)));
    feed(&mut t, &event("end", 7, "b", 80, (3000, 100)));
    feed(&mut t, &json!({"event_action": "stats", "flows_open": 3}));
    t.tick(2.0);
    let rows = t.rows(Column::Pid, false);
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(
        (r.pid, r.process.as_str(), r.user.as_str()),
        (7, "p7", "alice")
    );
    assert_eq!(r.open, 1);
    assert_eq!(r.conns_per_sec, 1.0);
    assert_eq!((r.in_per_sec, r.out_per_sec), (1500.0, 50.0));
    assert_eq!(r.remote, "192.0.2.7:80");
    let flows = t.flows(7);
    assert_eq!(flows.len(), 1);
    assert_eq!((flows[0].remote_port, flows[0].local_port), (443, 40000));
    // The next tick counts only what came after.
    t.tick(1.0);
    assert_eq!(t.rows(Column::Pid, false)[0].in_per_sec, 0.0);
}

#[test]
fn the_remote_is_the_other_end_and_named_when_known() {
    let mut t = Table::default();
    let mut ev = event("start", 9, "in", 0, (0, 0));
    ev["network_direction"] = json!("inbound");
    ev["src_ip"] = json!("198.51.100.1");
    ev["src_port"] = json!(51000);
    ev["dest_port"] = json!(22);
    ev["src_hostname"] = json!("bastion.example");
    feed(&mut t, &ev);
    let f = &t.flows(9)[0];
    assert_eq!(
        (f.remote.as_str(), f.remote_port, f.local_port),
        ("bastion.example", 51000, 22)
    );
}

#[test]
fn every_column_sorts_and_reverses() {
    let mut t = Table::default();
    feed(&mut t, &event("start", 1, "a", 1, (0, 0)));
    feed(&mut t, &event("update", 2, "b", 2, (10, 0)));
    feed(&mut t, &event("update", 2, "c", 3, (10, 0)));
    feed(&mut t, &event("update", 3, "d", 4, (0, 99)));
    t.tick(1.0);
    let pids = |c, rev| t.rows(c, rev).iter().map(|r| r.pid).collect::<Vec<_>>();
    assert_eq!(pids(Column::Pid, false), [1, 2, 3]);
    assert_eq!(pids(Column::Pid, true), [3, 2, 1]);
    assert_eq!(pids(Column::Open, false), [2, 1, 3]);
    assert_eq!(pids(Column::ConnsPerSec, false), [1, 2, 3]);
    assert_eq!(pids(Column::InPerSec, false), [2, 1, 3]);
    assert_eq!(pids(Column::OutPerSec, false), [3, 1, 2]);
    assert_eq!(pids(Column::OutPerSec, true), [1, 2, 3]);
    assert_eq!(pids(Column::Process, true), [3, 2, 1]);
    assert_eq!(pids(Column::Remote, false), [1, 2, 3]);
    for c in Column::ALL {
        assert_eq!(t.rows(c, false).len(), 3, "{c:?}");
    }
}

#[test]
fn idle_processes_leave_the_table() {
    let mut t = Table::default();
    feed(&mut t, &event("start", 4, "a", 1, (0, 0)));
    feed(&mut t, &event("end", 4, "a", 1, (0, 0)));
    for _ in 0..IDLE_TICKS + 1 {
        t.tick(1.0);
    }
    assert!(t.rows(Column::Pid, false).is_empty());
}
