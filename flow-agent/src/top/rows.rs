//! What `top` shows, made from events and nothing else: one row per process with its open
//! flows and its rates over the last tick, and one process's flows. No drawing here.
use std::{cmp::Ordering, collections::HashMap};

use serde::Deserialize;

/// The columns, in the order shown; keys 1-9 sort by them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Column {
    Process,
    Pid,
    User,
    Container,
    Open,
    ConnsPerSec,
    InPerSec,
    OutPerSec,
    Remote,
}

impl Column {
    pub(crate) const ALL: [Column; 9] = [
        Column::Process,
        Column::Pid,
        Column::User,
        Column::Container,
        Column::Open,
        Column::ConnsPerSec,
        Column::InPerSec,
        Column::OutPerSec,
        Column::Remote,
    ];

    pub(crate) fn title(self) -> &'static str {
        match self {
            Column::Process => "PROCESS",
            Column::Pid => "PID",
            Column::User => "USER",
            Column::Container => "CONT",
            Column::Open => "OPEN",
            Column::ConnsPerSec => "CONN/S",
            Column::InPerSec => "IN/S",
            Column::OutPerSec => "OUT/S",
            Column::Remote => "REMOTE",
        }
    }

    /// Numbers sort largest first, names from A.
    fn largest_first(self) -> bool {
        matches!(
            self,
            Column::Open | Column::ConnsPerSec | Column::InPerSec | Column::OutPerSec
        )
    }
}

/// One open flow of a process.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FlowRow {
    pub(crate) transport: String,
    pub(crate) direction: String,
    pub(crate) local_port: u64,
    /// The remote's DNS name when the agent knows one, else its address.
    pub(crate) remote: String,
    pub(crate) remote_port: u64,
    pub(crate) in_bytes: u64,
    pub(crate) out_bytes: u64,
    pub(crate) app: String,
}

/// One process's line.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Row {
    pub(crate) pid: u32,
    pub(crate) process: String,
    pub(crate) user: String,
    pub(crate) container: String,
    pub(crate) open: usize,
    pub(crate) conns_per_sec: f64,
    pub(crate) in_per_sec: f64,
    pub(crate) out_per_sec: f64,
    /// `name:port` of the remote with the most bytes (then connections) since `top` started.
    pub(crate) remote: String,
}

#[derive(Default)]
struct Process {
    row: Row,
    flows: HashMap<String, FlowRow>,
    /// Counted since the last tick.
    conns: u64,
    in_bytes: u64,
    out_bytes: u64,
    /// `name:port` → (bytes, connections).
    remotes: HashMap<String, (u64, u64)>,
    idle_ticks: u32,
}

/// Processes idle (no open flow, nothing counted) this many ticks leave the table.
const IDLE_TICKS: u32 = 5;

#[derive(Default)]
pub(crate) struct Table {
    processes: HashMap<u32, Process>,
}

/// A brief record (the agent's `brief` subscription: a flow event's fields that `top` shows,
/// under their native names). A missing field is empty or 0.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct BriefFlow {
    event_action: String,
    flow_id: Option<String>,
    transport_protocol: String,
    src_ip: String,
    src_port: u64,
    dest_ip: String,
    dest_port: u64,
    network_direction: String,
    in_bytes: u64,
    out_bytes: u64,
    interval: Option<Interval>,
    pid: u32,
    process_name: Option<String>,
    user: Option<String>,
    container_id: Option<String>,
    src_hostname: Option<String>,
    dest_hostname: Option<String>,
    application_protocol: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct Interval {
    in_bytes: u64,
    out_bytes: u64,
}

impl Table {
    /// Takes one record; anything but a flow event is ignored.
    pub(crate) fn ingest(&mut self, ev: &BriefFlow) {
        let action = ev.event_action.as_str();
        if !matches!(action, "start" | "update" | "end") {
            return;
        }
        let Some(flow_id) = ev.flow_id.clone() else {
            return;
        };
        let p = self.processes.entry(ev.pid).or_default();
        p.row.pid = ev.pid;
        for (field, value) in [
            (&mut p.row.process, &ev.process_name),
            (&mut p.row.user, &ev.user),
            (&mut p.row.container, &ev.container_id),
        ] {
            if let Some(v) = value {
                field.clone_from(v);
            }
        }
        let flow = flow_of(ev);
        let known = p.flows.get(&flow_id);
        // Bytes since the last event of this flow: `interval` when the event has it.
        let (din, dout) = match &ev.interval {
            Some(i) => (i.in_bytes, i.out_bytes),
            None => known.map_or((0, 0), |k| {
                (
                    flow.in_bytes.saturating_sub(k.in_bytes),
                    flow.out_bytes.saturating_sub(k.out_bytes),
                )
            }),
        };
        p.in_bytes += din;
        p.out_bytes += dout;
        let remote = p
            .remotes
            .entry(format!("{}:{}", flow.remote, flow.remote_port))
            .or_default();
        remote.0 += din + dout;
        if action == "start" {
            p.conns += 1;
            remote.1 += 1;
        }
        if action == "end" {
            p.flows.remove(&flow_id);
        } else {
            p.flows.insert(flow_id, flow);
        }
    }

