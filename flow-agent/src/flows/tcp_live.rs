//! Open TCP connections as sock_diag sees them: periodic update events for long flows (the
//! kernel programs report TCP counters only at close), flows already open at start-up, and the
//! reconciliation that ends flows whose close record was lost.
//!
//! Reconciliation: every [`RECONCILE_INTERVAL`] (or every update interval, when shorter) each
//! network namespace holding TCP flows is listed. A flow whose socket is not in the list (same
//! endpoints, and the same cookie when both are known), or whose namespace no longer exists,
//! is marked; still missing at a reconciliation at least [`RECONCILE_GRACE`] later, it ends
//! `close_missed` (counted in `missed_closes`). The kernel writes a close record before the
//! socket leaves the tables sock_diag reads, so a close record not lost was in the ring buffer
//! when the socket was first missed, and the grace lets the agent read it first.
use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use flow_common::{OwnerKind, Role, Task, Tuple, AF_INET, AF_INET6, IPPROTO_TCP};

use super::{
    table::{identity, with_detail, FlowKey, Totals},
    tcp_detail, FlowTable, Tracked,
};
use crate::{
    capture::sock_diag::{tcp_state, TcpSockInfo},
    event::FlowAction,
};

/// How often the TCP flows are reconciled with sock_diag (at most: the update interval when
/// it is shorter).
pub(crate) const RECONCILE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a flow's socket must have been missing before the flow ends `close_missed`.
pub(crate) const RECONCILE_GRACE: Duration = Duration::from_secs(10);

/// Totals from a live socket, with the sequence-number bytes (SYN, FIN) taken out as at close.
fn live_totals(s: &TcpSockInfo, role: Role) -> Totals {
    let fin_in = matches!(
        s.state,
        tcp_state::CLOSE_WAIT | tcp_state::LAST_ACK | tcp_state::CLOSING
    );
    let fin_out_acked = s.state == tcp_state::FIN_WAIT2;
    let syn_out = role == Role::Active;
    // As at close: the accepting side's SYN-ACK predates its socket's counters.
    let syn_ack = u64::from(role == Role::Passive);
    Totals {
        in_bytes: s.bytes_received.saturating_sub(u64::from(fin_in)),
        out_bytes: s
            .bytes_acked
            .saturating_sub(u64::from(syn_out) + u64::from(fin_out_acked)),
        in_pkts: u64::from(s.segs_in),
        out_pkts: u64::from(s.segs_out) + syn_ack,
        in_ip_bytes: None,
        out_ip_bytes: None,
    }
}

