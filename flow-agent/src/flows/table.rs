//! The flow table: one entry per open flow (a TCP socket, or a UDP socket and remote endpoint).
//! Records from the kernel open, re-attribute and close entries; a periodic tick emits updates,
//! ends idle UDP flows and releases passive flows nobody accepted.
//!
//! Bounded: kernel records can be lost (a full ring buffer), so an entry cannot rely on its
//! end record alone. UDP flows end when their kernel counters go idle or are pushed out of the
//! kernel's LRU table; TCP flows whose close record was lost are found by a periodic
//! reconciliation with sock_diag (`tcp_live.rs`) and end `close_missed`. As a last resort the
//! table holds at most [`MAX_OPEN_FLOWS`]: beyond it a new TCP flow is not tracked while open
//! (its close record still reports it, start and end together) and a new UDP flow is lost;
//! both are counted in [`FlowTable::refused`].
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use flow_common::{
    OwnerKind, Role, Task, TcpDetail, TcpRecord, Tuple, UdpCounters, UdpFlowKey, AF_INET,
    IPPROTO_TCP,
};

use super::{
    community_id::community_id_v1,
    state,
    tcp_detail::{self, TcpDetailSource},
    Tracked,
};
use crate::{
    capture::Record,
    clock::BootClock,
    event::{
        Attribution, Counters, Direction, FlowAction, FlowEvent, FlowIds, HostInfo,
        IntervalCounters, Transport,
    },
};

/// Open flows the table holds at most (TCP and UDP together): room for 100,000 local
/// connections with both of their ends, and the most an index of 2^18 slots holds before it
/// doubles. An open flow costs about 0.6 KiB here (measured at 200,000), so the table stays
/// under 140 MiB.
pub(crate) const MAX_OPEN_FLOWS: usize = 229_376;

/// Reads and forgets the kernel's per-flow UDP counters.
pub trait UdpCounterSource {
    fn read(&self, key: &UdpFlowKey) -> Option<UdpCounters>;
    fn remove(&mut self, key: &UdpFlowKey);
}

#[derive(Clone, Debug)]
pub struct FlowTableConfig {
    /// Open flows report an update this often.
    pub(crate) update_interval: Duration,
    /// A UDP flow with no packet for this long ends (reason idle).
    pub(crate) udp_idle_timeout: Duration,
    /// A passive flow waits this long for accept() before it is reported with the listener.
    pub(crate) accept_wait: Duration,
    /// Seed of the Community ID hash (0 unless every sensor of a site agrees on another).
    pub(crate) community_id_seed: u16,
}

impl Default for FlowTableConfig {
    fn default() -> Self {
        Self {
            update_interval: Duration::from_secs(60),
            udp_idle_timeout: Duration::from_secs(60),
            accept_wait: Duration::from_secs(1),
            community_id_seed: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum FlowKey {
    /// A TCP socket the kernel reported open (its kernel address).
    Tcp(u64),
    /// A TCP connection found open at start-up (numbered): its socket address is not known.
    TcpPartial(u64),
    Udp(UdpFlowKey),
}

/// A TCP connection's identity as both the kernel records and sock_diag see it.
pub(super) type TcpIdentity = (u32, SocketAddr, SocketAddr);

/// Totals seen from this host: received (in) and sent (out).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Totals {
    pub(super) in_bytes: u64,
    pub(super) out_bytes: u64,
    pub(super) in_pkts: u64,
    pub(super) out_pkts: u64,
    pub(super) in_ip_bytes: Option<u64>,
    pub(super) out_ip_bytes: Option<u64>,
}

pub(super) struct Flow {
    pub(super) ids: Arc<FlowIds>,
    pub(super) tuple: Tuple,
    pub(super) role: Role,
    pub(super) owner: Task,
    pub(super) owner_kind: OwnerKind,
    pub(super) open_ns: u64,
    pub(super) netns: u32,
    pub(super) start_observed: bool,
    pub(super) start_emitted: bool,
    pub(super) reported: Totals,
    pub(super) last_report_ns: u64,
    /// TCP: totals of the last sock_diag snapshot that found the socket.
    pub(super) live: Option<Totals>,
    /// The socket's cookie, once a record or snapshot gave it (0 before).
    pub(super) cookie: u64,
    /// TCP: complete per-packet counters as of the last snapshot that found the socket (boxed:
    /// most flows have none, and every open flow would pay for its size).
    pub(super) detail: Option<Box<TcpDetail>>,
    /// TCP: when a reconciliation's sock_diag snapshot first did not find the socket.
    pub(super) missing_since: Option<u64>,
}

/// Kernel table entries pushed out while their flows were open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Evicted {
    pub(crate) tcp: u64,
    pub(crate) udp: u64,
}

/// New flows the table did not take because it held [`MAX_OPEN_FLOWS`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Refused {
    /// TCP flows not tracked while open: their close record reports them (start and end
    /// together, without updates).
    pub(crate) tcp: u64,
    /// UDP flows lost (no event); also counted in [`FlowTable::evicted`] (`udp_table_full`).
    pub(crate) udp: u64,
}

