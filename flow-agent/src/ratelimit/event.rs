//! The `rate_limited` event: what one limiter suppressed of one process's flows during one
//! summary interval (docs/events.md, "Rate-limited flows").
use std::collections::BTreeSet;

use serde::Serialize;

use crate::flows::FlowEvent;

/// Distinct remote addresses and destination ports one summary lists at most.
pub const MAX_DISTINCT: usize = 16;

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct SuppressedEvent {
    pub timestamp: String,
    /// Always `rate_limited`.
    pub event_action: &'static str,
    /// Which limit suppressed the flows: `process` or `global`.
    pub limiter: &'static str,
    /// The limit in force when the summary was written: flows a second, and burst.
    pub rate: f64,
    pub burst: u32,
    /// Flows whose start was suppressed in this interval, all of them and by transport.
    pub suppressed_flows: u64,
    pub suppressed_tcp: u64,
    pub suppressed_udp: u64,
    /// Start times of the first and last of them (absent when none started in the interval).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_suppressed_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_suppressed_time: Option<String>,
    /// Suppressed flows that ended in this interval (some may have started in an earlier one)
    /// and what their end events would have counted.
    pub suppressed_ended: u64,
    pub suppressed_in_bytes: u64,
    pub suppressed_out_bytes: u64,
    pub suppressed_packets: u64,
    /// Distinct remote addresses of the suppressed flows, at most [`MAX_DISTINCT`].
    pub remote_ips: Vec<String>,
    pub remote_ips_truncated: bool,
    /// Distinct responder ports (the service connected to), at most [`MAX_DISTINCT`].
    pub dest_ports: Vec<u16>,
    pub dest_ports_truncated: bool,
    #[serde(flatten)]
    pub process: ProcessIdentity,
    pub hostname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    pub agent_version: &'static str,
}

/// The process fields flow events carry, as the first suppressed flow of the summary had them;
/// none for flows no process owned, or the summary of processes beyond the table's cap.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ProcessIdentity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ppid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_line: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_start_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_entity_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_exe: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_entity_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_runtime: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
}

impl ProcessIdentity {
    pub fn of(ev: &FlowEvent) -> Self {
        Self {
            pid: ev.pid,
            ppid: ev.ppid,
            process_name: ev.process_name.clone(),
            exe: ev.exe.clone(),
            image_path: ev.image_path.clone(),
            command_line: ev.command_line.clone(),
            process_start_time: ev.process_start_time.clone(),
            process_entity_id: ev.process_entity_id.clone(),
            parent_exe: ev.parent_exe.clone(),
            parent_entity_id: ev.parent_entity_id.clone(),
            uid: ev.uid,
            user: ev.user.clone(),
            gid: ev.gid,
            group: ev.group.clone(),
            cgroup_path: ev.cgroup_path.clone(),
            container_id: ev.container_id.clone(),
            container_runtime: ev.container_runtime.clone(),
            systemd_unit: ev.systemd_unit.clone(),
        }
    }
}

impl ProcessIdentity {
    /// A flow event carrying only these process fields: the base other events fill theirs on.
    pub fn flow_event_fields(&self) -> FlowEvent {
        let p = self;
        FlowEvent {
            pid: p.pid,
            ppid: p.ppid,
            process_name: p.process_name.clone(),
            exe: p.exe.clone(),
            image_path: p.image_path.clone(),
            command_line: p.command_line.clone(),
            process_start_time: p.process_start_time.clone(),
            process_entity_id: p.process_entity_id.clone(),
            parent_exe: p.parent_exe.clone(),
            parent_entity_id: p.parent_entity_id.clone(),
            uid: p.uid,
            user: p.user.clone(),
            gid: p.gid,
            group: p.group.clone(),
            cgroup_path: p.cgroup_path.clone(),
            container_id: p.container_id.clone(),
            container_runtime: p.container_runtime.clone(),
            systemd_unit: p.systemd_unit.clone(),
            ..FlowEvent::default()
        }
    }
}