    /// Turns what was counted over the last `secs` seconds into rates.
    pub(crate) fn tick(&mut self, secs: f64) {
        let secs = secs.max(0.001);
        for p in self.processes.values_mut() {
            p.row.conns_per_sec = p.conns as f64 / secs;
            p.row.in_per_sec = p.in_bytes as f64 / secs;
            p.row.out_per_sec = p.out_bytes as f64 / secs;
            p.row.open = p.flows.len();
            p.row.remote = busiest(&p.remotes);
            let idle = p.flows.is_empty() && p.conns + p.in_bytes + p.out_bytes == 0;
            p.idle_ticks = if idle { p.idle_ticks + 1 } else { 0 };
            (p.conns, p.in_bytes, p.out_bytes) = (0, 0, 0);
        }
        self.processes.retain(|_, p| p.idle_ticks < IDLE_TICKS);
    }

    /// Every process's row, sorted by `by` (ties by pid); `reverse` flips the order.
    pub(crate) fn rows(&self, by: Column, reverse: bool) -> Vec<Row> {
        let mut rows: Vec<Row> = self.processes.values().map(|p| p.row.clone()).collect();
        rows.sort_by(|a, b| {
            let o = compare(a, b, by);
            let o = if by.largest_first() { o.reverse() } else { o };
            let o = if reverse { o.reverse() } else { o };
            o.then(a.pid.cmp(&b.pid))
        });
        rows
    }

    /// The open flows of `pid`, busiest first.
    pub(crate) fn flows(&self, pid: u32) -> Vec<FlowRow> {
        let mut flows: Vec<FlowRow> = self
            .processes
            .get(&pid)
            .map(|p| p.flows.values().cloned().collect())
            .unwrap_or_default();
        flows.sort_by(|a, b| {
            (b.in_bytes + b.out_bytes)
                .cmp(&(a.in_bytes + a.out_bytes))
                .then(a.remote_port.cmp(&b.remote_port))
                .then(a.local_port.cmp(&b.local_port))
        });
        flows
    }
}

fn compare(a: &Row, b: &Row, by: Column) -> Ordering {
    let f = |x: f64, y: f64| x.partial_cmp(&y).unwrap_or(Ordering::Equal);
    match by {
        Column::Process => a.process.cmp(&b.process),
        Column::Pid => a.pid.cmp(&b.pid),
        Column::User => a.user.cmp(&b.user),
        Column::Container => a.container.cmp(&b.container),
        Column::Open => a.open.cmp(&b.open),
        Column::ConnsPerSec => f(a.conns_per_sec, b.conns_per_sec),
        Column::InPerSec => f(a.in_per_sec, b.in_per_sec),
        Column::OutPerSec => f(a.out_per_sec, b.out_per_sec),
        Column::Remote => a.remote.cmp(&b.remote),
    }
}

fn busiest(remotes: &HashMap<String, (u64, u64)>) -> String {
    remotes
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(k, _)| k.clone())
        .unwrap_or_default()
}

/// The flow as its local process sees it: the remote is the other end in either direction.
fn flow_of(ev: &BriefFlow) -> FlowRow {
    let src = (&ev.src_hostname, &ev.src_ip, ev.src_port);
    let dest = (&ev.dest_hostname, &ev.dest_ip, ev.dest_port);
    let (local, remote) = if ev.network_direction == "inbound" {
        (dest, src)
    } else {
        (src, dest)
    };
    FlowRow {
        transport: ev.transport_protocol.clone(),
        direction: ev.network_direction.clone(),
        local_port: local.2,
        remote: remote.0.clone().unwrap_or_else(|| remote.1.clone()),
        remote_port: remote.2,
        in_bytes: ev.in_bytes,
        out_bytes: ev.out_bytes,
        app: ev.application_protocol.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests;