pub struct FlowTable {
    pub(super) cfg: FlowTableConfig,
    pub(super) flows: HashMap<FlowKey, Flow>,
    /// Flows found open at start-up, by identity, until the kernel reports their close.
    pub(super) partial: HashMap<TcpIdentity, FlowKey>,
    udp_by_cookie: HashMap<u64, Vec<UdpFlowKey>>,
    pub(super) next_id: u64,
    /// TCP flows whose close record never came (counted, reported as a loss).
    pub(crate) missed_closes: u64,
    /// Of those, the flows sock_diag no longer showed (the rest: their address was reused).
    pub(crate) reconciled_closes: u64,
    /// UDP flows ended `release_missed`: sock_diag no longer listed their socket, whose release
    /// record was lost.
    pub(crate) missed_releases: u64,
    /// TCP sockets opened after the per-packet programs were attached that closed without
    /// complete per-packet counters (`tcp_detail_lost`).
    pub(crate) detail_lost: u64,
    /// Sockets the kernel's LRU tables pushed out while their flows were open, as noticed
    /// here: a TCP close or handshake the socket table no longer knew, a UDP flow whose
    /// counters were gone. Reported with the kernel's `tcp_table_full`/`udp_table_full`.
    pub(crate) evicted: Evicted,
    /// New flows not taken because the table was full.
    pub(crate) refused: Refused,
    /// When the TCP flows were last reconciled with sock_diag (CLOCK_BOOTTIME, 0: never).
    pub(super) last_reconcile_ns: u64,
    pub(super) max_flows: usize,
    id_prefix: String,
    /// Events leave without a host: enrichment gives them this agent's.
    no_host: Arc<HostInfo>,
    pub(super) clock: BootClock,
    /// The kernel's per-packet TCP counters; without it TCP events carry none of their fields.
    pub(super) tcp_detail: Option<Box<dyn TcpDetailSource>>,
}

impl FlowTable {
    pub fn new(cfg: FlowTableConfig, id_prefix: String) -> Self {
        Self {
            cfg,
            flows: HashMap::new(),
            partial: HashMap::new(),
            missed_closes: 0,
            reconciled_closes: 0,
            detail_lost: 0,
            missed_releases: 0,
            evicted: Evicted::default(),
            refused: Refused::default(),
            last_reconcile_ns: 0,
            max_flows: MAX_OPEN_FLOWS,
            udp_by_cookie: HashMap::new(),
            next_id: 0,
            id_prefix,
            no_host: Arc::default(),
            clock: BootClock::now(),
            tcp_detail: None,
        }
    }

    /// Where TCP per-packet counters are read (TCP detail on).
    pub(crate) fn set_tcp_detail(&mut self, source: Box<dyn TcpDetailSource>) {
        self.tcp_detail = Some(source);
    }