impl SuppressedEvent {
    /// The summary's process and host as a flow event carries them, for encoders that map
    /// those fields from flow events (the flow fields stay empty).
    pub fn as_flow_event(&self) -> FlowEvent {
        let p = &self.process;
        FlowEvent {
            timestamp: self.timestamp.clone(),
            event_action: self.event_action,
            hostname: self.hostname.clone(),
            host_id: self.host_id.clone(),
            boot_id: self.boot_id.clone(),
            agent_version: self.agent_version,
            ..p.flow_event_fields()
        }
    }
}

/// One summary being collected.
#[derive(Debug, Default)]
pub(super) struct Summary {
    pub(super) process: ProcessIdentity,
    pub(super) tcp: u64,
    pub(super) udp: u64,
    pub(super) first: Option<String>,
    pub(super) last: Option<String>,
    pub(super) ended: u64,
    pub(super) in_bytes: u64,
    pub(super) out_bytes: u64,
    pub(super) packets: u64,
    pub(super) remote_ips: BTreeSet<String>,
    pub(super) ips_truncated: bool,
    pub(super) dest_ports: BTreeSet<u16>,
    pub(super) ports_truncated: bool,
    /// Host fields of the events summarized.
    pub(super) hostname: String,
    pub(super) host_id: Option<String>,
    pub(super) boot_id: Option<String>,
}

impl Summary {
    pub(super) fn new(process: ProcessIdentity, ev: &FlowEvent) -> Self {
        Self {
            process,
            hostname: ev.hostname.clone(),
            host_id: ev.host_id.clone(),
            boot_id: ev.boot_id.clone(),
            ..Self::default()
        }
    }

    /// A flow's start, suppressed.
    pub(super) fn started(&mut self, ev: &FlowEvent) {
        if ev.transport_protocol == "tcp" {
            self.tcp += 1;
        } else {
            self.udp += 1;
        }
        let at = ev.start_time.as_ref().unwrap_or(&ev.timestamp);
        if self.first.as_ref().is_none_or(|f| at < f) {
            self.first = Some(at.clone());
        }
        // RFC 3339 UTC with fixed digits: text order is time order.
        if self.last.as_ref().is_none_or(|l| at > l) {
            self.last = Some(at.clone());
        }
        let remote = if ev.local_orig {
            &ev.dest_ip
        } else {
            &ev.src_ip
        };
        if !self.remote_ips.contains(remote) {
            if self.remote_ips.len() < MAX_DISTINCT {
                self.remote_ips.insert(remote.clone());
            } else {
                self.ips_truncated = true;
            }
        }
        if !self.dest_ports.contains(&ev.dest_port) {
            if self.dest_ports.len() < MAX_DISTINCT {
                self.dest_ports.insert(ev.dest_port);
            } else {
                self.ports_truncated = true;
            }
        }
    }

    /// A suppressed flow's end: what its end event would have counted.
    pub(super) fn ended(&mut self, ev: &FlowEvent) {
        self.ended += 1;
        self.in_bytes += ev.in_bytes.unwrap_or(0);
        self.out_bytes += ev.out_bytes.unwrap_or(0);
        self.packets += ev.packet_count.unwrap_or(0);
    }

    pub(super) fn into_event(
        self,
        limiter: &'static str,
        limit: super::Limit,
        timestamp: String,
    ) -> SuppressedEvent {
        SuppressedEvent {
            timestamp,
            event_action: "rate_limited",
            limiter,
            rate: limit.rate,
            burst: limit.burst,
            suppressed_flows: self.tcp + self.udp,
            suppressed_tcp: self.tcp,
            suppressed_udp: self.udp,
            first_suppressed_time: self.first,
            last_suppressed_time: self.last,
            suppressed_ended: self.ended,
            suppressed_in_bytes: self.in_bytes,
            suppressed_out_bytes: self.out_bytes,
            suppressed_packets: self.packets,
            remote_ips: self.remote_ips.into_iter().collect(),
            remote_ips_truncated: self.ips_truncated,
            dest_ports: self.dest_ports.into_iter().collect(),
            dest_ports_truncated: self.ports_truncated,
            process: self.process,
            hostname: self.hostname,
            host_id: self.host_id,
            boot_id: self.boot_id,
            agent_version: env!("CARGO_PKG_VERSION"),
        }
    }
}