fn tuple_of(s: &TcpSockInfo) -> Tuple {
    let mut t = Tuple {
        protocol: IPPROTO_TCP,
        local_port: s.local.port(),
        remote_port: s.remote.port(),
        ..Tuple::default()
    };
    match (s.local.ip(), s.remote.ip()) {
        (std::net::IpAddr::V4(l), std::net::IpAddr::V4(r)) => {
            t.family = AF_INET;
            t.local_addr[..4].copy_from_slice(&l.octets());
            t.remote_addr[..4].copy_from_slice(&r.octets());
        }
        (l, r) => {
            t.family = AF_INET6;
            t.local_addr = match l {
                std::net::IpAddr::V6(a) => a.octets(),
                std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            t.remote_addr = match r {
                std::net::IpAddr::V6(a) => a.octets(),
                std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
        }
    }
    t
}

impl FlowTable {
    /// Network namespaces holding TCP flows whose update is due.
    pub(crate) fn tcp_updates_due(&self, now_ns: u64) -> HashSet<u32> {
        let interval = self.cfg.update_interval.as_nanos() as u64;
        self.flows
            .iter()
            .filter(|(k, f)| {
                matches!(k, FlowKey::Tcp(_) | FlowKey::TcpPartial(_))
                    && f.start_emitted
                    && now_ns.saturating_sub(f.last_report_ns) >= interval
            })
            .map(|(_, f)| f.netns)
            .collect()
    }

    /// Emits update events for the due TCP flows of `netns` found among `sockets`.
    pub(crate) fn apply_tcp_snapshot(
        &mut self,
        netns: u32,
        sockets: &[TcpSockInfo],
        now_ns: u64,
        out: &mut Vec<Tracked>,
    ) {
        let live: HashMap<_, &TcpSockInfo> = sockets
            .iter()
            .map(|s| ((netns, s.local, s.remote), s))
            .collect();
        let interval = self.cfg.update_interval.as_nanos() as u64;
        let due: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(k, f)| {
                matches!(k, FlowKey::Tcp(_) | FlowKey::TcpPartial(_))
                    && f.netns == netns
                    && f.start_emitted
                    && now_ns.saturating_sub(f.last_report_ns) >= interval
            })
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            let Some(mut f) = self.flows.remove(&key) else {
                continue;
            };
            if let Some(s) = live.get(&identity(netns, &f.tuple)) {
                let mut totals = live_totals(s, f.role);
                f.live = Some(totals);
                self.refresh_detail(&mut f, s);
                if let Some(d) = &f.detail {
                    totals = with_detail(totals, d);
                }
                let mut t = self.event(&f, FlowAction::Update, Some(totals), now_ns);
                let ev = &mut t.event;
                if let Some(d) = &f.detail {
                    tcp_detail::fill_event(ev, d, &self.clock);
                }
                if s.rtt_us > 0 {
                    ev.rtt_us = Some(s.rtt_us);
                }
                ev.retransmits = Some(s.total_retrans);
                out.push(t);
                f.reported = totals;
            }
            // Not found: closing right now; its close record follows. Try again next interval.
            f.last_report_ns = now_ns;
            self.flows.insert(key, f);
        }
    }

    /// The socket's per-packet counters, read by the cookie sock_diag reports (which assigns
    /// one if the socket had none yet), when they cover the connection from its start.
    fn refresh_detail(&self, f: &mut super::table::Flow, s: &TcpSockInfo) {
        if s.cookie != 0 {
            f.cookie = s.cookie;
        }
        f.detail = if f.start_observed {
            self.read_tcp_detail(f.cookie).map(Box::new)
        } else {
            None
        };
    }

    /// Network namespaces holding any TCP flow.
    pub(crate) fn tcp_namespaces(&self) -> HashSet<u32> {
        self.flows
            .iter()
            .filter(|(k, _)| matches!(k, FlowKey::Tcp(_) | FlowKey::TcpPartial(_)))
            .map(|(_, f)| f.netns)
            .collect()
    }

    /// Records the current totals of `netns`'s TCP flows without emitting anything: the last
    /// snapshot before shutdown, so that the final end events carry counters.
    pub(crate) fn refresh_live_totals(&mut self, netns: u32, sockets: &[TcpSockInfo]) {
        let live: HashMap<_, &TcpSockInfo> = sockets
            .iter()
            .map(|s| ((netns, s.local, s.remote), s))
            .collect();
        let keys: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(k, f)| {
                matches!(k, FlowKey::Tcp(_) | FlowKey::TcpPartial(_)) && f.netns == netns
            })
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            let Some(mut f) = self.flows.remove(&key) else {
                continue;
            };
            if let Some(s) = live.get(&identity(netns, &f.tuple)) {
                f.live = Some(live_totals(s, f.role));
                self.refresh_detail(&mut f, s);
            }
            self.flows.insert(key, f);
        }
    }

    /// Whether the TCP flows are due for reconciliation (every [`RECONCILE_INTERVAL`], or
    /// every update interval when shorter); true starts the interval again.
    pub(crate) fn tcp_reconciliation_due(&mut self, now_ns: u64) -> bool {
        let every = RECONCILE_INTERVAL.min(self.cfg.update_interval).as_nanos() as u64;
        if self.last_reconcile_ns != 0 && now_ns.saturating_sub(self.last_reconcile_ns) < every {
            return false;
        }
        self.last_reconcile_ns = now_ns;
        true
    }

    /// Reconciles the TCP flows of `netns` with the sockets sock_diag lists there (`None`:
    /// the namespace no longer exists, nor any of its sockets). A flow whose socket is missing
    /// is marked; still missing [`RECONCILE_GRACE`] after it was first missed, it ends
    /// `close_missed`. Returns how many ended.
    pub(crate) fn reconcile_tcp(
        &mut self,
        netns: u32,
        sockets: Option<&[TcpSockInfo]>,
        now_ns: u64,
        out: &mut Vec<Tracked>,
    ) -> usize {
        let live: HashMap<_, u64> = sockets
            .unwrap_or_default()
            .iter()
            .map(|s| ((netns, s.local, s.remote), s.cookie))
            .collect();
        let grace = RECONCILE_GRACE.as_nanos() as u64;
        let keys: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(k, f)| {
                matches!(k, FlowKey::Tcp(_) | FlowKey::TcpPartial(_)) && f.netns == netns
            })
            .map(|(k, _)| *k)
            .collect();
        let mut ended = 0;
        for key in keys {
            let Some(f) = self.flows.get_mut(&key) else {
                continue;
            };
            // Endpoints can be reused by a later socket; cookies never are.
            let found = live
                .get(&identity(netns, &f.tuple))
                .is_some_and(|c| *c == 0 || f.cookie == 0 || *c == f.cookie);
            match f.missing_since {
                _ if found => f.missing_since = None,
                None => f.missing_since = Some(now_ns),
                Some(since) if now_ns.saturating_sub(since) >= grace => {
                    let Some(f) = self.flows.remove(&key) else {
                        continue;
                    };
                    if matches!(key, FlowKey::TcpPartial(_)) {
                        self.partial.remove(&identity(f.netns, &f.tuple));
                    }
                    self.missed_closes += 1;
                    self.reconciled_closes += 1;
                    self.end_without_close(f, "close_missed", now_ns, out);
                    ended += 1;
                }
                Some(_) => {}
            }
        }
        ended
    }

    /// Adds the connections open before the agent started, as flows whose start was not observed.
    /// Direction is a guess: a connection on a port this namespace listens on is inbound.
    pub(crate) fn add_existing_tcp(
        &mut self,
        netns: u32,
        sockets: &[TcpSockInfo],
        listening: &HashSet<u16>,
        mut owner_of: impl FnMut(&TcpSockInfo) -> Task,
        out: &mut Vec<Tracked>,
    ) {
        for s in sockets {
            let tuple = tuple_of(s);
            let id = identity(netns, &tuple);
            if self.partial.contains_key(&id) {
                continue;
            }
            let role = if listening.contains(&s.local.port()) {
                Role::Passive
            } else {
                Role::Active
            };
            if self.full() {
                // Not tracked while open; its close record reports it.
                self.refused.tcp += 1;
                continue;
            }
            let owner = owner_of(s);
            let kind = match (owner.pid != 0, role) {
                (false, _) => OwnerKind::None,
                (true, Role::Passive) => OwnerKind::Acceptor,
                (true, _) => OwnerKind::Connector,
            };
            let mut f = self.new_flow(tuple, role, owner, kind, 0);
            f.start_observed = false;
            f.netns = netns;
            f.last_report_ns = crate::clock::boot_ns_now();
            // Intervals count from now; totals include what came before the agent.
            f.reported = live_totals(s, role);
            let key = FlowKey::TcpPartial(self.next_id);
            self.flows.insert(key, f);
            self.partial.insert(id, key);
            self.emit_start(key, out);
        }
    }
}