    /// Complete per-packet counters of an open TCP socket.
    pub(super) fn read_tcp_detail(&self, cookie: u64) -> Option<TcpDetail> {
        let source = self.tcp_detail.as_ref().filter(|_| cookie != 0)?;
        let mut d = source.read(cookie)?;
        tcp_detail::add_missed_synack(&mut d);
        Some(d).filter(tcp_detail::complete)
    }

    pub(crate) fn open_flows(&self) -> usize {
        self.flows.len()
    }

    #[cfg(test)]
    pub(crate) fn config(&self) -> &FlowTableConfig {
        &self.cfg
    }

    /// New timings and Community ID seed (a configuration reload). Open flows keep their ids
    /// and Community IDs; their later events use the new timings.
    pub(crate) fn reconfigure(&mut self, cfg: FlowTableConfig) {
        self.cfg = cfg;
    }

    /// A flow opened at `open_ns` (CLOCK_BOOTTIME, 0 if unknown).
    pub(super) fn new_flow(
        &mut self,
        tuple: Tuple,
        role: Role,
        owner: Task,
        kind: OwnerKind,
        open_ns: u64,
    ) -> Flow {
        self.next_id += 1;
        Flow {
            ids: self.flow_ids(&tuple, role),
            tuple,
            role,
            owner,
            owner_kind: kind,
            open_ns,
            netns: 0,
            start_observed: role != Role::Unknown,
            start_emitted: false,
            reported: Totals::default(),
            last_report_ns: 0,
            live: None,
            cookie: 0,
            detail: None,
            missing_since: None,
        }
    }

    /// Whether a new flow would exceed [`MAX_OPEN_FLOWS`].
    pub(super) fn full(&self) -> bool {
        self.flows.len() >= self.max_flows
    }

    /// One socket record; records of processes and payloads are enrichment's, not the
    /// tracker's, and are ignored here.
    pub fn handle(&mut self, rec: Record, udp: &mut impl UdpCounterSource, out: &mut Vec<Tracked>) {
        match rec {
            Record::TcpOpen(r) => self.on_tcp_open(&r, out),
            Record::TcpAccept(r) => {
                if let Some(f) = self.flows.get_mut(&FlowKey::Tcp(r.sock)) {
                    f.owner = r.owner;
                    f.owner_kind = OwnerKind::Acceptor;
                    if !f.start_emitted {
                        self.emit_start(FlowKey::Tcp(r.sock), out);
                    }
                }
            }
            Record::TcpClose(r) => self.on_tcp_close(&r, out),
            Record::UdpOpen(r) => {
                let key = FlowKey::Udp(r.key);
                if !self.flows.contains_key(&key) && self.full() {
                    // Lost: its socket's release or its idle end would have nothing to end.
                    self.refused.udp += 1;
                    self.evicted.udp += 1;
                    return;
                }
                let role = if r.outbound_first != 0 {
                    Role::Active
                } else {
                    Role::Passive
                };
                if let Some(old) = self.flows.remove(&key) {
                    // The kernel's LRU pushed the flow's counters out and a new packet made
                    // new ones before a tick noticed: the old flow ends, the new one starts.
                    self.evicted.udp += 1;
                    let mut t = self.event(&old, FlowAction::End, None, r.header.ts_ns);
                    t.event.end_time = Some(self.clock.wall(r.header.ts_ns));
                    t.event.end_reason = Some("evicted");
                    out.push(t);
                }
                let mut f =
                    self.new_flow(r.tuple, role, r.owner, OwnerKind::Connector, r.header.ts_ns);
                f.last_report_ns = r.header.ts_ns;
                f.netns = r.netns;
                f.cookie = r.key.cookie;
                self.flows.insert(key, f);
                let keys = self.udp_by_cookie.entry(r.key.cookie).or_default();
                if !keys.contains(&r.key) {
                    keys.push(r.key);
                }
                self.emit_start(key, out);
            }
            Record::UdpRelease(r) => {
                for key in self.udp_by_cookie.remove(&r.cookie).unwrap_or_default() {
                    self.end_udp(key, "socket_closed", udp, out);
                }
            }
            Record::Exec(_)
            | Record::Fork(_)
            | Record::Exit(_)
            | Record::Creds(_)
            | Record::Dns(_)
            | Record::Payload(_) => {}
        }
    }

    /// The flow of a UDP socket's traffic with one remote endpoint.
    pub(crate) fn udp_flow(&self, cookie: u64, remote: (u16, [u8; 16])) -> Option<SocketFlow<'_>> {
        let key = self
            .udp_by_cookie
            .get(&cookie)?
            .iter()
            .find(|k| (k.remote_port, k.remote_addr) == remote)?;
        self.flows.get(&FlowKey::Udp(*key)).map(SocketFlow::of)
    }

    /// The flow of a TCP socket.
    pub(crate) fn tcp_flow(&self, cookie: u64) -> Option<SocketFlow<'_>> {
        if cookie == 0 {
            return None;
        }
        self.flows
            .iter()
            .find(|(k, f)| matches!(k, FlowKey::Tcp(_)) && f.cookie == cookie)
            .map(|(_, f)| SocketFlow::of(f))
    }

    /// The sockets of the open flows, by (transport, cookie, remote endpoint).
    pub(crate) fn open_sockets(
        &self,
    ) -> impl Iterator<Item = (Transport, u64, (IpAddr, u16))> + '_ {
        self.flows
            .values()
            .map(|f| (transport_of(&f.tuple), f.cookie, endpoints(&f.tuple).1))
    }

    fn on_tcp_open(&mut self, r: &TcpRecord, out: &mut Vec<Tracked>) {
        let key = FlowKey::Tcp(r.sock);
        let role = role_of(r.role);
        // Opened while the start-up scan ran: the scan's flow is this one, started already.
        let scanned = self
            .partial
            .remove(&identity(r.netns, &r.tuple))
            .and_then(|pkey| self.flows.remove(&pkey));
        if scanned.is_none() && !self.flows.contains_key(&key) && self.full() {
            // Not tracked while open; its close record reports it (start and end together).
            self.refused.tcp += 1;
            return;
        }
        let mut f = self.new_flow(
            r.tuple,
            role,
            r.owner,
            owner_kind_of(r.owner_kind),
            r.open_ns,
        );
        match scanned {
            Some(p) => merge_scanned(&mut f, p),
            None if role == Role::Unknown && r.old_state == flow_common::tcp_state::SYN_SENT => {
                // A handshake the socket table no longer knew: its connect() entry was pushed
                // out (or, rarely, the connect began before the agent started).
                self.evicted.tcp += 1;
            }
            None => {}
        }
        f.last_report_ns = r.header.ts_ns;
        f.netns = r.netns;
        f.cookie = r.cookie;
        if let Some(stale) = self.flows.remove(&key) {
            // The socket's address was reused: its close record was lost (the kernel skipped
            // the program). End the old flow honestly rather than overwrite it.
            self.missed_closes += 1;
            self.end_without_close(stale, "close_missed", r.header.ts_ns, out);
        }
        // A passive flow waits for accept() to name its process (or for the tick to give up).
        let start = f.role != Role::Passive && !f.start_emitted;
        self.flows.insert(key, f);
        if start {
            self.emit_start(key, out);
        }
    }

    fn on_tcp_close(&mut self, r: &TcpRecord, out: &mut Vec<Tracked>) {
        log::debug!(
            "tcp close sock={:x} old={} err={} info={} states={:b} counters={:?}",
            r.sock,
            r.old_state,
            r.sk_err,
            r.info,
            r.states_seen,
            r.counters
        );
        let mut key = FlowKey::Tcp(r.sock);
        if !self.flows.contains_key(&key) {
            if let Some(pkey) = self.partial.remove(&identity(r.netns, &r.tuple)) {
                key = pkey;
            }
        }
        if !self.flows.contains_key(&key) {
            // Opened before the agent watched, or failed before ESTABLISHED (refused, timeout).
            let mut f = self.new_flow(
                r.tuple,
                role_of(r.role),
                r.owner,
                owner_kind_of(r.owner_kind),
                r.open_ns,
            );
            f.netns = r.netns;
            self.flows.insert(key, f);
        }
        if !self.flows[&key].start_emitted {
            self.emit_start(key, out);
        }
        let Some(mut f) = self.flows.remove(&key) else {
            return;
        };
        // A passive socket's cookie is assigned after its open record (at its first packet).
        if r.cookie != 0 {
            f.cookie = r.cookie;
        }
        if r.role == Role::Unknown as u8 && f.start_observed {
            // Opened under the agent's eyes, yet the kernel's socket table forgot it.
            self.evicted.tcp += 1;
        }
        // A flow found at start-up knows its (guessed) direction; the kernel record does not.
        let mut directed = *r;
        if directed.role == Role::Unknown as u8 {
            directed.role = f.role as u8;
        }
        let (in_bytes, out_bytes) = state::payload(&directed);
        let (in_pkts, out_pkts) = state::packets(&directed);
        let mut totals = Totals {
            in_bytes,
            out_bytes,
            in_pkts,
            out_pkts,
            in_ip_bytes: None,
            out_ip_bytes: None,
        };
        let detail = self.close_detail(r, &f);
        if let Some(d) = &detail {
            totals = with_detail(totals, d);
        }
        let mut t = self.event(&f, FlowAction::End, Some(totals), r.header.ts_ns);
        let ev = &mut t.event;
        ev.end_time = Some(self.clock.wall(r.header.ts_ns));
        ev.end_reason = Some(state::end_cause(r));
        ev.conn_state = Some(state::conn_state(r));
        ev.history = Some(match &detail {
            Some(d) => tcp_detail::history(d, f.role != Role::Passive),
            None => state::history(&directed, in_bytes, out_bytes),
        });
        if let Some(d) = &detail {
            tcp_detail::fill_event(ev, d, &self.clock);
        }
        if r.counters.srtt_us > 0 {
            ev.rtt_us = Some(r.counters.srtt_us);
        }
        ev.retransmits = Some(r.counters.total_retrans);
        out.push(t);
    }

    /// The per-packet counters a close record carries, with those of packets sent after the
    /// close (an abort's RST), when they cover the whole connection.
    fn close_detail(&mut self, r: &TcpRecord, f: &Flow) -> Option<TcpDetail> {
        let source = self.tcp_detail.as_mut()?;
        if tcp_detail::lost(r, source.attached_ns()) {
            self.detail_lost += 1;
        }
        let mut d = r.detail;
        tcp_detail::add_missed_synack(&mut d);
        if !f.start_observed || !tcp_detail::usable(&d) {
            return None;
        }
        if state::may_send_after_close(r) {
            if let Some(late) = source.take_late(r.cookie) {
                tcp_detail::merge_late(&mut d, &late);
            }
        }
        Some(d)
    }

    pub(super) fn emit_start(&mut self, key: FlowKey, out: &mut Vec<Tracked>) {
        let Some(mut f) = self.flows.remove(&key) else {
            return;
        };
        let ts = if f.open_ns > 0 {
            f.open_ns
        } else {
            crate::clock::boot_ns_now()
        };
        out.push(self.event(&f, FlowAction::Start, None, ts));
        f.start_emitted = true;
        self.flows.insert(key, f);
    }

    pub(super) fn end_udp(
        &mut self,
        key: UdpFlowKey,
        reason: &'static str,
        udp: &mut impl UdpCounterSource,
        out: &mut Vec<Tracked>,
    ) {
        self.forget_udp_key(key);
        let Some(f) = self.flows.remove(&FlowKey::Udp(key)) else {
            return;
        };
        let counters = udp.read(&key);
        udp.remove(&key);
        let now = crate::clock::boot_ns_now();
        let totals = counters.map(|c| udp_totals(&c));
        let mut t = self.event(&f, FlowAction::End, totals, now);
        let end_ns = counters
            .map(|c| c.last_ns)
            .filter(|n| *n > 0)
            .unwrap_or(now);
        t.event.end_time = Some(self.clock.wall(end_ns));
        t.event.duration_ns = Some(end_ns.saturating_sub(f.open_ns));
        t.event.end_reason = Some(reason);
        out.push(t);
    }

    /// Periodic work: passive flows nobody accepted, idle UDP flows, interval updates.
    pub(crate) fn tick(
        &mut self,
        now_ns: u64,
        udp: &mut impl UdpCounterSource,
        out: &mut Vec<Tracked>,
    ) {
        let wait = self.cfg.accept_wait.as_nanos() as u64;
        let pending: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, f)| !f.start_emitted && now_ns.saturating_sub(f.open_ns) >= wait)
            .map(|(k, _)| *k)
            .collect();
        for key in pending {
            self.emit_start(key, out);
        }
        let idle = self.cfg.udp_idle_timeout.as_nanos() as u64;
        let interval = self.cfg.update_interval.as_nanos() as u64;
        let keys: Vec<FlowKey> = self.flows.keys().copied().collect();
        for key in keys {
            let FlowKey::Udp(ukey) = key else {
                continue;
            };
            let Some(c) = udp.read(&ukey) else {
                // Pushed out of the kernel's LRU table: its counters are gone.
                self.evicted.udp += 1;
                self.end_udp(ukey, "evicted", udp, out);
                continue;
            };
            if now_ns.saturating_sub(c.last_ns) >= idle {
                self.end_udp(ukey, "idle", udp, out);
                continue;
            }
            if now_ns.saturating_sub(self.flows[&key].last_report_ns) >= interval {
                let Some(mut f) = self.flows.remove(&key) else {
                    continue;
                };
                out.push(self.event(&f, FlowAction::Update, Some(udp_totals(&c)), now_ns));
                f.reported = udp_totals(&c);
                f.last_report_ns = now_ns;
                self.flows.insert(key, f);
            }
        }
    }

    /// A UDP flow ends: its socket no longer lists it (so the index holds only open flows).
    fn forget_udp_key(&mut self, key: UdpFlowKey) {
        if let Some(list) = self.udp_by_cookie.get_mut(&key.cookie) {
            list.retain(|k| *k != key);
            if list.is_empty() {
                self.udp_by_cookie.remove(&key.cookie);
            }
        }
    }

    /// Every open flow ends with reason agent_shutdown: nothing seen is lost.
    pub(crate) fn shutdown(&mut self, udp: &mut impl UdpCounterSource, out: &mut Vec<Tracked>) {
        let now = crate::clock::boot_ns_now();
        let keys: Vec<FlowKey> = self.flows.keys().copied().collect();
        for key in keys {
            if !self.flows[&key].start_emitted {
                self.emit_start(key, out);
            }
            match key {
                FlowKey::Udp(k) => self.end_udp(k, "agent_shutdown", udp, out),
                FlowKey::Tcp(_) | FlowKey::TcpPartial(_) => {
                    if let Some(f) = self.flows.remove(&key) {
                        self.end_without_close(f, "agent_shutdown", now, out);
                    }
                }
            }
        }
    }

    /// Ends a TCP flow whose close the kernel did not report: totals come from the last
    /// sock_diag snapshot, when there was one.
    pub(super) fn end_without_close(
        &mut self,
        f: Flow,
        reason: &'static str,
        now: u64,
        out: &mut Vec<Tracked>,
    ) {
        if !f.start_emitted {
            out.push(self.event(
                &f,
                FlowAction::Start,
                None,
                if f.open_ns > 0 { f.open_ns } else { now },
            ));
        }
        let totals = match (f.live, &f.detail) {
            (Some(t), Some(d)) => Some(with_detail(t, d)),
            (t, _) => t,
        };
        let mut t = self.event(&f, FlowAction::End, totals, now);
        let ev = &mut t.event;
        if let Some(d) = &f.detail {
            tcp_detail::fill_event(ev, d, &self.clock);
        }
        ev.end_reason = Some(reason);
        ev.end_time = Some(self.clock.wall(now));
        out.push(t);
    }

    /// An event of `f` at `ts_ns` with its lifecycle fields, for enrichment to name.
    pub(super) fn event(
        &self,
        f: &Flow,
        action: FlowAction,
        totals: Option<Totals>,
        ts_ns: u64,
    ) -> Tracked {
        let (local, remote) = endpoints(&f.tuple);
        let direction = if f.role != Role::Passive {
            Direction::Outbound
        } else {
            Direction::Inbound
        };
        let mut ev = FlowEvent::new(
            action,
            self.clock.wall(ts_ns),
            transport_of(&f.tuple),
            local,
            remote,
            direction,
            self.no_host.clone(),
        );
        ev.ids = f.ids.clone();
        ev.start_observed = f.start_observed;
        if f.open_ns > 0 {
            ev.start_time = Some(self.clock.wall(f.open_ns));
            ev.duration_ns = Some(ts_ns.saturating_sub(f.open_ns));
        }
        ev.netns = (f.netns != 0).then_some(f.netns);
        ev.counters = totals.map(|t| counters(t, f.reported));
        if f.owner.pid != 0 {
            ev.attribution = Some(attribution(f));
            ev.tid = Some(f.owner.tid);
        }
        Tracked {
            event: ev,
            owner: f.owner,
            cookie: f.cookie,
            open_ns: f.open_ns,
        }
    }

    /// A new flow's id and Community ID (computed once: the hash is of the 5-tuple).
    fn flow_ids(&self, tuple: &Tuple, role: Role) -> Arc<FlowIds> {
        let (local, remote) = endpoints(tuple);
        let (src, dest) = if role != Role::Passive {
            (local, remote)
        } else {
            (remote, local)
        };
        Arc::new(FlowIds {
            flow_id: format!("{}-{:x}", self.id_prefix, self.next_id),
            community_id: Some(community_id_v1(
                self.cfg.community_id_seed,
                tuple.protocol,
                src.0,
                src.1,
                dest.0,
                dest.1,
            )),
        })
    }
}

/// A kernel open record's flow `f` is the start-up scan's flow `p`: it keeps the scan's id,
/// start and interval base, and its owner and guessed direction when the record knows none.
fn merge_scanned(f: &mut Flow, p: Flow) {
    f.ids = p.ids;
    f.start_emitted = p.start_emitted;
    f.reported = p.reported;
    if f.role == Role::Unknown {
        f.role = p.role;
        f.owner = p.owner;
        f.owner_kind = p.owner_kind;
        f.start_observed = p.start_observed;
    }
}

/// What the tracker tells of a socket's flow: its ids, process, endpoints and namespace.
pub(crate) struct SocketFlow<'a> {
    pub(crate) ids: &'a Arc<FlowIds>,
    pub(crate) owner: &'a Task,
    pub(crate) tuple: &'a Tuple,
    /// 0 when unknown.
    pub(crate) netns: u32,
}

impl<'a> SocketFlow<'a> {
    fn of(f: &'a Flow) -> Self {
        Self {
            ids: &f.ids,
            owner: &f.owner,
            tuple: &f.tuple,
            netns: f.netns,
        }
    }
}

/// Which process the flow's events name.
fn attribution(f: &Flow) -> Attribution {
    match f.owner_kind {
        // UDP flows name the last process that used the socket in its own syscall.
        _ if f.tuple.protocol != IPPROTO_TCP => Attribution::SocketUser,
        OwnerKind::Connector => Attribution::Connector,
        OwnerKind::Listener => Attribution::Listener,
        OwnerKind::Acceptor => Attribution::Acceptor,
        OwnerKind::None => Attribution::Unknown,
    }
}

fn transport_of(t: &Tuple) -> Transport {
    if t.protocol == IPPROTO_TCP {
        Transport::Tcp
    } else {
        Transport::Udp
    }
}

/// An event's counters: the totals and what they added since the last report.
fn counters(t: Totals, r: Totals) -> Counters {
    Counters {
        in_bytes: t.in_bytes,
        out_bytes: t.out_bytes,
        in_pkts: t.in_pkts,
        out_pkts: t.out_pkts,
        in_ip_bytes: t.in_ip_bytes,
        out_ip_bytes: t.out_ip_bytes,
        interval: IntervalCounters {
            in_bytes: t.in_bytes.saturating_sub(r.in_bytes),
            out_bytes: t.out_bytes.saturating_sub(r.out_bytes),
            in_pkts: t.in_pkts.saturating_sub(r.in_pkts),
            out_pkts: t.out_pkts.saturating_sub(r.out_pkts),
        },
    }
}

fn role_of(v: u8) -> Role {
    match v {
        1 => Role::Active,
        2 => Role::Passive,
        _ => Role::Unknown,
    }
}

fn owner_kind_of(v: u8) -> OwnerKind {
    match v {
        1 => OwnerKind::Connector,
        2 => OwnerKind::Listener,
        3 => OwnerKind::Acceptor,
        _ => OwnerKind::None,
    }
}

/// TCP totals with the per-packet counters' packets and IP bytes (the payload bytes stay
/// sequence-based: retransmissions count once).
pub(super) fn with_detail(t: Totals, d: &TcpDetail) -> Totals {
    Totals {
        in_pkts: d.rx.pkts,
        out_pkts: d.tx.pkts,
        in_ip_bytes: Some(d.rx.ip_bytes),
        out_ip_bytes: Some(d.tx.ip_bytes),
        ..t
    }
}

fn udp_totals(c: &UdpCounters) -> Totals {
    Totals {
        in_bytes: c.bytes_in,
        out_bytes: c.bytes_out,
        in_pkts: c.pkts_in,
        out_pkts: c.pkts_out,
        in_ip_bytes: Some(c.ip_bytes_in),
        out_ip_bytes: Some(c.ip_bytes_out),
    }
}

pub(super) fn identity(netns: u32, t: &Tuple) -> TcpIdentity {
    let ((la, lp), (ra, rp)) = endpoints(t);
    (netns, SocketAddr::new(la, lp), SocketAddr::new(ra, rp))
}

/// (local, remote) endpoints; IPv4-mapped IPv6 addresses are reported as the IPv4 they carry.
pub(crate) fn endpoints(t: &Tuple) -> ((IpAddr, u16), (IpAddr, u16)) {
    let addr = |a: &[u8; 16]| -> IpAddr {
        if t.family == AF_INET {
            IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        } else {
            let v6 = Ipv6Addr::from(*a);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
    };
    (
        (addr(&t.local_addr), t.local_port),
        (addr(&t.remote_addr), t.remote_port),
    )
}

/// Merge per-CPU UDP counter slots.
pub(crate) fn sum_udp_counters<'a>(
    slots: impl IntoIterator<Item = &'a UdpCounters>,
) -> UdpCounters {
    let mut s = UdpCounters::default();
    for c in slots {
        if c.first_ns != 0 && (s.first_ns == 0 || c.first_ns < s.first_ns) {
            s.first_ns = c.first_ns;
        }
        s.last_ns = s.last_ns.max(c.last_ns);
        s.bytes_in += c.bytes_in;
        s.bytes_out += c.bytes_out;
        s.ip_bytes_in += c.ip_bytes_in;
        s.ip_bytes_out += c.ip_bytes_out;
        s.pkts_in += c.pkts_in;
        s.pkts_out += c.pkts_out;
    }
    s
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
